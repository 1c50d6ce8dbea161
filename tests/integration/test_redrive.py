"""``make redrive`` (``infra/redrive.py``) on moto: parked work goes back to work once, and what cannot run again
is listed, never lost by accident.

Lambda parks a failure as it does deployed (a stream batch's shard and sequence numbers, a scheduled invocation's
event); the deployed function is invoked through the invoker seam, here the handler Lambda would run, in process.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from chalicelib.aws import names
from chalicelib.checks.jobs import Job, encode_message
from chalicelib.checks.kinds import TcpSpec
from chalicelib.local.loop import lambda_context, scheduled_event
from chalicelib.monitors.models import PackModel, ProgressModel, RollupModel
from chalicelib.settings import Settings
from infra import redrive
from tests.packed import check, write_packs

T0 = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)
HOUR, MINUTE = timedelta(hours=1), timedelta(minutes=1)
ARN = "arn:aws:lambda:us-east-1:123456789012:function:vigil-test-{}-AbC123xyz"


@pytest.fixture
def sqs(aws: Settings) -> Any:
    return boto3.client("sqs", region_name="us-east-1")


def url(sqs: Any, name: str) -> str:
    return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])


def bodies(sqs: Any, name: str) -> list[str]:
    found = sqs.receive_message(QueueUrl=url(sqs, name), MaxNumberOfMessages=10, VisibilityTimeout=0)
    return sorted(m["Body"] for m in found.get("Messages", []))


class InProcess:
    """Invokes the function named in the ARN as Lambda would, and keeps what it was given."""

    def __init__(self, answer: Any = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answer = answer  # instead of running the handler: a response, or an exception to raise

    def logical_id(self, function_arn: str) -> str:
        return redrive.guess_logical_id(function_arn)

    def __call__(self, function_arn: str, event: dict[str, Any]) -> Any:
        from chalicelib.events import aggregate  # once the test's settings are configured (its stream ARNs)

        name = self.logical_id(function_arn)
        self.calls.append((name, event))
        if isinstance(self.answer, Exception):
            raise self.answer
        if self.answer is not None:
            return self.answer
        handler = {"Retake": aggregate.retake, "Aggregator": aggregate.aggregator}[name]
        return handler(event, lambda_context(name, "us-east-1"))


def test_parked_alert_deliveries_go_back_to_the_alerts_queue_once_with_their_attributes(aws, sqs) -> None:
    dead = names.dead_letter_queue(names.alert_queue(aws))
    for n in range(3):
        sqs.send_message(
            QueueUrl=url(sqs, dead),
            MessageBody=json.dumps({"op": "attempt", "n": n}),
            MessageAttributes={"kind": {"DataType": "String", "StringValue": "attempt"}},
        )

    dry = redrive.redrive(aws.table_prefix, "alerts", "us-east-1", dry_run=True)
    assert (dry.moved, len(dry.kept)) == (0, 3)
    assert bodies(sqs, names.alert_queue(aws)) == []

    report = redrive.redrive(aws.table_prefix, "alerts", "us-east-1")

    assert (report.moved, report.kept) == (3, [])
    assert bodies(sqs, dead) == []
    moved = sqs.receive_message(
        QueueUrl=url(sqs, names.alert_queue(aws)), MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    assert sorted(json.loads(m["Body"])["n"] for m in moved) == [0, 1, 2]
    assert {m["MessageAttributes"]["kind"]["StringValue"] for m in moved} == {"attempt"}
    assert redrive.redrive(aws.table_prefix, "alerts", "us-east-1").moved == 0  # nothing twice


def _late_pack_parked(aws: Settings, sqs: Any, monitor: dict[str, str]) -> dict[str, Any]:
    """A late pack's stream record, parked by Lambda after Retake failed on it ten times."""
    (late,) = write_packs([check(monitor, T0 + timedelta(minutes=7), "eu-west-1", ok=False)], late=True)
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    stream_arn = boto3.client("dynamodb", region_name="us-east-1").describe_table(TableName=PackModel.Meta.table_name)[
        "Table"
    ]["LatestStreamArn"]
    (shard,) = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )
    records = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    last = next(r for r in reversed(records) if r["dynamodb"]["Keys"]["key"]["S"] == late.key)
    parked = {
        "requestContext": {"functionArn": ARN.format("Retake"), "condition": "RetryAttemptsExhausted"},
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "version": "1.0",
        "DDBStreamBatchInfo": {
            "shardId": shard["ShardId"],
            "startSequenceNumber": last["dynamodb"]["SequenceNumber"],
            "endSequenceNumber": last["dynamodb"]["SequenceNumber"],
            "batchSize": 1,
            "streamArn": stream_arn,
        },
    }
    sqs.send_message(QueueUrl=url(sqs, names.handler_failures_queue(aws)), MessageBody=json.dumps(parked))
    return parked


