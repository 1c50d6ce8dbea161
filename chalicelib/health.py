"""Health: each dependency is really touched, and named when it fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from chalicelib.observability import logger
from chalicelib.users import service as users

CHECKS: dict[str, Callable[[], None]] = {"dynamodb": users.probe}


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
