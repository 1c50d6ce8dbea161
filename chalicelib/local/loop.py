"""The local event loop: every handler Lambda would run, fed with the events Lambda would send.

Three kinds of source, each polled by its own daemon thread:

* a schedule (EventBridge ``rate(N minutes)``) fires at each N-minute boundary of
  the real clock with a ``Scheduled Event``;
* an SQS queue is long-polled; each batch becomes an SQS event, processed
  messages are deleted and a partial batch response (``batchItemFailures``)
  leaves the failed ones for redelivery after their visibility timeout;
* a DynamoDB stream is read shard by shard; each batch becomes a DynamoDB stream
  event, and a failure retries from the first failed record (the checkpoint
  Lambda keeps with ``ReportBatchItemFailures``).

A handler that raises is logged and retried the way Lambda would; it never
stops the loop.  :meth:`EventLoop.run_tick_now` runs every schedule at once
(``POST /dev/tick``) and :meth:`EventLoop.drain` lets a test wait until all
work is done.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalicelib.aws.clients import client
from chalicelib.aws.filters import STREAM_FILTERS as FILTERS
from chalicelib.aws.filters import wanted as wanted_record
from chalicelib.aws.lambda_events import arn_region, stream_record
from chalicelib.observability import logger
from chalicelib.settings import Settings

Handler = Callable[[dict[str, Any], Any], Any]

ACCOUNT_ID = "123456789012"  # moto's account; only the schedule rule ARNs use it (queues and streams name their own)
SQS_WAIT_SECONDS = 1  # a short long-poll keeps stop() prompt
SQS_MAX_MESSAGES = 10  # ReceiveMessage's limit per call
STREAM_IDLE_SECONDS = 0.25  # Lambda polls a shard about four times a second
STREAM_MAX_RECORDS = 1000  # GetRecords' limit per call
ERROR_BACKOFF_MAX_SECONDS = 30.0
LAMBDA_TIMEOUT_MS = 60_000
QUEUE_DEPTHS = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


@dataclass
class Outcome:
    """One handler invocation: its result, or the error it raised."""

    name: str
    ok: bool
    result: Any = None
    error: str | None = None


# ---------------------------------------------------------------- Lambda-shaped events


def lambda_context(name: str, region: str, timeout_ms: int = LAMBDA_TIMEOUT_MS) -> Any:
    from chalice.local import LambdaContext

    context = LambdaContext(function_name=f"vigil-local-{name}", memory_size=512, max_runtime_ms=timeout_ms)
    context.invoked_function_arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{context.function_name}"
    return context


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduled_event(name: str, region: str, at: float, *, force: bool = False) -> dict[str, Any]:
    """EventBridge's ``Scheduled Event``; ``detail.force`` marks a tick asked for by hand."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": _iso(at),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{ACCOUNT_ID}:rule/vigil-local-{name}"],
        "detail": {"force": True} if force else {},
    }


def _sqs_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """ReceiveMessage's ``StringValue`` style → the camelCase style of Lambda's SQS event."""
    out: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": value["DataType"]}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    return out


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {k: _sqs_attribute(v) for k, v in message.get("MessageAttributes", {}).items()},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": arn_region(queue_arn),
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def failed_items(result: Any, identifiers: list[str]) -> list[str]:
    """The items a partial batch response names as failed.

    A response naming an item outside the batch, or an entry without an
    ``itemIdentifier``, fails the whole batch, as it does in Lambda.
    """
    if not isinstance(result, dict) or not result.get("batchItemFailures"):
        return []
    named = [f.get("itemIdentifier") if isinstance(f, dict) else None for f in result["batchItemFailures"]]
    if any(item not in identifiers for item in named):
        return list(identifiers)
    return [str(item) for item in named]


