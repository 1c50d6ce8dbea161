"""Generate ``infra/resources.json`` and ``infra/checker.json``, the two CloudFormation templates of a stage.

``resources.json`` is what ``chalice package --merge-template`` merges into the home region's stack;
``checker.json`` is a standalone SAM template for the check worker, deployed once in every check region.
``python -m infra.build`` writes both; ``python -m infra.build --check`` exits 1 when a committed file
differs from what the code would generate (CI and ``tests/unit/test_infra.py`` run it).

Chalice's own output supplies the API (``RestAPI``), its function (``APIHandler``) and the function's role
(``ApiHandlerRole``); Chalice merges dictionaries key by key, so this template adds to those resources
without restating them.  Every table comes from :func:`chalicelib.storage.schema.cfn_table_resources`,
the same definitions the local stack and the tests create; no table is written here by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from chalicelib import errors
from chalicelib.aws.filters import filter_criteria
from chalicelib.checks import sizing
from chalicelib.checks.jobs import MAX_JOBS_PER_MESSAGE, SQS_MAX_MESSAGE_BYTES
from chalicelib.models import ALL_MODELS
from chalicelib.observability import SERVICE
from chalicelib.sealing.service import ALERT_CHANNEL, MONITOR_HEADERS, PURPOSES
from chalicelib.settings import DEFAULT_REGIONS
from chalicelib.storage.schema import cfn_table_resources
from functions.checker.worker import EVENT_BATCH_SIZE, LAMBDA_TIMEOUT_S, MAX_CONCURRENT_INVOCATIONS

OUTPUT = Path(__file__).resolve().parent / "resources.json"
CHECKER_OUTPUT = Path(__file__).resolve().parent / "checker.json"
BOOTSTRAP_OUTPUT = Path(__file__).resolve().parent / "bootstrap.json"

# Names of the resources Chalice generates (checked against `chalice package` by tests/unit/test_infra.py).
CHALICE_API = "RestAPI"
API_NAME = "${TablePrefix}api"  # the REST API's name (RestAPI's Name; else Chalice's title, the same in every stage)
API_STAGE = "api"  # Chalice's default api_gateway_stage
API_STAGE_RATE_LIMIT = 2000  # requests a second, steady, for the whole stage (cron pings bunch at :00)
API_STAGE_BURST_LIMIT = 5000
CHALICE_FUNCTION = "APIHandler"
CHALICE_ROLE = "ApiHandlerRole"
# Chalice's event handlers (chalicelib/events): each gets its own function and role in the package.
EVENT_FUNCTIONS = (
    "Scheduler",
    "Aggregator",
    "Retake",
    "Incidents",
    "Alerts",
    "AlertDeliveries",
    "EmailFeedback",
    "StatusPages",
    "StatusPagesRefresh",
)
# The stream handlers and the table whose stream each reads (chalicelib/events/aggregate, incidents, alerts).
STREAM_FUNCTIONS = {
    "Retake": "ResultPacksTable",
    "Incidents": "ResultPacksTable",
    "Alerts": "EventsTable",
    "StatusPages": "EventsTable",
}
ALERT_QUEUE_NAME = "${TablePrefix}alerts"  # names.alert_queue
ALERT_FUNCTION = "AlertDeliveries"  # its SQS consumer
EMAIL_EVENTS_NAME = "${TablePrefix}email-events"  # names.email_events_queue and names.email_events_topic
EMAIL_FEEDBACK_FUNCTION = "EmailFeedback"  # its SQS consumer
CONFIGURATION_SET_NAME = "${TablePrefix}email"  # names.configuration_set
# SES reviews an account at a 5 % bounce or a 0.1 % complaint rate and may pause sending at 10 % or 0.5 %: warn first.
SES_BOUNCE_RATE_ALARM = 0.04
SES_COMPLAINT_RATE_ALARM = 0.0008
# AWS's guidance for an SQS event source: a visibility timeout of six times the function's (lambda_timeout 25 s).
ALERT_QUEUE_VISIBILITY_S = 6 * 25

# Queue names follow chalicelib/aws/names.py: {prefix}checks-{region} and its "-dlq".
CHECK_QUEUE_NAME = "${TablePrefix}checks-${AWS::Region}"
STATUS_BUCKET_NAME = "${TablePrefix}status-pages"  # names.status_bucket (the prefix is already lower case)
SECRET_KEY_ID = "vigil/${Stage}/secret-key"  # a Secrets Manager secret the deployer creates once per stage
SECRET_KEY_REF = "{{resolve:secretsmanager:" + SECRET_KEY_ID + "}}"
# Stripe's, created once per stage beside it (docs/deploy.md, "The secret").
STRIPE_SECRET_KEY_REF = "{{resolve:secretsmanager:vigil/${Stage}/stripe-secret-key}}"
STRIPE_WEBHOOK_SECRET_REF = "{{resolve:secretsmanager:vigil/${Stage}/stripe-webhook-secret}}"
# The KMS key secrets at rest are sealed with (chalicelib.sealing), under the alias names.secrets_key gives.
SECRETS_KEY = "SecretsKey"
SECRETS_KEY_ALIAS = "alias/${TablePrefix}secrets"

# The check worker (functions/checker), one stack per check region.  An invocation waits for the last planned
# start (up to 60 s after the tick), then that check's own timeout (at most 30 s), then the worker's
# FINISH_MARGIN_S to store the result: about 95 s, so 120 s leaves room for slow result writes.
CHECKER_FUNCTION = "Checker"
CHECKER_HANDLER = "functions.checker.handler.handler"
CHECKER_RUNTIME = "python3.11"
# Graviton: about 20 % less per GB-s than x86_64.  infra/package.py resolves the worker's wheels for it (Chalice's
# own build, which the API runs, is x86_64).
CHECKER_ARCHITECTURE = "arm64"
CHECKER_CODE_URI = "checker.zip"  # beside the template; `aws cloudformation package` uploads it and rewrites this
CHECKER_TIMEOUT_S = LAMBDA_TIMEOUT_S  # one value for the deployed worker and the local stack
# AWS's guidance for an SQS event source: a visibility timeout of at least six times the function's timeout,
# so that a message is not redelivered while Lambda is still retrying a throttled invocation.
CHECK_QUEUE_VISIBILITY_S = 6 * CHECKER_TIMEOUT_S
MAX_RECEIVES = 5  # a message received this many times without success goes to its dead-letter queue
SQS_MAX_DELAY_S = 900
# How long a check job may wait in its queue.  An hour on, newer jobs have replaced it; but a poisoned job must live
# through its five receives (each hides it for the visibility timeout) and its send delay to reach the dead-letter
# queue and its alarm: SQS counts retention from the send, and drops a message at it wherever it is.
CHECK_JOB_RETENTION_S = MAX_RECEIVES * CHECK_QUEUE_VISIBILITY_S + SQS_MAX_DELAY_S + 3600
# One message an invocation, and no batching window: an invocation runs a known number of checks (at most
# MAX_JOBS_PER_MESSAGE), which its memory is sized for; more messages are more invocations side by side, each with
# its own CPU, never more checks on one.  A window would wait for messages the tick's starts cannot wait for.
CHECKER_BATCH_SIZE = EVENT_BATCH_SIZE  # the local stack's event source uses the same
CHECKER_CHECKS_PER_INVOCATION = CHECKER_BATCH_SIZE * MAX_JOBS_PER_MESSAGE
# Its memory buys its CPU (Lambda: 1 vCPU at 1,769 MB), and an invocation is held, and billed, for its whole
# minute whatever it runs: sized for one full message's checks from their measured CPU, nothing more.
#   1. CPU per check, all in (the check, TLS, the change notes, the result writes): 3.4-3.9 ms measured on this
#      x86_64 Xeon, free (tests/load/test_bench_checker.py, one cold invocation of 2,000 fresh-TLS checks to a
#      loopback target, each second's starts spread over a hundred 10 ms steps: each check runs nearly alone, and
#      wakes an idle process more often than at ten steps, 2.7 ms); taken as 4.0 ms; the bench fails above it.
#      Session 15's machine, an AMD EPYC, measured 2.29-2.65 ms in seven runs (the bare urllib3 request 1.17 ms
#      against the Xeon's ~1.3: the difference is the wake-ups around it); session 16's, the same kind of VM,
#      3.22-3.29 ms (bare 1.43, the checker's own loop 1.72: the rest is the worker's 32 threads and their
#      wake-ups, not its Python, whose every step costs microseconds).  The sizing keeps the Xeon's figure:
#      Graviton2 is neither core, a production check also waits on a real DNS lookup (here /etc/hosts), and a
#      smaller share measures every target slower (step 4) — a cheaper figure needs a measurement on Graviton.
#   2. On arm64, assumed 1.3x that (Graviton2 runs CPython and OpenSSL somewhat slower per core): 5.2 ms.
#   3. At most CHECKER_CHECKS_PER_INVOCATION = 2,000 checks: 10.4 s of CPU in the minute, 0.17 vCPU on average.
#   4. At most 70 % of its CPU share over the minute: 0.25 vCPU = 438.04 MB, rounded up to Lambda's 1 MB steps:
#      439 MB (64 MB steps, as before session 15, were 448: 2 % more GB-s for nothing).
#      Measured, not guessed: the bench runs a full message capped at the deployed share (a cgroup, as Lambda
#      caps it) and compares what its checks measured of a 4.6 ms target with a free CPU's.  At 448 MB it is
#      61-67 % busy and measures 6.8-9.4 ms at p95 (free: 6.7-6.9); at 416 MB 75 % and 26 ms; at 384 MB 80 % and
#      51 ms; at 320 MB 89 % and 193 ms.  A busier worker is cheaper and lies about every target's response time.
#      The knee moved from 45 % (session 7) once the worker's clients were built at its cold start
#      (storage.base.connect): built mid-minute, they held a small share's CPU for a second or more.
#   5. Never below CHECKER_MIN_MEMORY_MB, 439 MB: step 4's smallest share that measures true (at 220 MB, 64 %
#      busy, the bench measured a 6.2 ms target at 101 ms p95); far above the 121 MB the bench's worker held resident
#      (62 MB once loaded, 32 check threads in TLS), with 32 checks' 1 MiB bodies besides.
#   6. Deployed at that size; from then on the scheduler sizes it from its load (chalicelib.scheduler.sizing):
#      lanes cut for the memory it has, and its memory planned for the region's busiest minute at the CPU per check
#      its own invocations measured (chalicelib.monitors.workload), never below CHECKER_MIN_MEMORY_MB: the step-4
#      knee's size, below which a smaller share stalls a check's handshake for the rest of its throttling period.
LAMBDA_MB_PER_VCPU = sizing.LAMBDA_MB_PER_VCPU
CHECKER_X86_CPU_MS_PER_CHECK = sizing.X86_CPU_MS_PER_CHECK
CHECKER_ARM64_CPU_FACTOR = sizing.ARM64_CPU_FACTOR
CHECKER_CPU_SHARE = sizing.CPU_SHARE
CHECKER_RSS_MB = 160  # the bench fails above it
CHECKER_MIN_MEMORY_MB = sizing.MIN_MEMORY_MB


def checker_memory_mb(checks: int = CHECKER_CHECKS_PER_INVOCATION) -> int:
    """The worker's memory for ``checks`` checks in its minute at the assumed CPU (steps 1-5 above)."""
    return sizing.assumed_memory_mb(checks)


