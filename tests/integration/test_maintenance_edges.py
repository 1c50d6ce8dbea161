"""Maintenance windows' edges on the scheduler's tick (issue 20): the tick that crosses a window's start or end
moves the monitor's status and its status page without waiting for a check; nothing is alerted inside a window;
after it, one alert if the monitor's state is not the one last announced, none otherwise.

Each step runs what AWS would: the tick (``run_tick``) or results applied by the incident handler, then the events
they wrote handed to the alert handler and the status page publisher as the events stream does.  What was
alerted is read from the alert ledger (the webhook channel's deliveries), what the page says from the bucket.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine

from chalicelib.alerts.models import DeliveryModel
from chalicelib.aws import names
from chalicelib.aws.clients import client
from chalicelib.clock import isoz, utcnow
from chalicelib.incidents import events
from chalicelib.incidents.models import EventModel, IncidentModel, MaintenanceWindowModel, MonitorStateModel
from chalicelib.incidents.tracker import Result, apply_results
from chalicelib.scheduler.service import TickReport, run_tick
from chalicelib.settings import DEFAULT_REGIONS, get_settings
from tests.events import stream_records
from tests.factories import create_channel, create_monitor, create_status_page
from tests.support import (
    before_aws_call,
    dynamodb_calls,
    dynamodb_clients,
    elsewhere,
    make_test_settings,
    on_table,
    sign_up,
)


@pytest.fixture
def settings():
    return make_test_settings(ALLOW_PRIVATE_TARGETS="true")


@pytest.fixture
def alice(api):
    """Alice, her address not verified: the only alerts are the webhook channel's."""
    return sign_up(api, "alice@example.com", verified=False)


