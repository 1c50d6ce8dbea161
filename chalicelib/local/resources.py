"""Create every AWS resource Vigil uses in an emulator (moto, LocalStack), from the deploy's definitions."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from chalicelib.aws import names
from chalicelib.aws.clients import client
from chalicelib.checks.jobs import SQS_MAX_MESSAGE_BYTES
from chalicelib.checks.sizing import DEFAULT_MEMORY_MB
from chalicelib.models import ALL_MODELS
from chalicelib.settings import Settings
from chalicelib.storage.schema import create_tables


def create_resources(settings: Settings) -> dict[str, list[str]]:
    """Tables, region queues and the alerts queue (each with its DLQ), the status bucket, the SES identity and the
    KMS key secrets are sealed with (``chalicelib.sealing``).  Idempotent.

    The test suite makes them once per set of settings read here and copies the emulator's state after that
    (``tests/support.py``, ``start_aws``); ``tests/unit/test_resources_key.py`` fails when a setting read here is not
    in that set."""
    tables = create_tables(client("dynamodb"), settings.table_prefix, ALL_MODELS)
    created: dict[str, list[str]] = {"tables": tables, "queues": [], "buckets": []}
    sqs = client("sqs")
    for region in settings.check_regions:
        name = names.check_queue(settings, region)
        dlq_url = sqs.create_queue(QueueName=names.dead_letter_queue(name))["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sqs.create_queue(
            QueueName=name,
            Attributes={
                "VisibilityTimeout": "180",  # above the worker's 120 s budget: no redelivery mid-run
                "MaximumMessageSize": str(SQS_MAX_MESSAGE_BYTES),  # as deployed (an emulator may default lower)
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
            },
        )
        created["queues"].append(name)
    name = names.alert_queue(settings)
    dlq_url = sqs.create_queue(QueueName=names.dead_letter_queue(name))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "150",  # as deployed: six times the deliverer's 25 s timeout
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
        },
    )
    created["queues"].append(name)
    # Nothing parks there locally (no Lambda retries): it is there as deployed, for the redrive (infra/redrive.py).
    sqs.create_queue(QueueName=names.handler_failures_queue(settings))
    created["queues"].append(names.handler_failures_queue(settings))
    s3 = client("s3")
    bucket = names.status_bucket(settings)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        if settings.aws_region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": settings.aws_region})
        created["buckets"].append(bucket)
    ses = client("ses")
    ses.verify_email_identity(EmailAddress=names.email_identity(settings))
    created["queues"].append(_email_feedback(settings, sqs, ses))
    created["keys"] = _secrets_key(settings)
    created["functions"] = _checker_functions(settings)
    return created


def _checker_functions(settings: Settings) -> list[str]:
    """Each check region's worker function, for its configuration alone (the local stack runs the worker's code
    itself): its memory is what the scheduler sizes (``scheduler.sizing``) and what the cost bench bills."""
    from functions.checker.worker import LAMBDA_TIMEOUT_S

    iam = client("iam")
    role = names.checker_function(settings)
    try:
        role_arn = iam.get_role(RoleName=role)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        role_arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:  # a function needs code; this one is never invoked here
        archive.writestr("README", "The local stack runs functions.checker.handler in its own process.\n")
    made = []
    for region in settings.check_regions:
        functions = client("lambda", region)
        name = names.checker_function(settings)
        try:
            functions.get_function_configuration(FunctionName=name)
            continue
        except functions.exceptions.ResourceNotFoundException:
            pass
        functions.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=role_arn,
            Handler="functions.checker.handler.handler",
            Code={"ZipFile": code.getvalue()},
            MemorySize=DEFAULT_MEMORY_MB,
            Architectures=["arm64"],
            Timeout=LAMBDA_TIMEOUT_S,
        )
        made.append(f"{region}:{name}")
    return made


def _secrets_key(settings: Settings) -> list[str]:
    """The stage's KMS key under its alias, with yearly rotation, as deployed (``infra/build.py``, ``SecretsKey``)."""
    kms = client("kms", settings.home_region)
    alias = names.secrets_key(settings)
    try:
        kms.describe_key(KeyId=alias)
        return []
    except kms.exceptions.NotFoundException:
        pass
    key_id = kms.create_key(Description=f"Vigil {settings.stage}: secrets at rest")["KeyMetadata"]["KeyId"]
    kms.enable_key_rotation(KeyId=key_id)
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    return [alias]


def _email_feedback(settings: Settings, sqs: Any, ses: Any) -> str:
    """The configuration set email is sent with, the topic SES publishes its bounces and complaints to, and the
    queue (with its DLQ) that topic feeds raw, as deployed.  An emulator sends no such event: a test publishes one
    to the topic, as SES would."""
    name = names.email_events_queue(settings)
    dlq_url = sqs.create_queue(QueueName=names.dead_letter_queue(name))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})},
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns = client("sns")
    topic = sns.create_topic(Name=names.email_events_topic(settings))["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    config_set = names.configuration_set(settings)
    existing = ses.list_configuration_sets().get("ConfigurationSets", [])
    if config_set not in {c["Name"] for c in existing}:
        ses.create_configuration_set(ConfigurationSet={"Name": config_set})
        ses.create_configuration_set_event_destination(
            ConfigurationSetName=config_set,
            EventDestination={
                "Name": "bounces-and-complaints",
                "Enabled": True,
                "MatchingEventTypes": ["bounce", "complaint"],
                "SNSDestination": {"TopicARN": topic},
            },
        )
    return name