def next_fire(now: float, period_seconds: float) -> float:
    """The next boundary of the period on the real clock (every minute: at :00)."""
    return (now // period_seconds + 1) * period_seconds


# ---------------------------------------------------------------- sources


@dataclass
class ScheduleSource:
    name: str
    period_seconds: float
    handler: Handler
    next_at: float | None = None

    def step(self, loop: EventLoop) -> float:
        if not loop.wall_clock:
            return 1.0
        now = time.time()
        if self.next_at is None:
            self.next_at = next_fire(now, self.period_seconds)
        if now < self.next_at:
            return self.next_at - now
        fired_at, self.next_at = self.next_at, next_fire(now, self.period_seconds)
        loop.invoke(self.name, self.handler, scheduled_event(self.name, loop.region, fired_at))
        return 0.0


@dataclass
class QueueSource:
    """An SQS event source.  With ``concurrency`` above 1 it is Lambda's scaling poller: it hands each batch to an
    invocation of its own and goes on polling while up to ``concurrency`` run (the deployed mapping's
    ``MaximumConcurrency``), so a message never waits for another's invocation to end."""

    name: str
    queue_url: str
    handler: Handler
    batch_size: int = 1
    timeout_ms: int = LAMBDA_TIMEOUT_MS
    queue_arn: str | None = None
    concurrency: int = 1
    slots: threading.BoundedSemaphore | None = None
    invocations: list[threading.Thread] = field(default_factory=list)  # those handed a thread of their own

    def step(self, loop: EventLoop) -> float:
        sqs = client("sqs")
        if self.queue_arn is None:
            attributes = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
            self.queue_arn = str(attributes["Attributes"]["QueueArn"])
        if self.concurrency > 1:
            if self.slots is None:
                self.slots = threading.BoundedSemaphore(self.concurrency)
            if not self.slots.acquire(timeout=SQS_WAIT_SECONDS):
                return 0.0  # every invocation busy: poll again when one ends
            try:
                messages = self._receive(sqs)
            except BaseException:
                self.slots.release()
                raise
            if not messages:
                self.slots.release()
                return 0.0
            arn = self.queue_arn
            thread = threading.Thread(
                target=self._handle_then_release, args=(loop, messages, arn), name=f"vigil-{self.name}", daemon=True
            )
            self.invocations = [t for t in self.invocations if t.is_alive()] + [thread]
            try:
                thread.start()
            except BaseException:
                self.slots.release()
                raise
            return 0.0
        messages = self._receive(sqs)
        if messages:
            self._handle(loop, messages, self.queue_arn)
        return 0.0

    def join(self, deadline: float) -> list[str]:
        """Wait (until ``deadline``, monotonic) for the invocations it started; the names of those still running."""
        for thread in self.invocations:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in self.invocations if t.is_alive()]

    def _handle_then_release(self, loop: EventLoop, messages: list[dict[str, Any]], queue_arn: str) -> None:
        try:
            self._handle(loop, messages, queue_arn)
        except Exception:  # noqa: BLE001 - the loop's own thread would log and go on; so does this one
            logger.exception("event source failed", extra={"source": self.name})
        finally:
            assert self.slots is not None
            self.slots.release()

    def _receive(self, sqs: Any) -> list[dict[str, Any]]:
        return list(
            sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(self.batch_size, SQS_MAX_MESSAGES),
                WaitTimeSeconds=SQS_WAIT_SECONDS,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
        )

    def _handle(self, loop: EventLoop, messages: list[dict[str, Any]], queue_arn: str) -> None:
        event = {"Records": [sqs_record(m, queue_arn) for m in messages]}
        outcome = loop.invoke(self.name, self.handler, event, timeout_ms=self.timeout_ms)
        ids = [m["MessageId"] for m in messages]
        # A handler that raised fails the whole batch: every message comes back after its visibility timeout.
        failed = set(ids) if not outcome.ok else set(failed_items(outcome.result, ids))
        self._delete([m for m in messages if m["MessageId"] not in failed])

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), SQS_MAX_MESSAGES):
            chunk = messages[start : start + SQS_MAX_MESSAGES]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            response = client("sqs").delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            if response.get("Failed"):
                logger.warning("messages not deleted", extra={"source": self.name, "failed": len(response["Failed"])})

    def is_empty(self) -> bool:
        """No message waiting, in flight (being handled, or failed and awaiting redelivery) or delayed."""
        found = client("sqs").get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=QUEUE_DEPTHS)["Attributes"]
        return all(int(found.get(n, "0")) == 0 for n in QUEUE_DEPTHS)


@dataclass
class Shard:
    shard_id: str
    parent_id: str | None
    iterator: str | None
    records: list[dict[str, Any]] = field(default_factory=list)
    failures: int = 0
    retry_at: float = 0.0
    empty_at: float = float("-inf")  # when the last read that found nothing new started (monotonic)


