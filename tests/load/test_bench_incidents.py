"""Bench: the incident handler's DynamoDB requests and time per check result.

300 monitors x 3 regions x 3 minutes of results (2,700; BENCH_MONITORS changes the 300), fed to the handler as
the results stream would: batches of 100 records in arrival order.  Prints requests per result by operation,
transaction items per result, and milliseconds per result on in-process moto (a floor only for the request
count: moto's per-call cost is far above DynamoDB's).  No target was set; the figures are for the closing note
and to catch regressions.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto import mock_aws
from pynamodb.connection.base import Connection

from chalicelib.checks.model import CheckResult, Timings
from chalicelib.monitors import packs
from chalicelib.monitors.models import MonitorModel, PackModel
from chalicelib.monitors.packs import Packed
from tests.events import stream_record
from tests.support import make_test_settings, start_aws

MONITORS = int(os.environ.get("BENCH_MONITORS", "300"))
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
MINUTES = 3
BATCH = 100


def _seed(team_id: str, now: datetime) -> list[str]:
    ids = [f"mon_{n:05d}" for n in range(MONITORS)]
    with MonitorModel.batch_write() as batch:
        for monitor_id in ids:
            batch.save(
                MonitorModel(
                    team_id,
                    monitor_id,
                    name=monitor_id,
                    url=f"https://{monitor_id}.example.com/",
                    interval_seconds=60,
                    timeout_ms=10000,
                    regions=list(REGIONS),
                    expected_status=["2xx"],
                    confirmation_regions=2,
                    created_at=now,
                    updated_at=now,
                )
            )
    return ids


@pytest.mark.timeout(900)
def test_incident_handler_requests_and_time_per_result(capsys):
    settings = make_test_settings()
    with mock_aws():
        start_aws(settings)
        from chalicelib.events.incidents import handle

        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=MINUTES + 1)
        ids = _seed("team_bench", start)
        records = []
        for minute in range(MINUTES):
            for region in REGIONS:
                for monitor_id in ids:
                    at = start + timedelta(minutes=minute, seconds=hash(monitor_id) % 50)
                    ok = not (monitor_id.endswith("7") and minute > 0)  # a tenth of the monitors go down
                    check = CheckResult(
                        ok=ok,
                        checked_at=at,
                        region=region,
                        status_code=200 if ok else 503,
                        response_time_ms=120.0,
                        timings=Timings(),
                        error=None if ok else "status_mismatch",
                        error_detail=None,
                        ssl_expires_at=None,
                        assertion_failures=(),
                        degraded=False,
                        body_excerpt=None,
                        final_url=None,
                    )
                    # One marked check a pack, as the worker would mark them all here (the monitors are pending
                    # or down): the handler's cost per result it is given.
                    item = PackModel(
                        packs.bucket_of(monitor_id),
                        packs.pack_key(packs.minute_of(at), region, monitor_id),
                        body=packs.encode_pack([Packed("team_bench", monitor_id, region, at, check, True)]),
                        checks=1,
                        marked=True,
                        expires_at=at + packs.PACK_KEEP,
                    )
                    records.append(stream_record(item, sequence=len(records)))

        calls: Counter[str] = Counter()
        write_items = 0
        original = Connection._make_api_call

        def counting(self: Any, operation: str, operation_kwargs: dict[str, Any], **kw: Any) -> Any:
            nonlocal write_items
            calls[operation] += 1
            if operation == "TransactWriteItems":
                write_items += len(operation_kwargs.get("TransactItems", []))
            return original(self, operation, operation_kwargs, **kw)

        Connection._make_api_call = counting  # type: ignore[method-assign]
        try:
            began = time.perf_counter()
            for first in range(0, len(records), BATCH):
                assert handle(records[first : first + BATCH]) == {"batchItemFailures": []}
            elapsed = time.perf_counter() - began
        finally:
            Connection._make_api_call = original  # type: ignore[method-assign]

        results = len(records)
        from chalicelib.incidents.models import IncidentModel

        opened = sum(1 for _ in IncidentModel.query("team_bench"))
        with capsys.disabled():
            print(f"\nincident handler: {results} results, {opened} incidents opened")
            print(f"  requests per result: {sum(calls.values()) / results:.3f}  ({dict(sorted(calls.items()))})")
            print(f"  transaction items per result: {write_items / results:.3f}")
            print(
                f"  time per result (in-process moto): {1000 * elapsed / results:.2f} ms; per batch of {BATCH}: "
                f"{1000 * elapsed / (results / BATCH):.0f} ms"
            )
        assert opened == MONITORS // 10
