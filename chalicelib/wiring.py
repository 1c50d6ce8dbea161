"""The composition root: settings → storage → routers.  ``app.py`` calls this once."""

from __future__ import annotations

from chalice import Blueprint

from chalicelib.api.framework import not_found_blueprint
from chalicelib.settings import Settings, get_settings
from chalicelib.storage.base import configure_storage


def configure(settings: Settings | None = None) -> Settings:
    """Once per process: settings, storage, AWS clients, log level.  Nothing else: cross-area effects are explicit
    calls in :mod:`chalicelib.lifecycle`."""
    from chalicelib.aws.clients import reset_clients
    from chalicelib.observability import logger
    from chalicelib.settings import use_settings

    settings = use_settings(settings) if settings else get_settings()
    configure_storage(settings)
    reset_clients()
    logger.setLevel(settings.log_level)
    return settings


def not_found() -> Blueprint:
    return not_found_blueprint()


def event_blueprints() -> list[Blueprint]:
    """The event handlers Lambda runs beside the API (and the local event loop runs for it)."""
    from chalicelib.events import alerts, incidents, results, schedule, status_pages

    return [schedule.blueprint, results.blueprint, incidents.blueprint, alerts.blueprint, status_pages.blueprint]
