"""Incidents when regions disagree in time (issue 20): the same per-region check sequences make the same incidents
whatever order, and however late, their results arrive (within the hold cap).

A script gives each region one character a minute (``+`` up, ``-`` down, ``.`` no result), all regions checking the
same planned minute as the scheduler plans them.  :func:`deliver` applies the results in arrival order: region by
region delays, duplicates, and ties broken by a seed; :func:`incidents` reads back what was opened and resolved.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.incidents.state import (
    KNOWLEDGE_STEP,
    Event,
    MonitorState,
    Observation,
    Policy,
    apply,
    dump,
    hold_cap,
    load,
    maintenance_edge,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
REGIONS = ("us", "eu", "ap")
POLICY = Policy(REGIONS, failure_threshold=2, recovery_threshold=1, confirmation_regions=2, interval_seconds=60)


@dataclass(frozen=True)
class Outcome:
    opened: list[datetime]
    resolved: list[datetime]
    details: list[str]
    state: MonitorState


@dataclass
class Ledger:
    """The incidents events tell of, by identity (the moment each was first opened at): what the tracker stores."""

    starts: dict[datetime, datetime] = field(default_factory=dict)
    ends: dict[datetime, datetime] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)
    open_key: datetime | None = None

    def record(self, event: Event) -> None:
        if event.kind == "incident_opened":
            key = event.incident or event.at
            assert key not in self.starts, f"two incidents are one: {key}"
            self.starts[key] = event.at
            self.open_key = key
        elif event.kind == "incident_started":  # a late region's story: the incident began sooner
            key = event.incident if event.incident is not None else self.open_key
            assert key in self.starts, (key, self.starts)
            self.starts[key] = event.at
        elif event.kind == "incident_resolved":
            assert self.open_key is not None, "resolved with no incident open"
            self.ends[self.open_key] = event.at
            self.details.append(event.detail or "")
            self.open_key = None
        elif event.kind == "incident_revealed":  # found late: opened and resolved before anyone could know
            key = event.incident or event.at
            assert event.until is not None
            assert key not in self.starts, f"two incidents are one: {key}"
            self.starts[key] = event.at
            self.ends[key] = event.until

    @property
    def opened(self) -> list[datetime]:
        return sorted(self.starts.values())

    @property
    def resolved(self) -> list[datetime]:
        return sorted(self.ends.values())


def observations(script: dict[str, str]) -> list[Observation]:
    found = []
    for region, marks in script.items():
        for minute, mark in enumerate(marks):
            if mark == ".":
                continue
            planned = T0 + timedelta(minutes=minute)
            checked = planned + timedelta(seconds=1 + REGIONS.index(region))  # each region's own start offset
            found.append(
                Observation(
                    region, checked, ok=mark == "+", cause=None if mark == "+" else "HTTP 503", planned_at=planned
                )
            )
    return found


def deliver(
    script: dict[str, str],
    delays: dict[str, float] | None = None,
    *,
    duplicates: int = 0,
    seed: int = 0,
    round_trip: bool = True,
) -> Outcome:
    """Apply ``script``'s results in arrival order: each region's results arrive ``delays[region]`` minutes after
    their check (default 0), in order within a region; ``duplicates`` random results are delivered twice."""
    rng = random.Random(seed)
    delays = delays or {}
    arriving = []
    for obs in observations(script):
        arrival = obs.checked_at + timedelta(minutes=delays.get(obs.region, 0))
        arriving.append((arrival, rng.random(), obs))
    for _ in range(duplicates):
        if arriving:
            arrival, _, obs = rng.choice(arriving)
            arriving.append((arrival + timedelta(seconds=rng.randint(0, 300)), rng.random(), obs))
    state = MonitorState()
    ledger = Ledger()
    for _, _, obs in sorted(arriving, key=lambda a: (a[0], a[1])):
        state, events = apply(state, obs, POLICY)
        if round_trip:
            state = load(dump(state))  # as the handler stores it between batches
        for event in events:
            ledger.record(event)
    return Outcome(ledger.opened, ledger.resolved, ledger.details, state)


def minutes(*values: float) -> list[datetime]:
    return [T0 + timedelta(minutes=v) for v in values]


# One outage, as the three regions saw it: us and ap fail from minute 1 to 12 (down from 2, up at 13); eu only
# from 1 to 3 (down at 2, up at 4).  With a quorum of two, us and ap keep it after eu recovers: one incident, from
# minute 2 to minute 13.
OUTAGE = {
    "us": "+" + "-" * 12 + "+" * 5,
    "eu": "+---" + "+" * 14,
    "ap": "+" + "-" * 12 + "+" * 5,
}


def test_on_time_one_outage_is_one_incident() -> None:
    outcome = deliver(OUTAGE)
    assert outcome.opened == minutes(2)  # the planned check of minute 2 made the quorum, whoever told it first
    assert outcome.resolved == minutes(13)


@pytest.mark.parametrize("late", REGIONS)
@pytest.mark.parametrize("delay", [1, 2, 5])
def test_a_late_region_never_splits_the_outage(late: str, delay: int) -> None:
    """A region's results 1, 2 or 5 minutes late — during the outage and during the recovery — with duplicates:
    the same one incident, opened and resolved once, at the same moments."""
    on_time = deliver(OUTAGE)
    lagging = deliver(OUTAGE, {late: delay}, duplicates=6, seed=delay)
    assert lagging.opened == on_time.opened
    assert lagging.resolved == minutes(13)
    assert not lagging.state.incident_open


def test_the_held_recovery_is_what_keeps_it_one_incident() -> None:
    """The defect: ap 5 minutes late, eu recovers at 4, and us alone looked below the quorum — the incident
    resolved, then ap's failures opened a second one.  Now the recovery waits for ap, and ap was down."""
    outcome = deliver(OUTAGE, {"ap": 5})
    assert (len(outcome.opened), len(outcome.resolved)) == (1, 1)
    # Resolved at 13 as soon as ap's story reached 12 (down): at 13 us and eu are up, and ap alone is no quorum,
    # so the recovery is certain before ap's own recovery arrives.
    assert outcome.resolved == minutes(13)
    assert outcome.details == ["Recovered (confirmed in us, eu)"]


