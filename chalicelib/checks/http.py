"""The HTTP checker: one check of one URL, safely, with exact phase timings.

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
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection
from urllib3.exceptions import DecodeError

from chalicelib.checks import assertions, model, ssrf, tls
from chalicelib.checks.model import CheckResult, CheckSpec, Timings

MAX_REDIRECTS = 5
MAX_BODY_BYTES = 1024 * 1024  # after decompression
EXCERPT_BYTES = 1024
READ_CHUNK = 64 * 1024
PEEK_TIMEOUT_S = 2.0  # an extra handshake that only reads an unverifiable certificate's expiry
USER_AGENT = "Vigil-Uptime-Monitor/1.0"
REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))
ACCEPT_ENCODING = urllib3.util.make_headers(accept_encoding=True)["accept-encoding"]


class CheckFailure(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


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
    """How to run every hop of one check."""

    spec: CheckSpec
    deadline: float  # time.perf_counter() value
    allow_private: bool
    resolver: ssrf.Resolver | None
    is_blocked: Callable[[str], bool] | None


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
    plan = _Plan(spec, start + spec.timeout_ms / 1000, allow_private, resolver, is_blocked)
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
    addresses = _resolve(hop, plan, host, port)
    sock, ip = _connect(hop, plan, addresses, port)
    try:
        if parts.scheme == "https":
            sock = _handshake(hop, plan, sock, ip, host, port)
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
            raise _failure(exc, spec, "waiting for the response") from None
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


def _resolve(hop: _Hop, plan: _Plan, host: str, port: int) -> list[str]:
    started = time.perf_counter()
    try:
        return ssrf.resolve_host(
            host,
            port,
            allow_private=plan.allow_private,
            resolver=plan.resolver,
            timeout=plan.deadline - started,
            is_blocked=plan.is_blocked,
        )
    except ssrf.DestinationNotAllowed as exc:
        raise CheckFailure(model.DESTINATION_NOT_ALLOWED, str(exc)) from None
    except ssrf.DnsTimeout:
        raise CheckFailure(model.TIMEOUT, _timed_out(plan.spec, "resolving the host name")) from None
    except ssrf.DnsFailure as exc:
        raise CheckFailure(model.DNS_FAILURE, str(exc)) from None
    finally:
        hop.dns_ms = (time.perf_counter() - started) * 1000


def _connect(hop: _Hop, plan: _Plan, addresses: list[str], port: int) -> tuple[socket.socket, str]:
    """A TCP connection to the first validated address that accepts one."""
    started = time.perf_counter()
    last: OSError = TimeoutError()
    try:
        for ip in addresses:
            remaining = plan.deadline - time.perf_counter()
            if remaining <= 0:
                break
            sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(min(plan.spec.connect_timeout_ms / 1000, remaining))
                sock.connect((ip, port))
                return sock, ip
            except OSError as exc:
                sock.close()
                last = exc
        if isinstance(last, TimeoutError) and plan.deadline - time.perf_counter() > 0:
            raise CheckFailure(model.TIMEOUT, f"could not connect within {plan.spec.connect_timeout_ms} ms")
        raise _failure(last, plan.spec, "connecting")
    finally:
        hop.connect_ms = (time.perf_counter() - started) * 1000


def _handshake(hop: _Hop, plan: _Plan, sock: socket.socket, ip: str, host: str, port: int) -> ssl.SSLSocket:
    verify = plan.spec.verify_ssl
    started = time.perf_counter()
    try:
        # SNI and certificate names carry no trailing dot, even when the URL's host does.
        server_name = host.rstrip(".")
        tls_sock = tls.context(verify).wrap_socket(sock, server_hostname=server_name, do_handshake_on_connect=False)
    except OSError as exc:
        raise _failure(exc, plan.spec, "starting TLS") from None
    failure: CheckFailure | None = None
    try:
        tls_sock.settimeout(max(plan.deadline - started, 0.001))  # one deadline for the whole handshake
        tls_sock.do_handshake()
    except ssl.SSLCertVerificationError as exc:
        failure = CheckFailure(*tls.verification_error(exc))
    except ssl.SSLError as exc:
        failure = CheckFailure(model.TLS_ERROR, tls.handshake_error(exc))
    except OSError as exc:
        failure = _failure(exc, plan.spec, "during the TLS handshake")
    hop.tls_ms = (time.perf_counter() - started) * 1000
    if failure is not None:
        tls_sock.close()
        if failure.code in (model.CERTIFICATE_EXPIRED, model.CERTIFICATE_INVALID):
            hop.ssl_expires_at = _peek_expiry(ip, port, host, plan.deadline)
        raise failure
    hop.ssl_expires_at = tls.expires_at(tls_sock)
    return tls_sock


def _peek_expiry(ip: str, port: int, host: str, deadline: float) -> datetime | None:
    """The expiry of a certificate that failed verification, read over a second, unverified handshake."""
    remaining = min(deadline - time.perf_counter(), PEEK_TIMEOUT_S)
    if remaining <= 0.01:
        return None
    try:
        # ``ip`` is an address the guard validated: create_connection does no lookup for it.
        with (
            socket.create_connection((ip, port), timeout=remaining) as raw,
            tls.context(False).wrap_socket(raw, server_hostname=host.rstrip(".")) as tls_sock,
        ):
            return tls.expires_at(tls_sock)
    except OSError:  # ssl.SSLError included: the expiry is a nicety here, the check has failed anyway
        return None


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
        raise _failure(exc, spec, "reading the body") from None
    finally:
        hop.body = bytes(body) if len(body) <= MAX_BODY_BYTES else bytes(body[:EXCERPT_BYTES])


def _too_large() -> str:
    return f"the response body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB (after decompression)"


def _failure(exc: BaseException, spec: CheckSpec, phase: str) -> CheckFailure:
    """Map a network or protocol exception (or the one that caused it) to a stable error code."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for error in chain:
        if isinstance(error, TimeoutError | urllib3.exceptions.TimeoutError):
            return CheckFailure(model.TIMEOUT, _timed_out(spec, phase))
        if isinstance(error, ConnectionRefusedError):
            return CheckFailure(model.CONNECTION_REFUSED, "the server refused the connection")
        if isinstance(error, http.client.RemoteDisconnected):
            return CheckFailure(model.CONNECTION_RESET, "the server closed the connection without a response")
        if isinstance(error, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
            return CheckFailure(model.CONNECTION_RESET, f"the server reset the connection while {phase}")
        if isinstance(error, http.client.IncompleteRead):
            return CheckFailure(model.CONNECTION_RESET, "the connection closed before the whole body arrived")
        if isinstance(error, ssl.SSLError):
            return CheckFailure(model.TLS_ERROR, tls.handshake_error(error))
        if isinstance(error, http.client.HTTPException):
            return CheckFailure(model.INVALID_RESPONSE, f"the server's answer is not valid HTTP/1.1 ({phase})")
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
    return CheckFailure(model.CONNECTION_FAILED, f"network error while {phase}: {reason}")


def _timed_out(spec: CheckSpec, phase: str) -> str:
    return f"no complete response within {spec.timeout_ms} ms (timed out {phase})"


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
