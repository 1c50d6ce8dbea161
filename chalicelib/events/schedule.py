"""The one-minute tick (EventBridge) → the scheduler."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Rate

from chalicelib.bootstrap import configure_core
from chalicelib.clock import event_time
from chalicelib.models import ALL_MODELS
from chalicelib.observability import metrics
from chalicelib.scheduler.service import run_tick

# Lambda imports this module directly (not app.py): configure settings and storage here too.
configure_core(models=ALL_MODELS)
blueprint = Blueprint(__name__)


@blueprint.schedule(Rate(1, unit=Rate.MINUTES), name="scheduler")
def scheduler(event: Any) -> dict[str, Any]:
    """``detail.force`` (POST /dev/tick) runs every active monitor now."""
    raw = event.to_dict()
    try:
        report = run_tick(event_time(raw), force=bool((raw.get("detail") or {}).get("force")))
    finally:
        metrics.flush_metrics()  # a failed tick's CheckSendFailures too
    return vars(report)
