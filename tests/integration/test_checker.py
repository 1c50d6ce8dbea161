"""The checker against real loopback servers.

HTTP targets are pytest-httpserver; HTTPS targets and misbehaving servers (slow
drip, resets, bombs) are a small threaded socket server with trustme
certificates.  Names resolve through a stub resolver to 127.0.0.1; the
checker's trust store is the test CA.  Where the SSRF guard must stay on,
127.0.0.2 plays a public host (through ``is_blocked``) so that no test ever
connects off this machine.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import socket
import ssl
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pytest_httpserver import HTTPServer

from chalicelib.checks import ssrf, tls
from chalicelib.checks.http import MAX_BODY_BYTES, run_check
from chalicelib.checks.model import Assertion, CheckResult, CheckSpec

pytestmark = pytest.mark.usefixtures("as_a_team")  # the probe library run directly, as a team

UTC = dt.UTC
LOOPBACK = {"localhost": ["127.0.0.1"], "example.test": ["127.0.0.1"]}
FIXED_NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class StubResolver:
    """Answers from a table (falling back to the system resolver if asked) and counts every question."""

    def __init__(self, answers: dict[str, list[str]], *, fallback: bool = False) -> None:
        self.answers = answers
        self.fallback = fallback
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host in self.answers:
            return list(self.answers[host])
        if self.fallback:
            return ssrf.system_resolver(host, port)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


Handler = Callable[["RawServer", socket.socket], None]


class RawServer:
    """A loopback TCP or TLS server that runs ``handler(server, conn)`` for each connection, each in a thread."""

    def __init__(
        self, handler: Handler, *, context: ssl.SSLContext | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.handler = handler
        self.context = context
        self.listener = socket.create_server((host, port), backlog=64)
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        self.server_names: list[str | None] = []
        self.sent = 0
        self.stopped = threading.Event()
        if context is not None:
            context.sni_callback = self._sni
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _sni(self, sock: Any, name: str | None, ctx: Any) -> None:
        self.server_names.append(name)

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            self.handler(self, conn)
        except OSError:  # the checker hung up, as it should past a deadline or a limit
            pass
        finally:
            conn.close()

    def read_request(self, conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        self.requests.append(data)
        return data

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        self._thread.join(2)

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def respond(
    status: int = 200, body: bytes = b"ok", headers: dict[str, str] | None = None, delay: float = 0.0
) -> Handler:
    def handler(server: RawServer, conn: socket.socket) -> None:
        server.read_request(conn)
        time.sleep(delay)
        head = {"Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
        lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
        server.send(conn, f"HTTP/1.1 {status} X\r\n{lines}\r\n".encode() + body)

    return handler


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


def check(url: str, resolver: StubResolver | None = None, **fields: Any) -> CheckResult:
    return run_check(
        CheckSpec(url=url, **fields),
        region="eu-west-1",
        allow_private=True,
        resolver=resolver or StubResolver(LOOPBACK),
        now=lambda: FIXED_NOW,
    )


def guarded_check(url: str, resolver: ssrf.Resolver, **fields: Any) -> CheckResult:
    """The SSRF guard on, with 127.0.0.2 standing in for a public address."""
    return run_check(
        CheckSpec(url=url, **fields),
        region="eu-west-1",
        allow_private=False,
        resolver=resolver,
        is_blocked=lambda ip: ip != "127.0.0.2" and ssrf.is_blocked_ip(ip),
    )


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module", autouse=True)
def trust_the_test_ca(ca: trustme.CA) -> Iterator[None]:
    tls.use_trust_store(ca.cert_pem.bytes().decode())
    yield
    tls.use_trust_store(None)


@pytest.fixture(scope="module")
def not_after() -> dt.datetime:
    return (FIXED_NOW + dt.timedelta(days=30)).replace(microsecond=0)


@pytest.fixture(scope="module")
def good_cert(ca: trustme.CA, not_after: dt.datetime) -> trustme.LeafCert:
    return ca.issue_cert("localhost", not_before=FIXED_NOW - dt.timedelta(days=1), not_after=not_after)


@pytest.fixture
def https_server(good_cert: trustme.LeafCert) -> Iterator[RawServer]:
    body = json.dumps({"status": "ok"}).encode()
    with RawServer(
        respond(body=body, headers={"Content-Type": "application/json"}), context=server_context(good_cert)
    ) as server:
        yield server


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- a healthy check, its timings and what it sends -------------------------------------------------------------


def test_it_passes_a_healthy_http_check(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/health").respond_with_json({"status": "ok"})
    result = check(httpserver.url_for("/health"))
    assert result.ok
    assert (result.status_code, result.error, result.error_detail) == (200, None, None)
    assert (result.region, result.checked_at, result.final_url) == (
        "eu-west-1",
        FIXED_NOW,
        httpserver.url_for("/health"),
    )
    assert json.loads(result.body_excerpt or "") == {"status": "ok"}
    assert result.ssl_expires_at is None
    t = result.timings
    assert t.tls_ms == 0
    assert t.connect_ms > 0
    assert t.ttfb_ms > 0
    assert t.total_ms >= t.dns_ms + t.connect_ms + t.ttfb_ms
    assert result.response_time_ms == t.total_ms


def test_it_sends_the_method_headers_and_body_and_host_for_the_name(httpserver: HTTPServer) -> None:
    httpserver.expect_request(
        "/hook", method="POST", data='{"ping": 1}', headers={"X-Api-Key": "k1", "Content-Type": "application/json"}
    ).respond_with_data("accepted", status=202)
    result = check(
        httpserver.url_for("/hook"),
        method="POST",
        body='{"ping": 1}',
        headers=(("X-Api-Key", "k1"), ("Content-Type", "application/json")),
    )
    assert (result.ok, result.status_code) == (True, 202)
    (request, _), *_ = httpserver.log
    assert request.headers["Host"] == f"localhost:{httpserver.port}"
    assert request.headers["User-Agent"].startswith("Vigil")


def test_a_head_check_reads_no_body_whatever_its_content_length() -> None:
    with RawServer(respond(body=b"", headers={"Content-Length": str(50 * 1024 * 1024)})) as server:
        result = check(f"http://localhost:{server.port}/", method="HEAD")
    assert (result.ok, result.status_code, result.body_excerpt) == (True, 200, "")
    assert server.requests[0].startswith(b"HEAD / HTTP/1.1\r\n")


def test_https_sends_sni_and_host_for_the_name_and_records_the_expiry(
    https_server: RawServer, not_after: dt.datetime
) -> None:
    result = check(f"https://localhost:{https_server.port}/")
    assert result.ok, result
    assert https_server.server_names == ["localhost"]
    assert f"Host: localhost:{https_server.port}\r\n".encode() in https_server.requests[0]
    assert result.ssl_expires_at == not_after
    t = result.timings
    assert t.tls_ms > 0
    assert t.total_ms >= t.dns_ms + t.connect_ms + t.tls_ms + t.ttfb_ms


def test_the_certificate_is_verified_against_the_name_not_the_address(ca: trustme.CA) -> None:
    # The checker dials 127.0.0.1 for both names; only the name decides which certificate is right.
    for_example = server_context(ca.issue_cert("example.test"))
    with RawServer(respond(), context=for_example) as server:
        assert check(f"https://example.test:{server.port}/").ok
        wrong = check(f"https://localhost:{server.port}/")
    assert wrong.error == "certificate_invalid"
    assert "wrong host" in (wrong.error_detail or "")


def test_it_ignores_proxy_environment_variables(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with RawServer(respond(status=502)) as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        httpserver.expect_request("/").respond_with_data("direct")
        result = check(httpserver.url_for("/"))
        assert (result.ok, result.body_excerpt) == (True, "direct")
        assert proxy.connections == 0


def test_checks_run_concurrently_from_many_threads(https_server: RawServer) -> None:
    url = f"https://localhost:{https_server.port}/"

    def as_the_worker(_: int) -> CheckResult:
        with ssrf.lookups_for("team-tests"):  # each check's thread enters its team, as the worker's do
            return check(url)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(as_the_worker, range(32)))
    assert all(r.ok for r in results)
    assert https_server.connections == 32


# --- expected status, assertions, degraded ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected", "ok"),
    [
        (200, ("2xx",), True),
        (201, ("200", "201"), True),
        (404, ("2xx",), False),
        (404, ("404",), True),
        (503, ("2xx", "5xx"), True),
        (500, ("200",), False),
    ],
)
def test_expected_status(httpserver: HTTPServer, status: int, expected: tuple[str, ...], ok: bool) -> None:
    httpserver.expect_request("/").respond_with_data("SECRET-IN-BODY", status=status)
    result = check(httpserver.url_for("/"), expected_status=expected)
    assert (result.ok, result.status_code) == (ok, status)
    if not ok:
        assert result.error == "status_mismatch"
        assert result.error_detail == f"status {status}, expected {', '.join(expected)}"
        assert "SECRET" not in (result.error_detail or "")


def test_every_assertion_kind_against_a_live_response(httpserver: HTTPServer, https_server: RawServer) -> None:
    payload = {"status": "ok", "checks": {"db": "up"}, "latency": 12}
    httpserver.expect_request("/status").respond_with_json(payload, headers={"X-Version": "3.1"})
    holding = (
        Assertion("status_code", "equals", "200"),
        Assertion("response_time", "less_than", "5000"),
        Assertion("header", "equals", "3.1", "x-version"),
        Assertion("header", "contains", "json", "Content-Type"),
        Assertion("body", "contains", '"db"'),
        Assertion("json_body", "equals", "ok", "$.status"),
        Assertion("json_body", "equals", "up", "$.checks.db"),
        Assertion("json_body", "less_than", "100", "$.latency"),
    )
    result = check(httpserver.url_for("/status"), assertions=holding)
    assert (result.ok, result.assertion_failures) == (True, ())

    failing = (
        *holding,
        Assertion("json_body", "equals", "degraded", "$.status"),
        Assertion("header", "not_empty", "", "X-Gone"),
    )
    result = check(httpserver.url_for("/status"), assertions=failing)
    assert (result.ok, result.error, result.error_detail) == (False, "assertion_failed", "2 of 10 assertions failed")
    assert result.assertion_failures == (
        "json_body $.status equals 'degraded' (got 'ok')",
        "header X-Gone not_empty (got no such header)",
    )

    expiry = (Assertion("ssl_expiry_days", "greater_than", "14"), Assertion("ssl_expiry_days", "less_than", "31"))
    assert check(f"https://localhost:{https_server.port}/", assertions=expiry).ok
    result = check(
        f"https://localhost:{https_server.port}/",
        assertions=(*expiry[:1], Assertion("ssl_expiry_days", "less_than", "29")),
    )
    assert result.assertion_failures == ("ssl_expiry_days less_than '29' (got 30)",)


def test_a_status_mismatch_still_lists_failed_assertions(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data("down", status=500)
    result = check(httpserver.url_for("/"), assertions=(Assertion("status_code", "equals", "200"),))
    assert result.error == "status_mismatch"
    assert result.assertion_failures == ("status_code equals '200' (got 500)",)


def test_a_gzip_body_is_decompressed_for_assertions(httpserver: HTTPServer) -> None:
    compressed = gzip.compress(json.dumps({"status": "ok"}).encode())
    httpserver.expect_request("/").respond_with_data(
        compressed, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )
    result = check(httpserver.url_for("/"), assertions=(Assertion("json_body", "equals", "ok", "$.status"),))
    assert result.ok, result
    assert result.body_excerpt == '{"status": "ok"}'
    (request, _), *_ = httpserver.log
    assert "gzip" in request.headers["Accept-Encoding"]


def test_a_body_that_does_not_match_its_content_encoding(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data(b"not gzip at all", headers={"Content-Encoding": "gzip"})
    result = check(httpserver.url_for("/"))
    assert (result.error, result.error_detail) == ("invalid_response", "the body does not match its Content-Encoding")


def test_degraded_when_slower_than_degraded_after_ms() -> None:
    with RawServer(respond(delay=0.15)) as server:
        url = f"http://localhost:{server.port}/"
        slow = check(url, degraded_after_ms=50)
        fine = check(url, degraded_after_ms=5000)
        failing = check(url, degraded_after_ms=50, expected_status=("500",))
    assert (slow.ok, slow.degraded) == (True, True)
    assert (slow.response_time_ms or 0) >= 150
    assert (fine.ok, fine.degraded) == (True, False)
    assert (failing.ok, failing.degraded) == (False, False)


def test_the_body_excerpt_is_at_most_1_kb(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data(("é" * 5000).encode())
    result = check(httpserver.url_for("/"))
    assert result.body_excerpt is not None
    assert len(result.body_excerpt.encode()) <= 1024
    assert result.body_excerpt.startswith("éé")


# --- redirects --------------------------------------------------------------------------------------------------


def test_it_follows_redirects_hop_by_hop(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/old").respond_with_data("", status=301, headers={"Location": "/mid"})
    httpserver.expect_request("/mid").respond_with_data("", status=302, headers={"Location": "/new?x=1"})
    httpserver.expect_request("/new", query_string="x=1").respond_with_data("here")
    result = check(httpserver.url_for("/old"))
    assert (result.ok, result.status_code, result.body_excerpt) == (True, 200, "here")
    assert result.final_url == httpserver.url_for("/new?x=1")
    assert [r.path for r, _ in httpserver.log] == ["/old", "/mid", "/new"]


def test_without_follow_redirects_the_redirect_is_the_response(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/old").respond_with_data("", status=301, headers={"Location": "/new"})
    assert check(httpserver.url_for("/old"), follow_redirects=False).error == "status_mismatch"
    result = check(httpserver.url_for("/old"), follow_redirects=False, expected_status=("3xx",))
    assert (result.ok, result.status_code) == (True, 301)
    assert len(httpserver.log) == 2


def test_five_redirects_are_followed_and_a_loop_is_too_many(httpserver: HTTPServer) -> None:
    for i in range(5):
        httpserver.expect_request(f"/r{i}").respond_with_data("", status=302, headers={"Location": f"/r{i + 1}"})
    httpserver.expect_request("/r5").respond_with_data("end")
    assert check(httpserver.url_for("/r0")).ok
    httpserver.clear()
    httpserver.expect_request("/loop").respond_with_data("", status=302, headers={"Location": "/loop"})
    result = check(httpserver.url_for("/loop"))
    assert (result.ok, result.error, result.error_detail) == (False, "too_many_redirects", "more than 5 redirects")
    assert len(httpserver.log) == 6


def test_custom_headers_are_dropped_on_a_cross_origin_redirect(httpserver: HTTPServer) -> None:
    other_origin = f"http://example.test:{httpserver.port}"
    httpserver.expect_request("/start").respond_with_data("", status=302, headers={"Location": "/same"})
    httpserver.expect_request("/same").respond_with_data("", status=307, headers={"Location": f"{other_origin}/away"})
    httpserver.expect_request("/away").respond_with_data("ok")
    secret = (("Authorization", "Bearer s3cret"), ("X-Api-Key", "k1"))
    assert check(httpserver.url_for("/start"), headers=secret).ok
    start, same, away = (request for request, _ in httpserver.log)
    assert start.headers["Authorization"] == same.headers["Authorization"] == "Bearer s3cret"
    assert same.headers["X-Api-Key"] == "k1"
    assert "Authorization" not in away.headers
    assert "X-Api-Key" not in away.headers
    assert away.headers["Host"] == f"example.test:{httpserver.port}"


def test_redirect_methods(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/post-303", method="POST").respond_with_data("", status=303, headers={"Location": "/g"})
    httpserver.expect_request("/g", method="GET").respond_with_data("got")
    httpserver.expect_request("/post-307", method="POST").respond_with_data("", status=307, headers={"Location": "/p"})
    httpserver.expect_request("/p", method="POST", data="payload").respond_with_data("posted")
    assert check(httpserver.url_for("/post-303"), method="POST", body="payload").body_excerpt == "got"
    assert check(httpserver.url_for("/post-307"), method="POST", body="payload").body_excerpt == "posted"


@pytest.mark.parametrize("status", [307, 308])
def test_a_body_is_not_sent_to_another_origin_by_a_redirect(httpserver: HTTPServer, status: int) -> None:
    # found by a fresh-eyes review of issue 19: headers stayed with their origin, the body (its credentials too)
    # followed a 307/308 anywhere
    other_origin = f"http://example.test:{httpserver.port}"
    body = '{"password": "body-s3cret"}'
    httpserver.expect_request("/login", method="POST").respond_with_data("", status=307, headers={"Location": "/ok"})
    httpserver.expect_request("/ok", method="POST").respond_with_data(
        "", status=status, headers={"Location": f"{other_origin}/away"}
    )
    httpserver.expect_request("/away").respond_with_data("took it")

    result = check(httpserver.url_for("/login"), method="POST", body=body)

    assert (result.ok, result.error, result.status_code) == (False, "destination_not_allowed", status)
    assert result.error_detail == (
        f"a {status} redirect to another origin would send the request's body there: not followed"
    )
    assert [request.path for request, _ in httpserver.log] == ["/login", "/ok"]  # the same origin got it, twice
    assert all(request.get_data(as_text=True) == body for request, _ in httpserver.log)


def test_a_body_follows_a_redirect_to_the_same_hosts_https() -> None:
    # found by a fresh-eyes review of issue 19: a POST to http://host behind its server's 308 to https://host failed
    from chalicelib.checks.http import _same_or_upgraded

    assert _same_or_upgraded(("https", "shop.example", 443), ("http", "shop.example", 80))
    assert not _same_or_upgraded(("https", "evil.example", 443), ("http", "shop.example", 80))
    assert not _same_or_upgraded(("https", "shop.example", 8443), ("http", "shop.example", 80))
    assert not _same_or_upgraded(("http", "shop.example", 80), ("https", "shop.example", 443))  # never a downgrade


def test_a_redirect_to_another_origin_without_a_body_is_followed(httpserver: HTTPServer) -> None:
    other_origin = f"http://example.test:{httpserver.port}"
    httpserver.expect_request("/form", method="POST").respond_with_data(
        "", status=302, headers={"Location": f"{other_origin}/done"}
    )
    httpserver.expect_request("/done", method="GET").respond_with_data("done")

    result = check(httpserver.url_for("/form"), method="POST", body="a=1")  # a 302 turns it into a GET, bodiless

    assert result.ok, result.error_detail
    assert result.body_excerpt == "done"


@pytest.mark.parametrize("location", ["file:///etc/passwd", "gopher://localhost:70/", "ftp://localhost/"])
def test_a_redirect_to_another_scheme_is_refused(httpserver: HTTPServer, location: str) -> None:
    httpserver.expect_request("/").respond_with_data("", status=302, headers={"Location": location})
    result = check(httpserver.url_for("/"))
    assert result.error == "destination_not_allowed"
    assert result.final_url == httpserver.url_for("/")


# --- the SSRF guard at run time: mixed answers, rebinding, every hop ---------------------------------------------


@pytest.fixture
def public_and_internal() -> Iterator[tuple[RawServer, RawServer]]:
    """A "public" server on 127.0.0.2 and an internal one on 127.0.0.1, on the same port."""
    for _ in range(20):
        public = RawServer(respond(body=b"public"), host="127.0.0.2")
        try:
            internal = RawServer(respond(body=b"internal"), host="127.0.0.1", port=public.port)
        except OSError:
            public.close()
            continue
        yield public, internal
        public.close()
        internal.close()
        return
    pytest.fail("no free port on both loopback addresses")


def test_mixed_answers_are_refused_and_never_connected_to(public_and_internal: tuple[RawServer, RawServer]) -> None:
    public, internal = public_and_internal
    resolver = StubResolver({"mixed.test": ["127.0.0.2", "127.0.0.1"]})
    result = guarded_check(f"http://mixed.test:{public.port}/", resolver)
    assert (result.error, result.timings.connect_ms) == ("destination_not_allowed", 0)
    assert "127.0.0" not in (result.error_detail or "")
    assert (public.connections, internal.connections) == (0, 0)


def test_a_rebinding_second_answer_is_never_used(public_and_internal: tuple[RawServer, RawServer]) -> None:
    public, internal = public_and_internal
    answers = iter([["127.0.0.2"], ["127.0.0.1"], ["127.0.0.1"]])
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    result = guarded_check(f"http://rebind.test:{public.port}/", rebinding)
    assert (result.ok, result.body_excerpt) == (True, "public")
    assert calls == ["rebind.test"]  # one resolution for the hop, and the connection used its answer
    assert (public.connections, internal.connections) == (1, 0)


@pytest.mark.parametrize(
    "target",
    [
        "http://internal.test:{port}/",
        "http://127.0.0.1:{port}/",
        "http://2130706433:{port}/",
        "http://localhost:{port}/",
    ],
)
def test_every_redirect_hop_is_checked_again(public_and_internal: tuple[RawServer, RawServer], target: str) -> None:
    public, internal = public_and_internal
    public.handler = respond(status=302, headers={"Location": target.format(port=internal.port)})
    resolver = StubResolver({"public.test": ["127.0.0.2"], "internal.test": ["127.0.0.1"]}, fallback=True)
    result = guarded_check(f"http://public.test:{public.port}/", resolver)
    assert result.error == "destination_not_allowed"
    assert result.final_url == f"http://public.test:{public.port}/"
    assert "127.0.0" not in (result.error_detail or "")
    assert (public.connections, internal.connections) == (1, 0)


def test_a_private_target_is_refused_at_run_time(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data("should not be reached")
    result = run_check(CheckSpec(url=f"http://127.0.0.1:{httpserver.port}/"), region="eu-west-1", allow_private=False)
    assert result.error == "destination_not_allowed"
    assert httpserver.log == []


# --- TLS errors ---------------------------------------------------------------------------------------------------


def self_signed_context(tmp_path: Path, name: str) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=10))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def test_an_expired_certificate(ca: trustme.CA) -> None:
    expired_at = (dt.datetime.now(UTC) - dt.timedelta(days=2)).replace(microsecond=0)
    cert = ca.issue_cert("localhost", not_before=expired_at - dt.timedelta(days=90), not_after=expired_at)
    with RawServer(respond(), context=server_context(cert)) as server:
        result = check(f"https://localhost:{server.port}/")
        unverified = check(f"https://localhost:{server.port}/", verify_ssl=False)
    assert (result.ok, result.error, result.status_code) == (False, "certificate_expired", None)
    assert result.error_detail == "the server's certificate has expired"
    assert result.ssl_expires_at == expired_at  # read over a second, unverified handshake
    assert result.timings.tls_ms > 0
    assert (unverified.ok, unverified.ssl_expires_at) == (True, expired_at)


def test_a_wrong_host_certificate(ca: trustme.CA) -> None:
    with RawServer(respond(), context=server_context(ca.issue_cert("other.test"))) as server:
        result = check(f"https://localhost:{server.port}/")
        assert check(f"https://localhost:{server.port}/", verify_ssl=False).ok
    assert (result.error, result.error_detail) == (
        "certificate_invalid",
        "wrong host: the certificate is not valid for this host name",
    )
    assert result.ssl_expires_at is not None


def test_a_self_signed_certificate(tmp_path: Path) -> None:
    with RawServer(respond(), context=self_signed_context(tmp_path, "localhost")) as server:
        result = check(f"https://localhost:{server.port}/")
        unverified = check(f"https://localhost:{server.port}/", verify_ssl=False)
    assert (result.error, result.error_detail) == ("certificate_invalid", "untrusted: the certificate is self-signed")
    assert unverified.ok
    assert unverified.ssl_expires_at is not None


def test_a_certificate_from_an_untrusted_authority() -> None:
    with RawServer(respond(), context=server_context(trustme.CA().issue_cert("localhost"))) as server:
        result = check(f"https://localhost:{server.port}/")
    assert (result.error, result.error_detail) == (
        "certificate_invalid",
        "untrusted: the certificate's issuer is not a trusted authority",
    )


def test_a_failed_handshake_is_a_tls_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data("plain http")
    result = check(f"https://localhost:{httpserver.port}/")
    assert result.error == "tls_error"
    assert (result.error_detail or "").startswith("TLS handshake failed")


# --- deadlines ----------------------------------------------------------------------------------------------------


def drip(head: bytes, body: bytes, every: float) -> Handler:
    """Send ``head`` at once, then ``body`` one byte every ``every`` seconds."""

    def handler(server: RawServer, conn: socket.socket) -> None:
        server.read_request(conn)
        server.send(conn, head)
        for byte in body:
            if server.stopped.wait(every):
                return
            server.send(conn, bytes([byte]))

    return handler


@pytest.mark.parametrize(
    ("head", "body"),
    [
        (b"", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),  # the status line and headers drip
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"x" * 100),  # the body drips
    ],
    ids=["headers", "body"],
)
def test_a_slow_drip_cannot_stretch_the_deadline(head: bytes, body: bytes) -> None:
    with RawServer(drip(head, body, every=1.0)) as server:
        started = time.perf_counter()
        result = check(f"http://localhost:{server.port}/", timeout_ms=1000)
        elapsed = time.perf_counter() - started
    assert result.error == "timeout"
    assert 0.9 < elapsed < 1.5
    assert (result.error_detail or "").startswith("no complete response within 1000 ms")


def test_a_silent_tls_server_times_out_in_the_handshake() -> None:
    with RawServer(lambda server, conn: server.stopped.wait(5)) as server:
        started = time.perf_counter()
        result = check(f"https://localhost:{server.port}/", timeout_ms=1000)
        elapsed = time.perf_counter() - started
    assert result.error == "timeout"
    assert "TLS handshake" in (result.error_detail or "")
    assert elapsed < 1.5


def test_the_connect_timeout() -> None:
    # A listener whose one-slot backlog is full drops further SYNs: connect() hangs.
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        started = time.perf_counter()
        result = check(f"http://localhost:{listener.getsockname()[1]}/", timeout_ms=5000, connect_timeout_ms=300)
        elapsed = time.perf_counter() - started
    assert (result.error, result.error_detail) == ("timeout", "could not connect within 300 ms")
    assert elapsed < 1.0


# --- network errors -----------------------------------------------------------------------------------------------


def test_connection_refused() -> None:
    result = check(f"http://localhost:{dead_port()}/")
    assert (result.error, result.error_detail) == ("connection_refused", "the server refused the connection")
    assert result.response_time_ms is None


def test_connection_reset() -> None:
    def reset(server: RawServer, conn: socket.socket) -> None:
        server.read_request(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST

    with RawServer(reset) as server:
        result = check(f"http://localhost:{server.port}/")
    assert result.error == "connection_reset"


def test_a_server_that_hangs_up_without_answering() -> None:
    with RawServer(lambda server, conn: server.read_request(conn) and None) as server:
        result = check(f"http://localhost:{server.port}/")
    assert (result.error, result.error_detail) == (
        "connection_reset",
        "the server closed the connection without a response",
    )


def test_a_server_that_does_not_speak_http() -> None:
    def garbage(server: RawServer, conn: socket.socket) -> None:
        server.read_request(conn)
        server.send(conn, b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

    with RawServer(garbage) as server:
        result = check(f"http://localhost:{server.port}/")
    assert result.error == "invalid_response"


def test_dns_failure() -> None:
    result = check("https://nowhere.test/", resolver=StubResolver(LOOPBACK))
    assert (result.error, result.error_detail) == ("dns_failure", "nowhere.test does not resolve")
    assert result.timings.connect_ms == 0


# --- bodies that are too large ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """128 MiB of zeros, gzip-compressed to about 130 KB."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    zeros = bytes(1024 * 1024)
    return b"".join([*(compressor.compress(zeros) for _ in range(128)), compressor.flush()])


