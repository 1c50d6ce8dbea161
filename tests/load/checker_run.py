"""One check-worker invocation in a process of its own: its CPU and memory per check, everything included.

Run by ``tests/load/test_bench_checker.py`` as ``python -m tests.load.checker_run CONFIG``, with the settings in
the environment (the tables on a moto server in another process) and CONFIG a JSON object: the loopback HTTPS
target's ``port`` and its CA's PEM (``cadata``), how many ``checks`` and over how many ``seconds`` they start.

1. Load what the deployed worker loads, ``functions.checker.handler``, and nothing of the tests or Chalice.
2. Create the worker's tables and one monitor per check (a live monitor in this region), untimed.
3. Invoke the handler once with a Lambda-shaped SQS event of those jobs, packed as the scheduler packs them
   (``pack``), the starts spread over whole seconds as the scheduler plans them (many checks a second).
4. Print one JSON line: the process's CPU and wall time over the invocation alone, its resident memory after
   loading and at its peak, the checks run and stored, and the start lateness of the stored results.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

REGION = "us-east-1"
TIMEOUT_MS = 120_000


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


class Context:
    """What the worker reads of Lambda's context: the time it has left."""

    def __init__(self) -> None:
        self.deadline = time.monotonic() + TIMEOUT_MS / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


def main(config: dict[str, Any]) -> dict[str, Any]:
    started_kb = rss_kb()
    from functions.checker.handler import make_handler

    loaded_kb = rss_kb()

    from chalicelib.aws.clients import client
    from chalicelib.checks import tls
    from chalicelib.checks.jobs import Job, pack, spread
    from chalicelib.checks.marking import Watch
    from chalicelib.checks.model import CheckSpec
    from chalicelib.settings import get_settings
    from chalicelib.storage.schema import create_tables
    from functions.checker.worker import TABLES

    settings = get_settings()
    dynamodb = client("dynamodb")
    create_tables(dynamodb, settings.table_prefix, TABLES)
    checks, seconds, port = int(config["checks"]), int(config["seconds"]), int(config["port"])
    team = "team_bench"
    monitors = [f"mon_{i:06d}" for i in range(checks)]
    table = settings.table_prefix + "monitors"
    for i in range(0, checks, 25):
        items = [
            {
                "PutRequest": {
                    "Item": {
                        "team_id": {"S": team},
                        "monitor_id": {"S": m},
                        "regions": {"L": [{"S": REGION}]},
                        "paused": {"BOOL": False},
                    }
                }
            }
            for m in monitors[i : i + 25]
        ]
        dynamodb.batch_write_item(RequestItems={table: items})
    tls.use_trust_store(config["cadata"])

    handler = make_handler(REGION)
    arn = f"arn:aws:sqs:{REGION}:123456789012:bench-checks-{REGION}"

    def event(bodies: list[str]) -> dict[str, Any]:
        return {
            "Records": [
                {
                    "messageId": str(uuid.uuid4()),
                    "receiptHandle": str(uuid.uuid4()),
                    "body": body,
                    "attributes": {"ApproximateReceiveCount": "1"},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": REGION,
                }
                for body in bodies
            ]
        }

    if warm_up := int(config.get("warm_up", 0)):
        # A warm environment, as Lambda reuses one invocation after another: clients made, pools started, models
        # loaded by a first small message of checks of their own, at once (not measured, not counted).
        now, steady = datetime.now(UTC), Watch(status="up", steady_regions=frozenset({REGION}), known=True)
        spec = CheckSpec(url=f"https://localhost:{port}/warm")
        handler(
            event(pack([Job(team, f"warm_{i}", REGION, now, spec, steady, now) for i in range(warm_up)])), Context()
        )

    first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    # As the tick plans them: each with its monitor's watch as the tick read it (up and steady here), so the worker
    # reads only the change notes (none: nothing changed since).
    watch, read_at = Watch(status="up", steady_regions=frozenset({REGION}), known=True), datetime.now(UTC)
    jobs = [
        Job(
            team,
            m,
            REGION,
            first + timedelta(seconds=i % seconds),
            CheckSpec(url=f"https://localhost:{port}/{m}"),
            watch,
            read_at,
        )
        for i, m in enumerate(monitors)
    ]
    records = event(pack(jobs, checks))["Records"]  # one message of them all, as a lane the scheduler cut

    cpu, wall, threads = time.process_time(), time.monotonic(), threading.active_count()
    peak_threads = [threads]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.5):
            peak_threads[0] = max(peak_threads[0], threading.active_count())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    response = handler({"Records": records}, Context())
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    sampling.set()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux

    from chalicelib.monitors import packs
    from chalicelib.monitors.models import ProgressModel

    # What the worker recorded of its own CPU (what the scheduler sizes it from), against the process's above.
    recorded = [i for i in ProgressModel.scan() if i.name.startswith(f"cpu#{REGION}#")]

    results = []
    pages = dynamodb.get_paginator("scan").paginate(TableName=settings.table_prefix + "result_packs")
    for page in pages:
        for item in page["Items"]:
            results += [p for p in packs.decode_pack(bytes(item["body"]["B"])) if not p.monitor_id.startswith("warm_")]
    late = sorted((r.result.checked_at - r.slot - spread(r.monitor_id)).total_seconds() for r in results)
    total = sorted(r.result.timings.total_ms for r in results if r.result.timings.total_ms is not None)
    tls_ms = sorted(r.result.timings.tls_ms for r in results if r.result.timings.tls_ms is not None)
    return {
        "checks": checks,
        "messages": len(records),
        "failures": response.get("batchItemFailures", []),
        "stored": len(results),
        "ok": sum(r.result.ok for r in results),
        "cpu_s": cpu,
        "recorded_cpu_ms": sum(float(i.cpu_ms or 0) for i in recorded),
        "recorded_checks": sum(int(i.checks or 0) for i in recorded),
        "wall_s": wall,
        "rss_started_mb": started_kb / 1024,
        "rss_loaded_mb": loaded_kb / 1024,
        "rss_peak_mb": peak_kb / 1024,
        "threads_peak": peak_threads[0],
        "late_p50_s": statistics.median(late) if late else None,
        "late_p99_s": late[int(len(late) * 0.99)] if late else None,
        # What the checks measured of their targets (a starved CPU shows up here first: a handshake waiting for it).
        "total_ms_p50": quantile(total, 0.5),
        "total_ms_p95": quantile(total, 0.95),
        "tls_ms_p95": quantile(tls_ms, 0.95),
    }


def quantile(values: list[float], q: float) -> float | None:
    return values[min(len(values) - 1, int(len(values) * q))] if values else None


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
