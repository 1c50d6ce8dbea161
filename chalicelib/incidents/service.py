"""Incidents as responders see them: list, read with the timeline, acknowledge, annotate, resolve, postmortem.

Every change is one transaction: the incident (conditional on its version) and its timeline entry, which is
also the event the alert handler notifies the team about.  Every read and write is keyed by the team.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib import errors
from chalicelib.ids import id_floor, new_id
from chalicelib.incidents import events
from chalicelib.incidents.models import EventModel, IncidentModel, MonitorStateModel, status_key
from chalicelib.storage import cursor
from chalicelib.storage.base import load_team_item, retry_lost_races, transaction

STATUSES = ("open", "acknowledged", "resolved")
ATTEMPTS = 4
POSTMORTEM_MAX_BYTES = 200_000  # as stored (JSON, non-ASCII escaped): half an item, the timeline is elsewhere


@dataclass(frozen=True)
class Entry:
    id: str
    at: datetime
    type: str  # opened, region_down, region_up, acknowledged, note, postmortem_updated, resolved, maintenance_…
    by: str | None
    text: str | None
    region: str | None


@dataclass(frozen=True)
class Incident:
    id: str
    team_id: str
    monitor_id: str
    status: str
    cause: str | None
    started_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    affected_regions: tuple[str, ...]
    postmortem: dict[str, Any] | None
    updated_at: datetime
    timeline: tuple[Entry, ...] = ()
    timeline_dropped: int = 0  # repeating entries left out between the first ones and the latest


def _entry(item: EventModel) -> Entry:
    return Entry(
        id=item.key,
        at=item.at,
        type=item.type.split(".", 1)[1],
        by=item.by,
        text=item.text,
        region=item.region,
    )


def _incident(item: IncidentModel, timeline: list[EventModel] | None = None) -> Incident:
    return Incident(
        id=item.incident_id,
        team_id=item.team_id,
        monitor_id=item.monitor_id,
        status=item.status,
        cause=item.cause,
        started_at=item.started_at,
        acknowledged_at=item.acknowledged_at,
        acknowledged_by=item.acknowledged_by,
        resolved_at=item.resolved_at,
        resolved_by=item.resolved_by,
        affected_regions=tuple(str(r) for r in item.affected_regions or ()),
        postmortem=dict(item.postmortem) if item.postmortem else None,
        updated_at=item.updated_at,
        timeline=tuple(_entry(e) for e in timeline or ()),
        timeline_dropped=int(item.repeats_dropped or 0),
    )


def _load(team_id: str, incident_id: str) -> IncidentModel:
    return load_team_item(IncidentModel, team_id, incident_id, "incident")


def get(team_id: str, incident_id: str) -> Incident:
    item = _load(team_id, incident_id)
    return _incident(item, events.timeline(item.incident_id))


def find(team_id: str, incident_id: str) -> Incident | None:
    """An incident without its timeline, or None when there is none (its team or monitor was deleted)."""
    try:
        return _incident(IncidentModel.get(team_id, incident_id))
    except IncidentModel.DoesNotExist:
        return None


def list_incidents(
    team_id: str, *, status: str | None, monitor_id: str | None, limit: int, after: str | None
) -> tuple[list[Incident], str | None]:
    """Newest first.  A status filter reads the team-status index, a monitor filter the monitor index (never
    the team's whole history); the cursor is signed for this team and this filter."""
    size = cursor.page_size(limit)
    key: tuple[str, ...] = ("team_id", "incident_id")

    def run(start: dict[str, Any] | None) -> Any:
        if monitor_id is not None:
            condition: Any = IncidentModel.team_id == team_id
            if status is not None:
                condition &= IncidentModel.status == status
            return IncidentModel.by_monitor.query(
                monitor_id,
                filter_condition=condition,
                scan_index_forward=False,
                last_evaluated_key=start,
                page_size=size,
            )
        if status is not None:
            return IncidentModel.by_status.query(
                status_key(team_id, status), scan_index_forward=False, last_evaluated_key=start, page_size=size
            )
        return IncidentModel.query(team_id, scan_index_forward=False, last_evaluated_key=start, page_size=size)

    if monitor_id is not None:
        key += ("monitor_id",)
    elif status is not None:
        key += ("team_status",)
    page, next_cursor = cursor.paginate(
        run, team_id=team_id, scope=f"incidents|{status or ''}|{monitor_id or ''}", limit=limit, after=after, key=key
    )
    return [_incident(item) for item in page], next_cursor


def unresolved(team_id: str) -> list[Incident]:
    """The team's open and acknowledged incidents (the by-status index: never its history)."""
    return [
        _incident(item)
        for status in ("open", "acknowledged")
        for item in IncidentModel.by_status.query(status_key(team_id, status))
    ]


def of_monitor_since(monitor_id: str, since: datetime, limit: int) -> list[Incident]:
    """A monitor's incidents started since ``since``, newest first, at most ``limit`` (of any team: the caller
    checks the team)."""
    floor = id_floor("inc", since)
    query = IncidentModel.by_monitor.query(
        monitor_id, IncidentModel.incident_id >= floor, scan_index_forward=False, limit=limit
    )
    return [_incident(item) for item in query]


def _change(
    team_id: str,
    incident_id: str,
    change: Callable[[IncidentModel], EventModel | None],
) -> tuple[IncidentModel, EventModel | None]:
    """Load, change, write the incident and its timeline entry together; a lost race reloads and retries."""

    def attempt() -> tuple[IncidentModel, EventModel | None]:
        item = _load(team_id, incident_id)
        entry = change(item)
        if entry is not None:
            pushed_out = events.kept(item, entry)
            with transaction() as t:
                t.save(item)
                t.save(entry, condition=EventModel.key.does_not_exist())
                if pushed_out is not None:
                    t.delete(pushed_out)
        return item, entry

    return retry_lost_races(attempt, attempts=ATTEMPTS)


def acknowledge(team_id: str, incident_id: str, user_id: str, now: datetime) -> Incident:
    """Open → acknowledged (once: acknowledging again changes nothing).  A resolved incident → 409."""

    def change(item: IncidentModel) -> EventModel | None:
        if item.status == "resolved":
            raise errors.Conflict("The incident is already resolved.")
        if item.status == "acknowledged":
            return None
        item.set_status("acknowledged")
        item.acknowledged_at, item.acknowledged_by, item.updated_at = now, user_id, now
        return events.incident_event(
            item, events.ACKNOWLEDGED, now, discriminator=new_id("evt"), by=user_id, text="Acknowledged"
        )

    item, _ = _change(team_id, incident_id, change)
    return get(team_id, item.incident_id)


def resolve(team_id: str, incident_id: str, user_id: str, now: datetime) -> Incident:
    """Resolve by hand.  If the monitor is still down, it stays down, and no new incident opens until it has
    recovered and failed again: the outage is the one just resolved.  Resolving twice changes nothing."""

    def change(item: IncidentModel) -> EventModel | None:
        if item.status == "resolved":
            return None
        item.resolve(now, user_id, now)
        return events.incident_event(
            item, events.RESOLVED, now, discriminator=new_id("evt"), by=user_id, text="Resolved by hand"
        )

    item, _ = _change(team_id, incident_id, change)
    return get(team_id, item.incident_id)


def add_note(team_id: str, incident_id: str, user_id: str, text: str, now: datetime) -> Entry:
    """At most ``events.MAX_NOTES`` an incident (409 ``limit_reached``): counted on the incident, which is written
    under its version with the note, so parallel notes cannot pass the limit together."""

    def change(item: IncidentModel) -> EventModel:
        written = int(item.notes_count) if item.notes_count is not None else events.notes_on(item.incident_id)
        if written >= events.MAX_NOTES:
            raise errors.LimitReached(
                f"An incident holds at most {events.MAX_NOTES} notes; this one has them all.",
                limit="notes_per_incident",
                allowed=events.MAX_NOTES,
            )
        item.notes_count, item.updated_at = written + 1, now
        return events.incident_event(item, events.NOTE, now, discriminator=new_id("evt"), by=user_id, text=text)

    _, entry = _change(team_id, incident_id, change)
    assert entry is not None
    return _entry(entry)


def set_postmortem(team_id: str, incident_id: str, user_id: str, postmortem: dict[str, Any], now: datetime) -> Incident:
    """Write (or rewrite) the postmortem; the timeline records each update.  It is kept in the incident's own
    item, which DynamoDB caps at 400 KB: one longer than ``POSTMORTEM_MAX_BYTES`` as stored is refused."""
    if len(json.dumps(postmortem)) > POSTMORTEM_MAX_BYTES:
        raise errors.ValidationFailed.single(
            "body", f"the postmortem is too long: at most {POSTMORTEM_MAX_BYTES // 1000} KB in all"
        )

    def change(item: IncidentModel) -> EventModel | None:
        if item.postmortem == postmortem:
            return None
        first = item.postmortem is None
        item.postmortem, item.updated_at = postmortem, now
        text = "Postmortem written" if first else "Postmortem updated"
        return events.incident_event(item, events.POSTMORTEM, now, discriminator=new_id("evt"), by=user_id, text=text)

    item, _ = _change(team_id, incident_id, change)
    return get(team_id, item.incident_id)


def purge_team(team_id: str, monitor_ids: list[str]) -> None:
    """Team deletion: its incidents and their timelines, and its monitors' incident state."""
    for monitor_id in monitor_ids:
        MonitorStateModel(monitor_id).delete(add_version_condition=False)
    for item in IncidentModel.query(team_id):
        for entry in EventModel.query(item.incident_id):
            entry.delete()
        item.delete(add_version_condition=False)