@dataclass
class StreamSource:
    name: str
    table_name: str
    handler: Handler
    batch_size: int = 100
    starting_position: str = "LATEST"
    stream_arn: str | None = None
    # Lambda's filter (the event source mapping's FilterCriteria): records it does not pass never invoke the handler.
    wanted: Callable[[dict[str, Any]], bool] | None = None
    shards: dict[str, Shard] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    discover: bool = True

    def step(self, loop: EventLoop) -> float:
        if self.discover:
            self._discover()
        worked = False
        for shard in list(self.shards.values()):
            if shard.parent_id in self.shards:
                continue  # a child shard waits until its parent is read to the end, as in Lambda
            worked = self._step_shard(loop, shard) or worked
        return 0.0 if worked else STREAM_IDLE_SECONDS

    def _discover(self) -> None:
        """Find the stream and start reading every shard not seen yet.

        The first shards start at the configured position; shards that appear
        later (a split, a closed parent's children) start at their beginning.
        """
        first = self.stream_arn is None
        if first:
            table = client("dynamodb").describe_table(TableName=self.table_name)["Table"]
            if "LatestStreamArn" not in table:
                raise LookupError(f"table {self.table_name} has no stream (StreamSpecification)")
            self.stream_arn = str(table["LatestStreamArn"])
        streams = client("dynamodbstreams")
        for shard in _list_shards(streams, str(self.stream_arn)):
            shard_id = shard["ShardId"]
            if shard_id in self.shards or shard_id in self.finished:
                continue
            position = self.starting_position if first else "TRIM_HORIZON"
            iterator = streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType=position
            )["ShardIterator"]
            self.shards[shard_id] = Shard(shard_id, shard.get("ParentShardId"), iterator)
        self.discover = False

    def _step_shard(self, loop: EventLoop, shard: Shard) -> bool:
        if time.monotonic() < shard.retry_at:
            return False
        if not shard.records:
            read = self._fetch(shard)
            if not shard.records:  # nothing, or nothing the filter passes: no invocation, as in Lambda
                return read
        batch = shard.records[: self.batch_size]
        arn = str(self.stream_arn)
        outcome = loop.invoke(self.name, self.handler, {"Records": [stream_record(r, arn) for r in batch]})
        self._settle(loop, shard, batch, outcome)
        return True

    def _fetch(self, shard: Shard) -> bool:
        if shard.iterator is None:  # closed and read to the end: its children take over
            del self.shards[shard.shard_id]
            self.finished.add(shard.shard_id)
            self.discover = True
            return False
        started = time.monotonic()
        page = client("dynamodbstreams").get_records(
            ShardIterator=shard.iterator, Limit=min(self.batch_size, STREAM_MAX_RECORDS)
        )
        shard.iterator = page.get("NextShardIterator")
        read = list(page.get("Records", []))
        if not read:
            shard.empty_at = started
        arn = str(self.stream_arn)
        shard.records = [r for r in read if self.wanted is None or self.wanted(stream_record(r, arn))]
        return bool(read)

    def _settle(self, loop: EventLoop, shard: Shard, batch: list[dict[str, Any]], outcome: Outcome) -> None:
        failed_at = _first_failure(batch, outcome)
        if failed_at is None:
            del shard.records[: len(batch)]
            shard.failures = 0
            return
        shard.failures += 1
        if shard.failures > loop.stream_max_retries:
            logger.error(
                "stream batch dropped after retries",
                extra={"source": self.name, "records": len(batch) - failed_at, "retries": loop.stream_max_retries},
            )
            del shard.records[: len(batch)]
            shard.failures = 0
            return
        del shard.records[:failed_at]  # the records before the first failure are done: checkpoint past them
        shard.retry_at = time.monotonic() + loop.retry_seconds

    def caught_up_since(self, mark: float) -> bool:
        shards = list(self.shards.values())
        return bool(shards) and all(not s.records and s.empty_at >= mark for s in shards)


def _first_failure(batch: list[dict[str, Any]], outcome: Outcome) -> int | None:
    """Where to retry from: the first failed record's index, or None when the batch succeeded."""
    if not outcome.ok:
        return 0
    sequence_numbers = [str(r["dynamodb"]["SequenceNumber"]) for r in batch]
    failed = failed_items(outcome.result, sequence_numbers)
    return min(sequence_numbers.index(f) for f in failed) if failed else None


def _list_shards(streams: Any, stream_arn: str) -> list[dict[str, Any]]:
    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamArn": stream_arn}
    while True:
        description = streams.describe_stream(**kwargs)["StreamDescription"]
        shards.extend(description.get("Shards", []))
        if not description.get("LastEvaluatedShardId"):
            return shards
        kwargs["ExclusiveStartShardId"] = description["LastEvaluatedShardId"]