def test_a_silent_region_that_could_make_the_quorum_holds_the_recovery_only_until_the_cap() -> None:
    """us recovers at minute 4; eu is still down; ap has said nothing since minute 3 (it was down then).  With ap,
    eu could still be a quorum: the recovery waits — for the cap, then resolves, naming ap.  ap's last time may not
    have been kept before the hold began (``knowledge``), so it is given the cap plus KNOWLEDGE_STEP."""
    script = {"us": "----" + "+" * 26, "eu": "-" * 30, "ap": "----"}
    outcome = deliver(script)
    assert hold_cap(POLICY) == timedelta(minutes=10)
    assert timedelta(minutes=10) == KNOWLEDGE_STEP
    assert len(outcome.opened) == 1
    [resolved] = outcome.resolved
    silent_from = T0 + timedelta(minutes=3)
    assert resolved == silent_from + timedelta(minutes=21)  # the first check over 20 minutes past its last
    assert outcome.details == ["Recovered (confirmed in us); no result in time from ap"]
    # ap's results arrive at last, 25 minutes late: its failures from before the resolution reopen nothing.
    late = deliver({**script, "ap": "-" * 22}, {"ap": 25})
    assert (len(late.opened), len(late.resolved)) == (1, 1)


def test_a_region_timed_out_resolves_the_recovery_though_the_one_that_recovered_trails_the_others() -> None:
    """test_a_silent_region_that_could_make_the_quorum_holds_the_recovery_only_until_the_cap, with us (the region
    that recovered) three minutes late for two hours (found by a fresh-eyes review of issue 20).  ap is timed out
    at 21 as on time; the recovery was looked for only at the latest moment any region told of (eu's, down), where
    us, three minutes behind, is unknown — at every result, for as long as us trails: the incident stayed open.  At
    us's own moment, ap is timed out as of that moment: resolved at 24, as on time."""
    script = {"us": "----" + "+" * 120, "eu": "-" * 124, "ap": "----"}
    on_time = deliver(script)
    assert on_time.resolved == minutes(24)
    late = deliver(script, {"us": 3})
    assert late.resolved == on_time.resolved  # not at the first moment ap's silence passed the cap by eu's clock
    assert late.details == on_time.details