CHECKER_MEMORY_MB = checker_memory_mb()
# Invocations in flight per region: each holds one message for about 65 s, so 50 carry about 45 messages, 90,000
# checks, a minute, while a flood of messages cannot take the account's whole Lambda concurrency.
CHECKER_MAX_CONCURRENCY = MAX_CONCURRENT_INVOCATIONS  # and the same concurrency
LOG_RETENTION_DAYS = 30  # every function's log group, the worker's and Chalice's (Lambda's own never expire)

STATUS_INDEX_FUNCTION = """function handler(event) {
  var request = event.request;
  var uri = request.uri;
  if (uri.endsWith('/')) {
    request.uri = uri + 'index.html';
  } else if (uri.lastIndexOf('.') < uri.lastIndexOf('/')) {
    request.uri = uri + '/index.html';
  }
  return request;
}
"""

NOT_FOUND_CACHE_S = 30  # how long CloudFront remembers that a status page is missing

# AWS managed CloudFront policies (fixed, documented IDs).
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
SECURITY_HEADERS = "67f7725c-6f97-4210-82d7-5512b31e9d03"

# API Gateway's own errors, answered in the app's problem+json shape.  Each names its status code so that the
# body's "status" always equals the real one; DEFAULT_4XX/5XX's code also becomes the status of every type not
# listed (authorizer, API-key and SigV4 types, none of which this API configures).  A missing route is a 404
# here, as in the app, where API Gateway would say 403 "Missing Authentication Token".  Status, code and title
# come from the app's error classes, except for the two errors only API Gateway raises.
BAD_GATEWAY = (502, "bad_gateway", "Bad gateway")
GATEWAY_TIMEOUT = (504, "gateway_timeout", "Gateway timeout")


def _app(error: type[errors.VigilError]) -> tuple[int, str, str]:
    return error.status, error.code, error.title


GATEWAY_RESPONSES: tuple[tuple[str, tuple[int, str, str], str], ...] = (
    ("DEFAULT_4XX", _app(errors.BadRequest), "The request was rejected before it reached Vigil."),
    ("DEFAULT_5XX", BAD_GATEWAY, "Vigil could not answer this request; try again shortly."),
    ("MISSING_AUTHENTICATION_TOKEN", _app(errors.NotFound), "There is no such route."),
    ("RESOURCE_NOT_FOUND", _app(errors.NotFound), "There is no such route."),
    ("REQUEST_TOO_LARGE", _app(errors.PayloadTooLarge), "The request body is too large."),
    ("THROTTLED", _app(errors.TooManyRequests), "Too many requests; retry shortly."),
    ("QUOTA_EXCEEDED", _app(errors.TooManyRequests), "Too many requests; retry shortly."),
    ("UNSUPPORTED_MEDIA_TYPE", _app(errors.UnsupportedMediaType), "Send application/json."),
    ("ACCESS_DENIED", _app(errors.Forbidden), "The request was refused."),
    ("WAF_FILTERED", _app(errors.Forbidden), "The request was refused."),
    ("INTEGRATION_TIMEOUT", GATEWAY_TIMEOUT, "Vigil took too long to answer; try again."),
    ("INTEGRATION_FAILURE", GATEWAY_TIMEOUT, "Vigil could not answer this request; try again shortly."),
)


def _handler(function: str) -> str:
    """The Chalice handler behind a function resource (``StatusPages`` → ``status_pages``)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", function).lower()


def sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def arn(service: str, resource: str, region: str = "${AWS::Region}") -> dict[str, str]:
    return sub(f"arn:${{AWS::Partition}}:{service}:{region}:${{AWS::AccountId}}:{resource}")


def parameters() -> dict[str, Any]:
    return {
        "Stage": {"Type": "String", "AllowedValues": ["dev", "prod"], "Description": "The Vigil stage."},
        "TablePrefix": {
            "Type": "String",
            "AllowedPattern": "^[a-z0-9][a-z0-9-]{1,40}-$",
            "Description": "Prefix of every table, queue and bucket name (lower case, ends with '-').",
        },
        "CheckRegions": {
            "Type": "String",
            "Default": ",".join(DEFAULT_REGIONS),
            "AllowedPattern": "^[a-z0-9-]+(,[a-z0-9-]+)*$",
            "Description": "Comma-separated regions that run checks.",
        },
        "AppUrl": {
            "Type": "String",
            "AllowedPattern": "^https://[^/]+(/.*)?$",
            "Description": "Base URL of the frontend; every link in email points here.",
        },
        "EmailFrom": {
            "Type": "String",
            "MinLength": 3,
            # One "@", and a domain in lower case: IAM matches the SES identity it allows (EmailFrom's domain) exactly.
            "AllowedPattern": "^[^@]*[^@<>\\s]@[^@<>\\sA-Z]+>?$",
            "ConstraintDescription": "an address, or a name and one: Vigil <no-reply@example.com>",
            "Description": "Sender of Vigil's email, a verified SES identity, e.g. 'Vigil <no-reply@example.com>'.",
        },
        "SupportEmail": {
            "Type": "String",
            "MinLength": 3,
            "Description": "An address people read (not a no-reply), named in account emails as where to get help.",
        },
        "AlarmEmail": {
            "Type": "String",
            "Default": "",
            "Description": "Optional address subscribed to the alarm topic.",
        },
        "SmsSpendAlarmUsd": {
            "Type": "Number",
            "MinValue": 0.5,
            "Description": "SMS spend this month (USD) that alarms: about 80 % of the account's SNS MonthlySpendLimit"
            " (1 USD until raised: aws sns get-sms-attributes).",
        },
        "LogLevel": {
            "Type": "String",
            "Default": "INFO",
            "AllowedValues": ["DEBUG", "INFO", "WARNING", "ERROR"],
            "Description": "The functions' log level (the stage's LOG_LEVEL in .chalice/config.json); Lambda filters"
            " below it.",
        },
        "StripePricePro": {
            "Type": "String",
            "AllowedPattern": "^price_[A-Za-z0-9_]+$",
            "Description": "The Stripe price id of the pro plan.",
        },
        "StripePriceEnterprise": {
            "Type": "String",
            "AllowedPattern": "^price_[A-Za-z0-9_]+$",
            "Description": "The Stripe price id of the enterprise plan.",
        },
    }


API_SECRETS = ("SECRET_KEY", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET")


def api_environment() -> dict[str, Any]:
    """The deployment-specific part of the API function's environment; config.json supplies the rest."""
    return {
        "VIGIL_STAGE": ref("Stage"),
        "VIGIL_FUNCTION": "api",
        "TABLE_PREFIX": ref("TablePrefix"),
        "CHECK_REGIONS": ref("CheckRegions"),
        "APP_URL": ref("AppUrl"),
        "EMAIL_FROM": ref("EmailFrom"),
        "SUPPORT_EMAIL": ref("SupportEmail"),
        # Resolved by CloudFormation at deploy time: the secret is in no file, parameter or stack event.
        "SECRET_KEY": sub(SECRET_KEY_REF),
        "STRIPE_SECRET_KEY": sub(STRIPE_SECRET_KEY_REF),
        "STRIPE_WEBHOOK_SECRET": sub(STRIPE_WEBHOOK_SECRET_REF),
        "STRIPE_PRICE_PRO": ref("StripePricePro"),
        "STRIPE_PRICE_ENTERPRISE": ref("StripePriceEnterprise"),
        # Where the published status pages are (links in pages, feeds and the admin API).
        "STATUS_BASE_URL": sub("https://${StatusDistribution.DomainName}"),
    }


def gateway_responses() -> dict[str, Any]:
    responses = {}
    for kind, (status, code, title), detail in GATEWAY_RESPONSES:
        body = json.dumps(
            {
                "type": f"${{AppUrl}}/docs#problem-{code}",
                "title": title,
                "status": status,
                "detail": detail,
                "code": code,
            }
        )
        headers = {"gatewayresponse.header.Content-Type": "'application/problem+json'"}
        if status == 429:
            headers["gatewayresponse.header.Retry-After"] = "'1'"
        responses[kind] = {
            "statusCode": str(status),
            "responseParameters": headers,
            "responseTemplates": {"application/json": sub(body)},
        }
    return responses


