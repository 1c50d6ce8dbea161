"""The alert handler: the events stream → deliveries planned; the alerts queue → deliveries sent (and password
reset links mailed)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chalice import Blueprint

from chalicelib.alerts import attempts, dispatch, queue
from chalicelib.auth import service as auth
from chalicelib.aws import names
from chalicelib.aws.filters import wanted
from chalicelib.bootstrap import configure_core
from chalicelib.clock import utcnow
from chalicelib.incidents.events import from_stream_image
from chalicelib.models import ALL_MODELS
from chalicelib.observability import logger, metrics
from chalicelib.settings import get_settings

# Lambda imports this module directly (not app.py): configure settings and storage here too.
configure_core(models=ALL_MODELS)
blueprint = Blueprint(__name__)


def plan_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    """New events only (an incident's timeline is never rewritten; REMOVEs are team deletions).  Planning is
    idempotent, so at the first failure Lambda is told to resume from that record."""
    for record in records:
        change = record.get("dynamodb") or {}
        if not wanted("alerts", record) or "NewImage" not in change:
            continue
        try:
            event = from_stream_image(change["NewImage"])
            dispatch.plan(event, utcnow())
        except Exception:  # noqa: BLE001 - reported to Lambda, which retries from this record
            logger.exception("planning alerts failed", extra={"event_id": record.get("eventID")})
            return {"batchItemFailures": [{"itemIdentifier": change.get("SequenceNumber")}]}
    return {"batchItemFailures": []}


def handle_message(body: str) -> None:
    """Run one message of the alerts queue.  A malformed one raises (reported, retried, then dead-lettered);
    one of an unknown kind is logged and dropped."""
    try:
        message = queue.decode_message(body)
    except queue.UnknownOp as exc:
        logger.warning("unknown alert message", extra={"op": exc.op})
        return
    now = utcnow()
    if isinstance(message, queue.Flush):
        dispatch.flush(message.key, message.target, message.team_id, message.event, message.at, now)
    elif isinstance(message, queue.PasswordReset):
        auth.send_password_reset(message.email, message.at, now)
    else:
        attempts.attempt(message.target, message.delivery_id, message.attempt, now, not_before=message.not_before)


def handle_messages(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Each message on its own thread: one slow or broken receiver (10 s at most) never delays another."""

    def run(record: dict[str, Any]) -> str | None:
        try:
            handle_message(record["body"])
        except Exception:  # noqa: BLE001 - SQS delivers the message again (then its dead-letter queue)
            logger.exception("alert message failed", extra={"message_id": record.get("messageId")})
            return str(record.get("messageId"))
        return None

    with ThreadPoolExecutor(max_workers=max(1, len(records))) as pool:
        failed = [m for m in pool.map(run, records) if m is not None]
    return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}


@blueprint.on_dynamodb_record(stream_arn=names.events_stream_arn(get_settings()), batch_size=100, name="alerts")
def alerts(event: Any) -> Any:
    response = plan_records(event.to_dict().get("Records", []))
    metrics.flush_metrics()
    return response


@blueprint.on_sqs_message(queue=names.alert_queue(get_settings()), batch_size=10, name="alert_deliveries")
def alert_deliveries(event: Any) -> Any:
    response = handle_messages(event.to_dict().get("Records", []))
    metrics.flush_metrics()
    return response
