"""The alert handler: from one event (an incident's timeline entry, a monitor event) to deliveries.

For each target — the monitor's channels that want this kind of event, and, for incidents, the team's members
by email as their preferences allow — it applies the cooldown, then either creates the delivery (its id derived
from the event and the target: the same record arriving three times makes one delivery) or, for a down or up
that people read, adds the incident to the target's group for that minute: a group is sent once, shortly
after its minute ends, as one message listing every monitor in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.alerts import deliveries, queue
from chalicelib.alerts.kinds import KINDS, Kind
from chalicelib.alerts.models import AlertMarkModel, ChannelModel
from chalicelib.alerts.notification import CRITICAL, NOTIFY_ON, PAYLOAD_TYPES
from chalicelib.ids import derived_id
from chalicelib.incidents.events import Event
from chalicelib.monitors import service as monitors
from chalicelib.storage.base import condition_failed
from chalicelib.teams import service as teams
from chalicelib.users import service as users

GROUP_GRACE_S = 10  # a group is sent this long after its minute ends (results of that minute still arriving)
MEMBER_COOLDOWN_S = 300
MARK_DAYS = 2


@dataclass(frozen=True)
class Target:
    id: str  # a channel id, or member:<user_id>
    kind: Kind
    cooldown_s: int
    is_channel: bool


def _channels(team_id: str, channel_ids: Any, payload: str) -> list[Target]:
    if not channel_ids:
        return []
    keys = [(team_id, str(c)) for c in dict.fromkeys(channel_ids)]
    found = []
    for channel in ChannelModel.batch_get(keys):
        kind = KINDS.get(channel.type)
        if kind is None or not channel.enabled or NOTIFY_ON[payload] not in channel.notify_on:
            continue
        if kind.supports(payload):
            found.append(Target(channel.channel_id, kind, int(channel.cooldown_seconds), True))
    return sorted(found, key=lambda t: t.id)


def _closers(event: Event, payload: str) -> list[Target]:
    """A monitor deleted or paused while down: its incident resolves, since no check will ever end it.  Whoever
    did it needs no message about it, and people are not told; but machines that opened something for the
    outage (a PagerDuty incident, a receiver's ticket) are told it is over, so nothing stays open there forever —
    the channels it had, as its resolution keeps them, that were told of this outage (the cooldown mark names
    it)."""
    if payload != "incident.resolved":
        return []
    channel_ids = event.data.get("channel_ids") or []
    return [t for t in _channels(event.team_id, channel_ids, payload) if not t.kind.groupable]


def _members(team_id: str, payload: str) -> list[Target]:
    """Incident news for the team's members, by email: verified addresses only; ``critical_only`` members get
    only down and up.  Quiet hours are applied when the email is due to go (it is held until they end)."""
    found = []
    for user in users.get_many(teams.member_ids(team_id)):
        if not user.email_verified:
            continue
        if user.critical_only and payload not in CRITICAL:
            continue
        found.append(Target(deliveries.MEMBER_PREFIX + user.id, KINDS["email"], MEMBER_COOLDOWN_S, False))
    return sorted(found, key=lambda t: t.id)


def plan(event: Event, now: datetime) -> list[str]:
    """Plan the deliveries of one event.  Idempotent.  Returns what was planned, per target (for logs)."""
    payload = PAYLOAD_TYPES.get(event.type)
    if payload is None:
        return []
    if event.data.get("ended_by"):  # an outage ended by deleting or pausing its monitor
        return [f"{target.id}:{_plan_one(target, event, payload, now)}" for target in _closers(event, payload)]
    monitor = monitors.find(event.team_id, event.monitor_id)
    if monitor is None:
        return []  # deleted: its incident's resolution (above) says what there is to say
    targets = _channels(event.team_id, monitor.config.channel_ids, payload)
    if event.type.startswith("incident."):
        targets += _members(event.team_id, payload)
    return [f"{target.id}:{_plan_one(target, event, payload, now)}" for target in targets]


def _plan_one(target: Target, event: Event, payload: str, now: datetime) -> str:
    # The delivery of this event to this target, suppressed or sent.
    fields: dict[str, Any] = {
        "team_id": event.team_id,
        "event": payload,
        "critical": payload in CRITICAL,
        "source": {"subject": event.subject, "key": event.key},
        "now": now,
        "incident_ids": [event.incident_id] if event.incident_id else [],
        "monitor_ids": [event.monitor_id],
    }
    if not _cooled_down(target, event, payload):
        if target.is_channel:  # visible in the channel's deliveries, so a quiet channel can be explained
            error = f"cooldown ({target.cooldown_s} s)"
            deliveries.create(target.id, _delivery_id(event, target), status="suppressed", error=error, **fields)
        return "suppressed"
    if payload in CRITICAL and target.kind.groupable and event.incident_id:
        return _join_group(target, event, payload, now)
    deliveries.create_and_send(target.id, _delivery_id(event, target), **fields)
    return "queued"


def _delivery_id(event: Event, target: Target) -> str:
    return derived_id("dlv", event.at, event.subject, event.key, target.id)


# ------------------------------------------------------------------------------------------------ cooldown


def _cooled_down(target: Target, event: Event, payload: str) -> bool:
    """A channel tells of a monitor going down at most once per cooldown; it tells of the recovery only if it
    told of that outage.  The same event arriving again passes again (the mark names its incident)."""
    key = f"cool#{target.id}#{event.monitor_id}"
    if payload == "incident.resolved":
        try:
            return AlertMarkModel.get(key, consistent_read=True).incident_id == event.incident_id
        except AlertMarkModel.DoesNotExist:
            return False
    if payload == "incident.opened":
        return _claim(key, event, target.cooldown_s, event.incident_id)
    if payload == "monitor.degraded":
        return _claim(key + "#degraded", event, target.cooldown_s, event.key)
    return True


def _claim(key: str, event: Event, cooldown_s: int, holder: str | None) -> bool:
    at = event.at.astimezone(UTC)
    mark = AlertMarkModel(key)
    free = AlertMarkModel.until.does_not_exist() | (AlertMarkModel.until <= at)
    try:
        mark.update(
            actions=[
                AlertMarkModel.until.set(at + timedelta(seconds=cooldown_s)),
                AlertMarkModel.incident_id.set(holder or ""),
                AlertMarkModel.team_id.set(event.team_id),
                AlertMarkModel.expires_at.set(at + timedelta(days=MARK_DAYS, seconds=cooldown_s)),
            ],
            condition=free | (AlertMarkModel.incident_id == (holder or "")),
        )
    except Exception as exc:
        if condition_failed(exc):
            return False
        raise
    return True


# -------------------------------------------------------------------------------------------------- groups


def group_key(team_id: str, target_id: str, payload: str, at: datetime) -> str:
    """One group a team, target, kind of alert and minute: a person in two teams gets each team's alert."""
    return f"group#{team_id}#{target_id}#{payload}#{at.astimezone(UTC):%Y-%m-%dT%H:%M}"


def _join_group(target: Target, event: Event, payload: str, now: datetime) -> str:
    incident_id = str(event.incident_id)
    minute = event.at.astimezone(UTC).replace(second=0, microsecond=0)
    key = group_key(event.team_id, target.id, payload, minute)
    mark = AlertMarkModel(key)
    try:
        mark.update(
            actions=[
                AlertMarkModel.members.add({incident_id}),
                AlertMarkModel.team_id.set(event.team_id),
                AlertMarkModel.expires_at.set(minute + timedelta(days=MARK_DAYS)),
            ],
            condition=AlertMarkModel.flushed_at.does_not_exist(),
        )
    except Exception as exc:
        if not condition_failed(exc):
            raise
        if incident_id in (AlertMarkModel.get(key, consistent_read=True).members or set()):
            return "grouped"  # this record again, after its group went out
        # Too late for its minute's group (it went out already): on its own.
        deliveries.create_and_send(
            target.id,
            derived_id("dlv", event.at, key, incident_id),
            team_id=event.team_id,
            event=payload,
            critical=True,
            source={"incidents": [incident_id], "at": event.at.astimezone(UTC).isoformat()},
            now=now,
            incident_ids=[incident_id],
            monitor_ids=[event.monitor_id],
        )
        return "queued"
    # Every member schedules the send (sending is idempotent): were only the first to, a crash between its join
    # and its enqueue would lose the group, since a retry would no longer find itself first.
    due = minute + timedelta(seconds=60 + GROUP_GRACE_S)
    queue.enqueue(queue.Flush(key, target.id, event.team_id, payload, minute), (due - now).total_seconds())
    return "grouped"


def flush(key: str, target: str, team_id: str, payload: str, at: datetime, now: datetime) -> None:
    """Send a group: freeze its members (once), then one delivery for all of them."""
    mark = AlertMarkModel(key)
    try:
        mark.update(
            actions=[AlertMarkModel.flushed_at.set(now)],
            condition=AlertMarkModel.flushed_at.does_not_exist() & AlertMarkModel.key.exists(),
        )
    except Exception as exc:
        if not condition_failed(exc):
            raise
        try:
            mark = AlertMarkModel.get(key, consistent_read=True)  # flushed before: make sure its delivery exists
        except AlertMarkModel.DoesNotExist:
            return
    members = sorted(mark.members or ())
    if not members:
        return
    deliveries.create_and_send(
        target,
        derived_id("dlv", at, key),
        team_id=team_id,
        event=payload,
        critical=True,
        source={"incidents": members, "at": at.isoformat()},
        now=now,
        incident_ids=members,
    )
