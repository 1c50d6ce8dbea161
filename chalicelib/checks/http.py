"""The HTTP checker: one check of one URL, safely, with exact phase timings.

Steps 1-3 are every network check's (``checks.net``); the TCP checker runs them too.

``run_check`` follows these steps for each hop (the first request, then each redirect, at most 5):

1. Resolve the host through the SSRF guard, which returns only validated addresses (``dns_ms``).
2. Open a TCP connection to a validated address itself — never to the name, so a
   second DNS answer cannot be used (``connect_ms``, bounded by ``connect_timeout_ms``).
3. For https, run the TLS handshake with the shared context, sending SNI for the
   name and verifying the certificate against it (``tls_ms``); record its expiry.
4. Send the request through urllib3's HTTP/1.1 connection on that socket, with
   ``Host`` for the name (``ttfb_ms``: request sent → status line and headers in).
5. Read the body in chunks, decompressing incrementally, and stop past 1 MiB.

Every socket read and write waits at most until one deadline (``timeout_ms`` after
the start), so a server that sends one byte a second cannot stretch a check.
Proxy variables are never read: no proxy is ever used.  Target problems become
a result with a stable error code; ``run_check`` never raises for them.
"""

from __future__ import annotations

import codecs
import http.client
import io
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection
from urllib3.exceptions import DecodeError

from chalicelib.checks import assertions, model, net, ssrf
from chalicelib.checks.model import CheckResult, CheckSpec, Timings
from chalicelib.checks.net import CheckFailure

MAX_REDIRECTS = 5
MAX_BODY_BYTES = 1024 * 1024  # after decompression
EXCERPT_BYTES = 1024
READ_CHUNK = 64 * 1024
USER_AGENT = "Vigil-Uptime-Monitor/1.0"
REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))
ACCEPT_ENCODING = urllib3.util.make_headers(accept_encoding=True)["accept-encoding"]


@dataclass
class _Hop:
    """What one request of the check measured and received."""

    url: str
    started: float
    dns_ms: float = 0.0
    connect_ms: float = 0.0
    tls_ms: float = 0.0
    ttfb_ms: float = 0.0
    total_ms: float = 0.0
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    ssl_expires_at: datetime | None = None

    def timings(self) -> Timings:
        return Timings(
            dns_ms=round(self.dns_ms, 3),
            connect_ms=round(self.connect_ms, 3),
            tls_ms=round(self.tls_ms, 3),
            ttfb_ms=round(self.ttfb_ms, 3),
            total_ms=round(self.total_ms, 3),
        )


@dataclass(frozen=True)
class _Plan:
    """How to run every hop of one check: its spec, and the budget and guard of its network phases."""

    spec: CheckSpec
    budget: net.Plan

    @property
    def deadline(self) -> float:
        return self.budget.deadline


def _utcnow() -> datetime:
    return datetime.now(UTC)


def run_check(
    spec: CheckSpec,
    *,
    region: str,
    allow_private: bool,
    resolver: ssrf.Resolver | None = None,
    now: Callable[[], datetime] | None = None,
    is_blocked: Callable[[str], bool] | None = None,
) -> CheckResult:
    """Run one check of ``spec`` and describe what happened.  Thread-safe; never raises for target problems.

    ``allow_private`` lifts the SSRF range check (pass ``Settings.allow_private_targets``).
    ``resolver`` and ``is_blocked`` replace DNS and the address policy (see ``ssrf.resolve_allowed``).
    """
    checked_at = (now or _utcnow)()
    start = time.perf_counter()
    plan = _Plan(spec, net.plan(spec, start, allow_private=allow_private, resolver=resolver, is_blocked=is_blocked))
    hop = _Hop(url=spec.url, started=start)
    final_url: str | None = None
    try:
        url = _initial_url(spec.url)
        origin = _origin(url)
        method, body = spec.method.upper(), spec.body
        for redirects in range(MAX_REDIRECTS + 1):
            hop = _Hop(url=url, started=time.perf_counter())
            location = _fetch(hop, plan, method, body, send_custom_headers=_origin(url) == origin)
            final_url = url
            if location is None:
                break
            if redirects == MAX_REDIRECTS:
                raise CheckFailure(model.TOO_MANY_REDIRECTS, f"more than {MAX_REDIRECTS} redirects")
            url = _redirect_target(url, location)
            method, body = _redirected_method(hop.status or 0, method, body)
            if body and not _same_or_upgraded(_origin(url), origin):  # the monitor's body, for its origin only
                raise CheckFailure(
                    model.DESTINATION_NOT_ALLOWED,
                    f"a {hop.status} redirect to another origin would send the request's body there: not followed",
                )
    except CheckFailure as failure:
        hop.total_ms = (time.perf_counter() - hop.started) * 1000
        return _result(spec, hop, checked_at, region, final_url, failure.code, failure.detail, ())
    return _judge(spec, hop, checked_at, region, final_url)


