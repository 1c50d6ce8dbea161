"""The aggregator (``monitors.aggregate``): a pass every ten minutes, and the packs written after their period was
taken, from the packs' stream."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from chalice import Blueprint, Rate

from chalicelib.aws.filters import wanted
from chalicelib.aws.names import results_stream_arn
from chalicelib.billing import limits
from chalicelib.bootstrap import configure_core
from chalicelib.clock import event_time, utcnow
from chalicelib.models import ALL_MODELS
from chalicelib.monitors import aggregate
from chalicelib.observability import metrics
from chalicelib.settings import get_settings

# Lambda imports this module directly (not app.py): configure settings and storage here too.
configure_core(models=ALL_MODELS)
blueprint = Blueprint(__name__)


def _retention() -> Callable[[str], timedelta]:
    """Each team's plan's retention (read once a team for this invocation), at most ``RESULT_RETENTION_DAYS``:
    applied to the results aggregated from now on (a plan change keeps what was stored as it was)."""
    kept: dict[str, timedelta] = {}

    def of(team_id: str) -> timedelta:
        if team_id not in kept:
            kept[team_id] = limits.result_retention(team_id)
        return kept[team_id]

    return of


# Every five minutes (a period is due packs.AGGREGATE_AFTER after it closed: taken 3 to 8 minutes after).  A failed
# pass raises: Lambda retries it, its failure is parked for an alarm, and the next pass starts from the watermark
# it left, so a period is never skipped.
@blueprint.schedule(Rate(5, unit=Rate.MINUTES), name="aggregator")
def aggregator(event: Any) -> dict[str, Any]:
    taken = aggregate.run_pass(event_time(event.to_dict()), _retention())
    metrics.add_metric(name="PeriodsAggregated", unit="Count", value=taken)
    metrics.flush_metrics()
    return {"periods": taken}


def handle_late(records: list[dict[str, Any]]) -> dict[str, Any]:
    return aggregate.retake([r for r in records if wanted("retake", r)], utcnow(), _retention())


@blueprint.on_dynamodb_record(stream_arn=results_stream_arn(get_settings()), batch_size=100, name="retake")
def retake(event: Any) -> Any:
    response = handle_late(event.to_dict().get("Records", []))
    metrics.flush_metrics()
    return response