def test_a_region_that_cannot_tip_the_quorum_is_not_waited_for() -> None:
    """ap falls silent at minute 3, but us and eu are both up then: ap alone is no quorum, so nothing is held."""
    script = {"us": "---" + "+" * 6, "eu": "---" + "+" * 6, "ap": "---"}
    outcome = deliver(script)
    assert outcome.resolved == minutes(3)
    assert outcome.details == ["Recovered (confirmed in us, eu)"]


def test_a_stale_down_never_opens_an_outage_that_did_not_happen() -> None:
    """eu was down from minute 2 to 4 and up after; us goes down at minute 7.  They never overlapped: no incident,
    even when eu's results arrive late (its last word, 'down', looked current)."""
    script = {"us": "+++++++-----", "eu": "+---+++++++", "ap": "++++++++++++"}
    assert deliver(script).opened == []
    for delay in (1, 3, 6):
        assert deliver(script, {"eu": delay}).opened == [], delay


def test_a_late_region_that_overlapped_opens_the_incident_it_makes_and_resolves_it() -> None:
    """us was down from minute 2 to 5; eu's results, 8 minutes late, show it down from 3 to 4: in check time the
    quorum held at minute 3 and 4.  The incident opens when eu's story arrives, and resolves with it."""
    script = {"us": "+---++++++++++", "eu": "++---+++++++++", "ap": "++++++++++++++"}
    on_time = deliver(script)
    assert len(on_time.opened) == 1
    late = deliver(script, {"eu": 8})
    assert late.opened == on_time.opened
    assert late.resolved == on_time.resolved


def test_a_late_region_moves_a_resolved_incidents_start_back() -> None:
    """us down from 0 to 3, five minutes late; eu down 0..3 and ap 2..3 on time.  Without us, eu and ap make the
    quorum at 3 only, and recover at 4: the incident [3, 4) is resolved before us's story arrives, which shows the
    quorum (us, eu) down from 1.  The resolved incident's start moves back to 1: one incident, as on time."""
    script = {"us": "----", "eu": "----+", "ap": "-+--+"}
    on_time = deliver(script, round_trip=False)
    assert (on_time.opened, on_time.resolved) == (minutes(1), minutes(4))
    late = deliver(script, {"us": 5})
    assert (late.opened, late.resolved) == (minutes(1), minutes(4))


def test_an_earlier_outage_only_a_late_region_shows_is_found_late() -> None:
    """On time: us and ap down at 1 (an incident), us back at 2 (resolved), eu and ap down at 3 (a second).  ap's
    results three minutes late: the second opens first, at 4 (us and eu), then ap's story shows the first quorum
    — over before anyone could know — found late and recorded, and moves the open one's start back to 3."""
    script = {"us": "--+--", "eu": "-+---", "ap": "----"}
    on_time = deliver(script, round_trip=False)
    assert (on_time.opened, on_time.resolved) == (minutes(1, 3), minutes(2))
    events = []
    state = MonitorState()
    for obs in sorted(observations(script), key=lambda o: o.checked_at + timedelta(minutes=3 * (o.region == "ap"))):
        state, found = apply(state, obs, POLICY)
        events += found
    revealed = [e for e in events if e.kind == "incident_revealed"]
    assert [(e.at, e.until, sorted(e.regions)) for e in revealed] == [(*minutes(1, 2), ["ap", "us"])]
    late = deliver(script, {"ap": 3})
    assert (late.opened, late.resolved) == (on_time.opened, on_time.resolved)


def test_a_late_story_never_joins_two_outages_across_a_break_it_has_not_told_yet() -> None:
    """eu five minutes late: down at 1, back at 2.  Its first result (down at 1) arrives after [3, 4) was decided;
    at 2 it is still unknown, so the incident's start waits for the rest of eu's story (up at 2: two outages),
    instead of moving back across the gap."""
    script = {"us": "----+", "eu": "--+-", "ap": "-+--+"}
    on_time = deliver(script, round_trip=False)
    assert (on_time.opened, on_time.resolved) == (minutes(1, 3), minutes(2, 4))
    late = deliver(script, {"eu": 5})
    assert (late.opened, late.resolved) == (on_time.opened, on_time.resolved)


