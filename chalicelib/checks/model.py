"""What a check is asked to do and what it found: plain frozen dataclasses, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

SOURCES = ("status_code", "response_time", "header", "body", "json_body", "ssl_expiry_days")
COMPARISONS = (
    "equals",
    "not_equals",
    "greater_than",
    "less_than",
    "contains",
    "not_contains",
    "is_empty",
    "not_empty",
)
# Sources that read one named part of the response: a header name, or a JSONPath into the body.
SOURCES_WITH_PROPERTY = ("header", "json_body")

# The stable error codes a result can carry (API clients and alert rules match on these strings).
TIMEOUT = "timeout"
DNS_FAILURE = "dns_failure"
CONNECTION_REFUSED = "connection_refused"
CONNECTION_RESET = "connection_reset"
# A network error that is neither a refusal nor a reset (host or network unreachable, …).
CONNECTION_FAILED = "connection_failed"
TLS_ERROR = "tls_error"
CERTIFICATE_EXPIRED = "certificate_expired"
CERTIFICATE_INVALID = "certificate_invalid"
# The server answered something that is not HTTP/1.x, or a body that its Content-Encoding cannot decode.
INVALID_RESPONSE = "invalid_response"
STATUS_MISMATCH = "status_mismatch"
ASSERTION_FAILED = "assertion_failed"
TOO_MANY_REDIRECTS = "too_many_redirects"
BODY_TOO_LARGE = "body_too_large"
DESTINATION_NOT_ALLOWED = "destination_not_allowed"
# A heartbeat's (``monitors.heartbeats``): no ping within its period and grace; a run that pinged its start and
# not its end within the grace; a ping to ``/fail``.
PING_MISSED = "ping_missed"
RUN_UNFINISHED = "run_unfinished"
FAILURE_REPORTED = "failure_reported"

ERROR_CODES = (
    TIMEOUT,
    DNS_FAILURE,
    CONNECTION_REFUSED,
    CONNECTION_RESET,
    CONNECTION_FAILED,
    TLS_ERROR,
    CERTIFICATE_EXPIRED,
    CERTIFICATE_INVALID,
    INVALID_RESPONSE,
    STATUS_MISMATCH,
    ASSERTION_FAILED,
    TOO_MANY_REDIRECTS,
    BODY_TOO_LARGE,
    DESTINATION_NOT_ALLOWED,
    PING_MISSED,
    RUN_UNFINISHED,
    FAILURE_REPORTED,
)


@dataclass(frozen=True)
class Assertion:
    source: str  # one of SOURCES
    comparison: str  # one of COMPARISONS
    target: str = ""
    property: str | None = None  # header name or JSONPath, for the SOURCES_WITH_PROPERTY


@dataclass(frozen=True)
class CheckSpec:
    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    timeout_ms: int = 10000  # the whole check, every redirect hop included
    expected_status: tuple[str, ...] = ("2xx",)  # codes ("200") or classes ("3xx")
    follow_redirects: bool = True
    verify_ssl: bool = True
    assertions: tuple[Assertion, ...] = ()
    degraded_after_ms: int | None = None
    connect_timeout_ms: int = 5000  # one TCP connect; the total deadline still applies


@dataclass(frozen=True)
class TcpSpec:
    """A TCP port check: connect (and, with ``tls``, handshake), then close."""

    host: str  # a name or an address, as the user wrote it (normalized by the checker)
    port: int
    tls: bool = False
    verify_ssl: bool = True  # with tls: the certificate must verify for the host
    timeout_ms: int = 10000  # the whole check
    degraded_after_ms: int | None = None
    connect_timeout_ms: int = 5000  # one TCP connect; the total deadline still applies


@dataclass(frozen=True)
class Timings:
    """Milliseconds spent in each phase of the final hop (0 for a phase that did not happen)."""

    dns_ms: float = 0.0
    connect_ms: float = 0.0
    tls_ms: float = 0.0
    ttfb_ms: float = 0.0  # start of sending the request → status line and headers in
    total_ms: float = 0.0  # start of the hop's DNS lookup → end of its body (or of the failure)


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    checked_at: datetime  # UTC, when the check started
    region: str
    status_code: int | None
    response_time_ms: float | None  # total_ms of the final hop, when it got a response
    timings: Timings
    error: str | None  # one of ERROR_CODES, or None
    error_detail: str | None  # human text: never the remote body, never a resolved address
    ssl_expires_at: datetime | None
    assertion_failures: tuple[str, ...]
    degraded: bool  # ok, but slower than degraded_after_ms
    body_excerpt: str | None  # at most 1 KB of the decompressed body, for debugging only
    final_url: str | None  # the last URL requested
    response_headers: tuple[tuple[str, str], ...] = ()  # of the final hop, names in lower case
    # False: listed and seen by the incident handler, not counted in uptime (a heartbeat's second ping of one
    # period: its uptime counts periods, ``monitors.heartbeats``).
    counted: bool = True
