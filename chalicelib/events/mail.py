"""The email feedback handler: SES's bounce and complaint events (through SNS, raw) → suppressed addresses."""

from __future__ import annotations

import json
from typing import Any

from chalice import Blueprint

from chalicelib.alerts import suppressions
from chalicelib.aws import names
from chalicelib.bootstrap import configure_core
from chalicelib.clock import utcnow
from chalicelib.models import ALL_MODELS
from chalicelib.observability import logger, metrics
from chalicelib.settings import get_settings

# Lambda imports this module directly (not app.py): configure settings and storage here too.
configure_core(models=ALL_MODELS)
blueprint = Blueprint(__name__)


def handle_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Each message is one SES event (raw delivery), or an SNS envelope around one.  A message that is not JSON is
    logged and dropped (no retry would mend it); a failure to store is retried by SQS, then dead-lettered."""
    failed = []
    for record in records:
        try:
            event = json.loads(record.get("body") or "")
            if isinstance(event, dict) and isinstance(event.get("Message"), str):  # not raw: SNS's envelope
                event = json.loads(event["Message"])
        except ValueError:
            logger.warning("email event is not JSON; dropped", extra={"message_id": record.get("messageId")})
            continue
        if not isinstance(event, dict):
            logger.warning("email event is not an object; dropped", extra={"message_id": record.get("messageId")})
            continue
        try:
            suppressed = suppressions.apply_event(event, utcnow())
        except Exception:  # noqa: BLE001 - SQS delivers it again, then to its dead-letter queue
            logger.exception("email event failed", extra={"message_id": record.get("messageId")})
            failed.append(str(record.get("messageId")))
            continue
        if suppressed:
            metrics.add_metric(name="EmailAddressesSuppressed", unit="Count", value=len(suppressed))
    return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}


@blueprint.on_sqs_message(queue=names.email_events_queue(get_settings()), batch_size=10, name="email_feedback")
def email_feedback(event: Any) -> Any:
    response = handle_records(event.to_dict().get("Records", []))
    metrics.flush_metrics()
    return response
