"""The end-to-end bench's loopback world: the monitored targets, the alert webhook receiver, and what a check sends.

:class:`Target` answers every check path at once (``/m/<n>``), or 503 once the bench takes a path down; it counts the
bytes of every request it reads (what a check sends its target: the internet egress of a check) and keeps every
webhook it receives on ``/hook`` with its arrival time.  :func:`tls_bytes` measures what one HTTPS check sends
over a fresh connection (handshake included), through a counting relay in front of a loopback TLS server.
"""

from __future__ import annotations

import json
import multiprocessing
import select
import socket
import ssl
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Seen:
    """What a target has seen so far: each path's request arrivals, every webhook, the bytes of the checks."""

    arrivals: dict[str, list[float]]
    hooks: list[tuple[float, dict[str, Any]]]
    request_bytes: int


class Target(ThreadingHTTPServer):
    """Every path answers at once; a path taken down answers 503 from the instant it went down."""

    daemon_threads = True
    request_queue_size = 1024

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TargetHandler)
        self.lock = threading.Lock()
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.request_bytes = 0  # request lines and headers of every check read
        self.down_since: dict[str, float] = {}
        self.hooks: list[tuple[float, dict[str, Any]]] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def take_down(self, paths: list[str], at: float) -> None:
        with self.lock:
            self.down_since.update(dict.fromkeys(paths, at))

    def is_down(self, path: str, now: float) -> bool:
        since = self.down_since.get(path)
        return since is not None and now >= since

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a check that gave up before the answer (its failure is in its result): no traceback per check

    def seen(self) -> Seen:
        with self.lock:
            arrivals = {path: list(times) for path, times in self.arrivals.items()}
            return Seen(arrivals, list(self.hooks), self.request_bytes)


CONTROL = "/_control/"  # a remote target's own paths: what it has seen, and which paths to take down


class RemoteTarget:
    """A :class:`Target` in a process of its own, so that answering ten thousand monitors' checks takes none of the
    stack's CPU (one Python process runs it all, under one lock).  Same face: ``url``, ``take_down``, ``seen``."""

    def __init__(self, tls: bool = False) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: none of the stack's threads
        self._ports: Any = context.Queue()
        self._stop = context.Event()
        # With ``tls``, the checks' paths are served over HTTPS too (a trustme CA's certificate for localhost, in
        # the target's process): what a check costs is then an HTTPS check's, as most monitors' are.
        self.ca = _TlsFiles.make() if tls else None
        files = (self.ca.cert_file, self.ca.key_file) if self.ca else None
        self._process = context.Process(target=_serve_remote, args=(self._ports, self._stop, files), daemon=True)
        self._process.start()
        self.port = int(self._ports.get(timeout=60))
        self.tls_port = int(self._ports.get(timeout=60)) if tls else None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def check_url(self, path: str) -> str:
        """A check's URL: over HTTPS where the target serves it, else the plain one."""
        return f"https://localhost:{self.tls_port}{path}" if self.tls_port else self.url(path)

    def take_down(self, paths: list[str], at: float) -> None:
        self._control("down", {"paths": paths, "at": at})

    def seen(self) -> Seen:
        state = self._control("seen")
        hooks = [(float(t), dict(p)) for t, p in state["hooks"]]
        return Seen(state["arrivals"], hooks, int(state["request_bytes"]))

    def close(self) -> None:
        self._stop.set()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()

    def _control(self, what: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body or {}).encode()
        request = urllib.request.Request(self.url(CONTROL + what), data=data, method="POST")
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())


@dataclass(frozen=True)
class _TlsFiles:
    """A trustme CA's PEM and a certificate for localhost, written to files the target's process loads."""

    ca_pem: str
    cert_file: str
    key_file: str

    @classmethod
    def make(cls) -> _TlsFiles:
        import tempfile

        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("localhost")
        folder = tempfile.mkdtemp(prefix="vigil-bench-tls-")
        cert_file, key_file = f"{folder}/cert.pem", f"{folder}/key.pem"
        cert.cert_chain_pems[0].write_to_path(cert_file)
        for pem in cert.cert_chain_pems[1:]:
            pem.write_to_path(cert_file, append=True)
        cert.private_key_pem.write_to_path(key_file)
        return cls(ca.cert_pem.bytes().decode(), cert_file, key_file)


