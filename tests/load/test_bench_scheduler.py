"""Bench (a) of issue 5: the scheduler over 10,000 monitors of mixed intervals.

Prints DynamoDB read units per due monitor and SQS requests per 1,000 jobs over an
hour of ticks (every SQS request a tick made, counted at botocore's edge, not the tick's
own count).  Read units are computed from what each query page returned, by DynamoDB's
rule for a Query on a GSI (eventually consistent): 0.5 unit per 4 KB of the page's items,
rounded up per page.  Targets: ≤ 0.1 read units per due monitor, ≤ 2 SQS requests per
1,000 jobs.
"""

from __future__ import annotations

import math
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto import mock_aws

from chalicelib.monitors.models import MonitorModel
from chalicelib.monitors.service import INTERVALS, schedule_key
from chalicelib.scheduler import service
from tests.support import aws_requests, make_test_settings, start_aws

MONITORS = 10_000
TICKS = 10
MAX_READ_UNITS_PER_DUE = 0.1
MAX_SQS_PER_1000_JOBS = 2.0


def _attribute_size(value: dict[str, Any]) -> int:
    kind, inner = next(iter(value.items()))
    if kind in ("S", "B"):
        return len(str(inner).encode())
    if kind == "N":
        return math.ceil(len(str(inner).lstrip("-").replace(".", "")) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + _attribute_size(v) for k, v in inner.items())
    if kind == "L":
        return 3 + sum(1 + _attribute_size(v) for v in inner)
    return len(str(inner))


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + _attribute_size(value) for name, value in item.items())


def _seed(team_id: str) -> None:
    rng = random.Random(5)
    now = datetime.now(UTC)
    with MonitorModel.batch_write() as batch:
        for n in range(MONITORS):
            monitor_id = f"mon_{n:05d}{rng.getrandbits(40):010x}"
            interval = rng.choice(INTERVALS)
            batch.save(
                MonitorModel(
                    team_id,
                    monitor_id,
                    name=f"Service {n}",
                    url=f"https://service-{n}.example.com/health",
                    headers={"Accept": "application/json"},
                    interval_seconds=interval,
                    timeout_ms=10000,
                    regions=["us-east-1", "eu-west-1", "ap-southeast-1"],
                    expected_status=["2xx"],
                    confirmation_regions=2,
                    schedule_key=schedule_key(monitor_id, interval),
                    created_at=now,
                    updated_at=now,
                )
            )


@pytest.mark.timeout(1200)
def test_scheduler_reads_and_requests_per_due_monitor(capsys):
    settings = make_test_settings()
    with mock_aws():
        start_aws(settings)
        _seed("team_bench")
        read_units = 0.0
        original = MonitorModel.by_schedule.query

        def measured_query(*args: Any, **kwargs: Any) -> Any:
            # Page by page, as DynamoDB bills it.
            from chalicelib.aws.clients import client

            dynamodb = client("dynamodb")
            nonlocal read_units
            start = None
            while True:
                page = dynamodb.query(
                    TableName=MonitorModel.Meta.table_name,
                    IndexName="schedule-index",
                    KeyConditionExpression="schedule_key = :k",
                    ExpressionAttributeValues={":k": {"S": args[0]}},
                    **({"ExclusiveStartKey": start} if start else {}),
                )
                read_units += 0.5 * math.ceil(sum(item_size(i) for i in page["Items"]) / 4096)
                start = page.get("LastEvaluatedKey")
                if not start:
                    break
            return original(*args, **kwargs)

        MonitorModel.by_schedule.query = measured_query  # type: ignore[method-assign]
        try:
            due = jobs = requests = 0
            started = time.perf_counter()
            for minute in range(TICKS):
                tick = datetime(2026, 11, 30, 12, tzinfo=UTC) + timedelta(minutes=minute)
                with aws_requests("sqs") as sent:  # every SQS request the tick made, at botocore's edge
                    report = service.run_tick(tick, now=tick + timedelta(minutes=2))  # its messages undelayed
                due += report.due_monitors
                jobs += report.jobs
                requests += len(sent)
                _purge_queues(settings)
            elapsed = time.perf_counter() - started
        finally:
            MonitorModel.by_schedule.query = original  # type: ignore[method-assign]

    per_due = read_units / due
    per_1000 = 1000 * requests / jobs
    with capsys.disabled():
        print(
            f"\nscheduler bench: {MONITORS} monitors, {TICKS} ticks, {due} due monitors, {jobs} jobs\n"
            f"  DynamoDB read units per due monitor: {per_due:.4f}   (target <= {MAX_READ_UNITS_PER_DUE})\n"
            f"  SQS requests per 1,000 jobs:         {per_1000:.3f}   (target <= {MAX_SQS_PER_1000_JOBS})\n"
            f"  tick time on moto: {1000 * elapsed / TICKS:.0f} ms per tick"
        )
    assert per_due <= MAX_READ_UNITS_PER_DUE
    assert per_1000 <= MAX_SQS_PER_1000_JOBS


def _purge_queues(settings: Any) -> None:
    from chalicelib.aws import names
    from chalicelib.aws.clients import client

    sqs = client("sqs")
    for region in settings.check_regions:
        url = sqs.get_queue_url(QueueName=names.check_queue(settings, region))["QueueUrl"]
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
            sqs.delete_message_batch(QueueUrl=url, Entries=entries)
