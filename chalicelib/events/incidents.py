"""The result packs' stream → the incident handler (``incidents.tracker``), for the results the worker marked."""

from __future__ import annotations

import base64
from collections import defaultdict
from typing import Any

from chalice import Blueprint

from chalicelib.aws.filters import wanted
from chalicelib.aws.names import results_stream_arn
from chalicelib.bootstrap import configure_core
from chalicelib.clock import utcnow
from chalicelib.events.retry import RetryFrom
from chalicelib.incidents.tracker import Result, apply_many
from chalicelib.models import ALL_MODELS
from chalicelib.monitors.packs import Packed, decode_pack
from chalicelib.observability import logger, metrics
from chalicelib.settings import get_settings

# Lambda imports this module directly (not app.py): configure settings and storage here too.
configure_core(models=ALL_MODELS)
blueprint = Blueprint(__name__)


def to_result(packed: Packed) -> Result:
    """A packed check → the handler's view of a result."""
    result = packed.result
    return Result(
        team_id=packed.team_id,
        monitor_id=packed.monitor_id,
        region=packed.region,
        checked_at=result.checked_at,
        ok=result.ok,
        degraded=result.degraded,
        status_code=result.status_code,
        error=result.error,
        assertion_failures=result.assertion_failures,
        ssl_expires_at=result.ssl_expires_at,
        planned_at=packed.slot,
    )


def marked_results(image: dict[str, Any]) -> list[Result]:
    """The marked results of a pack as the stream carries it (DynamoDB JSON: a binary value is base64 text on
    Lambda's wire, bytes when read with boto3, as the local stack does)."""
    body = image["body"]["B"]
    blob = base64.b64decode(body) if isinstance(body, str) else bytes(body)
    return [to_result(p) for p in decode_pack(blob) if p.marked]


def handle(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Group the marked results of the batch's packs by monitor and apply each monitor's in check-time order.

    New packs (INSERT) and rewritten ones (MODIFY) count; TTL expiry (REMOVE) does not.
    When a monitor fails, Lambda is told to resume from its first record: everything after comes again, which
    is harmless, since a result already applied changes nothing the second time.
    """
    by_monitor: dict[tuple[str, str], list[Result]] = defaultdict(list)
    retry = RetryFrom()
    for index, record in enumerate(records):
        if not wanted("incidents", record):
            continue
        change = record.get("dynamodb") or {}
        try:
            found = marked_results(change["NewImage"])
        except Exception:  # noqa: BLE001 - a malformed pack will never parse: skip it, loudly
            logger.exception("unreadable results pack in the stream", extra={"event_id": record.get("eventID")})
            metrics.add_metric(name="UnreadableResults", unit="Count", value=1)
            continue
        for result in found:
            key = (result.team_id, result.monitor_id)
            by_monitor[key].append(result)
            retry.saw(key, index, record)
    for key, error in apply_many(dict(by_monitor), utcnow()).items():
        if error is not None:  # reported to Lambda, which retries from this monitor's first record
            logger.error(
                "applying results failed",
                extra={"team_id": key[0], "monitor_id": key[1], "error": type(error).__name__},
                exc_info=error,
            )
            retry.failed(key)
    return retry.response()


@blueprint.on_dynamodb_record(stream_arn=results_stream_arn(get_settings()), batch_size=100, name="incidents")
def incidents(event: Any) -> Any:
    response = handle(event.to_dict().get("Records", []))
    metrics.flush_metrics()
    return response
