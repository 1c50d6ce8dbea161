"""Every router the API serves, in one list: the app registers them, the docs and OpenAPI document describe them."""

from __future__ import annotations

from chalicelib.api.framework import Router
from chalicelib.settings import Settings


def routers(settings: Settings) -> list[Router]:
    from chalicelib.api import (
        apikeys,
        auth,
        billing,
        channels,
        docs,
        health,
        incidents,
        maintenance,
        me,
        monitors,
        pings,
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
        apikeys.router,
        monitors.router,
        pings.router,
        incidents.router,
        maintenance.router,
        channels.router,
        status_pages.router,
        public.router,
        billing.router,
    ]
    if settings.is_local:
        from chalicelib.api import dev

        found.append(dev.router)
    return found
