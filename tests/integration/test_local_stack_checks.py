"""Through the local stack's event loop: one tick → every region's worker checks the target → packed results, the
aggregator's periods and uptime; a TCP monitor's port, checked the same way; and a heartbeat monitor's pings and
misses."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine

from chalicelib.clock import isoz, utcnow
from chalicelib.local import stack
from chalicelib.local.loop import EventLoop
from chalicelib.monitors import aggregate
from chalicelib.monitors.models import PeriodModel
from tests.factories import create_channel, create_heartbeat, create_monitor
from tests.integration.test_tcp_monitors import create_tcp
from tests.packed import checks_of
from tests.support import make_test_settings


@pytest.fixture
def alice(api):
    """Alice, her address not verified: no email to her is queued (a member's alert waits for its minute's group,
    which would hold the loop's drain), so the loop drains as soon as the pipeline is done."""
    from tests.support import sign_up

    return sign_up(api, "alice@example.com", verified=False)


@pytest.fixture
def settings():
    return make_test_settings(ALLOW_PRIVATE_TARGETS="true")


@pytest.fixture
def loop(app, aws) -> Iterator[EventLoop]:
    event_loop = EventLoop(aws.aws_region, retry_seconds=0.1, wall_clock=False)
    event_loop.add_chalice_app(app, aws, new_tables=[f"{aws.table_prefix}result_packs"])
    stack.add_check_workers(event_loop, aws)
    stack.register(event_loop)
    event_loop.start()
    yield event_loop
    stack.register(None)
    event_loop.stop()


def test_a_monitor_in_three_regions_gets_results_from_all_three_after_one_tick(api, loop, alice, httpserver):
    httpserver.expect_request("/health").respond_with_json({"status": "ok"})
    m = create_monitor(api, name="Local", url=httpserver.url_for("/health"))
    assert len(m["regions"]) == 3

    r = api.post("/dev/tick")
    assert r.status == 200, r.body
    assert r.json["handlers"] == ["scheduler", "aggregator", "status_pages_refresh"]  # every schedule runs now
    assert r.json["failed"] == []
    assert loop.drain(20)

    results = checks_of(m["id"])
    assert sorted(r.region for r in results) == ["ap-southeast-1", "eu-west-1", "us-east-1"]
    assert all(r.result.ok and r.result.status_code == 200 for r in results)
    assert len(httpserver.log) == 3
    via_api = api.get(f"/v1/monitors/{m['id']}/results").json["data"]
    assert len(via_api) == 3  # from the packs, before any aggregation
    # The aggregator's pass, once the period has closed: one period item holds the three checks.
    aggregate.run_pass(utcnow() + timedelta(minutes=14), timedelta(days=30))
    [period] = list(PeriodModel.query(m["id"]))
    assert period.checks == 3
    assert len(api.get(f"/v1/monitors/{m['id']}/results").json["data"]) == 3
    uptime = api.get(f"/v1/monitors/{m['id']}/uptime?days=1").json
    assert uptime["uptime"]["24h"] == 100.0


def test_a_target_down_everywhere_opens_an_incident_and_its_recovery_resolves_it(api, loop, alice, httpserver):
    """The whole pipeline: tick → queues → workers in three regions → results stream → incident handler."""
    httpserver.expect_ordered_request("/health").respond_with_data("down", status=503)
    httpserver.expect_ordered_request("/health").respond_with_data("down", status=503)
    httpserver.expect_ordered_request("/health").respond_with_data("down", status=503)
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    hook = create_channel(api, name="Hook", type="webhook", config={"url": httpserver.url_for("/hook")})
    fields = {"name": "Local", "url": httpserver.url_for("/health"), "failure_threshold": 1}
    m = create_monitor(api, **fields, channel_ids=[hook["id"]])

    assert api.post("/dev/tick").status == 200
    assert loop.drain(20)
    [incident] = api.get("/v1/incidents").json["data"]
    assert (incident["status"], incident["cause"], incident["monitor_id"]) == ("open", "HTTP 503", m["id"])
    assert api.get(f"/v1/monitors/{m['id']}").json["status"] == "down"
    # … and the alert went out: events stream → alert handler → alerts queue → a signed webhook
    (alert,) = [r for r, _ in httpserver.log if r.path == "/hook"]
    assert json.loads(alert.get_data())["type"] == "incident.opened"
    assert alert.headers["webhook-signature"].startswith("v1,")

    httpserver.expect_request("/health").respond_with_json({"status": "ok"})
    assert api.post("/dev/tick").status == 200
    assert loop.drain(20)
    [incident] = api.get("/v1/incidents").json["data"]
    assert incident["status"] == "resolved"
    assert api.get(f"/v1/monitors/{m['id']}").json["status"] == "up"


@pytest.fixture
def open_port() -> Iterator[tuple[socket.socket, int]]:
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    yield listener, int(listener.getsockname()[1])
    listener.close()


def test_an_open_port_is_up_in_every_region_and_a_closed_one_opens_an_incident(api, loop, alice, httpserver, open_port):
    listener, port = open_port
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    hook = create_channel(api, name="Hook", type="webhook", config={"url": httpserver.url_for("/hook")})
    m = create_tcp(api, host="127.0.0.1", port=port, failure_threshold=1, channel_ids=[hook["id"]])

    assert api.post("/dev/tick").status == 200
    assert loop.drain(20)
    checks = checks_of(m["id"])
    assert sorted(c.region for c in checks) == ["ap-southeast-1", "eu-west-1", "us-east-1"]
    assert all(c.result.ok and c.result.status_code is None and c.result.timings.connect_ms > 0 for c in checks)
    via_api = api.get(f"/v1/monitors/{m['id']}/results").json["data"]
    assert len(via_api) == 3
    assert all(r["timings"]["connect_ms"] > 0 and r["ok"] for r in via_api)
    assert api.get(f"/v1/monitors/{m['id']}").json["status"] == "up"

    listener.close()  # the port closes: every region's next connection is refused
    assert api.post("/dev/tick").status == 200
    assert loop.drain(20)
    [incident] = api.get("/v1/incidents").json["data"]
    assert (incident["status"], incident["monitor_id"]) == ("open", m["id"])
    assert api.get(f"/v1/monitors/{m['id']}").json["status"] == "down"
    refused = [c for c in checks_of(m["id"]) if not c.result.ok]
    assert len(refused) == 3
    assert {c.result.error for c in refused} == {"connection_refused"}
    (alert,) = [r for r, _ in httpserver.log if r.path == "/hook"]
    sent = json.loads(alert.get_data())
    assert sent["type"] == "incident.opened"
    assert (sent["data"]["monitor"]["url"], sent["data"]["monitor"]["method"]) == (f"tcp://127.0.0.1:{port}", None)


def test_the_test_route_checks_a_tcp_monitor_once(api, alice, open_port):
    _, port = open_port
    m = create_tcp(api, host="127.0.0.1", port=port)

    r = api.post(f"/v1/monitors/{m['id']}/test")
    assert r.status == 200, r.body
    assert (r.json["ok"], r.json["status_code"], r.json["error"]) == (True, None, None)
    assert r.json["timings"]["connect_ms"] > 0


def hooks(httpserver: Any) -> list[dict[str, Any]]:
    return [json.loads(r.get_data()) for r, _ in httpserver.log if r.path == "/hook"]


def test_a_heartbeat_is_down_when_its_pings_stop_and_up_with_the_next(api, loop, alice, httpserver):
    """Heartbeat end to end: a ping brings it up; no ping for period + grace and the next tick opens one incident
    and alerts; the next ping resolves it; ``/fail`` opens one at once."""
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    hook = create_channel(api, name="Hook", type="webhook", config={"url": httpserver.url_for("/hook")})
    m = create_heartbeat(api, name="Backup", period_seconds=60, grace_seconds=0, channel_ids=[hook["id"]])
    pinger = api.acting_as(None)
    ping_path = m["ping_url"].removeprefix("https://app.vigil.test")

    assert pinger.get(ping_path).status == 200
    assert loop.drain(20)
    shown = api.get(f"/v1/monitors/{m['id']}").json
    assert (shown["status"], shown["region_status"]) == ("up", {"global": "up"})

    with time_machine.travel(utcnow() + timedelta(minutes=2), tick=True):
        # No ping for period + grace: the next tick counts the miss, and the incident opens once.
        assert api.post("/dev/tick").status == 200
        assert loop.drain(20)
        [incident] = api.get("/v1/incidents").json["data"]
        assert (incident["status"], incident["cause"], incident["monitor_id"]) == ("open", "no ping in time", m["id"])
        assert api.get(f"/v1/monitors/{m['id']}").json["status"] == "down"
        [opened] = hooks(httpserver)
        assert opened["type"] == "incident.opened"
        assert (opened["data"]["monitor"]["url"], opened["data"]["monitor"]["regions"]) == (None, ["global"])
        assert m["ping_url"] not in json.dumps(opened)  # the ping URL never leaves for a third party
        assert api.post("/dev/tick").status == 200  # still no ping, and a miss counted: the same incident
        assert loop.drain(20)
        assert len(api.get("/v1/incidents").json["data"]) == 1

        assert pinger.post(ping_path, body=b"done").status == 200
        assert loop.drain(20)
        [incident] = api.get("/v1/incidents").json["data"]
        assert incident["status"] == "resolved"
        assert api.get(f"/v1/monitors/{m['id']}").json["status"] == "up"
        assert [h["type"] for h in hooks(httpserver)] == ["incident.opened", "incident.resolved"]

    with time_machine.travel(utcnow() + timedelta(minutes=2, seconds=30), tick=True):
        # The job says it failed: down at once, before any deadline.
        assert pinger.get(ping_path + "/fail").status == 200
        assert loop.drain(20)
        latest = api.get("/v1/incidents").json["data"][0]
        assert (latest["status"], latest["cause"]) == ("open", "the job reported a failure")
        assert api.get(f"/v1/monitors/{m['id']}").json["status"] == "down"

    results = api.get(f"/v1/monitors/{m['id']}/results").json["data"]
    assert {r["region"] for r in results} == {"global"}
    assert [r["error"] for r in results if not r["ok"]][:1] == ["failure_reported"]
    assert "ping_missed" in {r["error"] for r in results}

    # A new ping URL: the old one is a 404 at once, the new one pings (and resolves the failure).
    rotated = api.post(f"/v1/monitors/{m['id']}/rotate-ping-token").json
    assert pinger.get(ping_path).status == 404
    assert pinger.get(f"/v1/ping/{'Z' * 22}").status == 404
    new_path = rotated["ping_url"].removeprefix("https://app.vigil.test")
    with time_machine.travel(utcnow() + timedelta(minutes=3), tick=True):
        assert pinger.get(new_path).status == 200
        assert loop.drain(20)
        assert api.get(f"/v1/monitors/{m['id']}").json["status"] == "up"
        # Paused: pings are answered and ignored, and no deadline passes.
        assert api.post(f"/v1/monitors/{m['id']}/pause").status == 200
        held = len(api.get(f"/v1/monitors/{m['id']}/results").json["data"])
        assert pinger.get(new_path + "/fail").status == 200
    with time_machine.travel(utcnow() + timedelta(minutes=6), tick=True):
        assert api.post("/dev/tick").status == 200
        assert loop.drain(20)
        assert len(api.get(f"/v1/monitors/{m['id']}/results").json["data"]) == held
        assert api.get(f"/v1/monitors/{m['id']}").json["status"] == "paused"
        assert [i["status"] for i in api.get("/v1/incidents").json["data"]] == ["resolved", "resolved"]


def test_a_heartbeat_still_silent_when_its_maintenance_window_ends_goes_down_then(api, loop, alice):
    """A deadline passed inside a window is no incident; the window's end is the next deadline, so a job still
    silent then is down then, not a period later."""
    start = utcnow()
    m = create_heartbeat(api, period_seconds=300, grace_seconds=0)
    assert api.acting_as(None).get(m["ping_url"].removeprefix("https://app.vigil.test")).status == 200
    assert loop.drain(20)
    window = {
        "title": "Database upgrade",
        "monitor_ids": [m["id"]],
        "starts_at": isoz(start + timedelta(minutes=4)),
        "ends_at": isoz(start + timedelta(minutes=6)),
    }
    assert api.post("/v1/maintenance-windows", window).status == 201
    with time_machine.travel(start + timedelta(minutes=5, seconds=30), tick=True):
        assert api.post("/dev/tick").status == 200  # the deadline passed inside the window
        assert loop.drain(20)
        assert api.get(f"/v1/monitors/{m['id']}").json["status"] == "maintenance"
        assert api.get("/v1/incidents").json["data"] == []
    with time_machine.travel(start + timedelta(minutes=7), tick=True):
        assert api.post("/dev/tick").status == 200  # the window ended a minute ago; the job is still silent
        assert loop.drain(20)
        assert api.get(f"/v1/monitors/{m['id']}").json["status"] == "down"
        [incident] = api.get("/v1/incidents").json["data"]
        assert incident["cause"] == "no ping in time"
