"""Maintenance windows: while one is open for a monitor, its checks go on but no incident opens.

The incident handler asks :func:`open_windows` which windows cover a monitor over the span of the results it is
applying; the status becomes ``maintenance``, and a monitor still down when its window ends opens its incident
with the first result after the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chalicelib import errors
from chalicelib.ids import new_id
from chalicelib.incidents.models import MaintenanceWindowModel
from chalicelib.monitors.service import require_team_monitors
from chalicelib.storage import cursor
from chalicelib.storage.base import load_team_item

MAX_DURATION = timedelta(days=90)
MAX_MONITORS = 100


@dataclass(frozen=True)
class Window:
    id: str
    team_id: str
    title: str
    description: str | None
    monitor_ids: tuple[str, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    created_at: datetime
    updated_at: datetime

    def covers(self, monitor_id: str, at: datetime) -> bool:
        return monitor_id in self.monitor_ids and self.starts_at <= at < self.ends_at

    def status(self, now: datetime) -> str:
        if now < self.starts_at:
            return "scheduled"
        return "in_progress" if now < self.ends_at else "completed"


def _window(item: MaintenanceWindowModel) -> Window:
    return Window(
        id=item.window_id,
        team_id=item.team_id,
        title=item.title,
        description=item.description,
        monitor_ids=tuple(str(m) for m in item.monitor_ids or ()),
        starts_at=item.starts_at,
        ends_at=item.ends_at,
        created_by=item.created_by,
        created_at=item.created_at,
        updated_at=item.updated_at,
    )


def _check(team_id: str, fields: dict[str, Any], now: datetime, *, creating: bool, kept: tuple[str, ...] = ()) -> None:
    """``kept``: monitors the window already names, not checked again (one may have been deleted since)."""
    problems = []
    starts, ends = fields["starts_at"], fields["ends_at"]
    if ends <= starts:
        problems.append(errors.FieldError("ends_at", "must be after starts_at"))
    elif ends - starts > MAX_DURATION:
        problems.append(errors.FieldError("ends_at", f"a window lasts at most {MAX_DURATION.days} days"))
    if creating and ends <= now:
        problems.append(errors.FieldError("ends_at", "must be in the future"))
    if problems:
        raise errors.ValidationFailed(problems)
    require_team_monitors(team_id, [m for m in fields["monitor_ids"] if m not in kept])


def create(team_id: str, user_id: str, fields: dict[str, Any], now: datetime) -> Window:
    """``fields``: title, description, monitor_ids, starts_at, ends_at (validated at the edge)."""
    fields = {**fields, "monitor_ids": list(dict.fromkeys(fields["monitor_ids"]))}
    _check(team_id, fields, now, creating=True)
    item = MaintenanceWindowModel(team_id, new_id("mw"), created_by=user_id, created_at=now, updated_at=now, **fields)
    item.save(condition=MaintenanceWindowModel.window_id.does_not_exist())
    return _window(item)


def _load(team_id: str, window_id: str) -> MaintenanceWindowModel:
    return load_team_item(MaintenanceWindowModel, team_id, window_id, "maintenance window")


def get(team_id: str, window_id: str) -> Window:
    return _window(_load(team_id, window_id))


def update(team_id: str, window_id: str, changes: dict[str, Any], now: datetime) -> tuple[Window, Window]:
    """A partial change; the result must still be a valid window.  A stale concurrent edit → 409.  Returns the
    window before and after the change."""
    item = _load(team_id, window_id)
    current = _window(item)
    fields = {
        "title": current.title,
        "description": current.description,
        "monitor_ids": list(current.monitor_ids),
        "starts_at": current.starts_at,
        "ends_at": current.ends_at,
        **changes,
    }
    fields["monitor_ids"] = list(dict.fromkeys(fields["monitor_ids"]))
    _check(team_id, fields, now, creating=False, kept=current.monitor_ids)
    for name, value in fields.items():
        setattr(item, name, value)
    item.updated_at = now
    item.save()
    return current, _window(item)


def delete(team_id: str, window_id: str) -> Window:
    """Delete the window; returns it as it was."""
    item = _load(team_id, window_id)
    item.delete(add_version_condition=False)
    return _window(item)


def purge_team(team_id: str) -> None:
    for item in MaintenanceWindowModel.query(team_id):
        item.delete(add_version_condition=False)


def list_windows(team_id: str, *, limit: int, after: str | None) -> tuple[list[Window], str | None]:
    """Newest first (by creation); the cursor is signed for this team and list."""
    page, next_cursor = cursor.paginate(
        lambda start: MaintenanceWindowModel.query(
            team_id, scan_index_forward=False, last_evaluated_key=start, page_size=cursor.page_size(limit)
        ),
        team_id=team_id,
        scope="maintenance",
        limit=limit,
        after=after,
        key=("team_id", "window_id"),
    )
    return [_window(item) for item in page], next_cursor


def not_ended(team_id: str, now: datetime) -> list[Window]:
    """The team's windows in progress or to come (the index sorted by end time: never its history)."""
    query = MaintenanceWindowModel.by_end.query(team_id, range_key_condition=MaintenanceWindowModel.ends_at > now)
    return [_window(item) for item in query]


def open_windows(team_id: str, since: datetime, until: datetime, monitor_id: str | None = None) -> list[Window]:
    """The team's windows (for this monitor, if named) that overlap ``[since, until]``: one query of the windows
    that have not ended by ``since`` (the index is sorted by end time)."""
    condition = MaintenanceWindowModel.starts_at <= until
    if monitor_id is not None:
        condition &= MaintenanceWindowModel.monitor_ids.contains(monitor_id)
    query = MaintenanceWindowModel.by_end.query(
        team_id, range_key_condition=MaintenanceWindowModel.ends_at > since, filter_condition=condition
    )
    return [_window(item) for item in query]
