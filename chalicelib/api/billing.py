"""/v1/plans, /v1/billing and Stripe's webhook (``billing``).

The plans are public; a team's billing state and usage are for every member; what changes the subscription is
Stripe's to say, through its signed webhook (the owner starts it with a checkout)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from chalicelib import errors, lifecycle
from chalicelib.api.framework import Call, Out, Router
from chalicelib.billing import plans, stripe_api
from chalicelib.billing import service as billing
from chalicelib.clock import isoz, utcnow
from chalicelib.schema import Schema
from chalicelib.settings import get_settings
from chalicelib.teams import authz
from chalicelib.users import service as users

router = Router("billing")

PlanId = Literal["free", "pro", "enterprise"]
WEBHOOK_MAX_BYTES = 512 * 1024  # Stripe's events are a few KB; a subscription with many items some tens


class LimitsOut(Out):
    monitors: int = Field(description="active (not paused) monitors")
    min_interval_seconds: int
    regions: int = Field(description="regions per monitor")
    status_pages: int
    alert_channels: int
    members: int = Field(description="members and pending invitations")
    api_requests_per_minute: int
    result_retention_days: int


class PlanOut(Out):
    id: PlanId
    name: str
    price_monthly_usd: int
    limits: LimitsOut


class UsageOut(Out):
    monitors: int
    status_pages: int
    alert_channels: int
    members: int


class BillingOut(Out):
    plan: PlanId
    status: str = Field(description='the subscription\'s status ("active", "past_due", "canceled", …)')
    current_period_end: str | None
    cancel_at_period_end: bool
    limits: LimitsOut
    usage: UsageOut


class CheckoutIn(Schema):
    plan: Literal["pro", "enterprise"] = Field(description="the plan to subscribe to")


class UrlOut(Out):
    url: str


class ReceivedOut(Out):
    received: bool
    outcome: str


def limits_out(plan: plans.Plan) -> LimitsOut:
    return LimitsOut(**plan.limits.resolved(len(get_settings().check_regions)))


@router.route("GET", "/v1/plans", summary="The plans and their limits", auth="none", response=list[PlanOut])
def list_plans(call: Call) -> list[PlanOut]:
    return [
        PlanOut(id=p.id, name=p.name, price_monthly_usd=p.price_monthly_usd, limits=limits_out(p))  # type: ignore[arg-type]
        for p in plans.PLANS.values()
    ]


@router.route(
    "GET",
    "/v1/billing",
    summary="The team's plan, subscription and usage",
    auth="team",
    permission=authz.READ,
    response=BillingOut,
)
def get_billing(call: Call) -> BillingOut:
    team_id = call.user.team_id
    state = billing.get_billing(team_id)
    return BillingOut(
        plan=state.plan,  # type: ignore[arg-type]
        status=state.status,
        current_period_end=isoz(state.current_period_end),
        cancel_at_period_end=state.cancel_at_period_end,
        limits=limits_out(plans.plan(state.plan)),
        usage=UsageOut(**lifecycle.usage(team_id, utcnow())),
    )


@router.route(
    "POST",
    "/v1/billing/checkout",
    summary="Start a subscription (Stripe Checkout)",
    auth="team",
    permission=authz.OWNER,
    body=CheckoutIn,
    response=UrlOut,
    errors=(409, 502),
)
def start_checkout(call: Call) -> UrlOut:
    """The owner is sent to Stripe Checkout; the plan changes when Stripe's events say it was paid.  A team with
    a paid subscription changes it in the portal (409)."""
    team_id = call.user.team_id
    state = billing.get_billing(team_id)
    if state.plan != plans.FREE and state.status in billing.PAYING:
        # A second subscription would bill the team twice: a plan change goes through the portal.
        raise errors.Conflict(f"The team is on the {state.plan} plan; change it in the billing portal.")
    url = stripe_api.checkout(
        team_id=team_id,
        plan=call.body.plan,
        customer_id=state.customer_id,
        email=users.get_user(call.user.user_id).email,
        app_url=get_settings().app_url,
    )
    return UrlOut(url=url)


@router.route(
    "POST",
    "/v1/billing/portal",
    summary="Manage the subscription (Stripe's billing portal)",
    auth="team",
    permission=authz.OWNER,
    response=UrlOut,
    errors=(409, 502),
)
def open_portal(call: Call) -> UrlOut:
    """Change or cancel the plan, payment methods and invoices, at Stripe.  A team that never subscribed: 409."""
    state = billing.get_billing(call.user.team_id)
    if not state.customer_id:
        raise errors.Conflict("The team has no subscription yet: start one with a checkout.")
    return UrlOut(url=stripe_api.portal(customer_id=state.customer_id, app_url=get_settings().app_url))


@router.route(
    "POST",
    "/v1/webhooks/stripe",
    summary="Stripe's events (signed)",
    auth="none",
    response=ReceivedOut,
    errors=(400, 413),
    max_body_bytes=WEBHOOK_MAX_BYTES,
    ip_limit=3000,  # Stripe sends from a handful of addresses; its bursts (renewals at a month's start) are large
    headers=(("Stripe-Signature", "Stripe's signature over the exact body (400 without it)"),),
)
def stripe_webhook(call: Call) -> Any:
    """Verified with the ``Stripe-Signature`` header over the exact body (400 and no effect otherwise); each event
    is applied once, and never over a newer state."""
    event = billing.verify(call.raw_body, call.headers.get("stripe-signature"))
    outcome = lifecycle.receive_stripe_event(event, utcnow())
    return ReceivedOut(received=True, outcome=outcome)
