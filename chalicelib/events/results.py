"""The check results stream → daily and hourly rollups (uptime and latency)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from chalice import Blueprint

from chalicelib.aws.names import results_stream_arn
from chalicelib.bootstrap import configure_core
from chalicelib.events.filters import wanted
from chalicelib.models import ALL_MODELS
from chalicelib.monitors import results
from chalicelib.observability import logger
from chalicelib.settings import get_settings

# Lambda imports this module directly (not app.py): configure settings and storage here too.
configure_core(models=ALL_MODELS)
blueprint = Blueprint(__name__)


def count_result(record: DynamoDBRecord) -> None:
    """Only a new result counts: a redelivered job overwrites its own item (MODIFY) and TTL expiry is a REMOVE."""
    if record.dynamodb is None or not wanted("rollups", record.raw_event):
        return
    stored = results.from_stream_image(record.dynamodb.raw_event["NewImage"])
    results.record(
        team_id=stored.team_id,
        monitor_id=stored.monitor_id,
        checked_at=stored.result.checked_at,
        ok=stored.result.ok,
        response_ms=stored.result.response_time_ms,
    )


@blueprint.on_dynamodb_record(stream_arn=results_stream_arn(get_settings()), batch_size=100, name="rollups")
def rollups(event: Any) -> Any:
    """Records in order; at the first failure, stop and report it.

    Lambda resumes a stream from the first reported failure, so every record after it comes again:
    processing them now would count those results twice.
    """
    for raw in event.to_dict().get("Records", []):
        record = DynamoDBRecord(raw)
        try:
            count_result(record)
        except Exception:  # noqa: BLE001 - reported to Lambda, which retries from this record
            logger.exception("rollup failed; the stream resumes from this record")
            sequence = record.dynamodb.sequence_number if record.dynamodb else None
            return {"batchItemFailures": [{"itemIdentifier": sequence}]}
    return {"batchItemFailures": []}