# What a function reading a queue (an SQS event source) needs.
SQS_CONSUME = [
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ReceiveMessage",
]


READ = ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:Query"]
UPDATE = [*READ, "dynamodb:UpdateItem"]
APPEND = [*UPDATE, "dynamodb:PutItem"]
PRUNE = [*APPEND, "dynamodb:DeleteItem"]  # append, and delete one item at a time (a bounded log's oldest)
WRITE = [*APPEND, "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem", "dynamodb:DeleteItem"]
R, U, A, P, W = "read", "update", "append", "prune", "write"  # what a function may do to a table's items
LEVELS = {R: READ, U: UPDATE, A: APPEND, P: PRUNE, W: WRITE}

# What each function's code reads and writes, table by table (by the models' logical names): never a Scan, never a
# table it does not touch.  tests/iam.py holds every AWS call the test suite makes for a function against its policy,
# so a path that needs more fails its test, not production.
FUNCTION_TABLES: dict[str, dict[str, str]] = {
    CHALICE_FUNCTION: {
        **dict.fromkeys(("check_progress", "result_periods", "rollups"), R),
        "data_keys": A,  # the data key new secrets are sealed with: read, and replaced once old (sealing)
        **dict.fromkeys(
            (
                "alert_channels",
                "api_keys",
                "auth_tokens",
                "deliveries",
                "email_suppressions",  # a bounce taken back (unsuppress)
                "events",
                "heartbeat_pings",
                "heartbeat_tokens",
                "incidents",
                "invitations",
                "maintenance_windows",
                "memberships",
                "monitor_changes",
                "monitor_states",
                "monitors",
                "rate_limits",
                "result_packs",  # a heartbeat ping is a result
                "sessions",
                "status_page_slugs",
                "status_pages",
                "stripe_customers",
                "stripe_events",
                "teams",
                "usage",
                "user_emails",
                "users",
            ),
            W,
        ),
    },
    # The tick reads what is due; the heartbeat sweep writes each miss as a result and moves the monitor's deadline;
    # the maintenance edges pass moves a window's edge on and writes its monitors' incident state, as the incident
    # handler does (``incidents.edges``), pruning a full timeline's oldest kept entry as it does (``events.kept``).
    "Scheduler": {
        "check_progress": P,  # the workers' measured CPU and their sizes (monitors.workload)
        "maintenance_windows": U,
        **dict.fromkeys(("incidents", "monitor_changes", "monitor_states", "monitors", "result_packs"), A),
        "events": P,  # found by a fresh-eyes review of issue 20
    },
    # Both read each team's plan (its retention) from the team.
    "Aggregator": {"check_progress": A, "result_packs": R, "result_periods": A, "rollups": A, "teams": R},
    "Retake": {"result_packs": R, "result_periods": A, "rollups": A, "teams": R},
    "Incidents": {
        "maintenance_windows": R,
        **dict.fromkeys(("incidents", "monitor_changes", "monitor_states", "monitors"), A),
        "events": P,  # a flapping region's timeline entries past the kept ones are deleted (incidents.events.kept)
    },
    "Alerts": {
        **dict.fromkeys(("alert_channels", "memberships", "monitors", "users"), R),
        "alert_marks": U,
        "deliveries": A,
    },
    "AlertDeliveries": {
        **dict.fromkeys(("email_suppressions", "events", "incidents", "memberships", "monitors", "users"), R),
        **dict.fromkeys(("alert_channels", "alert_marks"), U),  # a channel's health, a cooldown's mark
        "deliveries": A,
        # A password reset link, mailed off the request that asked (auth.send_password_reset).
        "user_emails": R,
        "rate_limits": U,
        "auth_tokens": A,
    },
    "EmailFeedback": {"email_suppressions": A},  # adds a suppression, never lifts one
    **{
        name: dict.fromkeys(
            (
                "events",
                "incidents",
                "maintenance_windows",
                "monitors",
                "result_periods",
                "rollups",
                "status_page_slugs",  # which page a slug publishes, read back after each write
                "status_pages",
            ),
            R,
        )
        for name in ("StatusPages", "StatusPagesRefresh")
    },
}
# Beyond its tables: what each function sends, publishes or reads (SQS_CONSUME for its event source is added from
# the mappings, sqs:SendMessage to HANDLER_FAILURES for every function that parks failures there).
SEND_EMAIL = "email"
SEND_SMS = "sms"
STATUS_PAGES_WRITE = "status_pages_write"
STATUS_PAGES_READ = "status_pages_read"
SEND_ALERT_QUEUE = "alert_queue"
SEND_CHECK_QUEUES = "check_queues"
SIZE_CHECKERS = "size_checkers"
SEAL_SECRETS = "seal_secrets"
OPEN_CHANNEL_SECRETS = "open_channel_secrets"
OPEN_MONITOR_CREDENTIALS = "open_monitor_credentials"
# Only the functions that send open secrets (sealing), each only those of the purpose it sends with: the API (test
# notifications and test checks, and a change that keeps a stored secret), the deliverer (channels), the scheduler
# (monitors' credential headers, into the jobs).  Only the API seals.
FUNCTION_GRANTS: dict[str, tuple[str, ...]] = {
    CHALICE_FUNCTION: (SEND_EMAIL, SEND_SMS, STATUS_PAGES_READ, STATUS_PAGES_WRITE, SEND_ALERT_QUEUE, SEAL_SECRETS),
    "Scheduler": (SEND_CHECK_QUEUES, OPEN_MONITOR_CREDENTIALS, SIZE_CHECKERS),
    "Alerts": (SEND_ALERT_QUEUE,),
    "AlertDeliveries": (SEND_EMAIL, SEND_SMS, SEND_ALERT_QUEUE, OPEN_CHANNEL_SECRETS),
    "StatusPages": (STATUS_PAGES_WRITE,),
    # It lists the pages' folders too: a slug whose objects outlived its page (a delete S3 half-did) is removed.
    "StatusPagesRefresh": (STATUS_PAGES_WRITE, STATUS_PAGES_READ),
}
# The queue each SQS-triggered function consumes (Lambda's poller uses the function's role).
FUNCTION_QUEUES = {ALERT_FUNCTION: "AlertQueue", EMAIL_FEEDBACK_FUNCTION: "EmailEventsQueue"}


def function_role(name: str) -> str:
    """The role Chalice generates for a function: its own, one per function."""
    return CHALICE_ROLE if name == CHALICE_FUNCTION else f"{name}Role"


def _table_arn(logical: str) -> dict[str, str]:
    return arn("dynamodb", f"table/${{TablePrefix}}{logical}")


# EmailFrom's domain: after its "@", before any ">" (its AllowedPattern has exactly one "@").
EMAIL_FROM_DOMAIN = {
    "Fn::Select": [0, {"Fn::Split": [">", {"Fn::Select": [1, {"Fn::Split": ["@", ref("EmailFrom")]}]}]}]
}


def _ses_identity(resource: str) -> dict[str, Any]:
    return {
        "Fn::Sub": [
            "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:" + resource,
            {"Domain": EMAIL_FROM_DOMAIN},
        ]
    }


def _grant(grant: str) -> dict[str, Any]:
    statements: dict[str, dict[str, Any]] = {
        # As EmailFrom's domain (a domain identity) or an address of it (an address identity), nothing else.
        SEND_EMAIL: {
            "Sid": "Email",
            "Action": ["ses:SendRawEmail"],
            "Resource": [
                _ses_identity("identity/${Domain}"),
                _ses_identity("identity/*@${Domain}"),
                arn("ses", "configuration-set/" + CONFIGURATION_SET_NAME),
            ],
        },
        # SMS alerts go to phone numbers, which IAM cannot name: allowed is publishing to anything that is not a
        # topic (an SNS ARN), so no topic of the account can be published to.
        SEND_SMS: {"Sid": "Sms", "Action": ["sns:Publish"], "NotResource": [sub("arn:${AWS::Partition}:sns:*:*:*")]},
        STATUS_PAGES_WRITE: {
            "Sid": "StatusPagesWrite",
            "Action": ["s3:DeleteObject", "s3:PutObject"],
            "Resource": [sub("${StatusBucket.Arn}/status/*")],
        },
        # Reading a page back (whether it is published); ListBucket makes a missing one a 404, not a 403.
        STATUS_PAGES_READ: {
            "Sid": "StatusPagesRead",
            "Action": ["s3:GetObject", "s3:ListBucket"],
            "Resource": [sub("${StatusBucket.Arn}/status/*"), {"Fn::GetAtt": ["StatusBucket", "Arn"]}],
        },
        # Deliveries and group flushes, and their retries.
        SEND_ALERT_QUEUE: {
            "Sid": "AlertQueueSend",
            "Action": ["sqs:GetQueueUrl", "sqs:SendMessage"],
            "Resource": [{"Fn::GetAtt": ["AlertQueue", "Arn"]}],
        },
        # Every region's check queue: per-region checker stacks create theirs under the same prefix.
        SEND_CHECK_QUEUES: {
            "Sid": "CheckQueues",
            "Action": ["sqs:GetQueueUrl", "sqs:SendMessage"],
            "Resource": [arn("sqs", "${TablePrefix}checks-*", region="*")],
        },
        # Every region's worker: the scheduler sets its memory from its load (scheduler.sizing), nothing else.
        SIZE_CHECKERS: {
            "Sid": "SizeCheckers",
            "Action": ["lambda:GetFunctionConfiguration", "lambda:UpdateFunctionConfiguration"],
            "Resource": [arn("lambda", "function:${TablePrefix}checker", region="*")],
        },
        # New data keys, and opening them, for every purpose (the API seals, and sends tests).
        SEAL_SECRETS: _secrets_key_use("SealSecrets", ["kms:Decrypt", "kms:GenerateDataKey"], PURPOSES),
        OPEN_CHANNEL_SECRETS: _secrets_key_use("OpenChannelSecrets", ["kms:Decrypt"], (ALERT_CHANNEL,)),
        OPEN_MONITOR_CREDENTIALS: _secrets_key_use("OpenMonitorCredentials", ["kms:Decrypt"], (MONITOR_HEADERS,)),
    }
    return {"Effect": "Allow", **statements[grant]}