def test_the_later_outage_told_first_and_the_earlier_found_late_are_two_incidents() -> None:
    """ap two minutes late: the later outage opens first (at 4: us and eu), then ap's story shows the earlier one
    (2 to 3: eu and ap), over before it arrived: found late, an incident of its own (``Ledger`` fails on one id for
    two), as on time."""
    script = {"us": "-++--", "eu": "+----", "ap": "---+"}
    late = deliver(script, {"ap": 2})
    assert (late.opened, late.resolved) == (minutes(2, 4), minutes(3))
    on_time = deliver(script, round_trip=False)
    assert (late.opened, late.resolved) == (on_time.opened, on_time.resolved)


def test_a_recovery_is_decided_as_soon_as_it_is_certain_whatever_result_arrives_last() -> None:
    """eu two minutes late and silent after 7 (its last result: down).  At 8 us and ap are up, and eu alone is
    no quorum: resolved at 8 when eu's 7 arrives, as on time (the decision looked only as far as the late result's
    own moment, and waited for eu's 8 that never came)."""
    script = {"us": "-------+-", "eu": "--------", "ap": "--------+"}
    on_time = deliver(script, round_trip=False)
    assert on_time.resolved == minutes(8)
    assert deliver(script, {"eu": 2}).resolved == minutes(8)


scripts = st.fixed_dictionaries({region: st.text(alphabet="+-", min_size=4, max_size=24) for region in REGIONS})
lags = st.fixed_dictionaries({region: st.sampled_from([0, 0, 0.5, 1, 2, 3, 5, 8]) for region in REGIONS})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(script=scripts, delays=lags, duplicates=st.integers(0, 4), seed=st.integers(0, 1000))
def test_the_incidents_depend_only_on_the_check_time_sequences(
    script: dict[str, str], delays: dict[str, float], duplicates: int, seed: int
) -> None:
    """Any arrival order of the same per-region sequences (each region late by less than the hold cap, duplicates
    mixed in, regions falling silent at different moments) opens and resolves the same incidents, at the same
    moments, as the sequences delivered on time."""
    on_time = deliver(script, round_trip=False)
    late = deliver(script, delays, duplicates=duplicates, seed=seed)
    assert (late.opened, late.resolved) == (on_time.opened, on_time.resolved)


def test_an_outage_found_late_never_lands_inside_the_window_the_monitor_is_in() -> None:
    """Four regions, quorum 2 (found by a fresh-eyes review of issue 20).  us and ca open an incident at 4; at 4.5 a
    window is made from 2 (its start in the past).  ap's results, five minutes late, show ap down with us at 2 (back
    at 3): checked inside the window, they decide nothing.  eu's result of minute 0, eight minutes late, is checked
    before the window and decides what happened before it — never a moment inside it: no outage found late at 2."""
    regions = ("us", "ca", "ap", "eu")
    policy = Policy(regions, failure_threshold=1, recovery_threshold=1, confirmation_regions=2, interval_seconds=60)
    script = {"us": "++-+---", "ca": "++++---", "ap": "++-+++", "eu": "++++++"}
    lags = {"us": 0, "ca": 0, "ap": 5, "eu": 8}
    window, made = (T0 + timedelta(minutes=2), T0 + timedelta(minutes=30)), T0 + timedelta(minutes=4.5)
    arriving: list[tuple[datetime, Observation | None]] = [(made, None)]
    for region, marks in script.items():
        for m, mark in enumerate(marks):
            planned = T0 + timedelta(minutes=m)
            checked = planned + timedelta(seconds=1)
            arriving.append(
                (
                    checked + timedelta(minutes=lags[region]),
                    Observation(
                        region, checked, mark == "+", cause=None if mark == "+" else "HTTP 503", planned_at=planned
                    ),
                )
            )
    state, told = MonitorState(), []
    for arrival, o in sorted(arriving, key=lambda a: a[0]):
        if o is None:
            state, events = maintenance_edge(state, policy, made, window)
        else:
            covered = window if window[0] <= o.checked_at < window[1] and arrival >= made else None
            state, events = apply(state, o, policy, window=covered)
        told += events
    assert [e.at for e in told if e.kind == "incident_opened"] == [T0 + timedelta(minutes=4)]
    assert [(e.at, e.until) for e in told if e.kind == "incident_revealed"] == []