# ---------------------------------------------------------------- Chalice apps


def rate_minutes(expression: Any) -> int | None:
    """``rate(N minutes|hours|days)`` (string or ``chalice.Rate``) in minutes; None for anything else."""
    text = expression if isinstance(expression, str) else expression.to_string()
    found = re.fullmatch(r"rate\((\d+) (minute|hour|day)s?\)", text.strip())
    if not found:
        return None
    return int(found.group(1)) * {"minute": 1, "hour": 60, "day": 1440}[found.group(2)]


def _candidates(name: str, prefix: str) -> list[str]:
    """A name in an app's decorator may be physical (``vigil-local-x``) or logical (``x``)."""
    return [name] if name.startswith(prefix) else [prefix + name, name]


def resolve_queue_url(queue: str | None, queue_arn: str | None, settings: Settings) -> str:
    name = queue or str(queue_arn).rsplit(":", 1)[-1]
    sqs = client("sqs")
    for candidate in _candidates(name, settings.table_prefix):
        try:
            return str(sqs.get_queue_url(QueueName=candidate)["QueueUrl"])
        except sqs.exceptions.QueueDoesNotExist:
            continue
    raise LookupError(f"no queue named {name!r} (nor with the prefix {settings.table_prefix!r})")


def resolve_table(stream_arn: str, settings: Settings) -> str:
    """The table of a stream ARN (``arn:aws:dynamodb:r:a:table/NAME/stream/LABEL``) in this AWS."""
    name = stream_arn.split(":", 5)[-1].split("/")[1]
    dynamodb = client("dynamodb")
    for candidate in _candidates(name, settings.table_prefix):
        try:
            dynamodb.describe_table(TableName=candidate)
            return candidate
        except dynamodb.exceptions.ResourceNotFoundException:
            continue
    raise LookupError(f"no table named {name!r} (nor with the prefix {settings.table_prefix!r})")


# ---------------------------------------------------------------- the loop


