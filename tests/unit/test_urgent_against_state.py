"""checks.marking.urgent() against the incident state machine (incidents.state.apply), its oracle: a result is
urgent when applying it can move the monitor's status (found by a fresh-eyes review: three cases were wrong)."""

from __future__ import annotations

from datetime import timedelta

from chalicelib.checks.marking import Watch, urgent
from chalicelib.incidents.state import MonitorState, Observation, Policy, apply, steady_regions
from tests.unit.test_marking import AT, check

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
POLICY = Policy(regions=REGIONS, failure_threshold=2, recovery_threshold=1, confirmation_regions=2, interval_seconds=60)


def run(results: list[tuple[str, bool, bool]], *, maintenance_until=None, together: int = 1) -> MonitorState:
    """Fold (region, ok, degraded) results a minute apart (``together`` of them share each minute's slot, as the
    regions' checks of one slot do), from AT - len minutes on."""
    state = MonitorState()
    start = AT - timedelta(minutes=len(results) // together)
    window = (start, maintenance_until) if maintenance_until is not None else None
    for i, (region, ok, slow) in enumerate(results):
        at = start + timedelta(minutes=i // together)
        obs = Observation(region, at, ok, slow, planned_at=at)
        state, _ = apply(state, obs, POLICY, window=window if window is not None and at < window[1] else None)
    return state


def watch_of(state: MonitorState, **extra) -> Watch:
    """What the worker's look-up reads of what the incident handler wrote for ``state``."""
    down = frozenset(r for r in REGIONS if state.region(r).down)
    return Watch(
        status=state.status,
        steady_regions=frozenset(steady_regions(state, POLICY)),
        down_regions=down,
        regions=frozenset(r for r in REGIONS if r in state.regions),
        known=True,
        **extra,
    )


def moves_status(state: MonitorState, region: str, ok: bool, slow: bool = False) -> bool:
    after, events = apply(state, Observation(region, AT, ok, slow, planned_at=AT), POLICY)
    return after.status != state.status or any(e.kind in ("incident_opened", "incident_resolved") for e in events)


def test_a_slow_recovery_of_a_monitor_down_is_urgent():
    """Down in two regions; the site comes back, slowly (as sites do after an outage): the incident resolves and the
    status moves down -> degraded.  urgent() must say yes, or the recovery is announced up to PACK_FLUSH_S late."""
    down = run(
        [("us-east-1", False, False), ("eu-west-1", False, False), ("ap-southeast-1", True, False)] * 2, together=3
    )
    assert down.status == "down"
    # eu's check of the slot is up: the other regions' are awaited (each is vouched for until its next check)
    held = apply(down, Observation("eu-west-1", AT, True, False, planned_at=AT), POLICY)[0]
    assert held.status == "down"
    assert moves_status(held, "us-east-1", ok=True, slow=True)  # incident_resolved, status -> degraded
    assert urgent(check(ok=True, degraded=True, region="us-east-1"), watch_of(down))


def test_a_region_down_below_quorum_does_not_make_every_failure_urgent():
    """One region of three down for good (a geo-block, a firewall): the monitor stays up with an advisory, and
    another failure there changes nothing.  urgent() must say no, or it is a pack (a write) per check, forever."""
    advisory = run([("us-east-1", True, False), ("eu-west-1", True, False)] + [("ap-southeast-1", False, False)] * 3)
    assert advisory.status == "up"
    assert advisory.region("ap-southeast-1").down
    assert not moves_status(advisory, "ap-southeast-1", ok=False)
    assert not urgent(check(ok=False, region="ap-southeast-1"), watch_of(advisory))


def test_a_region_down_below_quorum_is_urgent_while_another_counts_failures():
    """ap down below the quorum (an advisory); eu's first failure is counted.  ap's next failure is the word the
    opening waits on (eu down at its second failure, with ap vouched for at that moment): urgent() must say yes,
    or the outage is alerted up to PACK_FLUSH_S late (found by a fresh-eyes review: 40 s since session 15)."""
    advisory = run([("us-east-1", True, False), ("eu-west-1", True, False)] + [("ap-southeast-1", False, False)] * 3)
    forming = apply(advisory, Observation("eu-west-1", AT, False, planned_at=AT), POLICY)[0]
    assert forming.status == "up"
    assert forming.region("eu-west-1").failures == 1
    assert "eu-west-1" not in steady_regions(forming, POLICY)
    assert urgent(check(ok=False, region="ap-southeast-1"), watch_of(forming))
    later = AT + timedelta(minutes=1)
    waiting = apply(forming, Observation("eu-west-1", later, False, planned_at=later), POLICY)[0]
    assert (waiting.region("eu-west-1").down, waiting.status) == (True, "up")  # ap's word of that moment awaited
    assert apply(waiting, Observation("ap-southeast-1", later, False, planned_at=later), POLICY)[0].status == "down"
    # the same failure while every other region is steady: no quorum can form, no hurry
    assert not urgent(check(ok=False, region="ap-southeast-1"), watch_of(advisory))


def test_the_first_result_after_a_maintenance_window_no_tick_crossed_is_urgent():
    """Down through a maintenance window (no incident may open in it); the window ends between two ticks, and the
    look-up still reads status 'maintenance'.  The first result past the end crosses it: the regions last said
    down, so the incident opens at the end.  urgent() must say yes, or the outage is alerted up to PACK_FLUSH_S
    late (the worker has the window's span)."""
    ended = AT - timedelta(seconds=10)
    state = run([("us-east-1", False, False), ("eu-west-1", False, False)] * 2, maintenance_until=ended, together=2)
    assert state.status == "maintenance"
    assert not state.incident_open
    assert len([r for r in REGIONS if state.region(r).down]) == 2
    assert moves_status(state, "eu-west-1", ok=False)  # the window's end crossed: incident_opened, status -> down
    assert moves_status(state, "us-east-1", ok=True)  # the same, whatever the result says
    watch = watch_of(state, maintenance=((ended - timedelta(hours=1), ended),))
    assert not watch.in_maintenance(AT)
    assert urgent(check(ok=False, region="us-east-1"), watch)
    assert urgent(check(ok=False, region="eu-west-1"), watch)


def test_what_the_handler_wrote_on_a_monitor_tells_the_worker_every_region():
    """The worker's watch is read from the monitor item (``monitors.watching.watch_of``), as the tick reads it and
    as a change note's re-read does: it must carry every region, or no advisory's failure is ever urgent."""
    from types import SimpleNamespace

    from chalicelib.monitors.watching import watch_of as read_watch

    item = SimpleNamespace(
        maintenance=None,
        region_status={"us-east-1": "up", "eu-west-1": "up", "ap-southeast-1": "down"},
        status="up",
        steady_regions=["us-east-1"],
        ssl_expiry_alert_days=0,
    )
    watch = read_watch(item)
    assert watch.regions == frozenset(REGIONS)
    assert urgent(check(ok=False, region="ap-southeast-1"), watch)  # eu counts failures: a quorum may form
