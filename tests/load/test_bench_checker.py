"""Bench: the checker's CPU cost per fresh-TLS check, beside a bare urllib3 loop making the same requests.

Run by ``make bench`` (not by ``make test``).  The HTTPS server runs in another
process so its CPU is not counted: ``time.process_time()`` here is the client's
alone.  Checks run one after another (no burst of simultaneous starts, which
inflates handshake times), alternating between the two clients in blocks so
that drift in the machine's speed hits both alike.

Targets (issue 4): the checker costs at most 1.3x the bare loop per check, and
its measured ``tls_ms`` p95 is within 5 ms of the bare loop's.

The second bench runs one whole worker invocation (``tests/load/checker_run.py``) in a process of its own,
its tables on a moto server in a third: CPU per check with everything the worker does around a check (the
message, the look-ups, the result writes), and the memory it holds.  ``infra/build.py`` sizes the deployed
worker from these two figures; the bench fails if they outgrow what it assumed.  The third runs the same
invocation capped at the deployed worker's share of a CPU (a cgroup, as Lambda caps a function): its checks must
still start on time and measure their targets about as well.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trustme
import urllib3
from urllib3.connection import HTTPSConnection

from chalicelib.checks import ssrf, tls
from chalicelib.checks.http import ACCEPT_ENCODING, USER_AGENT, run_check
from chalicelib.checks.jobs import MAX_JOBS_PER_MESSAGE
from chalicelib.checks.model import CheckSpec
from infra import build
from tests.load.conftest import process_env

CHECKS = 1000
BLOCK = 100
WARMUP = 50
MAX_RATIO = 1.3
MAX_TLS_P95_GAP_MS = 5.0
BODY = b'{"status":"ok"}'


def serve(cert_file: str, key_file: str, ports: Queue[int], stop: Event) -> None:
    """The server process: one thread per connection, a fixed small JSON answer, then close."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    listener.settimeout(0.2)
    ports.put(listener.getsockname()[1])
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
        + BODY
    )

    def handle(conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            with ctx.wrap_socket(conn, server_side=True) as tls_conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = tls_conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                tls_conn.sendall(response)
        except OSError:
            conn.close()

    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        threading.Thread(target=handle, args=(conn,), daemon=True).start()
    listener.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_port(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    folder: Path = tmp_path_factory.mktemp("bench-certs")
    cert = ca.issue_cert("localhost")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(cert_file), append=True)
    cert.private_key_pem.write_to_path(str(key_file))
    mp = multiprocessing.get_context("fork")
    ports = mp.Queue()
    stop = mp.Event()
    process = mp.Process(target=serve, args=(str(cert_file), str(key_file), ports, stop), daemon=True)
    process.start()
    try:
        yield ports.get(timeout=10)
    finally:
        stop.set()
        process.join(5)
        if process.is_alive():
            process.kill()


class TimedHTTPSConnection(HTTPSConnection):
    """urllib3's own connection, timing its TLS handshake the way the checker does: TCP done → handshake done."""

    tcp_done = 0.0
    tls_ms = 0.0

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self.tcp_done = time.perf_counter()
        return sock

    def connect(self) -> None:
        super().connect()
        self.tls_ms = (time.perf_counter() - self.tcp_done) * 1000


def bare_loop(port: int, context: ssl.SSLContext, count: int) -> tuple[float, list[float]]:
    """CPU seconds and handshake times for ``count`` fresh-TLS GETs with urllib3 alone."""
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": ACCEPT_ENCODING, "Connection": "close"}
    handshakes = []
    started = time.process_time()
    for _ in range(count):
        conn = TimedHTTPSConnection("localhost", port, timeout=10, ssl_context=context)
        conn.request("GET", "/", headers=headers, preload_content=False)
        response = conn.getresponse()
        body = response.read()
        conn.close()
        assert response.status == 200
        assert body == BODY
        handshakes.append(conn.tls_ms)
    return time.process_time() - started, handshakes


def checker_loop(port: int, count: int) -> tuple[float, list[float]]:
    spec = CheckSpec(url=f"https://localhost:{port}/", timeout_ms=10000)
    handshakes = []
    started = time.process_time()
    with ssrf.lookups_for("team-bench"):  # as the worker runs each check
        for _ in range(count):
            result = run_check(spec, region="us-east-1", allow_private=True)
            assert result.ok, result
            handshakes.append(result.timings.tls_ms)
    return time.process_time() - started, handshakes


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[94]


def test_checker_cpu_per_check_against_a_bare_urllib3_loop(ca: trustme.CA, server_port: int) -> None:
    cadata = ca.cert_pem.bytes().decode()
    tls.use_trust_store(cadata)
    bare_context = ssl.create_default_context(cadata=cadata)
    bare_context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        bare_loop(server_port, bare_context, WARMUP)
        checker_loop(server_port, WARMUP)
        bare_cpu = checker_cpu = 0.0
        bare_tls: list[float] = []
        checker_tls: list[float] = []
        for _ in range(CHECKS // BLOCK):
            cpu, times = bare_loop(server_port, bare_context, BLOCK)
            bare_cpu += cpu
            bare_tls += times
            cpu, times = checker_loop(server_port, BLOCK)
            checker_cpu += cpu
            checker_tls += times
    finally:
        tls.use_trust_store(None)

    bare_ms, checker_ms = bare_cpu * 1000 / CHECKS, checker_cpu * 1000 / CHECKS
    ratio = checker_ms / bare_ms
    print(
        f"\n{CHECKS} fresh-TLS checks each (urllib3 {urllib3.__version__}):\n"
        f"  bare urllib3 loop: {bare_ms:.3f} ms CPU per check, tls p95 {p95(bare_tls):.3f} ms "
        f"(median {statistics.median(bare_tls):.3f})\n"
        f"  checker:           {checker_ms:.3f} ms CPU per check, tls p95 {p95(checker_tls):.3f} ms "
        f"(median {statistics.median(checker_tls):.3f})\n"
        f"  ratio checker/bare: {ratio:.3f} (target <= {MAX_RATIO})"
    )
    assert ratio <= MAX_RATIO, f"the checker costs {ratio:.2f}x the bare loop per check"
    assert p95(checker_tls) - p95(bare_tls) <= MAX_TLS_P95_GAP_MS


# A full message: what one deployed invocation runs (BENCH_CHECKS, with BENCH_CHECKER_MB, to try another size).
WORKER_CHECKS = int(os.environ.get("BENCH_CHECKS", MAX_JOBS_PER_MESSAGE))
WORKER_SECONDS = 55  # starts on the whole seconds 5..59 of the minute, as the scheduler plans them (~36 a second)
# Checks of a small first message before the measured one (0: the measured invocation is the process's first).
WORKER_WARM_UP = int(os.environ.get("BENCH_WARM_UP", "0"))


@dataclass(frozen=True)
class CpuCap:
    """A CPU controller group capping its processes at ``vcpu`` of one CPU (cgroup v1 or v2), as Lambda caps a
    function at its memory's share of a vCPU."""

    path: Path
    vcpu: float

    PERIOD_US: ClassVar[int] = 100_000

    @classmethod
    def make(cls, vcpu: float) -> CpuCap | None:
        """None where this machine does not let us make one (no writable CPU controller)."""
        quota = max(1000, int(vcpu * cls.PERIOD_US))
        for root, v2 in ((Path("/sys/fs/cgroup/cpu"), False), (Path("/sys/fs/cgroup"), True)):
            if v2 and not (root / "cgroup.controllers").exists():
                continue
            path = root / f"vigil-bench-{os.getpid()}"
            try:
                path.mkdir(exist_ok=True)
                if v2:
                    (path / "cpu.max").write_text(f"{quota} {cls.PERIOD_US}")
                else:
                    (path / "cpu.cfs_period_us").write_text(str(cls.PERIOD_US))
                    (path / "cpu.cfs_quota_us").write_text(str(quota))
                return cls(path, quota / cls.PERIOD_US)
            except OSError:
                with contextlib.suppress(OSError):
                    path.rmdir()
        return None

    def enter(self) -> None:
        """In the child, before it runs anything: the whole process is capped."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()


def run_worker(ca: trustme.CA, server_port: int, aws_endpoint: str, cap: CpuCap | None = None) -> dict[str, Any]:
    """One full message's invocation of the worker in a process of its own (``tests.load.checker_run``)."""
    env = {**process_env(aws_endpoint), "ALLOW_PRIVATE_TARGETS": "true"}
    env["TABLE_PREFIX"] = f"bench-{'capped' if cap else 'free'}-"  # each run's results in tables of their own
    config = {"port": server_port, "cadata": ca.cert_pem.bytes().decode(), "checks": WORKER_CHECKS}
    config["seconds"] = WORKER_SECONDS
    config["warm_up"] = WORKER_WARM_UP
    result = subprocess.run(  # preexec_fn only moves the child into its CPU group
        [sys.executable, "-m", "tests.load.checker_run", json.dumps(config)],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=WORKER_SECONDS + 90,
        check=False,
        preexec_fn=cap.enter if cap else None,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return run


@pytest.fixture(scope="module")
def uncapped(ca: trustme.CA, server_port: int, aws_endpoint: str) -> dict[str, Any]:
    return run_worker(ca, server_port, aws_endpoint)


def test_the_worker_cpu_and_memory_per_check_all_in(uncapped: dict[str, Any]) -> None:
    run = uncapped
    cpu_ms = run["cpu_s"] * 1000 / run["checks"]
    print(
        f"\none worker invocation, {run['checks']} fresh-TLS checks in {run['messages']} message(s) over"
        f" {WORKER_SECONDS} s, results written to moto:\n"
        f"  CPU {cpu_ms:.3f} ms per check, all in ({run['cpu_s']:.2f} s in {run['wall_s']:.1f} s wall); the worker"
        f" recorded {run['recorded_cpu_ms'] / max(1, run['recorded_checks']):.3f} ms over {run['recorded_checks']}"
        f" answered checks (its threads' CPU and its lookups': what the scheduler sizes it from)\n"
        f"  memory: {run['rss_started_mb']:.0f} MB at start, {run['rss_loaded_mb']:.0f} MB with the handler loaded,"
        f" {run['rss_peak_mb']:.0f} MB at the peak; {run['threads_peak']} threads at the peak\n"
        f"  lateness p50 {run['late_p50_s']:.3f} s, p99 {run['late_p99_s']:.3f} s;"
        f" {run['stored']} stored, {run['ok']} ok\n"
        f"  infra/build.py assumes {build.CHECKER_X86_CPU_MS_PER_CHECK} ms here and"
        f" {build.CHECKER_RSS_MB} MB of memory for a {build.CHECKER_MEMORY_MB} MB worker"
    )
    assert (run["messages"], run["failures"]) == (1, [])
    assert run["stored"] == run["ok"] == WORKER_CHECKS
    assert run["late_p99_s"] <= 2.0
    assert cpu_ms <= build.CHECKER_X86_CPU_MS_PER_CHECK, "the worker's sizing (infra/build.py) assumed less CPU"
    assert run["rss_peak_mb"] <= build.CHECKER_RSS_MB, "the worker's sizing (infra/build.py) assumed less memory"


# Capped at the deployed worker's share of a vCPU, its checks start on time and measure their targets about as
# well as with a CPU to themselves: at most this much later (p99), and this much slower (p95 of total_ms).
CAPPED_MAX_LATE_P99_S = 1.0
CAPPED_MAX_TOTAL_P95_GAP_MS = 25.0


@pytest.mark.timeout(400)  # two invocations of a minute each (the uncapped one shared with the test above)
def test_the_worker_at_its_deployed_share_of_a_cpu_starts_on_time_and_measures_true(
    ca: trustme.CA, server_port: int, aws_endpoint: str, uncapped: dict[str, Any]
) -> None:
    """``infra/build.py`` sizes the worker's memory, and so its CPU, for a full message at ``CHECKER_CPU_SHARE`` of
    its share.  Here one full message runs capped at that share (Lambda's vCPU for its memory, over the arm64
    factor: this x86_64 core is that much faster), as Lambda caps it."""
    memory_mb = int(os.environ.get("BENCH_CHECKER_MB", build.CHECKER_MEMORY_MB))  # to try another size
    vcpu = memory_mb / build.LAMBDA_MB_PER_VCPU / build.CHECKER_ARM64_CPU_FACTOR
    cap = CpuCap.make(vcpu)
    if cap is None:
        pytest.skip("this machine lets no process make a CPU controller group (cgroup): the cap is not measured")
    try:
        run = run_worker(ca, server_port, aws_endpoint, cap)
    finally:
        cap.remove()
    busy = run["cpu_s"] / run["wall_s"] / cap.vcpu
    print(
        f"\none worker invocation capped at {cap.vcpu:.3f} of a CPU ({memory_mb} MB arm64):"
        f" {WORKER_CHECKS} checks, {busy:.0%} of its share busy\n"
        f"  lateness p99 {run['late_p99_s']:.3f} s (uncapped {uncapped['late_p99_s']:.3f} s);"
        f" total_ms p50 {run['total_ms_p50']:.1f} / p95 {run['total_ms_p95']:.1f}"
        f" (uncapped {uncapped['total_ms_p50']:.1f} / {uncapped['total_ms_p95']:.1f});"
        f" tls_ms p95 {run['tls_ms_p95']:.1f} (uncapped {uncapped['tls_ms_p95']:.1f})"
    )
    assert (run["failures"], run["stored"], run["ok"]) == ([], WORKER_CHECKS, WORKER_CHECKS)
    assert run["late_p99_s"] <= CAPPED_MAX_LATE_P99_S
    assert run["total_ms_p95"] - uncapped["total_ms_p95"] <= CAPPED_MAX_TOTAL_P95_GAP_MS