def _secrets_key_use(sid: str, actions: list[str], purposes: tuple[str, ...]) -> dict[str, Any]:
    """``actions`` on the stage's secrets key, for data keys of ``purposes`` only (their KMS encryption context)."""
    return {
        "Sid": sid,
        "Action": actions,
        "Resource": [{"Fn::GetAtt": [SECRETS_KEY, "Arn"]}],
        "Condition": {"StringEquals": {"kms:EncryptionContext:purpose": list(purposes)}},
    }


def secrets_key() -> dict[str, Any]:
    """The KMS key secrets at rest are sealed with (``chalicelib.sealing``): rotated yearly by KMS, and kept when the
    stack goes (every sealed secret needs it).  Its policy lets the account's IAM policies grant its use (each
    function's own, ``FUNCTION_GRANTS``), and refuses any data key without one of Vigil's purposes."""
    return {
        SECRETS_KEY: {
            "Type": "AWS::KMS::Key",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "Description": sub("Vigil ${Stage}: secrets at rest (alert channels, monitors' credential headers)"),
                "EnableKeyRotation": True,
                "KeyPolicy": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "TheAccountAdministersItAndIamGrantsItsUse",
                            "Effect": "Allow",
                            "Principal": {"AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")},
                            "Action": "kms:*",
                            "Resource": "*",
                        },
                        {
                            # A missing context is "not equal" too: no data key outside Vigil's purposes.
                            "Sid": "OnlyVigilsPurposes",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": [
                                "kms:Decrypt",
                                "kms:Encrypt",
                                "kms:GenerateDataKey",
                                "kms:GenerateDataKeyWithoutPlaintext",
                                "kms:ReEncryptFrom",
                                "kms:ReEncryptTo",
                            ],
                            "Resource": "*",
                            "Condition": {"StringNotEquals": {"kms:EncryptionContext:purpose": list(PURPOSES)}},
                        },
                    ],
                },
            },
        },
        "SecretsKeyAlias": {
            "Type": "AWS::KMS::Alias",
            "Properties": {"AliasName": sub(SECRETS_KEY_ALIAS), "TargetKeyId": ref(SECRETS_KEY)},
        },
    }


def function_policy(name: str) -> dict[str, Any]:
    """One function's own policy, on its own role: its tables, its event source, where it parks failures, and what
    it sends (``FUNCTION_TABLES``, ``FUNCTION_GRANTS``)."""
    tables = FUNCTION_TABLES[name]
    statements: list[dict[str, Any]] = []
    for access, actions in LEVELS.items():
        chosen = sorted(t for t, a in tables.items() if a == access)
        if chosen:
            statements.append(
                {
                    "Sid": f"Tables{access.capitalize()}",
                    "Effect": "Allow",
                    "Action": actions,
                    # A table and its indexes (table/NAME/index/INDEX).
                    "Resource": [r for t in chosen for r in (_table_arn(t), _table_arn(t + "/index/*"))],
                }
            )
    if name in STREAM_FUNCTIONS:
        statements.append(
            {
                "Sid": "Stream",
                "Effect": "Allow",
                "Action": [
                    "dynamodb:DescribeStream",
                    "dynamodb:GetRecords",
                    "dynamodb:GetShardIterator",
                    "dynamodb:ListStreams",
                ],
                "Resource": [{"Fn::GetAtt": [STREAM_FUNCTIONS[name], "StreamArn"]}],
            }
        )
    if name in FUNCTION_QUEUES:
        statements.append(
            {
                "Sid": "Consume",
                "Effect": "Allow",
                "Action": SQS_CONSUME,
                "Resource": [{"Fn::GetAtt": [FUNCTION_QUEUES[name], "Arn"]}],
            }
        )
    if name in STREAM_FUNCTIONS or name in SCHEDULED_WITH_FAILURES:
        # Stream batches and scheduled passes given up on (Lambda sends them with the function's role).
        statements.append(
            {
                "Sid": "HandlerFailures",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage"],
                "Resource": [{"Fn::GetAtt": [HANDLER_FAILURES, "Arn"]}],
            }
        )
    statements += [_grant(g) for g in FUNCTION_GRANTS.get(name, ())]
    if SEND_CHECK_QUEUES in FUNCTION_GRANTS.get(name, ()):
        # The check queues' pattern also matches their dead-letter queues: never those.
        statements.append(
            {
                "Sid": "NotCheckDeadLetters",
                "Effect": "Deny",
                "Action": ["sqs:SendMessage"],
                "Resource": [arn("sqs", "${TablePrefix}checks-*-dlq", region="*")],
            }
        )
    return {
        "Type": "AWS::IAM::Policy",
        "Properties": {
            "PolicyName": sub(f"${{TablePrefix}}{name}"),
            "Roles": [ref(function_role(name))],
            "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
        },
    }


def function_policies() -> dict[str, Any]:
    return {f"{name}Policy": function_policy(name) for name in (CHALICE_FUNCTION, *EVENT_FUNCTIONS)}


# The route's template (``$context.resourcePath``), never the path asked for: a heartbeat's ping URL carries its
# token (``/v1/ping/{token}``), which must not reach a log.  No query string, no header but the user agent.
API_ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "time": "$context.requestTimeEpoch",
    "ip": "$context.identity.sourceIp",
    "method": "$context.httpMethod",
    "route": "$context.resourcePath",
    "status": "$context.status",
    "bytes": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "integrationMs": "$context.integrationLatency",
    "gatewayError": "$context.error.responseType",
    "userAgent": "$context.identity.userAgent",
}


def service_role(service: str, *managed: str) -> dict[str, Any]:
    """A role an AWS service assumes, with AWS's managed service-role policies for it."""
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": f"{service}.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "ManagedPolicyArns": [
                sub(f"arn:${{AWS::Partition}}:iam::aws:policy/service-role/{name}") for name in managed
            ],
        },
    }


def api_access_logs() -> dict[str, Any]:
    """The API stage's access log group, and the account setting API Gateway needs to write to CloudWatch Logs at
    all: a role it assumes (``AWS::ApiGateway::Account`` is one setting per account and region: a stack that sets
    another role replaces it, and deleting this stack leaves it set)."""
    return {
        "ApiAccessLogGroup": {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": sub("/aws/apigateway/${TablePrefix}api-access"),
                "RetentionInDays": LOG_RETENTION_DAYS,
            },
        },
        "ApiGatewayLogsRole": service_role("apigateway", "AmazonAPIGatewayPushToCloudWatchLogs"),
        "ApiGatewayAccount": {
            "Type": "AWS::ApiGateway::Account",
            "Properties": {"CloudWatchRoleArn": {"Fn::GetAtt": ["ApiGatewayLogsRole", "Arn"]}},
        },
    }


# Every bucket of ours: no public access of any kind, objects owned by the bucket (no ACLs), encrypted at rest.
PRIVATE_BUCKET: dict[str, Any] = {
    "PublicAccessBlockConfiguration": {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    },
    "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
    "BucketEncryption": {
        "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
    },
}


def status_pages() -> dict[str, Any]:
    """A private bucket; CloudFront reads only ``status/*`` through Origin Access Control."""
    bucket_arn = {"Fn::GetAtt": ["StatusBucket", "Arn"]}
    return {
        "StatusBucket": {
            "Type": "AWS::S3::Bucket",
            # Status pages are regenerated from the tables, but a non-empty bucket cannot be deleted by
            # CloudFormation anyway: keep it rather than fail the stack deletion.
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BucketName": sub(STATUS_BUCKET_NAME),
                **PRIVATE_BUCKET,
            },
        },
        "StatusBucketPolicy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": ref("StatusBucket"),
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "CloudFrontReadsStatusPages",
                            "Effect": "Allow",
                            "Principal": {"Service": "cloudfront.amazonaws.com"},
                            "Action": "s3:GetObject",
                            "Resource": sub("${StatusBucket.Arn}/status/*"),
                            "Condition": {
                                "StringEquals": {
                                    "AWS:SourceArn": sub(
                                        "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${StatusDistribution}"
                                    )
                                }
                            },
                        },
                        {
                            "Sid": "TlsOnly",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [bucket_arn, sub("${StatusBucket.Arn}/*")],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        },
                    ],
                },
            },
        },
        "StatusOriginAccessControl": {
            "Type": "AWS::CloudFront::OriginAccessControl",
            "Properties": {
                "OriginAccessControlConfig": {
                    "Name": sub("${TablePrefix}status-pages-${AWS::Region}"),
                    "OriginAccessControlOriginType": "s3",
                    "SigningBehavior": "always",
                    "SigningProtocol": "sigv4",
                }
            },
        },
        "StatusIndexFunction": {
            # https://DOMAIN/acme and https://DOMAIN/acme/ serve status/acme/index.html (S3 has no index documents
            # behind Origin Access Control); index.json and feed.atom pass through.
            "Type": "AWS::CloudFront::Function",
            "Properties": {
                "Name": sub("${TablePrefix}status-index-${AWS::Region}"),
                "AutoPublish": True,
                "FunctionConfig": {"Comment": "Status page index documents", "Runtime": "cloudfront-js-2.0"},
                "FunctionCode": STATUS_INDEX_FUNCTION,
            },
        },
        "StatusDistribution": {
            "Type": "AWS::CloudFront::Distribution",
            "Properties": {
                "DistributionConfig": {
                    "Comment": sub("Vigil status pages (${Stage})"),
                    "Enabled": True,
                    "HttpVersion": "http2and3",
                    "PriceClass": "PriceClass_100",
                    "Origins": [
                        {
                            # https://DOMAIN/acme/index.html serves s3://BUCKET/status/acme/index.html.
                            "Id": "status-pages",
                            "DomainName": {"Fn::GetAtt": ["StatusBucket", "RegionalDomainName"]},
                            "OriginPath": "/status",
                            "S3OriginConfig": {"OriginAccessIdentity": ""},
                            "OriginAccessControlId": {"Fn::GetAtt": ["StatusOriginAccessControl", "Id"]},
                        }
                    ],
                    # Behind Origin Access Control the bucket answers 403 for a key it lacks: an unknown or
                    # unpublished page is a 404 with our own page (published hourly by the refresh), cached briefly
                    # so that a page published a minute later is seen.
                    "CustomErrorResponses": [
                        {
                            "ErrorCode": code,
                            "ResponseCode": 404,
                            "ResponsePagePath": "/404.html",
                            "ErrorCachingMinTTL": NOT_FOUND_CACHE_S,
                        }
                        for code in (403, 404)
                    ],
                    "DefaultCacheBehavior": {
                        "TargetOriginId": "status-pages",
                        "ViewerProtocolPolicy": "redirect-to-https",
                        "AllowedMethods": ["GET", "HEAD"],
                        "CachedMethods": ["GET", "HEAD"],
                        "Compress": True,
                        "CachePolicyId": CACHING_OPTIMIZED,
                        "ResponseHeadersPolicyId": SECURITY_HEADERS,
                        "FunctionAssociations": [
                            {
                                "EventType": "viewer-request",
                                "FunctionARN": {"Fn::GetAtt": ["StatusIndexFunction", "FunctionARN"]},
                            }
                        ],
                    },
                }
            },
        },
    }