class Shop:
    """A monitor with a webhook channel, on the status page "acme"; what happened to it since the last look."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.hook = create_channel(api, type="webhook", config={"url": "http://127.0.0.1:9/hook"})
        self.monitor = create_monitor(api, channel_ids=[self.hook["id"]])
        self.team_id, self.id = self.monitor["team_id"], self.monitor["id"]
        create_status_page(api, components=[{"monitor_id": self.id, "display_name": "Shop"}])
        self.seen: set[tuple[str, str]] = set()

    def window(self, starts: datetime, ends: datetime) -> dict[str, Any]:
        body = {"title": "Database upgrade", "monitor_ids": [self.id], "starts_at": isoz(starts), "ends_at": isoz(ends)}
        r = self.api.post("/v1/maintenance-windows", body)
        assert r.status == 201, r.body
        return dict(r.json)

    def tick(self, minute: datetime) -> TickReport:
        """The tick of ``minute``, running a second into it."""
        now = minute + timedelta(seconds=1)
        with time_machine.travel(now, tick=False):
            report = run_tick(minute, now=now)
        self.stream()
        return report

    def tick_while(self, minute: datetime, change: Any) -> None:
        """The tick of ``minute``, with ``change`` (another writer's) landing just before it writes a monitor's
        state: it has read the windows already."""
        slip = before_aws_call(
            dynamodb_clients(MonitorStateModel),
            "dynamodb.TransactWriteItems",
            elsewhere(change),
            match=on_table(MonitorStateModel),
        )
        with slip as fired:
            self.tick(minute)
        assert fired == [True]

    def checks(self, at: datetime, ok: bool) -> None:
        """A check in every region at ``at``, applied as the incident handler applies them."""
        fields: dict[str, Any] = {} if ok else {"status_code": 503, "error": "status_mismatch"}
        results = [Result(self.team_id, self.id, r, at, ok=ok, planned_at=at, **fields) for r in DEFAULT_REGIONS]
        apply_results(self.team_id, self.id, results, at + timedelta(seconds=5))
        self.stream()

    def stream(self) -> list[EventModel]:
        """The events written since the last look, through the alert handler and the status page publisher."""
        from chalicelib.events.alerts import plan_records
        from chalicelib.events.status_pages import handle

        subjects = [self.id, *(i.incident_id for i in self.incidents())]
        new = [e for s in subjects for e in EventModel.query(s) if (e.subject, e.key) not in self.seen]
        self.seen |= {(e.subject, e.key) for e in new}
        records = stream_records(new)
        assert plan_records(records) == {"batchItemFailures": []}
        assert handle(records) == {"batchItemFailures": []}
        return new

    def incidents(self) -> list[IncidentModel]:
        return list(IncidentModel.query(self.team_id))

    def alerted(self) -> list[str]:
        """The alert ledger: what the channel was sent, oldest first."""
        return [d.event for d in sorted(DeliveryModel.query(self.hook["id"]), key=lambda d: d.created_at)]

    def status(self) -> str:
        return str(self.api.get(f"/v1/monitors/{self.id}").json["status"])

    def page(self) -> str:
        """The component's status on the published page (the bucket CloudFront serves)."""
        s3 = client("s3")
        found = s3.get_object(Bucket=names.status_bucket(get_settings()), Key="status/acme/index.json")
        return str(json.loads(found["Body"].read())["components"][0]["status"])

    def timeline(self, incident_id: str) -> list[tuple[str, str | None]]:
        entries = self.api.get(f"/v1/incidents/{incident_id}").json["timeline"]
        return [(e["type"], e["text"]) for e in entries]


@pytest.fixture
def shop(api, alice) -> Shop:
    return Shop(api)


@pytest.fixture
def t0() -> datetime:
    """The next minute: windows made now start after it."""
    return utcnow().replace(second=0, microsecond=0) + timedelta(minutes=1)


def minutes(t0: datetime, m: float) -> datetime:
    return t0 + timedelta(minutes=m)


def test_the_tick_at_a_windows_end_updates_the_monitor_and_its_page_without_a_check(shop, t0):
    """Up before; the window from minute 1 to 5; down inside it.  The tick at minute 1 shows the maintenance, the
    tick at minute 5 — before any check after the window — shows the outage, opened then, alerted once."""
    shop.checks(minutes(t0, 0), ok=True)
    shop.window(minutes(t0, 1), minutes(t0, 5))
    assert shop.tick(minutes(t0, 1)).maintenance_edges == 1
    assert (shop.status(), shop.page()) == ("maintenance", "maintenance")
    for m in (1, 2, 3, 4):
        shop.checks(minutes(t0, m + 0.2), ok=False)
    assert shop.incidents() == []
    assert (shop.status(), shop.page()) == ("maintenance", "maintenance")
    assert shop.alerted() == []  # nothing inside the window

    assert shop.tick(minutes(t0, 5)).maintenance_edges == 1  # no check since minute 4:12
    assert (shop.status(), shop.page()) == ("down", "major_outage")
    [incident] = shop.incidents()
    assert (incident.status, incident.started_at) == ("open", minutes(t0, 5))
    assert shop.alerted() == ["incident.opened"]

    assert shop.tick(minutes(t0, 6)).maintenance_edges == 0  # the window left the index
    shop.checks(minutes(t0, 6.2), ok=False)
    assert len(shop.incidents()) == 1
    assert shop.alerted() == ["incident.opened"]


def test_an_incident_open_when_a_window_starts_stays_open_and_its_recovery_is_told_once_after_it(shop, t0):
    shop.checks(minutes(t0, 0), ok=False)
    shop.checks(minutes(t0, 0.5), ok=False)
    [incident] = shop.incidents()
    assert shop.alerted() == ["incident.opened"]
    shop.window(minutes(t0, 1), minutes(t0, 4))

    shop.tick(minutes(t0, 1))
    assert (shop.status(), shop.page()) == ("maintenance", "maintenance")
    shop.checks(minutes(t0, 2.2), ok=True)  # it recovers inside the window
    shop.checks(minutes(t0, 3.2), ok=True)
    assert [i.status for i in shop.incidents()] == ["open"]
    assert shop.alerted() == ["incident.opened"]

    shop.tick(minutes(t0, 4))
    [resolved] = shop.incidents()
    assert (resolved.status, resolved.resolved_at) == ("resolved", minutes(t0, 4))
    assert (shop.status(), shop.page()) == ("up", "operational")
    assert shop.alerted() == ["incident.opened", "incident.resolved"]
    told = [entry for entry in shop.timeline(incident.incident_id) if not entry[0].startswith("region_")]
    assert told == [
        ("opened", "Down in 2 of 3 regions: HTTP 503"),  # the quorum, reached
        ("maintenance_started", "Maintenance started: no alert until it ends"),
        ("maintenance_ended", "Maintenance over"),
        ("resolved", "Recovered during maintenance (up in us-east-1, eu-west-1, ap-southeast-1)"),
    ]


def test_an_outage_still_there_when_the_window_ends_is_not_announced_again(shop, t0):
    shop.checks(minutes(t0, 0), ok=False)
    shop.checks(minutes(t0, 0.5), ok=False)
    [incident] = shop.incidents()
    shop.window(minutes(t0, 1), minutes(t0, 3))
    shop.tick(minutes(t0, 1))
    shop.checks(minutes(t0, 2.2), ok=False)
    shop.tick(minutes(t0, 3))
    assert [i.status for i in shop.incidents()] == ["open"]
    assert (shop.status(), shop.page()) == ("down", "major_outage")
    assert shop.alerted() == ["incident.opened"]
    assert shop.timeline(incident.incident_id)[-1] == (
        "maintenance_ended",
        "Maintenance over: still down in us-east-1, eu-west-1, ap-southeast-1",
    )


def test_a_tick_after_both_edges_crosses_them_in_order(shop, t0):
    """The ticks of the window's minutes failed: the next one crosses its start, then its end, at their moments."""
    shop.checks(minutes(t0, 0), ok=True)
    window = shop.window(minutes(t0, 1), minutes(t0, 3))
    assert shop.tick(minutes(t0, 4)).maintenance_edges == 2
    assert shop.status() == "up"
    changes = [(e.at, e.data["status"]) for e in EventModel.query(shop.id) if e.type == "monitor.status_changed"]
    assert changes[-2:] == [(minutes(t0, 1), "maintenance"), (minutes(t0, 3), "up")]
    stored = MaintenanceWindowModel.get(shop.team_id, window["id"])
    assert (stored.edge_shard, stored.edge_at) == (None, None)


def test_a_window_made_running_or_deleted_moves_the_status_at_once(shop, api, t0):
    """No tick needed for a change: a window made already running is entered, one deleted while the monitor is
    down is left — and the outage it hid opens then, alerted once."""
    now = utcnow()
    shop.checks(now - timedelta(minutes=1), ok=True)
    window = shop.window(now - timedelta(minutes=1), now + timedelta(hours=1))
    assert shop.status() == "maintenance"
    shop.checks(now + timedelta(seconds=1), ok=False)
    shop.checks(now + timedelta(seconds=2), ok=False)
    shop.stream()
    assert shop.alerted() == []
    with time_machine.travel(now + timedelta(seconds=3), tick=False):
        assert api.delete(f"/v1/maintenance-windows/{window['id']}").status == 204
    shop.stream()
    assert shop.status() == "down"
    [incident] = shop.incidents()
    assert incident.started_at == now + timedelta(seconds=3)
    assert shop.alerted() == ["incident.opened"]


def test_a_tick_with_no_edge_due_reads_one_empty_query_and_no_monitor_state(shop, t0):
    """The pass costs one query of the edge index a minute, whatever the number of monitors and windows."""
    shop.window(minutes(t0, 30), minutes(t0, 60))
    with dynamodb_calls(MaintenanceWindowModel, MonitorStateModel) as calls:
        assert shop.tick(minutes(t0, 1)).maintenance_edges == 0
    assert calls == ["Query"]


def test_the_tick_marks_a_window_on_an_incident_whose_timeline_is_full(shop, t0):
    # found by a fresh-eyes review of issue 20
    """An incident whose timeline holds its kept repeating entries (a region that flapped for hours): the tick's
    ``maintenance_started`` pushes the oldest kept one out, a delete in the same transaction (``events.kept``),
    which the tick's function must be allowed to make (``tests/iam.py`` holds it to its deployed policy)."""
    shop.checks(minutes(t0, 0), ok=False)
    shop.checks(minutes(t0, 0.5), ok=False)
    [incident] = shop.incidents()
    full = events.FIRST_REPEATS + events.LATEST_REPEATS
    keys = [f"{isoz(minutes(t0, -1))}#1#incident.region_down#r{i}" for i in range(events.LATEST_REPEATS)]
    incident.update(actions=[IncidentModel.repeat_count.set(full), IncidentModel.repeat_keys.set(keys)])
    shop.window(minutes(t0, 1), minutes(t0, 3))

    assert shop.tick(minutes(t0, 1)).maintenance_edges == 1
    assert (shop.status(), shop.page()) == ("maintenance", "maintenance")
    stored = IncidentModel.get(shop.team_id, incident.incident_id)
    assert (stored.repeat_count, stored.repeats_dropped) == (full + 1, 1)
    assert ("maintenance_started", "Maintenance started: no alert until it ends") in shop.timeline(stored.incident_id)


def test_a_window_deleted_while_the_tick_crosses_its_start_leaves_no_maintenance_behind(shop, api, t0):
    # found by a fresh-eyes review of issue 20
    """The tick read the window; it is deleted (its change crossing the monitor, not yet in it: nothing to leave)
    before the tick writes the monitor into it.  The monitor must not stay in maintenance for the deleted window's
    hour, hiding the outage that follows."""
    shop.checks(minutes(t0, 0), ok=True)
    window = shop.window(minutes(t0, 1), minutes(t0, 61))

    def delete() -> None:
        assert api.delete(f"/v1/maintenance-windows/{window['id']}").status == 204

    shop.tick_while(minutes(t0, 1), delete)
    assert (shop.status(), shop.page()) == ("up", "operational")
    shop.checks(minutes(t0, 2), ok=False)
    shop.checks(minutes(t0, 3), ok=False)
    assert [i.status for i in shop.incidents()] == ["open"]
    assert shop.alerted() == ["incident.opened"]


def test_a_window_moved_later_while_the_tick_crosses_its_start_is_entered_at_its_new_start(shop, api, t0):
    # found by a fresh-eyes review of issue 20
    shop.checks(minutes(t0, 0), ok=True)
    window = shop.window(minutes(t0, 1), minutes(t0, 61))

    def move() -> None:
        r = api.patch(f"/v1/maintenance-windows/{window['id']}", {"starts_at": isoz(minutes(t0, 30))})
        assert r.status == 200, r.body

    shop.tick_while(minutes(t0, 1), move)
    assert (shop.status(), shop.page()) == ("up", "operational")
    assert shop.tick(minutes(t0, 30)).maintenance_edges == 1
    assert (shop.status(), shop.page()) == ("maintenance", "maintenance")


def test_back_to_back_windows_move_on_the_page_at_their_shared_edge(shop, t0):
    # found by a fresh-eyes review of issue 20: no status moved at minute 3 (maintenance before and after), so no
    # event republished the page, which listed the first window in progress and the second as scheduled
    shop.checks(minutes(t0, 0), ok=True)
    first = shop.window(minutes(t0, 1), minutes(t0, 3))
    second = shop.window(minutes(t0, 3), minutes(t0, 5))
    shop.tick(minutes(t0, 1))

    at = minutes(t0, 3) + timedelta(seconds=1)
    with time_machine.travel(at, tick=False):
        report = run_tick(minutes(t0, 3), now=at)
        told = shop.stream()  # the events stream runs at once, the page is built at that moment

    assert report.maintenance_edges == 2
    assert [e.type for e in told].count(events.WINDOW_EDGE) == 2  # the first's end, the second's start
    s3 = client("s3")
    page = json.loads(
        s3.get_object(Bucket=names.status_bucket(get_settings()), Key="status/acme/index.json")["Body"].read()
    )
    assert {w["id"]: w["status"] for w in page["maintenance"]} == {second["id"]: "in_progress"}
    assert page["components"][0]["status"] == "maintenance"
    assert shop.status() == "maintenance"
    assert first["id"] not in json.dumps(page)
    assert shop.alerted() == []  # a window's edge is no alert


def test_a_monitor_resumed_inside_a_window_shows_the_maintenance_on_its_page(shop, api, t0):
    # found by a fresh-eyes review of issue 20: its first result re-entered the window at the window's start, and
    # that status event had the tick's key: an overwrite, which the page publisher never sees
    shop.checks(minutes(t0, 0), ok=True)
    shop.window(minutes(t0, 1), minutes(t0, 30))
    shop.tick(minutes(t0, 1))
    assert (shop.status(), shop.page()) == ("maintenance", "maintenance")
    assert api.post(f"/v1/monitors/{shop.id}/pause").status == 200
    shop.stream()
    assert api.post(f"/v1/monitors/{shop.id}/resume").status == 200
    shop.stream()
    assert shop.page() == "operational"  # paused, then pending: the page shows it as up

    shop.checks(minutes(t0, 3.5), ok=True)

    assert (shop.status(), shop.page()) == ("maintenance", "maintenance")
    assert shop.alerted() == []
