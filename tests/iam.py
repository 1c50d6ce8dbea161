"""Each function's IAM policy, as deployed (``infra/resources.json``), held against the AWS calls its code makes.

The tests run every function's code in one process on moto, which checks no permission.  This module does what IAM
would: it finds which Lambda function a call is made for (the API's request dispatch, an event handler, or the service
entry point an event handler calls, which tests often call directly: the outermost one on the stack wins), maps the
call to the IAM actions and resources AWS authorizes it as, and evaluates them against that function's policy from the
template.  A call no statement allows is recorded as a violation, which fails the test (``tests/conftest.py``).

Calls made outside any function's code (a test seeding tables, the local stack's event loop standing in for Lambda's
pollers) are not checked; neither is the check worker, which has its own stack and a test of its own role.
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any
from urllib.parse import urlparse

import boto3
import botocore.client

from chalicelib.aws import names
from chalicelib.settings import Settings
from infra import build

ACCOUNT = "123456789012"  # moto's
TEMPLATE = json.loads(build.OUTPUT.read_text())

# (file under chalicelib/, function) → the Lambda function whose code it is.  An event handler module's entry points,
# and the service functions those call, which tests call directly.
ENTRY_POINTS: dict[tuple[str, str | None], str] = {
    ("events/schedule.py", None): "Scheduler",
    ("scheduler/service.py", "run_tick"): "Scheduler",
    ("monitors/heartbeats.py", "sweep"): "Scheduler",
    ("incidents/edges.py", "cross"): "Scheduler",
    ("events/aggregate.py", "aggregator"): "Aggregator",
    ("monitors/aggregate.py", "run_pass"): "Aggregator",
    ("events/aggregate.py", "handle_late"): "Retake",
    ("events/aggregate.py", "retake"): "Retake",
    ("monitors/aggregate.py", "retake"): "Retake",
    ("events/incidents.py", None): "Incidents",
    ("incidents/tracker.py", "apply_many"): "Incidents",
    ("incidents/tracker.py", "apply_results"): "Incidents",
    ("events/alerts.py", "plan_records"): "Alerts",
    ("events/alerts.py", "alerts"): "Alerts",
    ("alerts/dispatch.py", "plan"): "Alerts",
    ("events/alerts.py", "handle_message"): "AlertDeliveries",
    ("events/alerts.py", "handle_messages"): "AlertDeliveries",
    ("events/alerts.py", "alert_deliveries"): "AlertDeliveries",
    ("alerts/dispatch.py", "flush"): "AlertDeliveries",
    ("alerts/attempts.py", "attempt"): "AlertDeliveries",
    ("events/mail.py", None): "EmailFeedback",
    ("alerts/suppressions.py", "apply_event"): "EmailFeedback",
    ("events/status_pages.py", "handle"): "StatusPages",
    ("events/status_pages.py", "status_pages"): "StatusPages",
    ("status_pages/publish.py", "republish_for"): "StatusPages",
    ("events/status_pages.py", "status_pages_refresh"): "StatusPagesRefresh",
    ("status_pages/publish.py", "refresh_all"): "StatusPagesRefresh",
    ("api/framework.py", "_dispatch"): build.CHALICE_FUNCTION,
}
_PACKAGE = "/chalicelib/"
# Code that runs only on a developer's machine (``/dev`` routes): no deployed function's policy applies to it.  The
# local stack's event loop is not exempt: the handlers it runs are checked as themselves (its own calls, standing in
# for Lambda's pollers, are under no entry point).
LOCAL_ONLY = ("api/dev.py",)


def acting_function(frame: FrameType | None) -> str | None:
    """The function whose code the stack runs: the outermost entry point on it (an API request that republishes a
    page is the API's call, not the status page handler's)."""
    found = None
    while frame is not None:
        path = frame.f_code.co_filename
        if _PACKAGE in path:
            module = path.rpartition(_PACKAGE)[2]
            if module.startswith(LOCAL_ONLY):
                return None
            found = ENTRY_POINTS.get((module, frame.f_code.co_name)) or ENTRY_POINTS.get((module, None)) or found
        frame = frame.f_back
    return found


# --- a call → what IAM authorizes it as ---------------------------------------------------------------------------


def _table(region: str, name: str, index: str | None = None) -> str:
    return f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{name}" + (f"/index/{index}" if index else "")


TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
SQS_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def _queue(region: str, url: str) -> str:
    parts = urlparse(url)
    host_region = parts.hostname.split(".")[1] if parts.hostname and parts.hostname.startswith("sqs.") else region
    return f"arn:aws:sqs:{host_region}:{ACCOUNT}:{parts.path.rstrip('/').rpartition('/')[2]}"


def authorized_as(
    service: str, operation: str, params: dict[str, Any], region: str, keys: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    """The (action, resource) pairs IAM checks for one call; an unknown call is one pair the policy cannot allow.
    ``keys``: KMS key ARNs by alias (IAM authorizes a call naming an alias as one on its key)."""
    if service == "dynamodb":
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [(f"dynamodb:{operation}", _table(region, name)) for name in params["RequestItems"]]
        if operation in ("TransactWriteItems", "TransactGetItems"):
            pairs = []
            for item in params["TransactItems"]:
                for kind, body in item.items():
                    action = "GetItem" if kind == "Get" else TRANSACT_ACTIONS[kind]
                    pairs.append((f"dynamodb:{action}", _table(region, body["TableName"])))
            return pairs
        return [(f"dynamodb:{operation}", _table(region, params["TableName"], params.get("IndexName")))]
    if service == "dynamodbstreams":
        return [(f"dynamodb:{operation}", params.get("StreamArn", "*"))]
    if service == "sqs":
        action = f"sqs:{SQS_ACTIONS.get(operation, operation)}"
        if "QueueUrl" in params:
            return [(action, _queue(region, params["QueueUrl"]))]
        return [(action, f"arn:aws:sqs:{region}:{ACCOUNT}:{params['QueueName']}")]
    if service == "sns" and operation == "Publish":
        return [("sns:Publish", params.get("TopicArn") or params.get("TargetArn") or "*")]
    if service == "ses" and operation in ("SendRawEmail", "SendEmail"):
        source = str(params.get("Source") or "").rpartition("<")[2].rstrip(">")
        pairs = [(f"ses:{operation}", f"arn:aws:ses:{region}:{ACCOUNT}:identity/{source.rpartition('@')[2]}")]
        if params.get("ConfigurationSetName"):
            name = params["ConfigurationSetName"]
            pairs.append((f"ses:{operation}", f"arn:aws:ses:{region}:{ACCOUNT}:configuration-set/{name}"))
        return pairs
    if service == "kms" and operation in ("Decrypt", "GenerateDataKey"):
        key = str(params.get("KeyId") or "(no key named)")
        return [(f"kms:{operation}", (keys or {}).get(key, key))]
    if service == "lambda" and operation in ("GetFunctionConfiguration", "UpdateFunctionConfiguration"):
        return [(f"lambda:{operation}", f"arn:aws:lambda:{region}:{ACCOUNT}:function:{params['FunctionName']}")]
    if service == "s3":
        bucket = params["Bucket"]
        if operation == "DeleteObjects":
            keys = [o["Key"] for o in params["Delete"]["Objects"]]
            return [("s3:DeleteObject", f"arn:aws:s3:::{bucket}/{key}") for key in keys]
        if operation in ("ListObjects", "ListObjectsV2"):
            return [("s3:ListBucket", f"arn:aws:s3:::{bucket}")]
        return [(f"s3:{operation}", f"arn:aws:s3:::{bucket}/{params['Key']}")]
    return [(f"{service}:{operation}", "(not mapped in tests/iam.py)")]


# --- a function's policy, resolved for the test's stage ------------------------------------------------------------


def _role_function(role: dict[str, str]) -> str:
    name = role["Ref"].removesuffix("Role")
    return build.CHALICE_FUNCTION if name == "ApiHandler" else name


def request_context(service: str, params: dict[str, Any]) -> dict[str, str]:
    """The condition keys a call brings to IAM that the policies test: a KMS call's encryption context."""
    if service != "kms":
        return {}
    return {f"kms:EncryptionContext:{k}": v for k, v in (params.get("EncryptionContext") or {}).items()}