class _HttpsTarget(ThreadingHTTPServer):
    """The checks' paths over HTTPS, counted in ``plain``'s state (one target, two ports).  Each connection's
    handshake runs on its own handler thread, not the accepting one."""

    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, plain: Target, cert_file: str, key_file: str) -> None:
        super().__init__(("127.0.0.1", 0), _TargetHandler)
        self.plain = plain
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert_file, key_file)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


def _serve_remote(ports: Any, stop: Any, tls_files: tuple[str, str] | None = None) -> None:
    server = Target()
    servers: list[ThreadingHTTPServer] = [server]
    if tls_files:
        servers.append(_HttpsTarget(server, *tls_files))
    for each in servers:
        threading.Thread(target=each.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        ports.put(each.server_address[1])
    stop.wait()
    for each in servers:
        each.shutdown()
        each.server_close()


class _TargetHandler(BaseHTTPRequestHandler):
    server: Target
    protocol_version = "HTTP/1.1"

    @property
    def target(self) -> Target:
        """The target whose state it counts in: the plain one, whichever port it came in on."""
        return getattr(self.server, "plain", self.server)

    def do_GET(self) -> None:
        arrived = time.time()
        size = len(self.raw_requestline) + sum(len(k) + len(v) + 4 for k, v in self.headers.items()) + 2
        with self.target.lock:
            self.target.arrivals[self.path].append(arrived)
            self.target.request_bytes += size
            down = self.target.is_down(self.path, arrived)
        body = b'{"status":"down"}' if down else b'{"status":"ok"}'
        self.send_response(503 if down else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        arrived = time.time()
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path.startswith(CONTROL):
            return self._control(self.path[len(CONTROL) :], json.loads(raw or b"{}"))
        with self.target.lock:
            self.target.hooks.append((arrived, json.loads(raw or b"{}")))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _control(self, what: str, body: dict[str, Any]) -> None:
        if what == "down":
            self.target.take_down(list(body["paths"]), float(body["at"]))
            answer: Any = {}
        else:
            seen = self.target.seen()
            answer = {"arrivals": seen.arrivals, "hooks": seen.hooks, "request_bytes": seen.request_bytes}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass  # one line per check otherwise


# ---------------------------------------------------------------------------------------------- HTTPS


class _TlsTarget(ThreadingHTTPServer):
    daemon_threads = True


class _TlsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b'{"status":"ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass


@contextmanager
def _serving(server: ThreadingHTTPServer) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


class _Relay:
    """Accepts one connection at a time and passes bytes both ways to ``upstream``, counting the client's."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            with client, socket.create_connection(self.upstream) as server:
                self._pump(client, server)

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        while True:
            ready, _, _ = select.select([client, server], [], [], 5)
            if not ready:
                return
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                if sock is client:
                    self.sent += len(data)
                    server.sendall(data)
                else:
                    client.sendall(data)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.listener.close()


def tls_bytes(checks: int = 20) -> tuple[float, float]:
    """What one HTTPS check sends over a fresh connection, and what the same request sends in plain HTTP:
    bytes the client wrote, on average, through a counting relay to a loopback TLS server (a trustme CA)."""
    import trustme

    from chalicelib.checks import ssrf, tls
    from chalicelib.checks.http import run_check
    from chalicelib.checks.model import CheckSpec

    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    server = _TlsTarget(("127.0.0.1", 0), _TlsHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    plain = _TlsTarget(("127.0.0.1", 0), _TlsHandler)
    tls.use_trust_store(ca.cert_pem.bytes().decode())
    try:
        with _serving(server), _serving(plain):
            sent = []
            for upstream, scheme in ((server.server_address, "https"), (plain.server_address, "http")):
                relay = _Relay((str(upstream[0]), int(upstream[1])))
                try:
                    spec = CheckSpec(url=f"{scheme}://localhost:{relay.port}/m/1234", timeout_ms=10000)
                    with ssrf.lookups_for("team-bench"):  # as the worker runs each check
                        for _ in range(checks):
                            result = run_check(spec, region="us-east-1", allow_private=True)
                            assert result.ok, result
                    time.sleep(0.2)  # the last connection's closing bytes
                    sent.append(relay.sent / checks)
                finally:
                    relay.close()
    finally:
        tls.use_trust_store(None)
    return sent[0], sent[1]
