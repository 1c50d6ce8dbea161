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
a timeout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

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
# An invocation waits for the function: up to the aggregator's 300 s, plus Lambda's own overhead.
INVOKE = Config(connect_timeout=5, read_timeout=330, retries={"max_attempts": 1})

Invoker = Callable[[str, dict[str, Any]], Any]  # (function ARN, event) → the function's response; raises if it failed


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

    @property
    def lines(self) -> list[str]:
        counts = f"moved {self.moved}, replayed {self.replayed}, discarded {self.discarded}, kept {len(self.kept)}"
        return [counts, *(f"  kept: {why}" for why in self.kept)]


def lambda_invoker(region: str) -> Invoker:
    """Invoke the deployed function and wait for it (RequestResponse), as its event source would."""
    functions = boto3.client("lambda", region_name=region, config=INVOKE)

    def invoke(function_arn: str, event: dict[str, Any]) -> Any:
        response = functions.invoke(FunctionName=function_arn, Payload=json.dumps(event).encode())
        payload = response["Payload"].read()
        if response.get("FunctionError"):
            raise FunctionFailed(f"{response['FunctionError']}: {payload[:500].decode(errors='replace')}")
        return json.loads(payload) if payload else None

    return invoke


class Inbox:
    """A dead-letter queue's messages, each once per run: hidden from other readers while it is handled, and shown
    again at the end of the run if it stays (``keep``)."""

    def __init__(self, sqs: Any, url: str, limit: int) -> None:
        self.sqs, self.url, self.limit = sqs, url, limit
        self.kept: list[str] = []

    def __iter__(self) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        try:
            while len(seen) < self.limit:
                batch = self.sqs.receive_message(
                    QueueUrl=self.url,
                    MaxNumberOfMessages=min(10, self.limit - len(seen)),
                    WaitTimeSeconds=1,
                    VisibilityTimeout=900,
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
                fresh = [m for m in batch if m["MessageId"] not in seen]
                if not fresh:
                    return
                for message in fresh:
                    seen.add(message["MessageId"])
                    yield message
        finally:
            for handle in self.kept:  # at once visible again, for the next run or the console
                self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=handle, VisibilityTimeout=0)

    def done(self, message: dict[str, Any]) -> None:
        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])

    def keep(self, message: dict[str, Any]) -> None:
        self.kept.append(message["ReceiptHandle"])


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
        sqs.send_message(**sent)
        inbox.done(message)
        report.moved += 1
    return report


def _function_name(function_arn: str) -> str:
    """``arn:…:function:vigil-prod-Aggregator-AbC12:$LATEST`` → ``Aggregator``: the logical name in the stack's
    generated function name (stack-Logical-suffix)."""
    name = function_arn.split(":")[6] if function_arn.count(":") >= 6 else function_arn
    parts = name.split("-")
    return parts[-2] if len(parts) >= 3 else name


def stream_batch(streams: Any, info: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of a parked stream batch, from its first sequence number to its last, as Lambda sends them."""
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
                records.append(stream_record(record, info["streamArn"]))
    return records


def _replay(parked: dict[str, Any], streams: Any, invoke: Invoker, *, dry_run: bool) -> str | None:
    """Run a parked failure again; None when it is done, else why it stays."""
    context = parked.get("requestContext") or {}
    function_arn = str(context.get("functionArn") or "")
    function = _function_name(function_arn)
    info = parked.get("DDBStreamBatchInfo")
    if info:
        try:
            records = stream_batch(streams, info)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in STREAM_GONE:
                return f"{function}'s batch is no longer in the stream (kept 24 h): --discard drops it"
            raise
        if not records:
            return f"{function}'s batch is no longer in the stream (kept 24 h): --discard drops it"
        if dry_run:
            return f"{function}: {len(records)} stream records would be applied again (dry run)"
        response = invoke(function_arn, {"Records": records})
        failures = response.get("batchItemFailures") if isinstance(response, dict) else None
        if failures:
            return f"{function} still failed {len(failures)} of {len(records)} records: see its log"
        return None
    if "requestPayload" in parked:
        if function not in REPLAYABLE:
            return f"{function}'s invocation is not run again (its moment is past): --discard drops it"
        if dry_run:
            return f"{function}'s invocation would run again (dry run)"
        invoke(function_arn, parked["requestPayload"])
        return None
    return "not a Lambda failure record: look at it in the SQS console"


def replay_failures(
    sqs: Any, streams: Any, dead: str, invoke: Invoker, *, dry_run: bool, discard: bool, limit: int
) -> Report:
    report = Report()
    inbox = Inbox(sqs, dead, limit)
    for message in inbox:
        try:
            parked = json.loads(message["Body"])
            why = _replay(parked, streams, invoke, dry_run=dry_run) if isinstance(parked, dict) else "not JSON"
        except (FunctionFailed, ClientError, json.JSONDecodeError) as exc:
            why = f"{type(exc).__name__}: {exc}"
        if why is None:
            inbox.done(message)
            report.replayed += 1
        elif discard and not dry_run and "--discard" in why:
            inbox.done(message)
            report.discarded += 1
        else:
            inbox.keep(message)
            report.kept.append(f"{message['MessageId']}: {why}")
    return report


def list_checks(sqs: Any, dead: str, *, dry_run: bool, discard: bool, limit: int) -> Report:
    """A region's parked check jobs: which monitors' they are, then dropped if asked (never sent again)."""
    report = Report()
    inbox = Inbox(sqs, dead, limit)
    for message in inbox:
        try:
            jobs = decode_message(message["Body"])
            monitors = sorted({f"{job.get('monitor_id')} ({job.get('slot')})" for job in jobs if isinstance(job, dict)})
        except (ValueError, OSError, EOFError):  # not JSON, not a job message, a broken gzip
            monitors = ["(unreadable)"]
        if discard and not dry_run:
            inbox.done(message)
            report.discarded += 1
        else:
            inbox.keep(message)
            report.kept.append(f"{message['MessageId']}: jobs of {', '.join(monitors) or 'no monitor'}")
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
    from infra.package import PackageError, stage_environment

    parser = argparse.ArgumentParser(prog="python -m infra.redrive", description=__doc__.splitlines()[0])
    parser.add_argument("stage", help="a stage of .chalice/config.json (dev or prod)")
    parser.add_argument("queue", choices=[*QUEUES, "checks"])
    parser.add_argument("--region", help="the home region (default: $AWS_REGION); for checks, the check region")
    parser.add_argument("--dry-run", action="store_true", help="list what would happen, change nothing")
    parser.add_argument("--discard", action="store_true", help="drop what cannot be run again (see above)")
    parser.add_argument("--max", type=int, default=1000, help="messages to handle at most (default 1000)")
    args = parser.parse_args(argv)
    region = args.region or boto3.session.Session().region_name
    if not region:
        print("no region: pass --region or set AWS_REGION", file=sys.stderr)
        return 2
    try:
        prefix = stage_environment(args.stage)["TABLE_PREFIX"]
    except PackageError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        report = redrive(prefix, args.queue, region, dry_run=args.dry_run, discard=args.discard, limit=args.max)
    except (NoSuchQueue, ClientError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print("\n".join(report.lines))
    return 1 if report.kept and not args.dry_run else 0


if __name__ == "__main__":
    sys.exit(main())
