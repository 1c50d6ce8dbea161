"""Health: each dependency is really touched, and named when it fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from chalicelib.observability import logger
from chalicelib.users.models import UserModel


def _dynamodb() -> None:
    # A point read of a key that cannot exist: proves the table, the
    # credentials and the network path, at the cost of one read unit.
    try:
        UserModel.get("usr_health_probe")
    except UserModel.DoesNotExist:
        return


CHECKS: dict[str, Callable[[], None]] = {"dynamodb": _dynamodb}


def run_checks() -> dict[str, Literal["ok", "failing"]]:
    results: dict[str, Literal["ok", "failing"]] = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - a health check reports every failure, whatever its kind
            logger.warning("health check failed", extra={"check": name, "error": type(exc).__name__})
            results[name] = "failing"
    return results
