"""The event log: an incident's timeline, and what the alert handler notifies about.

Every change to an incident is one :class:`EventModel` item under the incident's id; monitor events outside an
incident (degraded, certificate expiring) live under the monitor's id and expire.  The table's stream is the
alert handler's input, so writing the timeline entry *is* emitting the event, in the same transaction as the
change itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.incidents.models import EventModel, IncidentModel

# The types, as stored and as streamed.  An incident's timeline shows the part after "incident.".
OPENED = "incident.opened"
REGION_DOWN = "incident.region_down"
REGION_UP = "incident.region_up"
ACKNOWLEDGED = "incident.acknowledged"
NOTE = "incident.note"
POSTMORTEM = "incident.postmortem_updated"
RESOLVED = "incident.resolved"
DEGRADED = "monitor.degraded"
DEGRADED_RECOVERED = "monitor.degraded_recovered"
SSL_EXPIRING = "ssl.expiring"
STATUS_CHANGED = "monitor.status_changed"
# An open incident's monitor entering and leaving a maintenance window: on its timeline, never alerted.
MAINTENANCE_STARTED = "incident.maintenance_started"
MAINTENANCE_ENDED = "incident.maintenance_ended"
# A window's edge crossed for one of its monitors, whatever it did to the monitor's status: its status pages list
# the window as scheduled, in progress or gone (never alerted: no payload of the alert handler).
WINDOW_EDGE = "monitor.window_edge"

TIMELINE_TYPES = (
    OPENED,
    REGION_DOWN,
    REGION_UP,
    ACKNOWLEDGED,
    NOTE,
    POSTMORTEM,
    RESOLVED,
    MAINTENANCE_STARTED,
    MAINTENANCE_ENDED,
)
# At one instant, the order a reader expects: regions go down, the incident opens, regions come back (or a window
# ends), it resolves.
_RANK = {REGION_DOWN: 1, OPENED: 2, REGION_UP: 3, MAINTENANCE_ENDED: 3, RESOLVED: 4}
MONITOR_EVENT_DAYS = 90

# An incident's timeline is bounded: it is read whole, in one response.  People's notes are refused past MAX_NOTES
# (409 ``limit_reached``); the entries that repeat without end — a flapping region's downs and ups, a postmortem
# rewritten, a window entered and left over and over — keep the first FIRST_REPEATS and the latest LATEST_REPEATS,
# and the incident counts those dropped.
MAX_NOTES = 100
FIRST_REPEATS = 50
LATEST_REPEATS = 50
REPEATING = (REGION_DOWN, REGION_UP, POSTMORTEM, MAINTENANCE_STARTED, MAINTENANCE_ENDED)


def _key(at: datetime, kind: str, discriminator: str) -> str:
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{stamp}#{_RANK.get(kind, 5)}#{kind}#{discriminator}"


def incident_event(
    incident: Any,
    kind: str,
    at: datetime,
    *,
    discriminator: str,
    by: str | None = None,
    text: str | None = None,
    region: str | None = None,
    data: dict[str, Any] | None = None,
) -> EventModel:
    """A timeline entry.  ``discriminator`` makes the key unique at one instant; the incident handler passes a
    deterministic one (a replay rewrites the same item), the API a fresh id."""
    return EventModel(
        incident.incident_id,
        _key(at, kind, discriminator),
        team_id=incident.team_id,
        type=kind,
        at=at,
        monitor_id=incident.monitor_id,
        incident_id=incident.incident_id,
        by=by,
        text=text,
        region=region,
        data=data or {},
    )


def kept(incident: IncidentModel, entry: EventModel) -> EventModel | None:
    """Count ``entry`` on its incident (the incident is written with it); the entry it pushes out of the timeline,
    to delete in the same write, or None.

    1. An entry that does not repeat (opened, acknowledged, a note, resolved) is not counted here.
    2. The first FIRST_REPEATS repeating entries stay for good.
    3. A later one joins the latest (``repeat_keys``, oldest first); past LATEST_REPEATS the oldest of those goes,
       counted in ``repeats_dropped``.
    """
    if entry.type not in REPEATING:
        return None
    written = int(incident.repeat_count or 0)
    incident.repeat_count = written + 1
    if written < FIRST_REPEATS:
        return None
    latest = [*(incident.repeat_keys or ()), entry.key]
    incident.repeat_keys = latest[-LATEST_REPEATS:]
    if len(latest) <= LATEST_REPEATS:
        return None
    incident.repeats_dropped = int(incident.repeats_dropped or 0) + 1
    return EventModel(entry.subject, latest[0])


def notes_on(incident_id: str) -> int:
    """How many notes an incident's timeline holds (for an incident older than its count of them)."""
    query = EventModel.query(
        incident_id,
        filter_condition=EventModel.type == NOTE,
        attributes_to_get=["subject", "key"],
        consistent_read=True,
    )
    return sum(1 for _ in query)


def monitor_event(
    team_id: str,
    monitor_id: str,
    kind: str,
    at: datetime,
    *,
    discriminator: str = "",
    text: str | None = None,
    region: str | None = None,
    data: dict[str, Any] | None = None,
) -> EventModel:
    return EventModel(
        monitor_id,
        _key(at, kind, discriminator),
        team_id=team_id,
        type=kind,
        at=at,
        monitor_id=monitor_id,
        text=text,
        region=region,
        data=data or {},
        expires_at=at + timedelta(days=MONITOR_EVENT_DAYS),
    )


@dataclass(frozen=True)
class Event:
    """One entry of the event log: an incident's timeline entry, or a monitor's event outside incidents.  The
    alert handler reads them from the log's stream."""

    subject: str
    key: str
    team_id: str
    type: str
    at: datetime
    monitor_id: str
    incident_id: str | None
    by: str | None
    text: str | None
    region: str | None
    data: dict[str, Any]


def to_event(item: EventModel) -> Event:
    return Event(
        subject=item.subject,
        key=item.key,
        team_id=item.team_id,
        type=item.type,
        at=item.at,
        monitor_id=item.monitor_id,
        incident_id=item.incident_id,
        by=item.by,
        text=item.text,
        region=item.region,
        data=dict(item.data or {}),
    )


def from_stream_image(image: dict[str, Any]) -> Event:
    """An event as the log's stream carries it (DynamoDB JSON)."""
    return to_event(EventModel.from_raw_data(image))


def get_event(subject: str, key: str) -> Event:
    return to_event(EventModel.get(subject, key))


def timeline(incident_id: str) -> list[EventModel]:
    """An incident's entries, oldest first (one query: bounded, see MAX_NOTES and the repeating entries)."""
    return [e for e in EventModel.query(incident_id, consistent_read=True) if e.type in TIMELINE_TYPES]
