"""Delivering one notification to one target: claim the attempt, build, send, record, retry or give up.

A delivery is created once (its id is derived from what is notified and where, with a conditional put), then
driven by messages on the alerts queue, one per attempt.  Each attempt is claimed with a conditional update on
``attempts``, so a duplicated message never sends twice.  A failure worth retrying (5xx, 408, 429, no response)
is retried with exponential backoff and jitter through the queue's DelaySeconds, never sooner than the
receiver's ``Retry-After``; a 410 disables the channel and tells the team's admins; any other answer is final.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo

from chalicelib.alerts import notification as n
from chalicelib.alerts.kinds import KINDS, Kind, Sent
from chalicelib.alerts.models import ChannelModel, DeliveryModel
from chalicelib.alerts.queue import MAX_DELAY_S, enqueue_attempt
from chalicelib.aws.mail import deliver as deliver_email
from chalicelib.clock import isoz
from chalicelib.ids import id_floor
from chalicelib.incidents.models import EventModel, IncidentModel
from chalicelib.monitors.models import MonitorModel
from chalicelib.observability import logger, metrics
from chalicelib.settings import get_settings
from chalicelib.storage.base import condition_failed
from chalicelib.users.models import UserModel

MAX_ATTEMPTS = 6
BACKOFF_BASE_S = 30  # then 60, 120, 240, 480 (each with jitter): about 15 minutes in all
MAX_RETRY_AFTER_S = 3600  # a receiver asking for more than an hour gets its retry in an hour
KEEP_DAYS = 30
STALE_SENDING = timedelta(minutes=5)  # a claim older than this died with its Lambda: the attempt may be retried
ORDER_WAIT_S = 5  # a later notification of an incident waits this long for an earlier one still in flight
ORDER_WINDOW = timedelta(minutes=20)  # … unless that one has not moved for this long (retries span ~15 min)
MEMBER_PREFIX = "member:"


# ---------------------------------------------------------------------------------------------- creation


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


# ----------------------------------------------------------------------------------------------- timing


def backoff_seconds(failed_attempt: int, rng: random.Random | None = None) -> float:
    """Exponential with "equal jitter": half the step fixed, half random, so retries never align."""
    step = min(MAX_DELAY_S, BACKOFF_BASE_S * 2 ** (failed_attempt - 1))
    return step / 2 + (rng or random).uniform(0, step / 2)


def retry_after_seconds(value: str | None, now: datetime) -> float:
    """``Retry-After``: seconds, or an HTTP date; at most an hour.  Unreadable or absent → 0."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(min(int(value), MAX_RETRY_AFTER_S))
    try:
        when = parsedate_to_datetime(value)
        return max(0.0, min(float(MAX_RETRY_AFTER_S), (when - now).total_seconds()))
    except (TypeError, ValueError, OverflowError, IndexError):
        return 0.0


# -------------------------------------------------------------------------------------- quiet hours (members)


def quiet_until(user: UserModel, now: datetime) -> datetime | None:
    """When the member's quiet hours end, if ``now`` is inside them (in the member's time zone)."""
    start, end = user.quiet_hours_start, user.quiet_hours_end
    if not start or not end:
        return None
    try:
        zone = ZoneInfo(user.timezone or "UTC")
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    local = now.astimezone(zone)
    begin = local.replace(hour=int(start[:2]), minute=int(start[3:5]), second=0, microsecond=0)
    finish = local.replace(hour=int(end[:2]), minute=int(end[3:5]), second=0, microsecond=0)
    if begin == finish:
        return None
    if begin < finish:  # e.g. 01:00-06:00
        inside = begin <= local < finish
        ends = finish
    else:  # across midnight, e.g. 22:00-07:00
        inside = local >= begin or local < finish
        ends = finish if local < finish else finish + timedelta(days=1)
    # Wall-clock arithmetic: re-localise so a DST change on the way is honoured.
    return ends.replace(tzinfo=None).replace(tzinfo=zone).astimezone(UTC) if inside else None


# ------------------------------------------------------------------------------------------ composing


def _user_label(user_id: str | None) -> str | None:
    if not user_id:
        return None
    try:
        user = UserModel.get(user_id)
    except UserModel.DoesNotExist:
        return "a former member"
    return user.name or user.email


def _monitor(team_id: str, monitor_id: str) -> dict[str, Any]:
    try:
        return n.monitor_snapshot(MonitorModel.get(team_id, monitor_id))
    except MonitorModel.DoesNotExist:
        return n.deleted_monitor(monitor_id)


def _incident(team_id: str, incident_id: str | None, app_url: str) -> dict[str, Any] | None:
    if not incident_id:
        return None
    try:
        return n.incident_snapshot(IncidentModel.get(team_id, incident_id), app_url)
    except IncidentModel.DoesNotExist:
        return None


