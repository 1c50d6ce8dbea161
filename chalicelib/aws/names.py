"""Names of the non-table AWS resources, derived from the settings in one place."""

from __future__ import annotations

from chalicelib.settings import Settings


def check_queue(settings: Settings, region: str) -> str:
    """The SQS queue that feeds the check worker of one region."""
    return f"{settings.table_prefix}checks-{region}"


def dead_letter_queue(queue_name: str) -> str:
    return f"{queue_name}-dlq"


def status_bucket(settings: Settings) -> str:
    return f"{settings.table_prefix}status-pages".lower()


def email_identity(settings: Settings) -> str:
    """The address part of EMAIL_FROM (``Vigil <a@b>`` → ``a@b``)."""
    from email.utils import parseaddr

    return parseaddr(settings.email_from)[1]


def alert_queue(settings: Settings) -> str:
    """The queue of alert deliveries: one message per attempt, and group flushes."""
    return f"{settings.table_prefix}alerts"


def handler_failures_queue(settings: Settings) -> str:
    """Where Lambda parks a stream batch or a scheduled invocation a function gave up on (``infra/redrive.py``)."""
    return dead_letter_queue(f"{settings.table_prefix}handler-failures")


def events_stream_arn(settings: Settings) -> str:
    """The events table's stream (incident timelines and monitor events), which the alert handler reads.
    Deployed, the template wires the real ARN; locally the event loop finds the stream from the table name."""
    return f"arn:aws:dynamodb:{settings.home_region}:000000000000:table/{settings.table_prefix}events/stream/latest"


def results_stream_arn(settings: Settings) -> str:
    """The check results' stream: the result packs' (``monitors.packs``), which the aggregator's late takes and the
    incident handler read.  Deployed, the template wires the real ARN (RESULTS_STREAM_ARN only gives Chalice a
    literal); locally the event loop finds the stream from the table name in this ARN."""
    if settings.results_stream_arn:
        return settings.results_stream_arn
    table = f"{settings.table_prefix}result_packs"
    return f"arn:aws:dynamodb:{settings.home_region}:000000000000:table/{table}/stream/latest"


def configuration_set(settings: Settings) -> str:
    """The SES configuration set every email is sent with: it publishes bounces and complaints."""
    return f"{settings.table_prefix}email".lower()


def email_events_topic(settings: Settings) -> str:
    """The SNS topic SES publishes bounces and complaints to."""
    return f"{settings.table_prefix}email-events"


def email_events_queue(settings: Settings) -> str:
    """The SQS queue subscribed to the email events topic, which the email feedback handler reads."""
    return f"{settings.table_prefix}email-events"


def secrets_key(settings: Settings) -> str:
    """The alias of the stage's KMS key, which seals secrets at rest (``chalicelib.sealing``)."""
    return f"alias/{settings.table_prefix}secrets"


def checker_function(settings: Settings) -> str:
    """The check worker's Lambda function, by the same name in every region's stack (``infra/checker.json``)."""
    return f"{settings.table_prefix}checker"
