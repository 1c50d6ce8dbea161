"""Composing the notification a delivery carries, from the stored records as they are when it is sent.

A delivery is created knowing only where its news comes from (``source``), so its first attempt says what is
true when it is sent: the incident as it is now, a monitor's current name (a retry resends what that attempt
sent).  The source is one of:

1. a test (``{"test": true}``): a fixed example monitor and incident;
2. a group (``{"incidents": [...], "at": ...}``): each incident still there, with its monitor, leaving out
   monitors deleted or paused since (their outage ended so), sorted by monitor name;
3. a timeline entry (``{"subject", "key"}``): the event, its monitor (or, deleted, what its resolution kept of
   it), its incident, and what the entry adds (an update's text and author, a certificate's expiry).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.alerts import notification as n
from chalicelib.alerts.models import DeliveryModel
from chalicelib.clock import isoz, parse_time
from chalicelib.incidents import service as incidents
from chalicelib.incidents.events import get_event
from chalicelib.monitors import service as monitors
from chalicelib.settings import get_settings
from chalicelib.users import service as users


def _user_label(user_id: str | None) -> str | None:
    if not user_id:
        return None
    user = users.find(user_id)
    return (user.name or user.email) if user is not None else "a former member"


def _monitor(team_id: str, monitor_id: str) -> dict[str, Any]:
    found = monitors.find(team_id, monitor_id)
    return n.monitor_snapshot(found) if found is not None else n.deleted_monitor(monitor_id)


def _incident(team_id: str, incident_id: str | None, app_url: str) -> dict[str, Any] | None:
    found = incidents.find(team_id, incident_id) if incident_id else None
    return n.incident_snapshot(found, app_url) if found is not None else None


def compose(delivery: DeliveryModel, now: datetime) -> n.Notification:
    """The notification a delivery carries, read fresh from the tables (the incident as it is now)."""
    app_url = get_settings().app_url.rstrip("/")
    source = dict(delivery.source or {})
    team_id = delivery.team_id
    if source.get("test"):
        monitor: dict[str, Any] = {"id": "mon_test", "name": "Example monitor", "url": "https://example.com/"}
        monitor |= {"method": "GET", "regions": list(get_settings().check_regions), "status": "down", "tags": []}
        incident: dict[str, Any] = {
            "id": "inc_test",
            "status": "open",
            "cause": "HTTP 503",
            "started_at": isoz(now),
            "acknowledged_at": None,
            "resolved_at": None,
            "affected_regions": list(get_settings().check_regions),
            "url": f"{app_url}/incidents",
        }
        return n.Notification("test", now, (n.Item(monitor, incident),), app_url)
    if "incidents" in source:  # a group: many monitors down (or back) together
        items = []
        for incident_id in sorted(source["incidents"]):
            found = incidents.find(team_id, incident_id)
            if found is None:
                continue  # its team or monitor was deleted since
            monitor = _monitor(team_id, found.monitor_id)
            if n.is_deleted(monitor) or monitor["status"] == "paused":
                continue  # deleted or paused while its group waited (its outage ended so): nobody needs telling
            items.append(n.Item(monitor, n.incident_snapshot(found, app_url)))
        items.sort(key=lambda item: (str(item.monitor["name"]).lower(), item.monitor["id"]))
        return n.Notification(delivery.event, parse_time(source.get("at")) or now, tuple(items), app_url)
    event = get_event(source["subject"], source["key"])
    kind = event.type.split(".", 1)[1]
    update = None
    if event.type in ("incident.acknowledged", "incident.note", "incident.postmortem_updated"):
        update = {"kind": kind, "text": event.text, "by": _user_label(event.by)}
    certificate = None
    if event.type == "ssl.expiring":
        data = event.data
        certificate = {"expires_at": isoz(parse_time(data.get("expires_at"))), "days_left": data.get("days_left")}
    monitor = _monitor(team_id, event.monitor_id)
    if n.is_deleted(monitor):  # deleted: the name and settings its incident's resolution kept
        monitor |= dict(event.data.get("monitor") or {})
    item = n.Item(monitor, _incident(team_id, event.incident_id, app_url))
    return n.Notification(delivery.event, event.at, (item,), app_url, update=update, certificate=certificate)
