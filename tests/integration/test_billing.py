"""Plans and billing: the plans table, a team's billing state, and Stripe's webhook — signed by the library's own
helper, verified over the exact body, each event applied once and never over a newer state; a checkout makes the
team pro, a cancellation makes it free again with its excess monitors paused and nothing deleted."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from itertools import count
from typing import Any

import pytest
import stripe

from chalicelib.billing.models import StripeCustomerModel, StripeEventModel
from chalicelib.monitors.models import MonitorModel
from chalicelib.teams.models import TeamModel
from tests.factories import create_monitor
from tests.support import TEST_ENV, all_at_once

SECRET = TEST_ENV["STRIPE_WEBHOOK_SECRET"]
PRICE_PRO = "price_vigil_pro"
_ids = count(1)


def event(kind: str, obj: dict[str, Any], *, created: int | None = None, event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt_test_{next(_ids)}",
        "object": "event",
        "type": kind,
        "created": created if created is not None else int(time.time()),
        "data": {"object": obj},
    }


def signed(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    """The Stripe-Signature header, by the library's own helper (``t=…,v1=…``)."""
    at = int(time.time()) if timestamp is None else timestamp
    return str(stripe.WebhookSignature.generate_signature_header(body.decode(), secret, at))


def deliver(api: Any, payload: dict[str, Any], **sign: Any) -> Any:
    body = json.dumps(payload).encode()
    headers = {"stripe-signature": signed(body, **sign)}
    return api.acting_as(None).request("POST", "/v1/webhooks/stripe", body=body, headers=headers)


def subscription(team_id: str, *, status: str = "active", price: str = PRICE_PRO, **fields: Any) -> dict[str, Any]:
    return {
        "id": "sub_test_1",
        "object": "subscription",
        "customer": "cus_test_1",
        "status": status,
        "cancel_at_period_end": False,
        "metadata": {"team_id": team_id},
        "items": {"data": [{"price": {"id": price}, "current_period_end": 1_800_000_000}]},
        **fields,
    }


def team_item(alice: dict[str, Any]) -> TeamModel:
    return TeamModel.get(alice["team"]["id"], consistent_read=True)


# ------------------------------------------------------------------------------------------------- plans


def test_the_plans_are_public_with_their_limits(api):
    r = api.acting_as(None).get("/v1/plans")
    assert r.status == 200
    by_id = {p["id"]: p for p in r.json}
    assert [p["id"] for p in r.json] == ["free", "pro", "enterprise"]
    assert (by_id["pro"]["price_monthly_usd"], by_id["enterprise"]["price_monthly_usd"]) == (29, 199)
    assert by_id["free"]["limits"] == {
        "monitors": 10,
        "min_interval_seconds": 60,
        "regions": 3,
        "status_pages": 1,
        "alert_channels": 3,
        "members": 3,
        "api_requests_per_minute": 60,
        "result_retention_days": 7,
    }
    assert by_id["enterprise"]["limits"]["monitors"] == 1000
    assert by_id["pro"]["limits"]["regions"] == 3  # every configured region


def test_a_new_team_is_free_and_every_member_reads_its_billing(api, alice, teammate):
    create_monitor(api, url="https://1.1.1.1/")
    viewer = teammate("vic@example.com", role="viewer")
    r = api.acting_as(viewer).get("/v1/billing")
    assert r.status == 200, r.body
    assert (r.json["plan"], r.json["status"], r.json["current_period_end"], r.json["cancel_at_period_end"]) == (
        "free",
        "active",
        None,
        False,
    )
    assert r.json["usage"] == {"monitors": 1, "status_pages": 0, "alert_channels": 0, "members": 2}
    assert r.json["limits"]["monitors"] == 10


# ------------------------------------------------------------------------------------------------- signatures


