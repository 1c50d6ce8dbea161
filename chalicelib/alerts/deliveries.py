"""Creating a delivery: one notification to one target, recorded before anything is sent.

A delivery's id is derived from what is notified and where (the caller derives it), and the record is created
with a conditional put, so the same event arriving again finds its delivery instead of making a second one.
Its target is a channel id, or ``member:<user_id>`` for a member's email.  ``create_and_send`` then queues its
first attempt (``chalicelib.alerts.attempts`` runs it).  The record is kept ``KEEP_DAYS`` days: it is the
channel's delivery log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chalicelib.alerts.models import DeliveryModel
from chalicelib.alerts.queue import enqueue_attempt
from chalicelib.storage.base import condition_failed

KEEP_DAYS = 30
MEMBER_PREFIX = "member:"
FINAL = ("delivered", "failed", "suppressed")


@dataclass(frozen=True)
class Delivery:
    """A delivery as the channel's log shows it.  ``status`` is one of the contract's four: a delivery not final
    yet (pending, being sent, waiting for its next attempt) reads ``retrying``."""

    id: str
    created_at: datetime
    event: str
    status: str
    attempts: int
    response_status: int | None
    error: str | None
    next_attempt_at: datetime | None
    incident_ids: tuple[str, ...]
    log: tuple[dict[str, Any], ...]


def to_delivery(item: DeliveryModel) -> Delivery:
    return Delivery(
        id=item.delivery_id,
        created_at=item.created_at,
        event=item.event,
        status=item.status if item.status in FINAL else "retrying",
        attempts=int(item.attempts),
        response_status=int(item.response_status) if item.response_status is not None else None,
        error=item.error,
        next_attempt_at=item.next_attempt_at,
        incident_ids=tuple(str(i) for i in item.incident_ids or ()),
        log=tuple(dict(entry) for entry in item.log or ()),
    )


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
