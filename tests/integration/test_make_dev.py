"""``make dev`` (``python -m chalicelib.local``) answers /health with 200 and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, {}


def wait_for_health(url: str, process: subprocess.Popen, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            return get(url)[0]
        except OSError:
            time.sleep(0.2)
    return 0


@contextmanager
def local_stack(log_path: Path, port: int, *args: str, **env: str) -> Iterator[subprocess.Popen]:
    """``python -m chalicelib.local *args`` on ``port`` with the embedded emulator (whatever a developer's .env
    says), ``env`` on top, its output in ``log_path``; killed on the way out if a test left it running."""
    environment = {
        **os.environ,
        "VIGIL_STAGE": "local",
        "PORT": str(port),
        "AWS_ENDPOINT_URL": "",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "chalicelib.local", *args],
            cwd=REPO,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=5)


def test_make_dev_serves_health_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    with local_stack(tmp_path / "dev.log", port) as process:
        base = f"http://127.0.0.1:{port}"
        assert wait_for_health(f"{base}/health", process) == 200, (tmp_path / "dev.log").read_text()
        status, outbox = get(f"{base}/dev/outbox")
        assert status == 200
        assert outbox == {"data": []}

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    output = (tmp_path / "dev.log").read_text()
    assert f"http://127.0.0.1:{port}" in output
    assert "Traceback" not in output