def test_a_valid_event_is_applied_and_a_bad_signature_changes_nothing(api, alice):
    team_id = alice["team"]["id"]
    good = event("customer.subscription.created", subscription(team_id))
    body = json.dumps(good).encode()
    anonymous = api.acting_as(None)
    cases = {
        "wrong secret": {"stripe-signature": signed(body, secret="whsec_someone_else")},
        "stale": {"stripe-signature": signed(body, timestamp=int(time.time()) - 301)},
        "missing": {},
        "garbage": {"stripe-signature": "t=1,v1=abc"},
    }
    for name, headers in cases.items():
        r = anonymous.request("POST", "/v1/webhooks/stripe", body=body, headers=headers)
        assert (r.status, r.headers["content-type"]) == (400, "application/problem+json"), name
    changed = body.replace(b'"active"', b'"activf"')  # one byte
    r = anonymous.request("POST", "/v1/webhooks/stripe", body=changed, headers={"stripe-signature": signed(body)})
    assert r.status == 400
    assert list(StripeEventModel.scan()) == []
    assert team_item(alice).plan == "free"

    r = anonymous.request("POST", "/v1/webhooks/stripe", body=body, headers={"stripe-signature": signed(body)})
    assert (r.status, r.json) == (200, {"received": True, "outcome": "applied"})
    assert team_item(alice).plan == "pro"


def test_the_same_event_delivered_three_times_is_applied_once(api, alice, outbox):
    team_id = alice["team"]["id"]
    once = event("customer.subscription.created", subscription(team_id))
    outcomes = [deliver(api, once).json["outcome"] for _ in range(3)]
    assert outcomes == ["applied", "duplicate", "duplicate"]
    [stored] = list(StripeEventModel.scan())
    assert (stored.event_id, stored.outcome, stored.team_id) == (once["id"], "applied", team_id)
    assert len([m for m in outbox.to("alice@example.com") if m["subject"] == "Your Vigil plan is now pro"]) == 1


def test_an_update_older_than_the_state_is_recorded_and_ignored(api, alice):
    team_id = alice["team"]["id"]
    now = int(time.time())
    assert deliver(api, event("customer.subscription.updated", subscription(team_id), created=now)).status == 200
    old = event("customer.subscription.updated", subscription(team_id, status="past_due"), created=now - 60)
    r = deliver(api, old)
    assert r.json["outcome"] == "older than the team's state"
    item = team_item(alice)
    assert (item.plan, item.billing_status, item.billing_event_at) == ("pro", "active", now)
    assert StripeEventModel.get(old["id"]).outcome == "older than the team's state"


def test_unknown_types_and_teams_are_answered_200(api, alice):
    assert deliver(api, event("customer.created", {"id": "cus_x"})).json["outcome"] == "ignored type"
    nobody = subscription("team_nobody", customer="cus_nobody")
    assert deliver(api, event("customer.subscription.updated", nobody)).json["outcome"] == "no team"
    assert deliver(api, {"id": "evt_x", "type": "x"}).status == 400  # not an event


# ------------------------------------------------------------------------------------------------- the lifecycle


def test_checkout_then_subscription_makes_the_team_pro_and_remembers_its_customer(api, alice):
    team_id = alice["team"]["id"]
    session = {
        "id": "cs_test_1",
        "object": "checkout.session",
        "client_reference_id": team_id,
        "customer": "cus_test_1",
        "subscription": "sub_test_1",
        "metadata": {"team_id": team_id},
    }
    assert deliver(api, event("checkout.session.completed", session)).json["outcome"] == "applied"
    assert StripeCustomerModel.get("cus_test_1").team_id == team_id
    # Later events may name only the customer: the team is found through it.
    no_metadata = subscription(team_id, metadata={})
    assert deliver(api, event("customer.subscription.created", no_metadata)).json["outcome"] == "applied"

    billing = api.get("/v1/billing").json
    assert (billing["plan"], billing["status"], billing["current_period_end"]) == (
        "pro",
        "active",
        "2027-01-15T08:00:00Z",
    )
    assert billing["limits"]["monitors"] == 100
    item = team_item(alice)
    assert (item.stripe_customer_id, item.stripe_subscription_id) == ("cus_test_1", "sub_test_1")


def test_a_failed_payment_marks_the_team_past_due_and_tells_the_owner(api, alice, outbox):
    team_id = alice["team"]["id"]
    deliver(api, event("customer.subscription.created", subscription(team_id)))
    invoice = {"id": "in_1", "object": "invoice", "customer": "cus_test_1", "metadata": {"team_id": team_id}}
    assert deliver(api, event("invoice.payment_failed", invoice)).json["outcome"] == "applied"
    assert api.get("/v1/billing").json["status"] == "past_due"
    [mail] = [m for m in outbox.to("alice@example.com") if m["subject"] == "Your Vigil payment failed"]
    assert "payment method" in mail["text"]
    deliver(api, event("invoice.paid", invoice))
    assert api.get("/v1/billing").json["status"] == "active"


