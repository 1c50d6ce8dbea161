"""Change notes (``monitors.watching``): every write that can change what a check worker does with a planned job
leaves a note, and a worker's feed finds the notes written since its tick — and only those."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import time_machine

from chalicelib.clock import isoz, utcnow
from chalicelib.monitors.models import ChangeModel
from chalicelib.monitors.watching import KEEP, MARGIN, MAX_NOTES, OVERLAP, Feed, note, note_one
from tests.factories import create_monitor
from tests.packed import reads
from tests.support import recover

NOON = datetime(2026, 12, 6, 12, 0, 30, tzinfo=UTC)


def noted_since(since: datetime) -> set[str]:
    return {monitor_id for _, monitor_id in Feed(since).refresh()}


def test_a_feed_finds_the_notes_since_its_tick_and_not_before(aws):
    with time_machine.travel(NOON - MARGIN - timedelta(seconds=1), tick=False):
        note_one("team_a", "mon_before")
    with time_machine.travel(NOON - MARGIN + timedelta(seconds=1), tick=False):
        note_one("team_a", "mon_at_the_tick")  # within the margin: the index's copy may not have had it yet
    with time_machine.travel(NOON + timedelta(seconds=50), tick=False):
        note([("team_a", "mon_later"), ("team_b", "mon_other_team")])
    with time_machine.travel(NOON + timedelta(minutes=1, seconds=10), tick=False):
        note_one("team_a", "mon_next_minute")

    feed = Feed(NOON)
    found = feed.refresh(now=NOON + timedelta(minutes=1, seconds=20))

    assert found == {
        ("team_a", "mon_at_the_tick"),
        ("team_a", "mon_later"),
        ("team_b", "mon_other_team"),
        ("team_a", "mon_next_minute"),
    }
    [item] = [i for i in ChangeModel.query("2026-12-06T12:01") if i.key.endswith("#mon_next_minute")]
    assert item.key == "2026-12-06T12:01:40.000000#team_a#mon_next_minute"
    assert item.expires_at == NOON + timedelta(minutes=1, seconds=10) + KEEP


def test_a_refresh_adds_what_landed_since_even_a_note_stamped_just_before_the_last_read(aws):
    feed = Feed(NOON)
    with time_machine.travel(NOON + timedelta(seconds=5), tick=False):
        note_one("team_a", "mon_first")
    assert feed.refresh(now=NOON + timedelta(seconds=20)) == {("team_a", "mon_first")}

    # Stamped before that read, landed after it (a slow write): still within the overlap.
    with time_machine.travel(NOON + timedelta(seconds=20) - OVERLAP + timedelta(seconds=1), tick=False):
        note_one("team_a", "mon_slow")
    with time_machine.travel(NOON + timedelta(seconds=40), tick=False):
        note_one("team_a", "mon_second")

    assert feed.refresh(now=NOON + timedelta(seconds=45)) == {
        ("team_a", "mon_first"),
        ("team_a", "mon_slow"),
        ("team_a", "mon_second"),
    }


def test_every_api_write_a_worker_must_know_of_is_noted(api, alice):
    team = alice["team"]["id"]
    paused, resumed, edited, deleted, windowed, untouched = (
        create_monitor(api, name=name) for name in ("paused", "resumed", "edited", "deleted", "windowed", "untouched")
    )
    assert api.post(f"/v1/monitors/{resumed['id']}/pause").status == 200
    since = utcnow()

    assert api.post(f"/v1/monitors/{paused['id']}/pause").status == 200
    assert api.post(f"/v1/monitors/{resumed['id']}/resume").status == 200
    assert api.patch(f"/v1/monitors/{edited['id']}", {"regions": ["eu-west-1"]}).status == 200
    assert api.delete(f"/v1/monitors/{deleted['id']}").status == 204
    starts = utcnow().replace(microsecond=0) + timedelta(hours=1)
    window = {
        "title": "Upgrade",
        "monitor_ids": [windowed["id"]],
        "starts_at": isoz(starts),
        "ends_at": isoz(starts + timedelta(hours=1)),
    }
    assert api.post("/v1/maintenance-windows", window).status == 201

    assert noted_since(since + MARGIN) == {m["id"] for m in (paused, resumed, edited, deleted, windowed)}
    assert untouched["id"] not in noted_since(since - MARGIN)
    assert {t for t, _ in Feed(since + MARGIN).refresh()} == {team}


def test_the_incident_handler_notes_a_write_only_when_it_moves_what_marks_results(api, alice):
    from chalicelib.incidents.tracker import Result, apply_results

    m = create_monitor(api, failure_threshold=3)
    team = alice["team"]["id"]
    first = utcnow().replace(microsecond=0)
    recover(team, m["id"], first)  # pending -> up, every region steady: noted
    since = utcnow()

    # Another up check everywhere changes nothing that marks results: not noted.
    recover(team, m["id"], first + timedelta(minutes=1))
    assert noted_since(since + MARGIN) == set()

    # A first failure below the threshold: its region is no longer steady.
    def fail(minute: int) -> None:
        failure = Result(team, m["id"], "eu-west-1", first + timedelta(minutes=minute), ok=False)
        apply_results(team, m["id"], [failure], utcnow())

    fail(2)
    assert noted_since(since + MARGIN) == {m["id"]}

    # A second failure there is written (its count moved) but marks nothing differently: not noted.
    since = utcnow()
    fail(3)
    assert noted_since(since + MARGIN) == set()


def test_a_deleted_teams_monitors_are_noted(api, alice):
    from chalicelib.monitors.service import purge_team

    monitors = [create_monitor(api, name=f"m{i}") for i in range(3)]
    since = utcnow()

    purge_team(alice["team"]["id"])

    assert noted_since(since + MARGIN) == {m["id"] for m in monitors}


def test_a_storm_of_notes_overflows_the_feed_after_a_bounded_read(aws):
    """Past ``MAX_NOTES`` a feed stops telling monitors apart (its worker then looks every job up, as before notes):
    a tenant saving windows in a loop, or a regional outage's status changes, cannot make each refresh read more."""
    tick = NOON
    with time_machine.travel(tick + timedelta(seconds=5), tick=False):
        note([("team_noisy", f"mon_{n:05d}") for n in range(MAX_NOTES + 1)])
    feed = Feed(tick)
    with reads(ChangeModel) as seen:  # what DynamoDB answered (the network seam)
        for step in range(5):
            feed.refresh(now=tick + timedelta(seconds=10 + 3 * step))

    assert feed.blind
    # The first refresh read a page of MAX_NOTES and one more note; the others read nothing.
    assert sum(r.items for r in seen) <= 2 * MAX_NOTES
    assert len(seen) == 2


def test_a_note_lands_within_the_feeds_overlap_or_not_at_all():
    """A note is stamped before it is written: its write's whole budget (retries included) fits in the overlap a
    refresh reads again, or a note landing late would be missed for good."""
    meta = ChangeModel.Meta
    worst = (1 + meta.max_retry_attempts) * (meta.connect_timeout_seconds + meta.read_timeout_seconds)

    assert timedelta(seconds=worst) <= OVERLAP
