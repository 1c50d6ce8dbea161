"""The incident state machine as tables of cases: quorum, advisories, thresholds, flapping, order, maintenance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.incidents.state import (
    MonitorState,
    Observation,
    Policy,
    apply,
    down_regions,
    dump,
    load,
    material,
    steady_regions,
)

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
THREE = ("us", "eu", "ap")


def run(policy: Policy, script: str, *, maintenance: set[int] | None = None):
    """``script``: one step per minute, each ``<region><+|-|~>`` separated by spaces ("us- eu- ap+ us~").
    ``-`` fails, ``+`` succeeds, ``~`` succeeds slowly (degraded); ``maintenance``: the minutes a window covers (one
    window, from the first to the end of the last).  Returns the final state and the event kinds."""
    state = MonitorState()
    kinds = []
    minutes = sorted(maintenance or ())
    window = (T0 + timedelta(minutes=minutes[0]), T0 + timedelta(minutes=minutes[-1] + 1)) if minutes else None
    for minute, step in enumerate(script.split()):
        region, mark = step[:-1], step[-1]
        obs = Observation(
            region, T0 + timedelta(minutes=minute), ok=mark != "-", degraded=mark == "~", cause="HTTP 503"
        )
        state, events = apply(state, obs, policy, window=window if minute in minutes else None)
        kinds += [e.kind for e in events if e.kind != "status_changed"]
    return state, kinds


@pytest.mark.parametrize(
    ("policy", "script", "status", "kinds"),
    [
        # 2 of 3 regions down (2 failures each) → one incident
        (Policy(THREE), "us- eu- us- eu-", "down", ["region_down", "region_down", "incident_opened"]),
        # 1 of 3 down stays an advisory: a region is down, the monitor is not
        (Policy(THREE), "us- us- us- eu+ ap+", "up", ["region_down"]),
        # one failure is below the threshold: nothing
        (Policy(THREE), "us- eu- us+ eu+", "up", []),
        # recovery threshold 2: one success is not enough
        (
            Policy(THREE, recovery_threshold=2),
            "us- eu- us- eu- us+",
            "down",
            ["region_down", "region_down", "incident_opened"],
        ),
        (
            Policy(THREE, recovery_threshold=2),
            "us- eu- us- eu- us+ us+",
            "up",
            ["region_down", "region_down", "incident_opened", "region_up", "incident_resolved"],
        ),
        # flapping (alternating) never reaches the failure threshold
        (Policy(THREE), " ".join(["us- eu- us+ eu+"] * 10), "up", []),
        # quorum of 1 with a single region
        (
            Policy(("us",), failure_threshold=1, confirmation_regions=1),
            "us- us- us+",
            "up",
            ["region_down", "incident_opened", "region_up", "incident_resolved"],
        ),
        # a slow success is degraded, not down, and recovers on a fast one
        (Policy(THREE), "us~ us+", "up", ["degraded", "degraded_recovered"]),
        (Policy(THREE), "us~", "degraded", ["degraded"]),
        # results for a region the monitor no longer has are ignored
        (Policy(("us", "eu")), "ap- ap- ap-", "pending", []),
    ],
)
def test_transitions(policy, script, status, kinds):
    state, seen = run(policy, script)
    assert state.status == status
    assert seen == kinds


def test_one_outage_opens_one_incident_however_long_it_lasts():
    _, kinds = run(Policy(THREE), " ".join(["us- eu- ap-"] * 20))
    assert kinds.count("incident_opened") == 1
    assert kinds.count("incident_resolved") == 0


def test_duplicates_and_late_results_change_nothing():
    policy = Policy(THREE)
    state = MonitorState()
    late = Observation("us", T0, ok=False)
    for minute, ok in enumerate([False, False]):
        for region in ("us", "eu"):
            state, _ = apply(state, Observation(region, T0 + timedelta(minutes=minute + 1), ok=ok), policy)
    assert state.incident_open
    for minute in (3, 4):
        for region in ("us", "eu"):
            state, _ = apply(state, Observation(region, T0 + timedelta(minutes=minute), ok=True), policy)
    assert not state.incident_open
    # a replay of an old failing result, and a duplicate of the last success: nothing reopens
    for obs in (
        late,
        Observation("us", T0 + timedelta(minutes=1), ok=False),
        Observation("us", T0 + timedelta(minutes=4), ok=True),
    ):
        again, events = apply(state, obs, policy)
        assert (again, events) == (state, [])


def test_maintenance_opens_nothing_and_an_outage_still_there_after_it_opens_then():
    policy = Policy(THREE)
    script = "us- eu- us- eu- us- eu-"
    state, kinds = run(policy, script, maintenance={0, 1, 2, 3})
    assert kinds == ["region_down", "region_down", "incident_opened"]
    state, kinds = run(policy, script, maintenance={0, 1, 2, 3, 4, 5})
    assert state.status == "maintenance"
    assert "incident_opened" not in kinds
    assert down_regions(state, policy) == ["us", "eu"]


def test_the_status_follows_the_regions():
    policy = Policy(THREE)
    state = MonitorState()
    assert state.status == "pending"
    state, events = apply(state, Observation("us", T0, ok=True), policy)
    assert state.status == "up"
    assert [e.detail for e in events if e.kind == "status_changed"] == ["up"]
    assert state.region("us").label == "up"
    assert state.region("eu").label == "pending"


def test_a_late_result_from_another_region_never_reopens_a_resolved_outage():
    """us and eu fail, the incident opens, both recover at 10:05; ap's failures from 10:02-10:03 arrive late."""
    policy = Policy(THREE)
    state = MonitorState()
    at = [T0 + timedelta(minutes=m) for m in range(8)]
    for minute in (0, 1):
        for region in ("us", "eu"):
            state, _ = apply(state, Observation(region, at[minute], ok=False), policy)
    assert state.incident_open
    state, _ = apply(state, Observation("us", at[5], ok=True), policy)
    assert not state.incident_open
    assert state.last_resolved_at == at[5]
    kinds = []
    for minute in (2, 3):  # late: checked before the resolution, delivered after it
        state, events = apply(state, Observation("ap", at[minute], ok=False), policy)
        kinds += [e.kind for e in events]
    assert kinds == ["region_down"]  # ap is down and eu still is: the quorum holds, but only in the past
    assert not state.incident_open
    # a failure checked after the resolution, with the quorum still there, is a new outage
    state, events = apply(state, Observation("ap", at[6], ok=False), policy)
    assert [e.kind for e in events] == ["incident_opened", "status_changed"]


