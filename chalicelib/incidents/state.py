"""The incident state machine: pure, so it can be tested as a table of cases.

Per monitor it keeps, for each region, the consecutive failures and successes and whether
the region counts as down; from those it derives the monitor's status.  :func:`apply`
folds one check result into the state:

1. A result not newer than the last one applied for its region is ignored (duplicates and
   out-of-order stream records change nothing).
2. The region's counters move; it goes down after ``failure_threshold`` consecutive failures
   and up again after ``recovery_threshold`` consecutive successes.
3. The monitor is down when at least ``confirmation_regions`` regions are down.  A down region
   below that quorum is an advisory (visible, named), not an outage.
   A failure planned more than one and a half intervals after its region's last failure starts a new run of
   failures (when the policy knows the interval): the results between were up ones that the worker did not
   mark (``checks.marking``), or checks that never ran.  Planned starts, not actual ones: a start delayed by a
   busy worker never breaks a run.
4. An incident opens when the quorum is reached and none is open, and resolves when it is
   lost — never twice for one outage.  During maintenance the status is ``maintenance`` and no
   incident opens; if the monitor is still down when the window ends, the next result opens it.
   A result checked before the last resolution never opens one: a late result cannot reopen an outage.
5. An up monitor whose response was slower than ``degraded_after_ms`` is ``degraded`` (not while in maintenance:
   a slow response in a window is expected, and no alert may go out; after it, the next slow one tells).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from chalicelib.clock import parse_time


@dataclass(frozen=True)
class Policy:
    regions: tuple[str, ...]
    failure_threshold: int = 2
    recovery_threshold: int = 1
    confirmation_regions: int = 2
    interval_seconds: int | None = None  # the check interval: a longer gap between failures breaks their run


@dataclass(frozen=True)
class Observation:
    region: str
    checked_at: datetime
    ok: bool
    degraded: bool = False
    cause: str | None = None  # e.g. "HTTP 503", "timeout"
    planned_at: datetime | None = None  # the check's planned start (its slot), when known


@dataclass(frozen=True)
class RegionState:
    down: bool = False
    failures: int = 0
    successes: int = 0
    checked: bool = False
    last_checked_at: datetime | None = None
    last_planned_at: datetime | None = None  # the planned start of the last result applied, when known
    down_since: datetime | None = None
    cause: str | None = None

    @property
    def label(self) -> str:
        if not self.checked:
            return "pending"
        return "down" if self.down else "up"


@dataclass(frozen=True)
class MonitorState:
    regions: dict[str, RegionState] = field(default_factory=dict)
    incident_open: bool = False
    degraded: bool = False
    status: str = "pending"
    last_resolved_at: datetime | None = None

    def region(self, name: str) -> RegionState:
        return self.regions.get(name, RegionState())


@dataclass(frozen=True)
class Event:
    """What changed: ``region_down``, ``region_up``, ``incident_opened``, ``incident_resolved``, ``degraded``,
    ``degraded_recovered``, ``status_changed``."""

    kind: str
    at: datetime
    region: str | None = None
    detail: str | None = None


def _step_region(region: RegionState, obs: Observation, policy: Policy) -> RegionState:
    if obs.ok:
        successes = region.successes + 1
        down = region.down and successes < policy.recovery_threshold
        return replace(
            region,
            checked=True,
            failures=0,
            successes=successes,
            down=down,
            down_since=region.down_since if down else None,
            cause=region.cause if down else None,
            last_checked_at=obs.checked_at,
            last_planned_at=obs.planned_at,
        )
    failures = region.failures + 1
    if not region.down and region.failures and policy.interval_seconds:
        # Planned starts when both are known (a late start is not a gap); the actual ones otherwise.
        before, now = (
            (region.last_planned_at, obs.planned_at)
            if region.last_planned_at is not None and obs.planned_at is not None
            else (region.last_checked_at, obs.checked_at)
        )
        if before is not None and (now - before).total_seconds() > 1.5 * policy.interval_seconds:
            failures = 1  # the up results between were not seen: a new run of failures
    down = region.down or failures >= policy.failure_threshold
    return replace(
        region,
        checked=True,
        failures=failures,
        successes=0,
        down=down,
        down_since=(region.down_since or obs.checked_at) if down else None,
        cause=obs.cause if down else region.cause,
        last_checked_at=obs.checked_at,
        last_planned_at=obs.planned_at,
    )


def steady_regions(state: MonitorState, policy: Policy) -> list[str]:
    """The regions checked, up and with no failure counted: there, an up result changes nothing material."""
    return [r for r in policy.regions if (s := state.region(r)).checked and not s.down and s.failures == 0]


def material(state: MonitorState) -> tuple[Any, ...]:
    """What of the state matters beyond the moment of the last check: what decides the next transitions and what
    is shown.  A result that leaves this unchanged (an up check in a steady region, another failure of a region
    already down) need not be written: only each region's last check time and an up region's count of
    successes have moved."""
    regions = tuple(
        sorted(
            (
                name,
                r.down,
                0 if r.down else r.failures,
                r.successes if r.down else 0,
                r.checked,
                r.down_since,
                r.cause,
            )
            for name, r in state.regions.items()
        )
    )
    return (regions, state.incident_open, state.degraded, state.status, state.last_resolved_at)


def down_regions(state: MonitorState, policy: Policy) -> list[str]:
    return [r for r in policy.regions if state.region(r).down]


def _status(state: MonitorState, policy: Policy, in_maintenance: bool) -> str:
    if in_maintenance:
        return "maintenance"
    if state.incident_open:
        return "down"
    if not any(state.region(r).checked for r in policy.regions):
        return "pending"
    return "degraded" if state.degraded else "up"


def apply(
    state: MonitorState, obs: Observation, policy: Policy, *, in_maintenance: bool = False
) -> tuple[MonitorState, list[Event]]:
    """Fold one result into the state; returns the new state and what changed (in order)."""
    if obs.region not in policy.regions:
        return state, []
    before = state.region(obs.region)
    if before.last_checked_at is not None and obs.checked_at <= before.last_checked_at:
        return state, []
    after = _step_region(before, obs, policy)
    events: list[Event] = []
    if after.down and not before.down:
        events.append(Event("region_down", obs.checked_at, obs.region, obs.cause))
    if before.down and not after.down:
        events.append(Event("region_up", obs.checked_at, obs.region))
    new = replace(state, regions={**state.regions, obs.region: after})

    quorum = len(down_regions(new, policy)) >= policy.confirmation_regions
    late = new.last_resolved_at is not None and obs.checked_at <= new.last_resolved_at
    if quorum and not new.incident_open and not in_maintenance and not late:
        new = replace(new, incident_open=True)
        events.append(Event("incident_opened", obs.checked_at, detail=obs.cause or after.cause))
    elif not quorum and new.incident_open:
        new = replace(new, incident_open=False, last_resolved_at=obs.checked_at)
        events.append(Event("incident_resolved", obs.checked_at))

    if obs.ok and not new.incident_open and not in_maintenance:  # slowness in a window is expected, and untold
        if obs.degraded and not new.degraded:
            new = replace(new, degraded=True)
            events.append(Event("degraded", obs.checked_at, obs.region))
        elif not obs.degraded and new.degraded:
            new = replace(new, degraded=False)
            events.append(Event("degraded_recovered", obs.checked_at, obs.region))

    status = _status(new, policy, in_maintenance)
    if status != state.status:
        events.append(Event("status_changed", obs.checked_at, detail=status))
        new = replace(new, status=status)
    return new, events


# ---------------------------------------------------------------- storage form


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def dump(state: MonitorState) -> dict[str, Any]:
    """The state as plain JSON (stored on the monitor's state item)."""
    return {
        "regions": {
            name: {
                "down": r.down,
                "failures": r.failures,
                "successes": r.successes,
                "checked": r.checked,
                "last_checked_at": _iso(r.last_checked_at),
                "last_planned_at": _iso(r.last_planned_at),
                "down_since": _iso(r.down_since),
                "cause": r.cause,
            }
            for name, r in sorted(state.regions.items())
        },
        "incident_open": state.incident_open,
        "degraded": state.degraded,
        "status": state.status,
        "last_resolved_at": _iso(state.last_resolved_at),
    }


def load(data: dict[str, Any] | None) -> MonitorState:
    if not data:
        return MonitorState()
    regions = {
        str(name): RegionState(
            down=bool(r.get("down")),
            failures=int(r.get("failures") or 0),
            successes=int(r.get("successes") or 0),
            checked=bool(r.get("checked")),
            last_checked_at=parse_time(r.get("last_checked_at")),
            last_planned_at=parse_time(r.get("last_planned_at")),
            down_since=parse_time(r.get("down_since")),
            cause=r.get("cause"),
        )
        for name, r in (data.get("regions") or {}).items()
    }
    return MonitorState(
        regions=regions,
        incident_open=bool(data.get("incident_open")),
        degraded=bool(data.get("degraded")),
        status=str(data.get("status") or "pending"),
        last_resolved_at=parse_time(data.get("last_resolved_at")),
    )
