"""A team's plan and its Stripe subscription, as Stripe's events tell it (``POST /v1/webhooks/stripe``).

1. The event is verified by the ``stripe`` library over the exact raw body (``Stripe-Signature``, 300 s of
   tolerance): a bad, missing or stale signature is a 400 and nothing is stored.
2. Its id is claimed once (a conditional write in ``stripe_events``, kept 35 days): a second delivery is answered
   200 and changes nothing.  If applying it fails, the claim is released, so Stripe's retry applies it.
3. It is applied from its own payload, never by calling Stripe back.  The team is ``metadata.team_id`` (checkout
   sets it on the session and the subscription), else the team recorded for the Stripe customer at checkout.
4. A team's billing state carries the ``created`` of the newest event applied; an older event is recorded and
   ignored (the write is conditional on it), so Stripe's out-of-order deliveries never roll a plan back.

Unknown event types and teams are answered 200 and logged: Stripe would retry a failure for days.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe

from chalicelib import errors
from chalicelib.billing import plans
from chalicelib.billing.models import StripeCustomerModel, StripeEventModel
from chalicelib.observability import logger, metrics
from chalicelib.settings import get_settings
from chalicelib.storage.base import condition_failed
from chalicelib.teams.models import TeamModel

TOLERANCE_SECONDS = 300
EVENT_KEEP = timedelta(days=35)
SUBSCRIPTION_EVENTS = (
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
)
INVOICE_EVENTS = ("invoice.payment_failed", "invoice.paid")
HANDLED = ("checkout.session.completed", *SUBSCRIPTION_EVENTS, *INVOICE_EVENTS)
# The statuses that hold a paid plan (past_due: Stripe's retries are the grace); any other (incomplete, paused,
# unpaid, canceled, incomplete_expired, …) is the free plan.
PAYING = ("active", "trialing", "past_due")


@dataclass(frozen=True)
class Billing:
    plan: str
    status: str
    current_period_end: datetime | None
    cancel_at_period_end: bool
    customer_id: str | None


@dataclass(frozen=True)
class Change:
    """What applying an event did to a team's plan (the caller enforces a downgrade and tells the owner)."""

    team_id: str
    before: str
    after: str
    payment_failed: bool = False


def billing_of(item: TeamModel) -> Billing:
    return Billing(
        plan=plans.plan(item.plan).id,
        status=item.billing_status or "active",
        current_period_end=item.current_period_end,
        cancel_at_period_end=bool(item.cancel_at_period_end),
        customer_id=item.stripe_customer_id,
    )


def get_billing(team_id: str) -> Billing:
    try:
        return billing_of(TeamModel.get(team_id, consistent_read=True))
    except TeamModel.DoesNotExist:
        raise errors.NotFound("No such team.") from None


# ------------------------------------------------------------------------------------------------- webhooks


def verify(raw: bytes, signature: str | None) -> dict[str, Any]:
    """The event, if Stripe signed these very bytes within the tolerance; else 400."""
    secret = get_settings().stripe_webhook_secret
    if not secret:
        raise errors.ServiceUnavailable("Billing is not configured.")
    if not signature:
        raise errors.BadRequest("The Stripe-Signature header is missing.")
    try:
        payload = raw.decode("utf-8")
        # The library's own check of the signature (what Webhook.construct_event runs before building an object).
        stripe.WebhookSignature.verify_header(payload, signature, secret, TOLERANCE_SECONDS)
        event = json.loads(payload)
    except (ValueError, stripe.SignatureVerificationError):
        raise errors.BadRequest("The Stripe signature does not match this body, or is too old.") from None
    except RecursionError:  # found by a fresh-eyes review of issue 21: signed, 100,000 "[" were a 500
        raise errors.BadRequest("Not a Stripe event: nested too deeply.") from None
    event_id = event.get("id") if isinstance(event, dict) else None
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 255 or not isinstance(event.get("data"), dict):
        raise errors.BadRequest("Not a Stripe event.")
    return event