def test_a_cancelled_subscription_makes_the_team_free_pausing_its_newest_monitors_and_keeping_all(api, alice, outbox):
    team_id = alice["team"]["id"]
    now = int(time.time())
    deliver(api, event("customer.subscription.created", subscription(team_id), created=now - 10))
    made = [create_monitor(api, name=f"m{n:02d}", url=f"https://1.1.1.{n}/") for n in range(1, 13)]
    fast = api.patch(f"/v1/monitors/{made[0]['id']}", {"interval_seconds": 30})
    assert fast.status == 200, fast.body

    r = deliver(api, event("customer.subscription.deleted", subscription(team_id, status="canceled"), created=now))
    assert r.json["outcome"] == "applied"

    billing = api.get("/v1/billing").json
    assert (billing["plan"], billing["status"], billing["usage"]["monitors"]) == ("free", "canceled", 10)
    stored = {m.monitor_id: m for m in MonitorModel.query(team_id)}
    assert len(stored) == 12  # nothing deleted
    assert [stored[m["id"]].paused for m in made] == [False] * 10 + [True, True]  # the newest two
    assert stored[made[0]["id"]].interval_seconds == 60  # the plan's shortest
    [mail] = [m for m in outbox.to("alice@example.com") if m["subject"] == "Your Vigil plan is now free"]
    assert "m12: paused" in mail["text"]
    assert "m11: paused" in mail["text"]
    assert "m01: checked every 60 s instead of 30 s" in mail["text"]


@pytest.mark.parametrize("status", ["canceled", "unpaid", "incomplete_expired"])
def test_an_updated_subscription_that_ended_is_free(api, alice, status):
    team_id = alice["team"]["id"]
    deliver(api, event("customer.subscription.created", subscription(team_id), created=int(time.time()) - 5))
    deliver(api, event("customer.subscription.updated", subscription(team_id, status=status)))
    assert (team_item(alice).plan, team_item(alice).billing_status) == ("free", status)


# ------------------------------------------------------------------------------------------------- limits


def fill(api: Any, n: int) -> list[dict[str, Any]]:
    return [create_monitor(api, name=f"m{k:02d}", url=f"https://1.1.1.{k}/") for k in range(1, n + 1)]


def test_the_eleventh_monitor_of_a_free_team_is_402_naming_the_limit(api, alice):
    fill(api, 10)
    r = api.post("/v1/monitors", {"name": "one more", "url": "https://1.1.2.1/"})
    assert (r.status, r.headers["content-type"]) == (402, "application/problem+json")
    assert (r.json["code"], r.json["limit"], r.json["plan"], r.json["allowed"], r.json["used"]) == (
        "plan_limit_exceeded",
        "monitors",
        "free",
        10,
        10,
    )
    assert "Free plan allows 10 active monitors" in r.json["detail"]
    beat = api.post("/v1/monitors", {"type": "heartbeat", "name": "cron", "period_seconds": 3600})
    assert (beat.status, beat.json["code"]) == (402, "plan_limit_exceeded")  # a heartbeat is a monitor too
    assert len(list(MonitorModel.query(alice["team"]["id"]))) == 10


def test_a_paused_or_deleted_monitor_frees_its_place_and_a_resume_beyond_the_limit_is_402(api, alice):
    made = fill(api, 10)
    assert api.post(f"/v1/monitors/{made[0]['id']}/pause").status == 200
    assert api.post("/v1/monitors", {"name": "in its place", "url": "https://1.1.2.1/"}).status == 201
    r = api.post(f"/v1/monitors/{made[0]['id']}/resume")
    assert (r.status, r.json["limit"]) == (402, "monitors")
    assert MonitorModel.get(alice["team"]["id"], made[0]["id"]).paused  # still paused, unchanged
    assert api.delete(f"/v1/monitors/{made[1]['id']}").status == 204
    assert api.post(f"/v1/monitors/{made[0]['id']}/resume").status == 200
    assert api.get("/v1/billing").json["usage"]["monitors"] == 10


