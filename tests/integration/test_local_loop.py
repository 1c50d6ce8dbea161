"""The local event loop drives handlers with the events Lambda sends, against moto."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chalice import Chalice, Cron, Rate

from chalicelib.aws.clients import client
from chalicelib.local.loop import EventLoop, rate_minutes
from chalicelib.settings import Settings

STREAM_TABLE = "test-loop-events"


def eventually(predicate: Callable[[], Any], timeout: float = 4.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout} s")


class Recorder:
    """A handler that keeps every event; ``fail`` decides what it answers for each one."""

    def __init__(self, fail: Callable[[dict[str, Any], int], Any] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        with self._lock:
            self.events.append(event)
            self.contexts.append(context)
            calls = len(self.events)
        return self.fail(event, calls) if self.fail else None

    @property
    def records(self) -> list[dict[str, Any]]:
        return [r for e in self.events for r in e["Records"]]


@pytest.fixture
def loop(aws: Settings) -> Iterator[EventLoop]:
    # tests/conftest.py sets AWS_ACCOUNT_ID_ENDPOINT_MODE=disabled: moto's mock knows only the classic streams endpoint.
    event_loop = EventLoop(aws.aws_region, retry_seconds=0.1)
    yield event_loop
    event_loop.stop()


def make_queue(name: str, visibility_timeout: int = 1) -> str:
    attributes = {"VisibilityTimeout": str(visibility_timeout)}
    return str(client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


def make_stream_table(name: str = STREAM_TABLE) -> str:
    client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return name


def send(queue_url: str, *bodies: str) -> None:
    for body in bodies:
        client("sqs").send_message(QueueUrl=queue_url, MessageBody=body)


def queue_depth(queue_url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    found = client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(found[n]) for n in names)


def test_an_sqs_handler_gets_a_lambda_event_and_its_messages_are_deleted(loop):
    url = make_queue("test-loop-jobs")
    client("sqs").send_message(
        QueueUrl=url,
        MessageBody=json.dumps({"jobs": [1, 2]}),
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "check"}},
    )
    handler = Recorder()
    loop.add_sqs("worker", url, handler, batch_size=10)
    loop.start()

    assert loop.drain(4)
    [record] = handler.records
    assert set(record) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfMessageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert json.loads(record["body"]) == {"jobs": [1, 2]}
    assert record["eventSource"] == "aws:sqs"
    assert re.fullmatch(r"arn:aws:sqs:us-east-1:\d{12}:test-loop-jobs", record["eventSourceARN"])
    assert record["awsRegion"] == "us-east-1"
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert "SentTimestamp" in record["attributes"]
    assert record["messageAttributes"] == {
        "kind": {"stringValue": "check", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
    }
    assert handler.contexts[0].function_name == "vigil-local-worker"
    assert handler.contexts[0].get_remaining_time_in_millis() > 0
    assert queue_depth(url) == 0


def test_a_batch_item_failure_is_redelivered_and_the_others_are_not(loop):
    url = make_queue("test-loop-partial")
    send(url, "a", "b", "c")

    def fail_b_once(event: dict[str, Any], calls: int) -> dict[str, Any]:
        failed = [r["messageId"] for r in event["Records"] if r["body"] == "b" and calls == 1]
        return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}

    handler = Recorder(fail_b_once)
    loop.add_sqs("worker", url, handler, batch_size=10)
    loop.start()

    assert loop.drain(5)
    bodies = [r["body"] for r in handler.records]
    assert sorted(bodies) == ["a", "b", "b", "c"]
    receive_counts = [(r["body"], r["attributes"]["ApproximateReceiveCount"]) for r in handler.records]
    assert ("b", "2") in receive_counts  # the same message again, not a copy
    assert queue_depth(url) == 0


@pytest.mark.parametrize(("concurrency", "waits"), [(4, False), (1, True)])
def test_a_message_waits_for_another_invocation_only_without_concurrency(loop, concurrency, waits):
    """Lambda runs a queue's batches side by side (the mapping's MaximumConcurrency): a check message arriving while
    another holds its minute starts at once.  One at a time, it waits for the other's end."""
    url = make_queue("test-loop-concurrent", visibility_timeout=30)
    started: dict[str, float] = {}
    release = threading.Event()

    def hold_the_first(event: dict[str, Any], context: Any) -> None:
        body = event["Records"][0]["body"]
        started[body] = time.monotonic()
        if body == "first":
            release.wait(3)

    loop.add_sqs("worker", url, hold_the_first, batch_size=1, concurrency=concurrency)
    loop.start()
    send(url, "first")
    eventually(lambda: "first" in started)
    send(url, "second")
    time.sleep(1.5)
    assert ("second" not in started) is waits
    release.set()
    assert loop.drain(8)
    assert set(started) == {"first", "second"}
    assert queue_depth(url) == 0


