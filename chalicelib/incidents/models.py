"""Incident tables: each monitor's incident state, incidents, the event log (timelines) and maintenance windows."""

from __future__ import annotations

from datetime import datetime

from pynamodb.attributes import (
    JSONAttribute,
    ListAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection

from chalicelib.storage.base import BaseModel


class MonitorStateModel(BaseModel):
    """The incident handler's memory of one monitor: per-region counters (``incidents.state``), the open incident
    and the certificate expiry alerts already sent.  Every write is conditional on ``version``, so concurrent
    handlers and retries apply each result once."""

    logical_name = "monitor_states"

    class Meta:
        pass

    monitor_id = UnicodeAttribute(hash_key=True)
    team_id = UnicodeAttribute()
    state = JSONAttribute(default=dict)
    incident_id = UnicodeAttribute(null=True)  # the outage's incident, until the quorum is lost
    ssl_alerts = JSONAttribute(default=dict)  # {certificate expiry (ISO): [thresholds alerted, in days]}
    updated_at = UTCDateTimeAttribute()
    version = VersionAttribute()


class IncidentsByStatus(GlobalSecondaryIndex["IncidentModel"]):
    """``team_status`` = ``<team_id>#<status>``: a team's open incidents without reading its history."""

    class Meta:
        index_name = "team-status-index"
        projection = AllProjection()

    team_status = UnicodeAttribute(hash_key=True)
    incident_id = UnicodeAttribute(range_key=True)


class IncidentsByMonitor(GlobalSecondaryIndex["IncidentModel"]):
    class Meta:
        index_name = "monitor-index"
        projection = AllProjection()

    monitor_id = UnicodeAttribute(hash_key=True)
    incident_id = UnicodeAttribute(range_key=True)


class IncidentModel(BaseModel):
    """One outage of one monitor.  ``incident_id`` sorts by start time, so a team's query is newest first."""

    logical_name = "incidents"

    class Meta:
        stream_view_type = "NEW_AND_OLD_IMAGES"

    team_id = UnicodeAttribute(hash_key=True)
    incident_id = UnicodeAttribute(range_key=True)
    team_status = UnicodeAttribute()
    monitor_id = UnicodeAttribute()
    status = UnicodeAttribute()  # open | acknowledged | resolved
    cause = UnicodeAttribute(null=True)
    started_at = UTCDateTimeAttribute()
    acknowledged_at = UTCDateTimeAttribute(null=True)
    acknowledged_by = UnicodeAttribute(null=True)
    resolved_at = UTCDateTimeAttribute(null=True)
    resolved_by = UnicodeAttribute(null=True)
    affected_regions = ListAttribute(of=UnicodeAttribute, default=list)
    postmortem = JSONAttribute(null=True)
    # The timeline's bounds (``incidents.events``): notes added (absent on an incident older than the count, whose
    # notes are then counted from its timeline), repeating entries written, the keys of those kept past the first
    # ones (oldest first), and how many of those were deleted again.
    notes_count = NumberAttribute(null=True)
    repeat_count = NumberAttribute(null=True)
    repeat_keys = ListAttribute(of=UnicodeAttribute, null=True)
    repeats_dropped = NumberAttribute(null=True)
    # How many times the incident handler opened it: more than once when a state begun afresh decided its moment
    # again (``incidents.tracker``); each opening's timeline entries are keyed apart, so each is an event of its own.
    openings = NumberAttribute(null=True)
    updated_at = UTCDateTimeAttribute()
    version = VersionAttribute()
    by_status = IncidentsByStatus()
    by_monitor = IncidentsByMonitor()

    def set_status(self, status: str) -> None:
        """The status and the key of the team's by-status index move together, always."""
        self.status = status
        self.team_status = status_key(self.team_id, status)

    def resolve(self, at: datetime, by: str | None, now: datetime) -> None:
        """Resolved at ``at`` (a recovery's check time, or now) by a person, or by Vigil (None)."""
        self.set_status("resolved")
        self.resolved_at, self.resolved_by, self.updated_at = at, by, now


def status_key(team_id: str, status: str) -> str:
    """The by-status index's partition key: one team's incidents of one status."""
    return f"{team_id}#{status}"


class EventModel(BaseModel):
    """What happened, in order, per subject (an incident, or a monitor for events outside incidents).

    An incident's items are its timeline; every item is also an event on this table's stream, which the alert
    handler turns into notifications.  ``key`` = ``<time>#<rank>#<type>#<discriminator>`` sorts by time, and is
    deterministic for the events the incident handler derives from results.
    """

    logical_name = "events"

    class Meta:
        stream_view_type = "NEW_IMAGE"

    subject = UnicodeAttribute(hash_key=True)
    key = UnicodeAttribute(range_key=True)
    team_id = UnicodeAttribute()
    type = UnicodeAttribute()  # incident.opened, incident.note, monitor.degraded, ssl.expiring, …
    at = UTCDateTimeAttribute()
    monitor_id = UnicodeAttribute()
    incident_id = UnicodeAttribute(null=True)
    by = UnicodeAttribute(null=True)  # the user, for changes made through the API
    text = UnicodeAttribute(null=True)
    region = UnicodeAttribute(null=True)
    data = JSONAttribute(default=dict)
    expires_at = TTLAttribute(null=True)  # monitor events expire; an incident's timeline stays with it


class WindowsByEnd(GlobalSecondaryIndex["MaintenanceWindowModel"]):
    """A team's windows by end time: the windows still open at a time are one range query."""

    class Meta:
        index_name = "team-ends-index"
        projection = AllProjection()

    team_id = UnicodeAttribute(hash_key=True)
    ends_at = UTCDateTimeAttribute(range_key=True)


class WindowsByEdge(GlobalSecondaryIndex["MaintenanceWindowModel"]):
    """The windows whose start or end is still to be crossed, by when (the tick's pass, ``incidents.edges``):
    ``edge_shard`` is one key for every team (windows are few, and rarely written), ``edge_at`` the next edge in
    epoch seconds.  Sparse: a window leaves it once its end is crossed; keys only."""

    class Meta:
        index_name = "edge-index"
        projection = KeysOnlyProjection()

    edge_shard = UnicodeAttribute(hash_key=True)
    edge_at = NumberAttribute(range_key=True)


class MaintenanceWindowModel(BaseModel):
    logical_name = "maintenance_windows"

    class Meta:
        pass

    team_id = UnicodeAttribute(hash_key=True)
    window_id = UnicodeAttribute(range_key=True)
    title = UnicodeAttribute()
    description = UnicodeAttribute(null=True)
    monitor_ids = ListAttribute(of=UnicodeAttribute, default=list)
    starts_at = UTCDateTimeAttribute()
    ends_at = UTCDateTimeAttribute()
    created_by = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    edge_shard = UnicodeAttribute(null=True)  # while an edge is to be crossed (``WindowsByEdge``)
    edge_at = NumberAttribute(null=True)
    version = VersionAttribute()
    by_end = WindowsByEnd()
    by_edge = WindowsByEdge()
