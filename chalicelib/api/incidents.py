"""/v1/incidents/*: list, read (with the timeline), acknowledge, notes, resolve, postmortem."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from chalicelib.api.framework import Call, Out, Router
from chalicelib.billing import abuse
from chalicelib.clock import isoz, utcnow
from chalicelib.incidents import service as incidents
from chalicelib.incidents.events import FIRST_REPEATS, LATEST_REPEATS, MAX_NOTES
from chalicelib.schema import Line, Schema, Text
from chalicelib.teams import authz

router = Router("incidents")

Status = Literal["open", "acknowledged", "resolved"]
EntryType = Literal[
    "opened",
    "region_down",
    "region_up",
    "acknowledged",
    "note",
    "postmortem_updated",
    "resolved",
    "maintenance_started",
    "maintenance_ended",
]


class ListQuery(Schema):
    status: Status | None = None
    monitor_id: str | None = Field(default=None, min_length=1, max_length=100)
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=2048)


ActionItem = Annotated[Line, Field(min_length=1, max_length=1000)]


class NoteIn(Schema):
    text: Text = Field(min_length=1, max_length=2000)  # 100 of them, in one response (docs/decisions.md)


class PostmortemIn(Schema):
    cause: Text = Field(min_length=1, max_length=10000)
    resolution: Text = Field(min_length=1, max_length=10000)
    impact: Text | None = Field(default=None, max_length=10000)
    action_items: list[ActionItem] = Field(default_factory=list, max_length=50)


class EntryOut(Out):
    id: str
    at: str
    type: EntryType
    by: str | None = Field(description="the user who made the change; null for Vigil's own entries")
    text: str | None
    region: str | None


class PostmortemOut(Out):
    cause: str
    resolution: str
    impact: str | None
    action_items: list[str]


class IncidentSummaryOut(Out):
    id: str
    monitor_id: str
    team_id: str
    status: Status
    cause: str | None
    started_at: str
    acknowledged_at: str | None
    acknowledged_by: str | None
    resolved_at: str | None
    resolved_by: str | None = Field(description="null when Vigil resolved it (the monitor recovered)")
    affected_regions: list[str]
    updated_at: str


class IncidentOut(IncidentSummaryOut):
    timeline: list[EntryOut] = Field(
        description=f"oldest first; at most {MAX_NOTES} notes, and of the entries that repeat (region_down, "
        f"region_up, postmortem_updated) the first {FIRST_REPEATS} and the latest {LATEST_REPEATS}"
    )
    timeline_dropped: int = Field(
        ge=0, description="how many repeating entries were left out between the first ones and the latest"
    )
    postmortem: PostmortemOut | None


class IncidentList(Out):
    data: list[IncidentSummaryOut]
    next_cursor: str | None


def entry_out(entry: incidents.Entry) -> EntryOut:
    return EntryOut(
        id=entry.id,
        at=isoz(entry.at) or "",
        type=entry.type,  # type: ignore[arg-type]
        by=entry.by,
        text=entry.text,
        region=entry.region,
    )


def _summary(incident: incidents.Incident) -> dict[str, object]:
    return {
        "id": incident.id,
        "monitor_id": incident.monitor_id,
        "team_id": incident.team_id,
        "status": incident.status,
        "cause": incident.cause,
        "started_at": isoz(incident.started_at) or "",
        "acknowledged_at": isoz(incident.acknowledged_at),
        "acknowledged_by": incident.acknowledged_by,
        "resolved_at": isoz(incident.resolved_at),
        "resolved_by": incident.resolved_by,
        "affected_regions": list(incident.affected_regions),
        "updated_at": isoz(incident.updated_at) or "",
    }


def incident_out(incident: incidents.Incident) -> IncidentOut:
    postmortem = PostmortemOut.model_validate(incident.postmortem) if incident.postmortem else None
    return IncidentOut(
        **_summary(incident),  # type: ignore[arg-type]
        timeline=[entry_out(e) for e in incident.timeline],
        timeline_dropped=incident.timeline_dropped,
        postmortem=postmortem,
    )


@router.route(
    "GET",
    "/v1/incidents",
    summary="List incidents, newest first",
    auth="team",
    permission=authz.READ,
    scope="incidents:read",
    query=ListQuery,
    response=IncidentList,
    errors=(400,),
)
def list_incidents(call: Call) -> IncidentList:
    q = call.query
    found, next_cursor = incidents.list_incidents(
        call.user.team_id, status=q.status, monitor_id=q.monitor_id, limit=q.limit, after=q.cursor
    )
    return IncidentList(data=[IncidentSummaryOut(**_summary(i)) for i in found], next_cursor=next_cursor)  # type: ignore[arg-type]


@router.route(
    "GET",
    "/v1/incidents/{incident_id}",
    summary="An incident, with its timeline and postmortem",
    auth="team",
    permission=authz.READ,
    scope="incidents:read",
    response=IncidentOut,
)
def get_incident(call: Call, incident_id: str) -> IncidentOut:
    return incident_out(incidents.get(call.user.team_id, incident_id))


@router.route(
    "POST",
    "/v1/incidents/{incident_id}/acknowledge",
    summary="Acknowledge an incident",
    auth="team",
    permission=authz.WRITE,
    scope="incidents:write",
    response=IncidentOut,
    errors=(409,),
)
def acknowledge(call: Call, incident_id: str) -> IncidentOut:
    """Acknowledging twice changes nothing; a resolved incident cannot be acknowledged (409)."""
    user = call.user
    return incident_out(incidents.acknowledge(user.team_id, incident_id, user.user_id, utcnow()))


@router.route(
    "POST",
    "/v1/incidents/{incident_id}/notes",
    summary="Add a note to the timeline",
    auth="team",
    permission=authz.WRITE,
    scope="incidents:write",
    body=NoteIn,
    response=EntryOut,
    status=201,
    errors=(409,),
)
def add_note(call: Call, incident_id: str) -> EntryOut:
    """The team is notified of a note (by email too): an unverified account cannot post one (403).  An incident
    takes a bounded number of notes: past it, 409 ``limit_reached`` names the limit and its value."""
    user = call.user
    abuse.require_verified(user.user_id, "posting incident notes, which notify the team")
    return entry_out(incidents.add_note(user.team_id, incident_id, user.user_id, call.body.text, utcnow()))


@router.route(
    "POST",
    "/v1/incidents/{incident_id}/resolve",
    summary="Resolve an incident by hand",
    auth="team",
    permission=authz.WRITE,
    scope="incidents:write",
    response=IncidentOut,
)
def resolve(call: Call, incident_id: str) -> IncidentOut:
    """If the monitor is still down it stays down, and no new incident opens until it has recovered and
    failed again.  Resolving twice changes nothing."""
    user = call.user
    return incident_out(incidents.resolve(user.team_id, incident_id, user.user_id, utcnow()))


@router.route(
    "PUT",
    "/v1/incidents/{incident_id}/postmortem",
    summary="Write or replace the postmortem",
    auth="team",
    permission=authz.WRITE,
    scope="incidents:write",
    body=PostmortemIn,
    response=IncidentOut,
)
def put_postmortem(call: Call, incident_id: str) -> IncidentOut:
    user = call.user
    postmortem = call.body.model_dump()
    return incident_out(incidents.set_postmortem(user.team_id, incident_id, user.user_id, postmortem, utcnow()))