def compose(delivery: DeliveryModel, now: datetime) -> n.Notification:
    """The notification a delivery carries, read fresh from the tables (the incident as it is now)."""
    app_url = get_settings().app_url.rstrip("/")
    source = dict(delivery.source or {})
    team_id = delivery.team_id
    if source.get("test"):
        monitor: dict[str, Any] = {"id": "mon_test", "name": "Example monitor", "url": "https://example.com/"}
        monitor |= {"method": "GET", "regions": list(get_settings().check_regions), "status": "down", "tags": []}
        incident: dict[str, Any] = {
            "id": "inc_test",
            "status": "open",
            "cause": "HTTP 503",
            "started_at": isoz(now),
            "acknowledged_at": None,
            "resolved_at": None,
            "affected_regions": list(get_settings().check_regions),
            "url": f"{app_url}/incidents",
        }
        return n.Notification("test", now, (n.Item(monitor, incident),), app_url)
    if "incidents" in source:  # a group: many monitors down (or back) together
        items = []
        for incident_id in sorted(source["incidents"]):
            try:
                found = IncidentModel.get(team_id, incident_id)
            except IncidentModel.DoesNotExist:
                continue  # its team or monitor was deleted since
            monitor = _monitor(team_id, found.monitor_id)
            if monitor["url"] is None or monitor["status"] == "paused":
                continue  # deleted or paused while its group waited (its outage ended so): nobody needs telling
            items.append(n.Item(monitor, n.incident_snapshot(found, app_url)))
        items.sort(key=lambda item: (str(item.monitor["name"]).lower(), item.monitor["id"]))
        return n.Notification(delivery.event, _dt(source.get("at")) or now, tuple(items), app_url)
    event = EventModel.get(source["subject"], source["key"])
    kind = event.type.split(".", 1)[1]
    update = None
    if event.type in ("incident.acknowledged", "incident.note", "incident.postmortem_updated"):
        update = {"kind": kind, "text": event.text, "by": _user_label(event.by)}
    certificate = None
    if event.type == "ssl.expiring":
        data = dict(event.data or {})
        certificate = {"expires_at": isoz(_dt(data.get("expires_at"))), "days_left": data.get("days_left")}
    monitor = _monitor(team_id, event.monitor_id)
    if monitor["url"] is None:  # deleted: the name and settings its incident's resolution kept
        monitor |= dict((event.data or {}).get("monitor") or {})
    item = n.Item(monitor, _incident(team_id, event.incident_id, app_url))
    return n.Notification(delivery.event, event.at, (item,), app_url, update=update, certificate=certificate)


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


# --------------------------------------------------------------------------------------------- attempts


@dataclass(frozen=True)
class Target:
    kind: Kind
    config: dict[str, Any]
    channel: ChannelModel | None = None
    user: UserModel | None = None


def _target(delivery: DeliveryModel) -> Target | str:
    """The kind and config to send with, or why there is nothing to send to."""
    if delivery.target.startswith(MEMBER_PREFIX):
        try:
            user = UserModel.get(delivery.target.removeprefix(MEMBER_PREFIX))
        except UserModel.DoesNotExist:
            return "member_gone"
        return Target(KINDS["email"], {"addresses": [user.email]}, user=user)
    try:
        channel = ChannelModel.get(delivery.team_id, delivery.target)
    except ChannelModel.DoesNotExist:
        return "channel_deleted"
    if not channel.enabled and delivery.event != "test":
        return "channel_disabled"
    return Target(KINDS[channel.type], dict(channel.config or {}), channel=channel)


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
    elif sent.gone and found.channel is not None:
        _finish(delivery, number, "failed", sent, now)
        _gone(found.channel, now)
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
    keys = [(team_id, str(item.monitor["id"])) for item in notification.items]
    live = {m.monitor_id for m in MonitorModel.batch_get(keys) if not m.paused}
    return replace(notification, items=tuple(i for i in notification.items if i.monitor["id"] in live))


def _send(target: Target, delivery: DeliveryModel, notification: n.Notification, now: datetime) -> Sent:
    kind = target.kind
    try:
        config = kind.remaining(target.config, [str(r) for r in delivery.sent_to or ()])
        message = kind.build(notification, config, delivery.delivery_id)
        return kind.send(message, config, delivery.delivery_id, now)
    except Exception as exc:  # noqa: BLE001 - recorded on the delivery (and retried), never lost silently
        logger.exception("alert delivery failed", extra={"delivery_id": delivery.delivery_id})
        return Sent(ok=False, error=type(exc).__name__)


def _gone(channel: ChannelModel, now: datetime) -> None:
    """410 Gone: the receiver will never accept again.  Turn the channel off and tell the team's admins."""
    from chalicelib.alerts import channels
    from chalicelib.teams.service import list_members

    reason = "The receiver answered 410 Gone"
    if not channels.disable(channel.team_id, channel.channel_id, reason, now):
        return
    app_url = get_settings().app_url.rstrip("/")
    for member in list_members(channel.team_id):
        if member.role in ("owner", "admin"):
            deliver_email(member.email, _disabled_email(channel, app_url), channel_id=channel.channel_id)


@dataclass(frozen=True)
class _Text:
    subject: str
    text: str
    html: str


def _disabled_email(channel: ChannelModel, app_url: str) -> _Text:
    import html

    name = channel.name
    link = f"{app_url}/alert-channels/{channel.channel_id}"
    text = (
        f'Vigil turned off the alert channel "{name}" ({channel.type}): its receiver answered 410 Gone, which '
        f"means it will not accept notifications again.\n\nFix or replace it, then turn it back on: {link}\n"
    )
    body = (
        f"<p>Vigil turned off the alert channel <strong>{html.escape(name)}</strong> ({channel.type}): its "
        "receiver answered <code>410 Gone</code>, which means it will not accept notifications again.</p>"
        f'<p><a href="{html.escape(link)}">Fix or replace it, then turn it back on</a>.</p>'
    )
    return _Text(f'[Vigil] Alert channel "{name}" was turned off', text, body)