def receive(event: dict[str, Any], now: datetime) -> tuple[str, Change | None]:
    """Apply a verified event once: its outcome, and the plan change it made (if any)."""
    kind = str(event.get("type", ""))
    created = _int(event.get("created"))
    claim = StripeEventModel(
        event["id"], type=kind[:100], created=created, received_at=now, expires_at=now + EVENT_KEEP
    )
    try:
        claim.save(condition=StripeEventModel.event_id.does_not_exist())
    except Exception as exc:
        if condition_failed(exc):
            return "duplicate", _unsettled(event["id"])
        raise
    try:
        outcome, team_id, change = _apply(kind, created, _object(event), now)
    except Exception:
        claim.delete()  # Stripe retries it, and the retry applies it
        raise
    recorded: list[Any] = [StripeEventModel.outcome.set(outcome)]
    if team_id:
        recorded.append(StripeEventModel.team_id.set(team_id))
    if change is not None:
        recorded += [
            StripeEventModel.plan_before.set(change.before),
            StripeEventModel.plan_after.set(change.after),
            StripeEventModel.payment_failed.set(change.payment_failed),
            StripeEventModel.settled.set(False),
        ]
    claim.update(actions=recorded)
    logger.info("stripe event", extra={"event_id": event["id"], "type": kind, "outcome": outcome, "team_id": team_id})
    metrics.add_metric(name="StripeEvents", unit="Count", value=1)
    return outcome, change


def _unsettled(event_id: str) -> Change | None:
    """An applied event whose consequences were not settled (the attempt failed): its change, to settle again."""
    try:
        found = StripeEventModel.get(event_id, consistent_read=True)
    except StripeEventModel.DoesNotExist:
        return None
    if found.outcome != "applied" or found.settled is not False or not found.team_id or not found.plan_after:
        return None
    return Change(found.team_id, str(found.plan_before), str(found.plan_after), bool(found.payment_failed))


def mark_settled(event_id: str) -> None:
    StripeEventModel(event_id).update(actions=[StripeEventModel.settled.set(True)])


def _object(event: dict[str, Any]) -> dict[str, Any]:
    found = event["data"].get("object")
    return found if isinstance(found, dict) else {}