def queues() -> dict[str, Any]:
    """A region's check queue and its dead-letter queue, in that region's checker stack.

    Not in the home region's main stack: its checker stack creates the home region's queue, under the same name.
    """
    return {
        "CheckDeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": sub(CHECK_QUEUE_NAME + "-dlq"),
                "MessageRetentionPeriod": 14 * 24 * 3600,
                "MaximumMessageSize": SQS_MAX_MESSAGE_BYTES,
                "SqsManagedSseEnabled": True,
            },
        },
        "CheckQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": sub(CHECK_QUEUE_NAME),
                "VisibilityTimeout": CHECK_QUEUE_VISIBILITY_S,
                # A job is for one minute's check: a backlog hours old (workers down or throttled) would only spend
                # a burst of stale checks on the way back.
                "MessageRetentionPeriod": CHECK_JOB_RETENTION_S,
                # Stated, not left to the default: a queue created while SQS's limit was 256 KiB keeps that.
                "MaximumMessageSize": SQS_MAX_MESSAGE_BYTES,
                "SqsManagedSseEnabled": True,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": ["CheckDeadLetterQueue", "Arn"]},
                    "maxReceiveCount": MAX_RECEIVES,
                },
            },
        },
    }


WORK_RETENTION_S = 4 * 24 * 3600  # SQS's default, stated: an alert delivery or a bounce is worth it for days
# What a stack deletion (or a replacement) does with a resource that holds something, stated for each (cfn-lint I3011):
# tables, buckets and vaults are kept (Retain, beside them); queues hold work in flight and go (redrive or read a
# dead-letter queue first: docs/runbook.md); log groups go too: several have fixed names (the worker's, the API's
# access log), and a kept one would stop the stack from being created again.
DELETION_POLICIES = {"AWS::SQS::Queue": "Delete", "AWS::Logs::LogGroup": "Delete"}


def with_deletion_policies(resources: dict[str, Any]) -> dict[str, Any]:
    """``resources``, with ``DELETION_POLICIES`` stated on each queue and log group."""
    for resource in resources.values():
        policy = DELETION_POLICIES.get(resource.get("Type", ""))
        if policy:
            resource.setdefault("DeletionPolicy", policy)
            resource.setdefault("UpdateReplacePolicy", policy)
    return resources


def queue_with_dead_letters(logical: str, name: str, visibility_s: int) -> dict[str, Any]:
    """A queue (``<logical>Queue``) and its dead-letter queue (``<logical>DeadLetterQueue``, kept 14 days, which
    ``alarms`` watches): a message received five times without success is parked there."""
    return {
        f"{logical}DeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": sub(name + "-dlq"),
                "MessageRetentionPeriod": 14 * 24 * 3600,
                "SqsManagedSseEnabled": True,
            },
        },
        f"{logical}Queue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": sub(name),
                "VisibilityTimeout": visibility_s,
                "MessageRetentionPeriod": WORK_RETENTION_S,
                "SqsManagedSseEnabled": True,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": [f"{logical}DeadLetterQueue", "Arn"]},
                    "maxReceiveCount": MAX_RECEIVES,
                },
            },
        },
    }


def alert_queue() -> dict[str, Any]:
    """The alerts queue (one message per delivery attempt; delays are retries and groups) and its DLQ."""
    return queue_with_dead_letters("Alert", ALERT_QUEUE_NAME, ALERT_QUEUE_VISIBILITY_S)


def email_feedback() -> dict[str, Any]:
    """Bounces and complaints back from SES: the configuration set every email is sent with publishes them to a
    topic, which feeds a queue (raw) that the email feedback handler reads (``chalicelib/events/mail``); and
    alarms on the account's bounce and complaint rates, before SES reviews or pauses the sender."""
    rate_alarm = {
        "Namespace": "AWS/SES",
        "Statistic": "Maximum",
        "Period": 3600,
        "EvaluationPeriods": 1,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": [ref("AlarmTopic")],
        "OKActions": [ref("AlarmTopic")],
    }
    return {
        "EmailEventsTopic": {
            "Type": "AWS::SNS::Topic",
            "Properties": {"TopicName": sub(EMAIL_EVENTS_NAME), "DisplayName": sub("Vigil ${Stage} email events")},
        },
        **queue_with_dead_letters("EmailEvents", EMAIL_EVENTS_NAME, 6 * 30),  # six times the handler's 30 s
        "EmailEventsQueuePolicy": {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [ref("EmailEventsQueue")],
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "FromTheEmailEventsTopic",
                            "Effect": "Allow",
                            "Principal": {"Service": "sns.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": {"Fn::GetAtt": ["EmailEventsQueue", "Arn"]},
                            "Condition": {"ArnEquals": {"aws:SourceArn": ref("EmailEventsTopic")}},
                        }
                    ],
                },
            },
        },
        # SES publishes to the topic only if the topic allows it, for this account's configuration set.
        "EmailEventsTopicPolicy": {
            "Type": "AWS::SNS::TopicPolicy",
            "Properties": {
                "Topics": [ref("EmailEventsTopic")],
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "FromSes",
                            "Effect": "Allow",
                            "Principal": {"Service": "ses.amazonaws.com"},
                            "Action": "sns:Publish",
                            "Resource": ref("EmailEventsTopic"),
                            "Condition": {
                                "StringEquals": {"AWS:SourceAccount": sub("${AWS::AccountId}")},
                                "StringLike": {
                                    "AWS:SourceArn": arn("ses", "configuration-set/" + CONFIGURATION_SET_NAME)
                                },
                            },
                        }
                    ],
                },
            },
        },
        "EmailEventsSubscription": {
            "Type": "AWS::SNS::Subscription",
            "Properties": {
                "TopicArn": ref("EmailEventsTopic"),
                "Protocol": "sqs",
                "Endpoint": {"Fn::GetAtt": ["EmailEventsQueue", "Arn"]},
                "RawMessageDelivery": True,
            },
        },
        "EmailConfigurationSet": {
            "Type": "AWS::SES::ConfigurationSet",
            "Properties": {"Name": sub(CONFIGURATION_SET_NAME)},
        },
        "EmailConfigurationSetEvents": {
            "Type": "AWS::SES::ConfigurationSetEventDestination",
            "Properties": {
                "ConfigurationSetName": ref("EmailConfigurationSet"),
                "EventDestination": {
                    "Name": "bounces-and-complaints",
                    "Enabled": True,
                    "MatchingEventTypes": ["bounce", "complaint"],
                    "SnsDestination": {"TopicARN": ref("EmailEventsTopic")},
                },
            },
        },
        "EmailBounceRateAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                **rate_alarm,
                "AlarmDescription": "SES bounce rate over 4 %: SES reviews the account at 5 % (docs/runbook.md).",
                "MetricName": "Reputation.BounceRate",
                "Threshold": SES_BOUNCE_RATE_ALARM,
            },
        },
        "EmailComplaintRateAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                **rate_alarm,
                "AlarmDescription": "SES complaint rate over 0.08 %: SES reviews the account at 0.1 %"
                " (docs/runbook.md).",
                "MetricName": "Reputation.ComplaintRate",
                "Threshold": SES_COMPLAINT_RATE_ALARM,
            },
        },
    }


HANDLER_FAILURES = "HandlerFailuresDeadLetterQueue"
# Every scheduled handler: an invocation failed three times is parked (and alarmed), never dropped unseen.
SCHEDULED_WITH_FAILURES = ("Scheduler", "Aggregator", "StatusPagesRefresh")