def test_a_parked_stream_batch_is_read_again_from_the_stream_and_applied_once(aws, sqs) -> None:
    monitor = {"id": "mon_shop1", "team_id": "team_alice"}
    write_packs([check(monitor, T0 + timedelta(minutes=5), "us-east-1")])
    ProgressModel("aggregated", through=T0).save()
    InProcess()(
        ARN.format("Aggregator"), scheduled_event("aggregator", "us-east-1", (T0 + HOUR + 3 * MINUTE).timestamp())
    )
    assert RollupModel.get(monitor["id"], "H#2026-12-06T14").checks == 1
    _late_pack_parked(aws, sqs, monitor)
    invoke = InProcess()

    report = redrive.redrive(aws.table_prefix, "handler-failures", "us-east-1", invoke=invoke)

    assert (report.replayed, report.kept) == (1, [])
    ((function, event),) = invoke.calls
    assert function == "Retake"
    (record,) = event["Records"]
    assert record["eventName"] == "INSERT"
    assert record["dynamodb"]["NewImage"]["late"] == {"BOOL": True}
    hour = RollupModel.get(monitor["id"], "H#2026-12-06T14")
    assert (hour.checks, hour.failures) == (2, 1)  # the late failure is counted, once
    assert bodies(sqs, names.handler_failures_queue(aws)) == []


def test_a_batch_the_function_still_fails_stays_parked_visible_again_and_says_why(aws, sqs) -> None:
    _late_pack_parked(aws, sqs, {"id": "mon_shop1", "team_id": "team_alice"})
    still_failing = InProcess({"batchItemFailures": [{"itemIdentifier": "1"}]})
    crashing = [
        InProcess(redrive.FunctionFailed("Unhandled: boom")),
        InProcess(RuntimeError("the connection dropped")),  # whatever fails: kept, never hidden for long
    ]

    for invoke, why in zip(
        [still_failing, *crashing],
        ["still failed 1 of 1 records", "FunctionFailed: Unhandled: boom", "RuntimeError: the connection dropped"],
        strict=True,
    ):
        report = redrive.redrive(aws.table_prefix, "handler-failures", "us-east-1", invoke=invoke, discard=True)
        assert report.replayed == report.discarded == 0
        (kept,) = report.kept
        assert why in kept
        assert len(bodies(sqs, names.handler_failures_queue(aws))) == 1  # visible at once for the next run