def _int(value: Any) -> int:
    """A whole number of seconds as Stripe sends one (anything else, or beyond any date, is 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or abs(value) > 2**40:
        return 0
    return int(value)


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _team_of(obj: dict[str, Any]) -> TeamModel | None:
    """``metadata.team_id`` (or a checkout's ``client_reference_id``), else the customer's team."""
    metadata = _map(obj.get("metadata"))
    candidates = [_str(metadata.get("team_id")), _str(obj.get("client_reference_id"))]
    customer = _str(obj.get("customer"))
    if customer:
        with contextlib.suppress(StripeCustomerModel.DoesNotExist):
            candidates.append(StripeCustomerModel.get(customer, consistent_read=True).team_id)
    for team_id in candidates:
        if team_id:
            try:
                return TeamModel.get(team_id, consistent_read=True)
            except TeamModel.DoesNotExist:
                continue
    return None


def _apply(kind: str, created: int, obj: dict[str, Any], now: datetime) -> tuple[str, str | None, Change | None]:
    """Each kind of event changes only what it says, ordered only against events of its kind: a plan comes from
    subscription events alone (their ``created`` against ``billing_event_at``), and only from the team's current
    subscription (a new one, ``….created``, becomes it: an old one's end changes nothing); a checkout links the
    customer and subscription; an invoice of the current subscription sets the payment status (its own order,
    ``invoice_event_at``)."""
    if kind not in HANDLED:
        return "ignored type", None, None
    team = _team_of(obj)
    if team is None:
        logger.warning("stripe event for no known team", extra={"type": kind})
        return "no team", None, None
    before = plans.plan(team.plan).id
    customer = _str(obj.get("customer"))
    if customer and team.stripe_customer_id != customer:
        StripeCustomerModel(customer, team_id=team.team_id).save()
    actions: list[Any] = [TeamModel.updated_at.set(now)]
    if customer and not team.stripe_customer_id:
        actions.append(TeamModel.stripe_customer_id.set(customer))
    condition: Any = None
    after, payment_failed = before, False
    if kind == "checkout.session.completed":
        if customer and team.stripe_customer_id and team.stripe_customer_id != customer:
            actions.append(TeamModel.stripe_customer_id.set(customer))  # the checkout's customer is the team's now
        if (subscription := _str(obj.get("subscription"))) and not team.stripe_subscription_id:
            actions.append(TeamModel.stripe_subscription_id.set(subscription))
    elif kind in SUBSCRIPTION_EVENTS:
        subscription = _str(obj.get("id"))
        current = team.stripe_subscription_id
        if current and subscription != current and not kind.endswith(".created"):
            return "not the team's subscription", team.team_id, None
        if created < int(team.billing_event_at or 0):
            return "older than the team's state", team.team_id, None
        status = _str(obj.get("status")) or "canceled"
        ended = kind.endswith(".deleted") or status not in PAYING
        after = plans.FREE if ended else _plan_of_price(obj) or before
        actions += [
            TeamModel.billing_event_at.set(created),
            TeamModel.plan.set(after),
            TeamModel.billing_status.set("canceled" if kind.endswith(".deleted") else status),
            TeamModel.cancel_at_period_end.set(bool(obj.get("cancel_at_period_end"))),
        ]
        if subscription:
            actions.append(TeamModel.stripe_subscription_id.set(subscription))
        if period_end := _period_end(obj):
            actions.append(TeamModel.current_period_end.set(period_end))
        condition = TeamModel.billing_event_at.does_not_exist() | (TeamModel.billing_event_at <= created)
    else:  # an invoice: the current subscription's payment
        subscription = _str(obj.get("subscription"))
        if subscription and team.stripe_subscription_id and subscription != team.stripe_subscription_id:
            return "not the team's subscription", team.team_id, None
        if plans.plan(team.plan).id == plans.FREE:
            return "no paid plan", team.team_id, None
        if created < int(team.invoice_event_at or 0):
            return "older than the team's state", team.team_id, None
        payment_failed = kind == "invoice.payment_failed"
        actions += [
            TeamModel.invoice_event_at.set(created),
            TeamModel.billing_status.set("past_due" if payment_failed else "active"),
        ]
        condition = TeamModel.invoice_event_at.does_not_exist() | (TeamModel.invoice_event_at <= created)
    try:
        team.update(actions=actions, condition=condition, add_version_condition=False)
    except Exception as exc:
        if condition_failed(exc):  # a newer event of its kind landed since this one read the team
            return "older than the team's state", team.team_id, None
        raise
    return "applied", team.team_id, Change(team.team_id, before, after, payment_failed)


def _plan_of_price(subscription: dict[str, Any]) -> str | None:
    settings = get_settings()
    by_price = {settings.stripe_price_pro: plans.PRO, settings.stripe_price_enterprise: plans.ENTERPRISE}
    for item in _items(subscription):
        price = _map(item.get("price"))
        if (found := by_price.get(str(price.get("id", "")))) is not None:
            return found
    return None


def _items(subscription: dict[str, Any]) -> list[dict[str, Any]]:
    data = _map(subscription.get("items")).get("data")
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def _period_end(subscription: dict[str, Any]) -> datetime | None:
    """The current period's end: on the subscription item (Stripe's newer API versions), else the subscription."""
    ends = [_int(item.get("current_period_end")) for item in _items(subscription)]
    end = max(ends, default=0) or _int(subscription.get("current_period_end"))
    try:
        return datetime.fromtimestamp(end, UTC) if end > 0 else None
    except (OverflowError, OSError, ValueError):  # not a time Stripe would send
        return None