def handler_failures() -> dict[str, Any]:
    """Where what a handler could not apply is parked, with an alarm (``alarms``): a stream batch given up on
    after its retries (a check result the incident handler or the aggregator could not apply), and an
    aggregator pass that failed three times (the next pass takes its periods again, from the watermark)."""
    return {
        HANDLER_FAILURES: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": sub("${TablePrefix}handler-failures-dlq"),
                "MessageRetentionPeriod": 14 * 24 * 3600,
                "SqsManagedSseEnabled": True,
            },
        },
        **{
            f"{name}EventInvokeConfig": {
                "Type": "AWS::Lambda::EventInvokeConfig",
                "Properties": {
                    "FunctionName": ref(name),
                    "Qualifier": "$LATEST",
                    "MaximumRetryAttempts": 2,
                    "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [HANDLER_FAILURES, "Arn"]}}},
                },
            }
            for name in SCHEDULED_WITH_FAILURES
        },
    }


def alarms(resources: dict[str, Any]) -> dict[str, Any]:
    """An SNS topic, and an alarm on every dead-letter queue: a message there is work that was given up on."""
    out: dict[str, Any] = {
        "AlarmTopic": {"Type": "AWS::SNS::Topic", "Properties": {"DisplayName": sub("Vigil ${Stage} alarms")}},
        "AlarmEmailSubscription": {
            "Type": "AWS::SNS::Subscription",
            "Condition": "HasAlarmEmail",
            "Properties": {"TopicArn": ref("AlarmTopic"), "Protocol": "email", "Endpoint": ref("AlarmEmail")},
        },
    }
    dead_letter_queues = [
        name
        for name, resource in resources.items()
        if resource["Type"] == "AWS::SQS::Queue" and resource["Properties"]["QueueName"]["Fn::Sub"].endswith("-dlq")
    ]
    for name in dead_letter_queues:
        out[name + "Alarm"] = {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmDescription": sub(f"Messages in ${{{name}.QueueName}}: work given up on after its retries."),
                "Namespace": "AWS/SQS",
                "MetricName": "ApproximateNumberOfMessagesVisible",
                "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [name, "QueueName"]}}],
                "Statistic": "Maximum",
                "Period": 300,
                "EvaluationPeriods": 1,
                "Threshold": 0,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": [ref("AlarmTopic")],
                "OKActions": [ref("AlarmTopic")],
            },
        }
    return out