def test_the_stored_form_round_trips():
    state, _ = run(Policy(THREE), "us- eu- us- eu- us+ ap~")
    assert state.regions
    assert state.last_resolved_at is not None
    assert load(dump(state)) == state
    assert load(None) == MonitorState()


def test_slowness_in_a_maintenance_window_is_not_degraded_and_is_told_after_it():
    policy = Policy(THREE)
    state, kinds = run(policy, "us~ us~ us~", maintenance={0, 1})
    assert kinds == ["degraded"]  # only the slow result after the window
    assert state.status == "degraded"


def test_a_failure_long_after_its_regions_last_one_starts_a_new_run() -> None:
    """The up checks between were not marked (``checks.marking``): two failures 3 minutes apart at a 60 s interval
    are not consecutive, so they never take the region down; a minute apart they do."""
    policy = Policy(("us",), failure_threshold=2, confirmation_regions=1, interval_seconds=60)

    def fail(state: MonitorState, minute: int) -> MonitorState:
        return apply(state, Observation("us", T0 + timedelta(minutes=minute), ok=False, cause="timeout"), policy)[0]

    apart = fail(fail(MonitorState(), 0), 3)
    assert apart.region("us").failures == 1
    assert not apart.region("us").down
    assert fail(fail(MonitorState(), 0), 1).region("us").down
    # Without the interval (a policy that does not know it) the run is not broken.
    unknown = Policy(("us",), failure_threshold=2, confirmation_regions=1)
    state = apply(MonitorState(), Observation("us", T0, ok=False), unknown)[0]
    assert apply(state, Observation("us", T0 + timedelta(minutes=3), ok=False), unknown)[0].region("us").down
    # A region already down stays down, however far apart its failures are.
    down = fail(fail(MonitorState(), 0), 1)
    assert fail(down, 10).region("us").down


def test_what_is_material_ignores_the_check_time_and_an_up_regions_successes() -> None:
    """An up check in a steady region, or another failure of a region already down, changes nothing that needs
    writing; a first failure, a recovery step, a status change do."""
    policy = Policy(("us", "eu"), failure_threshold=2, recovery_threshold=2, confirmation_regions=1)

    def step(state: MonitorState, minute: int, region: str, ok: bool) -> MonitorState:
        obs = Observation(region, T0 + timedelta(minutes=minute), ok=ok, cause="HTTP 503")
        return apply(state, obs, policy)[0]

    up = step(step(MonitorState(), 0, "us", True), 0, "eu", True)
    assert steady_regions(up, policy) == ["us", "eu"]
    assert material(step(up, 1, "us", True)) == material(up)
    failing = step(up, 1, "us", False)
    assert material(failing) != material(up)
    assert steady_regions(failing, policy) == ["eu"]
    down = step(failing, 2, "us", False)
    assert material(down) != material(failing)
    assert material(step(down, 3, "us", False)) == material(down)
    recovering = step(down, 3, "us", True)
    assert material(recovering) != material(down)  # one of the two successes a recovery needs
    assert steady_regions(recovering, policy) == ["eu"]
    assert steady_regions(step(recovering, 4, "us", True), policy) == ["us", "eu"]


def test_a_late_start_never_breaks_a_run_of_failures() -> None:
    """The gap is measured between planned starts: a check of the next slot that a busy worker started 40 s late
    (or 16 s late, every 30 s) still follows the last failure, and takes the region down."""
    for interval, late in ((60, 40), (30, 16)):
        policy = Policy(("us",), failure_threshold=2, confirmation_regions=1, interval_seconds=interval)
        first = Observation("us", T0, ok=False, cause="HTTP 503", planned_at=T0)
        planned = T0 + timedelta(seconds=interval)
        second = Observation("us", planned + timedelta(seconds=late), ok=False, cause="HTTP 503", planned_at=planned)
        state = apply(apply(MonitorState(), first, policy)[0], second, policy)[0]
        assert state.region("us").down, (interval, late)
        # Two planned starts apart (an up check between went unseen): a new run.
        skipped = T0 + timedelta(seconds=2 * interval)
        third = Observation("us", skipped, ok=False, cause="HTTP 503", planned_at=skipped)
        assert apply(apply(MonitorState(), first, policy)[0], third, policy)[0].region("us").failures == 1
        assert load(dump(state)).region("us").last_planned_at == planned