def _arn_of(logical: str, attribute: str, values: dict[str, str]) -> str:
    resource = TEMPLATE["Resources"][logical]
    properties = resource.get("Properties", {})
    if resource["Type"] == "AWS::SQS::Queue" and attribute == "Arn":
        return f"arn:aws:sqs:{values['AWS::Region']}:{ACCOUNT}:{_resolve(properties['QueueName'], values)}"
    if resource["Type"] == "AWS::DynamoDB::Table":
        table = f"arn:aws:dynamodb:{values['AWS::Region']}:{ACCOUNT}:table/{_resolve(properties['TableName'], values)}"
        return {"Arn": table, "StreamArn": f"{table}/stream/*"}[attribute]
    if resource["Type"] == "AWS::S3::Bucket" and attribute == "Arn":
        return f"arn:aws:s3:::{_resolve(properties['BucketName'], values)}"
    if resource["Type"] == "AWS::KMS::Key" and attribute == "Arn":
        # Its id is the emulator's: the key the template's alias of it names there (policies(keys=…)).
        return values.get(f"{logical}.Arn", f"(no key {logical} in the emulator)")
    raise AssertionError(f"tests/iam.py cannot resolve {logical}.{attribute}")


def _resolve(value: Any, values: dict[str, str]) -> str:
    if isinstance(value, str):
        return value
    if "Fn::Sub" in value:
        inner = value["Fn::Sub"]
        text, local = (inner, {}) if isinstance(inner, str) else (inner[0], inner[1])
        known = {**values, **{k: _resolve(v, values) for k, v in local.items()}}

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in known:
                return known[name]
            logical, _, attribute = name.partition(".")
            return _arn_of(logical, attribute, values)

        return re.sub(r"\$\{([^}]+)\}", one, text)
    if "Fn::GetAtt" in value:
        logical, attribute = value["Fn::GetAtt"]
        return _arn_of(logical, attribute, values)
    if "Fn::Select" in value:
        index, listed = value["Fn::Select"]
        return _list(listed, values)[int(index)]
    if "Ref" in value:
        return values[value["Ref"]]
    raise AssertionError(f"tests/iam.py cannot resolve {value}")


