"""``python -m infra.redrive STAGE QUEUE`` (``make redrive STAGE=prod QUEUE=alerts``): put back to work what a
dead-letter queue of a deployed stage holds, once the fault that parked it is fixed (docs/runbook.md).

- ``alerts``, ``email-events``: each message goes back to its queue as it was (body and attributes), for the alert
  deliverer or the email feedback handler, then leaves the dead-letter queue.
- ``handler-failures``: what a function gave up on after its retries.
  - A stream batch (Lambda's record names the stream, the shard and the sequence numbers, not the records): its
    records are read again from the stream, which keeps them 24 hours, and the function is invoked with them as
    Lambda would.  The message leaves only when the function applied every one.
  - A scheduled invocation (the record holds its event): an aggregator pass or a status page refresh is invoked
    again with it.  A scheduler tick is not: its minute is past and the next tick planned the next; it is listed,
    and ``--discard`` drops such messages.
- ``checks`` (one region's, ``--region``): never redriven, since a check job is for one minute, and the monitors
  whose jobs broke the worker are listed.  ``--discard`` drops them.

``--dry-run`` lists what would happen and changes nothing.  The operator's AWS credentials are used; every call has
a timeout.  A message is handled one at a time: hidden from other readers while it is, then deleted (done), or kept
hidden until the run ends and shown again then, however the run ends short of being killed (then a kept message
shows again within 6 hours, the one being handled within 15 minutes: nothing is lost).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.aws.filters import wanted
from chalicelib.aws.lambda_events import stream_record
from chalicelib.checks.jobs import decode_message

# Queue names under the stage's TABLE_PREFIX (infra/build.py): the dead-letter queue and where its messages go back.
QUEUES = {
    "alerts": ("alerts-dlq", "alerts"),
    "email-events": ("email-events-dlq", "email-events"),
    "handler-failures": ("handler-failures-dlq", None),
}
REPLAYABLE = ("Aggregator", "StatusPagesRefresh")  # scheduled functions whose parked event is worth running again
STREAM_GONE = ("TrimmedDataAccessException", "ExpiredIteratorException", "ResourceNotFoundException")
CALLS = Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 3, "mode": "standard"})
# An invocation waits for the function (up to the aggregator's 300 s, plus Lambda's own overhead), and is never
# sent twice: a timed-out one may still be running.
INVOKE = Config(connect_timeout=5, read_timeout=330, retries={"total_max_attempts": 1})
HANDLING_S = 900  # how long a message is hidden while it is handled (longer than an invocation may take)
KEPT_S = 6 * 3600  # how long a kept one stays hidden if the run cannot show it again (SQS allows 12 h in all)
BATCH_RECORDS = 100  # the stream mappings' BatchSize: a replay invokes the function with batches no larger
PAYLOAD_BYTES = 5 * 1024 * 1024  # under Lambda's 6 MB for a synchronous invocation
# The stream handlers by logical name, and the filter their mapping applies (chalicelib/aws/filters.py).
STREAM_HANDLERS = {"Retake": "retake", "Incidents": "incidents", "Alerts": "alerts", "StatusPages": "status_pages"}


class NoSuchQueue(RuntimeError):
    """The stage has no such queue in that region."""


class FunctionFailed(RuntimeError):
    """The invoked function raised, or reported records it could not apply."""


@dataclass
class Report:
    moved: int = 0
    replayed: int = 0
    discarded: int = 0
    kept: list[str] = field(default_factory=list)  # why each message stayed
    more: bool = False  # --max was reached with messages left

    @property
    def lines(self) -> list[str]:
        counts = f"moved {self.moved}, replayed {self.replayed}, discarded {self.discarded}, kept {len(self.kept)}"
        more = ["  more messages are left: run it again (--max)"] if self.more else []
        return [counts, *(f"  kept: {why}" for why in self.kept), *more]

    def settle(self, inbox: Inbox, message: dict[str, Any], kept: Kept | None, *, discard: bool) -> None:
        """Done (None: deleted), dropped (``discard`` and nothing could run it again), or kept for another run."""
        if kept is None:
            inbox.done(message)
            self.replayed += 1
        elif discard and kept.discardable:
            inbox.done(message)
            self.discarded += 1
        else:
            inbox.keep(message)
            self.kept.append(f"{message['MessageId']}: {kept.why}")


@dataclass(frozen=True)
class Kept:
    """Why a parked message stays; ``discardable`` when nothing could ever run it again (``--discard`` drops it)."""

    why: str
    discardable: bool = False


class Invoker:
    """The deployed functions: which one an ARN is (its stack's logical id), and invoking it as its event source
    would, waiting for its answer (RequestResponse)."""

    def __init__(self, region: str) -> None:
        self.functions = boto3.client("lambda", region_name=region, config=INVOKE)
        self.tags = boto3.client("lambda", region_name=region, config=CALLS)

    def logical_id(self, function_arn: str) -> str:
        """CloudFormation tags every function it creates with its logical id; the name's guess otherwise."""
        unqualified = ":".join(function_arn.split(":")[:7])
        try:
            tags = self.tags.list_tags(Resource=unqualified).get("Tags", {})
        except (ClientError, BotoCoreError):
            tags = {}
        return str(tags.get("aws:cloudformation:logical-id") or guess_logical_id(function_arn))

    def __call__(self, function_arn: str, event: dict[str, Any]) -> Any:
        response = self.functions.invoke(FunctionName=function_arn, Payload=json.dumps(event).encode())
        payload = response["Payload"].read()
        if response.get("FunctionError"):
            raise FunctionFailed(f"{response['FunctionError']}: {payload[:500].decode(errors='replace')}")
        return json.loads(payload) if payload else None


def lambda_invoker(region: str) -> Invoker:
    return Invoker(region)


def guess_logical_id(function_arn: str) -> str:
    """``arn:…:function:vigil-prod-Aggregator-AbC12:$LATEST`` → ``Aggregator``: CloudFormation names a function
    ``<stack>-<logical id>-<suffix>``, and no logical id of ours has a dash."""
    name = function_arn.split(":")[6] if function_arn.count(":") >= 6 else function_arn
    parts = name.split("-")
    return parts[-2] if len(parts) >= 3 else name


class Inbox:
    """A dead-letter queue's messages, one at a time and each once a run: hidden while it is handled, deleted when
    done, and when kept (or when the run stops early, whatever stops it) shown again at the end of the run."""

    def __init__(self, sqs: Any, url: str, limit: int) -> None:
        self.sqs, self.url, self.limit = sqs, url, limit
        self.held: dict[str, str] = {}  # message id → receipt handle, of every message received and not deleted
        self.more = False  # the run stopped at its limit with messages left

    def __iter__(self) -> Iterator[dict[str, Any]]:
        seen = repeats = 0
        try:
            while True:
                batch = self.sqs.receive_message(
                    QueueUrl=self.url,
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=1,
                    VisibilityTimeout=HANDLING_S,
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
                if not batch:
                    return
                (message,) = batch
                if message["MessageId"] in self.held:  # kept earlier this run: hidden again until the end
                    self.held[message["MessageId"]] = message["ReceiptHandle"]
                    self._hide(message["ReceiptHandle"], KEPT_S)
                    repeats += 1
                    if repeats > 10 + 2 * len(self.held):  # only kept ones keep coming back: the rest is done
                        return
                    continue
                if seen >= self.limit:
                    self.held[message["MessageId"]] = message["ReceiptHandle"]
                    self.more = True
                    return
                seen += 1
                self.held[message["MessageId"]] = message["ReceiptHandle"]
                yield message
        finally:
            for handle in self.held.values():  # at once visible again, for the next run or the console
                with contextlib.suppress(ClientError, BotoCoreError):
                    self._hide(handle, 0)

    def _hide(self, handle: str, seconds: int) -> None:
        self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=handle, VisibilityTimeout=seconds)

    def done(self, message: dict[str, Any]) -> None:
        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        self.held.pop(message["MessageId"], None)

    def keep(self, message: dict[str, Any]) -> None:
        """Not this run: hidden until the run ends (then shown again), so it is not received twice."""
        self._hide(self.held[message["MessageId"]], KEPT_S)


def _attributes(message: dict[str, Any]) -> dict[str, Any]:
    keep = ("DataType", "StringValue", "BinaryValue")
    return {k: {f: v[f] for f in keep if f in v} for k, v in message.get("MessageAttributes", {}).items()}


def move_back(sqs: Any, dead: str, to: str, *, dry_run: bool, limit: int) -> Report:
    report = Report()
    inbox = Inbox(sqs, dead, limit)
    for message in inbox:
        if dry_run:
            inbox.keep(message)
            report.kept.append(f"{message['MessageId']}: would go back (dry run)")
            continue
        sent = {"QueueUrl": to, "MessageBody": message["Body"]}
        if message.get("MessageAttributes"):
            sent["MessageAttributes"] = _attributes(message)
        # At least once: were the delete to fail after the send, the next run sends it again; both consumers take a
        # message twice harmlessly (an attempt is claimed, a suppression is a put).
        sqs.send_message(**sent)
        inbox.done(message)
        report.moved += 1
    report.more = inbox.more
    return report


def stream_batch(streams: Any, info: dict[str, Any], handler: str | None) -> list[dict[str, Any]]:
    """The records of a parked stream batch, from its first sequence number to its last, as Lambda sends them, and
    only those its mapping's filter passes (``handler``'s; every record when it has none)."""
    first, last = int(info["startSequenceNumber"]), int(info["endSequenceNumber"])
    iterator = streams.get_shard_iterator(
        StreamArn=info["streamArn"],
        ShardId=info["shardId"],
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        SequenceNumber=info["startSequenceNumber"],
    )["ShardIterator"]
    records: list[dict[str, Any]] = []
    empty = 0
    while iterator and empty < 5:
        page = streams.get_records(ShardIterator=iterator, Limit=1000)
        iterator = page.get("NextShardIterator")
        empty = 0 if page["Records"] else empty + 1
        for record in page["Records"]:
            sequence = int(record["dynamodb"]["SequenceNumber"])
            if sequence > last:
                return records
            if sequence >= first:
                shaped = stream_record(record, info["streamArn"])
                if handler is None or wanted(handler, shaped):
                    records.append(shaped)
    return records


def batches(records: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """The records in invocations as the mapping would make them: at most its batch size, under Lambda's payload
    limit."""
    batch: list[dict[str, Any]] = []
    size = 0
    for record in records:
        length = len(json.dumps(record))
        if batch and (len(batch) == BATCH_RECORDS or size + length > PAYLOAD_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += length
    if batch:
        yield batch


def _replay(parked: dict[str, Any], streams: Any, invoke: Invoker, *, dry_run: bool) -> Kept | None:
    """Run a parked failure again; None when it is done, else why it stays."""
    context = parked.get("requestContext") or {}
    function_arn = str(context.get("functionArn") or "")
    info = parked.get("DDBStreamBatchInfo")
    if not function_arn or not (isinstance(info, dict) or "requestPayload" in parked):
        return Kept("not a Lambda failure record: read it in the SQS console", discardable=True)
    function = invoke.logical_id(function_arn)
    if isinstance(info, dict):
        gone = Kept(f"{function}'s batch is no longer in the stream (kept 24 h): --discard drops it", True)
        try:
            records = stream_batch(streams, info, STREAM_HANDLERS.get(function))
        except ClientError as exc:
            if exc.response["Error"]["Code"] in STREAM_GONE:
                return gone
            raise
        if not records:
            return gone
        if dry_run:
            return Kept(f"{function}: {len(records)} stream records would be applied again (dry run)")
        for batch in batches(records):  # in order; a batch still failing stops the replay (the rest come again)
            response = invoke(function_arn, {"Records": batch})
            failures = response.get("batchItemFailures") if isinstance(response, dict) else None
            if failures:
                return Kept(f"{function} still failed {len(failures)} of {len(batch)} records: see its log")
        return None
    if function not in REPLAYABLE:
        return Kept(f"{function}'s invocation is not run again (its moment is past): --discard drops it", True)
    if dry_run:
        return Kept(f"{function}'s invocation would run again (dry run)")
    invoke(function_arn, parked["requestPayload"])
    return None


def replay_failures(
    sqs: Any, streams: Any, dead: str, invoke: Invoker, *, dry_run: bool, discard: bool, limit: int
) -> Report:
    report = Report()
    inbox = Inbox(sqs, dead, limit)
    for message in inbox:
        try:
            parked = json.loads(message["Body"])
        except ValueError:
            parked = None
        try:
            kept = (
                _replay(parked, streams, invoke, dry_run=dry_run)
                if isinstance(parked, dict)
                else Kept("not a Lambda failure record: read it in the SQS console", discardable=True)
            )
        except Exception as exc:  # noqa: BLE001 - an invocation or a read that failed: kept, with what failed
            kept = Kept(f"{type(exc).__name__}: {str(exc)[:300]}")
        report.settle(inbox, message, kept, discard=discard and not dry_run)
    report.more = inbox.more
    return report


def list_checks(sqs: Any, dead: str, *, dry_run: bool, discard: bool, limit: int) -> Report:
    """A region's parked check jobs: which monitors' they are, then dropped if asked (never sent again)."""
    report = Report()
    inbox = Inbox(sqs, dead, limit)
    for message in inbox:
        try:
            jobs = decode_message(message["Body"])
            monitors = sorted({f"{job.get('monitor_id')} ({job.get('slot')})" for job in jobs if isinstance(job, dict)})
        except Exception:  # noqa: BLE001 - not JSON, not a job message, a broken gzip: whatever it is, listed
            monitors = ["(unreadable)"]
        kept = Kept(f"jobs of {', '.join(monitors) or 'no monitor'}", discardable=True)  # never sent again
        report.settle(inbox, message, kept, discard=discard and not dry_run)
    report.more = inbox.more
    return report


def redrive(
    prefix: str,
    queue: str,
    region: str,
    *,
    invoke: Invoker | None = None,
    streams: Any = None,
    dry_run: bool = False,
    discard: bool = False,
    limit: int = 1000,
) -> Report:
    sqs = boto3.client("sqs", region_name=region, config=CALLS)

    def url(name: str) -> str:
        try:
            return str(sqs.get_queue_url(QueueName=prefix + name)["QueueUrl"])
        except sqs.exceptions.QueueDoesNotExist:
            raise NoSuchQueue(f"no queue {prefix + name} in {region}: is this the stage's region?") from None

    if queue == "checks":
        return list_checks(sqs, url(f"checks-{region}-dlq"), dry_run=dry_run, discard=discard, limit=limit)
    dead, back = QUEUES[queue]
    if back is not None:
        return move_back(sqs, url(dead), url(back), dry_run=dry_run, limit=limit)
    streams = streams or boto3.client("dynamodbstreams", region_name=region, config=CALLS)
    return replay_failures(
        sqs, streams, url(dead), invoke or lambda_invoker(region), dry_run=dry_run, discard=discard, limit=limit
    )


def main(argv: list[str] | None = None) -> int:
    from infra.package import PackageError, stage_target

    parser = argparse.ArgumentParser(prog="python -m infra.redrive", description=__doc__.splitlines()[0])
    parser.add_argument("stage", help="a stage of .chalice/config.json (dev or prod)")
    parser.add_argument("queue", choices=[*QUEUES, "checks"])
    parser.add_argument("--region", help="the home region (default: $AWS_REGION); for checks, the check region")
    parser.add_argument("--dry-run", action="store_true", help="list what would happen, change nothing")
    parser.add_argument("--discard", action="store_true", help="drop what cannot be run again (see above)")
    parser.add_argument("--max", type=int, default=1000, help="messages to handle at most (default 1000)")
    args = parser.parse_args(argv)
    try:
        prefix, region = stage_target(args.stage, args.region)
    except PackageError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        report = redrive(prefix, args.queue, region, dry_run=args.dry_run, discard=args.discard, limit=args.max)
    except (NoSuchQueue, ClientError, BotoCoreError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print("\n".join(report.lines))
    return 1 if (report.kept or report.more) and not args.dry_run else 0


if __name__ == "__main__":
    sys.exit(main())
