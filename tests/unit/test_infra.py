"""The deploy templates: generated from the code, in step with the local tables and the app, valid CloudFormation."""

from __future__ import annotations

import collections
import importlib
import importlib.metadata
import importlib.util
import json
import os
import pkgutil
import platform
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from pynamodb.attributes import TTLAttribute, UnicodeAttribute
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection

import chalicelib
from chalicelib import errors
from chalicelib.api import framework
from chalicelib.aws import names
from chalicelib.models import ALL_MODELS
from chalicelib.scheduler import service as scheduler_service
from chalicelib.settings import Settings, SettingsError, load_settings
from chalicelib.storage import schema
from chalicelib.storage.base import REGISTRY, BaseModel
from functions.checker import worker
from infra import build, deploy_check, package, redrive
from tests.support import TEST_ENV

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE: dict[str, Any] = json.loads(build.OUTPUT.read_text())
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
TABLES = {name: r for name, r in RESOURCES.items() if r.get("Type") == "AWS::DynamoDB::Table"}
MODELS = ALL_MODELS
CHECKER: dict[str, Any] = json.loads(build.CHECKER_OUTPUT.read_text())
CHECKER_RESOURCES: dict[str, Any] = CHECKER["Resources"]
CHECKER_FUNCTION = CHECKER_RESOURCES[build.CHECKER_FUNCTION]["Properties"]


def substitute(value: dict[str, str], **variables: str) -> str:
    """Resolve a plain ``Fn::Sub`` string the way CloudFormation would, for the variables given."""
    text = value["Fn::Sub"]
    resolved = re.sub(r"\$\{([^}!]+)\}", lambda m: variables[m.group(1).replace("AWS::", "")], text)
    assert "${" not in resolved, resolved
    return resolved


# --- tables: one definition for infra/, the local stack and the tests ------------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.logical_name)
def test_infra_defines_each_models_table_from_the_model(model) -> None:
    resource = TABLES[schema.logical_id(model)]

    expected = schema.table_properties(model, {"Fn::Sub": "${TablePrefix}" + model.logical_name})
    assert resource["Properties"] == {**expected, "DeletionProtectionEnabled": True}
    assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"


def test_infra_has_no_table_without_a_model() -> None:
    assert set(TABLES) == {schema.logical_id(model) for model in MODELS}


def test_the_manifest_lists_every_areas_table_models() -> None:
    """A model left out of chalicelib.models would get no table in infra/, the local stack or the tests."""
    for area in pkgutil.iter_modules(chalicelib.__path__):
        if area.ispkg and importlib.util.find_spec(f"chalicelib.{area.name}.models"):
            importlib.import_module(f"chalicelib.{area.name}.models")

    assert len(set(MODELS)) == len(MODELS)
    assert set(REGISTRY) == set(MODELS)


def _key_schema(keys: list[dict[str, str]]) -> list[tuple[str, str]]:
    return sorted((k["KeyType"], k["AttributeName"]) for k in keys)


def _projection(projection: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    return projection["ProjectionType"], tuple(sorted(projection.get("NonKeyAttributes", [])))


def _live_shape(dynamodb: Any, name: str) -> dict[str, Any]:
    table = dynamodb.describe_table(TableName=name)["Table"]
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    stream = table.get("StreamSpecification") or {}
    return {
        "billing": table["BillingModeSummary"]["BillingMode"],
        "keys": _key_schema(table["KeySchema"]),
        "attributes": sorted((a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]),
        "indexes": {
            i["IndexName"]: (_key_schema(i["KeySchema"]), _projection(i["Projection"]))
            for i in table.get("GlobalSecondaryIndexes", [])
        },
        "stream": stream.get("StreamViewType") if stream.get("StreamEnabled") else None,
        "ttl": ttl.get("AttributeName") if ttl["TimeToLiveStatus"] == "ENABLED" else None,
    }


def _infra_shape(props: dict[str, Any]) -> dict[str, Any]:
    ttl = props.get("TimeToLiveSpecification") or {}
    return {
        "billing": props["BillingMode"],
        "keys": _key_schema(props["KeySchema"]),
        "attributes": sorted((a["AttributeName"], a["AttributeType"]) for a in props["AttributeDefinitions"]),
        "indexes": {
            i["IndexName"]: (_key_schema(i["KeySchema"]), _projection(i["Projection"]))
            for i in props.get("GlobalSecondaryIndexes", [])
        },
        "stream": (props.get("StreamSpecification") or {}).get("StreamViewType"),
        "ttl": ttl.get("AttributeName") if ttl.get("Enabled") else None,
    }


def test_the_tables_tests_run_on_are_the_tables_infra_deploys(aws: Settings) -> None:
    from chalicelib.aws.clients import client

    dynamodb = client("dynamodb")
    live = {
        name: _live_shape(dynamodb, name)
        for name in dynamodb.list_tables()["TableNames"]
        if name.startswith(aws.table_prefix)
    }
    deployed = {
        substitute(r["Properties"]["TableName"], TablePrefix=aws.table_prefix): _infra_shape(r["Properties"])
        for r in TABLES.values()
    }

    assert live == deployed
    # The comparison is not vacuous: keys, an index, a TTL all take part in it.
    assert any(shape["indexes"] for shape in deployed.values())
    assert any(shape["ttl"] for shape in deployed.values())


class _ResultsByTeam(GlobalSecondaryIndex["_StreamedModel"]):
    class Meta:
        index_name = "team_id-index"
        projection = IncludeProjection(["status"])

    team_id = UnicodeAttribute(hash_key=True)
    checked_at = UnicodeAttribute(range_key=True)


class _StreamedModel(BaseModel):
    """A table with everything the current models lack (a stream, an INCLUDE projection), never registered."""

    class Meta:
        stream_view_type = "NEW_AND_OLD_IMAGES"

    monitor_id = UnicodeAttribute(hash_key=True)
    checked_at = UnicodeAttribute(range_key=True)
    team_id = UnicodeAttribute()
    status = UnicodeAttribute()
    expires_at = TTLAttribute()
    by_team = _ResultsByTeam()


_StreamedModel.logical_name = "probe_results"  # set after class creation, so the registry never sees it


def test_streams_ttl_and_projections_reach_both_the_local_tables_and_infra(aws: Settings) -> None:
    from chalicelib.aws.clients import client

    (resource,) = schema.cfn_table_resources([_StreamedModel]).values()

    assert schema.create_tables(client("dynamodb"), aws.table_prefix, [_StreamedModel]) == [
        aws.table_prefix + "probe_results"
    ]
    live = _live_shape(client("dynamodb"), aws.table_prefix + "probe_results")
    assert live == _infra_shape(resource["Properties"])
    assert live["stream"] == "NEW_AND_OLD_IMAGES"
    assert live["ttl"] == "expires_at"
    assert live["indexes"]["team_id-index"][1] == ("INCLUDE", ("status",))


# --- the rest of the template --------------------------------------------------------------------------------------


def test_the_committed_template_is_what_the_code_generates() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "infra.build", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("stale_one", "old", "new"),
    [("OUTPUT", '"PAY_PER_REQUEST"', '"PROVISIONED"'), ("CHECKER_OUTPUT", '"Timeout": 120', '"Timeout": 60')],
)
def test_check_mode_fails_on_either_stale_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stale_one: str, old: str, new: str
) -> None:
    monkeypatch.setattr(build, "OUTPUT", tmp_path / "resources.json")
    monkeypatch.setattr(build, "CHECKER_OUTPUT", tmp_path / "checker.json")
    assert build.main([]) == 0
    assert build.main(["--check"]) == 0
    stale: Path = getattr(build, stale_one)
    text = stale.read_text()
    assert old in text
    stale.write_text(text.replace(old, new, 1))

    assert build.main(["--check"]) == 1
    assert build.main([]) == 0
    assert build.main(["--check"]) == 0


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "ap-southeast-1"])
def test_queue_and_bucket_names_are_the_ones_the_app_uses(region: str) -> None:
    settings = load_settings({"VIGIL_STAGE": "test", "TABLE_PREFIX": "vigil-prod-"})

    def name(resources: dict[str, Any], resource: str, key: str) -> str:
        return substitute(resources[resource]["Properties"][key], TablePrefix="vigil-prod-", Region=region)

    queue = names.check_queue(settings, region)
    assert name(CHECKER_RESOURCES, "CheckQueue", "QueueName") == queue
    assert name(CHECKER_RESOURCES, "CheckDeadLetterQueue", "QueueName") == names.dead_letter_queue(queue)
    assert name(RESOURCES, "StatusBucket", "BucketName") == names.status_bucket(settings)
    assert name(RESOURCES, build.HANDLER_FAILURES, "QueueName") == names.handler_failures_queue(settings)
    assert name(RESOURCES, "SecretsKeyAlias", "AliasName") == names.secrets_key(settings)
    # The redrive finds each dead-letter queue, and where its messages go back, by the names the stacks give them.
    for dead, back in redrive.QUEUES.values():
        queues = [r for r in RESOURCES.values() if r.get("Type") == "AWS::SQS::Queue"]
        named = {name({"q": q}, "q", "QueueName") for q in queues}
        assert "vigil-prod-" + dead in named
        assert back is None or "vigil-prod-" + back in named


