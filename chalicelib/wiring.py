"""The composition root: settings → storage → routers.  ``app.py`` calls this once."""

from __future__ import annotations

from chalice import Blueprint

from chalicelib.api.framework import not_found_blueprint
from chalicelib.bootstrap import configure_core
from chalicelib.models import ALL_MODELS
from chalicelib.settings import Settings


def configure(settings: Settings | None = None) -> Settings:
    """Once per process, every table: settings, storage, AWS clients, log level.  Nothing else: cross-area effects
    are explicit calls in :mod:`chalicelib.lifecycle`."""
    return configure_core(settings, models=ALL_MODELS)


def not_found() -> Blueprint:
    return not_found_blueprint()


def event_blueprints() -> list[Blueprint]:
    """The event handlers Lambda runs beside the API (and the local event loop runs for it)."""
    from chalicelib.events import aggregate, alerts, incidents, mail, schedule, status_pages

    return [
        schedule.blueprint,
        aggregate.blueprint,
        incidents.blueprint,
        alerts.blueprint,
        mail.blueprint,
        status_pages.blueprint,
    ]
