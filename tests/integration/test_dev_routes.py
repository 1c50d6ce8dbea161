"""GET /dev/outbox and POST /dev/tick: local stages only."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.api.routes import routers
from chalicelib.aws.mail import send_email
from chalicelib.local import stack
from chalicelib.local.loop import EventLoop
from chalicelib.settings import load_settings, use_settings

PROD_ENV = {
    "VIGIL_STAGE": "prod",
    "SECRET_KEY": "prod-secret-key-that-is-long-enough-0123456789",
    "APP_URL": "https://app.vigil.example",
    "EMAIL_FROM": "Vigil <no-reply@vigil.example>",
    "SUPPORT_EMAIL": "support@vigil.example",
    "STRIPE_SECRET_KEY": "sk_live_prod",
    "STRIPE_WEBHOOK_SECRET": "whsec_prod",
}


@pytest.fixture
def no_loop() -> Iterator[None]:
    stack.register(None)
    yield
    stack.register(None)


def test_the_outbox_lists_sent_emails_newest_first(api):
    link = "https://app.vigil.test/verify-email?token=abc123"
    send_email(
        "alice@example.com", "Verify your email", f"Open {link} to verify.", f'<p><a href="{link}">Verify</a></p>'
    )
    send_email("bob@example.com", "Reset your password", "Reset it.", "<p>Reset it.</p>")

    r = api.get("/dev/outbox")

    assert r.status == 200, r.body
    newest, oldest = r.json["data"]
    assert newest["to"] == ["bob@example.com"]
    assert newest["subject"] == "Reset your password"
    assert oldest["to"] == ["alice@example.com"]
    assert oldest["from"] == "Vigil <no-reply@vigil.test>"
    assert oldest["subject"] == "Verify your email"
    assert link in oldest["text"]
    assert f'<a href="{link}">Verify</a>' in oldest["html"]
    assert oldest["id"]
    assert oldest["date"]


def test_the_outbox_is_empty_before_any_email(api):
    r = api.get("/dev/outbox")
    assert r.status == 200
    assert r.json == {"data": []}


def test_the_outbox_is_a_404_problem_when_aws_is_elsewhere(api, aws):
    use_settings(dataclasses.replace(aws, aws_endpoint_url="http://127.0.0.1:4566"))
    try:
        r = api.get("/dev/outbox")
    finally:
        use_settings(aws)
    assert r.status == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert "embedded AWS emulator" in r.json["detail"]


def test_tick_without_a_running_loop_is_a_503_problem(api, no_loop):
    r = api.post("/dev/tick")
    assert r.status == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json["code"] == "service_unavailable"
    assert "make dev" in r.json["detail"]


def test_tick_runs_every_scheduled_handler_now(api, aws, no_loop):
    events: list[dict[str, Any]] = []
    loop = EventLoop(aws.aws_region)
    loop.add_schedule("scheduler", 1, lambda event, context: events.append(event))
    stack.register(loop)

    r = api.post("/dev/tick")

    assert r.status == 200, r.body
    assert r.json["handlers"] == ["scheduler"]
    assert r.json["failed"] == []
    assert r.json["ran_at"].endswith("Z")
    assert [e["detail"] for e in events] == [{"force": True}]


def test_tick_names_a_handler_that_failed(api, aws, no_loop):
    def broken(event: dict[str, Any], context: Any) -> None:
        raise RuntimeError("scheduler broke")

    loop = EventLoop(aws.aws_region)
    loop.add_schedule("scheduler", 1, broken)
    stack.register(loop)

    r = api.post("/dev/tick")

    assert r.status == 200
    assert r.json["failed"] == ["scheduler"]


def test_the_dev_routes_exist_only_in_local_stages(app):
    deployed = [route.path for router in routers(load_settings(PROD_ENV)) for route in router.routes]
    local = [route.path for router in routers(load_settings({"VIGIL_STAGE": "local"})) for route in router.routes]

    assert "/health" in deployed
    assert not [path for path in deployed if path.startswith("/dev")]
    assert {"/dev/outbox", "/dev/tick"} <= set(local)
