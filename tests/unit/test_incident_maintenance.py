"""Maintenance windows' edges in the incident state machine (issue 20): the status changes at a window's start and
end, an incident open when it starts stays open through it, nothing is decided inside it, and at its end the monitor
takes the state its regions last reported — announcing only what differs from what was last announced.

A script gives each region one character a minute (``+`` up, ``-`` down, ``.`` no result), every region checking
the same planned minute.  ``windows`` are [start, end) in minutes.  :func:`deliver` applies, in arrival order, each
tick at the start of its minute (crossing the edges there, ``maintenance_edge``) and each result (with the windows
covering its check time, ``apply``); :func:`told` lists what changed, as ``kind@minute``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.incidents.state import (
    Event,
    MonitorState,
    Observation,
    Policy,
    Span,
    apply,
    dump,
    load,
    maintenance_edge,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
REGIONS = ("us", "eu", "ap")
POLICY = Policy(REGIONS, failure_threshold=2, recovery_threshold=1, confirmation_regions=2, interval_seconds=60)
ALERTED = ("incident_opened", "incident_resolved")  # what the alert handler notifies about (besides degraded)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def covering(windows: list[tuple[int, int]], t: datetime) -> Span | None:
    spans = [(at(s), at(e)) for s, e in windows if at(s) <= t < at(e)]
    return (min(s for s, _ in spans), max(e for _, e in spans)) if spans else None


@dataclass(frozen=True)
class Outcome:
    events: list[Event]
    state: MonitorState

    def told(self, *kinds: str) -> list[str]:
        """``kind@minute`` (a status change: ``status:<status>@minute``), of ``kinds`` or all but regions'."""
        out = []
        for e in self.events:
            if (kinds and e.kind not in kinds) or (not kinds and e.kind.startswith("region_")):
                continue
            name = f"status:{e.detail}" if e.kind == "status_changed" else e.kind
            minute = (e.at - T0).total_seconds() / 60
            out.append(f"{name}@{minute:g}")
        return out

    @property
    def alerts(self) -> list[str]:
        return self.told(*ALERTED)


def deliver(
    script: dict[str, str],
    windows: list[tuple[int, int]],
    *,
    ticks: bool = True,
    lag: dict[str, float] | None = None,
    until: int | None = None,
) -> Outcome:
    """Ticks (when ``ticks``) at each minute's start cross the edges there, up to minute ``until`` (excluded; all
    when None); each region's results arrive ``lag[region]`` minutes after their check (a tick comes before the
    results of its minute)."""
    arriving: list[tuple[datetime, int, str, object]] = []
    if ticks:
        for minute in sorted({edge for window in windows for edge in window}):
            if until is None or minute < until:
                arriving.append((at(minute), 0, "tick", minute))
    for region, marks in script.items():
        for minute, mark in enumerate(marks):
            if mark != ".":
                obs = Observation(region, at(minute), ok=mark == "+", cause="HTTP 503", planned_at=at(minute))
                arrival = at(minute + (lag or {}).get(region, 0))
                arriving.append((arrival, 1 + REGIONS.index(region), "result", obs))
    state = MonitorState()
    events: list[Event] = []
    for _, _, kind, what in sorted(arriving, key=lambda a: (a[0], a[1])):
        if kind == "tick":
            assert isinstance(what, int)
            state, changed = maintenance_edge(state, POLICY, at(what), covering(windows, at(what)))
        else:
            assert isinstance(what, Observation)
            state, changed = apply(state, what, POLICY, window=covering(windows, what.checked_at))
        state = load(dump(state))  # as the handler stores it between batches
        events += changed
    return Outcome(events, state)


# us and eu fail from minute 0: the incident opens at minute 1 (two failures each).
DOWN = "-" * 10


