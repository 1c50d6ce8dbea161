"""The rollups handler in a process of its own: its CPU, wall time and memory per batch of stream records.

Run by ``tests/load/test_bench_stream.py`` as ``python -m tests.load.rollups_run BATCHES``, with the settings in
the environment (the tables on a moto server in another process).  It loads the handler's module as Lambda does,
creates the tables, then hands the handler ``BATCHES`` + 1 batches of 100 new results (100 monitors, a minute
apart, as the results stream would) and prints one JSON line: the CPU and wall seconds of each batch but the
first (which makes the clients), and the resident memory once loaded and at the peak.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

BATCH = 100


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def main(batches: int) -> dict[str, Any]:
    from chalicelib.events.results import rollups

    loaded = rss_mb()

    from chalicelib.aws.clients import client
    from chalicelib.models import ALL_MODELS
    from chalicelib.monitors.models import ResultModel
    from chalicelib.settings import get_settings
    from chalicelib.storage.schema import create_tables
    from tests.events import lambda_event, stream_record

    create_tables(client("dynamodb"), get_settings().table_prefix, ALL_MODELS)
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    timed = []
    for batch in range(batches + 1):
        at = start + timedelta(minutes=batch)
        results = [
            ResultModel(
                f"mon_{i:04d}",
                f"{at:%Y-%m-%dT%H:%M:%S}#us-east-1",
                team_id="team_1",
                region="us-east-1",
                checked_at=at,
                ok=True,
                response_time_ms=120.0,
                expires_at=at + timedelta(days=30),
            )
            for i in range(BATCH)
        ]
        event = lambda_event(stream_record(result) for result in results)
        cpu, wall = time.process_time(), time.monotonic()
        response = rollups(event, None)
        timed.append((time.process_time() - cpu, time.monotonic() - wall))
        assert response == {"batchItemFailures": []}, response
    return {
        "records": BATCH,
        "batches": timed[1:],
        "rss_loaded_mb": loaded,
        "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
