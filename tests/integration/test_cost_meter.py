"""The bench's meter (tests/load/meter.py): what it counts of real requests to the emulator, and how it sizes them."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from tests.load import cost, meter
from tests.load.cost import Read, Write, item_size


@pytest.fixture
def metered(aws) -> Iterator[tuple[meter.Meter, Any, Any]]:
    """A started meter, and DynamoDB and SQS clients made after its hooks went in (as the bench's are)."""
    meter.install()
    session = boto3.session.Session()
    dynamodb, sqs = session.client("dynamodb"), session.client("sqs")
    m = meter.Meter(
        cost.table_schemas(cost.main_template()),
        meter.moto_items(aws.home_region),
        prefix=aws.table_prefix,
        home_region=aws.home_region,
        check_regions=tuple(aws.check_regions),
    )
    m.start()
    yield m, dynamodb, sqs
    m.stop()
    meter.uninstall()


def _as(m: meter.Meter, function: str, work: Any) -> Any:
    """Run ``work`` as a handler of the local loop named ``function``."""
    source = SimpleNamespace(name=function, handler=lambda event, context: work())
    m.time_handlers(SimpleNamespace(sources=[source]))
    return source.handler({"Records": [{}, {}]}, None)


def _monitor(**extra: Any) -> dict[str, Any]:
    return {"team_id": {"S": "team_1"}, "monitor_id": {"S": "mon_1"}, "name": {"S": "Shop"}, **extra}


def test_a_write_is_sized_from_the_stored_item_before_and_after_with_its_index_writes(aws, metered):
    m, dynamodb, _ = metered
    table = f"{aws.table_prefix}monitors"
    item = _monitor(schedule_key={"S": "60:7"}, status={"S": "up"})
    key = {k: item[k] for k in ("team_id", "monitor_id")}

    def work() -> None:
        dynamodb.put_item(TableName=table, Item=item)
        dynamodb.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "down"}},
        )
        with pytest.raises(dynamodb.exceptions.ConditionalCheckFailedException):
            dynamodb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(team_id)")

    _as(m, "incidents", work)
    down = {**item, "status": {"S": "down"}}
    keys_only = item_size(key)  # monitor-index's entry: the table's keys (its own key is one of them)
    assert [(c.operation, c.function, c.resource) for c in m.calls] == [
        ("PutItem", "incidents", "monitors"),
        ("UpdateItem", "incidents", "monitors"),
        ("PutItem", "incidents", "monitors"),
    ]
    assert [c.writes for c in m.calls] == [
        (
            Write(
                "monitors",
                0,
                item_size(item),
                indexes=(("monitor-index", keys_only), ("schedule-index", item_size(item))),
            ),
        ),
        (Write("monitors", item_size(item), item_size(down), indexes=(("schedule-index", item_size(down)),)),),
        # The condition failed: the item is unchanged, and its size is still paid for.
        (Write("monitors", item_size(down), item_size(down)),),
    ]
    assert [i.function for i in m.invocations] == ["incidents"]
    assert m.invocations[0].records == 2
    assert not m.errors


def test_a_read_pays_for_whole_items_whatever_it_projects(aws, metered):
    m, dynamodb, _ = metered
    table = f"{aws.table_prefix}monitors"
    item = _monitor(schedule_key={"S": "60:7"}, url={"S": "https://shop.example/" + "x" * 5000})
    dynamodb.put_item(TableName=table, Item=item)  # the bench's own: not counted
    key = {k: item[k] for k in ("team_id", "monitor_id")}

    def work() -> None:
        dynamodb.batch_get_item(RequestItems={table: {"Keys": [key], "ProjectionExpression": "monitor_id"}})
        dynamodb.query(
            TableName=table,
            IndexName="schedule-index",
            KeyConditionExpression="schedule_key = :k",
            ExpressionAttributeValues={":k": {"S": "60:7"}},
            ProjectionExpression="team_id, monitor_id",
        )

    _as(m, "scheduler", work)
    size = item_size(item)
    assert size > 4096
    assert not m.errors, m.errors
    assert [c.reads for c in m.calls] == [
        (Read("monitors", None, size, consistent=False),),
        (Read("monitors", "schedule-index", size, consistent=False),),
    ]
    assert [r.units for c in m.calls for r in c.reads] == [1.0, 1.0]  # 2 started 4 KB, halved
    assert m.left_out == {"the bench's own requests": 1}