@pytest.mark.parametrize(
    ("script", "windows", "told", "alerts"),
    [
        pytest.param(
            {"us": "----++++++", "eu": "----++++++", "ap": "++++++++++"},
            [(3, 6)],
            [
                "status:up@0",
                "incident_opened@1",
                "status:down@1",
                "maintenance_started@3",
                "status:maintenance@3",
                "maintenance_ended@6",
                "incident_resolved@6",
                "status:up@6",
            ],
            ["incident_opened@1", "incident_resolved@6"],
            id="open-when-it-starts-recovered-inside-resolves-at-the-end",
        ),
        pytest.param(
            {"us": DOWN, "eu": DOWN, "ap": "+" * 10},
            [(3, 6)],
            [
                "status:up@0",
                "incident_opened@1",
                "status:down@1",
                "maintenance_started@3",
                "status:maintenance@3",
                "maintenance_ended@6",
                "status:down@6",
            ],
            ["incident_opened@1"],
            id="still-down-at-the-end-stays-open-unannounced",
        ),
        pytest.param(
            {"us": "+++-------", "eu": "+++-------", "ap": "+" * 10},
            [(2, 7)],
            ["status:up@0", "status:maintenance@2", "incident_opened@7", "status:down@7"],
            ["incident_opened@7"],
            id="down-only-inside-opens-at-the-end",
        ),
        pytest.param(
            {"us": "+++--+++++", "eu": "+++--+++++", "ap": "+" * 10},
            [(2, 7)],
            ["status:up@0", "status:maintenance@2", "status:up@7"],
            [],
            id="down-and-back-inside-tells-nothing",
        ),
        pytest.param(
            {"us": "----+-----", "eu": "----+-----", "ap": "+" * 10},
            [(3, 8)],
            [
                "status:up@0",
                "incident_opened@1",
                "status:down@1",
                "maintenance_started@3",
                "status:maintenance@3",
                "maintenance_ended@8",
                "status:down@8",
            ],
            ["incident_opened@1"],
            id="back-and-down-again-inside-is-the-same-outage",
        ),
        pytest.param(
            {"us": "+++-------", "eu": "+++-------", "ap": "+" * 10},
            [(2, 5), (4, 8)],
            ["status:up@0", "status:maintenance@2", "incident_opened@8", "status:down@8"],
            ["incident_opened@8"],
            id="overlapping-windows-are-one-maintenance",
        ),
        pytest.param(
            {"us": "+++-------", "eu": "+++-------", "ap": "+" * 10},
            [(2, 5), (5, 8)],
            ["status:up@0", "status:maintenance@2", "incident_opened@8", "status:down@8"],
            ["incident_opened@8"],
            id="back-to-back-windows-are-one-maintenance",
        ),
        pytest.param(
            {"us": "++++------", "eu": "++++------", "ap": "+" * 10},
            [(2, 4), (7, 9)],
            [
                "status:up@0",
                "status:maintenance@2",
                "status:up@4",
                "incident_opened@5",
                "status:down@5",
                "maintenance_started@7",
                "status:maintenance@7",
                "maintenance_ended@9",
                "status:down@9",
            ],
            ["incident_opened@5"],
            id="between-two-windows-the-outage-opens",
        ),
    ],
)
def test_a_window_on_the_ticks(script, windows, told, alerts) -> None:
    outcome = deliver(script, windows)
    assert outcome.told() == told
    assert outcome.alerts == alerts


@pytest.mark.parametrize(
    ("script", "windows"),
    [
        ({"us": "----++++++", "eu": "----++++++", "ap": "++++++++++"}, [(3, 6)]),
        ({"us": DOWN, "eu": DOWN, "ap": "+" * 10}, [(3, 6)]),
        ({"us": "+++-------", "eu": "+++-------", "ap": "+" * 10}, [(2, 7)]),
        ({"us": "+++--+++++", "eu": "+++--+++++", "ap": "+" * 10}, [(2, 7)]),
        ({"us": "++++------", "eu": "++++------", "ap": "+" * 10}, [(2, 4), (7, 9)]),
    ],
)
def test_without_ticks_the_first_result_past_an_edge_crosses_it_the_same(script, windows) -> None:
    """A tick that failed, an end between two ticks: the results cross the edges they passed, with the same
    outcome as the ticks (the end's moment, not the result's)."""
    assert deliver(script, windows, ticks=False).alerts == deliver(script, windows).alerts
    assert deliver(script, windows, ticks=False).state.status == deliver(script, windows).state.status


def test_crossing_an_edge_again_changes_nothing() -> None:
    """The tick that crosses an edge, the window's change, a result past it and a retried tick may each cross it."""
    outcome = deliver({"us": "+++-------", "eu": "+++-------", "ap": "+" * 10}, [(2, 7)])
    state = outcome.state
    window = (at(2), at(7))
    for moment, covering_span in ((at(2), window), (at(7), None), (at(3), window), (at(7.5), None)):
        assert maintenance_edge(state, POLICY, moment, covering_span) == (state, []), moment
    inside = deliver({"us": "+++----", "eu": "+++----", "ap": "+" * 7}, [(2, 9)], until=7).state
    assert inside.maintenance == (at(2), at(9))
    assert maintenance_edge(inside, POLICY, at(2), (at(2), at(9))) == (inside, [])
    assert maintenance_edge(inside, POLICY, at(1), None) == (inside, [])  # the end of a window before this one


def test_a_result_checked_inside_a_window_decides_nothing_whenever_it_arrives() -> None:
    """eu's results are 4 minutes late: its failures inside the window arrive after its end was crossed (the
    quorum was not there then: us alone), and open nothing; its failures after the window do."""
    script = {"us": "+++-------", "eu": "+++-------", "ap": "+" * 10}
    late = deliver(script, [(2, 6)], lag={"eu": 4})
    assert late.alerts == ["incident_opened@7"]  # the first moment after the window both are known down
    on_time = deliver(script, [(2, 6)])
    assert on_time.alerts == ["incident_opened@6"]  # down in both at the end: at once


