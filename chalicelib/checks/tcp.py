"""The TCP checker: can a host's port be connected to (and, with ``tls``, does it complete a TLS handshake)?

``run_tcp_check`` runs the network phases every check shares (``checks.net``): the host resolved through the SSRF
guard (``dns_ms``), a connection to a validated address, never to the name (``connect_ms``), for ``tls`` a handshake
with SNI and the certificate verified and its expiry recorded (``tls_ms``); then it closes.  Nothing is sent: a
database, mail or game server sees a connection open and close.  The response time is the whole check
(``total_ms``).  Target problems become a result with a stable error code; it never raises for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from chalicelib.checks import model, net, ssrf
from chalicelib.checks.model import CheckResult, TcpSpec, Timings


@dataclass
class _Phases:
    dns_ms: float = 0.0
    connect_ms: float = 0.0
    tls_ms: float = 0.0
    ssl_expires_at: datetime | None = None


def run_tcp_check(
    spec: TcpSpec,
    *,
    region: str,
    allow_private: bool,
    resolver: ssrf.Resolver | None = None,
    now: Callable[[], datetime] | None = None,
    is_blocked: Callable[[str], bool] | None = None,
) -> CheckResult:
    """Connect to ``spec.host:spec.port`` once and describe what happened.  Thread-safe; never raises for target
    problems.  ``allow_private``, ``resolver`` and ``is_blocked`` as for ``checks.http.run_check``."""
    checked_at = (now or (lambda: datetime.now(UTC)))()
    started = time.perf_counter()
    plan = net.plan(spec, started, allow_private=allow_private, resolver=resolver, is_blocked=is_blocked)
    phases = _Phases()
    error = detail = None
    try:
        host = ssrf.check_host(spec.host)
        addresses = net.resolve(phases, plan, host, spec.port)
        sock, ip = net.connect(phases, plan, addresses, spec.port)
        try:
            if spec.tls:
                sock = net.handshake(phases, plan, sock, ip, host, spec.port)
        finally:
            sock.close()
    except net.CheckFailure as failure:
        error, detail = failure.code, failure.detail
    except ValueError as exc:  # a host the guard cannot even parse: refused like a blocked one
        error, detail = model.DESTINATION_NOT_ALLOWED, str(exc)
    total = round((time.perf_counter() - started) * 1000, 3)
    ok = error is None
    return CheckResult(
        ok=ok,
        checked_at=checked_at,
        region=region,
        status_code=None,
        response_time_ms=total if ok else None,
        timings=Timings(
            dns_ms=round(phases.dns_ms, 3),
            connect_ms=round(phases.connect_ms, 3),
            tls_ms=round(phases.tls_ms, 3),
            ttfb_ms=0.0,
            total_ms=total,
        ),
        error=error,
        error_detail=detail,
        ssl_expires_at=phases.ssl_expires_at,
        assertion_failures=(),
        degraded=ok and spec.degraded_after_ms is not None and total > spec.degraded_after_ms,
        body_excerpt=None,
        final_url=None,
    )
