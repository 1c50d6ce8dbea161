"""What every network check does before it speaks its protocol: resolve through the SSRF guard, connect to a
validated address, and (for TLS) handshake, each phase timed and bounded by one deadline.

The HTTP checker (``checks.http``) and the TCP checker (``checks.tcp``) run the same phases: a target problem
becomes a :class:`CheckFailure` with a stable error code (``checks.model``), never an exception the caller sees.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import urllib3

from chalicelib.checks import model, ssrf, tls

PEEK_TIMEOUT_S = 2.0  # an extra handshake that only reads an unverifiable certificate's expiry


class CheckFailure(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Plan:
    """One check's budget and guard: what every phase needs to know."""

    deadline: float  # time.perf_counter() value: no phase waits past it
    timeout_ms: int  # the whole check (for messages)
    connect_timeout_ms: int  # one TCP connect
    verify_ssl: bool
    allow_private: bool
    resolver: ssrf.Resolver | None
    is_blocked: Callable[[str], bool] | None


class Budgeted(Protocol):
    """What a check's spec says of its budget (every kind's spec has these)."""

    @property
    def timeout_ms(self) -> int: ...
    @property
    def connect_timeout_ms(self) -> int: ...
    @property
    def verify_ssl(self) -> bool: ...


def plan(
    spec: Budgeted,
    started: float,
    *,
    allow_private: bool,
    resolver: ssrf.Resolver | None,
    is_blocked: Callable[[str], bool] | None,
) -> Plan:
    """The plan of a check of ``spec`` started at ``started`` (``time.perf_counter()``): its deadline is
    ``timeout_ms`` later."""
    return Plan(
        started + spec.timeout_ms / 1000,
        spec.timeout_ms,
        spec.connect_timeout_ms,
        spec.verify_ssl,
        allow_private,
        resolver,
        is_blocked,
    )


class Phases(Protocol):
    """Where a check records what each phase took, in milliseconds, and the certificate's expiry."""

    dns_ms: float
    connect_ms: float
    tls_ms: float
    ssl_expires_at: datetime | None


def resolve(phases: Phases, plan: Plan, host: str, port: int) -> list[str]:
    """The host's addresses that the guard allows (``dns_ms``)."""
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
        raise CheckFailure(model.TIMEOUT, timed_out(plan.timeout_ms, "resolving the host name")) from None
    except ssrf.DnsFailure as exc:
        raise CheckFailure(model.DNS_FAILURE, str(exc)) from None
    finally:
        phases.dns_ms = (time.perf_counter() - started) * 1000


def connect(phases: Phases, plan: Plan, addresses: list[str], port: int) -> tuple[socket.socket, str]:
    """A TCP connection to the first validated address that accepts one (``connect_ms``)."""
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
                sock.settimeout(min(plan.connect_timeout_ms / 1000, remaining))
                sock.connect((ip, port))
                return sock, ip
            except OSError as exc:
                sock.close()
                last = exc
        if isinstance(last, TimeoutError) and plan.deadline - time.perf_counter() > 0:
            raise CheckFailure(model.TIMEOUT, f"could not connect within {plan.connect_timeout_ms} ms")
        raise failure(last, plan.timeout_ms, "connecting")
    finally:
        phases.connect_ms = (time.perf_counter() - started) * 1000


def handshake(phases: Phases, plan: Plan, sock: socket.socket, ip: str, host: str, port: int) -> ssl.SSLSocket:
    """TLS over ``sock``, with SNI for ``host`` and its certificate verified against it (``tls_ms``); the
    certificate's expiry is recorded, even for one that failed verification."""
    verify = plan.verify_ssl
    started = time.perf_counter()
    try:
        # SNI and certificate names carry no trailing dot, even when the URL's host does.
        server_name = host.rstrip(".")
        tls_sock = tls.context(verify).wrap_socket(sock, server_hostname=server_name, do_handshake_on_connect=False)
    except OSError as exc:
        raise failure(exc, plan.timeout_ms, "starting TLS") from None
    problem: CheckFailure | None = None
    try:
        tls_sock.settimeout(max(plan.deadline - started, 0.001))  # one deadline for the whole handshake
        tls_sock.do_handshake()
    except ssl.SSLCertVerificationError as exc:
        problem = CheckFailure(*tls.verification_error(exc))
    except ssl.SSLError as exc:
        problem = CheckFailure(model.TLS_ERROR, tls.handshake_error(exc))
    except OSError as exc:
        problem = failure(exc, plan.timeout_ms, "during the TLS handshake")
    phases.tls_ms = (time.perf_counter() - started) * 1000
    if problem is not None:
        tls_sock.close()
        if problem.code in (model.CERTIFICATE_EXPIRED, model.CERTIFICATE_INVALID):
            phases.ssl_expires_at = _peek_expiry(ip, port, host, plan.deadline)
        raise problem
    phases.ssl_expires_at = tls.expires_at(tls_sock)
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


def failure(exc: BaseException, timeout_ms: int, phase: str) -> CheckFailure:
    """Map a network or protocol exception (or the one that caused it) to a stable error code."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for error in chain:
        if isinstance(error, TimeoutError | urllib3.exceptions.TimeoutError):
            return CheckFailure(model.TIMEOUT, timed_out(timeout_ms, phase))
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


def timed_out(timeout_ms: int, phase: str) -> str:
    return f"no complete response within {timeout_ms} ms (timed out {phase})"
