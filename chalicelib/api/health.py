"""GET /health (no auth)."""

from __future__ import annotations

from typing import Literal

from chalicelib.api.framework import Call, Out, Reply, Router
from chalicelib.health import run_checks
from chalicelib.settings import get_settings

router = Router("health")


class HealthOut(Out):
    status: Literal["ok", "failing"]
    version: str
    checks: dict[str, Literal["ok", "failing"]]


@router.route(
    "GET", "/health", summary="Service health", auth="none", response=HealthOut, errors=(503,), own_body_errors=(503,)
)
def health(call: Call) -> Reply:
    """Touches every dependency; 503 names the failing check."""
    checks = run_checks()
    healthy = all(v == "ok" for v in checks.values())
    body = HealthOut(status="ok" if healthy else "failing", version=get_settings().version, checks=checks)
    return Reply(body=body, status=200 if healthy else 503)
