"""Monitors, alert channels and status pages, made through the API as a person of the team makes them (and
:func:`check_result`, one check's result as the checker returns it).

Each factory posts a valid body (sensible defaults, ``fields`` override any of them) as the client's caller
(``api.acting_as(person)`` for someone else) and fails the test unless the object is created; it returns what the
API answered.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from chalicelib.checks.model import CheckResult, Timings
from chalicelib.clock import isoz, utcnow
from tests.support import ApiClient


def create_monitor(api: ApiClient, **fields: Any) -> dict[str, Any]:
    """A monitor named "Homepage" of https://shop.example.invalid/ (a name that never resolves), with the API's
    defaults for everything else."""
    return _created(api, "/v1/monitors", {"name": "Homepage", "url": "https://shop.example.invalid/", **fields})


def create_heartbeat(api: ApiClient, **fields: Any) -> dict[str, Any]:
    """A heartbeat monitor "Nightly backup" pinged every hour, with the API's default grace (five minutes)."""
    return _created(
        api, "/v1/monitors", {"type": "heartbeat", "name": "Nightly backup", "period_seconds": 3600, **fields}
    )


def create_channel(api: ApiClient, **fields: Any) -> dict[str, Any]:
    """An alert channel named "Ops" mailing ops@example.com (give ``type`` and ``config`` together for another
    kind)."""
    defaults = {"name": "Ops", "type": "email", "config": {"addresses": ["ops@example.com"]}}
    return _created(api, "/v1/alert-channels", {**defaults, **fields})


def create_status_page(api: ApiClient, **fields: Any) -> dict[str, Any]:
    """A published status page "Acme" at the slug "acme", showing no component."""
    return _created(api, "/v1/status-pages", {"name": "Acme", "slug": "acme", **fields})


def create_window(api: ApiClient, monitor_ids: list[str], **fields: Any) -> dict[str, Any]:
    """A maintenance window "Upgrade" of these monitors, from an hour from now for an hour (scheduled)."""
    now = utcnow()
    starts, ends = isoz(now + timedelta(hours=1)), isoz(now + timedelta(hours=2))
    body = {"title": "Upgrade", "monitor_ids": monitor_ids, "starts_at": starts, "ends_at": ends, **fields}
    return _created(api, "/v1/maintenance-windows", body)


def create_invitation(api: ApiClient, team_id: str, **fields: Any) -> dict[str, Any]:
    """An invitation to the team as a member, for an address of its own."""
    body = {"email": f"invitee-{uuid.uuid4().hex[:12]}@example.com", "role": "member", **fields}
    return _created(api, f"/v1/teams/{team_id}/invitations", body)


def create_api_key(api: ApiClient, **fields: Any) -> dict[str, Any]:
    """An API key "CI" that reads monitors (its secret ``key`` is in the answer, as at creation)."""
    return _created(api, "/v1/api-keys", {"name": "CI", "scopes": ["monitors:read"], **fields})


def _created(api: ApiClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = api.post(path, body)
    assert r.status == 201, r.body
    return dict(r.json)


def check_result(at: datetime, ok: bool = True, region: str = "us-east-1", **fields: Any) -> CheckResult:
    """A check's result as the checker returns it: up (200, 120 ms) or down (503, ``status_mismatch``); ``fields``
    override any of it."""
    values: dict[str, Any] = {
        "ok": ok,
        "checked_at": at,
        "region": region,
        "status_code": 200 if ok else 503,
        "response_time_ms": 120.0,
        "timings": Timings(),
        "error": None if ok else "status_mismatch",
        "error_detail": None,
        "ssl_expires_at": None,
        "assertion_failures": (),
        "degraded": False,
        "body_excerpt": None,
        "final_url": None,
    }
    return CheckResult(**{**values, **fields})