def _alarm(description: str, namespace: str, metric: str, dimensions: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A CloudWatch alarm to the operators' topic (and its all-clear); ``fields`` set the statistic, period,
    threshold and comparison.  docs/runbook.md has an entry for each (``test_every_alarm_has_a_runbook_entry``)."""
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": description,
            "Namespace": namespace,
            "MetricName": metric,
            "Dimensions": [{"Name": name, "Value": value} for name, value in dimensions.items()],
            "TreatMissingData": "notBreaching",
            "AlarmActions": [ref("AlarmTopic")],
            "OKActions": [ref("AlarmTopic")],
            **fields,
        },
    }


OVER_ZERO = {"Threshold": 0, "ComparisonOperator": "GreaterThanThreshold"}
# The dimensions Powertools puts on Vigil's own metrics (namespace "Vigil"): the service, and the stage
# (``bootstrap.configure_core``), so that two stages in one account never answer for each other.
VIGIL_METRICS = {"service": SERVICE, "stage": ref("Stage")}


def _heartbeat(description: str, metric: str, period: int, periods: int) -> dict[str, Any]:
    """An alarm when Vigil's ``metric`` (one sample per finished run) has no sample for ``periods`` periods
    running: missing data is the failure."""
    return _alarm(
        description,
        "Vigil",
        metric,
        VIGIL_METRICS,
        Statistic="SampleCount",
        Period=period,
        EvaluationPeriods=periods,
        DatapointsToAlarm=periods,
        Threshold=1,
        ComparisonOperator="LessThanThreshold",
        TreatMissingData="breaching",
    )


def _vigil_failures(description: str, metric: str, period: int, periods: int = 1) -> dict[str, Any]:
    """An alarm when Vigil counts any ``metric`` (a failure it survived and logged) in ``periods`` periods running."""
    return _alarm(
        description,
        "Vigil",
        metric,
        VIGIL_METRICS,
        Statistic="Sum",
        Period=period,
        EvaluationPeriods=periods,
        **OVER_ZERO,
    )


def _backlog(queue: str, description: str, *, minutes: int) -> dict[str, Any]:
    """Messages of ``queue`` visible (received by nobody) every minute for ``minutes`` running."""
    return _alarm(
        description,
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"QueueName": {"Fn::GetAtt": [queue, "QueueName"]}},
        Statistic="Minimum",
        Period=60,
        EvaluationPeriods=minutes,
        **OVER_ZERO,
    )


def operating_alarms() -> dict[str, Any]:
    """When monitoring itself stops or degrades: the tick missing a minute, check jobs a region did not get, a
    function failing or throttled, a stream falling behind, the API answering 5XX, SMS spend near its cap."""
    out: dict[str, Any] = {
        # A tick that ran to its end counts one; a minute without one means no checks were planned for the next.
        "SchedulerHeartbeatAlarm": _heartbeat(
            "No scheduler tick finished in two minutes: no checks are being planned.", "Ticks", 60, 2
        ),
        "CheckSendFailuresAlarm": _vigil_failures(
            "A region's check jobs could not be sent (its queue failed twice in a tick): its checks are missing.",
            "CheckSendFailures",
            60,
        ),
        # A work queue's consumer polls all the time: messages left visible minute after minute are work nobody
        # takes (the function failing at its start, throttled, or its event source mapping disabled).
        "AlertQueueBacklogAlarm": _backlog(
            "AlertQueue", "Alert deliveries wait untaken for 3 minutes: alerts are late.", minutes=3
        ),
        "EmailEventsBacklogAlarm": _backlog(
            "EmailEventsQueue",
            "SES bounces and complaints wait untaken for 15 minutes: addresses are not being suppressed.",
            minutes=15,
        ),
        # A pass that finished counts its periods (0 too): three passes running without one and uptime, bars and
        # the status pages' history stop moving.
        "AggregatorHeartbeatAlarm": _heartbeat(
            "No aggregator pass finished in 15 minutes: uptime and status page history are not updated.",
            "PeriodsAggregated",
            300,
            3,
        ),
        "HeartbeatSweepFailuresAlarm": _vigil_failures(
            "The heartbeat sweep failed: missed pings open no incident until it works again.",
            "HeartbeatSweepFailures",
            300,
        ),
        "WorkerSizeFailuresAlarm": _vigil_failures(
            "A region's check worker could not be sized from its load for 15 minutes: it costs more than it needs.",
            "WorkerSizeFailures",
            300,
            3,
        ),
        "MaintenanceEdgeFailuresAlarm": _vigil_failures(
            "A maintenance window's start or end was not crossed: its monitors' status waits for their next result.",
            "MaintenanceEdgeFailures",
            300,
        ),
        "Api5xxAlarm": _alarm(
            "Over 1 % of API requests answered 5XX for 5 minutes.",
            "AWS/ApiGateway",
            "5XXError",
            {"ApiName": sub(API_NAME), "Stage": API_STAGE},
            Statistic="Average",
            Period=300,
            EvaluationPeriods=1,
            Threshold=0.01,
            ComparisonOperator="GreaterThanThreshold",
        ),
        "SmsSpendAlarm": _alarm(
            "SMS spend this month is over 80 % of the account's SNS spend limit (SmsSpendAlarmUsd).",
            "AWS/SNS",
            "SMSMonthToDateSpentUSD",
            {},
            Statistic="Maximum",
            Period=3600,
            EvaluationPeriods=1,
            Threshold=ref("SmsSpendAlarmUsd"),
            ComparisonOperator="GreaterThanThreshold",
        ),
    }
    for name in (CHALICE_FUNCTION, *EVENT_FUNCTIONS):
        out.update(function_alarms(name, f"The {name} function"))
    for name in STREAM_FUNCTIONS:
        out[f"{name}IteratorAgeAlarm"] = _alarm(
            f"The {name} function is over a minute behind its stream: results or events wait.",
            "AWS/Lambda",
            "IteratorAge",
            {"FunctionName": ref(name)},
            Statistic="Maximum",
            Period=60,
            EvaluationPeriods=5,
            Threshold=60_000,
            ComparisonOperator="GreaterThanThreshold",
        )
    return out


def function_alarms(name: str, what: Any) -> dict[str, Any]:
    """``<name>ErrorsAlarm`` (failed in 3 of the last 5 minutes) and ``<name>ThrottlesAlarm`` (throttled at all)
    for the function ``name`` (``what`` says which, in the alarms' descriptions)."""
    function = {"FunctionName": ref(name)}

    def described(text: str) -> Any:
        return sub(f"{what['Fn::Sub']} {text}") if isinstance(what, dict) else f"{what} {text}"

    return {
        f"{name}ErrorsAlarm": _alarm(
            described("failed in 3 of the last 5 minutes."),
            "AWS/Lambda",
            "Errors",
            function,
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=5,
            DatapointsToAlarm=3,
            **OVER_ZERO,
        ),
        f"{name}ThrottlesAlarm": _alarm(
            described("was throttled: its work waits or is lost (account concurrency)."),
            "AWS/Lambda",
            "Throttles",
            function,
            Statistic="Sum",
            Period=300,
            EvaluationPeriods=1,
            **OVER_ZERO,
        ),
    }


def checker_alarms() -> dict[str, Any]:
    """A region's checker: failing, throttled, or a backlog of jobs no worker takes (checks late, or not made)."""
    return {
        **function_alarms("Checker", sub("The checker in ${AWS::Region}")),
        # Every job is delayed to just before its minute and held by a worker through it, so the oldest message's
        # age is always over a minute: a backlog of jobs nobody takes (visible for three minutes running) is the
        # sign that the region's checks are late or not made.
        "CheckQueueBacklogAlarm": _backlog(
            "CheckQueue",
            sub("Check jobs in ${AWS::Region} wait untaken for 3 minutes: that region's checks are late or missing."),
            minutes=3,
        ),
    }


# JSON logs; Lambda's own records (start, report) at WARN and above; the app's at the stage's level (Powertools
# follows Lambda's level when one is set, so it must be the stage's LOG_LEVEL, WARNING spelled WARN).
LOG_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARN", "ERROR": "ERROR"}
LOGGING_CONFIG = {
    "LogFormat": "JSON",
    "SystemLogLevel": "WARN",
    "ApplicationLogLevel": {"Fn::FindInMap": ["LambdaLogLevels", ref("LogLevel"), "Level"]},
}
LOG_LEVEL_MAPPING = {"LambdaLogLevels": {ours: {"Level": lambdas} for ours, lambdas in LOG_LEVELS.items()}}
# The tables whose loss would lose what customers made (not what is recomputed, expires or is a cache): backed up
# daily beside their point-in-time recovery (35 days), kept 35 days, and monthly, kept a year.
BACKED_UP_TABLES = (
    "users",
    "user_emails",
    "teams",
    "memberships",
    "invitations",
    "api_keys",
    "monitors",
    "heartbeat_tokens",
    "alert_channels",
    "maintenance_windows",
    "incidents",
    "status_pages",
    "status_page_slugs",
    "stripe_customers",
    "rollups",  # 400 days of uptime history: the result periods it is made from expire
    "events",  # incident timelines, with the notes people wrote
    "email_suppressions",  # mailing bounced and complaining addresses again would cost the sender's reputation
)


def backups() -> dict[str, Any]:
    """An AWS Backup vault (kept when the stack goes), a plan and the selection of :data:`BACKED_UP_TABLES`."""
    tables = [
        {"Fn::GetAtt": [f"{''.join(p.capitalize() for p in name.split('_'))}Table", "Arn"]} for name in BACKED_UP_TABLES
    ]
    return {
        "BackupVault": {
            "Type": "AWS::Backup::BackupVault",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {"BackupVaultName": sub("${TablePrefix}backups")},
        },
        "BackupPlan": {
            "Type": "AWS::Backup::BackupPlan",
            "Properties": {
                "BackupPlan": {
                    "BackupPlanName": sub("${TablePrefix}customer-data"),
                    "BackupPlanRule": [
                        {
                            "RuleName": "daily",
                            "TargetBackupVault": ref("BackupVault"),
                            "ScheduleExpression": "cron(0 5 * * ? *)",
                            "Lifecycle": {"DeleteAfterDays": 35},
                        },
                        {
                            "RuleName": "monthly",
                            "TargetBackupVault": ref("BackupVault"),
                            "ScheduleExpression": "cron(0 6 1 * ? *)",
                            "Lifecycle": {"DeleteAfterDays": 365},
                        },
                    ],
                }
            },
        },
        "BackupRole": service_role(
            "backup", "AWSBackupServiceRolePolicyForBackup", "AWSBackupServiceRolePolicyForRestores"
        ),
        "BackupSelection": {
            "Type": "AWS::Backup::BackupSelection",
            "Properties": {
                "BackupPlanId": ref("BackupPlan"),
                "BackupSelection": {
                    "SelectionName": "customer-data-tables",
                    "IamRoleArn": {"Fn::GetAtt": ["BackupRole", "Arn"]},
                    "Resources": tables,
                },
            },
        },
    }


def build() -> dict[str, Any]:
    resources: dict[str, Any] = {}
    resources.update(cfn_table_resources(ALL_MODELS))
    resources.update(status_pages())
    resources.update(alert_queue())
    resources.update(email_feedback())
    resources.update(handler_failures())
    resources.update(backups())
    resources.update(secrets_key())
    resources.update(alarms(resources))
    resources.update(operating_alarms())
    resources.update(function_policies())
    # Merged into Chalice's resources: the function's deployment-specific environment, and the API's
    # gateway responses inside its OpenAPI body, so that a change to them produces a new API deployment.
    for name in (CHALICE_FUNCTION, *EVENT_FUNCTIONS):
        environment = api_environment() if name == CHALICE_FUNCTION else events_environment()
        resources[name] = {
            "DependsOn": [f"{name}Policy"],
            "Properties": {"Environment": {"Variables": environment}, "LoggingConfig": LOGGING_CONFIG},
        }
    # Chalice needs a literal stream ARN; the real one exists only once the table does.  Partial batch
    # responses let one bad record retry alone (Chalice cannot set FunctionResponseTypes itself).
    for name, table in STREAM_FUNCTIONS.items():
        resources[name]["Properties"]["Events"] = {
            f"{name}DynamodbEventSource": {
                "Type": "DynamoDB",
                "Properties": {
                    "Stream": {"Fn::GetAtt": [table, "StreamArn"]},
                    "BatchSize": 100,
                    "StartingPosition": "TRIM_HORIZON",
                    "MaximumBatchingWindowInSeconds": 1,
                    "FunctionResponseTypes": ["ReportBatchItemFailures"],
                    "FilterCriteria": filter_criteria(_handler(name)),
                    "MaximumRetryAttempts": 10,
                    "BisectBatchOnFunctionError": True,
                    # A batch given up on is parked, with an alarm: a record is never dropped unseen.
                    "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [HANDLER_FAILURES, "Arn"]}}},
                },
            }
        }
    # Chalice names the queue by ARN from the stage's TABLE_PREFIX (the same name AlertQueue gets from the
    # TablePrefix parameter); the mapping must wait for the queue, and report failures message by message.
    resources[ALERT_FUNCTION]["DependsOn"] = [f"{ALERT_FUNCTION}Policy", "AlertQueue"]
    resources[ALERT_FUNCTION]["Properties"]["Events"] = {
        f"{ALERT_FUNCTION}SqsEventSource": {
            "Type": "SQS",
            "Properties": {"BatchSize": 10, "FunctionResponseTypes": ["ReportBatchItemFailures"]},
        }
    }
    resources[EMAIL_FEEDBACK_FUNCTION]["DependsOn"] = [f"{EMAIL_FEEDBACK_FUNCTION}Policy", "EmailEventsQueue"]
    resources[EMAIL_FEEDBACK_FUNCTION]["Properties"]["Events"] = {
        f"{EMAIL_FEEDBACK_FUNCTION}SqsEventSource": {
            "Type": "SQS",
            "Properties": {"BatchSize": 10, "FunctionResponseTypes": ["ReportBatchItemFailures"]},
        }
    }
    # The stage's throttle is a backstop under the app's own per-key, per-user and per-address limits
    # (chalicelib.api.quotas): it caps what reaches the function at all, whoever sends it.  Access logs: one JSON
    # line a request, including those API Gateway answers itself (throttled, too large, a Lambda timeout).
    resources.update(api_access_logs())
    resources[CHALICE_API] = {
        "DependsOn": ["ApiGatewayAccount"],  # the stage cannot log before the account lets API Gateway write logs
        "Properties": {
            "Name": sub(API_NAME),
            "AccessLogSetting": {
                "DestinationArn": {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]},
                "Format": json.dumps(API_ACCESS_LOG_FORMAT, separators=(",", ":")),
            },
            "DefinitionBody": {"x-amazon-apigateway-gateway-responses": gateway_responses()},
            "MethodSettings": [
                {
                    "ResourcePath": "/*",
                    "HttpMethod": "*",
                    "ThrottlingRateLimit": API_STAGE_RATE_LIMIT,
                    "ThrottlingBurstLimit": API_STAGE_BURST_LIMIT,
                }
            ],
        },
    }
    # Each function's log group, with a retention: left to Lambda, it is made at the first invocation and never
    # expires.  Named after the function's generated name, so created just after it (it cannot come first).
    # Chalice's own `log_retention_in_days` would do the same, but names the API's group after `ApiHandler`, a
    # resource its template calls `APIHandler`.
    for name in (CHALICE_FUNCTION, *EVENT_FUNCTIONS):
        resources[f"{name}LogGroup"] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": sub(f"/aws/lambda/${{{name}}}"), "RetentionInDays": LOG_RETENTION_DAYS},
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Vigil: tables, status pages, alarms and API settings (merged into Chalice's package).",
        "Parameters": parameters(),
        "Mappings": LOG_LEVEL_MAPPING,
        "Conditions": {"HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [ref("AlarmEmail"), ""]}]}},
        "Resources": with_deletion_policies(resources),
        "Outputs": {
            "StatusBucketName": {"Value": ref("StatusBucket")},
            "StatusDistributionDomain": {"Value": {"Fn::GetAtt": ["StatusDistribution", "DomainName"]}},
            "AlarmTopicArn": {"Value": ref("AlarmTopic")},
        },
    }


def checker_parameters() -> dict[str, Any]:
    shared = parameters()
    return {
        "Stage": shared["Stage"],
        "TablePrefix": shared["TablePrefix"],
        "HomeRegion": {
            "Type": "String",
            "AllowedPattern": "^[a-z]{2}(-[a-z]+)+-[0-9]$",
            "Description": "The region of the stage's main stack, where the tables live.",
        },
        "AppUrl": shared["AppUrl"],
        "EmailFrom": shared["EmailFrom"],
        "AlarmEmail": shared["AlarmEmail"],
        "LogLevel": shared["LogLevel"],
    }


def events_environment() -> dict[str, Any]:
    """An event handler's: the API's without its secrets.  No handler signs a token or a cursor, or calls Stripe
    (tests/iam.py fails a test in which one derives a key), so none holds what would let it."""
    environment = {k: v for k, v in api_environment().items() if k not in API_SECRETS}
    return {**environment, "VIGIL_FUNCTION": "events"}


def checker_environment() -> dict[str, Any]:
    """What the worker's settings need: a deployed stage refuses to start without APP_URL and EMAIL_FROM.

    No ``SECRET_KEY``: the worker signs nothing (no token, no cursor), so its stacks neither read nor need the secret.
    """
    return {
        "VIGIL_STAGE": ref("Stage"),
        "VIGIL_FUNCTION": "checker",
        "TABLE_PREFIX": ref("TablePrefix"),
        "HOME_REGION": ref("HomeRegion"),
        "CHECK_REGION": ref("AWS::Region"),
        "APP_URL": ref("AppUrl"),
        "EMAIL_FROM": ref("EmailFrom"),
        "LOG_LEVEL": ref("LogLevel"),
        # Untraced (the function's Tracing): Powertools' Tracer then neither patches botocore nor opens segments.
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


def checker_role() -> dict[str, Any]:
    """Only what the worker does: read monitors and stored results, write results, consume its own queue."""

    def home_table(name: str) -> dict[str, str]:
        return arn("dynamodb", f"table/${{TablePrefix}}{name}", region="${HomeRegion}")

    statements = [
        {
            # The log group is this stack's (CheckerLogGroup), so the role needs no logs:CreateLogGroup.
            "Sid": "Logs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [{"Fn::GetAtt": ["CheckerLogGroup", "Arn"]}],
        },
        {
            # Which monitors were written since the tick (monitors.watching)...
            "Sid": "ReadChangeNotes",
            "Effect": "Allow",
            "Action": ["dynamodb:Query"],
            "Resource": [home_table("monitor_changes")],
        },
        {
            # ...whether those still run here (and what marks their results).
            "Sid": "ReadMonitors",
            "Effect": "Allow",
            "Action": ["dynamodb:BatchGetItem"],
            "Resource": [home_table("monitors")],
        },
        {
            # On a redelivery, which results an earlier delivery stored (its packs).
            "Sid": "ReadPacks",
            "Effect": "Allow",
            "Action": ["dynamodb:Query"],
            "Resource": [home_table("result_packs")],
        },
        {
            "Sid": "WriteResults",
            "Effect": "Allow",
            "Action": ["dynamodb:BatchWriteItem"],
            "Resource": [home_table("result_packs")],
        },
        {
            "Sid": "WriteProgress",
            "Effect": "Allow",
            "Action": ["dynamodb:UpdateItem"],
            "Resource": [home_table("check_progress")],
        },
        {
            # What Lambda's SQS event source does with the function's role (AWSLambdaSQSQueueExecutionRole).
            "Sid": "CheckQueue",
            "Effect": "Allow",
            "Action": [
                "sqs:ChangeMessageVisibility",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage",
            ],
            "Resource": [{"Fn::GetAtt": ["CheckQueue", "Arn"]}],
        },
    ]
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": sub("Vigil ${Stage} check worker in ${AWS::Region}"),
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "Policies": [
                {
                    "PolicyName": "vigil-checker",
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                }
            ],
        },
    }


def build_checker(code_uri: str = CHECKER_CODE_URI) -> dict[str, Any]:
    """The check worker's stack: deployed in every check region, including the home region."""
    function_name = "${TablePrefix}checker"  # function names are per region: the same in every checker stack
    resources: dict[str, Any] = queues()
    resources.update(alarms(resources))
    resources.update(checker_alarms())
    resources["CheckerLogGroup"] = {
        "Type": "AWS::Logs::LogGroup",
        "Properties": {
            "LogGroupName": sub(f"/aws/lambda/{function_name}"),
            "RetentionInDays": LOG_RETENTION_DAYS,
        },
    }
    resources["CheckerRole"] = checker_role()
    resources[CHECKER_FUNCTION] = {
        "Type": "AWS::Serverless::Function",
        # The log group first: the role cannot create it, so the first invocation's logs need it to exist.
        "DependsOn": ["CheckerLogGroup"],
        "Properties": {
            "FunctionName": sub(function_name),
            "Description": sub("Vigil ${Stage}: runs the checks the scheduler queues for ${AWS::Region}"),
            "CodeUri": code_uri,
            "Handler": CHECKER_HANDLER,
            "Runtime": CHECKER_RUNTIME,
            "Architectures": [CHECKER_ARCHITECTURE],
            "Timeout": CHECKER_TIMEOUT_S,
            "MemorySize": CHECKER_MEMORY_MB,
            # Not traced: an invocation is one message's minute of ~2,000 checks, so a trace shows one long handler
            # span and nothing of a check, for $0.003 per million checks (a tenth of the budget's "rest"); the
            # worker's metrics and logs tell what it did (issue 13).
            "Tracing": "PassThrough",
            "LoggingConfig": LOGGING_CONFIG,
            "Role": {"Fn::GetAtt": ["CheckerRole", "Arn"]},
            "Environment": {"Variables": checker_environment()},
            "Events": {
                "CheckQueueEvents": {
                    "Type": "SQS",
                    "Properties": {
                        "Queue": {"Fn::GetAtt": ["CheckQueue", "Arn"]},
                        "BatchSize": CHECKER_BATCH_SIZE,
                        # No batching window: a job waits for its planned start, never for a fuller batch.
                        "MaximumBatchingWindowInSeconds": 0,
                        # A poisoned job fails only its own message (Powertools BatchProcessor).
                        "FunctionResponseTypes": ["ReportBatchItemFailures"],
                        "ScalingConfig": {"MaximumConcurrency": CHECKER_MAX_CONCURRENCY},
                    },
                }
            },
        },
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": "Vigil check worker: one region's check queue, its dead-letter queue and alarm, and the worker.",
        "Parameters": checker_parameters(),
        "Mappings": LOG_LEVEL_MAPPING,
        "Conditions": {"HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [ref("AlarmEmail"), ""]}]}},
        "Resources": with_deletion_policies(resources),
        "Outputs": {
            "CheckQueueUrl": {"Value": ref("CheckQueue")},
            "CheckQueueArn": {"Value": {"Fn::GetAtt": ["CheckQueue", "Arn"]}},
            "CheckDeadLetterQueueUrl": {"Value": ref("CheckDeadLetterQueue")},
            "CheckerFunctionName": {"Value": ref(CHECKER_FUNCTION)},
            "AlarmTopicArn": {"Value": ref("AlarmTopic")},
        },
    }


def render(template: dict[str, Any] | None = None) -> str:
    return json.dumps(build() if template is None else template, indent=2) + "\n"


def build_bootstrap() -> dict[str, Any]:
    """The artifacts bucket of one region, deployed once per region before anything else: ``aws cloudformation
    package`` uploads the code there, and ``deploy`` the template (a packaged main stack is over CloudFormation's
    51,200-byte limit for a template sent inline)."""
    bucket = ref("BucketName")
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Vigil: the deployment artifacts bucket of one region (code zips and templates).",
        "Parameters": {
            "BucketName": {
                "Type": "String",
                "AllowedPattern": "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
                "Description": "The bucket's name: $ARTIFACT_BUCKET in the home region, $ARTIFACT_BUCKET-<region> in"
                " a check region.",
            }
        },
        "Resources": {
            "ArtifactBucket": {
                "Type": "AWS::S3::Bucket",
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": {
                    "BucketName": bucket,
                    "VersioningConfiguration": {"Status": "Enabled"},
                    **PRIVATE_BUCKET,
                    # Old artifacts go: a deploy needs only its own; a rollback the one before.
                    "LifecycleConfiguration": {
                        "Rules": [
                            {
                                "Id": "old-artifacts",
                                "Status": "Enabled",
                                "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                                "ExpirationInDays": 180,
                            }
                        ]
                    },
                },
            },
            "ArtifactBucketPolicy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {
                    "Bucket": bucket,
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "TlsOnly",
                                "Effect": "Deny",
                                "Principal": "*",
                                "Action": "s3:*",
                                "Resource": [
                                    sub("arn:${AWS::Partition}:s3:::${BucketName}"),
                                    sub("arn:${AWS::Partition}:s3:::${BucketName}/*"),
                                ],
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        ],
                    },
                },
            },
        },
        "Outputs": {"ArtifactBucketName": {"Value": bucket}},
    }