def test_an_outage_that_began_before_the_window_opens_when_its_late_results_arrive_and_is_marked() -> None:
    """eu's results are 3 minutes late: the quorum was reached at minute 1, before the window (from minute 2); its
    results arrive inside it.  That outage happened before the window: it opens, at minute 1, and its timeline says
    the window started; nothing inside the window (a recovery at 3) resolves it."""
    script = {"us": "---++++++", "eu": "---++++++", "ap": "+" * 9}
    outcome = deliver(script, [(2, 6)], lag={"eu": 3})
    assert outcome.told("incident_opened", "maintenance_started", "incident_resolved", "maintenance_ended") == [
        "incident_opened@1",
        "maintenance_started@2",
        "maintenance_ended@6",
        "incident_resolved@6",
    ]
    assert outcome.state.status == "up"


def test_at_the_end_a_region_silent_past_the_cap_counts_up_and_is_named() -> None:
    """ap went silent while down, 22 minutes before the window ends (past the cap and the ten minutes its last time
    may be stale: ``state.knowledge``): its last word no longer holds the quorum."""
    script = {"us": "-" * 4 + "+" * 26, "eu": "-" * 30, "ap": "----"}
    outcome = deliver(script, [(2, 25)])
    assert outcome.alerts == ["incident_opened@1", "incident_resolved@25"]
    resolved = next(e for e in outcome.events if e.kind == "incident_resolved")
    assert resolved.detail == "Recovered during maintenance (up in us); no result in time from ap"


def test_at_the_end_the_last_word_holds_even_unvouched() -> None:
    """Nothing checked since minute 3 (the regions' results of the last minutes not in yet): at the end, minutes
    later, the regions still down by their last word keep the incident open — it is not resolved for lack of news."""
    outcome = deliver({"us": "----", "eu": "----", "ap": "++++"}, [(3, 8)])
    assert outcome.alerts == ["incident_opened@1"]
    assert outcome.state.incident_open
    assert outcome.state.status == "down"
    ended = next(e for e in outcome.events if e.kind == "maintenance_ended")
    assert ended.detail == "Maintenance over: still down in us, eu"


def test_a_window_cut_short_is_left_at_once_and_one_made_running_is_entered_at_once() -> None:
    """A window's change crosses the monitor at the moment of the change (``lifecycle``)."""
    state = deliver({"us": "+++-----", "eu": "+++-----", "ap": "+" * 8}, [(2, 60)], until=8).state
    assert state.status == "maintenance"
    left, events = maintenance_edge(state, POLICY, at(8.5), None)  # deleted at 8:30
    assert [e.kind for e in events] == ["incident_opened", "status_changed"]
    assert (left.status, left.opened_at, left.maintenance) == ("down", at(8.5), None)
    entered, events = maintenance_edge(left, POLICY, at(9), (at(8.75), at(30)))  # a new one, from 8:45
    assert [(e.kind, e.at) for e in events] == [("maintenance_started", at(9)), ("status_changed", at(9))]
    assert (entered.status, entered.incident_open) == ("maintenance", True)


def test_slowness_is_not_told_inside_a_window() -> None:
    window = (at(0), at(5))
    state, events = maintenance_edge(MonitorState(), POLICY, at(0), window)
    for minute in range(1, 4):
        obs = Observation("us", at(minute), ok=True, degraded=True, planned_at=at(minute))
        state, changed = apply(state, obs, POLICY, window=window)
        events += changed
    assert [e.kind for e in events if e.kind.startswith("degraded")] == []
    assert state.status == "maintenance"


def test_a_state_stored_before_windows_had_edges_leaves_with_its_first_result_past_the_window() -> None:
    """Stored with the status ``maintenance`` and the last check time seen in the window, no span."""
    inside = deliver({"us": "+++---", "eu": "+++---", "ap": "+" * 6}, [(2, 10)], until=6).state
    legacy = load({**dump(inside), "maintenance": None, "maintenance_through": at(5).isoformat()})
    assert legacy.status == "maintenance"
    obs = Observation("ap", at(6), ok=True, planned_at=at(6))
    after, events = apply(legacy, obs, POLICY)
    assert [e.kind for e in events] == ["incident_opened", "status_changed"]
    assert after.opened_at == at(6)


def test_the_stored_form_keeps_the_window() -> None:
    state = deliver({"us": "++", "eu": "++", "ap": "++"}, [(1, 9)], until=2).state
    assert state.maintenance == (at(1), at(9))
    assert load(dump(state)) == state