def test_a_handler_that_raises_does_not_stop_the_loop(loop):
    url = make_queue("test-loop-raises")
    send(url, "first")

    def raise_once(event: dict[str, Any], calls: int) -> None:
        if calls == 1:
            raise RuntimeError("the handler broke")

    handler = Recorder(raise_once)
    loop.add_sqs("worker", url, handler)
    loop.start()
    eventually(lambda: handler.events)
    send(url, "second")

    assert loop.drain(5)
    assert [r["body"] for r in handler.records].count("first") == 2  # the whole batch came back
    assert "second" in [r["body"] for r in handler.records]
    assert queue_depth(url) == 0


def test_a_stream_handler_gets_insert_modify_and_remove_records(loop):
    table = make_stream_table()
    handler = Recorder()
    loop.add_stream("incidents", table, handler, batch_size=10, starting_position="TRIM_HORIZON")
    loop.start()
    dynamodb = client("dynamodb")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "m1"}, "state": {"S": "up"}})
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "m1"}, "state": {"S": "down"}})
    dynamodb.delete_item(TableName=table, Key={"pk": {"S": "m1"}})

    assert loop.drain(4)
    records = handler.records
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    insert, modify, remove = records
    stream_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    for record in records:
        assert record["eventSource"] == "aws:dynamodb"
        assert record["eventSourceARN"] == stream_arn
        assert record["awsRegion"] == "us-east-1"
        assert record["eventID"]
        assert record["eventVersion"]
        change = record["dynamodb"]
        assert change["Keys"] == {"pk": {"S": "m1"}}
        assert change["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert isinstance(change["ApproximateCreationDateTime"], int)
        assert isinstance(change["SizeBytes"], int)
        assert change["SequenceNumber"].isdigit()
    assert insert["dynamodb"]["NewImage"] == {"pk": {"S": "m1"}, "state": {"S": "up"}}
    assert "OldImage" not in insert["dynamodb"]
    assert modify["dynamodb"]["OldImage"]["state"] == {"S": "up"}
    assert modify["dynamodb"]["NewImage"]["state"] == {"S": "down"}
    assert remove["dynamodb"]["OldImage"]["state"] == {"S": "down"}
    assert "NewImage" not in remove["dynamodb"]
    json.dumps(handler.events)  # exactly JSON, as Lambda delivers it


def test_a_stream_batch_item_failure_retries_from_the_failed_record(loop):
    table = make_stream_table()
    dynamodb = client("dynamodb")
    for key in ("a", "b", "c"):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": key}})

    def fail_b_once(event: dict[str, Any], calls: int) -> dict[str, Any]:
        failed = [r["dynamodb"]["SequenceNumber"] for r in event["Records"] if r["dynamodb"]["Keys"]["pk"]["S"] == "b"]
        return {"batchItemFailures": [{"itemIdentifier": s} for s in failed[: 1 if calls == 1 else 0]]}

    handler = Recorder(fail_b_once)
    loop.add_stream("incidents", table, handler, batch_size=10, starting_position="TRIM_HORIZON")
    loop.start()

    assert loop.drain(4)
    batches = [[r["dynamodb"]["Keys"]["pk"]["S"] for r in e["Records"]] for e in handler.events]
    assert batches == [["a", "b", "c"], ["b", "c"]]


def test_a_stream_filter_drops_records_before_the_handler_and_never_invokes_it_for_nothing(loop):
    """As a mapping's FilterCriteria: records the filter does not pass are consumed unseen, and a batch of them
    alone invokes nothing (the bench counts the local loop's invocations as Lambda's)."""
    table = make_stream_table()
    dynamodb = client("dynamodb")
    for key in ("a", "b", "c", "d"):
        item = {"pk": {"S": key}, **({"marked": {"BOOL": True}} if key == "c" else {})}
        dynamodb.put_item(TableName=table, Item=item)
    handler = Recorder()
    loop.add_stream(
        "incidents",
        table,
        handler,
        batch_size=10,
        starting_position="TRIM_HORIZON",
        wanted=lambda record: record["dynamodb"].get("NewImage", {}).get("marked") == {"BOOL": True},
    )
    loop.start()

    assert loop.drain(4)
    assert [[r["dynamodb"]["Keys"]["pk"]["S"] for r in e["Records"]] for e in handler.events] == [["c"]]
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "e"}})
    assert loop.drain(4)
    assert len(handler.events) == 1


def test_a_stream_read_from_latest_sees_only_new_records(loop):
    table = make_stream_table()
    dynamodb = client("dynamodb")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "old"}})
    handler = Recorder()
    loop.add_stream("incidents", table, handler)
    loop.start()
    eventually(lambda: loop.streams[0].shards)
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "new"}})

    assert loop.drain(4)
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in handler.records] == ["new"]


def test_run_tick_now_calls_every_scheduled_handler_with_force(loop):
    scheduler, broken = Recorder(), Recorder(lambda event, calls: 1 / 0)
    scheduler.fail = lambda event, calls: {"queued": 3}
    loop.add_schedule("scheduler", 1, scheduler)
    loop.add_schedule("broken", 1, broken)

    outcomes = loop.run_tick_now()

    assert [(o.name, o.ok, o.result, o.error) for o in outcomes] == [
        ("scheduler", True, {"queued": 3}, None),
        ("broken", False, None, "ZeroDivisionError"),
    ]
    [event] = scheduler.events
    assert event["detail"] == {"force": True}
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["region"] == "us-east-1"
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/vigil-local-scheduler"]
    assert event["time"].endswith("Z")


