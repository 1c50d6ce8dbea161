"""Incidents through the real handler on moto, results marked as the worker marks them (issue 20; written by a
fresh-eyes review)."""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace

import pytest
import time_machine

from chalicelib.checks.marking import matters
from chalicelib.clock import utcnow
from chalicelib.ids import derived_id
from chalicelib.incidents.events import OPENED, RESOLVED
from chalicelib.incidents.models import EventModel, IncidentModel, MonitorStateModel, status_key
from chalicelib.monitors.models import MonitorModel
from chalicelib.monitors.watching import watch_of
from tests.factories import create_channel, create_monitor
from tests.integration.test_alerts import new_events, planned, settle
from tests.integration.test_incidents_stream import (
    REGIONS,
    URL,
    feed,
    result,
    start,
    team_incidents,
)
from tests.support import make_test_settings


@pytest.fixture
def settings():
    return make_test_settings(ALLOW_PRIVATE_TARGETS="true")  # the webhook's receiver is on this machine


def worker_marks(monitor: dict, region: str, at, ok: bool) -> bool:
    """What the worker decides from the monitor as the handler last wrote it (the freshest watch)."""
    item = MonitorModel.get(monitor["team_id"], monitor["id"], consistent_read=True)
    probe = SimpleNamespace(ok=ok, degraded=False, region=region, checked_at=at, ssl_expires_at=None)
    return matters(probe, watch_of(item))


def check(monitor: dict, region: str, at, ok: bool):
    return result(monitor, at, region, ok, marked=worker_marks(monitor, region, at, ok) or None)


def tell(monitor: dict, t0, story: dict[str, str], lags: dict[str, int]) -> None:
    """``story`` through the handler minute by minute, one batch per region (each region's worker writes its own
    packs), a region's results ``lags[region]`` minutes late."""
    for m in range(max(len(s) for s in story.values()) + max(lags.values(), default=0)):
        for region in REGIONS:
            n = m - lags.get(region, 0)
            if region in story and 0 <= n < len(story[region]):
                feed([result(monitor, t0 + timedelta(minutes=n), region, story[region][n] == "+")])


def stored_incident(monitor: dict, opened, resolved, **fields) -> IncidentModel:
    """A resolved incident stored under the id an incident opening at ``opened`` gets (``fields``: more of it)."""
    incident = IncidentModel(
        monitor["team_id"],
        derived_id("inc", opened, monitor["id"]),
        team_status=status_key(monitor["team_id"], "resolved"),
        monitor_id=monitor["id"],
        status="resolved",
        started_at=opened,
        resolved_at=resolved,
        updated_at=resolved,
        **fields,
    )
    incident.save()
    return incident


def test_a_region_five_minutes_late_after_the_monitor_was_up_for_a_while_does_not_split_the_outage(api, alice, aws):
    """test_a_region_five_minutes_late_makes_no_second_incident, after 15 minutes up (the worker stops marking the
    up checks of a steady monitor): ap's last applied result is 15 minutes old when eu recovers, so ap is timed out
    at once; the incident resolves "no result in time from ap-southeast-1", and ap's late failures open a second."""
    monitor = create_monitor(api, url=URL)
    t0 = start()
    us, eu, ap = REGIONS
    warm = t0 - timedelta(minutes=15)
    for m in range(15):  # up everywhere: the first minute is marked (nothing known yet), then nothing
        feed([check(monitor, r, warm + timedelta(minutes=m), True) for r in REGIONS])
    assert MonitorModel.get(monitor["team_id"], monitor["id"]).status == "up"
    story = {us: "+" + "-" * 12 + "+" * 8, eu: "+---" + "+" * 17, ap: "+" + "-" * 12 + "+" * 8}

    def at(m: int):
        return t0 + timedelta(minutes=m)

    for m in range(len(story[us])):
        batch = [check(monitor, us, at(m), story[us][m] == "+"), check(monitor, eu, at(m), story[eu][m] == "+")]
        if m >= 5:
            batch.append(check(monitor, ap, at(m - 5), story[ap][m - 5] == "+"))
        feed(batch)
    incidents = team_incidents(monitor)
    texts = [e.text for i in incidents for e in EventModel.query(i.incident_id) if e.type == RESOLVED]
    opened = [e for i in incidents for e in EventModel.query(i.incident_id) if e.type == OPENED]
    assert len(incidents) == 1, (sorted((i.started_at, i.resolved_at) for i in incidents), texts)
    assert len(opened) == 1


