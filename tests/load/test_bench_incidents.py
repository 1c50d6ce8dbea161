"""Bench: the incident handler's DynamoDB requests and time per check result.

300 monitors x 3 regions x 3 minutes of results (2,700; BENCH_MONITORS changes the 300), fed to the handler as
the results stream would: batches of 100 records in arrival order.  Prints requests per result by operation,
transaction items per result, and milliseconds per result on in-process moto (a floor only for the request
count: moto's per-call cost is far above DynamoDB's).  The requests are counted at botocore's edge (every
DynamoDB client), and held under ceilings that a regression of the write path breaks:

- reads: a batch's reads are made together (monitors, states, open incidents by BatchGetItem, one window query
  per team): at most 4 a batch of 100 results, 0.04 a result; a read per result would be 1.
- requests: every result of the first minute is material (a region's first check), a status change in a
  transaction or the state and monitor written plainly, and a change note (900 x 2-3); a failing monitor's
  results write as much (180 x 2-3); an up check of a steady region writes nothing (2,430): about 1.1 a result.
  Writing every result again, as before the handler wrote only material changes, is 1.9 (docs/decisions.md).
- transaction items: a status change's three, an incident's opening (seven) and its third region (four):
  about 0.46 a result (docs/decisions.md), where a transaction per result would be three or more.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from moto import mock_aws

from chalicelib.monitors import packs
from chalicelib.monitors.models import MonitorModel, PackModel
from chalicelib.monitors.packs import Packed
from tests.events import stream_record
from tests.factories import check_result
from tests.support import aws_requests, make_test_settings, start_aws

MONITORS = int(os.environ.get("BENCH_MONITORS", "300"))
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
MINUTES = 3
BATCH = 100
MAX_READS_PER_RESULT = 0.05
MAX_REQUESTS_PER_RESULT = 1.3
MAX_TRANSACTION_ITEMS_PER_RESULT = 0.55
READS = ("GetItem", "BatchGetItem", "Query", "Scan")


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
                    check = check_result(at, ok, region)
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

        with aws_requests("dynamodb") as sent:
            began = time.perf_counter()
            for first in range(0, len(records), BATCH):
                assert handle(records[first : first + BATCH]) == {"batchItemFailures": []}
            elapsed = time.perf_counter() - began
        calls = Counter(operation for operation, _ in sent)
        write_items = sum(len(params.get("TransactItems", [])) for op, params in sent if op == "TransactWriteItems")

        results = len(records)
        requests, reads = sum(calls.values()) / results, sum(calls[op] for op in READS) / results
        from chalicelib.incidents.models import IncidentModel

        opened = sum(1 for _ in IncidentModel.query("team_bench"))
        with capsys.disabled():
            print(f"\nincident handler: {results} results, {opened} incidents opened")
            print(
                f"  requests per result: {requests:.3f}, of them reads {reads:.3f}"
                f"  (ceilings {MAX_REQUESTS_PER_RESULT}, {MAX_READS_PER_RESULT}; {dict(sorted(calls.items()))})"
            )
            print(
                f"  transaction items per result: {write_items / results:.3f}"
                f"  (ceiling {MAX_TRANSACTION_ITEMS_PER_RESULT})"
            )
            print(
                f"  time per result (in-process moto): {1000 * elapsed / results:.2f} ms; per batch of {BATCH}: "
                f"{1000 * elapsed / (results / BATCH):.0f} ms"
            )
        assert opened == MONITORS // 10
        assert calls["TransactWriteItems"] > 0  # the seam saw the handler's writes
        assert reads <= MAX_READS_PER_RESULT, dict(calls)
        assert requests <= MAX_REQUESTS_PER_RESULT, dict(calls)
        assert write_items / results <= MAX_TRANSACTION_ITEMS_PER_RESULT