def test_a_gzip_bomb_is_body_too_large_in_bounded_memory(gzip_bomb: bytes) -> None:
    handler = respond(body=gzip_bomb, headers={"Content-Encoding": "gzip"})
    with RawServer(handler) as server:
        tracemalloc.start()
        try:
            result = check(f"http://localhost:{server.port}/")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert result.error == "body_too_large"
    assert result.error_detail == "the response body is larger than 1 MiB (after decompression)"
    assert peak < 8 * MAX_BODY_BYTES


def endless(declare_length: bool) -> Handler:
    def handler(server: RawServer, conn: socket.socket) -> None:
        server.read_request(conn)
        length = f"Content-Length: {50 * 1024 * 1024}\r\n" if declare_length else ""
        server.send(conn, f"HTTP/1.1 200 OK\r\n{length}Connection: close\r\n\r\n".encode())
        chunk = b"x" * 65536
        for _ in range(50 * 16):
            server.send(conn, chunk)

    return handler


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "read-until-close"])
def test_a_50_mib_body_is_body_too_large_quickly(declare_length: bool) -> None:
    with RawServer(endless(declare_length)) as server:
        started = time.perf_counter()
        result = check(f"http://localhost:{server.port}/")
        elapsed = time.perf_counter() - started
    assert (result.error, result.status_code) == ("body_too_large", 200)
    assert result.body_excerpt == ("" if declare_length else "x" * 1024)
    assert elapsed < 2.0
    assert server.sent < 25 * 1024 * 1024  # the checker hung up long before the end


def test_a_body_of_exactly_1_mib_is_fine(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data(b"y" * MAX_BODY_BYTES)
    assert check(httpserver.url_for("/")).ok
