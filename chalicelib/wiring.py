"""The composition root: settings → storage → routers.  ``app.py`` calls this once."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib.api.framework import Router, not_found_blueprint, set_authenticator
from chalicelib.bootstrap import configure_core
from chalicelib.models import ALL_MODELS
from chalicelib.settings import Settings


def configure(settings: Settings | None = None) -> Settings:
    settings = configure_core(settings, models=ALL_MODELS)
    from chalicelib.alerts import channels
    from chalicelib.auth.service import authenticate
    from chalicelib.incidents import maintenance, tracker
    from chalicelib.incidents import service as incidents
    from chalicelib.monitors import service as monitors
    from chalicelib.status_pages import publish
    from chalicelib.status_pages import service as status_pages
    from chalicelib.teams.service import TEAM_PURGERS

    set_authenticator(authenticate)
    _hook(status_pages.ON_CHANGE, publish.publish_quietly)
    _hook(status_pages.ON_DELETE, publish.unpublish_quietly)
    _hook(maintenance.ON_CHANGE, _republish_quietly)
    # Incidents first: their purge finds the team's monitors to forget their incident state.
    for purge in (
        incidents.purge_team,
        maintenance.purge_team,
        channels.purge_team,
        status_pages.purge_team,
        monitors.purge_team,
    ):
        if purge not in TEAM_PURGERS:
            TEAM_PURGERS.append(purge)
    if channels.exists not in monitors.CHANNEL_LOOKUPS:
        monitors.CHANNEL_LOOKUPS.append(channels.exists)
    _hook(monitors.ON_DELETE, tracker.forget_monitor)
    _hook(monitors.ON_PAUSE, tracker.pause_changed)
    _hook(monitors.ON_DELETE, status_pages.forget_monitor)
    return settings


def _hook(hooks: list[Any], function: Any) -> None:
    if function not in hooks:
        hooks.append(function)


def _republish_quietly(team_id: str, monitor_ids: set[str]) -> None:
    """A maintenance window changed: the pages showing its monitors show it (best effort, logged)."""
    from chalicelib.observability import logger
    from chalicelib.status_pages.publish import republish_for

    try:
        republish_for(team_id, monitor_ids)
    except Exception:  # noqa: BLE001 - the window change stands; the next change publishes again
        logger.exception("status page publishing failed", extra={"team_id": team_id})


def routers(settings: Settings) -> list[Router]:
    from chalicelib.api import (
        auth,
        channels,
        docs,
        health,
        incidents,
        maintenance,
        me,
        monitors,
        public,
        status_pages,
        teams,
    )

    found = [
        health.router,
        docs.router,
        auth.router,
        me.router,
        teams.router,
        monitors.router,
        incidents.router,
        maintenance.router,
        channels.router,
        status_pages.router,
        public.router,
    ]
    if settings.is_local:
        from chalicelib.api import dev

        found.append(dev.router)
    return found


def not_found() -> Blueprint:
    return not_found_blueprint()


def event_blueprints() -> list[Blueprint]:
    """The event handlers Lambda runs beside the API (and the local event loop runs for it)."""
    from chalicelib.events import alerts, incidents, results, schedule, status_pages

    return [schedule.blueprint, results.blueprint, incidents.blueprint, alerts.blueprint, status_pages.blueprint]