def test_a_schedule_fires_at_the_clock_boundary(loop):
    handler = Recorder()
    loop.add_schedule("every-second", 1 / 60, handler)  # rate(1 second): the minute logic, sixty times faster
    loop.start()

    [event] = eventually(lambda: handler.events, timeout=2.5)[:1]
    assert event["detail"] == {}
    assert event["version"] == "0"
    assert event["id"]
    assert event["time"].endswith("Z")


def test_without_the_wall_clock_a_schedule_fires_only_when_asked(aws):
    manual = EventLoop(aws.aws_region, retry_seconds=0.1, wall_clock=False)
    handler = Recorder()
    manual.add_schedule("every-second", 1 / 60, handler)
    manual.start()
    try:
        time.sleep(2.2)  # two boundaries of a one-second schedule pass
        assert handler.events == []
        manual.run_tick_now()
        assert [e["detail"] for e in handler.events] == [{"force": True}]
    finally:
        manual.stop()


def test_add_chalice_app_finds_schedule_sqs_and_stream_handlers(loop, aws):
    table = make_stream_table()
    seen: dict[str, list[Any]] = {"tick": [], "jobs": [], "changes": []}
    app = Chalice(app_name="loop-test")

    @app.schedule(Rate(1, unit=Rate.MINUTES))
    def tick(event):
        seen["tick"].append(event.detail)

    @app.schedule(Cron(0, 10, "*", "*", "?", "*"))
    def nightly(event):
        seen["tick"].append("cron")

    @app.on_sqs_message(queue="checks-us-east-1", batch_size=5)  # the logical name: the prefix is added
    def jobs(event):
        seen["jobs"].extend(r.body for r in event)

    @app.on_dynamodb_record(stream_arn="arn:aws:dynamodb:us-east-1:123456789012:table/loop-events/stream/x")
    def changes(event):
        seen["changes"].extend((r.event_name, r.new_image) for r in event)

    loop.add_chalice_app(app, aws, new_tables=[table])
    loop.start()
    url = client("sqs").get_queue_url(QueueName="test-checks-us-east-1")["QueueUrl"]
    send(url, "job-1")
    client("dynamodb").put_item(TableName=table, Item={"pk": {"S": "m1"}})
    outcomes = loop.run_tick_now()

    assert loop.drain(10)
    assert [s.name for s in loop.schedules] == ["tick"]  # cron schedules do not run locally
    assert [(q.name, q.batch_size) for q in loop.queues] == [("jobs", 5)]
    assert [(s.name, s.table_name, s.starting_position) for s in loop.streams] == [("changes", table, "TRIM_HORIZON")]
    assert [o.name for o in outcomes] == ["tick"]
    # a minute boundary may pass during the test: the clock's own tick ({}) may then be there too
    assert {"force": True} in seen["tick"]
    assert all(detail in ({"force": True}, {}) for detail in seen["tick"])
    assert seen["jobs"] == ["job-1"]
    assert seen["changes"] == [("INSERT", {"pk": {"S": "m1"}})]


def test_stop_ends_every_thread_promptly(loop):
    make_stream_table()
    loop.add_schedule("scheduler", 1, Recorder())
    loop.add_sqs("worker", make_queue("test-loop-stop"), Recorder())
    loop.add_stream("incidents", STREAM_TABLE, Recorder())
    loop.start()
    time.sleep(0.3)

    started = time.monotonic()
    loop.stop()

    assert time.monotonic() - started < 2.5
    assert not [t.name for t in threading.enumerate() if t.name.startswith("vigil-loop-")]


def test_rate_expressions_become_minutes():
    assert rate_minutes("rate(1 minute)") == 1
    assert rate_minutes("rate(5 minutes)") == 5
    assert rate_minutes(Rate(2, unit=Rate.HOURS)) == 120
    assert rate_minutes("cron(0 10 * * ? *)") is None


def test_stop_waits_for_the_invocations_it_started(loop):
    """stop() joins the poller threads only: an invocation handed to a thread of its own (concurrency > 1) goes on
    after stop() returned — after the test's moto is gone, or into the next test's — and then deletes its message
    through whatever AWS the process has by then."""
    url = make_queue("test-loop-stop", visibility_timeout=30)
    started, finished = threading.Event(), threading.Event()

    def slow(event: dict[str, Any], context: Any) -> None:
        started.set()
        time.sleep(1.5)
        finished.set()

    loop.add_sqs("worker", url, slow, batch_size=1, concurrency=4)
    loop.start()
    send(url, "one")
    assert started.wait(5)
    loop.stop(timeout=3.0)
    running = [t.name for t in threading.enumerate() if t.name == "vigil-worker"]
    assert finished.is_set()
    assert not running, f"still running after stop(): {running}"
