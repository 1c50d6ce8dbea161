"""Creating a delivery: one notification to one target, recorded before anything is sent.

A delivery's id is derived from what is notified and where (the caller derives it), and the record is created
with a conditional put, so the same event arriving again finds its delivery instead of making a second one.
Its target is a channel id, or ``member:<user_id>`` for a member's email.  ``create_and_send`` then queues its
first attempt (``chalicelib.alerts.attempts`` runs it).  The record is kept ``KEEP_DAYS`` days: it is the
channel's delivery log.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from chalicelib.alerts.models import DeliveryModel
from chalicelib.alerts.queue import enqueue_attempt
from chalicelib.storage.base import condition_failed

KEEP_DAYS = 30
MEMBER_PREFIX = "member:"


def create(
    target: str,
    delivery_id: str,
    *,
    team_id: str,
    event: str,
    critical: bool,
    source: dict[str, Any],
    now: datetime,
    incident_ids: list[str] | None = None,
    monitor_ids: list[str] | None = None,
    status: str = "pending",
    error: str | None = None,
) -> bool:
    """Create the delivery unless it exists (the same event arriving again).  True if created now."""
    item = DeliveryModel(
        target,
        delivery_id,
        team_id=team_id,
        event=event,
        critical=critical,
        incident_ids=incident_ids or [],
        monitor_ids=monitor_ids or [],
        source=source,
        status=status,
        error=error,
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(days=KEEP_DAYS),
    )
    try:
        item.save(condition=DeliveryModel.delivery_id.does_not_exist())
    except Exception as exc:
        if condition_failed(exc):
            return False
        raise
    return True


def create_and_send(target: str, delivery_id: str, *, now: datetime, **fields: Any) -> None:
    """Create, then queue the first attempt.  Queuing again after a crash is harmless: attempts are claimed."""
    created = create(target, delivery_id, now=now, **fields)
    if not created:
        existing = DeliveryModel.get(target, delivery_id, consistent_read=True)
        if existing.status != "pending" or int(existing.attempts) > 0:
            return
    enqueue_attempt(target, delivery_id, 1, now)