def test_a_quorum_lowered_after_an_outage_never_finds_old_advisories_late() -> None:
    """us alone down from 0 to 3 (an advisory under a quorum of 2), then an outage in us and eu from 5 to 7.  The
    quorum is then lowered to 1: under it us's old advisory would be an outage, and a late story's reading of the
    past (point 4c) found it "late" and alerted it (found by a fresh-eyes review of issue 20).  The past keeps the
    quorum it was decided with."""
    script = {"us": "----+-----" + "+" * 5, "eu": "+++++--+++" + "+" * 5, "ap": "+" * 15}
    state = MonitorState()
    events = []
    for obs in sorted(observations(script), key=lambda o: o.checked_at):
        state, found = apply(state, obs, POLICY)
        events += found
    assert [(e.kind, e.at) for e in events if e.kind.startswith("incident")] == [
        ("incident_opened", T0 + timedelta(minutes=6)),
        ("incident_resolved", T0 + timedelta(minutes=7)),
    ]
    lowered = replace(POLICY, confirmation_regions=1)
    after = T0 + timedelta(minutes=15)
    state, found = apply(state, Observation("us", after + timedelta(seconds=1), True, planned_at=after), lowered)
    assert [e.kind for e in found if e.kind.startswith("incident")] == []
    state = load(dump(state))
    state, found = apply(state, Observation("eu", after + timedelta(seconds=2), True, planned_at=after), lowered)
    assert [e.kind for e in found if e.kind.startswith("incident")] == []


@pytest.mark.parametrize(
    ("script", "now"),
    [
        # us alone down from 1 to 4, no incident ever
        ({"us": "+---+++", "eu": "+" * 7, "ap": "+" * 7}, 7),
        # an outage from 2 to 3 (kept as an episode), then us alone down from 7 to 8: after the last episode
        ({"us": "++++++--++", "eu": "+--+++++++", "ap": "+--+++++++"}, 10),
        # us alone down from 1 to 4, then an outage in us and eu from 6, still open: before the open incident
        ({"us": "+---+------", "eu": "++++++-----", "ap": "+" * 11}, 11),
    ],
    ids=["no-incident", "after-the-last-episode", "before-the-open-incident"],
)
def test_a_quorum_lowered_never_finds_old_advisories_outages_wherever_they_are(
    script: dict[str, str], now: int
) -> None:
    """The case of the test above where no kept episode follows the advisory: none at all, the advisory after the
    last one, or before the incident open now.  The advisory was decided under the quorum of its time: lowered to
    1, it was opened and resolved in the past (or found late), and alerted (found by a fresh-eyes review)."""
    state = MonitorState()
    for obs in sorted(observations(script), key=lambda o: o.checked_at):
        state, _ = apply(state, obs, POLICY)
    before = state
    lowered = replace(POLICY, confirmation_regions=1)
    at = T0 + timedelta(minutes=now)
    told = []
    for offset, region in enumerate(REGIONS):
        obs = Observation(region, at + timedelta(seconds=1 + offset), script[region][-1] == "+", planned_at=at)
        state, found = apply(load(dump(state)), obs, lowered)
        told += found
    assert [(e.kind, e.at) for e in told if e.kind.startswith("incident")] == []
    assert state.incident_open == before.incident_open


def test_a_quorum_lowered_while_a_region_is_down_opens_at_the_first_moment_under_it() -> None:
    """us alone down from 1 on (an advisory under a quorum of 2); the quorum lowered to 1: the outage opens at the
    first moment told under it, not back at 1 (decided an advisory then)."""
    script = {"us": "+-----", "eu": "+" * 6, "ap": "+" * 6}
    state = MonitorState()
    for obs in sorted(observations(script), key=lambda o: o.checked_at):
        state, _ = apply(state, obs, POLICY)
    lowered = replace(POLICY, confirmation_regions=1)
    at = T0 + timedelta(minutes=6)
    told = []
    for offset, region in enumerate(REGIONS):
        obs = Observation(region, at + timedelta(seconds=1 + offset), region != "us", cause="HTTP 503", planned_at=at)
        state, found = apply(state, obs, lowered)
        told += found
    assert [(e.kind, e.at) for e in told if e.kind.startswith("incident")] == [("incident_opened", at)]