def test_a_parked_batch_replays_only_the_records_its_mapping_let_through_in_batches(aws, sqs) -> None:
    monitor = {"id": "mon_shop1", "team_id": "team_alice"}
    parked = _late_pack_parked(aws, sqs, monitor)
    dead = url(sqs, names.handler_failures_queue(aws))
    sqs.purge_queue(QueueUrl=dead)
    # The batch spans packs Lambda's filter dropped (on time, not late) around the late one.
    before = write_packs([check(monitor, T0 + timedelta(minutes=n), "us-east-1") for n in range(20, 26)])
    info = parked["DDBStreamBatchInfo"]
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    iterator = streams.get_shard_iterator(
        StreamArn=info["streamArn"], ShardId=info["shardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]
    wide = dict(
        info,
        startSequenceNumber=records[0]["dynamodb"]["SequenceNumber"],
        endSequenceNumber=records[-1]["dynamodb"]["SequenceNumber"],
    )
    sqs.send_message(QueueUrl=dead, MessageBody=json.dumps({**parked, "DDBStreamBatchInfo": wide}))
    invoke = InProcess({"batchItemFailures": []})

    assert redrive.redrive(aws.table_prefix, "handler-failures", "us-east-1", invoke=invoke).replayed == 1

    ((_, event),) = invoke.calls
    assert len(records) == len(before) + 1
    assert [r["dynamodb"]["NewImage"]["late"] for r in event["Records"]] == [{"BOOL": True}]
    small = [{"eventID": str(n)} for n in range(250)]
    assert [len(b) for b in redrive.batches(small)] == [100, 100, 50]  # the mapping's batch size
    large = [{"eventID": str(n), "dynamodb": {"NewImage": {"pad": {"S": "x" * 100_000}}}} for n in range(120)]
    sizes = [len(b) for b in redrive.batches(large)]
    assert sum(sizes) == 120
    assert len(sizes) == 3  # by size: about 52 records of 100 KB under 5 MB
    assert all(len(json.dumps(b)) < 6 * 1024 * 1024 for b in redrive.batches(large))


def test_what_nothing_could_run_again_is_dropped_when_asked_and_max_says_more_are_left(aws, sqs) -> None:
    dead = url(sqs, names.handler_failures_queue(aws))
    for body in ("not json", json.dumps({"some": "thing"}), json.dumps(["a", "list"])):
        sqs.send_message(QueueUrl=dead, MessageBody=body)

    first = redrive.redrive(aws.table_prefix, "handler-failures", "us-east-1", invoke=InProcess(), limit=2)
    assert len(first.kept) == 2
    assert first.more
    assert "more messages are left" in first.lines[-1]
    dropped = redrive.redrive(aws.table_prefix, "handler-failures", "us-east-1", invoke=InProcess(), discard=True)
    assert (dropped.discarded, dropped.kept, dropped.more) == (3, [], False)


def test_scheduled_failures_the_aggregators_run_again_a_ticks_is_only_dropped_when_asked(aws, sqs) -> None:
    dead = url(sqs, names.handler_failures_queue(aws))
    at = (T0 + timedelta(hours=1, minutes=3)).timestamp()
    for function in ("Aggregator", "Scheduler"):
        parked = {
            "requestContext": {"functionArn": ARN.format(function) + ":$LATEST", "condition": "RetriesExhausted"},
            "requestPayload": scheduled_event(function.lower(), "us-east-1", at),
            "responseContext": {"functionError": "Unhandled"},
        }
        sqs.send_message(QueueUrl=dead, MessageBody=json.dumps(parked))
    ProgressModel("aggregated", through=T0).save()
    invoke = InProcess()

    report = redrive.redrive(aws.table_prefix, "handler-failures", "us-east-1", invoke=invoke)

    assert [name for name, _ in invoke.calls] == ["Aggregator"]
    assert ProgressModel.get("aggregated").through == T0 + timedelta(hours=1)  # the pass ran: 14:00 … 14:50 taken
    assert report.replayed == 1
    (why,) = report.kept
    assert "Scheduler's invocation is not run again" in why
    assert (
        redrive.redrive(aws.table_prefix, "handler-failures", "us-east-1", invoke=invoke, discard=True).discarded == 1
    )
    assert bodies(sqs, names.handler_failures_queue(aws)) == []
    assert len(invoke.calls) == 1


def test_a_stream_batch_past_the_streams_24_hours_is_kept_until_discarded(aws, sqs) -> None:
    _late_pack_parked(aws, sqs, {"id": "mon_shop1", "team_id": "team_alice"})
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    trimmed = Stubber(streams)  # what DynamoDB Streams answers for records past its retention (moto keeps them all)
    for _ in range(2):
        trimmed.add_client_error(
            "get_shard_iterator", "TrimmedDataAccessException", "the records are past the trim horizon"
        )
    invoke = InProcess()

    with trimmed:
        report = redrive.redrive(aws.table_prefix, "handler-failures", "us-east-1", invoke=invoke, streams=streams)
        (why,) = report.kept
        assert why.endswith("Retake's batch is no longer in the stream (kept 24 h): --discard drops it")
        assert len(bodies(sqs, names.handler_failures_queue(aws))) == 1
        dropped = redrive.redrive(
            aws.table_prefix, "handler-failures", "us-east-1", invoke=invoke, streams=streams, discard=True
        )

    assert dropped.discarded == 1
    assert bodies(sqs, names.handler_failures_queue(aws)) == []
    assert invoke.calls == []


def test_parked_check_jobs_are_listed_by_monitor_never_sent_again(aws, sqs) -> None:
    dead = names.dead_letter_queue(names.check_queue(aws, "us-east-1"))
    job = Job("team_1", "mon_poison", "us-east-1", T0, TcpSpec(host="db.example.com", port=5432, tls=False))
    sqs.send_message(QueueUrl=url(sqs, dead), MessageBody=encode_message([job]))
    sqs.send_message(QueueUrl=url(sqs, dead), MessageBody="not a job")
    sqs.send_message(QueueUrl=url(sqs, dead), MessageBody="[1]")  # JSON, but not a job message

    report = redrive.redrive(aws.table_prefix, "checks", "us-east-1")

    assert sorted(why.partition(": ")[2] for why in report.kept) == [
        "jobs of (unreadable)",
        "jobs of (unreadable)",
        "jobs of mon_poison (2026-12-06T14:00:00+00:00)",
    ]
    assert bodies(sqs, names.check_queue(aws, "us-east-1")) == []
    assert redrive.redrive(aws.table_prefix, "checks", "us-east-1", discard=True).discarded == 3
    assert bodies(sqs, dead) == []


def _body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def test_the_deployed_function_is_invoked_and_waited_for_and_its_failure_is_a_failure() -> None:
    invoke = redrive.lambda_invoker("us-east-1")
    functions = invoke.functions
    stub = Stubber(functions)
    arn = ARN.format("Retake")
    stub.add_response(
        "invoke",
        {"StatusCode": 200, "Payload": _body(b'{"batchItemFailures": []}')},
        {"FunctionName": arn, "Payload": b'{"Records": []}'},
    )
    stub.add_response(
        "invoke",
        {
            "StatusCode": 200,
            "FunctionError": "Unhandled",
            "Payload": _body(b'{"errorType": "X"}'),
        },
        {"FunctionName": arn, "Payload": b'{"Records": []}'},
    )
    with stub:
        assert invoke(arn, {"Records": []}) == {"batchItemFailures": []}
        with pytest.raises(redrive.FunctionFailed, match=re.escape('Unhandled: {"errorType": "X"}')):
            invoke(arn, {"Records": []})
    assert functions.meta.config.read_timeout >= 300  # the aggregator may take 300 s
    assert functions.meta.config.retries["total_max_attempts"] == 1  # a timed-out invocation may still be running


def test_the_command_names_a_missing_queue_instead_of_a_traceback(aws, capsys) -> None:
    assert redrive.main(["dev", "alerts", "--region", "us-east-1", "--dry-run"]) == 1
    assert "vigil-dev-alerts-dlq" in capsys.readouterr().err
    assert redrive.main(["nope", "alerts", "--region", "us-east-1"]) == 2


def test_a_kept_message_that_shows_again_mid_run_is_handled_once_and_the_run_ends(aws, sqs, monkeypatch) -> None:
    """Were a run to outlast a kept message's hiding, SQS would hand it back: it is hidden again, never handled
    twice, and the run still ends once only kept messages come back."""
    monkeypatch.setattr(redrive, "KEPT_S", 0)  # a kept message shows again at once, again and again
    dead = names.dead_letter_queue(names.alert_queue(aws))
    sqs.send_message(QueueUrl=url(sqs, dead), MessageBody=json.dumps({"n": 1}))

    report = redrive.redrive(aws.table_prefix, "alerts", "us-east-1", dry_run=True)

    assert len(report.kept) == 1  # handled once, and the run ended
    assert len(bodies(sqs, dead)) == 1


def test_the_function_is_named_by_its_stacks_logical_id_tag(aws) -> None:
    iam_client = boto3.client("iam", region_name="us-east-1")
    role = iam_client.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    functions = boto3.client("lambda", region_name="us-east-1")
    created = functions.create_function(
        FunctionName="vigil-prod-Something-Renamed",  # a name that would guess wrong
        Runtime="python3.11",
        Role=role,
        Handler="x.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
        Tags={"aws:cloudformation:logical-id": "Aggregator"},
    )
    invoker = redrive.lambda_invoker("us-east-1")
    assert invoker.logical_id(created["FunctionArn"] + ":$LATEST") == "Aggregator"
    assert invoker.logical_id(ARN.format("Retake")) == "Retake"  # no such function: the name's guess