def test_an_advisory_region_writes_nothing_per_result(api, alice, aws):
    """eu is down below the quorum (an advisory) and stays so; the monitor is up.  Before f0931f7 its further
    failures wrote nothing (not material); now each writes the state item (``knowledge``): a write per check, for
    as long as the region stays down (a region blocked by the site's firewall: for ever)."""
    monitor = create_monitor(api, url=URL)
    t0 = start() - timedelta(hours=2)
    _us, eu, _ap = REGIONS
    feed([check(monitor, r, t0, True) for r in REGIONS])
    for m in (1, 2):
        feed([check(monitor, eu, t0 + timedelta(minutes=m), False)])
    version = MonitorStateModel.get(monitor["id"]).version
    for m in range(3, 63):  # an hour of it
        feed([check(monitor, r, t0 + timedelta(minutes=m), r != eu) for r in REGIONS])
    writes = MonitorStateModel.get(monitor["id"]).version - version
    assert writes <= 2, f"{writes} state writes for an hour of an advisory (60 eu failures)"


def test_an_incident_opened_by_a_late_regions_story_names_the_regions_that_made_it(api, alice, aws):
    """test_incident_lag.test_a_late_region_that_overlapped_opens_the_incident_it_makes_and_resolves_it through
    the handler (every result marked): us down 2..4, eu down 3..5 but 8 minutes late.  The incident opens (at 3) when
    eu's story arrives, by which time us is up again: ``_open`` takes ``down_regions`` of the *current* state, so
    the incident's affected regions and its timeline say one region, not the two that made the quorum."""
    monitor = create_monitor(api, url=URL)
    t0 = start()
    us, eu, ap = REGIONS
    story = {us: "+---++++++++++", eu: "++---+++++++++", ap: "++++++++++++++"}
    for m in range(len(story[us]) + 8):
        batch = []
        for region in (us, ap):
            if m < len(story[region]):
                batch.append(result(monitor, t0 + timedelta(minutes=m), region, story[region][m] == "+"))
        if 0 <= m - 8 < len(story[eu]):
            batch.append(result(monitor, t0 + timedelta(minutes=m - 8), eu, story[eu][m - 8] == "+"))
        feed(batch)
    (incident,) = team_incidents(monitor)
    timeline = list(EventModel.query(incident.incident_id))
    [opened] = [e.text for e in timeline if e.type == OPENED]
    assert incident.status == "resolved"
    assert (opened, sorted(incident.affected_regions)) == ("Down in 2 of 3 regions: HTTP 503", sorted([us, eu]))


