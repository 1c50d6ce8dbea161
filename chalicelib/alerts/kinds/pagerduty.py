"""PagerDuty Events API v2: the incident id is the ``dedup_key``, so trigger, acknowledge and resolve act on one
PagerDuty incident."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import Field

from chalicelib.alerts import http
from chalicelib.alerts.kinds.base import Kind, Sent
from chalicelib.alerts.notification import Notification
from chalicelib.masking import MASK
from chalicelib.schema import Schema
from chalicelib.settings import get_settings

ACTIONS = {"incident.opened": "trigger", "incident.acknowledged": "acknowledge", "incident.resolved": "resolve"}


class PagerDutyConfig(Schema):
    routing_key: str = Field(
        max_length=64,
        pattern=r"^(?:[A-Za-z0-9]{20,64}|[A-Za-z0-9]{1,8}\*+)$",
        description="an integration key (its masked form, as read, keeps the stored one)",
    )


def pagerduty_event(notification: Notification, routing_key: str) -> dict[str, Any]:
    item = notification.first
    incident = item.incident or {}
    monitor = item.monitor
    if notification.type in ACTIONS:
        action, dedup = ACTIONS[notification.type], str(incident.get("id"))
        severity = "critical"
    elif notification.type == "ssl.expiring":
        action, severity = "trigger", "warning"
        dedup = f"{monitor['id']}:certificate:{(notification.certificate or {}).get('expires_at')}"
    elif notification.type == "monitor.degraded":
        action, severity, dedup = "trigger", "warning", f"{monitor['id']}:degraded"
    else:  # test
        action, severity, dedup = "trigger", "info", f"vigil-test:{monitor['id']}"
    event: dict[str, Any] = {"routing_key": routing_key, "event_action": action, "dedup_key": dedup}
    if action == "trigger":
        event["payload"] = {
            "summary": notification.headline()[:1024],
            "source": monitor.get("url") or monitor["name"],
            "severity": severity,
            "timestamp": notification.payload()["timestamp"],
            "component": monitor["name"],
            "class": incident.get("cause") or notification.type,
            "custom_details": {
                "monitor_id": monitor["id"],
                "incident_id": incident.get("id"),
                "affected_regions": incident.get("affected_regions") or [],
                "started_at": incident.get("started_at"),
            },
        }
        event["links"] = [{"href": notification.link(), "text": "Open in Vigil"}]
        event["client"] = "Vigil"
        event["client_url"] = notification.link()
    return event


class PagerDuty(Kind):
    name = "pagerduty"
    config_model = PagerDutyConfig
    groupable = False  # one PagerDuty incident per Vigil incident: the dedup_key ties them
    payload_types = (
        "incident.opened",
        "incident.acknowledged",
        "incident.resolved",
        "monitor.degraded",
        "ssl.expiring",
    )

    def prepare(self, config: dict[str, Any], current: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        if "*" in config["routing_key"]:  # only the masked form of the stored key, which keeps it
            if current is None or config["routing_key"] != self.masked(current)["routing_key"]:
                raise ValueError("routing_key: send the integration key itself")
            return dict(current), {}
        return {"routing_key": config["routing_key"]}, {}

    def masked(self, config: dict[str, Any]) -> dict[str, Any]:
        return {"routing_key": config["routing_key"][:4] + MASK}

    def secrets(self, config: dict[str, Any]) -> list[str]:
        return [config["routing_key"]]

    def build(self, notification: Notification, config: dict[str, Any], delivery_id: str) -> dict[str, Any]:
        return pagerduty_event(notification, config["routing_key"])

    def send(self, message: dict[str, Any], config: dict[str, Any], delivery_id: str, now: datetime) -> Sent:
        body = json.dumps(message, separators=(",", ":")).encode()
        return Sent.from_response(http.post(get_settings().pagerduty_events_url, body, {}, self.secrets(config)))
