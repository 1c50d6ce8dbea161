"""The composition root: settings → storage → routers.  ``app.py`` calls this once."""

from __future__ import annotations

from chalice import Blueprint

from chalicelib.api.framework import Router, not_found_blueprint, set_authenticator
from chalicelib.settings import Settings, get_settings
from chalicelib.storage.base import configure_storage


def configure(settings: Settings | None = None) -> Settings:
    from chalicelib.aws.clients import reset_clients
    from chalicelib.settings import use_settings

    settings = use_settings(settings) if settings else get_settings()
    configure_storage(settings)
    reset_clients()
    from chalicelib.observability import logger

    logger.setLevel(settings.log_level)
    from chalicelib.auth.service import authenticate
    from chalicelib.monitors.service import purge_team
    from chalicelib.teams.service import TEAM_PURGERS

    set_authenticator(authenticate)
    if purge_team not in TEAM_PURGERS:
        TEAM_PURGERS.append(purge_team)
    return settings


def routers(settings: Settings) -> list[Router]:
    from chalicelib.api import auth, docs, health, me, monitors, teams

    found = [health.router, docs.router, auth.router, me.router, teams.router, monitors.router]
    if settings.is_local:
        from chalicelib.api import dev

        found.append(dev.router)
    return found


def not_found() -> Blueprint:
    return not_found_blueprint()


def event_blueprints() -> list[Blueprint]:
    """The event handlers Lambda runs beside the API (and the local event loop runs for it)."""
    from chalicelib.events import results, schedule

    return [schedule.blueprint, results.blueprint]
