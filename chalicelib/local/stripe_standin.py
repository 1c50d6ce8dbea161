"""A local stand-in for the few Stripe calls Vigil makes, and for Stripe's side of a payment (``make dev``, tests).

The real ``stripe`` library reaches it through ``STRIPE_API_BASE``:

- ``POST /v1/checkout/sessions`` → a session whose ``url`` is this server's ``/checkout/<id>``: a page with a
  "Pay" button.  Paying creates the customer and subscription and sends Vigil the events Stripe would, signed
  with the webhook secret: ``checkout.session.completed``, ``customer.subscription.created``, ``invoice.paid``.
- ``POST /v1/billing_portal/sessions`` → ``/portal/<customer>``: a page to switch plan or cancel, which sends
  ``customer.subscription.updated`` or ``…deleted``.

Requests must carry the configured secret key (401 otherwise, in Stripe's error shape).  What was asked is kept
(``sessions``, ``requests``) for tests to read.  Events go to ``deliver(body, signature_header)``: an HTTP POST
to Vigil's webhook in ``make dev``, the test client's in tests.
"""

from __future__ import annotations

import html
import itertools
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import stripe

Deliver = Callable[[bytes, str], None]


def form(body: str) -> dict[str, Any]:
    """Stripe's form encoding (``metadata[team_id]=…``, ``line_items[0][price]=…``) as nested dicts."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


class StripeStandIn:
    def __init__(
        self,
        *,
        secret_key: str,
        webhook_secret: str,
        prices: dict[str, str],
        deliver: Deliver,
        port: int = 0,
    ) -> None:
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.prices = prices  # price id → plan name (shown on the pages)
        self.deliver = deliver
        self.sessions: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}  # by customer
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def start(self) -> StripeStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def new_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}_standin{next(self._ids):06d}"

    # ---- Stripe's API

    def create_checkout(self, params: dict[str, Any]) -> dict[str, Any]:
        session_id = self.new_id("cs")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": params.get("mode"),
            "url": f"{self.url}/checkout/{session_id}",
            "client_reference_id": params.get("client_reference_id"),
            "customer": params.get("customer"),
            "customer_email": params.get("customer_email"),
            "metadata": params.get("metadata", {}),
            "subscription_data": params.get("subscription_data", {}),
            "price": ((params.get("line_items") or {}).get("0") or {}).get("price"),
            "success_url": params.get("success_url"),
            "status": "open",
        }
        self.sessions[session_id] = session
        return session

    def create_portal(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = str(params.get("customer", ""))
        return {
            "id": self.new_id("bps"),
            "object": "billing_portal.session",
            "customer": customer,
            "url": f"{self.url}/portal/{customer}",
            "return_url": params.get("return_url"),
        }

    # ---- Stripe's side of a payment

    def pay(self, session_id: str) -> None:
        """What Stripe does when the customer pays: customer, subscription, and the events, signed and sent."""
        session = self.sessions[session_id]
        customer = session["customer"] or self.new_id("cus")
        now = int(time.time())
        subscription = {
            "id": self.new_id("sub"),
            "object": "subscription",
            "customer": customer,
            "status": "active",
            "cancel_at_period_end": False,
            "metadata": (session["subscription_data"] or {}).get("metadata", {}),
            "items": {"data": [{"price": {"id": session["price"]}, "current_period_end": now + 30 * 86400}]},
        }
        session |= {"status": "complete", "customer": customer, "subscription": subscription["id"]}
        self.subscriptions[customer] = subscription
        invoice = {
            "id": self.new_id("in"),
            "object": "invoice",
            "customer": customer,
            "subscription": subscription["id"],
        }
        self.send("checkout.session.completed", session, now)
        self.send("customer.subscription.created", subscription, now)
        self.send("invoice.paid", invoice, now)

    def change(self, customer: str, price: str | None) -> None:
        """From the portal: another plan (``price``), or cancel (None)."""
        subscription = self.subscriptions[customer]
        now = int(time.time())
        if price is None:
            subscription["status"] = "canceled"
            self.send("customer.subscription.deleted", subscription, now)
            del self.subscriptions[customer]
        else:
            subscription["items"]["data"][0]["price"] = {"id": price}
            self.send("customer.subscription.updated", subscription, now)

    def send(self, kind: str, obj: dict[str, Any], created: int) -> None:
        event = {"id": self.new_id("evt"), "object": "event", "type": kind, "created": created, "data": {"object": obj}}
        body = json.dumps(event)
        signature = stripe.WebhookSignature.generate_signature_header(body, self.webhook_secret)
        self.deliver(body.encode(), signature)

    # ---- HTTP

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                return

            def _body(self) -> str:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length).decode() if length else ""

            def _reply(self, status: int, body: str, content_type: str = "application/json") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _api(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {standin.secret_key}":
                    error = {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided."}}
                    self._reply(401, json.dumps(error))
                    return False
                return True

            def do_POST(self) -> None:
                body = self._body()
                params = form(body)
                standin.requests.append(("POST", self.path, params))
                if self.path == "/v1/checkout/sessions":
                    if self._api():
                        self._reply(200, json.dumps(standin.create_checkout(params)))
                elif self.path == "/v1/billing_portal/sessions":
                    if self._api():
                        self._reply(200, json.dumps(standin.create_portal(params)))
                elif self.path.startswith("/checkout/") and self.path.endswith("/pay"):
                    session_id = self.path.split("/")[2]
                    if session_id not in standin.sessions:
                        self._reply(404, "<p>No such checkout.</p>", "text/html")
                        return
                    standin.pay(session_id)
                    back = html.escape(str(standin.sessions[session_id].get("success_url") or "/"), quote=True)
                    self._reply(200, f'<p>Paid (stand-in). <a href="{back}">Back to Vigil</a></p>', "text/html")
                elif self.path.startswith("/portal/"):
                    customer = self.path.split("/")[2]
                    if customer not in standin.subscriptions:
                        self._reply(404, "<p>No subscription.</p>", "text/html")
                        return
                    standin.change(customer, params.get("price") or None)
                    self._reply(200, "<p>Done (stand-in).</p>", "text/html")
                else:
                    self._reply(404, json.dumps({"error": {"type": "invalid_request_error", "message": "No route."}}))

            def do_GET(self) -> None:
                if self.path.startswith("/checkout/"):
                    session = standin.sessions.get(self.path.split("/")[2])
                    if session is None:
                        self._reply(404, "<p>No such checkout.</p>", "text/html")
                        return
                    plan = html.escape(standin.prices.get(str(session["price"]), str(session["price"])))
                    action = html.escape(f"/checkout/{session['id']}/pay", quote=True)
                    page = (
                        "<!doctype html><title>Checkout (Stripe stand-in)</title>"
                        f"<h1>Subscribe to Vigil {plan}</h1><p>A local stand-in for Stripe Checkout: no card.</p>"
                        f'<form method="post" action="{action}"><button>Pay</button></form>'
                    )
                    self._reply(200, page, "text/html")
                elif self.path.startswith("/portal/"):
                    customer = html.escape(self.path.split("/")[2], quote=True)
                    options = "".join(
                        f'<button name="price" value="{html.escape(price, quote=True)}">Switch to '
                        f"{html.escape(name)}</button>"
                        for price, name in standin.prices.items()
                    )
                    page = (
                        "<!doctype html><title>Billing portal (Stripe stand-in)</title><h1>Your subscription</h1>"
                        f'<form method="post" action="/portal/{customer}">{options}'
                        '<button name="price" value="">Cancel subscription</button></form>'
                    )
                    self._reply(200, page, "text/html")
                else:
                    self._reply(404, json.dumps({"error": {"type": "invalid_request_error", "message": "No route."}}))

        return Handler
