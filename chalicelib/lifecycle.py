"""The use cases that cross areas, each in the order that matters, readable in one place.

An area's service changes what that area owns; when a change must reach other areas (a deleted monitor's
incident resolves and it leaves its status pages; a deleted team takes everything with it), the edges call the
use case here instead of the area's service.  Nothing is registered at import: every effect is an explicit call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from chalicelib.alerts import channels
from chalicelib.incidents import maintenance, tracker
from chalicelib.incidents import service as incidents
from chalicelib.monitors import service as monitors
from chalicelib.observability import logger
from chalicelib.status_pages import publish
from chalicelib.status_pages import service as status_pages
from chalicelib.teams import service as teams

# --------------------------------------------------------------------------------------------- monitors


def create_monitor(
    team_id: str, config: monitors.MonitorConfig, all_regions: tuple[str, ...], now: datetime
) -> monitors.Monitor:
    """1. The config is completed and validated (422); 2. its channels must be the team's (404); 3. it is saved."""
    return monitors.create(team_id, config, all_regions, now, check_channels=_team_channels(team_id))


def update_monitor(
    team_id: str,
    monitor_id: str,
    changes: dict[str, Any],
    all_regions: tuple[str, ...],
    now: datetime,
    check_target: Callable[[dict[str, Any]], None],
) -> monitors.Monitor:
    """1. The monitor is loaded (404); 2. the change checked against its type, its new target by ``check_target``
    (422), completed and validated (422); 3. new channels must be the team's (404); 4. it is saved under its
    version (a lost race reloads and goes again from 1)."""
    return monitors.update(
        team_id,
        monitor_id,
        changes,
        all_regions,
        now,
        check_channels=_team_channels(team_id),
        check_target=check_target,
    )


def _team_channels(team_id: str) -> Callable[[tuple[str, ...]], None]:
    """The check a monitor's ``channel_ids`` pass: every one an alert channel of the team (404 naming the first
    that is not)."""
    return functools.partial(channels.require_team_channels, team_id)


def set_monitor_paused(team_id: str, monitor_id: str, paused: bool, now: datetime) -> monitors.Monitor:
    """Pause or resume.

    1. The monitor leaves (or rejoins) the schedule in the same write.
    2. The incident handler ends its outage (paused: no check could ever resolve it) — even if it already was
       paused: a step that failed the first time gets another go — or, resumed from a pause, starts its state
       afresh.  Resuming a monitor that was not paused changes nothing: its outage, if any, goes on.
    3. The monitor is returned as the incident handler left it.
    """
    monitor, was_paused = monitors.set_paused(team_id, monitor_id, paused, now)
    if paused or was_paused:
        tracker.pause_changed(monitor, now)
    return monitors.get(team_id, monitor_id)


def delete_monitor(team_id: str, monitor_id: str, now: datetime) -> None:
    """Delete a monitor.

    1. The monitor goes first, so that no late result can bring its incident state back.
    2. Its open incident resolves (machines told of the outage are told it ended) and its state goes.
    3. It leaves every status page that showed it; those pages republish.
    """
    monitor = monitors.delete(team_id, monitor_id)
    tracker.forget_monitor(monitor, now)
    status_pages.forget_monitor(team_id, monitor_id, now)


# --------------------------------------------------------------------------------------------- channels


def delete_channel(team_id: str, channel_id: str) -> None:
    """The channel goes, then every monitor of the team that named it forgets it."""
    channels.delete(team_id, channel_id)
    monitors.unlink_channel(team_id, channel_id)


# --------------------------------------------------------------------------------------------- maintenance


def create_window(team_id: str, user_id: str, fields: dict[str, Any], now: datetime) -> maintenance.Window:
    window = maintenance.create(team_id, user_id, fields, now)
    _sync_maintenance(team_id, set(window.monitor_ids), now)
    _republish_quietly(team_id, set(window.monitor_ids))
    return window


def update_window(team_id: str, window_id: str, changes: dict[str, Any], now: datetime) -> maintenance.Window:
    """The pages of the monitors it named before and names now show the change."""
    before, after = maintenance.update(team_id, window_id, changes, now)
    _sync_maintenance(team_id, set(before.monitor_ids) | set(after.monitor_ids), now)
    _republish_quietly(team_id, set(before.monitor_ids) | set(after.monitor_ids))
    return after


def delete_window(team_id: str, window_id: str, now: datetime) -> None:
    window = maintenance.delete(team_id, window_id)
    _sync_maintenance(team_id, set(window.monitor_ids), now)
    _republish_quietly(team_id, set(window.monitor_ids))


def _sync_maintenance(team_id: str, monitor_ids: set[str], now: datetime) -> None:
    """Each monitor the change touched carries the spans of all its windows not ended, read after the change.

    Two changes racing for one monitor can leave it one change behind until the next: then only the status label
    ``maintenance`` waits for a result the worker marks anyway (a failure), since the incident handler reads the
    windows themselves before it opens anything."""
    spans: dict[str, list[tuple[datetime, datetime]]] = {m: [] for m in monitor_ids}
    for window in maintenance.not_ended(team_id, now):
        for monitor_id in set(window.monitor_ids) & monitor_ids:
            spans[monitor_id].append((window.starts_at, window.ends_at))
    monitors.set_maintenance(team_id, spans)


def _republish_quietly(team_id: str, monitor_ids: set[str]) -> None:
    """A maintenance window changed: the pages showing its monitors show it (best effort, logged)."""
    try:
        publish.republish_for(team_id, monitor_ids)
    except Exception:  # noqa: BLE001 - the window change stands; the next change publishes again
        logger.exception("status page publishing failed", extra={"team_id": team_id})


# --------------------------------------------------------------------------------------------- teams


def delete_team(actor: str, team_id: str) -> None:
    """Delete a team and all its data.

    1. A user's last team cannot go (409): everyone keeps a team to act in.
    2. Incidents first: their purge needs the team's monitors, to forget their incident state.
    3. Maintenance windows, alert channels, status pages (unpublished), then the monitors themselves.
    4. Last, the team with its members and invitations.
    """
    teams.require_another_team(actor)
    incidents.purge_team(team_id, monitors.team_monitor_ids(team_id))
    maintenance.purge_team(team_id)
    channels.purge_team(team_id)
    status_pages.purge_team(team_id)
    monitors.purge_team(team_id)
    teams.delete_team(team_id)