def _initial_url(url: str) -> str:
    try:
        return ssrf.check_url_syntax(url)
    except ValueError as exc:
        raise CheckFailure(model.DESTINATION_NOT_ALLOWED, str(exc)) from None


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port or ssrf.DEFAULT_PORTS[parts.scheme]


def _same_or_upgraded(target: tuple[str, str, int], origin: tuple[str, str, int]) -> bool:
    """``target`` is ``origin``, or the same host's https where the origin was plain http (the redirect a server
    answers every plain request with: the body goes where it was meant to, encrypted)."""
    if target == origin:
        return True
    scheme, host, port = origin
    return scheme == "http" and target == ("https", host, ssrf.DEFAULT_PORTS["https"]) and port == 80


def _redirect_target(current: str, location: str) -> str:
    target = urljoin(current, location.strip())
    if urlsplit(target).scheme.lower() not in ssrf.DEFAULT_PORTS:
        raise CheckFailure(model.DESTINATION_NOT_ALLOWED, "a redirect led to a URL that is not http or https")
    try:
        return ssrf.check_url_syntax(target)
    except ValueError as exc:
        raise CheckFailure(model.INVALID_RESPONSE, f"a redirect's Location is not usable: {exc}") from None


def _redirected_method(status: int, method: str, body: str | None) -> tuple[str, str | None]:
    """303 turns any method but HEAD into GET; 301/302 turn POST into GET, as browsers do; 307/308 keep it."""
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        return "GET", None
    return method, body


def _fetch(hop: _Hop, plan: _Plan, method: str, body: str | None, *, send_custom_headers: bool) -> str | None:
    """Make one request; fill ``hop``; return the Location to follow next, or None when this is the final hop."""
    spec = plan.spec
    parts = urlsplit(hop.url)
    host, port = ssrf.host_and_port(hop.url)
    addresses = net.resolve(hop, plan.budget, host, port)
    sock, ip = net.connect(hop, plan.budget, addresses, port)
    try:
        if parts.scheme == "https":
            sock = net.handshake(hop, plan.budget, sock, ip, host, port)
        conn = _PinnedConnection(host, port, _DeadlineSocket(sock, plan.deadline))
        headers = _request_headers(parts.netloc, spec.headers if send_custom_headers else ())
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = time.perf_counter()
        try:
            conn.request(
                method, target, body=body.encode() if body is not None else None, headers=headers, preload_content=False
            )
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise net.failure(exc, spec.timeout_ms, "waiting for the response") from None
        hop.ttfb_ms = (time.perf_counter() - sent) * 1000
        hop.status = response.status
        for name, value in response.headers.items():
            key = name.lower()
            hop.headers[key] = f"{hop.headers[key]}, {value}" if key in hop.headers else value
        location = hop.headers.get("location")
        if spec.follow_redirects and hop.status in REDIRECT_STATUSES and location:
            return location
        _read_body(response, hop, spec)
        return None
    finally:
        sock.close()
        hop.total_ms = (time.perf_counter() - hop.started) * 1000


def _request_headers(netloc: str, custom: tuple[tuple[str, str], ...]) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": ACCEPT_ENCODING}
    by_lower = {k.lower(): k for k in headers}
    for name, value in custom:
        headers.pop(by_lower.get(name.lower(), ""), None)
        headers[name] = value
    # Set last so no monitor header can replace them: Host names the URL's host, not the address dialled.
    headers["Host"] = netloc
    headers["Connection"] = "close"
    return headers


def _read_body(response: urllib3.BaseHTTPResponse, hop: _Hop, spec: CheckSpec) -> None:
    """Read the decoded body into ``hop.body``; past the cap, or on a failure, keep only an excerpt's worth."""
    declared = response.length_remaining  # None when unknown; 0 for HEAD, 204 and 304
    encoded = hop.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity")
    if declared is not None and declared > MAX_BODY_BYTES and not encoded:
        raise CheckFailure(model.BODY_TOO_LARGE, _too_large())
    body = bytearray()
    try:
        while chunk := response.read(READ_CHUNK, decode_content=True):
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise CheckFailure(model.BODY_TOO_LARGE, _too_large())
    except DecodeError:
        raise CheckFailure(model.INVALID_RESPONSE, "the body does not match its Content-Encoding") from None
    except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
        raise net.failure(exc, spec.timeout_ms, "reading the body") from None
    finally:
        hop.body = bytes(body) if len(body) <= MAX_BODY_BYTES else bytes(body[:EXCERPT_BYTES])


