"""Checkout and the billing portal through the real ``stripe`` library, against the local stand-in for Stripe
(``chalicelib.local.stripe_standin``, a loopback server): the session carries the team every way Stripe's events
can bring it back; paying sends the signed events, and the team is pro; the portal cancels, and it is free."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.local.stripe_standin import StripeStandIn
from tests.support import make_test_settings


@pytest.fixture
def standin(stripe_standin: StripeStandIn) -> StripeStandIn:
    return stripe_standin


@pytest.fixture
def settings(standin):
    return make_test_settings(STRIPE_API_BASE=standin.url)


@pytest.fixture
def wired(api: Any, standin: StripeStandIn) -> StripeStandIn:
    """The stand-in's events reach Vigil's webhook as Stripe's would (signed, through the API)."""
    received: list[int] = []

    def deliver(body: bytes, signature: str) -> None:
        r = api.acting_as(None).request(
            "POST", "/v1/webhooks/stripe", body=body, headers={"stripe-signature": signature}
        )
        received.append(r.status)
        assert r.status == 200, r.body

    standin.deliver = deliver
    return standin


def pay(standin: StripeStandIn, url: str) -> None:
    """The customer opens the checkout page and presses Pay."""
    import urllib3

    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2, read=10), retries=False)
    page = http.request("GET", url)
    assert page.status == 200
    assert b"<button>Pay</button>" in page.data
    assert http.request("POST", f"{url}/pay").status == 200


def test_checkout_then_pay_makes_the_team_pro_and_the_portal_cancels_it(api, alice, wired):
    team_id = alice["team"]["id"]
    r = api.post("/v1/billing/checkout", {"plan": "pro"})
    assert r.status == 200, r.body
    assert r.json["url"].startswith(f"{wired.url}/checkout/cs_")
    [session] = wired.sessions.values()
    assert (session["mode"], session["client_reference_id"], session["price"]) == (
        "subscription",
        team_id,
        "price_vigil_pro",
    )
    assert session["metadata"]["team_id"] == team_id
    assert session["subscription_data"]["metadata"]["team_id"] == team_id
    assert (session["customer"], session["customer_email"]) == (None, "alice@example.com")
    assert session["success_url"] == "https://app.vigil.test/settings/billing?checkout=success"

    pay(wired, r.json["url"])
    billing = api.get("/v1/billing").json
    assert (billing["plan"], billing["status"], billing["limits"]["monitors"]) == ("pro", "active", 100)

    # A team that pays changes its plan in the portal: another checkout would bill it twice.
    for plan in ("pro", "enterprise"):
        assert api.post("/v1/billing/checkout", {"plan": plan}).status == 409
    portal = api.post("/v1/billing/portal")
    assert portal.status == 200, portal.body
    assert portal.json["url"] == f"{wired.url}/portal/{session['customer']}"
    wired.change(session["customer"], None)  # the owner cancels in the portal
    assert api.get("/v1/billing").json["plan"] == "free"
    # A later checkout reuses the team's Stripe customer.
    assert api.post("/v1/billing/checkout", {"plan": "enterprise"}).status == 200
    later = list(wired.sessions.values())[-1]
    assert (later["customer"], later["customer_email"]) == (session["customer"], None)


def test_only_the_owner_starts_a_checkout_or_opens_the_portal(api, alice, teammate, wired):
    admin = teammate("ada@example.com", role="admin")
    assert api.acting_as(admin).post("/v1/billing/checkout", {"plan": "pro"}).status == 403
    assert api.acting_as(admin).post("/v1/billing/portal").status == 403
    assert wired.sessions == {}


def test_an_unknown_plan_is_422_and_a_team_without_subscription_has_no_portal(api, alice, wired):
    for plan in ("free", "platinum", None, 1):
        r = api.post("/v1/billing/checkout", {"plan": plan})
        assert (r.status, r.json["errors"][0]["field"]) == (422, "plan")
    r = api.post("/v1/billing/portal")
    assert (r.status, r.json["code"]) == (409, "conflict")
    assert wired.requests == []


def test_stripe_refusing_the_call_is_a_502_and_changes_nothing(api, alice, standin):
    standin.secret_key = "sk_test_another_account"  # Stripe answers 401 to Vigil's key
    r = api.post("/v1/billing/checkout", {"plan": "pro"})
    assert (r.status, r.json["code"]) == (502, "bad_gateway")
    assert "sk_test" not in r.body.decode()
    assert api.get("/v1/billing").json["plan"] == "free"


@pytest.mark.parametrize("settings", [make_test_settings(STRIPE_SECRET_KEY="")], indirect=False)
def test_without_a_stripe_key_billing_is_503(api, alice, settings):
    r = api.post("/v1/billing/checkout", {"plan": "pro"})
    assert (r.status, r.json["code"]) == (503, "service_unavailable")