def test_an_outage_only_a_late_region_shows_is_stored_and_alerted_as_on_time(api, alice, aws, httpserver):
    """test_incident_lag.test_an_earlier_outage_only_a_late_region_shows_is_found_late through the handler, one
    region at a time (each region's worker writes its own packs): ap's results three minutes late.  us and eu open
    the later outage first (at 4, moved back to 3 by ap's story); ap's story then shows the earlier one (us and ap
    down from 1 to 2), over before it arrived.  It is stored as a resolved incident with its moments, and its
    timeline tells an opening and a resolution, each alerted once — as on time, where both were alerted."""
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    hook = create_channel(api, type="webhook", config={"url": httpserver.url_for("/hook")})
    monitor = create_monitor(api, url=URL, channel_ids=[hook["id"]])
    t0 = start()
    us, eu, ap = REGIONS
    tell(monitor, t0, {us: "--+--", eu: "-+---", ap: "----"}, {ap: 3})
    incidents = sorted(team_incidents(monitor), key=lambda i: i.started_at)
    assert [(i.started_at, i.resolved_at, i.status) for i in incidents] == [
        (t0 + timedelta(minutes=1), t0 + timedelta(minutes=2), "resolved"),
        (t0 + timedelta(minutes=3), None, "open"),
    ]
    found, _ = incidents
    assert sorted(found.affected_regions) == sorted([us, ap])
    timeline = list(EventModel.query(found.incident_id))
    assert [(e.type, e.at) for e in timeline] == [
        (OPENED, t0 + timedelta(minutes=1)),
        (RESOLVED, t0 + timedelta(minutes=2)),
    ]
    assert "found late" in timeline[1].text
    # The alert handler is handed the timelines as the events stream hands them over, twice: one message for
    # each transition, no more.
    with time_machine.travel(utcnow(), tick=True) as clock:
        planned(timeline, times=2)
        settle(clock)  # a resolution waits a few seconds behind its incident's opening
    bodies = [json.loads(request.get_data()) for request, _ in httpserver.log]
    sent = [(body["type"], body["data"]["incident"]["id"]) for body in bodies]
    assert sent == [("incident.opened", found.incident_id), ("incident.resolved", found.incident_id)]


def test_a_late_region_moves_the_start_of_an_incident_already_resolved(api, alice, aws):
    """test_incident_lag.test_a_late_region_moves_a_resolved_incidents_start_back through the handler: eu and ap make
    the quorum at 3 and recover at 4; us's story, five minutes late, shows us and eu down from 1.  The resolved
    incident's start moves back to 1, and no second incident is opened."""
    monitor = create_monitor(api, url=URL)
    t0 = start()
    us, eu, ap = REGIONS
    story = {us: "----", eu: "----+" + "+" * 5, ap: "-+--+" + "+" * 5}
    for m in range(len(story[eu])):
        batch = [result(monitor, t0 + timedelta(minutes=m), r, story[r][m] == "+") for r in (eu, ap)]
        if 0 <= m - 5 < len(story[us]):
            batch.append(result(monitor, t0 + timedelta(minutes=m - 5), us, story[us][m - 5] == "+"))
        feed(batch)
    (incident,) = team_incidents(monitor)
    assert (incident.started_at, incident.resolved_at) == (t0 + timedelta(minutes=1), t0 + timedelta(minutes=4))


def test_an_incident_the_previous_version_resolved_is_never_found_late_again(api, alice, aws):
    """A state item the previous version wrote keeps no episodes: its last resolution is all it says of the incidents
    before (found by a fresh-eyes review of issue 20).  us and eu down from 0 to 2: an incident [1, 2), resolved by
    the previous version; then down again from 5.  The new incident's first result must not find [1, 2) "late" in
    the spans the state still keeps: that incident exists (same id), and the transaction writing it as new fails its
    condition on every attempt — the monitor's results were never applied again."""
    monitor = create_monitor(api, url=URL)
    t0 = start() - timedelta(minutes=10)
    us, eu, ap = REGIONS
    story = {us: "--+++--+", eu: "--+++--+", ap: "++++++++"}
    for m in range(len(story[us])):
        if m == 4:  # written by the version before episodes: no open_key, episodes nor episodes_floor
            item = MonitorStateModel.get(monitor["id"])
            legacy = {k: v for k, v in item.state.items() if k not in ("open_key", "episodes", "episodes_floor")}
            assert legacy["last_resolved_at"] is not None
            assert not legacy["incident_open"]
            item.state = legacy
            item.save()
        feed([result(monitor, t0 + timedelta(minutes=m), r, story[r][m] == "+") for r in REGIONS])
    incidents = sorted(team_incidents(monitor), key=lambda i: i.started_at)
    assert [(i.started_at, i.resolved_at) for i in incidents] == [
        (t0 + timedelta(minutes=1), t0 + timedelta(minutes=2)),
        (t0 + timedelta(minutes=6), t0 + timedelta(minutes=7)),
    ]
    first = list(EventModel.query(incidents[0].incident_id))
    assert not any("found late" in (e.text or "") for e in first)


