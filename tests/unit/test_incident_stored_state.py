"""The incident state machine on states stored by the version before issue 20 (written by a fresh-eyes review)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from chalicelib.incidents.state import Observation, Policy, apply, load

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
REGIONS = ("us", "eu", "ap")
POLICY = Policy(REGIONS, failure_threshold=2, recovery_threshold=1, confirmation_regions=2, interval_seconds=60)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def obs(region: str, minute: float, ok: bool) -> Observation:
    planned = at(minute)
    return Observation(region, planned + timedelta(seconds=2), ok, cause=None if ok else "HTTP 503", planned_at=planned)


def iso(minute: float, seconds: int = 2) -> str:
    return (at(minute) + timedelta(seconds=seconds)).isoformat()


def old_state_during_an_outage() -> dict:
    """The state item as the previous version stored it (no spans, down_at, opened_at, maintenance_through): an
    incident open since minute 1 (its confirming check at 12:01:02), us and eu down.  The previous version wrote
    nothing for a further failure of a region already down (not material), so the stored check times are those
    of the last material change (minute 1 for us and eu; ap's last marked up check at minute 0)."""
    return {
        "regions": {
            name: {
                "down": name != "ap",
                "failures": 2 if name != "ap" else 0,
                "successes": 0,
                "checked": True,
                "last_checked_at": iso(1 if name != "ap" else 0),
                "last_planned_at": at(1 if name != "ap" else 0).isoformat(),
                "down_since": iso(1) if name != "ap" else None,
                "cause": "HTTP 503" if name != "ap" else None,
            }
            for name in REGIONS
        },
        "incident_open": True,
        "degraded": False,
        "status": "down",
        "last_resolved_at": None,
    }


def test_an_outage_open_at_deploy_keeps_its_start():
    """An hour into the outage the new version is deployed.  The first failure of us and of eu sets their
    ``down_at`` to *that* check's slot (``_step_region``: ``region.down_at or at`` — None in an old state), so
    ``went_down_at`` jumps from 12:01 to 13:01, and ``_earlier_start`` (opened_at None: ``since`` = the current
    check) finds the quorum "began" at 13:01 and emits ``incident_started`` at 13:01: the tracker sets the incident's
    ``started_at`` an hour *later* than it began (its duration, the status page's history, the MTTR all lie)."""
    state = load(json.loads(json.dumps(old_state_during_an_outage())))
    started = []
    for m in (61, 62, 63):
        for region in REGIONS:
            state, events = apply(state, obs(region, m, region == "ap"), POLICY)
            started += [e.at for e in events if e.kind == "incident_started"]
    assert state.incident_open
    assert all(t <= at(1) + timedelta(seconds=2) for t in started), f"the start moved to {started}"


def test_an_outage_open_at_deploy_resolves_when_the_quorum_is_lost():
    """The same old state (incident open, us and eu down, no ``opened_at``); after the deploy us is back up, eu goes
    on failing (below the quorum now) and ap is up.  With ``opened_at`` None, ``_decide`` takes ``since`` = the
    current check: the strict scan of (since, at] is empty and the timed-out path needs ``at > since``; and
    ``_earlier_start`` finds no moment where the quorum is known down (eu's ``down_at`` was just set to *now*).  So
    nothing ever resolves it: status ``down`` and an open incident for as long as eu stays down."""
    state = load(json.loads(json.dumps(old_state_during_an_outage())))
    for m in range(61, 61 + 120):
        for region in REGIONS:
            state, _ = apply(state, obs(region, m, region != "eu"), POLICY)
    assert not state.incident_open, state.opened_at
    assert state.status == "up"