def test_twenty_parallel_creates_against_a_limit_of_ten_make_ten(api, alice):
    from concurrent.futures import ThreadPoolExecutor

    def one(k: int) -> int:
        return int(api.post("/v1/monitors", {"name": f"p{k}", "url": f"https://1.1.3.{k}/"}).status)

    saved = all_at_once(MonitorModel, "dynamodb.TransactWriteItems", 20)  # all counted at once
    with saved as met, ThreadPoolExecutor(max_workers=20) as pool:
        statuses = sorted(pool.map(one, range(1, 21)))
    assert met == [True] * 20
    assert statuses == [201] * 10 + [402] * 10
    assert len(list(MonitorModel.query(alice["team"]["id"]))) == 10


def test_a_team_from_before_the_limits_is_counted_from_what_it_has(api, alice):
    from chalicelib.billing.models import UsageModel

    fill(api, 3)
    UsageModel(alice["team"]["id"], "monitors").delete()  # as before any counter existed
    fill_more = [create_monitor(api, name=f"n{k}", url=f"https://1.1.4.{k}/") for k in range(1, 8)]
    assert len(fill_more) == 7
    r = api.post("/v1/monitors", {"name": "x", "url": "https://1.1.5.1/"})
    assert (r.status, r.json["code"], r.json["used"]) == (402, "plan_limit_exceeded", 10)
    assert UsageModel.get(alice["team"]["id"], "monitors").used == 10


def test_the_free_plan_checks_every_60_s_at_most(api, alice):
    r = api.post("/v1/monitors", {"name": "fast", "url": "https://1.1.1.1/", "interval_seconds": 30})
    assert (r.status, r.json["limit"], r.json["allowed"]) == (402, "min_interval_seconds", 60)
    m = create_monitor(api, url="https://1.1.1.1/")
    r = api.patch(f"/v1/monitors/{m['id']}", {"interval_seconds": 30})
    assert (r.status, r.json["code"], r.json["limit"]) == (402, "plan_limit_exceeded", "min_interval_seconds")
    assert api.get(f"/v1/monitors/{m['id']}").json["interval_seconds"] == 60


def test_a_pro_team_checks_every_30_s(api, alice):
    deliver(api, event("customer.subscription.created", subscription(alice["team"]["id"])))
    assert create_monitor(api, url="https://1.1.1.1/", interval_seconds=30)["interval_seconds"] == 30


def test_after_a_downgrade_a_paused_monitor_cannot_resume(api, alice):
    team_id = alice["team"]["id"]
    now = int(time.time())
    deliver(api, event("customer.subscription.created", subscription(team_id), created=now - 10))
    made = fill(api, 11)
    deliver(api, event("customer.subscription.deleted", subscription(team_id, status="canceled"), created=now))
    r = api.post(f"/v1/monitors/{made[-1]['id']}/resume")
    assert (r.status, r.json["limit"], r.json["plan"], r.json["used"]) == (402, "monitors", "free", 10)


def test_a_free_team_has_one_status_page_three_channels_and_three_members(api, alice, outbox):
    from tests.factories import create_channel, create_status_page
    from tests.integration.test_alerts import verify

    verify(alice)
    team = alice["team"]["id"]
    page = create_status_page(api, slug="one")
    r = api.post("/v1/status-pages", {"name": "Two", "slug": "two"})
    assert (r.status, r.json["limit"], r.json["allowed"], r.json["used"]) == (402, "status_pages", 1, 1)
    assert api.delete(f"/v1/status-pages/{page['id']}").status == 204
    assert api.post("/v1/status-pages", {"name": "Two", "slug": "two"}).status == 201  # its place is free again

    made = [
        create_channel(api, name=f"c{n}", type="webhook", config={"url": f"https://1.1.1.{n}/h"}) for n in (1, 2, 3)
    ]
    r = api.post("/v1/alert-channels", {"name": "c4", "type": "webhook", "config": {"url": "https://1.1.1.4/h"}})
    assert (r.status, r.json["limit"]) == (402, "alert_channels")
    assert api.delete(f"/v1/alert-channels/{made[0]['id']}").status == 204
    assert (
        api.post("/v1/alert-channels", {"name": "c4", "type": "webhook", "config": {"url": "https://1.1.1.4/h"}}).status
        == 201
    )

    invite = lambda email: api.post(f"/v1/teams/{team}/invitations", {"email": email, "role": "viewer"})  # noqa: E731
    assert invite("a@example.com").status == 201
    assert invite("b@example.com").status == 201  # alice and two pending: three
    r = invite("c@example.com")
    assert (r.status, r.json["limit"], r.json["used"]) == (402, "members", 3)
    assert outbox.to("c@example.com") == []
    assert invite("a@example.com").status == 201  # the same address again replaces its invitation: still three
    pending = api.get(f"/v1/teams/{team}/invitations").json["data"]
    assert api.delete(f"/v1/teams/{team}/invitations/{pending[0]['id']}").status == 204
    assert invite("c@example.com").status == 201