def test_an_outage_found_late_after_every_region_recovered_says_no_none_for_its_cause(api, alice, aws):
    """us and ap down from 1 to 2 (us until 3), ap's results five minutes late; us and eu down from 5 to 6, on time.
    ap's recovery at 2 reveals the first outage when every region is up again: no region keeps a cause then (found by
    a fresh-eyes review of issue 20: its opening read "Down in 2 of 3 regions: None")."""
    monitor = create_monitor(api, url=URL)
    t0 = start() - timedelta(minutes=20)
    us, eu, ap = REGIONS
    tell(monitor, t0, {us: "+---+--++++", eu: "+++++--++++", ap: "+--+++++++"}, {ap: 5})
    incidents = sorted(team_incidents(monitor), key=lambda i: i.started_at)
    assert [(i.started_at, i.resolved_at) for i in incidents] == [
        (t0 + timedelta(minutes=2), t0 + timedelta(minutes=3)),
        (t0 + timedelta(minutes=6), t0 + timedelta(minutes=7)),
    ]
    [opened] = [e.text for e in EventModel.query(incidents[0].incident_id) if e.type == OPENED]
    assert "None" not in opened, opened


def test_an_opening_whose_incident_id_is_taken_opens_that_incident_again_and_the_monitor_goes_on(api, alice, aws):
    """An incident's id is derived from the moment it opens.  A state begun afresh (a resume deletes it; a window
    moved into the past re-crosses what was decided) can open again at a moment an incident is stored for: written
    as new, the transaction failed its condition on every retry and the monitor's results were never applied again
    (found by a fresh-eyes review of issue 20).  Now that incident opens again, and resolves, as the results say."""
    monitor = create_monitor(api, url=URL)
    t0 = start()
    opening = t0 + timedelta(minutes=1)  # the second failure confirms it
    taken = stored_incident(monitor, opening, opening + timedelta(minutes=3))
    for m in range(2):
        feed([result(monitor, t0 + timedelta(minutes=m), r, False) for r in REGIONS])
    assert MonitorModel.get(monitor["team_id"], monitor["id"]).status == "down"
    (incident,) = team_incidents(monitor)
    assert (incident.incident_id, incident.status, incident.resolved_at) == (taken.incident_id, "open", None)
    feed([result(monitor, t0 + timedelta(minutes=2), r, True) for r in REGIONS])
    (incident,) = team_incidents(monitor)
    assert (incident.status, incident.resolved_at) == ("resolved", t0 + timedelta(minutes=2))
    assert MonitorModel.get(monitor["team_id"], monitor["id"]).status == "up"


def test_an_outage_found_late_that_is_stored_already_is_not_written_again(api, alice, aws):
    """The found-late story of test_an_outage_only_a_late_region_shows_is_stored_and_alerted_as_on_time, with the
    earlier outage's incident stored already (told once by a state that has since lost its episodes): it is not
    written again — as new, its transaction would fail on every retry — and the later outage goes on as told."""
    monitor = create_monitor(api, url=URL)
    t0 = start()
    us, eu, ap = REGIONS
    earlier = t0 + timedelta(minutes=1)
    stored_incident(monitor, earlier, earlier + timedelta(minutes=1))
    tell(monitor, t0, {us: "--+--", eu: "-+---", ap: "----"}, {ap: 3})
    incidents = sorted(team_incidents(monitor), key=lambda i: i.started_at)
    assert [(i.started_at, i.status) for i in incidents] == [(earlier, "resolved"), (t0 + timedelta(minutes=3), "open")]
    state = MonitorStateModel.get(monitor["id"], consistent_read=True).state
    assert state["regions"][ap]["last_planned_at"].startswith(f"{t0 + timedelta(minutes=3):%Y-%m-%dT%H:%M}")


