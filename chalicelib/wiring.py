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

    set_authenticator(authenticate)
    return settings


def routers(settings: Settings) -> list[Router]:
    from chalicelib.api import auth, docs, health, me, teams

    found = [health.router, docs.router, auth.router, me.router, teams.router]
    if settings.is_local:
        from chalicelib.api import dev

        found.append(dev.router)
    return found


def not_found() -> Blueprint:
    return not_found_blueprint()
