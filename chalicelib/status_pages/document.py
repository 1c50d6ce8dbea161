"""The public document of a status page: the only place that reads private data for the public.

It copies out what a visitor may see — display names, groups, statuses, daily uptime from the rollups, incidents
told in Vigil's own words, maintenance titles — and nothing else: never a monitor's URL, headers, body, internal
name, error text, cause or an address.  The HTML page, the Atom feed and the badges are rendered from it alone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from chalicelib.clock import isoz
from chalicelib.incidents import maintenance
from chalicelib.incidents import service as incidents
from chalicelib.incidents.events import timeline
from chalicelib.incidents.service import Incident
from chalicelib.monitors import results
from chalicelib.monitors.service import find as find_monitor
from chalicelib.monitors.service import get_many as get_monitors
from chalicelib.monitors.service import team_of
from chalicelib.status_pages.store import Page, pages_showing

DAYS = 90
RECENT_DAYS = 14
RECENT_INCIDENTS = 25  # the newest of those fortnight's: a page (and each render of it) stays bounded
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


def _public_incident(item: Incident, names: dict[str, str], with_updates: bool = True) -> dict[str, Any]:
    """An incident in Vigil's words: which component, since when, and what the team has done — never its cause,
    its affected regions or the team's notes."""
    name = names.get(item.monitor_id, "A service")
    updates = []
    if with_updates:
        for entry in timeline(item.id):
            if entry.type == "incident.opened":
                updates.append(("investigating", entry.at, f"{name} is not responding. We are investigating."))
            elif entry.type == "incident.acknowledged":
                updates.append(("identified", entry.at, "The team is aware and working on it."))
            elif entry.type == "incident.resolved":
                updates.append(("resolved", entry.at, f"{name} is working again."))
    status = {"open": "investigating", "acknowledged": "identified", "resolved": "resolved"}[item.status]
    return {
        "id": item.id,
        "title": f"{name} is down" if item.status != "resolved" else f"{name} was down",
        "status": status,
        "impact": "major_outage",
        "components": [name],
        "started_at": isoz(item.started_at),
        "resolved_at": isoz(item.resolved_at),
        "updates": [{"at": isoz(at), "status": s, "text": text} for s, at, text in reversed(updates)],
    }


def build(page: Page, now: datetime) -> dict[str, Any]:
    team_id = page.team_id
    components = page.components
    # Read strongly consistent: a publisher's read-back (publish.settle) must see a status written before it.
    monitors = get_monitors(team_id, [c.monitor_id for c in components], consistent=True)
    names = {c.monitor_id: c.display_name for c in components}
    shown: list[dict[str, Any]] = []
    for c in components:
        monitor = monitors.get(c.monitor_id)
        if monitor is None:
            continue  # deleted since: it leaves the page
        days = results.daily(c.monitor_id, now, DAYS)
        shown.append(
            {
                "name": c.display_name,
                "group": c.group,
                "status": COMPONENT_STATUS.get(monitor.status, "operational"),
                "uptime_90d": results.total(days),
                "days": [{"date": d.date, "uptime_pct": d.uptime_pct} for d in days],
            }
        )

    on_page = set(monitors)
    active = [i for i in incidents.unresolved(team_id) if i.monitor_id in on_page]
    # Each component's own newest (one open at most among them), as the feed reads them: the team's other
    # monitors' incidents are never read, and a page reads at most its components' share.
    since = now - timedelta(days=RECENT_DAYS)
    found = [i for m in on_page for i in incidents.of_monitor_since(m, since, RECENT_INCIDENTS + 1)]
    resolved = [i for i in found if i.team_id == team_id and i.status == "resolved"]
    recent = sorted(resolved, key=lambda i: i.id, reverse=True)[:RECENT_INCIDENTS]
    windows = [w for w in maintenance.not_ended(team_id, now) if on_page & set(w.monitor_ids)]
    return {
        "name": page.name,
        "slug": page.slug,
        "description": page.description,
        "overall_status": overall([c["status"] for c in shown]),
        "components": shown,
        "active_incidents": [_public_incident(i, names) for i in sorted(active, key=lambda i: i.id, reverse=True)],
        "recent_incidents": [_public_incident(i, names) for i in recent],
        "maintenance": [
            {
                "id": w.id,
                "title": w.title,
                "description": w.description,
                "status": "in_progress" if w.starts_at <= now else "scheduled",
                "starts_at": isoz(w.starts_at),
                "ends_at": isoz(w.ends_at),
                "components": [names[m] for m in w.monitor_ids if m in on_page],
            }
            for w in sorted(windows, key=lambda w: w.starts_at)
        ],
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


def badge(monitor_id: str) -> tuple[str, str] | None:
    """A badge's label and status: the monitor's display name and component status on a published page of its
    team (None when no published page shows it)."""
    team_id = team_of(monitor_id)
    if team_id is None:
        return None
    for page in pages_showing(team_id, {monitor_id}):
        if page.published:
            component = next(c for c in page.components if c.monitor_id == monitor_id)
            monitor = find_monitor(team_id, monitor_id)
            if monitor is None:  # deleted since the page was read
                return None
            return component.display_name, COMPONENT_STATUS.get(monitor.status, "operational")
    return None


def feed_entries(page: Page, now: datetime) -> list[dict[str, Any]]:
    """Incident history for the Atom feed: the page's incidents of the last 90 days, newest first."""
    names = {c.monitor_id: c.display_name for c in page.components}
    since = now - timedelta(days=FEED_DAYS)
    found: list[Incident] = []
    for monitor_id in names:  # each component's own (the team's other monitors' incidents never crowd them out)
        found += incidents.of_monitor_since(monitor_id, since, FEED_ENTRIES)
    newest = sorted(found, key=lambda i: i.id, reverse=True)[:FEED_ENTRIES]
    return [_public_incident(i, names) for i in newest if i.team_id == page.team_id]
