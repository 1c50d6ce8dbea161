"""The two Stripe calls Vigil makes (a Checkout Session, a Billing Portal session), with the official library.

Where the calls go is ``STRIPE_API_BASE`` (unset: Stripe; ``make dev`` and the tests: the local stand-in,
``local.stripe_standin``), with a timeout on every call.  Stripe's own errors become a 502 problem: the user can
try again, and nothing of Vigil changed.
"""

from __future__ import annotations

from typing import Any

import stripe

from chalicelib import errors
from chalicelib.billing import plans
from chalicelib.observability import logger
from chalicelib.settings import get_settings

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0


def _client() -> stripe.StripeClient:
    settings = get_settings()
    if not settings.stripe_secret_key:
        raise errors.ServiceUnavailable("Billing is not configured.")
    base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
    return stripe.StripeClient(
        settings.stripe_secret_key,
        base_addresses=base,  # type: ignore[arg-type]
        http_client=stripe.RequestsClient(timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)),
        max_network_retries=1,
    )


def price_of(plan: str) -> str:
    settings = get_settings()
    return {plans.PRO: settings.stripe_price_pro, plans.ENTERPRISE: settings.stripe_price_enterprise}[plan]


def _call(what: str, call: Any) -> Any:
    try:
        return call()
    except stripe.StripeError as exc:
        logger.warning("stripe call failed", extra={"call": what, "error": type(exc).__name__})
        raise errors.BadGateway("Stripe did not answer as expected; try again in a moment.") from None


def checkout(*, team_id: str, plan: str, customer_id: str | None, email: str, app_url: str) -> str:
    """A subscription-mode Checkout Session for ``plan``, tied to the team every way Stripe's events can carry it
    back: ``client_reference_id``, the session's and the subscription's ``metadata.team_id``, and the team's
    customer when it has one.  Its URL."""
    params: dict[str, Any] = {
        "mode": "subscription",
        "line_items": [{"price": price_of(plan), "quantity": 1}],
        "client_reference_id": team_id,
        "metadata": {"team_id": team_id, "plan": plan},
        "subscription_data": {"metadata": {"team_id": team_id, "plan": plan}},
        "success_url": f"{app_url}/settings/billing?checkout=success",
        "cancel_url": f"{app_url}/settings/billing?checkout=cancelled",
    }
    if customer_id:
        params["customer"] = customer_id
    else:
        params["customer_email"] = email
    session = _call("checkout", lambda: _client().v1.checkout.sessions.create(params=params))  # type: ignore[arg-type]
    return str(session.url)


def portal(*, customer_id: str, app_url: str) -> str:
    """A Billing Portal session for the team's customer (change or cancel the plan, payment methods, invoices)."""
    params = {"customer": customer_id, "return_url": f"{app_url}/settings/billing"}
    session = _call("portal", lambda: _client().v1.billing_portal.sessions.create(params=params))  # type: ignore[arg-type]
    return str(session.url)
