"""Maintenance windows: while one is open for a monitor, its checks go on but no incident opens or resolves.

A window's start and end are *edges* the monitor's incident state crosses (``incidents.state``, point 6): on the
scheduler's tick that passes them (``incidents.edges``, which finds them in the sparse ``edge-index``: each window
carries its next edge not yet crossed, and leaves the index once its end is), when the window is changed
(``lifecycle``), or with the first result past one.  The incident handler asks :func:`open_windows` which windows
cover a monitor over the span of the results it is applying.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import UpdateError

from chalicelib import errors
from chalicelib.ids import new_id
from chalicelib.incidents.models import MaintenanceWindowModel
from chalicelib.monitors.service import require_team_monitors
from chalicelib.storage import cursor
from chalicelib.storage.base import condition_failed, load_team_item

MAX_DURATION = timedelta(days=90)
MAX_MONITORS = 100
EDGE_SHARD = "edges"  # the edge index's one partition key


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
    edge_at: int | None = None  # its next edge not yet crossed (epoch seconds), None once its end is

    def covers(self, monitor_id: str, at: datetime) -> bool:
        return monitor_id in self.monitor_ids and self.starts_at <= at < self.ends_at

    @property
    def span(self) -> tuple[datetime, datetime]:
        return self.starts_at, self.ends_at

    def edges_passed(self, now: datetime) -> list[datetime]:
        """Its edges to cross by ``now``, in order: its start while that is its next edge, and its end once passed."""
        if self.edge_at is None or self.edge_at > _epoch(now):
            return []
        start = [self.starts_at] if self.edge_at <= _epoch_after(self.starts_at) else []
        return start + ([self.ends_at] if self.ends_at <= now else [])

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
        edge_at=int(item.edge_at) if item.edge_at is not None else None,
    )


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


def _epoch_after(at: datetime) -> int:
    """The first whole second not before ``at`` (an edge is never crossed early)."""
    return math.ceil(at.timestamp())


def next_edge(starts_at: datetime, ends_at: datetime, now: datetime) -> datetime | None:
    """A window's next edge after ``now``: its start, else its end (a window changed while it runs is entered or
    left by its change, at once), else none."""
    return starts_at if starts_at > now else ends_at if ends_at > now else None


def _set_edge(item: MaintenanceWindowModel, now: datetime) -> None:
    edge = next_edge(item.starts_at, item.ends_at, now)
    item.edge_shard = EDGE_SHARD if edge is not None else None
    item.edge_at = _epoch_after(edge) if edge is not None else None


def covering(windows: list[Window], monitor_id: str, at: datetime) -> tuple[datetime, datetime] | None:
    """The span of the windows covering the monitor at ``at`` (all of them contain ``at``: one span), or None."""
    found = [w for w in windows if w.covers(monitor_id, at)]
    if not found:
        return None
    return min(w.starts_at for w in found), max(w.ends_at for w in found)


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
    _set_edge(item, now)
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
    _set_edge(item, now)
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


def due_edges(now: datetime, limit: int) -> list[Window]:
    """The windows with an edge passed by ``now`` and not yet crossed, the oldest edge first (at most ``limit``):
    one query of the index's entries due, then the windows read consistently (the index is a moment behind)."""
    entries = MaintenanceWindowModel.by_edge.query(
        EDGE_SHARD, MaintenanceWindowModel.edge_at <= _epoch(now), limit=limit
    )
    keys = [(e.team_id, e.window_id) for e in entries]
    if not keys:
        return []
    found = [_window(item) for item in MaintenanceWindowModel.batch_get(keys, consistent_read=True)]
    return sorted((w for w in found if w.edges_passed(now)), key=lambda w: (w.edge_at or 0, w.id))


def edge_crossed(window: Window, now: datetime) -> bool:
    """Move the window's edge on past ``now`` (to its end, or out of the index), unless it changed since it was
    read (its change set its own).  Whether it was moved."""
    edge = next_edge(window.starts_at, window.ends_at, now)
    model = MaintenanceWindowModel
    actions: list[Any] = (
        [model.edge_shard.set(EDGE_SHARD), model.edge_at.set(_epoch_after(edge))]
        if edge is not None
        else [model.edge_shard.remove(), model.edge_at.remove()]
    )
    try:
        _load(window.team_id, window.id).update(
            actions=actions, condition=model.edge_at == window.edge_at, add_version_condition=False
        )
    except errors.NotFound:
        return False
    except UpdateError as exc:
        if condition_failed(exc):
            return False
        raise
    return True
