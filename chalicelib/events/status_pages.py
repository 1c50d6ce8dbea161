"""The events stream → status pages republished (an incident opened, acknowledged or resolved; a status change)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Rate

from chalicelib.aws import names
from chalicelib.aws.filters import wanted
from chalicelib.bootstrap import configure_core
from chalicelib.events.retry import RetryFrom
from chalicelib.incidents import events
from chalicelib.models import ALL_MODELS
from chalicelib.observability import logger, metrics
from chalicelib.settings import get_settings
from chalicelib.status_pages.publish import refresh_all, republish_for

# Lambda imports this module directly (not app.py): configure settings and storage here too.
configure_core(models=ALL_MODELS)
blueprint = Blueprint(__name__)

PUBLIC_EVENTS = (events.OPENED, events.ACKNOWLEDGED, events.RESOLVED, events.STATUS_CHANGED, events.WINDOW_EDGE)


def handle(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Each affected team's pages once per batch, however many events touched them.  One team's failure does not
    stop the others': Lambda is told to retry from the first record of a team that failed (publishing is
    idempotent, it renders the current state, so a team done already is only published again)."""
    touched: dict[str, set[str]] = {}
    retry = RetryFrom()
    for index, record in enumerate(records):
        image = (record.get("dynamodb") or {}).get("NewImage") or {}
        if not wanted("status_pages", record) or image.get("type", {}).get("S") not in PUBLIC_EVENTS:
            continue
        team_id, monitor_id = image["team_id"]["S"], image["monitor_id"]["S"]
        touched.setdefault(team_id, set()).add(monitor_id)
        retry.saw(team_id, index, record)
    published = 0
    for team_id, monitor_ids in touched.items():
        try:
            published += republish_for(team_id, monitor_ids)
        except Exception:  # noqa: BLE001 - logged, and retried from this team's first record
            logger.exception("status page publishing failed", extra={"team_id": team_id})
            retry.failed(team_id)
    if published:
        metrics.add_metric(name="StatusPagesPublished", unit="Count", value=published)
    return retry.response()


@blueprint.schedule(Rate(1, unit=Rate.HOURS), name="status_pages_refresh")
def status_pages_refresh(event: Any) -> dict[str, int]:
    """Hourly: the 90-day bars and uptime percentages move with time, not only with events."""
    done, failed = refresh_all()
    metrics.add_metric(name="StatusPagesRefreshed", unit="Count", value=done)
    metrics.flush_metrics()
    return {"published": done, "failed": failed}


@blueprint.on_dynamodb_record(stream_arn=names.events_stream_arn(get_settings()), batch_size=100, name="status_pages")
def status_pages(event: Any) -> Any:
    response = handle(event.to_dict().get("Records", []))
    metrics.flush_metrics()
    return response