def test_the_schedulers_batch_to_another_regions_queue_is_payload_and_cross_region_bytes(aws, metered):
    m, _, sqs = metered
    url = sqs.get_queue_url(QueueName=f"{aws.table_prefix}checks-eu-west-1")["QueueUrl"]
    bodies = ["x" * 70_000, "y" * 1000]
    _as(m, "scheduler", lambda: sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": b} for n, b in enumerate(bodies)]
    ))  # fmt: skip
    [call] = m.calls
    assert (call.service, call.operation, call.resource, call.payload_bytes) == (
        "sqs",
        "SendMessageBatch",
        "checks-*",
        71_000,
    )
    assert cost.sqs_units(call.payload_bytes) == 2
    assert call.cross_region_bytes == call.request_bytes + call.response_bytes > 71_000


def test_a_batch_is_sized_item_by_item_from_what_it_put_deleted_and_read(aws, metered):
    m, dynamodb, _ = metered
    table = f"{aws.table_prefix}monitors"
    old = _monitor(monitor_id={"S": "mon_old"}, schedule_key={"S": "60:1"})
    dynamodb.put_item(TableName=table, Item=old)  # the bench's own: not counted
    new = [_monitor(monitor_id={"S": f"mon_{n}"}, url={"S": "x" * 1500 * n}) for n in (1, 2)]
    keys = [{k: i[k] for k in ("team_id", "monitor_id")} for i in (old, *new)]

    def work() -> None:
        requests = [{"PutRequest": {"Item": i}} for i in new] + [{"DeleteRequest": {"Key": keys[0]}}]
        dynamodb.batch_write_item(RequestItems={table: requests})
        dynamodb.batch_get_item(RequestItems={table: {"Keys": keys}})  # the deleted one is read for nothing

    _as(m, "rollups", work)
    batch_write, batch_get = m.calls
    sizes = [item_size(i) for i in new]
    assert batch_write.writes == (
        Write("monitors", 0, sizes[0], indexes=(("monitor-index", item_size(keys[1])),)),
        Write("monitors", 0, sizes[1], indexes=(("monitor-index", item_size(keys[2])),)),
        Write(
            "monitors",
            item_size(old),
            0,
            indexes=(("monitor-index", item_size(keys[0])), ("schedule-index", item_size(old))),
        ),
    )
    assert [w.units for w in batch_write.writes] == [2, 3, 1]  # 1.5 and 3 KB, then a small delete
    assert sorted(r.size for r in batch_get.reads) == sorted([0, *sizes])
    assert [r.units for r in batch_get.reads] == [0.5, 0.5, 0.5]
    assert not m.errors


def test_a_functions_log_lines_and_prints_are_counted_and_nothing_else(metered, capsys):
    from chalicelib.observability import logger

    m, _, _ = metered

    def work() -> None:
        logger.info("check batch", extra={"region": "eu-west-1"})
        print('{"_aws":{"CloudWatchMetrics":[]}}')  # what a metrics flush prints

    with m.capturing_logs(logger, "INFO"):
        _as(m, "checker-eu-west-1", work)
        logger.info("the bench's own line")
        print("the bench's own print")
    line = m.log_bytes["checker-eu-west-1"]
    assert line > len('{"_aws":{"CloudWatchMetrics":[]}}\n') + len("check batch")
    assert set(m.log_bytes) == {"checker-eu-west-1"}
    out = capsys.readouterr().out
    assert "the bench's own print" in out
    assert "check batch" not in out  # counted, not shown


def test_a_functions_warnings_are_kept_in_the_window_and_outside_it_but_only_billed_inside(metered):
    """A failure after the metered window (the outage's ticks) is not a cost, but it is what explains a late
    minute: it is kept apart, never lost."""
    from chalicelib.observability import logger

    m, _, _ = metered

    def fail() -> None:
        logger.warning("message failed", extra={"region": "eu-west-1"})

    with m.capturing_logs(logger, "INFO"):
        _as(m, "checker-eu-west-1", fail)
        m.stop()
        _as(m, "checker-eu-west-1", fail)
        _as(m, "checker-eu-west-1", fail)

    assert m.problems == {("checker-eu-west-1", "WARNING", "message failed"): 1}
    assert m.unmetered_problems == {("checker-eu-west-1", "WARNING", "message failed"): 2}
    assert set(m.log_bytes) == {"checker-eu-west-1"}
    billed = m.log_bytes["checker-eu-west-1"]
    assert 0 < billed < 2 * len("message failed") + 400  # one line's bytes, not three
