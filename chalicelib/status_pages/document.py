"""The public document of a status page: the only place that reads private data for the public.

It copies out what a visitor may see — display names, groups, statuses, daily uptime from the rollups, incidents
told in Vigil's own words, maintenance titles — and nothing else: never a monitor's URL, headers, body, internal
name, error text, cause or an address.  The HTML page, the Atom feed and the badges are rendered from it alone.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from chalicelib.clock import isoz
from chalicelib.ids import id_floor
from chalicelib.incidents.events import timeline
from chalicelib.incidents.models import IncidentModel, MaintenanceWindowModel
from chalicelib.monitors.models import MonitorModel, RollupModel
from chalicelib.status_pages.models import StatusPageModel
from chalicelib.status_pages.service import components_of

DAYS = 90
RECENT_DAYS = 14
FEED_DAYS = 90
FEED_ENTRIES = 50

# A monitor's status → its component's.  A monitor never checked yet, or paused, shows as operational:
# "unknown" would alarm visitors about something the team did on purpose.
COMPONENT_STATUS = {
    "up": "operational",
    "pending": "operational",
    "paused": "operational",
    "degraded": "degraded",
    "down": "major_outage",
    "maintenance": "maintenance",
}
LABELS = {
    "operational": "Operational",
    "degraded": "Degraded performance",
    "partial_outage": "Partial outage",
    "major_outage": "Major outage",
    "maintenance": "Under maintenance",
}
OVERALL_TEXT = {
    "operational": "All systems operational",
    "degraded": "Some systems are slow",
    "partial_outage": "Some systems are down",
    "major_outage": "Major outage",
    "maintenance": "Maintenance in progress",
}


def overall(statuses: list[str]) -> str:
    """The worst of the components: an outage of every component is major, of some partial."""
    if not statuses:
        return "operational"
    down = statuses.count("major_outage") + statuses.count("partial_outage")
    if down:
        return "major_outage" if statuses.count("major_outage") == len(statuses) else "partial_outage"
    if "degraded" in statuses:
        return "degraded"
    if "maintenance" in statuses:
        return "maintenance"
    return "operational"


def _pct(checks: int, failures: int) -> float | None:
    return round(100.0 * (checks - failures) / checks, 3) if checks else None


def _days(monitor_id: str, today: date) -> tuple[float | None, list[dict[str, Any]]]:
    """90 days of daily uptime, from the daily rollups only (one query of at most 90 small items)."""
    first = today - timedelta(days=DAYS - 1)
    found = {
        item.period[2:]: item
        for item in RollupModel.query(
            monitor_id, range_key_condition=RollupModel.period.between(f"D#{first}", f"D#{today}")
        )
    }
    days = []
    checks = failures = 0
    for offset in range(DAYS - 1, -1, -1):
        day = str(today - timedelta(days=offset))
        item = found.get(day)
        c, f = (int(item.checks), int(item.failures)) if item else (0, 0)
        checks, failures = checks + c, failures + f
        days.append({"date": day, "uptime_pct": _pct(c, f)})
    return _pct(checks, failures), days


def _public_incident(item: IncidentModel, names: dict[str, str], with_updates: bool = True) -> dict[str, Any]:
    """An incident in Vigil's words: which component, since when, and what the team has done — never its cause,
    its affected regions or the team's notes."""
    name = names.get(item.monitor_id, "A service")
    updates = []
    if with_updates:
        for entry in timeline(item.incident_id):
            if entry.type == "incident.opened":
                updates.append(("investigating", entry.at, f"{name} is not responding. We are investigating."))
            elif entry.type == "incident.acknowledged":
                updates.append(("identified", entry.at, "The team is aware and working on it."))
            elif entry.type == "incident.resolved":
                updates.append(("resolved", entry.at, f"{name} is working again."))
    status = {"open": "investigating", "acknowledged": "identified", "resolved": "resolved"}[item.status]
    return {
        "id": item.incident_id,
        "title": f"{name} is down" if item.status != "resolved" else f"{name} was down",
        "status": status,
        "impact": "major_outage",
        "components": [name],
        "started_at": isoz(item.started_at),
        "resolved_at": isoz(item.resolved_at),
        "updates": [{"at": isoz(at), "status": s, "text": text} for s, at, text in reversed(updates)],
    }