def test_an_expired_invitation_frees_its_place(api, alice):
    import time_machine

    from chalicelib.clock import utcnow
    from tests.integration.test_alerts import verify

    verify(alice)
    team = alice["team"]["id"]
    for email in ("a@example.com", "b@example.com"):
        assert api.post(f"/v1/teams/{team}/invitations", {"email": email, "role": "viewer"}).status == 201
    with time_machine.travel(utcnow() + timedelta(days=8)):  # the two invitations expired, unanswered
        from tests.support import PASSWORD

        token = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).json["access_token"]
        r = api.post(f"/v1/teams/{team}/invitations", {"email": "c@example.com", "role": "viewer"}, token=token)
        assert r.status == 201, r.body


# ------------------------------------------------------------------------------------------------- from the review


def plan_of(api):
    return api.get("/v1/billing").json["plan"]


def test_checkout_completed_delivered_before_the_older_subscription_created_still_makes_the_team_pro(api, alice):
    """Stripe does not deliver in order: checkout.session.completed (no plan in it) arriving first does not make
    the subscription's own, slightly older, event 'older than the team's state'."""
    team_id = alice["team"]["id"]
    t = int(time.time())
    session = {
        "id": "cs_1",
        "object": "checkout.session",
        "customer": "cus_test_1",
        "subscription": "sub_test_1",
        "client_reference_id": team_id,
        "metadata": {"team_id": team_id},
    }
    assert deliver(api, event("checkout.session.completed", session, created=t)).json["outcome"] == "applied"
    r = deliver(api, event("customer.subscription.created", subscription(team_id), created=t - 1))
    assert r.status == 200
    assert plan_of(api) == "pro", r.json


def test_invoice_paid_delivered_before_the_subscription_event_does_not_block_the_plan(api, alice):
    team_id = alice["team"]["id"]
    t = int(time.time())
    invoice = {
        "id": "in_1",
        "object": "invoice",
        "customer": "cus_test_1",
        "subscription": "sub_test_1",
        "metadata": {},
        "subscription_details": {"metadata": {"team_id": team_id}},
    }
    # the team knows its customer already (a checkout before): invoice is found by customer
    session = {"id": "cs_1", "object": "checkout.session", "customer": "cus_test_1", "client_reference_id": team_id}
    deliver(api, event("checkout.session.completed", session, created=t - 10))
    assert deliver(api, event("invoice.paid", invoice, created=t)).status == 200  # no paid plan yet: nothing to mark
    deliver(api, event("customer.subscription.created", subscription(team_id), created=t - 1))
    assert plan_of(api) == "pro"


def test_the_end_of_a_replaced_subscription_does_not_drop_the_team_to_free(api, alice):
    """Pro (sub_A), then enterprise (sub_B: a subscription made outside Vigil's checkout, which refuses a team that
    pays already); the end of sub_A, no longer the team's, takes nothing away."""
    team_id = alice["team"]["id"]
    t = int(time.time())
    deliver(api, event("customer.subscription.created", subscription(team_id, id="sub_A"), created=t - 20))
    ent = subscription(team_id, id="sub_B", price="price_vigil_enterprise")
    deliver(api, event("customer.subscription.created", ent, created=t - 10))
    assert plan_of(api) == "enterprise"
    ended = subscription(team_id, id="sub_A", status="canceled")
    deliver(api, event("customer.subscription.deleted", ended, created=t))
    assert plan_of(api) == "enterprise"


