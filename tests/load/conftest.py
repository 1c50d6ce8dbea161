"""The benches count AWS requests through botocore's event hooks (tests/load/meter.py).

A botocore session takes its built-in handlers when it is made, and a client its session's: the hooks go in
before any test makes one.  They count nothing until a bench starts a meter.

The benches that measure one function in a process of its own (its CPU and memory alone) share a moto server in
another process, ``aws_endpoint``, and the environment such a process starts with, ``process_env``.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
from collections.abc import Iterator
from multiprocessing.synchronize import Event

import pytest

from tests.load import meter
from tests.support import TEST_ENV

meter.install()


def serve_aws(port: int, stop: Event) -> None:
    from moto.server import ThreadedMotoServer

    from chalicelib.local.atomic import make_dynamodb_atomic, make_dynamodb_fast

    make_dynamodb_atomic()
    make_dynamodb_fast()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stop.wait()
    server.stop()


@pytest.fixture(scope="module")
def aws_endpoint() -> Iterator[str]:
    """A moto server in another process, so that its CPU is not the worker's."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    mp = multiprocessing.get_context("fork")
    stop = mp.Event()
    process = mp.Process(target=serve_aws, args=(port, stop), daemon=True)
    process.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the moto server did not start"
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        process.join(5)
        if process.is_alive():
            process.kill()


def process_env(aws_endpoint: str) -> dict[str, str]:
    """The environment of a bench's own process: the test stage, its AWS on ``aws_endpoint``."""
    return {
        **os.environ,
        **TEST_ENV,
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "LOG_LEVEL": "WARNING",
        "POWERTOOLS_TRACE_DISABLED": "true",  # as outside Lambda anyway
    }