def _too_large() -> str:
    return f"the response body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB (after decompression)"


def _judge(spec: CheckSpec, hop: _Hop, checked_at: datetime, region: str, final_url: str | None) -> CheckResult:
    """Status, then assertions, decide a check that got a whole response."""
    status = hop.status or 0
    expiry_days = None
    if hop.ssl_expires_at is not None:
        expiry_days = (hop.ssl_expires_at - checked_at).total_seconds() / 86400
    observed = assertions.Observed(
        status_code=status,
        response_time_ms=hop.total_ms,
        headers=hop.headers,
        body=hop.body,
        charset=_charset(hop.headers.get("content-type", "")),
        ssl_expiry_days=expiry_days,
    )
    failures = assertions.evaluate(spec.assertions, observed)
    error = detail = None
    if not status_matches(status, spec.expected_status):
        error = model.STATUS_MISMATCH
        detail = f"status {status}, expected {', '.join(spec.expected_status)}"
    elif failures:
        error = model.ASSERTION_FAILED
        detail = f"{len(failures)} of {len(spec.assertions)} assertions failed"
    return _result(spec, hop, checked_at, region, final_url, error, detail, failures)


def status_matches(status: int, expected: tuple[str, ...]) -> bool:
    """``expected`` holds codes ("200") and classes ("2xx")."""
    code = str(status)
    for item in expected:
        item = item.strip().lower()
        if item == code or (len(item) == 3 and item.endswith("xx") and item[0] == code[0]):
            return True
    return False


def _charset(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"')
            try:
                return codecs.lookup(charset).name
            except LookupError:
                return "utf-8"
    return "utf-8"


def _result(
    spec: CheckSpec,
    hop: _Hop,
    checked_at: datetime,
    region: str,
    final_url: str | None,
    error: str | None,
    detail: str | None,
    failures: tuple[str, ...],
) -> CheckResult:
    ok = error is None
    got_response = hop.status is not None
    response_time = round(hop.total_ms, 3) if got_response else None
    degraded = (
        ok
        and spec.degraded_after_ms is not None
        and response_time is not None
        and response_time > spec.degraded_after_ms
    )
    return CheckResult(
        ok=ok,
        checked_at=checked_at,
        region=region,
        status_code=hop.status,
        response_time_ms=response_time,
        timings=hop.timings(),
        error=error,
        error_detail=detail,
        ssl_expires_at=hop.ssl_expires_at,
        assertion_failures=failures,
        degraded=degraded,
        body_excerpt=_excerpt(hop.body) if got_response else None,
        final_url=final_url,
        response_headers=tuple(hop.headers.items()),
    )


def _excerpt(body: bytes) -> str:
    text = body[:EXCERPT_BYTES].decode("utf-8", "replace")
    # Replacement characters take 3 bytes each: trim back to the byte budget.
    return text.encode()[:EXCERPT_BYTES].decode("utf-8", "ignore")


class _DeadlineSocket:
    """The connected socket as http.client sees it: no read or write waits past the check's deadline.

    Socket timeouts count per call, so a server dripping one byte a second would
    reset them forever; here each call gets only the time left.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def arm(self) -> socket.socket:
        remaining = self._deadline - time.perf_counter()
        if remaining <= 0:
            raise TimeoutError("the check's deadline passed")
        self._sock.settimeout(remaining)
        return self._sock

    def sendall(self, data: bytes) -> None:
        self.arm().sendall(data)

    def makefile(self, mode: str = "rb", *args: object, **kwargs: object) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self), READ_CHUNK)

    def settimeout(self, value: float | None) -> None:
        """Ignored: the deadline sets every timeout."""

    def close(self) -> None:
        """Ignored: the checker closes the real socket when the hop ends."""


class _DeadlineReader(io.RawIOBase):
    def __init__(self, owner: _DeadlineSocket) -> None:
        self._owner = owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        return self._owner.arm().recv_into(buffer)


class _PinnedConnection(HTTPConnection):
    """urllib3's HTTP/1.1 connection on a socket the checker opened to a validated address."""

    def __init__(self, host: str, port: int, sock: _DeadlineSocket) -> None:
        super().__init__(host, port)
        self.sock = sock  # type: ignore[assignment]

    def connect(self) -> None:
        # Reached only if http.client wanted to reconnect by name: that would bypass the SSRF guard.
        raise ConnectionAbortedError("the checker never lets http.client connect by itself")