def test_only_the_checker_stacks_create_check_queues() -> None:
    """The home region runs a checker stack too: a queue in the main stack would collide with its queue's name."""
    queues = [r["Properties"]["QueueName"]["Fn::Sub"] for r in RESOURCES.values() if r.get("Type") == "AWS::SQS::Queue"]
    assert not [name for name in queues if "checks" in name]
    # The alert handler's, the email events', and where what a handler gave up on is parked: home only.
    assert sorted(queues) == [
        "${TablePrefix}alerts",
        "${TablePrefix}alerts-dlq",
        "${TablePrefix}email-events",
        "${TablePrefix}email-events-dlq",
        "${TablePrefix}handler-failures-dlq",
    ]
    assert "CheckQueueUrl" not in TEMPLATE["Outputs"]
    assert "CheckQueueUrl" in CHECKER["Outputs"]
    # The scheduler may still send to every region's queue, the home region's included.
    statements = RESOURCES["SchedulerPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    send = next(s for s in statements if s["Sid"] == "CheckQueues")
    assert send["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:sqs:*:${AWS::AccountId}:${TablePrefix}checks-*"}]


@pytest.mark.parametrize("template", [TEMPLATE, CHECKER], ids=["main", "checker"])
def test_every_queue_has_an_alarm(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    queues = {name for name, r in resources.items() if r.get("Type") == "AWS::SQS::Queue"}
    dead_letter = {q for q in queues if resources[q]["Properties"]["QueueName"]["Fn::Sub"].endswith("-dlq")}
    alarmed = {
        r["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for name, r in resources.items()
        if r.get("Type") == "AWS::CloudWatch::Alarm"
        and r["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
        and name.endswith("DeadLetterQueueAlarm")
    }

    main = {"AlertDeadLetterQueue", "EmailEventsDeadLetterQueue", "HandlerFailuresDeadLetterQueue"}
    assert dead_letter == ({"CheckDeadLetterQueue"} if template is CHECKER else main)
    assert alarmed == dead_letter
    for q in dead_letter:
        assert resources[q]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
        assert resources[f"{q}Alarm"]["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    for q in queues - dead_letter:
        redrive = resources[q]["Properties"]["RedrivePolicy"]
        assert redrive["deadLetterTargetArn"]["Fn::GetAtt"][0] in dead_letter
        assert redrive["maxReceiveCount"] == 5
        # A message failing every receive lives to reach its dead-letter queue: SQS drops it at its retention,
        # counted from its send (delays included), wherever it is.
        properties = resources[q]["Properties"]
        longest = redrive["maxReceiveCount"] * properties.get("VisibilityTimeout", 30) + 900
        assert properties["MessageRetentionPeriod"] > longest, q
    assert resources["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    # Every work queue too: a backlog nobody takes (its consumer failing, throttled or its mapping disabled).
    for q in queues - dead_letter:
        (alarm,) = [
            r["Properties"]
            for r in resources.values()
            if r.get("Type") == "AWS::CloudWatch::Alarm"
            and r["Properties"].get("Dimensions") == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [q, "QueueName"]}}]
        ]
        assert (alarm["MetricName"], alarm["Statistic"], alarm["Threshold"]) == (
            "ApproximateNumberOfMessagesVisible",
            "Minimum",
            0,
        )
        assert 3 <= alarm["EvaluationPeriods"] <= 15


def test_the_status_bucket_is_private_and_cloudfront_reads_only_status_pages() -> None:
    bucket = RESOURCES["StatusBucket"]["Properties"]
    statements = RESOURCES["StatusBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    allows = [s for s in statements if s["Effect"] == "Allow"]

    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert [(s["Principal"], s["Action"], s["Resource"]) for s in allows] == [
        ({"Service": "cloudfront.amazonaws.com"}, "s3:GetObject", {"Fn::Sub": "${StatusBucket.Arn}/status/*"})
    ]
    assert "${StatusDistribution}" in allows[0]["Condition"]["StringEquals"]["AWS:SourceArn"]["Fn::Sub"]


def test_a_missing_status_page_is_a_404_with_the_page_the_refresh_publishes() -> None:
    from chalicelib.status_pages.publish import NOT_FOUND_KEY

    config = RESOURCES["StatusDistribution"]["Properties"]["DistributionConfig"]
    (origin,) = config["Origins"]
    errors = {e["ErrorCode"]: e for e in config["CustomErrorResponses"]}

    assert set(errors) == {403, 404}  # the bucket says 403 to CloudFront for a key it lacks
    for error in errors.values():
        assert error["ResponseCode"] == 404
        assert origin["OriginPath"] + error["ResponsePagePath"] == "/" + NOT_FOUND_KEY
        assert 0 < error["ErrorCachingMinTTL"] <= 60  # a page published a minute later is seen


GATEWAY = RESOURCES[build.CHALICE_API]["Properties"]["DefinitionBody"]["x-amazon-apigateway-gateway-responses"]


def test_the_api_stage_is_throttled_as_a_backstop_for_every_method() -> None:
    """Under the app's own limits (per key, team, user and address), API Gateway caps the stage as a whole: SAM's
    ``MethodSettings`` on every resource path and method."""
    (setting,) = RESOURCES[build.CHALICE_API]["Properties"]["MethodSettings"]
    assert (setting["ResourcePath"], setting["HttpMethod"]) == ("/*", "*")
    assert 0 < setting["ThrottlingRateLimit"] <= setting["ThrottlingBurstLimit"] <= 5000  # the account's default


def test_the_api_stage_logs_each_request_by_route_never_by_the_path_asked_for() -> None:
    """A heartbeat's ping URL carries its token: the access log names the route's template, not the path."""
    api = RESOURCES[build.CHALICE_API]
    setting = api["Properties"]["AccessLogSetting"]
    assert setting["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    fields = json.loads(setting["Format"])
    assert fields["route"] == "$context.resourcePath"
    assert {"requestId", "status", "ip", "gatewayError"} <= set(fields)
    assert not [v for v in fields.values() if v.startswith(("$context.path", "$input", "$context.requestOverride"))]
    assert "$context.authorizer" not in setting["Format"]
    group = RESOURCES["ApiAccessLogGroup"]
    assert group["Properties"]["RetentionInDays"] == build.LOG_RETENTION_DAYS
    assert group["DeletionPolicy"] == "Delete"  # a fixed name: a kept group would block the stack's next creation
    # API Gateway writes logs only once the account names a role it may use, set before the stage exists.
    assert api["DependsOn"] == ["ApiGatewayAccount"]
    role = RESOURCES[RESOURCES["ApiGatewayAccount"]["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "apigateway.amazonaws.com"}


@pytest.mark.parametrize(
    "kind", ["DEFAULT_4XX", "DEFAULT_5XX", "MISSING_AUTHENTICATION_TOKEN", "REQUEST_TOO_LARGE", "THROTTLED"]
)
def test_api_gateways_own_errors_answer_problem_json(kind: str) -> None:
    response = GATEWAY[kind]
    body = json.loads(substitute(response["responseTemplates"]["application/json"], AppUrl="https://app.example.com"))

    assert response["responseParameters"]["gatewayresponse.header.Content-Type"] == "'application/problem+json'"
    assert set(body) == {"type", "title", "status", "detail", "code"}
    assert body["status"] == int(response["statusCode"])
    assert body["type"] == f"https://app.example.com/docs#problem-{body['code']}"


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("MISSING_AUTHENTICATION_TOKEN", errors.NotFound),
        ("REQUEST_TOO_LARGE", errors.PayloadTooLarge),
        ("THROTTLED", errors.TooManyRequests),
        ("DEFAULT_4XX", errors.BadRequest),
    ],
)
def test_a_gateway_error_looks_like_the_apps_own(aws: Settings, kind: str, error: type[errors.VigilError]) -> None:
    from chalicelib.api.framework import problem

    response = GATEWAY[kind]
    gateway_body = json.loads(substitute(response["responseTemplates"]["application/json"], AppUrl=aws.app_url))
    app_error = error(1) if error is errors.TooManyRequests else error()
    app_body = json.loads(problem(app_error).body)

    assert {k: v for k, v in gateway_body.items() if k != "detail"} == {
        k: v for k, v in app_body.items() if k != "detail"
    }
    if error is errors.TooManyRequests:
        assert response["responseParameters"]["gatewayresponse.header.Retry-After"] == "'1'"


def test_each_function_has_its_own_least_privilege_role() -> None:
    """Its own role and policy; tables named one by one, never a Scan or a wildcard action; nothing sent, published
    or written to a "*" resource; SMS only to phone numbers; check queues only from the scheduler."""
    policies = {n: r for n, r in RESOURCES.items() if r.get("Type") == "AWS::IAM::Policy"}
    functions = (build.CHALICE_FUNCTION, *build.EVENT_FUNCTIONS)
    assert set(policies) == {f"{name}Policy" for name in functions}
    roles = [p["Properties"]["Roles"] for p in policies.values()]
    assert sorted(r["Ref"] for (r,) in roles) == sorted(build.function_role(name) for name in functions)

    def statements(name: str) -> list[dict[str, Any]]:
        return list(RESOURCES[f"{name}Policy"]["Properties"]["PolicyDocument"]["Statement"])

    def can(name: str, action: str) -> list[dict[str, Any]]:
        return [s for s in statements(name) if action in s["Action"]]

    for name in functions:
        assert RESOURCES[name]["DependsOn"][0] == f"{name}Policy"
        for statement in statements(name):
            assert statement["Effect"] in ("Allow", "Deny")
            assert not any(a.endswith("*") or a == "dynamodb:Scan" for a in statement["Action"]), statement
            if "NotResource" in statement:  # only the SMS grant, which excludes every topic
                assert statement["Action"] == ["sns:Publish"]
                assert statement["NotResource"] == [{"Fn::Sub": "arn:${AWS::Partition}:sns:*:*:*"}]
                continue
            assert "*" not in statement["Resource"], statement
            if statement["Effect"] == "Deny":
                continue
            for resource in statement["Resource"]:
                text = json.dumps(resource)
                assert "table/${TablePrefix}*" not in text, statement  # every table by name
        # Its tables exactly, each at the level FUNCTION_TABLES gives it (reads, updates, additions, deletions).
        for action, levels in (
            ("dynamodb:GetItem", (build.R, build.U, build.A, build.P, build.W)),
            ("dynamodb:UpdateItem", (build.U, build.A, build.P, build.W)),
            ("dynamodb:PutItem", (build.A, build.P, build.W)),
            ("dynamodb:DeleteItem", (build.P, build.W)),
            ("dynamodb:BatchWriteItem", (build.W,)),
        ):
            granted = {r["Fn::Sub"].rpartition("${TablePrefix}")[2] for s in can(name, action) for r in s["Resource"]}
            tables = {t for t, level in build.FUNCTION_TABLES[name].items() if level in levels}
            assert granted == {t for table in tables for t in (table, table + "/index/*")}, (name, action)
    assert "sns:Publish" not in json.dumps(statements("Scheduler"))
    publishers = {name for name in functions if can(name, "sns:Publish")}
    assert publishers == {build.CHALICE_FUNCTION, build.ALERT_FUNCTION}
    senders = {name for name in functions if any("checks-*" in json.dumps(s) for s in can(name, "sqs:SendMessage"))}
    assert senders == {"Scheduler"}
    assert {name for name in functions if can(name, "ses:SendRawEmail")} == {
        build.CHALICE_FUNCTION,
        build.ALERT_FUNCTION,
    }
    (email,) = can(build.ALERT_FUNCTION, "ses:SendRawEmail")
    assert 'identity/*"' not in json.dumps(email)  # as EmailFrom's domain only, not any identity of the account
    # The check queues' pattern would match their dead-letter queues: a Deny takes those out.
    (deny,) = [s for s in statements("Scheduler") if s["Effect"] == "Deny"]
    assert deny["Action"] == ["sqs:SendMessage"]
    assert deny["Resource"][0]["Fn::Sub"].endswith(":${TablePrefix}checks-*-dlq")
    # Only the API holds the signing key and Stripe's secrets.
    for name in functions:
        variables = RESOURCES[name]["Properties"]["Environment"]["Variables"]
        held = set(build.API_SECRETS) & set(variables)
        assert held == (set(build.API_SECRETS) if name == build.CHALICE_FUNCTION else set()), name
        assert variables["VIGIL_FUNCTION"] == ("api" if name == build.CHALICE_FUNCTION else "events")
    # The stream functions read their own stream; the queue consumers their own queue.
    for name, table in build.STREAM_FUNCTIONS.items():
        (stream,) = can(name, "dynamodb:GetRecords")
        assert stream["Resource"] == [{"Fn::GetAtt": [table, "StreamArn"]}]
    assert [s["Resource"] for s in can(build.ALERT_FUNCTION, "sqs:ReceiveMessage")] == [
        [{"Fn::GetAtt": ["AlertQueue", "Arn"]}]
    ]
    assert [s["Resource"] for s in can(build.EMAIL_FEEDBACK_FUNCTION, "sqs:ReceiveMessage")] == [
        [{"Fn::GetAtt": ["EmailEventsQueue", "Arn"]}]
    ]
    assert not can(build.CHALICE_FUNCTION, "sqs:ReceiveMessage")
    assert not can(build.CHALICE_FUNCTION, "dynamodb:GetRecords")


def test_the_secrets_key_rotates_outlives_the_stack_and_opens_only_for_the_functions_that_send() -> None:
    """Only the API makes data keys; it, the deliverer and the scheduler open them, each for its own purposes only
    (the KMS encryption context), and the key refuses any data key outside Vigil's purposes."""
    from chalicelib.sealing.service import ALERT_CHANNEL, MONITOR_HEADERS, PURPOSES

    key = RESOURCES[build.SECRETS_KEY]
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == key["UpdateReplacePolicy"] == "Retain"  # every sealed secret needs it
    (deny,) = [s for s in key["Properties"]["KeyPolicy"]["Statement"] if s["Effect"] == "Deny"]
    assert {"kms:Decrypt", "kms:GenerateDataKey"} <= set(deny["Action"])
    assert deny["Condition"] == {"StringNotEquals": {"kms:EncryptionContext:purpose": list(PURPOSES)}}
    assert RESOURCES["SecretsKeyAlias"]["Properties"]["TargetKeyId"] == {"Ref": build.SECRETS_KEY}

    def uses(name: str) -> dict[str, list[str]]:
        statements = RESOURCES[f"{name}Policy"]["Properties"]["PolicyDocument"]["Statement"]
        return {
            action: s["Condition"]["StringEquals"]["kms:EncryptionContext:purpose"]
            for s in statements
            for action in s["Action"]
            if action.startswith("kms:") and s["Resource"] == [{"Fn::GetAtt": [build.SECRETS_KEY, "Arn"]}]
        }

    assert {name: uses(name) for name in (build.CHALICE_FUNCTION, *build.EVENT_FUNCTIONS) if uses(name)} == {
        build.CHALICE_FUNCTION: {"kms:Decrypt": list(PURPOSES), "kms:GenerateDataKey": list(PURPOSES)},
        "Scheduler": {"kms:Decrypt": [MONITOR_HEADERS]},
        build.ALERT_FUNCTION: {"kms:Decrypt": [ALERT_CHANNEL]},
    }
    assert "kms:" not in json.dumps(CHECKER_RESOURCES["CheckerRole"])  # the worker gets its jobs' headers opened


# --- the check worker's stack (infra/checker.json), one per check region ------------------------------------------


def _max_check_timeout_s() -> float:
    from chalicelib.api.monitors import MonitorFields

    (limit,) = [m.le for m in MonitorFields.model_fields["timeout_ms"].metadata if isinstance(m, annotated_types.Le)]
    assert isinstance(limit, int)
    return limit / 1000


def test_the_worker_has_time_for_the_last_start_and_sqs_waits_for_it() -> None:
    timeout = CHECKER_FUNCTION["Timeout"]
    queue = CHECKER_RESOURCES["CheckQueue"]["Properties"]

    # A message arrives up to LEAD_SECONDS before its minute and its last job starts up to 60 s into it; then its
    # own timeout, then the worker's margin.
    lead = scheduler_service.LEAD_SECONDS
    assert lead + 60 + _max_check_timeout_s() + worker.FINISH_MARGIN_S <= timeout <= 900
    # AWS's guidance for SQS event sources: visibility at least six times the function timeout.
    assert queue["VisibilityTimeout"] >= 6 * timeout
    assert queue["VisibilityTimeout"] <= 12 * 3600


def test_the_check_queues_take_messages_up_to_sqs_limit_of_1_mib_deployed_and_locally(aws: Settings) -> None:
    from chalicelib.aws.clients import client
    from chalicelib.checks.jobs import MAX_MESSAGE_BYTES

    sqs = client("sqs")
    queue = names.check_queue(aws, "eu-west-1")
    local = sqs.get_queue_attributes(QueueUrl=sqs.get_queue_url(QueueName=queue)["QueueUrl"], AttributeNames=["All"])

    for name in ("CheckQueue", "CheckDeadLetterQueue"):  # a redriven message must fit its dead-letter queue too
        assert CHECKER_RESOURCES[name]["Properties"]["MaximumMessageSize"] == 1_048_576
    assert local["Attributes"]["MaximumMessageSize"] == "1048576"
    assert MAX_MESSAGE_BYTES < 1_048_576


def test_the_worker_consumes_its_own_queue_with_partial_batch_failures() -> None:
    (event,) = CHECKER_FUNCTION["Events"].values()
    source = event["Properties"]

    assert event["Type"] == "SQS"
    assert source["Queue"] == {"Fn::GetAtt": ["CheckQueue", "Arn"]}
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # One message an invocation, at once: the checks an invocation runs are one message's, which its memory is
    # sized for, and the tick's first starts (5 s after it) wait for no batching window.
    assert source["BatchSize"] == 1
    assert source["MaximumBatchingWindowInSeconds"] == 0
    assert 2 <= source["ScalingConfig"]["MaximumConcurrency"] <= 1000


def test_the_worker_function_runs_the_handler_in_functions() -> None:
    module, _, attribute = CHECKER_FUNCTION["Handler"].rpartition(".")

    assert CHECKER_RESOURCES[build.CHECKER_FUNCTION]["Type"] == "AWS::Serverless::Function"
    assert CHECKER["Transform"] == "AWS::Serverless-2016-10-31"
    spec = importlib.util.find_spec(module)
    assert spec is not None
    assert spec.origin is not None
    assert f"\n{attribute} = " in Path(spec.origin).read_text()
    assert CHECKER_FUNCTION["Runtime"] == "python3.11"
    assert CHECKER_FUNCTION["Architectures"] == ["arm64"]
    assert CHECKER_FUNCTION["Tracing"] == "PassThrough"  # untraced: one minute-long span per 2,000 checks
    assert CHECKER_FUNCTION["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"] == "true"  # botocore unpatched
    assert CHECKER_FUNCTION["Role"] == {"Fn::GetAtt": ["CheckerRole", "Arn"]}
    assert CHECKER_FUNCTION["CodeUri"] == build.CHECKER_CODE_URI


def test_the_worker_is_sized_for_one_full_message_from_its_measured_cpu() -> None:
    """Its CPU share (memory / 1,769 MB) covers the most checks one invocation runs, at under 70 % over the minute,
    with the smallest 64 MB step that does; never below what the bench saw it hold resident."""
    from chalicelib.checks.jobs import MAX_JOBS_PER_MESSAGE

    (event,) = CHECKER_FUNCTION["Events"].values()
    memory = CHECKER_FUNCTION["MemorySize"]
    checks = event["Properties"]["BatchSize"] * MAX_JOBS_PER_MESSAGE
    cpu_s = checks * build.CHECKER_X86_CPU_MS_PER_CHECK * build.CHECKER_ARM64_CPU_FACTOR / 1000

    assert checks == build.CHECKER_CHECKS_PER_INVOCATION == 2000
    assert build.CHECKER_CPU_SHARE == 0.70  # the capped bench's knee (infra/build.py, step 4)
    assert cpu_s / 60 <= 0.70 * memory / 1769
    assert cpu_s / 60 > 0.70 * (memory - 1) / 1769  # the smallest that does: Lambda's memory is set in 1 MB steps
    assert memory >= build.CHECKER_MIN_MEMORY_MB >= build.CHECKER_RSS_MB + 32 * 2  # 32 checks' 1 MiB bodies, twice
    assert memory == 439
    assert build.checker_memory_mb(10) == build.CHECKER_MIN_MEMORY_MB


def test_the_worker_starts_with_the_stacks_environment_labelled_with_its_region() -> None:
    variables = CHECKER_FUNCTION["Environment"]["Variables"]
    values = {"Stage": "prod", "TablePrefix": "vigil-prod-", "HomeRegion": "us-east-1", "AWS::Region": "eu-west-1"}
    values |= {"AppUrl": "https://app.example.com", "EmailFrom": "Vigil <no-reply@example.com>", "LogLevel": "INFO"}
    env = {name: values[value["Ref"]] for name, value in variables.items() if "Ref" in value}

    # No secret at all: the worker signs nothing, so its stacks never read the main stack's secret.
    assert "SECRET_KEY" not in variables
    assert "secretsmanager" not in json.dumps(CHECKER)
    assert not {"SecretKey", "SECRET_KEY"} & set(CHECKER["Parameters"])
    settings = load_settings({**env, "AWS_REGION": "eu-west-1", "AWS_LAMBDA_FUNCTION_NAME": "vigil-prod-checker"})
    assert settings.secret_key is None
    with pytest.raises(SettingsError, match="SECRET_KEY is not set in this function"):
        settings.signing_key("jwt")
    assert settings.stage == "prod"
    assert settings.table_prefix == "vigil-prod-"
    assert settings.home_region == "us-east-1"
    assert settings.check_region == "eu-west-1"


def test_the_worker_role_reads_and_writes_only_what_the_worker_does() -> None:
    from chalicelib.monitors.models import MonitorModel, PackModel, ProgressModel

    role = CHECKER_RESOURCES["CheckerRole"]["Properties"]
    (policy,) = role["Policies"]
    statements = policy["PolicyDocument"]["Statement"]
    actions = [a for s in statements for a in s["Action"]]
    by_action = {a: s["Resource"] for s in statements for a in s["Action"]}

    def home_table(model: type[BaseModel]) -> dict[str, str]:
        resource = f"table/${{TablePrefix}}{model.logical_name}"
        return {"Fn::Sub": f"arn:${{AWS::Partition}}:dynamodb:${{HomeRegion}}:${{AWS::AccountId}}:{resource}"}

    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert not role.get("ManagedPolicyArns")
    assert not any("*" in a for a in actions)
    assert "dynamodb:Scan" not in actions
    assert {a for a in actions if a.startswith("dynamodb:")} == {
        "dynamodb:BatchGetItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    }
    assert by_action["dynamodb:BatchGetItem"] == [home_table(MonitorModel)]
    assert by_action["dynamodb:Query"] == [home_table(PackModel)]  # a redelivery: what is stored already
    assert by_action["dynamodb:BatchWriteItem"] == [home_table(PackModel)]
    assert by_action["dynamodb:UpdateItem"] == [home_table(ProgressModel)]
    own_queue = [{"Fn::GetAtt": ["CheckQueue", "Arn"]}]
    assert {a for a in actions if a.startswith("sqs:")} == {
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    }
    assert all(by_action[a] == own_queue for a in actions if a.startswith("sqs:"))
    assert by_action["logs:PutLogEvents"] == [{"Fn::GetAtt": ["CheckerLogGroup", "Arn"]}]
    # Nothing gets "*" (the worker is not traced: X-Ray's actions were the only ones without resources).
    assert {a for a, resource in by_action.items() if resource == ["*"]} == set()
    assert not [a for a in actions if a.startswith("xray:")]


def test_the_checker_template_passes_cfn_lint() -> None:
    package.lint(build.CHECKER_OUTPUT)


def test_the_printed_checker_commands_deploy_one_stack_per_check_region() -> None:
    regions = package.check_regions("prod")
    commands = package.checker_deploy_commands("prod", ROOT / "out" / "prod")
    deploys = [c for c in commands if c.startswith("aws cloudformation deploy ")]
    required = {name for name, p in CHECKER["Parameters"].items() if "Default" not in p}

    assert regions == package.stage_environment("prod")["CHECK_REGIONS"].split(",")
    assert [re.search(r"--region (\S+)", c).group(1) for c in deploys] == regions  # type: ignore[union-attr]
    for command in deploys:
        passed = set(re.findall(r"(\w+)=", command.split("--parameter-overrides", 1)[1]))
        assert required <= passed
        assert "--stack-name vigil-prod-checker " in command
        assert "Stage=prod TablePrefix=vigil-prod- HomeRegion=" in command


# --- .chalice/config.json and the secret ----------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_a_deployed_stage_starts_with_its_config_and_the_stacks_values(stage: str) -> None:
    env = package.stage_environment(stage)
    wired = build.api_environment()

    assert "SECRET_KEY" not in env
    assert wired["SECRET_KEY"] == {"Fn::Sub": "{{resolve:secretsmanager:vigil/${Stage}/secret-key}}"}
    assert wired["STRIPE_SECRET_KEY"] == {"Fn::Sub": "{{resolve:secretsmanager:vigil/${Stage}/stripe-secret-key}}"}
    assert wired["STRIPE_WEBHOOK_SECRET"] == {
        "Fn::Sub": "{{resolve:secretsmanager:vigil/${Stage}/stripe-webhook-secret}}"
    }
    assert not {"STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"} & set(env)
    settings = load_settings(
        {
            **env,
            "SECRET_KEY": "s" * 48,
            "STRIPE_SECRET_KEY": "sk_live_x",
            "STRIPE_WEBHOOK_SECRET": "whsec_x",
            "APP_URL": "https://app.example.com",
            "EMAIL_FROM": "Vigil <no-reply@example.com>",
            "SUPPORT_EMAIL": "support@example.com",
            "AWS_LAMBDA_FUNCTION_NAME": f"vigil-{stage}",
        }
    )
    assert settings.stage == stage
    assert settings.table_prefix == f"vigil-{stage}-"
    assert not settings.allow_private_targets


@pytest.mark.parametrize(
    ("function", "memory", "tracing"),
    [
        ("api_handler", 1769, True),  # bcrypt at cost 12: one whole vCPU
        ("scheduler", 512, True),  # ~2 s of CPU a tick at 10,000 monitors: ~8 s at this share, of the ~55 s it has
        ("aggregator", 1024, False),  # every pack of a period, decoded and regrouped: CPU and memory
        ("retake", 512, False),  # a late pack's period now and then
        ("incidents", 512, False),
        ("alerts", 256, True),  # a record per incident change: rare
        ("status_pages", 256, True),
    ],
)
def test_each_chalice_function_gets_the_memory_and_tracing_its_work_needs(function, memory, tracing) -> None:
    from chalice.config import Config

    disk = json.loads((ROOT / ".chalice" / "config.json").read_text())
    for stage in package.stages():
        config = Config(chalice_stage=stage, function_name=function, config_from_disk=disk)
        assert (config.lambda_memory_size, bool(config.xray_enabled)) == (memory, tracing)


def test_the_scheduler_may_take_most_of_the_minute_it_plans_ahead_of_but_not_more() -> None:
    """At 512 MB the tick is CPU-bound (seconds at 10,000 monitors): it has until a little before the minute it
    plans, never the default 25 s, and never so long that a retried tick would overlap the next one."""
    from chalice.config import Config

    from chalicelib.scheduler.service import LEAD_SECONDS

    disk = json.loads((ROOT / ".chalice" / "config.json").read_text())
    for stage in package.stages():
        config = Config(chalice_stage=stage, function_name="scheduler", config_from_disk=disk)
        assert 25 < config.lambda_timeout <= 60 - LEAD_SECONDS - 5


def test_every_function_log_group_expires() -> None:
    """Lambda's own log groups never expire: each function of both stacks gets one with a retention."""
    for name in (build.CHALICE_FUNCTION, *build.EVENT_FUNCTIONS):
        group = RESOURCES[f"{name}LogGroup"]
        assert group["Type"] == "AWS::Logs::LogGroup"
        assert group["Properties"] == {"LogGroupName": {"Fn::Sub": f"/aws/lambda/${{{name}}}"}, "RetentionInDays": 30}
    assert CHECKER_RESOURCES["CheckerLogGroup"]["Properties"]["RetentionInDays"] == 30


def test_no_secret_is_committed_in_the_chalice_config() -> None:
    text = (ROOT / ".chalice" / "config.json").read_text()

    assert "SECRET_KEY" not in text
    assert not re.search(r"(?i)secret|password|token", text)


def _overrides(command: str) -> set[str]:
    return set(re.findall(r"(\w+)=", command.split("--parameter-overrides", 1)[1].partition("--tags")[0]))


def test_the_printed_and_documented_deploy_commands_pass_exactly_the_templates_parameters() -> None:
    """Every parameter without a default, and none the template does not have (`aws cloudformation deploy` would
    silently drop it), in the printed commands and in docs/deploy.md's; the parameters table names them all."""
    out = ROOT / "out" / "prod"
    command = package.deploy_commands("prod", out)[-1]
    checker_command = next(c for c in package.checker_deploy_commands("prod", out) if "cloudformation deploy" in c)
    doc = (ROOT / "docs" / "deploy.md").read_text().replace("\\\n", " ")
    documented = {
        "main": next(line for line in doc.splitlines() if "--stack-name vigil-prod " in line),
        "checker": next(line for line in doc.splitlines() if "--stack-name vigil-prod-checker" in line),
    }
    table = doc.partition("## Parameters")[2].partition("\n## ")[0]
    for part, template, printed in (("main", TEMPLATE, command), ("checker", CHECKER, checker_command)):
        parameters = template["Parameters"]
        required = {name for name, p in parameters.items() if "Default" not in p}
        for passed in (_overrides(printed), _overrides(documented[part])):
            assert required <= passed, (part, required - passed)
            assert passed <= set(parameters), (part, passed - set(parameters))
        assert all(f"`{name}`" in table for name in parameters), part
    tags = command.partition("--tags")[2]
    assert "Stage=prod TablePrefix=vigil-prod-" in command
    assert tags.split() == ["app=vigil", "stage=prod", "part=main"]  # on every resource that takes tags
    assert all(
        "--tags app=vigil stage=prod part=checker" in c
        for c in package.checker_deploy_commands("prod", ROOT / "out" / "prod")
        if " deploy " in c
    )


# --- the check worker's own package (offline: this virtualenv's distributions stand in for the Lambda build) ------

SITE = Path(sysconfig.get_paths()["purelib"])
# What checking never runs: the API, accounts, alerts, their composition root, Chalice and the API's libraries.
NOT_FOR_CHECKING = ("app.py", "chalicelib/api/", "chalicelib/auth/", "chalicelib/alerts/", "chalicelib/wiring.py")
NOT_FOR_CHECKING_DISTRIBUTIONS = {"chalice", "bcrypt", "zxcvbn", "stripe", "pyjwt", "jwt", "pydantic"}


def _site_read(name: str) -> str:
    return (SITE / name).read_text()


def _site_checker_files() -> tuple[list[str], list[str]]:
    return package.checker_files(package.dist_infos(p.name for p in SITE.iterdir()), _site_read)


def _not_for_checking(names: list[str]) -> list[str]:
    return [
        name
        for name in names
        if name.startswith(NOT_FOR_CHECKING)
        or package.top_level(name).partition("-")[0].lower() in NOT_FOR_CHECKING_DISTRIBUTIONS
    ]


def test_the_checkers_requirements_are_pinned_as_the_apis() -> None:
    checker = package.pinned(package.CHECKER_REQUIREMENTS)

    assert checker.items() <= package.pinned(ROOT / "requirements.txt").items()
    assert {"pynamodb", "urllib3", "aws-lambda-powertools"} <= checker.keys()


def test_the_checker_package_holds_checking_and_no_api_auth_alerts_or_chalice() -> None:
    sources, third_party = _site_checker_files()

    assert _not_for_checking(sources + third_party) == []
    assert {
        "functions/checker/handler.py",
        "functions/checker/worker.py",
        "chalicelib/checks/http.py",
        "chalicelib/checks/jobs.py",
        "chalicelib/monitors/models.py",
        "chalicelib/errors.py",  # imported inside a function of storage: read from the source, not by importing
    } <= set(sources)
    assert {"pynamodb/models.py", "urllib3/__init__.py", "cryptography/x509/__init__.py"} <= set(third_party)
    # The filter is not vacuous: the API's package would fail it.
    assert _not_for_checking(["app.py", "chalicelib/auth/service.py", "bcrypt/__init__.py", "stripe-16.1.0.dist-info/"])


def test_a_checker_import_no_requirement_provides_fails_the_packaging(monkeypatch: pytest.MonkeyPatch) -> None:
    sources, imported = package.vigil_imports()
    monkeypatch.setattr(package, "vigil_imports", lambda: (sources, {*imported, "stripe.webhook"}))

    with pytest.raises(package.PackageError, match=r"imports stripe: add it to functions/checker/requirements.txt"):
        _site_checker_files()


def test_pip_resolves_the_checkers_wheels_for_arm64_lambda_and_installs_them_offline(tmp_path: Path) -> None:
    download, install = package.pip_commands(package.CHECKER_REQUIREMENTS, tmp_path / "wheels", tmp_path / "site")

    def option(command: list[str], name: str) -> str:
        return command[command.index(name) + 1]

    for command in (download, install):
        assert command[:3] == [sys.executable, "-m", "pip"]
        assert option(command, "--platform") == "manylinux2014_aarch64"  # glibc 2.17: python3.11 runs on AL2
        assert option(command, "--python-version") == "3.11"
        assert option(command, "--implementation") == "cp"
        assert option(command, "--abi") == "cp311"
        assert "--only-binary=:all:" in command  # never an sdist built for this machine
        assert option(command, "-r") == str(package.CHECKER_REQUIREMENTS)
    assert download[3] == "download"
    assert option(download, "--dest") == str(tmp_path / "wheels")
    # The install reads nothing but the wheelhouse: no index, none of pip's configuration.
    assert install[3:5] == ["--isolated", "install"]
    assert "--no-index" in install
    assert option(install, "--find-links") == str(tmp_path / "wheels")
    assert option(install, "--target") == str(tmp_path / "site")
    assert package.pip_platform("x86_64")[1] == "manylinux2014_x86_64"
    # Dependencies' markers are read as the Lambda machine would: Python calls arm64 "aarch64".
    assert package.LAMBDA_MARKERS["platform_machine"] == "aarch64"
    assert package.CHECKER_WHEELHOUSE.name == "checker-arm64-py3.11"


ELF_HEADER = b"\x7fELF\x02\x01\x01" + bytes(11)  # 64-bit, little-endian; e_machine follows at byte 18


@pytest.mark.parametrize(
    ("data", "machine"),
    [(ELF_HEADER + (183).to_bytes(2, "little"), 183), (ELF_HEADER + (62).to_bytes(2, "little"), 62), (b"#!", None)],
)
def test_native_code_for_another_machine_is_found_by_its_elf_header(data: bytes, machine: int | None) -> None:
    assert package.elf_machine(data) == machine
    foreign = package.foreign_native_code({"lib.so": data}, "arm64")
    assert foreign == ([] if machine in (None, 183) else ["lib.so"])


def test_a_checker_package_carrying_another_machines_native_code_is_refused(tmp_path: Path) -> None:
    """This virtualenv's wheels are this machine's: packaged for the other Lambda architecture, they are refused."""
    here = {"x86_64": "x86_64", "aarch64": "arm64"}[platform.machine()]
    other = next(name for name in package.LAMBDA_PLATFORMS if name != here)

    with pytest.raises(package.PackageError, match=rf"another machine than {other}: .*cryptography/hazmat"):
        package.write_checker_zip(SITE, tmp_path / "checker.zip", architecture=other)
    assert not (tmp_path / "checker.zip").exists()


def test_the_checker_package_imports_on_its_own(tmp_path: Path) -> None:
    """Its modules, and everything its code imports, load from the package alone (boto3 from a stand-in for the
    Lambda runtime), in an interpreter that sees no site-packages: nothing the checker needs was left out."""
    sources, third_party = _site_checker_files()
    needed, imported = package.vigil_imports()
    boto3 = package.distribution_files(
        package.dist_infos(p.name for p in SITE.iterdir()), _site_read, {"boto3": importlib.metadata.version("boto3")}
    )
    task, runtime = tmp_path / "task", tmp_path / "runtime"
    for folder, listed, origin in ((task, sources, ROOT), (task, third_party, SITE), (runtime, boto3, SITE)):
        for name in listed:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).symlink_to(origin / name)
    modules = [source.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for source in needed]
    modules += sorted(name for name in imported if name.partition(".")[0] not in package.NOT_SHIPPED.keys() - {"boto3"})
    script = """
import importlib, json, sys
sys.path[:0] = sys.argv[1:3]
for name in json.loads(sys.argv[3]):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:  # `from a import b` where b is a name in a, not a module
        parent, _, attribute = name.rpartition(".")
        if exc.name != name or not parent or not hasattr(importlib.import_module(parent), attribute):
            raise
print(json.dumps(sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())})))
"""
    env = {key: value for key, value in {**os.environ, **TEST_ENV}.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-S", "-c", script, str(task), str(runtime), json.dumps(modules)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout.splitlines()[-1])
    assert not [f for f in files if f.startswith((str(SITE), str(ROOT)))]
    assert any(f.startswith(str(task / "pynamodb")) for f in files)
    assert any(f.startswith(str(task / "functions" / "checker")) for f in files)


# --- the packaged template ------------------------------------------------------------------------------------------


def test_the_packaged_stack_merges_cleanly_passes_cfn_lint_and_holds_no_secret(tmp_path: Path) -> None:
    """One ``chalice package`` (about 10 s, offline) for prod with infra/ merged in, checked three ways."""
    packaged = package.package("prod", tmp_path / "prod")
    text = packaged.read_text()
    merged = json.loads(text)["Resources"]

    # 1. The names infra/ merges into are the ones Chalice generates; Chalice's routes survive the merge.
    typeless = {name for name, r in RESOURCES.items() if "Type" not in r}
    assert typeless == {build.CHALICE_API, build.CHALICE_FUNCTION, *build.EVENT_FUNCTIONS}
    for name in build.EVENT_FUNCTIONS:
        assert merged[name]["Type"] == "AWS::Serverless::Function"
        assert merged[name]["Properties"]["Environment"]["Variables"]["TABLE_PREFIX"] == {"Ref": "TablePrefix"}
    for name, table in build.STREAM_FUNCTIONS.items():
        (source,) = merged[name]["Properties"]["Events"].values()  # Chalice's literal-ARN source was replaced
        assert source["Properties"]["Stream"] == {"Fn::GetAtt": [table, "StreamArn"]}
        assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    (source,) = merged[build.ALERT_FUNCTION]["Properties"]["Events"].values()
    assert source["Properties"]["Queue"]["Fn::Sub"].endswith(":vigil-prod-alerts")  # the stack's AlertQueue
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "AlertQueue" in merged[build.ALERT_FUNCTION]["DependsOn"]
    assert merged[build.CHALICE_API]["Type"] == "AWS::Serverless::Api"
    assert merged[build.CHALICE_FUNCTION]["Type"] == "AWS::Serverless::Function"
    assert merged[build.CHALICE_ROLE]["Type"] == "AWS::IAM::Role"
    assert merged[build.CHALICE_FUNCTION]["Properties"]["Role"] == {"Fn::GetAtt": [build.CHALICE_ROLE, "Arn"]}
    body = merged[build.CHALICE_API]["Properties"]["DefinitionBody"]
    assert "/v1/auth/login" in body["paths"]
    assert body["x-amazon-apigateway-gateway-responses"] == GATEWAY
    # Every path is one ANY method into the API function, with its path parameters: the app answers each method.
    assert {path for path, operations in body["paths"].items() if set(operations) != {package.ANY_METHOD}} == set()
    monitor = body["paths"]["/v1/monitors/{monitor_id}"][package.ANY_METHOD]
    assert monitor["parameters"] == [{"name": "monitor_id", "in": "path", "required": True, "type": "string"}]
    assert monitor["x-amazon-apigateway-integration"]["type"] == "aws_proxy"
    assert "${APIHandler.Arn}" in monitor["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]

    # Every function Chalice generates has its log group, with a retention, and the memory and tracing asked for.
    functions = {name for name, r in merged.items() if r["Type"] == "AWS::Serverless::Function"}
    assert functions == {build.CHALICE_FUNCTION, *build.EVENT_FUNCTIONS}
    for name in functions:
        assert merged[f"{name}LogGroup"]["Properties"]["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{name}}}"}
        assert merged[f"{name}LogGroup"]["Properties"]["RetentionInDays"] == 30
    assert (merged["Aggregator"]["Properties"]["MemorySize"], merged["Aggregator"]["Properties"]["Tracing"]) == (
        1024,
        "PassThrough",
    )
    assert merged["Alerts"]["Properties"]["Tracing"] == "Active"

    # 2. The secret comes from Secrets Manager; the values used only to import app.py stay out of the template.
    variables = merged[build.CHALICE_FUNCTION]["Properties"]["Environment"]["Variables"]
    assert variables["SECRET_KEY"] == build.api_environment()["SECRET_KEY"]
    assert variables["VIGIL_STAGE"] == {"Ref": "Stage"}
    assert variables["TABLE_PREFIX"] == {"Ref": "TablePrefix"}
    assert "packaging.invalid" not in text

    # The template is over the 51,200 bytes CloudFormation takes inline (so the deploy names a bucket), and far under
    # the 1 MB it takes from S3 (Chalice's own output was ~700 KB, most of it the API's seven operations per path).
    assert 51_200 < len(text.encode()) < 200_000

    # 3. cfn-lint (with the SAM transform) finds nothing, warnings included.
    package.lint(packaged)

    # 4. The check worker's own package, its wheels resolved by pip for arm64, and a template pointing at it.
    checker = package.package_checker(packaged.parent)
    code_uri = json.loads(checker.read_text())["Resources"][build.CHECKER_FUNCTION]["Properties"]["CodeUri"]
    with zipfile.ZipFile(checker.parent / code_uri) as zf:
        contents = zf.namelist()
        rust = zf.read("cryptography/hazmat/bindings/_rust.abi3.so")
        (wheel,) = [name for name in contents if re.fullmatch(r"cryptography-[^/]+\.dist-info/WHEEL", name)]
        tags = re.findall(r"^Tag: (\S+)$", zf.read(wheel).decode(), re.MULTILINE)
    with zipfile.ZipFile(packaged.parent / "deployment.zip") as zf:
        api_contents = zf.namelist()
    assert {"functions/checker/handler.py", "functions/checker/worker.py", "chalicelib/checks/http.py"} <= set(contents)
    assert any(name.startswith("aws_lambda_powertools/") for name in contents)
    assert _not_for_checking(contents) == []
    assert _not_for_checking(api_contents)
    # The same Vigil code as the API runs; cryptography's native code is the Graviton build (EM_AARCH64).
    assert {name for name in contents if name.startswith("chalicelib/")} <= set(api_contents)
    assert package.elf_machine(rust) == 183
    assert tags
    assert all(tag.endswith(("manylinux2014_aarch64", "manylinux_2_17_aarch64")) for tag in tags)
    package.lint(checker)

    assert len(checker.read_bytes()) < 51_200  # the worker's template would even go inline

    # 5. Both stacks deploy into the emulator after the SAM transform, wired as designed (make deploy-check).
    worker, main = deploy_check.deploy_all("prod", packaged.parent)
    assert set(worker.created) >= {"CheckQueue", "CheckDeadLetterQueue", "Checker", "CheckerRole", "CheckerLogGroup"}
    created = collections.Counter(main.created.values())
    assert created["AWS::Lambda::Function"] == len(functions)
    assert created["AWS::DynamoDB::Table"] == len(MODELS)
    assert created["AWS::IAM::Policy"] == len(functions)
    assert created["AWS::Lambda::EventSourceMapping"] == len(build.STREAM_FUNCTIONS) + 2
    # What the emulator cannot create is listed in docs/deploy.md, each type with why.
    documented = (ROOT / "docs" / "deploy.md").read_text()
    for kind in {*worker.not_emulated.values(), *main.not_emulated.values()}:
        assert f"`{kind}`" in documented, kind

    # A miswired template is caught: a stream batch given up on that is not parked, a secret written in.
    broken = json.loads(text)
    retake = broken["Resources"]["Retake"]["Properties"]
    del next(iter(retake["Events"].values()))["Properties"]["DestinationConfig"]
    broken["Resources"]["Incidents"]["Properties"]["Environment"]["Variables"]["SECRET_KEY"] = "s" * 48
    packaged.write_text(json.dumps(broken))
    with pytest.raises(deploy_check.DeployCheckError) as caught:
        deploy_check.deploy_all("prod", packaged.parent)
    assert "Retake: a batch given up on is not parked" in str(caught.value)
    assert "Incidents: SECRET_KEY is set" in str(caught.value)


def test_a_path_folds_into_one_any_method_only_when_its_seven_operations_are_the_same() -> None:
    integration = {"type": "aws_proxy", "httpMethod": "POST", "uri": {"Fn::Sub": "${APIHandler.Arn}"}}
    other = {**integration, "uri": {"Fn::Sub": "${Other.Arn}"}}
    params = [{"name": "id", "in": "path", "required": True, "type": "string"}]

    def operations(methods: Any, chosen: dict[str, Any] = integration, **more: Any) -> dict[str, Any]:
        return {
            m: {"parameters": params, "x-amazon-apigateway-integration": chosen, "responses": {}, **more}
            for m in methods
        }

    everything = package.GATEWAY_METHODS
    body = {
        "paths": {
            "/all/{id}": operations(everything, consumes=["*/*"]),
            "/some/{id}": operations({"get", "post"}),
            "/mixed/{id}": {**operations(everything), "put": operations({"put"}, other)["put"]},
            # An authorizer or an API key on some methods only: folding them into GET's would drop it.
            "/guarded/{id}": {**operations(everything), "post": operations({"post"}, security=[{"auth": []}])["post"]},
            "/keyed/{id}": {
                **operations(everything),
                "delete": operations({"delete"}, **{"x-amazon-apigateway-api-key-required": True})["delete"],
            },
        }
    }
    package.any_methods(body)

    assert body["paths"]["/all/{id}"] == {
        package.ANY_METHOD: {
            "parameters": params,
            "x-amazon-apigateway-integration": integration,
            "responses": {},
            "consumes": ["*/*"],
        }
    }
    for path in ("/mixed/{id}", "/guarded/{id}", "/keyed/{id}"):
        assert set(body["paths"][path]) == everything, path
    assert set(body["paths"]["/some/{id}"]) == {"get", "post"}
    assert {m.upper() for m in everything} == set(framework.METHODS)


def test_each_stream_mapping_invokes_its_function_only_for_the_records_its_handler_acts_on() -> None:
    """A pack's TTL expiry (a REMOVE per pack) must not invoke anything; the incident handler only for packs holding
    a marked result, the aggregator's late takes only for late packs; and a batch given up on is parked."""
    from chalicelib.aws.filters import STREAM_FILTERS, filter_criteria, wanted

    assert {re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() for name in build.STREAM_FUNCTIONS} == set(STREAM_FILTERS)
    for name in build.STREAM_FUNCTIONS:
        handler = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
        (source,) = RESOURCES[name]["Properties"]["Events"].values()
        assert source["Properties"]["FilterCriteria"] == filter_criteria(handler)
        (rule,) = source["Properties"]["FilterCriteria"]["Filters"]
        pattern = json.loads(rule["Pattern"])
        assert pattern == STREAM_FILTERS[handler]
        assert "REMOVE" not in pattern["eventName"]
        failures = source["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
        assert failures == {"Fn::GetAtt": ["HandlerFailuresDeadLetterQueue", "Arn"]}

    def record(event: str, **image: dict) -> dict:
        return {"eventName": event, "dynamodb": {"NewImage": image, "SequenceNumber": "1"}}

    marked, late, plain = {"marked": {"BOOL": True}}, {"late": {"BOOL": True}}, {"checks": {"N": "3"}}
    assert wanted("incidents", record("INSERT", **marked))
    assert wanted("incidents", record("MODIFY", **marked))
    assert not wanted("incidents", record("INSERT", **plain))
    assert not wanted("incidents", record("INSERT", **late))
    assert not wanted("incidents", record("INSERT", marked={"BOOL": False}))
    assert not wanted("incidents", record("INSERT", marked={"N": "1"}))
    assert not wanted("incidents", record("REMOVE", **marked))
    assert not wanted("incidents", {"eventName": "INSERT"})
    assert wanted("retake", record("INSERT", **late))
    assert not wanted("retake", record("INSERT", **marked))
    assert not wanted("retake", record("REMOVE", **late))


def test_a_failed_aggregator_pass_is_parked_with_an_alarm() -> None:
    """Lambda retries a failed scheduled pass twice, then parks it (the next pass takes its periods anyway)."""
    config = RESOURCES["AggregatorEventInvokeConfig"]["Properties"]
    assert config["FunctionName"] == {"Ref": "Aggregator"}
    assert config["MaximumRetryAttempts"] == 2
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["HandlerFailuresDeadLetterQueue", "Arn"]
    }
    statements = RESOURCES["AggregatorPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    send = next(s for s in statements if s["Sid"] == "HandlerFailures")
    assert send["Action"] == ["sqs:SendMessage"]
    assert RESOURCES["AggregatorPolicy"]["Properties"]["Roles"] == [{"Ref": "AggregatorRole"}]


def test_every_table_is_backed_up_but_the_check_telemetry() -> None:
    """Point-in-time recovery on every table, except the short-lived, TTL'd check results (packs and periods), the
    workers' progress, the monitors' change notes (issue 13's cost), the heartbeats' ping log (issue 14) and the
    Stripe events received (a deduplication log: issue 15)."""
    from chalicelib.billing.models import StripeEventModel
    from chalicelib.models import ALL_MODELS
    from chalicelib.monitors.models import ChangeModel, PackModel, PeriodModel, PingModel, ProgressModel
    from chalicelib.storage.schema import logical_id

    telemetry = {ChangeModel, PackModel, PeriodModel, PingModel, ProgressModel, StripeEventModel}
    for model in ALL_MODELS:
        spec = RESOURCES[logical_id(model)]["Properties"]["PointInTimeRecoverySpecification"]
        assert spec == {"PointInTimeRecoveryEnabled": model not in telemetry}, model.__name__
    for model in telemetry - {ProgressModel}:
        assert model._ttl_attribute() is not None  # their items expire: nothing there outlives the retention


def test_a_deploy_adds_or_removes_at_most_one_index_per_table() -> None:
    """DynamoDB (and so CloudFormation) creates or deletes one global secondary index per table in an update: a
    template two indexes away from what is deployed (``infra/deployed-indexes.json``, recorded after a deploy by
    ``python -m infra.build --deployed``) would fail to deploy.  Ship them in two deploys."""
    from infra import build

    deployed = json.loads(build.DEPLOYED_INDEXES.read_text())
    for table, indexes in build.table_indexes(build.build()).items():
        changed = set(indexes) ^ set(deployed.get(table, indexes))
        assert len(changed) <= 1, f"{table}: {sorted(changed)} in one deploy"


def test_the_deploy_guard_counts_index_changes() -> None:
    from infra import build

    template = {"Resources": {"T": {"Type": "AWS::DynamoDB::Table", "Properties": {"GlobalSecondaryIndexes": []}}}}
    template["Resources"]["T"]["Properties"]["GlobalSecondaryIndexes"] = [{"IndexName": "b"}, {"IndexName": "a"}]
    assert build.table_indexes(template) == {"T": ["a", "b"]}


def test_ses_publishes_bounces_and_complaints_to_the_queue_the_feedback_handler_reads() -> None:
    """Every email is sent with the configuration set (``aws.mail``); its events reach the email feedback function."""
    destination = RESOURCES["EmailConfigurationSetEvents"]["Properties"]
    assert destination["ConfigurationSetName"] == {"Ref": "EmailConfigurationSet"}
    assert sorted(destination["EventDestination"]["MatchingEventTypes"]) == ["bounce", "complaint"]
    assert destination["EventDestination"]["SnsDestination"] == {"TopicARN": {"Ref": "EmailEventsTopic"}}
    subscription = RESOURCES["EmailEventsSubscription"]["Properties"]
    assert subscription["Endpoint"] == {"Fn::GetAtt": ["EmailEventsQueue", "Arn"]}
    assert subscription["RawMessageDelivery"] is True
    topic_policy = RESOURCES["EmailEventsTopicPolicy"]["Properties"]
    assert topic_policy["Topics"] == [{"Ref": "EmailEventsTopic"}]  # SES publishes only where it is allowed to
    assert topic_policy["PolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ses.amazonaws.com"}
    policy = RESOURCES["EmailEventsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert policy["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": "EmailEventsTopic"}}}
    source = RESOURCES["EmailFeedback"]["Properties"]["Events"]["EmailFeedbackSqsEventSource"]["Properties"]
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    rates = {RESOURCES[a]["Properties"]["MetricName"] for a in ("EmailBounceRateAlarm", "EmailComplaintRateAlarm")}
    assert rates == {"Reputation.BounceRate", "Reputation.ComplaintRate"}


def test_every_alarm_has_a_runbook_entry_and_goes_to_the_operators() -> None:
    runbook = (Path(__file__).resolve().parents[2] / "docs" / "runbook.md").read_text(encoding="utf-8")
    headings = "\n".join(line for line in runbook.splitlines() if line.startswith("#"))
    alarms = [
        (name, resource)
        for template in (TEMPLATE, CHECKER)
        for name, resource in template["Resources"].items()
        if resource.get("Type") == "AWS::CloudWatch::Alarm"
    ]
    assert {"AlertDeadLetterQueueAlarm", "CheckDeadLetterQueueAlarm"} <= {name for name, _ in alarms}
    for name, resource in alarms:
        assert f"`{name}`" in headings, f"docs/runbook.md has no entry for {name}"
        assert resource["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name


def test_monitoring_itself_is_watched() -> None:
    """The tick's heartbeat (a missing minute alarms), sends a region missed, each function's errors and throttles,
    each stream's age, the API's 5XX rate, SMS spend; per region the checker and its queue's oldest job."""
    alarms = {n: r["Properties"] for n, r in RESOURCES.items() if r.get("Type") == "AWS::CloudWatch::Alarm"}
    heartbeat = alarms["SchedulerHeartbeatAlarm"]
    assert (heartbeat["MetricName"], heartbeat["TreatMissingData"], heartbeat["Period"]) == ("Ticks", "breaching", 60)
    # Exactly the dimensions Powertools writes (the service, and the stage bootstrap adds): another set never fires.
    stage_and_service = [{"Name": "service", "Value": "vigil"}, {"Name": "stage", "Value": {"Ref": "Stage"}}]
    aggregator = alarms["AggregatorHeartbeatAlarm"]
    assert (aggregator["MetricName"], aggregator["TreatMissingData"]) == ("PeriodsAggregated", "breaching")
    for name in (
        "SchedulerHeartbeatAlarm",
        "CheckSendFailuresAlarm",
        "HeartbeatSweepFailuresAlarm",
        "AggregatorHeartbeatAlarm",
    ):
        assert alarms[name]["Dimensions"] == stage_and_service, name
    assert alarms["Api5xxAlarm"]["Dimensions"][0] == {"Name": "ApiName", "Value": {"Fn::Sub": "${TablePrefix}api"}}
    assert RESOURCES["RestAPI"]["Properties"]["Name"] == {"Fn::Sub": "${TablePrefix}api"}
    assert alarms["CheckSendFailuresAlarm"]["MetricName"] == "CheckSendFailures"
    for function in ("APIHandler", *build.EVENT_FUNCTIONS):
        assert alarms[f"{function}ErrorsAlarm"]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function}}]
        assert alarms[f"{function}ThrottlesAlarm"]["MetricName"] == "Throttles"
    for function in build.STREAM_FUNCTIONS:
        assert alarms[f"{function}IteratorAgeAlarm"]["MetricName"] == "IteratorAge"
    assert alarms["Api5xxAlarm"]["MetricName"] == "5XXError"
    assert alarms["SmsSpendAlarm"]["Threshold"] == {"Ref": "SmsSpendAlarmUsd"}
    checker = {n: r["Properties"] for n, r in CHECKER["Resources"].items() if r.get("Type") == "AWS::CloudWatch::Alarm"}
    backlog = checker["CheckQueueBacklogAlarm"]  # the oldest job's age is always over a minute: it is delayed
    assert (backlog["MetricName"], backlog["Statistic"]) == ("ApproximateNumberOfMessagesVisible", "Minimum")
    assert {"CheckerErrorsAlarm", "CheckerThrottlesAlarm", "CheckDeadLetterQueueAlarm"} <= set(checker)


def test_every_stream_mapping_and_scheduled_function_parks_what_it_gives_up_on() -> None:
    parked = {"Fn::GetAtt": [build.HANDLER_FAILURES, "Arn"]}
    for name in build.STREAM_FUNCTIONS:
        source = next(iter(RESOURCES[name]["Properties"]["Events"].values()))["Properties"]
        assert source["DestinationConfig"] == {"OnFailure": {"Destination": parked}}, name
    events = Path(chalicelib.__file__).parent / "events"
    names = re.findall(r'@blueprint\.schedule\([^\n]*name="(\w+)"', "".join(p.read_text() for p in events.glob("*.py")))
    scheduled = {"".join(part.capitalize() for part in name.split("_")) for name in names}
    assert scheduled == {"Scheduler", "Aggregator", "StatusPagesRefresh"}
    for name in scheduled:
        config = RESOURCES[f"{name}EventInvokeConfig"]["Properties"]
        assert config["DestinationConfig"] == {"OnFailure": {"Destination": parked}}, name


def test_customer_data_is_backed_up_and_lambda_logs_warnings_only() -> None:
    selection = RESOURCES["BackupSelection"]["Properties"]["BackupSelection"]
    backed_up = {r["Fn::GetAtt"][0] for r in selection["Resources"]}
    assert backed_up <= set(TABLES)
    assert {"UsersTable", "TeamsTable", "MonitorsTable", "AlertChannelsTable", "IncidentsTable"} <= backed_up
    assert not backed_up & {"RateLimitsTable", "ResultPacksTable", "SessionsTable"}  # recomputed, expiring, caches
    rules = RESOURCES["BackupPlan"]["Properties"]["BackupPlan"]["BackupPlanRule"]
    assert sorted(r["Lifecycle"]["DeleteAfterDays"] for r in rules) == [35, 365]
    assert RESOURCES["BackupVault"]["DeletionPolicy"] == "Retain"
    for name in ("APIHandler", *build.EVENT_FUNCTIONS):
        assert RESOURCES[name]["Properties"]["LoggingConfig"] == build.LOGGING_CONFIG
    assert CHECKER["Resources"]["Checker"]["Properties"]["LoggingConfig"]["SystemLogLevel"] == "WARN"


def test_the_printed_commands_work_as_printed_with_artifacts_buckets_made_first() -> None:
    """The packaged main stack is over CloudFormation's 51,200 bytes for an inline template: its deploy must name
    the artifacts bucket, which the bootstrap stack (printed first, once per region) makes."""
    out = ROOT / "out" / "prod"
    bootstrap = package.bootstrap_commands("prod")
    regions = package.check_regions("prod")
    assert [re.search(r'BucketName="([^"]+)"', c).group(1) for c in bootstrap] == [
        "$ARTIFACT_BUCKET",
        *(f"$ARTIFACT_BUCKET-{r}" for r in regions),
    ]
    assert all("--template-file infra/bootstrap.json" in c for c in bootstrap)
    main_deploy = package.deploy_commands("prod", out)[-1]
    assert '--s3-bucket "$ARTIFACT_BUCKET"' in main_deploy
    for region in regions:
        deploy = next(
            c
            for c in package.checker_deploy_commands("prod", out)
            if c.startswith(f"aws cloudformation deploy --region {region} ")
        )
        assert f'--s3-bucket "$ARTIFACT_BUCKET-{region}"' in deploy
    package.lint(build.BOOTSTRAP_OUTPUT)
    bucket = json.loads(build.BOOTSTRAP_OUTPUT.read_text())["Resources"]["ArtifactBucket"]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True


def test_the_app_logs_at_the_stages_level_and_metrics_name_the_stage() -> None:
    """Lambda filters app logs at ``ApplicationLogLevel``, which Powertools follows: it is the stage's LOG_LEVEL."""
    for template in (TEMPLATE, CHECKER):
        levels = template["Mappings"]["LambdaLogLevels"]
        assert {k: v["Level"] for k, v in levels.items()} == {
            "DEBUG": "DEBUG",
            "INFO": "INFO",
            "WARNING": "WARN",
            "ERROR": "ERROR",
        }
        assert template["Parameters"]["LogLevel"]["AllowedValues"] == list(levels)
    command = package.deploy_commands("dev", ROOT / "out" / "dev")[-1]
    assert f"LogLevel={package.stage_environment('dev').get('LOG_LEVEL', 'INFO')}" in command

    from chalicelib.bootstrap import configure_core
    from chalicelib.models import ALL_MODELS
    from chalicelib.observability import metrics

    configure_core(load_settings({**TEST_ENV, "VIGIL_STAGE": "local"}), models=ALL_MODELS)
    assert metrics.default_dimensions == {"stage": "local"}  # with the service: the alarms' dimension set
    assert metrics.service == "vigil"
