"""The TCP checker against real loopback listeners: open, closed, silent and TLS ports, and the SSRF guard.

Names resolve through a stub resolver to 127.0.0.1; with the guard on, 127.0.0.2 plays a public host (through
``is_blocked``), so that no test connects off this machine.  TLS listeners use a trustme CA.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import trustme

from chalicelib.checks import ssrf, tls
from chalicelib.checks.model import CheckResult, TcpSpec
from chalicelib.checks.tcp import run_tcp_check
from tests.integration.test_checker import RawServer, StubResolver, server_context
from tests.unit.test_ssrf import BLOCKED

pytestmark = pytest.mark.usefixtures("as_a_team")  # the probe library run directly, as a team

UTC = dt.UTC
NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def tcp(
    host: str, port: int, *, guarded: bool = False, resolver: ssrf.Resolver | None = None, **fields: Any
) -> CheckResult:
    return run_tcp_check(
        TcpSpec(host=host, port=port, **fields),
        region="eu-west-1",
        allow_private=not guarded,
        resolver=resolver or StubResolver({"db.example.test": ["127.0.0.1"], "public.example.test": ["127.0.0.2"]}),
        now=lambda: NOW,
        is_blocked=(lambda ip: ip != "127.0.0.2" and ssrf.is_blocked_ip(ip)) if guarded else None,
    )


def hang_up(server: RawServer, conn: socket.socket) -> None:
    """What a database does to a client that connects and says nothing: nothing, until it leaves."""


def silent(server: RawServer, conn: socket.socket) -> None:
    time.sleep(3)


@pytest.fixture
def listener() -> Iterator[RawServer]:
    with RawServer(hang_up) as server:
        yield server


@pytest.fixture
def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()  # bound, never listened: the kernel refuses a connection
    return port


@pytest.fixture(scope="module")
def ca() -> Iterator[trustme.CA]:
    authority = trustme.CA()
    tls.use_trust_store(authority.cert_pem.bytes().decode())
    yield authority
    tls.use_trust_store(None)


def test_an_open_port_is_up_with_its_connect_time_and_nothing_sent(listener: RawServer) -> None:
    result = tcp("db.example.test", listener.port)

    assert (result.ok, result.error, result.status_code) == (True, None, None)
    assert result.checked_at == NOW
    assert result.timings.connect_ms > 0
    assert result.timings.tls_ms == result.timings.ttfb_ms == 0
    assert result.response_time_ms == result.timings.total_ms >= result.timings.connect_ms
    assert result.ssl_expires_at is None
    deadline = time.monotonic() + 2
    while listener.connections < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert listener.connections == 1
    assert listener.requests == []  # not a byte was sent


def test_a_closed_port_is_connection_refused(closed_port: int) -> None:
    result = tcp("127.0.0.1", closed_port)

    assert (result.ok, result.error, result.response_time_ms) == (False, "connection_refused", None)
    assert result.error_detail == "the server refused the connection"


def test_a_name_that_does_not_resolve_is_a_dns_failure(listener: RawServer) -> None:
    result = tcp("nowhere.example.test", listener.port)

    assert (result.ok, result.error) == (False, "dns_failure")
    assert listener.connections == 0


def test_tls_completes_a_handshake_with_sni_and_records_the_expiry(ca: trustme.CA) -> None:
    not_after = dt.datetime(2027, 3, 1, tzinfo=UTC)
    cert = ca.issue_cert("db.example.test", not_after=not_after)
    with RawServer(hang_up, context=server_context(cert)) as server:
        result = tcp("db.example.test", server.port, tls=True)

        assert (result.ok, result.error) == (True, None)
        assert result.timings.tls_ms > 0
        assert result.ssl_expires_at == not_after
        assert server.server_names == ["db.example.test"]


def test_tls_against_a_certificate_for_another_name_fails_and_still_reports_its_expiry(ca: trustme.CA) -> None:
    not_after = dt.datetime(2027, 5, 1, tzinfo=UTC)
    cert = ca.issue_cert("other.example.test", not_after=not_after)
    with RawServer(hang_up, context=server_context(cert)) as server:
        strict = tcp("db.example.test", server.port, tls=True)
        lenient = tcp("db.example.test", server.port, tls=True, verify_ssl=False)

    assert (strict.ok, strict.error) == (False, "certificate_invalid")
    assert strict.ssl_expires_at == not_after
    assert (lenient.ok, lenient.ssl_expires_at) == (True, not_after)


def test_tls_to_a_port_that_speaks_no_tls_is_a_tls_error() -> None:
    def plain_text(server: RawServer, conn: socket.socket) -> None:
        server.send(conn, b"220 mail.example.test ESMTP ready\r\n")
        time.sleep(0.5)

    with RawServer(plain_text) as server:
        result = tcp("db.example.test", server.port, tls=True)

    assert (result.ok, result.error) == (False, "tls_error")


def test_a_handshake_that_never_answers_times_out_at_the_deadline() -> None:
    with RawServer(silent) as server:
        started = time.monotonic()
        result = tcp("db.example.test", server.port, tls=True, timeout_ms=1000)
        took = time.monotonic() - started

    assert (result.ok, result.error) == (False, "timeout")
    assert 0.9 <= took < 2.0


def test_degraded_when_slower_than_degraded_after_ms(listener: RawServer) -> None:
    slow = threading.Event()

    def slow_resolver(host: str, port: int) -> list[str]:
        slow.set()
        time.sleep(0.05)
        return ["127.0.0.1"]

    result = tcp("db.example.test", listener.port, resolver=slow_resolver, degraded_after_ms=20)

    assert slow.is_set()
    assert (result.ok, result.degraded) == (True, True)
    assert result.timings.dns_ms >= 50


def test_a_public_host_passes_the_guard(listener: RawServer) -> None:
    with RawServer(hang_up, host="127.0.0.2") as public:
        result = tcp("public.example.test", public.port, guarded=True)

    assert (result.ok, result.error) == (True, None)


@pytest.mark.parametrize("url", BLOCKED)
def test_every_blocked_destination_is_refused_without_connecting(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SSRF table of the HTTP checker, as a TCP monitor's host (a name or a literal, IPv6 forms included)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # an IPv6 literal as a user may write it, with brackets

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the checker opened a socket for a refused destination")

    monkeypatch.setattr(socket, "socket", refuse)
    result = run_tcp_check(TcpSpec(host=host, port=parts.port or 5432), region="eu-west-1", allow_private=False)

    assert (result.ok, result.error) == (False, "destination_not_allowed")
    assert result.timings.connect_ms == 0
    for leaked in ("127.0.0.1", "169.254", "10.0.0"):
        assert leaked not in (result.error_detail or "")


@pytest.mark.parametrize("host", ["", "bad host", "exa mple.test", "[not-v6]", "fe80::1%eth0", "a" * 300 + ".test"])
def test_a_host_that_cannot_be_one_is_refused_without_connecting(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the checker opened a socket for a refused destination")

    monkeypatch.setattr(socket, "socket", refuse)
    result = run_tcp_check(TcpSpec(host=host, port=5432), region="eu-west-1", allow_private=True)

    assert (result.ok, result.error) == (False, "destination_not_allowed")
