"""Alert tables: channels (by team), deliveries (by channel, 30 days) and alert marks (cooldowns, groups)."""

from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)

from chalicelib.storage.base import BaseModel


class ChannelModel(BaseModel):
    logical_name = "alert_channels"

    class Meta:
        pass

    team_id = UnicodeAttribute(hash_key=True)
    channel_id = UnicodeAttribute(range_key=True)
    type = UnicodeAttribute()
    name = UnicodeAttribute()
    # With ``sealed_config``: what readers see (the kind's masked config).  Without (a channel written before sealing,
    # or a kind with no secret): the config itself, secrets included, never returned.
    config = JSONAttribute(default=dict)
    sealed_config = UnicodeAttribute(null=True)  # the config with its secrets, sealed (``chalicelib.sealing``)
    enabled = BooleanAttribute(default=True)
    disabled_reason = UnicodeAttribute(null=True)
    notify_on = ListAttribute(of=UnicodeAttribute, default=list)
    cooldown_seconds = NumberAttribute(default=300)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    version = VersionAttribute()


class DeliveryModel(BaseModel):
    """One notification to one target (a channel, or a team member's email), with every attempt at it.

    ``delivery_id`` is derived from what is notified and where, so the same event arriving again finds its
    delivery instead of making a second one.  ``target`` is the channel id, or ``member:<user_id>``.
    """

    logical_name = "deliveries"

    class Meta:
        pass

    target = UnicodeAttribute(hash_key=True)
    delivery_id = UnicodeAttribute(range_key=True)
    team_id = UnicodeAttribute()
    event = UnicodeAttribute()  # the payload type: incident.opened, incident.updated, ssl.expiring, test, …
    critical = BooleanAttribute(default=False)
    incident_ids = ListAttribute(of=UnicodeAttribute, default=list)
    monitor_ids = ListAttribute(of=UnicodeAttribute, default=list)
    source = JSONAttribute(default=dict)  # what to build the message from: {subject, key} of the event(s)
    status = UnicodeAttribute()  # pending | sending | retrying | delivered | failed | suppressed
    attempts = NumberAttribute(default=0)
    log = JSONAttribute(default=list)  # [{attempt, at, outcome, response_status, latency_ms, error, excerpt}]
    sent_to = ListAttribute(of=UnicodeAttribute, default=list)  # recipients already reached (email, SMS)
    message = JSONAttribute(null=True)  # the notification as the first attempt sent it: retries send the same
    response_status = NumberAttribute(null=True)
    error = UnicodeAttribute(null=True)
    next_attempt_at = UTCDateTimeAttribute(null=True)
    sending_at = UTCDateTimeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    expires_at = TTLAttribute()


class AlertMarkModel(BaseModel):
    """Small coordination items: a channel's cooldown for a monitor (``cool#…``) and notification groups
    (``group#…``: the incidents that went down together, frozen when the group is sent)."""

    logical_name = "alert_marks"

    class Meta:
        pass

    key = UnicodeAttribute(hash_key=True)
    team_id = UnicodeAttribute(null=True)
    until = UTCDateTimeAttribute(null=True)
    incident_id = UnicodeAttribute(null=True)
    members = UnicodeSetAttribute(null=True)
    flushed_at = UTCDateTimeAttribute(null=True)
    expires_at = TTLAttribute()


class SuppressionModel(BaseModel):
    """An address alert email no longer goes to: SES reported a permanent bounce or a complaint for it."""

    logical_name = "email_suppressions"

    class Meta:
        pass

    address = UnicodeAttribute(hash_key=True)  # normalised (lower case)
    reason = UnicodeAttribute()  # "bounce" | "complaint"
    detail = UnicodeAttribute(null=True)  # the bounce's subtype and diagnostic, cut short
    at = UTCDateTimeAttribute()
