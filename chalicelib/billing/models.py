"""Billing tables: Stripe customers → teams, the Stripe events applied (once each), and the usage counters the
plan limits are checked against."""

from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)

from chalicelib.storage.base import BaseModel


class StripeCustomerModel(BaseModel):
    """A Stripe customer's team: an event without ``metadata.team_id`` is applied to the team whose checkout made
    the customer."""

    logical_name = "stripe_customers"

    class Meta:
        pass

    customer_id = UnicodeAttribute(hash_key=True)
    team_id = UnicodeAttribute()


class StripeEventModel(BaseModel):
    """A Stripe event as received: its id is claimed once (a conditional write), so each is applied once however
    often Stripe delivers it.  Kept 35 days (Stripe retries for three)."""

    logical_name = "stripe_events"

    class Meta:
        point_in_time_recovery = False  # a deduplication log with a TTL

    event_id = UnicodeAttribute(hash_key=True)
    type = UnicodeAttribute()
    created = NumberAttribute()  # the event's own time (epoch seconds)
    received_at = UTCDateTimeAttribute()
    team_id = UnicodeAttribute(null=True)
    outcome = UnicodeAttribute(null=True)  # "applied", "older than the team's state", "no team", "ignored type"
    # What an applied event changed, until its consequences are settled (``lifecycle.settle_plan``): a redelivery
    # settles them again if the first attempt failed.
    plan_before = UnicodeAttribute(null=True)
    plan_after = UnicodeAttribute(null=True)
    payment_failed = BooleanAttribute(null=True)
    settled = BooleanAttribute(null=True)
    expires_at = TTLAttribute()


class UsageModel(BaseModel):
    """How much of a limited resource a team uses (``billing.limits``): one counter a team and resource, moved by
    the writes that create or remove one, under a condition, so parallel creates cannot pass a limit."""

    logical_name = "usage"

    class Meta:
        pass

    team_id = UnicodeAttribute(hash_key=True)
    resource = UnicodeAttribute(range_key=True)  # "monitors" (active), "status_pages", "alert_channels", "members"
    used = NumberAttribute(default=0)