def test_a_region_five_minutes_late_is_one_outage_alerted_once_down_and_once_up(api, alice, aws, httpserver):
    """The issue's case through the handler and the alert ledger: us and ap down from 1 to 12, eu from 1 to 3, ap's
    results five minutes late.  Every timeline event handed to the alert handler twice (a stream redelivers): the
    webhook is told once that the monitor went down and once that it came back, for one incident."""
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    hook = create_channel(api, type="webhook", config={"url": httpserver.url_for("/hook")})
    monitor = create_monitor(api, url=URL, channel_ids=[hook["id"]])
    t0 = start()
    us, eu, ap = REGIONS
    tell(monitor, t0, {us: "+" + "-" * 12 + "+" * 8, eu: "+---" + "+" * 17, ap: "+" + "-" * 12 + "+" * 8}, {ap: 5})
    (incident,) = team_incidents(monitor)
    assert (incident.started_at, incident.resolved_at) == (t0 + timedelta(minutes=2), t0 + timedelta(minutes=13))
    with time_machine.travel(utcnow(), tick=True) as clock:
        planned(list(EventModel.query(incident.incident_id)), times=2)
        settle(clock)
    bodies = [json.loads(request.get_data()) for request, _ in httpserver.log]
    sent = [(body["type"], body["data"]["incident"]["id"]) for body in bodies]
    assert sent == [("incident.opened", incident.incident_id), ("incident.resolved", incident.incident_id)]


def test_an_acknowledged_incident_opened_again_stays_acknowledged(api, alice, aws):
    """The incident opened again (above) had been acknowledged: it opened as "open" with its acknowledgement still
    set — a status the API and the acknowledge call contradict.  The outage was acknowledged: it stays so."""
    monitor = create_monitor(api, url=URL)
    t0 = start()
    opening = t0 + timedelta(minutes=1)
    acknowledged = {"acknowledged_at": opening + timedelta(minutes=1), "acknowledged_by": "someone"}
    stored_incident(monitor, opening, opening + timedelta(minutes=3), **acknowledged)
    for m in range(2):
        feed([result(monitor, t0 + timedelta(minutes=m), r, False) for r in REGIONS])
    (incident,) = team_incidents(monitor)
    assert (incident.status, incident.team_status, incident.acknowledged_by) == (
        "acknowledged",
        status_key(monitor["team_id"], "acknowledged"),
        "someone",
    )


def test_an_incident_opened_again_is_told_again_down_and_up(api, alice, aws, httpserver):
    """An outage opens at 1 and resolves at 2; then the monitor's state is begun afresh (a resume deletes it) and
    results of those same moments come again: the incident of that moment opens again and resolves again.  Its new
    entries had the first ones' keys — each write replaced an item (a MODIFY), which the alert and status-page
    handlers never take — so its opening went untold, and a resolution at another moment was told alone (found by a
    fresh-eyes review of issue 20).  Each opening is keyed apart: told down, then up."""
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    hook = create_channel(api, type="webhook", config={"url": httpserver.url_for("/hook")})
    monitor = create_monitor(api, url=URL, channel_ids=[hook["id"]])
    t0 = start()
    tell(monitor, t0, dict.fromkeys(REGIONS, "--+"), {})
    (incident,) = team_incidents(monitor)
    MonitorStateModel(monitor["id"]).delete(add_version_condition=False)  # as a resume does
    with new_events(incident.incident_id) as added:
        tell(monitor, t0, dict.fromkeys(REGIONS, "--+"), {})
    (again,) = team_incidents(monitor)
    assert (again.incident_id, again.status, again.openings) == (incident.incident_id, "resolved", 2)
    with time_machine.travel(utcnow(), tick=True) as clock:
        planned(added, times=2)  # what the events stream hands over: the items added, not those replaced
        settle(clock)
    bodies = [json.loads(request.get_data()) for request, _ in httpserver.log]
    assert [body["type"] for body in bodies] == ["incident.opened", "incident.resolved"]
