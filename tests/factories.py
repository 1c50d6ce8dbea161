"""Monitors, alert channels and status pages, made through the API as a person of the team makes them.

Each factory posts a valid body (sensible defaults, ``fields`` override any of them) as the client's caller
(``api.acting_as(person)`` for someone else) and fails the test unless the object is created; it returns what the
API answered.
"""

from __future__ import annotations

from typing import Any

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


def _created(api: ApiClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = api.post(path, body)
    assert r.status == 201, r.body
    return dict(r.json)
