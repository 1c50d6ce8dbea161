"""``make demo``: the local stack with a seeded, living demo.

A demo service on a loopback port (``VIGIL_DEMO_PORT``, 8020) answers a few endpoints whose state follows a
timer: each ``VIGIL_DEMO_STEP_SECONDS`` (60) the script below moves one step, and it starts over after
:data:`CYCLE_STEPS`.  The same server receives the demo's webhook deliveries, checks their Standard Webhooks
signature and logs each one on the console and at ``/_demo/webhooks``.

Seeding goes through Vigil's own API, as a person would: a demo account (address verified from the link in the
outbox), its team, an email channel (to an on-call address, not the account's own) and a webhook channel, both
without a cooldown so every cycle alerts, monitors of the demo service, and a published status page.  The page's
monitors get 89 days of made-up history (daily rollups, written directly: the only thing not made through the API)
so the bars are there at once; today's bar fills in once the aggregator takes the first ten-minute period (about
fifteen minutes).  Then one tick checks everything at once, so the first results from every region are there
straight away.  The demo runs only on the embedded emulator: it reads the verification link from its outbox.

What a newcomer sees in the first five minutes (steps of a minute): "Checkout" is slow from the start (degraded),
then fast again; "Orders API" fails from minute 1 to minute 3 (an incident opens, alerts go out by email and
webhook, and it resolves when the API answers again); the status page's bars and history follow.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import urllib3

from chalicelib.observability import logger
from chalicelib.settings import Settings

EMAIL = "demo@example.com"
ONCALL = "oncall@example.com"  # the email channel's address: the account's own gets its personal alerts
PASSWORD = "watch the demo 2026"  # a throwaway account on a throwaway emulator, printed on the console anyway
STATUS_SLUG = "acme-demo"
WEBHOOK_TOLERANCE_S = 300  # a delivery's timestamp this far from now is refused, as a receiver should
MAX_DELIVERIES_KEPT = 200
HISTORY_DAYS = 89
SLOW_SECONDS = 1.5  # "Checkout" when slow: over its 800 ms degraded threshold, well under its timeout

HEALTHY, SLOW, FAILING = "healthy", "slow", "failing"
# Each endpoint's state, one entry a step; the script starts over after CYCLE_STEPS.
SCRIPT: dict[str, list[str]] = {
    "/": [HEALTHY] * 5,
    "/api/orders": [HEALTHY, FAILING, FAILING, HEALTHY, HEALTHY],
    "/checkout": [SLOW, SLOW, HEALTHY, HEALTHY, HEALTHY],
}
CYCLE_STEPS = 5


@dataclass
class DemoService:
    """The bundled demo service and webhook receiver (one threaded HTTP server on loopback)."""

    step_seconds: int
    port: int
    started: float = field(default_factory=time.monotonic)
    webhook_secret: bytes | None = None
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def state(self, path: str) -> str:
        step = int((time.monotonic() - self.started) / self.step_seconds) % CYCLE_STEPS
        return SCRIPT[path][step]

    def states(self) -> dict[str, str]:
        return {path: self.state(path) for path in SCRIPT}

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> DemoService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                pass  # the checks would print a line each

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/_demo":
                    self._json(200, {"step_seconds": service.step_seconds, "endpoints": service.states()})
                elif path == "/_demo/webhooks":
                    self._json(200, {"data": list(reversed(service.deliveries))})
                elif path in SCRIPT:
                    state = service.state(path)
                    if state == SLOW:
                        time.sleep(SLOW_SECONDS)
                    if state == FAILING:
                        self._json(503, {"status": "unavailable"})
                    else:
                        self._json(200, {"status": "ok"})
                else:
                    self._json(404, {"status": "not found"})

            do_HEAD = do_GET

            def do_POST(self) -> None:
                try:
                    length = int(self.headers.get("content-length") or 0)
                except ValueError:
                    self._json(400, {"status": "bad content-length"})
                    return
                body = self.rfile.read(max(0, min(length, 1_000_000)))
                if self.path != "/hooks/vigil":
                    self._json(404, {"status": "not found"})
                    return
                entry = service.received(dict(self.headers.items()), body)
                self._json(200 if entry["signature_valid"] else 400, {"received": True})

            def _json(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def received(self, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """A webhook delivery: its signature checked as a receiver should (Standard Webhooks: ``v1,`` signatures,
        a timestamp within five minutes), then logged; anything malformed is logged as invalid, never a crash."""
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        data = event.get("data") if isinstance(event, dict) else None
        monitor = data.get("monitor") if isinstance(data, dict) else None
        entry = {
            "received_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "id": lowered.get("webhook-id"),
            "type": event.get("type") if isinstance(event, dict) else None,
            "monitor": monitor.get("name") if isinstance(monitor, dict) else None,
            "signature_valid": self._signed(lowered, body),
        }
        self.deliveries.append(entry)
        del self.deliveries[:-MAX_DELIVERIES_KEPT]
        print(
            f"  webhook    {entry['received_at']} {entry['type']} {entry['monitor'] or ''}"
            f" (signature {'valid' if entry['signature_valid'] else 'INVALID'})",
            flush=True,
        )
        return entry

    def _signed(self, headers: dict[str, str], body: bytes) -> bool:
        if self.webhook_secret is None:
            return False
        try:
            timestamp = int(headers.get("webhook-timestamp", ""))
        except ValueError:
            return False
        if abs(time.time() - timestamp) > WEBHOOK_TOLERANCE_S:
            return False
        signed = f"{headers.get('webhook-id')}.{timestamp}.".encode() + body
        expected = base64.b64encode(hmac.new(self.webhook_secret, signed, hashlib.sha256).digest())
        offered = [part.partition(",") for part in headers.get("webhook-signature", "").split()]
        return any(
            version == "v1" and hmac.compare_digest(expected, signature.encode("utf-8", "replace"))
            for version, _, signature in offered
        )


class SeedFailed(RuntimeError):
    pass


class _Api:
    """Vigil's API over HTTP, as the demo's person calls it."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.token = ""
        self.http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2, read=30), retries=False)

    def call(self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200, 201, 202)) -> Any:
        headers = {"content-type": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        r = self.http.request(
            method, self.base + path, body=None if body is None else json.dumps(body).encode(), headers=headers
        )
        if r.status not in expect:
            raise SeedFailed(f"{method} {path} answered {r.status}: {r.data[:500]!r}")
        return json.loads(r.data) if r.data else None


def _verification_token(email: str) -> str:
    from chalicelib.local.outbox import read_outbox

    for message in read_outbox():  # newest first
        if email in message["to"]:
            found = re.search(r"/verify-email\?token=([A-Za-z0-9_\-]+)", message["text"])
            if found:
                return found.group(1)
    raise SeedFailed(f"no verification email to {email} in the outbox")


@dataclass(frozen=True)
class Seeded:
    team_id: str
    monitors: dict[str, str]  # name → id
    status_url: str


def seed(api_base: str, service: DemoService) -> Seeded:
    """The demo account and everything in its team, made through the API (and the page's history, written)."""
    api = _Api(api_base)
    registered = api.call(
        "POST",
        "/v1/auth/register",
        {"email": EMAIL, "password": PASSWORD, "name": "Ada Demo", "timezone": "UTC"},
    )
    api.token = registered["access_token"]
    api.call("POST", "/v1/auth/verify-email", {"token": _verification_token(EMAIL)})
    team_id = api.call("GET", "/v1/me")["current_team_id"]
    api.call("PATCH", f"/v1/teams/{team_id}", {"name": "Acme (demo)"})

    quick = {"cooldown_seconds": 0}  # every cycle of the script alerts again
    email = api.call(
        "POST",
        "/v1/alert-channels",
        {"name": "On-call email", "type": "email", "config": {"addresses": [ONCALL]}, **quick},
    )
    hook = api.call(
        "POST",
        "/v1/alert-channels",
        {"name": "Demo webhook", "type": "webhook", "config": {"url": service.url("/hooks/vigil")}, **quick},
    )
    service.webhook_secret = base64.b64decode(hook["secret"].removeprefix("whsec_"))
    channels = [email["id"], hook["id"]]
    # One failed check in two regions opens an incident, one good one resolves it: the demo moves in minutes.
    alerting: dict[str, Any] = {
        "failure_threshold": 1,
        "recovery_threshold": 1,
        "confirmation_regions": 2,
        "channel_ids": channels,
    }
    monitors: dict[str, dict[str, Any]] = {
        "Homepage": {"url": service.url("/")},
        "Orders API": {"url": service.url("/api/orders")},
        "Checkout": {"url": service.url("/checkout"), "degraded_after_ms": 800, "timeout_ms": 10000},
    }
    ids: dict[str, str] = {}
    for name, fields in monitors.items():
        body = {"name": name, "interval_seconds": 60, **alerting, **fields}
        ids[name] = api.call("POST", "/v1/monitors", body)["id"]
    tcp = {"type": "tcp", "name": "Demo service port", "host": "127.0.0.1", "port": service.port}
    ids["Demo service port"] = api.call("POST", "/v1/monitors", {**tcp, "interval_seconds": 60, **alerting})["id"]
    for name in monitors:
        _history(team_id, ids[name], name)

    page = api.call(
        "POST",
        "/v1/status-pages",
        {
            "name": "Acme status",
            "slug": STATUS_SLUG,
            "description": "The demo's public status page.",
            "published": True,
            "components": [
                {"monitor_id": ids["Homepage"], "display_name": "Website"},
                {"monitor_id": ids["Orders API"], "display_name": "Orders API", "group": "API"},
                {"monitor_id": ids["Checkout"], "display_name": "Checkout", "group": "API"},
            ],
        },
    )
    return Seeded(team_id, ids, page["url"])


def _history(team_id: str, monitor_id: str, name: str) -> None:
    """Made-up daily rollups for the 89 days before today (three regions a minute), mostly up with a few bad
    days, the same on every run: the status page's bars have something to show from the start."""
    from chalicelib.monitors.models import RollupModel
    from chalicelib.monitors.rollups import day_key, start_of_day

    rng = random.Random(name)  # noqa: S311 - made-up history, the same on every run
    today = datetime.now(UTC).date()
    checks = 3 * 24 * 60
    for back in range(1, HISTORY_DAYS + 1):
        bad = rng.random() < (0.08 if name == "Orders API" else 0.03)
        failures = rng.randint(15, 400) if bad else (rng.randint(0, 3) if rng.random() < 0.2 else 0)
        latency = rng.randint(80, 140) if name != "Checkout" else rng.randint(250, 900)
        day = today - timedelta(days=back)
        RollupModel(
            monitor_id,
            day_key(day),
            team_id=team_id,
            expires_at=start_of_day(day) + timedelta(days=91),  # as a day's does
            checks=checks,
            failures=failures or None,
            latency_sum_ms=latency * (checks - failures),
            latency_count=checks - failures,
        ).save()


def banner(api_base: str, service: DemoService, seeded: Seeded) -> str:
    return "\n".join(
        [
            "",
            "  The demo is running. Its account (sign in with POST /v1/auth/login):",
            f"    email      {EMAIL}",
            f"    password   {PASSWORD}",
            f"  status page  {seeded.status_url}",
            f"  demo service {service.url('/_demo')} (its endpoints' state; a step every {service.step_seconds:g} s)",
            f"  webhooks     {service.url('/_demo/webhooks')} (and a line here per delivery)",
            f"  emails       {api_base}/dev/outbox (alerts to {ONCALL} and to the account)",
            "  Within five minutes: Checkout degraded, then fast again; Orders API down from minute 1 to 3 (an",
            "  incident opens, alerts go out, it resolves); the status page follows. It starts over every"
            f" {CYCLE_STEPS} steps.",
            "  The README's first section has the curl commands to follow an incident.",
            "",
        ]
    )


def start(settings: Settings, api_base: str, tick_now: Any) -> DemoService:
    """Start the demo service, seed the demo through the API and check everything once (``tick_now``).  Raises
    :class:`SeedFailed` with what went wrong."""
    if not settings.allow_private_targets:
        raise SeedFailed("the demo monitors 127.0.0.1: set ALLOW_PRIVATE_TARGETS=true (make dev's default)")
    try:
        service = DemoService(step_seconds=settings.demo_step_seconds, port=settings.demo_port).start()
    except OSError as exc:
        raise SeedFailed(
            f"cannot serve the demo service on 127.0.0.1:{settings.demo_port}: {exc.strerror} (set VIGIL_DEMO_PORT)"
        ) from None
    try:
        seeded = seed(api_base, service)
    except BaseException:
        service.stop()
        raise
    service.started = time.monotonic()  # the script starts now that the monitors exist
    tick_now()
    logger.info("demo seeded", extra={"team_id": seeded.team_id, "monitors": len(seeded.monitors)})
    print(banner(api_base, service, seeded), flush=True)
    return service
