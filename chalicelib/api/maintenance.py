"""/v1/maintenance-windows/*: while a window is open its monitors' checks go on, but no incident opens."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from chalicelib import lifecycle
from chalicelib.api.framework import Call, Out, Reply, Router
from chalicelib.api.schemas import ListQuery
from chalicelib.clock import isoz, utcnow
from chalicelib.incidents import maintenance
from chalicelib.schema import Line, Schema, Text, ZonedTime
from chalicelib.teams import authz

router = Router("maintenance windows")

MonitorId = Annotated[str, Field(min_length=1, max_length=100)]


class WindowFields(Schema):
    NOT_NULL = ("title", "monitor_ids", "starts_at", "ends_at")

    title: Line | None = Field(
        default=None, min_length=1, max_length=200, description="public: shown on status pages showing its monitors"
    )
    description: Text | None = Field(default=None, max_length=5000, description="public, as the title is")
    monitor_ids: list[MonitorId] | None = Field(default=None, min_length=1, max_length=maintenance.MAX_MONITORS)
    starts_at: ZonedTime | None = None
    ends_at: ZonedTime | None = None

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class WindowIn(WindowFields):
    title: Line = Field(min_length=1, max_length=200)  # type: ignore[assignment]
    monitor_ids: list[MonitorId] = Field(min_length=1, max_length=maintenance.MAX_MONITORS)  # type: ignore[assignment]
    starts_at: ZonedTime  # type: ignore[assignment]
    ends_at: ZonedTime  # type: ignore[assignment]


class WindowPatch(WindowFields):
    """Only the fields sent change."""


class WindowOut(Out):
    id: str
    team_id: str
    title: str
    description: str | None
    monitor_ids: list[str]
    starts_at: str
    ends_at: str
    status: Literal["scheduled", "in_progress", "completed"]
    created_by: str
    created_at: str
    updated_at: str


class WindowList(Out):
    data: list[WindowOut]
    next_cursor: str | None


def window_out(window: maintenance.Window) -> WindowOut:
    return WindowOut(
        id=window.id,
        team_id=window.team_id,
        title=window.title,
        description=window.description,
        monitor_ids=list(window.monitor_ids),
        starts_at=isoz(window.starts_at) or "",
        ends_at=isoz(window.ends_at) or "",
        status=window.status(utcnow()),  # type: ignore[arg-type]
        created_by=window.created_by,
        created_at=isoz(window.created_at) or "",
        updated_at=isoz(window.updated_at) or "",
    )


@router.route(
    "POST",
    "/v1/maintenance-windows",
    summary="Schedule a maintenance window",
    auth="team",
    permission=authz.WRITE,
    scope="maintenance:write",
    body=WindowIn,
    response=WindowOut,
    status=201,
    errors=(404,),
)
def create_window(call: Call) -> WindowOut:
    """Every monitor must be the team's (404 otherwise); the window must end after it starts, in the future,
    and last at most 90 days."""
    user = call.user
    fields = {"description": None, **call.body.changes()}
    return window_out(lifecycle.create_window(user.team_id, user.user_id, fields, utcnow()))


@router.route(
    "GET",
    "/v1/maintenance-windows",
    summary="List maintenance windows, newest first",
    auth="team",
    permission=authz.READ,
    scope="maintenance:read",
    query=ListQuery,
    response=WindowList,
    errors=(400,),
)
def list_windows(call: Call) -> WindowList:
    found, next_cursor = maintenance.list_windows(call.user.team_id, limit=call.query.limit, after=call.query.cursor)
    return WindowList(data=[window_out(w) for w in found], next_cursor=next_cursor)


@router.route(
    "GET",
    "/v1/maintenance-windows/{window_id}",
    summary="A maintenance window",
    auth="team",
    permission=authz.READ,
    scope="maintenance:read",
    response=WindowOut,
)
def get_window(call: Call, window_id: str) -> WindowOut:
    return window_out(maintenance.get(call.user.team_id, window_id))


@router.route(
    "PATCH",
    "/v1/maintenance-windows/{window_id}",
    summary="Change a maintenance window",
    auth="team",
    permission=authz.WRITE,
    scope="maintenance:write",
    body=WindowPatch,
    response=WindowOut,
    errors=(409,),
)
def patch_window(call: Call, window_id: str) -> WindowOut:
    """Send only the fields to change; ending a window early is setting ``ends_at`` to now."""
    return window_out(lifecycle.update_window(call.user.team_id, window_id, call.body.changes(), utcnow()))


@router.route(
    "DELETE",
    "/v1/maintenance-windows/{window_id}",
    summary="Delete a maintenance window",
    auth="team",
    permission=authz.WRITE,
    scope="maintenance:write",
    status=204,
)
def delete_window(call: Call, window_id: str) -> Reply:
    lifecycle.delete_window(call.user.team_id, window_id, utcnow())
    return Reply(status=204)
