"""One attempt of a delivery, from its queue message: claim it, build, send, record, retry or give up.

Each attempt is claimed with a conditional update on ``attempts``, so a duplicated message never sends twice.
An attempt:

1. hops through the queue again while ``not_before`` is further away than SQS can delay;
2. finds where to send: a member's email, or a channel, its sealed secrets opened (a deleted or disabled one, one
   whose secrets do not open, or a member gone, fails the attempt once claimed); a member's email that is not
   critical is held while the member's quiet hours last, without spending an attempt;
3. waits a few seconds while an earlier delivery of the same incident to the same target is still in flight,
   so a "resolved" never overtakes its "down";
4. claims the attempt — or, when another invocation holds it, looks again once that claim would be stale;
5. sends what the first attempt sent (a retry is the same signed body), or composes it now; a retried "down"
   for people leaves out monitors deleted or paused since, and with none left the delivery is suppressed;
6. records the outcome: delivered; a 410 fails it and turns the channel off; a failure worth retrying (5xx,
   408, 429, no response) is retried with backoff and jitter, never sooner than ``Retry-After``, until
   ``MAX_ATTEMPTS``; any other answer is final.

A test notification is a new delivery and its one attempt, never retried, run while the caller waits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from chalicelib.alerts import channels, deliveries
from chalicelib.alerts import notification as n
from chalicelib.alerts.compose import compose
from chalicelib.alerts.deliveries import MEMBER_PREFIX
from chalicelib.alerts.gone import channel_gone
from chalicelib.alerts.kinds import KINDS, Kind, Sent
from chalicelib.alerts.kinds.base import SUPPRESSED
from chalicelib.alerts.models import ChannelModel, DeliveryModel
from chalicelib.alerts.queue import enqueue_attempt
from chalicelib.alerts.quiet_hours import quiet_until
from chalicelib.alerts.retry import MAX_ATTEMPTS, backoff_seconds, retry_after_seconds
from chalicelib.checks import ssrf
from chalicelib.clock import isoz
from chalicelib.ids import id_floor, new_id
from chalicelib.monitors import service as monitors
from chalicelib.observability import logger, metrics
from chalicelib.sealing.service import Unreadable
from chalicelib.storage.base import condition_failed
from chalicelib.teams import service as teams
from chalicelib.users import service as users
from chalicelib.users.service import User

STALE_SENDING = timedelta(minutes=5)  # a claim older than this died with its Lambda: the attempt may be retried
ORDER_WAIT_S = 5  # a later notification of an incident waits this long for an earlier one still in flight
ORDER_WINDOW = timedelta(minutes=20)  # … unless that one has not moved for this long (retries span ~15 min)
SECRETS_UNREADABLE = "channel_secrets_unreadable"  # a delivery's error when its channel's sealed config does not open


@dataclass(frozen=True)
class Target:
    kind: Kind
    config: dict[str, Any]
    channel: ChannelModel | None = None
    user: User | None = None


def _target(delivery: DeliveryModel) -> Target | str:
    """The kind and config to send with, or why there is nothing to send to."""
    if delivery.target.startswith(MEMBER_PREFIX):
        user_id = delivery.target.removeprefix(MEMBER_PREFIX)
        user = users.find(user_id)
        # Gone from the account, or from the team since (a note held for quiet hours, a retry): never theirs now.
        if user is None or teams.role_of(delivery.team_id, user_id) is None:
            return "member_gone"
        return Target(KINDS["email"], {"addresses": [user.email]}, user=user)
    try:
        channel = ChannelModel.get(delivery.team_id, delivery.target)
    except ChannelModel.DoesNotExist:
        return "channel_deleted"
    if not channel.enabled and delivery.event != "test":
        return "channel_disabled"
    try:
        config = channels.opened_config(channel)
    except Unreadable:  # sealed for another team or channel (copied in the table): nothing is sent with it
        logger.error(
            "alert channel's secrets cannot be opened",
            extra={"team_id": delivery.team_id, "channel_id": delivery.target, "delivery_id": delivery.delivery_id},
        )
        return SECRETS_UNREADABLE
    return Target(KINDS[channel.type], config, channel=channel)


def _earlier_in_flight(delivery: DeliveryModel, now: datetime) -> bool:
    """Is an earlier delivery of the same incident to the same target still pending or retrying?"""
    if not delivery.incident_ids or delivery.status not in ("pending", "retrying"):
        return False
    query = DeliveryModel.query(
        delivery.target,
        range_key_condition=DeliveryModel.delivery_id.between(
            id_floor("dlv", delivery.created_at - timedelta(days=1)), delivery.delivery_id
        ),
        filter_condition=DeliveryModel.status.is_in("pending", "sending", "retrying")
        & DeliveryModel.incident_ids.contains(str(delivery.incident_ids[0]))
        & (DeliveryModel.updated_at > now - ORDER_WINDOW),
        consistent_read=True,
    )
    return any(item.delivery_id != delivery.delivery_id for item in query)


def _claim(delivery: DeliveryModel, attempt: int, now: datetime) -> bool:
    """Take attempt ``attempt``: the next one of a waiting delivery, or this same one again when the Lambda that
    claimed it died mid-send (its claim is older than ``STALE_SENDING``)."""
    fresh = (DeliveryModel.attempts == attempt - 1) & DeliveryModel.status.is_in("pending", "retrying")
    stale = (
        (DeliveryModel.attempts == attempt)
        & (DeliveryModel.status == "sending")
        & (DeliveryModel.sending_at < now - STALE_SENDING)
    )
    try:
        delivery.update(
            actions=[
                DeliveryModel.status.set("sending"),
                DeliveryModel.attempts.set(attempt),
                DeliveryModel.sending_at.set(now),
                DeliveryModel.updated_at.set(now),
            ],
            condition=fresh | stale,
        )
    except Exception as exc:
        if condition_failed(exc):
            return False
        raise
    return True


def _finish(delivery: DeliveryModel, attempt: int, status: str, sent: Sent, now: datetime, **more: Any) -> None:
    entry = {
        "attempt": attempt,
        "at": isoz(now),
        "outcome": status,
        "response_status": sent.status,
        "latency_ms": sent.latency_ms,
        "error": sent.error,
        "excerpt": sent.excerpt,
    }
    actions: list[Any] = [
        DeliveryModel.status.set(status),
        DeliveryModel.log.set([*(delivery.log or []), entry]),
        DeliveryModel.error.set(sent.error) if sent.error else DeliveryModel.error.remove(),
        DeliveryModel.updated_at.set(now),
        DeliveryModel.sending_at.remove(),
    ]
    actions.append(
        DeliveryModel.response_status.set(sent.status)
        if sent.status is not None
        else DeliveryModel.response_status.remove()
    )
    if sent.reached:
        reached: set[str] = {str(r) for r in delivery.sent_to or ()} | set(sent.reached)
        actions.append(DeliveryModel.sent_to.set(sorted(reached)))  # type: ignore[arg-type]
    if status == "retrying" and delivery.message is not None:
        actions.append(DeliveryModel.message.set(delivery.message))
    if more.get("next_attempt_at") is not None:
        actions.append(DeliveryModel.next_attempt_at.set(more["next_attempt_at"]))
    else:
        actions.append(DeliveryModel.next_attempt_at.remove())
    delivery.update(actions=actions, condition=(DeliveryModel.attempts == attempt))


def attempt(
    target: str,
    delivery_id: str,
    number: int,
    now: datetime,
    *,
    not_before: datetime | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    rng: random.Random | None = None,
) -> DeliveryModel | None:
    """Run attempt ``number`` of a delivery (from its queue message).  Returns the delivery (as loaded: refresh it
    to read the attempt's record), or None when there was nothing to do (a duplicate message, a finished one)."""
    if not_before is not None and now < not_before:  # a wait longer than SQS can delay: hop again
        enqueue_attempt(target, delivery_id, number, now, not_before)
        return None
    try:
        delivery = DeliveryModel.get(target, delivery_id, consistent_read=True)
    except DeliveryModel.DoesNotExist:
        return None
    found = _target(delivery)
    if isinstance(found, Target) and found.user is not None and not delivery.critical:
        until = quiet_until(found.user, now)
        if until is not None:  # the member's quiet hours: hold back, without spending an attempt
            DeliveryModel(target, delivery_id).update(
                actions=[DeliveryModel.next_attempt_at.set(until)], condition=DeliveryModel.delivery_id.exists()
            )
            enqueue_attempt(target, delivery_id, number, now, until)
            return None
    if _earlier_in_flight(delivery, now):  # never "resolved" before "down" (PagerDuty would drop the resolve)
        enqueue_attempt(target, delivery_id, number, now, now + timedelta(seconds=ORDER_WAIT_S))
        return None
    if not _claim(delivery, number, now):
        if delivery.status == "sending" and int(delivery.attempts) == number:
            # Another invocation holds this attempt (or died holding it): look again once a claim would be stale.
            enqueue_attempt(target, delivery_id, number, now, now + STALE_SENDING + timedelta(seconds=5))
        return None
    if isinstance(found, str):
        _finish(delivery, number, "failed", Sent(ok=False, error=found), now)
        return delivery
    notification = _message(delivery, now)
    if notification is not None and delivery.message and found.kind.groupable:
        notification = _still_down(notification, delivery.team_id)
    if notification is not None and not notification.items:
        _finish(delivery, number, "suppressed", Sent(ok=False, error="monitor_deleted_or_paused"), now)
        return delivery
    sent = _send(found, delivery, notification, now) if notification else Sent(ok=False, error="compose_failed")
    if notification is not None and delivery.message is None:
        delivery.message = notification.to_json()  # kept by _finish: a retry sends these same bytes
    if sent.ok:
        _finish(delivery, number, "delivered", sent, now)
        metrics.add_metric(name="AlertsDelivered", unit="Count", value=1)
    elif sent.error == SUPPRESSED:  # every address bounced or complained: nothing to send, nothing failed
        _finish(delivery, number, "suppressed", sent, now)
    elif sent.gone and found.channel is not None:
        _finish(delivery, number, "failed", sent, now)
        channel_gone(found.channel, now)
    elif sent.retryable and number < max_attempts:
        wait = max(backoff_seconds(number, rng), retry_after_seconds(sent.retry_after, now))
        next_at = now + timedelta(seconds=wait)
        _finish(delivery, number, "retrying", sent, now, next_attempt_at=next_at)
        enqueue_attempt(target, delivery_id, number + 1, now, next_at)
    else:
        _finish(delivery, number, "failed", sent, now)
        metrics.add_metric(name="AlertsFailed", unit="Count", value=1)
    return delivery


def _message(delivery: DeliveryModel, now: datetime) -> n.Notification | None:
    """What this delivery says: as its first attempt sent it (a retry of a webhook is the same signed body under
    the same ``webhook-id``), or composed now for a first attempt.  None if it cannot be composed."""
    if delivery.message:
        return n.Notification.from_json(dict(delivery.message))
    try:
        return compose(delivery, now)
    except Exception:  # noqa: BLE001 - recorded on the delivery (and retried), never lost silently
        logger.exception("alert could not be composed", extra={"delivery_id": delivery.delivery_id})
        return None


def _still_down(notification: n.Notification, team_id: str) -> n.Notification:
    """A retry of a "down" for people leaves out monitors deleted or paused since the first attempt: their
    outage ended so, and people get no "up" for it (machines do: they get the down, then its resolution)."""
    if notification.type != "incident.opened":
        return notification
    found = monitors.get_many(team_id, [str(item.monitor["id"]) for item in notification.items])
    live = {monitor_id for monitor_id, monitor in found.items() if not monitor.paused}
    return replace(notification, items=tuple(i for i in notification.items if i.monitor["id"] in live))


def _send(target: Target, delivery: DeliveryModel, notification: n.Notification, now: datetime) -> Sent:
    kind = target.kind
    try:
        config = kind.remaining(target.config, [str(r) for r in delivery.sent_to or ()])
        message = kind.build(notification, config, delivery.delivery_id)
        with ssrf.lookups_for(delivery.team_id):  # a receiver's hung DNS holds its team's lookup slots only
            return kind.send(message, config, delivery.delivery_id, now)
    except Exception as exc:  # noqa: BLE001 - recorded on the delivery (and retried), never lost silently
        logger.exception("alert delivery failed", extra={"delivery_id": delivery.delivery_id})
        return Sent(ok=False, error=type(exc).__name__)


# ---------------------------------------------------------------------------------------- a test notification


def send_test(team_id: str, channel_id: str, now: datetime) -> deliveries.Delivery:
    """Send a test notification now, once (no retries), and return its delivery record."""
    channel = channels.get(team_id, channel_id)
    delivery_id = new_id("dlv")
    deliveries.create(
        channel.id, delivery_id, team_id=team_id, event="test", critical=False, source={"test": True}, now=now
    )
    found = attempt(channel.id, delivery_id, 1, now, max_attempts=1)
    assert found is not None  # just created: the first attempt is always this one
    found.refresh(consistent_read=True)  # the attempt's record
    return deliveries.to_delivery(found)