def outputs() -> list[tuple[Path, str]]:
    """Every generated file and its wanted content (the paths are read at call time, so tests can redirect them)."""
    return [
        (OUTPUT, render(build())),
        (CHECKER_OUTPUT, render(build_checker())),
        (BOOTSTRAP_OUTPUT, render(build_bootstrap())),
    ]


DEPLOYED_INDEXES = Path(__file__).resolve().parent / "deployed-indexes.json"


def table_indexes(resources: dict[str, Any]) -> dict[str, list[str]]:
    """Each table's global secondary indexes, by logical id."""
    return {
        name: sorted(str(index["IndexName"]) for index in resource["Properties"].get("GlobalSecondaryIndexes", []))
        for name, resource in sorted(resources["Resources"].items())
        if resource.get("Type") == "AWS::DynamoDB::Table"
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.build", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated template is out of date")
    parser.add_argument(
        "--deployed",
        action="store_true",
        help="record the tables' indexes as deployed (infra/deployed-indexes.json), after a deploy of this template",
    )
    args = parser.parse_args(argv)
    if args.deployed:
        DEPLOYED_INDEXES.write_text(json.dumps(table_indexes(build()), indent=2) + "\n")
        print(f"wrote {DEPLOYED_INDEXES}")
        return 0
    if args.check:
        stale = [path for path, wanted in outputs() if (path.read_text() if path.is_file() else "") != wanted]
        for path in stale:
            print(f"{path} is out of date: run `make infra` and commit the result.", file=sys.stderr)
        if stale:
            return 1
        print("infra templates are up to date.")
        return 0
    for path, wanted in outputs():
        path.write_text(wanted)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