def _list(value: Any, values: dict[str, str]) -> list[str]:
    if "Fn::Split" in value:
        separator, text = value["Fn::Split"]
        return _resolve(text, values).split(separator)
    raise AssertionError(f"tests/iam.py cannot resolve the list {value}")


def _patterns(value: Any, values: dict[str, str]) -> list[str]:
    return [_resolve(v, values) for v in (value if isinstance(value, list) else [value])]


Statement = tuple[str, list[str], list[str], bool, dict[str, list[str]]]


def _conditions(condition: dict[str, Any]) -> dict[str, list[str]]:
    """A statement's conditions as key → the values one of which must be equal (the only operator policies use)."""
    assert set(condition) <= {"StringEquals"}, f"tests/iam.py evaluates StringEquals only, not {sorted(condition)}"
    tests = condition.get("StringEquals", {})
    return {key: value if isinstance(value, list) else [value] for key, value in tests.items()}


@dataclass
class Policy:
    # effect (Allow or Deny), actions, resource patterns, whether they are NotResource, StringEquals conditions
    statements: list[Statement]

    def _applies(self, statement: Statement, action: str, resource: str, context: dict[str, str]) -> bool:
        _, actions, patterns, negated, conditions = statement
        if not any(fnmatch.fnmatchcase(action, a) for a in actions):
            return False
        if any(context.get(key) not in values for key, values in conditions.items()):
            return False  # a key missing from the request matches no value
        return any(fnmatch.fnmatchcase(resource, p) for p in patterns) != negated

    def allows(self, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
        """IAM's rule: an explicit Deny wins, then an Allow is needed."""
        context = context or {}
        if any(s[0] == "Deny" and self._applies(s, action, resource, context) for s in self.statements):
            return False
        return any(s[0] == "Allow" and self._applies(s, action, resource, context) for s in self.statements)


def policies(
    table_prefix: str, email_from: str, region: str = "us-east-1", keys: dict[str, str] | None = None
) -> dict[str, Policy]:
    """Every function's policy from the template, for a stage whose tables are named with ``table_prefix``; ``keys``:
    the ARNs of the template's KMS keys, by alias, as the emulator made them."""
    values = {
        "TablePrefix": table_prefix,
        "EmailFrom": email_from,
        "AWS::Region": region,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
    }
    for resource in TEMPLATE["Resources"].values():
        if resource.get("Type") == "AWS::KMS::Alias" and keys:
            alias = _resolve(resource["Properties"]["AliasName"], values)
            values[f"{resource['Properties']['TargetKeyId']['Ref']}.Arn"] = keys.get(alias, f"(no key {alias})")
    found: dict[str, Policy] = {}
    for resource in TEMPLATE["Resources"].values():
        if resource.get("Type") != "AWS::IAM::Policy":
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            assert statement["Effect"] in ("Allow", "Deny"), statement
            negated = "NotResource" in statement
            patterns = _patterns(statement["NotResource" if negated else "Resource"], values)
            conditions = _conditions(statement.get("Condition", {}))
            entry = (statement["Effect"], list(statement["Action"]), patterns, negated, conditions)
            for role in resource["Properties"]["Roles"]:
                found.setdefault(_role_function(role), Policy([])).statements.append(entry)
    return found


# --- the check, installed for a test ------------------------------------------------------------------------------


@dataclass
class Watch:
    table_prefix: str
    violations: list[str] = field(default_factory=list)
    seen: dict[str, set[tuple[str, str]]] = field(default_factory=dict)


_local = threading.local()


_kms_clients: dict[tuple[str, str | None], Any] = {}  # one per region: a client costs ~20 ms to make


def _kms_keys(settings: Settings) -> dict[str, str]:
    """The ARN of the stage's KMS key by its alias, as the emulator made it (none before it is made)."""
    alias = names.secrets_key(settings)
    where = (settings.home_region, settings.aws_endpoint_url)
    if where not in _kms_clients:
        _kms_clients[where] = boto3.client("kms", region_name=where[0], endpoint_url=where[1])
    kms = _kms_clients[where]
    try:
        return {alias: str(kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"])}
    except kms.exceptions.NotFoundException:
        return {}


@contextmanager
def enforced(settings: Settings) -> Iterator[Watch]:
    """Check every AWS call made for a function against its policy while the block runs."""
    watch = Watch(settings.table_prefix)
    keys = _kms_keys(settings)
    by_function = policies(settings.table_prefix, settings.email_from, keys=keys)
    original_call = botocore.client.BaseClient._make_api_call
    original_submit = ThreadPoolExecutor.submit

    def call(self: Any, operation: str, params: dict[str, Any]) -> Any:
        function = acting_function(sys._getframe(1)) or getattr(_local, "function", None)
        if function is not None and not getattr(_local, "outside", False):
            service = self.meta.service_model.service_name
            policy = by_function.get(function, Policy([]))
            context = request_context(service, params)
            for action, resource in authorized_as(service, operation, params, self.meta.region_name, keys):
                watch.seen.setdefault(function, set()).add((action, resource))
                if not policy.allows(action, resource, context):
                    said = "".join(f" with {k.rpartition(':')[2]} {v}" for k, v in sorted(context.items()))
                    watch.violations.append(f"{function} may not {action} on {resource}{said}")
        return original_call(self, operation, params)

    def submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        function = acting_function(sys._getframe(1)) or getattr(_local, "function", None)

        def run(*a: Any, **k: Any) -> Any:
            _local.function = function  # a pool thread acts for the function that gave it the work
            try:
                return fn(*a, **k)
            finally:
                _local.function = None

        return original_submit(self, run, *args, **kwargs)

    original_signing_key = Settings.signing_key

    def signing_key(self: Settings, purpose: str) -> bytes:
        # Only the API holds SECRET_KEY (infra/build.py): any other function that signs would fail deployed.
        function = acting_function(sys._getframe(1)) or getattr(_local, "function", None)
        if function not in (None, build.CHALICE_FUNCTION) and not getattr(_local, "outside", False):
            watch.violations.append(f"{function} derives a {purpose} key, but only the API holds SECRET_KEY")
        return original_signing_key(self, purpose)

    botocore.client.BaseClient._make_api_call = call  # type: ignore[method-assign]
    ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]
    Settings.signing_key = signing_key  # type: ignore[method-assign]
    try:
        yield watch
    finally:
        botocore.client.BaseClient._make_api_call = original_call  # type: ignore[method-assign]
        ThreadPoolExecutor.submit = original_submit  # type: ignore[method-assign]
        Settings.signing_key = original_signing_key  # type: ignore[method-assign]


@contextmanager
def outside() -> Iterator[None]:
    """The block is the test's own doing (another writer a test slips in mid-call), not the function's."""
    _local.outside = True
    try:
        yield
    finally:
        _local.outside = False


def functions() -> set[str]:
    return {build.CHALICE_FUNCTION, *build.EVENT_FUNCTIONS}
