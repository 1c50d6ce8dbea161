"""Configure a process once per cold start: settings, its tables, AWS clients, log level.

Every entry point calls :func:`configure_core`: the API and its event handlers through
``chalicelib.wiring.configure`` with every table, the check worker directly with the two it uses.  It
imports no edge and no area, so a Lambda that needs little loads little.
"""

from __future__ import annotations

from collections.abc import Iterable

from chalicelib.aws.clients import reset_clients
from chalicelib.observability import logger, metrics
from chalicelib.settings import Settings, get_settings, use_settings
from chalicelib.storage.base import BaseModel, configure_storage


def configure_core(settings: Settings | None = None, *, models: Iterable[type[BaseModel]]) -> Settings:
    """Use ``settings`` (default: from the environment), point ``models`` at their tables, drop cached clients."""
    settings = use_settings(settings) if settings else get_settings()
    configure_storage(settings, models)
    reset_clients()
    logger.setLevel(settings.log_level)
    # Every metric names its stage: two stages in one account and region never keep each other's alarms quiet.
    metrics.clear_default_dimensions()
    metrics.dimension_set.pop("stage", None)  # configured again (tests, the local stack): no "already added"
    metrics.set_default_dimensions(stage=settings.stage)
    return settings
