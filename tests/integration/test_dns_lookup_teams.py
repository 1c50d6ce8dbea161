"""Every DNS lookup the API and the alert deliveries make counts against the caller's team (``ssrf.lookups_for``):
checking a new monitor's or channel's target and sending an alert each hold one of that team's lookup slots while
they wait on the name servers, never a bucket every tenant shares (the worker's checks: ``test_worker.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from chalicelib.checks import ssrf
from chalicelib.settings import Settings
from tests.factories import create_channel, create_monitor
from tests.support import make_test_settings

Slots = dict[str, int]


@pytest.fixture
def settings() -> Settings:
    return make_test_settings(ALLOW_PRIVATE_TARGETS="true")  # the receivers are on loopback, under their own names


@pytest.fixture
def name_servers(monkeypatch: pytest.MonkeyPatch, alice: dict, charlie: dict) -> list[tuple[str, Slots]]:
    """DNS (the network seam): every name is this machine.  Each question is noted with the lookup slots each team
    (and no team, "") held while it was asked."""
    teams = {"alice": alice["team"]["id"], "charlie": charlie["team"]["id"], "no team": ""}
    asked: list[tuple[str, Slots]] = []

    def answer(host: str, port: int) -> list[str]:
        held = {who: ssrf._lookups.in_flight(team) for who, team in teams.items()}
        asked.append((host, {who: n for who, n in held.items() if n}))
        return ["127.0.0.1"]

    monkeypatch.setattr(ssrf, "system_resolver", answer)
    return asked


def test_checking_a_new_targets_name_is_a_lookup_of_the_callers_team(
    api: Any, alice: dict, charlie: dict, name_servers: list[tuple[str, Slots]], httpserver: HTTPServer
) -> None:
    port = httpserver.port
    monitor = create_monitor(api, url=f"http://shop.example:{port}/")
    assert api.patch(f"/v1/monitors/{monitor['id']}", {"url": f"http://shop2.example:{port}/"}).status == 200
    tcp = api.post("/v1/monitors", {"type": "tcp", "name": "Database", "host": "db.example", "port": 5432})
    assert tcp.status == 201, tcp.body
    assert api.patch(f"/v1/monitors/{tcp.json['id']}", {"host": "db2.example"}).status == 200
    channel = create_channel(api, type="webhook", config={"url": f"http://hooks.example:{port}/alice"})
    changed = api.patch(f"/v1/alert-channels/{channel['id']}", {"config": {"url": f"http://hooks2.example:{port}/"}})
    assert changed.status == 200, changed.body
    create_monitor(api.acting_as(charlie), url=f"http://charlie.example:{port}/")

    alices = ["shop.example", "shop2.example", "db.example", "db2.example", "hooks.example", "hooks2.example"]
    assert name_servers == [*((host, {"alice": 1}) for host in alices), ("charlie.example", {"charlie": 1})]
    assert all(ssrf._lookups.in_flight(p["team"]["id"]) == 0 for p in (alice, charlie))


def a_webhook(api: Any, url: str) -> dict[str, Any]:
    return create_channel(api, type="webhook", config={"url": url})


def a_monitor(api: Any, url: str) -> dict[str, Any]:
    return create_monitor(api, url=url)


@pytest.mark.parametrize(
    ("make", "path"),
    [(a_webhook, "/v1/alert-channels/{id}/test"), (a_monitor, "/v1/monitors/{id}/test")],
    ids=["an alert delivery", "a test check"],
)
def test_sending_to_a_receiver_looks_its_name_up_as_the_senders_team(
    api: Any,
    alice: dict,
    name_servers: list[tuple[str, Slots]],
    httpserver: HTTPServer,
    make: Callable[[Any, str], dict[str, Any]],
    path: str,
) -> None:
    httpserver.expect_request("/hook").respond_with_data("ok")
    made = make(api, f"http://hooks.example:{httpserver.port}/hook")
    name_servers.clear()

    r = api.post(path.format(id=made["id"]))

    assert r.status == 200, r.body
    assert len(httpserver.log) == 1  # it was sent, to the address the name answered
    assert name_servers == [("hooks.example", {"alice": 1})]