class EventLoop:
    """Drives scheduled, SQS and DynamoDB stream handlers, one daemon thread per source."""

    def __init__(
        self, region: str, *, retry_seconds: float = 1.0, stream_max_retries: int = 3, wall_clock: bool = True
    ) -> None:
        """``wall_clock=False``: schedules run only when asked (``POST /dev/tick``), never on the minute by
        themselves — for a test that must not see a second tick when it happens to cross a minute."""
        self.region = region
        self.wall_clock = wall_clock
        self.retry_seconds = retry_seconds
        self.stream_max_retries = stream_max_retries
        self.schedules: list[ScheduleSource] = []
        self.queues: list[QueueSource] = []
        self.streams: list[StreamSource] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._started = False
        self._lock = threading.Lock()
        self._runs = 0  # handler invocations finished
        self._busy = 0  # handler invocations in progress

    # -- registration

    def add_schedule(self, name: str, minutes: float, handler: Handler) -> None:
        self._add(ScheduleSource(name, minutes * 60, handler), self.schedules)

    def add_sqs(
        self,
        name: str,
        queue_url: str,
        handler: Handler,
        batch_size: int = 1,
        timeout_ms: int = LAMBDA_TIMEOUT_MS,
        concurrency: int = 1,
    ) -> None:
        """``timeout_ms``: the deployed function's timeout, which the handler reads from its context;
        ``concurrency``: invocations at once (the mapping's ``MaximumConcurrency``; 1: one batch after another)."""
        self._add(QueueSource(name, queue_url, handler, batch_size, timeout_ms, concurrency=concurrency), self.queues)

    def add_stream(
        self,
        name: str,
        table_name: str,
        handler: Handler,
        batch_size: int = 100,
        starting_position: str = "LATEST",
        wanted: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        source = StreamSource(name, table_name, handler, batch_size, starting_position, wanted=wanted)
        self._add(source, self.streams)

    def add_chalice_app(
        self, app: Any, settings: Settings, new_tables: Iterable[str] = (), only: Iterable[str] | None = None
    ) -> None:
        """Register every scheduled, SQS and DynamoDB stream handler of a Chalice app (or ``only`` those named).

        Streams of tables created by this run are read from their beginning, so
        nothing written before the loop's first read is missed.
        """
        wanted = set(only) if only is not None else None
        from chalice.app import DynamoDBEventConfig, ScheduledEventConfig, SQSEventConfig

        fresh = set(new_tables)
        for config in app.event_sources:
            if wanted is not None and config.name not in wanted:
                continue
            handler = app.handler_map[config.name]
            if isinstance(config, ScheduledEventConfig):
                self._add_chalice_schedule(config.name, config.schedule_expression, handler)
            elif isinstance(config, SQSEventConfig):
                url = resolve_queue_url(config.queue, config.queue_arn, settings)
                self.add_sqs(config.name, url, handler, config.batch_size)
            elif isinstance(config, DynamoDBEventConfig):
                table = resolve_table(config.stream_arn, settings)
                position = "TRIM_HORIZON" if table in fresh else config.starting_position
                passes = None
                if config.name in FILTERS:  # the deployed mapping's FilterCriteria (infra/build.py)

                    def passes(record: dict[str, Any], name: str = config.name) -> bool:
                        return wanted_record(name, record)

                self.add_stream(config.name, table, handler, config.batch_size, position, wanted=passes)
            else:
                logger.warning("no local driver for event source", extra={"handler": config.name})

    def _add_chalice_schedule(self, name: str, expression: Any, handler: Handler) -> None:
        minutes = rate_minutes(expression)
        if minutes is None:
            logger.warning("only rate() schedules run locally", extra={"handler": name})
            return
        self.add_schedule(name, minutes, handler)

    def _add(self, source: Any, sources: list[Any]) -> None:
        sources.append(source)
        if self._started:
            self._start_thread(source)

    @property
    def sources(self) -> list[Any]:
        return [*self.schedules, *self.queues, *self.streams]

    # -- running

    def start(self) -> None:
        self._started = True
        for source in self.sources:
            self._start_thread(source)

    def stop(self, timeout: float = 3.0) -> None:
        """Stop polling, and wait up to ``timeout`` for the pollers and the invocations they started."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        running = [name for q in self.queues for name in q.join(deadline)]
        if running:
            logger.warning("invocations still running after stop", extra={"running": running})

    def _start_thread(self, source: Any) -> None:
        thread = threading.Thread(target=self._run, args=(source,), name=f"vigil-loop-{source.name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _run(self, source: Any) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                pause = source.step(self)
                backoff = 0.0
            except Exception:  # noqa: BLE001 - one failing source must never stop the loop
                backoff = min(max(backoff * 2, 1.0), ERROR_BACKOFF_MAX_SECONDS)
                logger.exception("event source failed", extra={"source": source.name, "retry_in_s": backoff})
                pause = backoff
            if pause > 0:
                self._stop.wait(pause)

    def invoke(
        self, name: str, handler: Handler, event: dict[str, Any], *, timeout_ms: int = LAMBDA_TIMEOUT_MS
    ) -> Outcome:
        """Call one handler as Lambda would; an exception is logged and returned, never raised."""
        with self._lock:
            self._busy += 1
        started = time.perf_counter()
        try:
            outcome = Outcome(name, ok=True, result=handler(event, lambda_context(name, self.region, timeout_ms)))
        except Exception as exc:  # noqa: BLE001 - a handler's failure is the loop's normal business
            logger.exception("handler failed", extra={"handler": name})
            outcome = Outcome(name, ok=False, error=type(exc).__name__)
        finally:
            with self._lock:
                self._busy -= 1
                self._runs += 1
        facts: dict[str, Any] = {"handler": name, "ok": outcome.ok}
        if "Records" in event:
            facts["records"] = len(event["Records"])
        facts["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
        logger.info("handler ran", extra=facts)
        return outcome

    def run_tick_now(self) -> list[Outcome]:
        """Run every scheduled handler now, with ``detail.force`` set (``POST /dev/tick``)."""
        now = time.time()
        return [
            self.invoke(s.name, s.handler, scheduled_event(s.name, self.region, now, force=True))
            for s in self.schedules
        ]

    # -- tests

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queue is empty and every stream is read to its end, with no handler running.

        Handlers feed each other (a queue handler writes a table whose stream
        feeds another), so it waits for a quiet period in which no handler ran.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs, mark = self._runs, time.monotonic()
            if self._settled_since(mark, deadline) and self._runs == runs and self._busy == 0:
                return True
        return False

    def _settled_since(self, mark: float, deadline: float) -> bool:
        while time.monotonic() < deadline:
            streams_done = all(s.caught_up_since(mark) for s in self.streams)
            if streams_done and all(q.is_empty() for q in self.queues):
                return True
            time.sleep(0.05)
        return False
