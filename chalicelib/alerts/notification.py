"""What a notification says, independent of the channel: built from events, then rendered by each kind.

The payload's parts are snapshots made for the outside world: an incident's public fields and a monitor's
name, URL (credential-like query values masked) and regions — never its headers or body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalicelib.clock import isoz, parse_time
from chalicelib.incidents.service import Incident
from chalicelib.masking import masked_url
from chalicelib.monitors.service import Monitor

# Event types (chalicelib.incidents.events) → payload types (API.md "Webhook body").
PAYLOAD_TYPES = {
    "incident.opened": "incident.opened",
    "incident.resolved": "incident.resolved",
    "incident.acknowledged": "incident.acknowledged",
    "incident.note": "incident.updated",
    "incident.postmortem_updated": "incident.updated",
    "monitor.degraded": "monitor.degraded",
    "ssl.expiring": "ssl.expiring",
}
# Payload types → the channel's ``notify_on`` names.
NOTIFY_ON = {
    "incident.opened": "down",
    "incident.resolved": "up",
    "monitor.degraded": "degraded",
    "ssl.expiring": "ssl_expiring",
    "incident.acknowledged": "incident_updated",
    "incident.updated": "incident_updated",
}
CRITICAL = ("incident.opened", "incident.resolved")
NOTIFY_ON_CHOICES = tuple(dict.fromkeys(NOTIFY_ON.values()))  # what a channel's notify_on may name, in this order


@dataclass(frozen=True)
class Item:
    """One monitor (and its incident, when there is one) in a notification."""

    monitor: dict[str, Any]
    incident: dict[str, Any] | None = None


@dataclass(frozen=True)
class Notification:
    type: str  # a payload type, or "test"
    timestamp: datetime
    items: tuple[Item, ...]
    app_url: str
    update: dict[str, Any] | None = None  # incident.acknowledged / incident.updated: {kind, text, by}
    certificate: dict[str, Any] | None = None  # ssl.expiring: {expires_at, days_left}
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "timestamp": self.timestamp.astimezone(UTC).isoformat(),
            "items": [{"monitor": i.monitor, "incident": i.incident} for i in self.items],
            "app_url": self.app_url,
            "update": self.update,
            "certificate": self.certificate,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        return cls(
            type=data["type"],
            timestamp=datetime.fromisoformat(data["timestamp"]),
            items=tuple(Item(dict(i["monitor"]), i["incident"] and dict(i["incident"])) for i in data["items"]),
            app_url=data["app_url"],
            update=data.get("update"),
            certificate=data.get("certificate"),
            extra=dict(data.get("extra") or {}),
        )

    @property
    def grouped(self) -> bool:
        return len(self.items) > 1

    @property
    def critical(self) -> bool:
        return self.type in CRITICAL

    @property
    def first(self) -> Item:
        return self.items[0]

    def link(self) -> str:
        if self.grouped or self.first.incident is None:
            return (
                f"{self.app_url}/incidents" if self.grouped else f"{self.app_url}/monitors/{self.first.monitor['id']}"
            )
        return str(self.first.incident["url"])

    def headline(self) -> str:
        """One line a person understands at a glance (email subject, SMS, chat fallback text)."""
        names = [item.monitor["name"] for item in self.items]
        if self.type == "test":
            return "Test notification from Vigil"
        if self.grouped:
            verb = "are down" if self.type == "incident.opened" else "recovered"
            return f"{len(names)} monitors {verb}: {_list(names)}"
        name = names[0]
        incident = self.first.incident or {}
        if self.type == "incident.opened":
            return f"{name} is down: {incident.get('cause') or 'check failed'}"
        if self.type == "incident.resolved":
            return f"{name} recovered{_after(incident)}"
        if self.type == "incident.acknowledged":
            return f"{name}: incident acknowledged by {(self.update or {}).get('by') or 'a teammate'}"
        if self.type == "incident.updated":
            kind = (self.update or {}).get("kind")
            what = "note" if kind == "note" else "postmortem update"
            return f"{name}: {what} from {(self.update or {}).get('by') or 'a teammate'}"
        if self.type == "monitor.degraded":
            return f"{name} is slow (degraded)"
        if self.type == "ssl.expiring":
            days = (self.certificate or {}).get("days_left")
            return f"The certificate of {name} expires in {days} day{'s' if days != 1 else ''}"
        return f"{name}: {self.type}"

    def payload(self) -> dict[str, Any]:
        """The webhook body (API.md): ``{"type", "timestamp", "data": {"incident", "monitor"}}``."""
        data: dict[str, Any] = {"incident": self.first.incident, "monitor": self.first.monitor}
        if self.update is not None:
            data["update"] = self.update
        if self.certificate is not None:
            data["certificate"] = self.certificate
        data.update(self.extra)
        return {"type": self.type, "timestamp": isoz(self.timestamp), "data": data}


def _list(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def _after(incident: dict[str, Any]) -> str:
    started, resolved = incident.get("started_at"), incident.get("resolved_at")
    started_at, resolved_at = parse_time(started), parse_time(resolved)
    if not started_at or not resolved_at:
        return ""
    seconds = int((resolved_at - started_at).total_seconds())
    return f" after {duration(seconds)}"


def duration(seconds: int) -> str:
    if seconds < 60:
        return f"{max(seconds, 0)} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def public_url(url: str) -> str:
    """The monitor's URL with credential-like query values masked (``?token=…`` → ``?token=********``), the rest as
    written: what a notification, and whoever may change the monitor, is shown."""
    return masked_url(url)


def monitor_snapshot(monitor: Monitor) -> dict[str, Any]:
    """A monitor as a notification shows it (credential-like URL query values masked)."""
    return {
        "id": monitor.id,
        "name": monitor.config.name,
        # A TCP monitor's is tcp://host:port; a heartbeat has none (its ping URL is not for where alerts go).
        "url": public_url(monitor.config.target) if monitor.config.target else None,
        "method": monitor.config.method if monitor.config.type == "http" else None,
        "regions": list(monitor.config.regions),
        "status": monitor.status,
        "tags": list(monitor.config.tags),
    }


def is_deleted(monitor: dict[str, Any]) -> bool:
    """A snapshot of a monitor deleted since (:func:`deleted_monitor`): every live one has a status (a heartbeat has
    no URL)."""
    return monitor.get("status") is None


def deleted_monitor(monitor_id: str) -> dict[str, Any]:
    return {
        "id": monitor_id,
        "name": "(deleted monitor)",
        "url": None,
        "method": None,
        "regions": [],
        "status": None,
        "tags": [],
    }


def incident_snapshot(incident: Incident, app_url: str) -> dict[str, Any]:
    return {
        "id": incident.id,
        "status": incident.status,
        "cause": incident.cause,
        "started_at": isoz(incident.started_at),
        "acknowledged_at": isoz(incident.acknowledged_at),
        "resolved_at": isoz(incident.resolved_at),
        "affected_regions": list(incident.affected_regions),
        "url": f"{app_url}/incidents/{incident.id}",
    }