def build(page: StatusPageModel, now: datetime) -> dict[str, Any]:
    team_id = page.team_id
    components = components_of(page)
    ids = [c.monitor_id for c in components]
    monitors = {m.monitor_id: m for m in (MonitorModel.batch_get([(team_id, i) for i in ids]) if ids else [])}
    names = {c.monitor_id: c.display_name for c in components}
    today = now.astimezone(UTC).date()
    shown: list[dict[str, Any]] = []
    for c in components:
        monitor = monitors.get(c.monitor_id)
        if monitor is None:
            continue  # deleted since: it leaves the page
        status = COMPONENT_STATUS.get("paused" if monitor.paused else monitor.status, "operational")
        uptime, days = _days(c.monitor_id, today)
        shown.append({"name": c.display_name, "group": c.group, "status": status, "uptime_90d": uptime, "days": days})

    on_page = set(monitors)
    active = [
        item
        for status in ("open", "acknowledged")
        for item in IncidentModel.by_status.query(f"{team_id}#{status}")
        if item.monitor_id in on_page
    ]
    since = id_floor("inc", now - timedelta(days=RECENT_DAYS))
    recent = [
        item
        for item in IncidentModel.query(
            team_id, range_key_condition=IncidentModel.incident_id >= since, scan_index_forward=False
        )
        if item.monitor_id in on_page and item.status == "resolved"
    ]
    windows = [
        w
        for w in MaintenanceWindowModel.by_end.query(team_id, range_key_condition=MaintenanceWindowModel.ends_at > now)
        if on_page & set(w.monitor_ids or ())
    ]
    maintenance = [
        {
            "id": w.window_id,
            "title": w.title,
            "description": w.description,
            "status": "in_progress" if w.starts_at <= now else "scheduled",
            "starts_at": isoz(w.starts_at),
            "ends_at": isoz(w.ends_at),
            "components": [names[str(m)] for m in w.monitor_ids if m in on_page],
        }
        for w in sorted(windows, key=lambda w: w.starts_at)
    ]
    return {
        "name": page.name,
        "slug": page.slug,
        "description": page.description,
        "overall_status": overall([c["status"] for c in shown]),
        "components": shown,
        "active_incidents": [
            _public_incident(i, names) for i in sorted(active, key=lambda i: i.incident_id, reverse=True)
        ],
        "recent_incidents": [_public_incident(i, names) for i in recent],
        "maintenance": maintenance,
        # When what the page shows last changed (its data, not this rendering): stable, so ETags are too.
        "updated_at": isoz(
            max(
                [
                    page.updated_at,
                    *(m.last_checked_at or m.updated_at for m in monitors.values()),
                    *(i.updated_at for i in [*active, *recent]),
                    *(w.updated_at for w in windows),
                ]
            )
        ),
    }


def feed_entries(page: StatusPageModel, now: datetime) -> list[dict[str, Any]]:
    """Incident history for the Atom feed: the page's incidents of the last 90 days, newest first."""
    components = components_of(page)
    names = {c.monitor_id: c.display_name for c in components}
    since = id_floor("inc", now - timedelta(days=FEED_DAYS))
    found: list[IncidentModel] = []
    for monitor_id in names:  # each component's own (the team's other monitors' incidents never crowd them out)
        found += IncidentModel.by_monitor.query(
            monitor_id, IncidentModel.incident_id >= since, scan_index_forward=False, limit=FEED_ENTRIES
        )
    newest = sorted(found, key=lambda i: i.incident_id, reverse=True)[:FEED_ENTRIES]
    return [_public_incident(i, names) for i in newest if i.team_id == page.team_id]