@pytest.mark.parametrize("status", ["incomplete", "paused"])
def test_an_unpaid_subscription_grants_no_paid_plan(api, alice, status):
    """incomplete: the first payment has not succeeded (3-D Secure pending, card declined); paused: a trial ended
    without a payment method.  Neither pays for anything."""
    team_id = alice["team"]["id"]
    deliver(api, event("customer.subscription.created", subscription(team_id, status=status)))
    assert plan_of(api) == "free"


def test_a_cancellation_delivered_after_a_newer_invoice_event_still_downgrades(api, alice):
    """Stripe's last retry fails: invoice.payment_failed (t+1) and the subscription's end (t), delivered newest
    first: each kind is ordered against its own kind, so the end still ends the plan."""
    team_id = alice["team"]["id"]
    t = int(time.time())
    deliver(api, event("customer.subscription.created", subscription(team_id), created=t - 100))
    invoice = {"id": "in_1", "object": "invoice", "customer": "cus_test_1", "subscription": "sub_test_1"}
    assert deliver(api, event("invoice.payment_failed", invoice, created=t + 1)).json["outcome"] == "applied"
    r = deliver(api, event("customer.subscription.deleted", subscription(team_id, status="canceled"), created=t))
    assert plan_of(api) == "free", r.json


def test_a_downgrade_whose_settling_failed_is_settled_by_stripes_retry(api, alice, monkeypatch):
    """The plan change is recorded (and the event claimed) before the downgrade is enforced; if enforcing fails
    (a throttled table, a lost race too many), the webhook is a 500 and Stripe's retry, a duplicate, settles it."""
    from chalicelib import lifecycle

    team_id = alice["team"]["id"]
    t = int(time.time())
    deliver(api, event("customer.subscription.created", subscription(team_id), created=t - 100))
    for n in range(12):
        create_monitor(api, url=f"https://1.1.1.{n + 1}/")
    real, calls = lifecycle.set_monitor_paused, []

    def flaky(*a, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("ProvisionedThroughputExceededException (simulated)")
        return real(*a, **kw)

    monkeypatch.setattr(lifecycle, "set_monitor_paused", flaky)
    ended = event("customer.subscription.deleted", subscription(team_id, status="canceled"), created=t)
    first = deliver(api, ended)
    assert first.status == 500  # Stripe will deliver it again
    deliver(api, ended)  # Stripe's retry of the same event
    usage = api.get("/v1/billing").json
    assert (usage["plan"], usage["usage"]["monitors"]) == ("free", 10), usage


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"id": "", "type": "customer.subscription.updated", "created": 1, "data": {"object": {}}}, 400),
        ({"id": "evt_big", "type": "customer.subscription.updated", "created": 10**30, "data": {"object": {}}}, 200),
        ({"id": "evt_list", "type": "customer.subscription.updated", "created": 1, "data": {"object": []}}, 200),
        ([1, 2, 3], 400),
    ],
)
def test_a_signed_but_odd_event_is_never_a_500(api, alice, payload, status):
    assert deliver(api, payload).status == status


def test_a_huge_period_end_is_left_out_not_a_500(api, alice):
    odd = subscription(alice["team"]["id"])
    odd["items"]["data"][0]["current_period_end"] = 10**20
    assert deliver(api, event("customer.subscription.created", odd)).json["outcome"] == "applied"
    assert api.get("/v1/billing").json["current_period_end"] is None


def test_an_invoice_paid_after_the_end_leaves_the_team_free(api, alice):
    team_id = alice["team"]["id"]
    now = int(time.time())
    deliver(api, event("customer.subscription.created", subscription(team_id), created=now - 10))
    deliver(api, event("customer.subscription.deleted", subscription(team_id, status="canceled"), created=now - 5))
    invoice = {"id": "in_9", "object": "invoice", "customer": "cus_test_1", "subscription": "sub_test_1"}
    assert deliver(api, event("invoice.paid", invoice, created=now)).json["outcome"] == "no paid plan"
    assert (api.get("/v1/billing").json["plan"], api.get("/v1/billing").json["status"]) == ("free", "canceled")
