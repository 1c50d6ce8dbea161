"""Heartbeat monitors: their fields, the ping URL and its rotation, pings as recorded (and as throttled, paused or
unknown), the deadline sweep and what it reads, and the results that feed incidents and uptime
(``test_heartbeat_local_stack`` runs one through the whole pipeline)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from chalicelib.checks.model import FAILURE_REPORTED, PING_MISSED, RUN_UNFINISHED
from chalicelib.incidents.tracker import apply_results
from chalicelib.monitors import heartbeats
from chalicelib.monitors.models import MonitorModel, PackModel, PingModel, PingTokenModel
from chalicelib.scheduler.service import run_tick
from tests.factories import create_heartbeat, create_monitor
from tests.packed import checks_of, reads
from tests.support import PASSWORD, aws_requests

T0 = datetime(2026, 12, 7, 9, 0, 0, tzinfo=UTC)


def token_of(m: dict[str, Any]) -> str:
    return str(m["ping_url"].rsplit("/", 1)[-1])


def stored(alice: dict[str, Any], m: dict[str, Any]) -> MonitorModel:
    return MonitorModel.get(alice["team"]["id"], m["id"], consistent_read=True)


def ping(api: Any, m: dict[str, Any], suffix: str = "", method: str = "GET", **kw: Any) -> Any:
    return api.acting_as(None).request(method, f"/v1/ping/{token_of(m)}{suffix}", **kw)  # no credentials


class Clock:
    """The clock, stopped; :meth:`move_to` moves it, and signs the client's caller in again (an access token
    lives 15 minutes)."""

    def __init__(self, api: Any, traveller: Any) -> None:
        self.api, self.traveller = api, traveller

    def move_to(self, when: datetime) -> None:
        self.traveller.move_to(when)
        if self.api.token:
            r = self.api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}, token="")
            assert r.status == 200, r.body
            self.api.token = r.json["access_token"]


@pytest.fixture
def at(api):
    """The clock at ``T0`` (before Alice signs in: request it first)."""
    with time_machine.travel(T0, tick=False) as traveller:
        yield Clock(api, traveller)


# ------------------------------------------------------------------------------------------------- the monitor


def test_a_heartbeat_monitor_has_its_own_fields_a_ping_url_and_no_target(api, at, alice):
    m = create_heartbeat(api, tags=["cron"])

    token = token_of(m)
    assert m["ping_url"] == f"https://app.vigil.test/v1/ping/{token}"
    assert heartbeats.could_be_token(token)
    assert (m["type"], m["period_seconds"], m["grace_seconds"], m["status"]) == ("heartbeat", 3600, 300, "pending")
    assert m["region_status"] == {"global": "pending"}
    assert (m["last_ping_at"], m["last_checked_at"], m["tags"]) == (None, None, ["cron"])
    absent = {"url", "method", "host", "port", "regions", "interval_seconds", "timeout_ms", "failure_threshold"}
    assert absent.isdisjoint(m)
    assert api.get(f"/v1/monitors/{m['id']}").json == m
    item = stored(alice, m)
    assert (item.type, item.regions, item.interval_seconds, item.grace_seconds) == ("heartbeat", ["global"], 3600, 300)
    assert (item.failure_threshold, item.recovery_threshold, item.confirmation_regions) == (1, 1, 1)
    assert item.schedule_key is None  # never planned as a check
    assert (item.due_from, item.due_at, item.due_shard) == (
        T0,
        int(T0.timestamp()) + 3900,
        heartbeats.shard_of(m["id"]),
    )
    assert item.url is None
    assert item.ping_token == token


def test_two_heartbeats_have_different_128_bit_tokens(api, alice):
    tokens = {token_of(create_heartbeat(api)) for _ in range(5)}
    assert len(tokens) == 5
    assert all(len(t) == 22 for t in tokens)  # 16 random bytes, URL-safe base64


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"url": "https://1.1.1.1/"}, "url", "unknown field"),
        ({"regions": ["us-east-1"]}, "regions", "unknown field"),
        ({"interval_seconds": 60}, "interval_seconds", "unknown field"),
        ({"assertions": []}, "assertions", "unknown field"),
        ({"period_seconds": 59}, "period_seconds", "Input should be greater than or equal to 60"),
        ({"period_seconds": 30 * 86400 + 1}, "period_seconds", "Input should be less than or equal to 2592000"),
        ({"period_seconds": "3600"}, "period_seconds", "Input should be a valid integer"),
        ({"grace_seconds": -1}, "grace_seconds", "Input should be greater than or equal to 0"),
        ({"grace_seconds": 7 * 86400 + 1}, "grace_seconds", "Input should be less than or equal to 604800"),
        ({"grace_seconds": None}, "grace_seconds", "cannot be null"),
    ],
)
def test_a_heartbeat_refuses_fields_it_has_not_and_values_out_of_range(api, alice, fields, field, message):
    body = {"type": "heartbeat", "name": "Backup", "period_seconds": 3600, **fields}
    r = api.post("/v1/monitors", body)
    assert r.status == 422, r.body
    assert {"field": field, "message": message} in r.json["errors"]
    assert list(MonitorModel.query(alice["team"]["id"])) == []


def test_a_heartbeat_needs_its_period(api, alice):
    r = api.post("/v1/monitors", {"type": "heartbeat", "name": "Backup"})
    assert (r.status, r.json["errors"]) == (422, [{"field": "period_seconds", "message": "Field required"}])


def test_a_patch_keeps_each_type_to_its_fields(api, alice):
    beat = create_heartbeat(api)
    http = create_monitor(api, url="https://1.1.1.1/health")

    r = api.patch(f"/v1/monitors/{beat['id']}", {"url": "https://1.1.1.1/", "regions": ["us-east-1"]})
    assert (r.status, r.json["errors"]) == (
        422,
        [
            {"field": "regions", "message": "not a field of a heartbeat monitor"},
            {"field": "url", "message": "not a field of a heartbeat monitor"},
        ],
    )
    r = api.patch(f"/v1/monitors/{http['id']}", {"period_seconds": 120})
    assert (r.status, r.json["errors"]) == (
        422,
        [{"field": "period_seconds", "message": "not a field of an http monitor"}],
    )
    r = api.patch(f"/v1/monitors/{beat['id']}", {"type": "http"})
    assert r.status == 422
    assert r.json["errors"][0]["field"] == "type"
    assert api.get(f"/v1/monitors/{beat['id']}").json == beat


def test_a_new_period_moves_the_deadline_from_the_last_ping(api, at, alice):
    m = create_heartbeat(api)
    at.move_to(T0 + timedelta(minutes=10))
    assert ping(api, m).status == 200

    r = api.patch(f"/v1/monitors/{m['id']}", {"period_seconds": 7200, "grace_seconds": 60})
    assert r.status == 200, r.body
    assert (r.json["period_seconds"], r.json["grace_seconds"], r.json["ping_url"]) == (7200, 60, m["ping_url"])
    assert stored(alice, m).due_at == int((T0 + timedelta(minutes=10)).timestamp()) + 7260
    # A period already over once shortened: the deadline is now, and the next sweep counts the miss.
    at.move_to(T0 + timedelta(hours=3))
    api.patch(f"/v1/monitors/{m['id']}", {"period_seconds": 60, "grace_seconds": 0})
    assert stored(alice, m).due_at == int((T0 + timedelta(hours=3)).timestamp())


def test_the_test_route_does_not_check_a_heartbeat(api, alice):
    m = create_heartbeat(api)
    r = api.post(f"/v1/monitors/{m['id']}/test")
    assert (r.status, r.json["code"]) == (409, "conflict")


# ------------------------------------------------------------------------------------------------- pings


def test_a_ping_is_answered_ok_and_recorded_with_its_source_and_body(api, at, alice):
    m = create_heartbeat(api)
    at.move_to(T0 + timedelta(minutes=5))

    r = ping(api, m, method="POST", body=b"backup: 42 GB in 310 s\n", headers={"user-agent": "curl/8.5"})

    assert (r.status, r.body, r.headers["content-type"]) == (200, b"OK", "text/plain; charset=utf-8")
    item = stored(alice, m)
    assert item.last_ping_at == T0 + timedelta(minutes=5)
    assert item.due_at == int((T0 + timedelta(minutes=5)).timestamp()) + 3900
    [logged] = api.get(f"/v1/monitors/{m['id']}/pings").json["data"]
    assert logged == {
        "received_at": "2026-12-07T09:05:00Z",
        "kind": "ping",
        "source_ip": logged["source_ip"],
        "user_agent": "curl/8.5",
        "body": "backup: 42 GB in 310 s\n",
    }
    assert logged["source_ip"]
    [result] = checks_of(m["id"])
    assert (result.region, result.result.ok, result.slot, result.marked) == ("global", True, item.last_ping_at, True)
    out = api.get(f"/v1/monitors/{m['id']}").json
    assert out["last_ping_at"] == out["last_checked_at"] == "2026-12-07T09:05:00Z"
    [listed] = api.get(f"/v1/monitors/{m['id']}/results").json["data"]
    assert (listed["region"], listed["ok"], listed["checked_at"]) == ("global", True, "2026-12-07T09:05:00Z")


def test_get_head_and_post_all_ping_and_only_ten_kilobytes_of_a_body_are_kept(api, at, alice):
    m = create_heartbeat(api)
    for n, method in enumerate(("GET", "HEAD", "POST")):
        at.move_to(T0 + timedelta(seconds=n + 1))
        r = ping(api, m, method=method, body=b"x" * 20_000 if method == "POST" else None)
        assert r.status == 200, (method, r.body)
    logged = api.get(f"/v1/monitors/{m['id']}/pings").json["data"]
    assert [p["kind"] for p in logged] == ["ping", "ping", "ping"]
    assert len(logged[0]["body"]) == 10 * 1024
    assert logged[1]["body"] is None
    assert logged[2]["body"] is None


def test_an_unknown_or_malformed_token_is_a_404_and_reads_nothing_for_a_malformed_one(api, alice):
    m = create_heartbeat(api)
    unknown = api.acting_as(None).get(f"/v1/ping/{'A' * 22}")
    assert (unknown.status, unknown.json["code"]) == (404, "not_found")
    with reads(MonitorModel) as seen:
        for bad in ("short", "x" * 200, token_of(m)[:-1] + "*"):
            assert api.acting_as(None).get(f"/v1/ping/{bad}").status == 404
    assert seen == []
    assert api.acting_as(None).get(f"/v1/ping/{token_of(m)}/other").status == 404
    assert list(PingModel.query(m["id"])) == []


def test_a_rotated_token_is_refused_at_once_and_the_new_one_pings(api, at, alice):
    m = create_heartbeat(api)
    r = api.post(f"/v1/monitors/{m['id']}/rotate-ping-token")
    assert r.status == 200, r.body
    assert r.json["ping_url"] != m["ping_url"]
    assert heartbeats.could_be_token(token_of(r.json))

    assert ping(api, m).status == 404  # the old URL
    assert ping(api, r.json).status == 200
    http = create_monitor(api, url="https://1.1.1.1/")
    refused = api.post(f"/v1/monitors/{http['id']}/rotate-ping-token")
    assert (refused.status, refused.json["code"]) == (409, "conflict")


def test_a_second_ping_in_the_same_second_is_answered_and_not_written(api, at, alice):
    m = create_heartbeat(api)
    at.move_to(T0 + timedelta(minutes=1))
    assert ping(api, m).status == 200
    version = stored(alice, m).version

    for _ in range(5):
        assert ping(api, m).status == 200

    assert stored(alice, m).version == version
    assert len(list(PingModel.query(m["id"]))) == 1
    at.move_to(T0 + timedelta(minutes=1, seconds=1))
    assert ping(api, m).status == 200
    assert len(list(PingModel.query(m["id"]))) == 2


def test_an_address_guessing_tokens_gets_429_and_valid_pings_neither_count_nor_are_refused(api, at, alice, monkeypatch):
    from chalicelib.api import pings
    from chalicelib.ratelimit.models import CounterModel

    monkeypatch.setattr(pings, "IP_LIMIT", 3)
    m = create_heartbeat(api)
    for n in range(5):  # valid pings: no counter written
        at.move_to(T0 + timedelta(seconds=n))
        assert ping(api, m).status == 200
    assert [c.key for c in CounterModel.scan() if c.key.startswith("ping-ip#")] == []
    anonymous = api.acting_as(None)
    for n in range(3):
        assert anonymous.get(f"/v1/ping/{'B' * 21}{n}").status == 404
    r = anonymous.get(f"/v1/ping/{'B' * 22}")
    assert (r.status, r.json["code"], r.headers["retry-after"]) == (429, "rate_limited", "56")
    before = len(list(CounterModel.scan()))
    assert anonymous.get(f"/v1/ping/{'C' * 22}").status == 429  # and no counter written for it
    assert len(list(CounterModel.scan())) == before
    # A valid ping from the same address (a NAT, a CI runner) is never refused for what others there sent.
    at.move_to(T0 + timedelta(seconds=10))
    assert ping(api, m).status == 200
    assert len(list(PingModel.query(m["id"]))) == 6
    at.move_to(T0 + timedelta(minutes=1))
    assert anonymous.get(f"/v1/ping/{'B' * 22}").status == 404  # a new window


def test_a_paused_heartbeat_answers_pings_and_ignores_them_and_resumes_waiting_anew(api, at, alice):
    m = create_heartbeat(api)
    assert api.post(f"/v1/monitors/{m['id']}/pause").status == 200
    assert (stored(alice, m).due_shard, stored(alice, m).due_at) == (None, None)  # out of the deadline index

    at.move_to(T0 + timedelta(hours=5))
    assert ping(api, m).status == 200
    assert ping(api, m, "/fail").status == 200
    assert list(PingModel.query(m["id"])) == []
    assert checks_of(m["id"]) == []
    assert stored(alice, m).last_ping_at is None
    assert heartbeats.sweep(T0 + timedelta(days=2)) == 0

    assert api.post(f"/v1/monitors/{m['id']}/resume").status == 200
    assert stored(alice, m).due_at == int((T0 + timedelta(hours=5)).timestamp()) + 3900


def test_uptime_counts_one_ping_a_period(api, at, alice):
    """A job pinging every 20 s of a 60 s period counts once per period; the extra pings are logged, and written as
    results only while they can change the status (here: the monitor's first, still pending)."""
    m = create_heartbeat(api, period_seconds=60)
    for seconds in (0, 20, 40, 60, 80):
        at.move_to(T0 + timedelta(seconds=seconds))
        assert ping(api, m).status == 200
    held = sorted(checks_of(m["id"]), key=lambda p: p.slot)
    assert [(int((p.slot - T0).total_seconds()), p.result.counted) for p in held] == [
        (0, True),
        (20, False),
        (40, False),
        (60, True),
        (80, False),
    ]
    assert len(list(PingModel.query(m["id"]))) == 5


# ------------------------------------------------------------------------------------------------- deadlines


def test_no_ping_within_period_and_grace_is_a_miss_at_the_deadline_and_one_per_period_after(api, at, alice):
    m = create_heartbeat(api, period_seconds=600, grace_seconds=120)
    deadline = T0 + timedelta(seconds=720)

    assert heartbeats.sweep(deadline - timedelta(seconds=1)) == 0
    assert heartbeats.sweep(deadline) == 1
    assert heartbeats.sweep(deadline + timedelta(seconds=30)) == 0  # counted once
    [miss] = checks_of(m["id"])
    assert (miss.slot, miss.region, miss.result.ok, miss.result.error, miss.marked) == (
        deadline,
        "global",
        False,
        PING_MISSED,
        True,
    )
    assert miss.result.error_detail == "No ping within 10 min and 2 min of grace."
    assert stored(alice, m).due_at == int(deadline.timestamp()) + 600
    # Three periods later, three more misses, and the next deadline still ahead.
    assert heartbeats.sweep(deadline + timedelta(seconds=1850)) == 3
    assert stored(alice, m).due_at == int(deadline.timestamp()) + 2400


def test_a_ping_after_a_miss_waits_anew(api, at, alice):
    m = create_heartbeat(api, period_seconds=60, grace_seconds=0)
    assert heartbeats.sweep(T0 + timedelta(seconds=60)) == 1
    at.move_to(T0 + timedelta(seconds=90))
    assert ping(api, m).status == 200
    assert heartbeats.sweep(T0 + timedelta(seconds=149)) == 0
    assert stored(alice, m).due_at == int(T0.timestamp()) + 150


def test_a_run_started_and_not_finished_within_the_grace_is_late(api, at, alice):
    m = create_heartbeat(api, period_seconds=86400, grace_seconds=600)
    at.move_to(T0 + timedelta(hours=1))
    assert ping(api, m, "/start").status == 200
    assert stored(alice, m).due_at == int((T0 + timedelta(hours=1, minutes=10)).timestamp())
    assert checks_of(m["id"]) == []  # a start is no result

    assert heartbeats.sweep(T0 + timedelta(hours=1, minutes=10)) == 1
    [late] = checks_of(m["id"])
    assert (late.result.error, late.result.ok) == (RUN_UNFINISHED, False)
    assert late.result.error_detail == "A run started at 2026-12-07 10:00:00 UTC and did not end within 10 min."
    assert [p["kind"] for p in api.get(f"/v1/monitors/{m['id']}/pings").json["data"]] == ["start"]


def test_a_run_that_ends_in_time_is_no_miss(api, at, alice):
    m = create_heartbeat(api, period_seconds=86400, grace_seconds=600)
    at.move_to(T0 + timedelta(hours=1))
    ping(api, m, "/start")
    at.move_to(T0 + timedelta(hours=1, minutes=9))
    ping(api, m)
    assert heartbeats.sweep(T0 + timedelta(hours=2)) == 0
    assert [c.result.ok for c in checks_of(m["id"])] == [True]


def test_fail_is_a_failed_result_at_once(api, at, alice):
    m = create_heartbeat(api)
    at.move_to(T0 + timedelta(minutes=3))
    assert ping(api, m, "/fail", method="POST", body=b"exit 3").status == 200
    [failed] = checks_of(m["id"])
    assert (failed.result.ok, failed.result.error, failed.marked) == (False, FAILURE_REPORTED, True)
    assert api.get(f"/v1/monitors/{m['id']}/pings").json["data"][0]["body"] == "exit 3"


def test_the_tick_sweeps_the_deadlines(api, at, alice):
    m = create_heartbeat(api, period_seconds=60, grace_seconds=0)
    at.move_to(T0 + timedelta(minutes=1, seconds=2))
    with aws_requests("sqs") as sent:
        report = run_tick(T0 + timedelta(minutes=1))
    assert report.heartbeats_missed == 1
    assert [op for op, _ in sent if op.startswith("SendMessage")] == []  # never a check job
    assert report.due_monitors == 0
    assert [c.result.error for c in checks_of(m["id"])] == [PING_MISSED]


def test_a_failing_sweep_never_fails_the_tick(api, at, alice, monkeypatch):
    create_heartbeat(api, period_seconds=60, grace_seconds=0)

    def broken(now: datetime) -> int:
        raise RuntimeError("DynamoDB is down")

    monkeypatch.setattr(heartbeats, "sweep", broken)
    at.move_to(T0 + timedelta(minutes=2))
    assert run_tick(T0 + timedelta(minutes=2)).heartbeats_missed == 0


def test_the_deadline_query_of_a_1000_heartbeat_fleet_reads_only_what_is_due(api, at, alice):
    """1,000 heartbeats, 10 of them past their deadline: the sweep's queries read the 10 index entries (a few
    hundred bytes: half a read unit per shard queried), then each due monitor once."""
    team = alice["team"]["id"]
    now = T0 + timedelta(hours=1)
    with MonitorModel.batch_write() as batch:
        for n in range(1000):
            item = MonitorModel(
                team,
                f"mon_hb{n:04d}",
                name=f"job {n}",
                type="heartbeat",
                interval_seconds=3600,
                grace_seconds=300,
                timeout_ms=10000,
                regions=["global"],
                expected_status=[],
                confirmation_regions=1,
                ping_token=heartbeats.new_token(),
                created_at=T0,
                updated_at=T0,
            )
            heartbeats.arm(item, since=now - timedelta(seconds=3900 if n < 10 else 600))
            batch.save(item)

    with reads(MonitorModel) as seen:
        assert heartbeats.sweep(now) == 10

    queries = [r for r in seen if r.operation == "Query"]
    gets = [r for r in seen if r.operation == "GetItem"]
    assert len(queries) == heartbeats.DUE_SHARDS
    assert sum(q.items for q in queries) == 10
    assert sum(q.units for q in queries) == heartbeats.DUE_SHARDS * 0.5  # each page well under 4 KB
    assert len(gets) == 10
    print(
        f"\ndeadline sweep over 1,000 heartbeats, 10 due: {sum(q.units for q in queries)} RRU in queries, "
        f"{sum(g.units for g in gets)} RRU in reads of the due monitors"
    )


# ------------------------------------------------------------------------------------------------- from the review


def test_start_then_ping_in_the_same_second_is_not_a_late_run(api, at, alice):
    """``curl …/start && job && curl …``: a quick job signals both in one second (each kind has its own throttle)."""
    m = create_heartbeat(api, period_seconds=3600, grace_seconds=60)
    at.move_to(T0 + timedelta(minutes=30))
    assert ping(api, m, "/start").status == 200
    assert ping(api, m).status == 200
    assert heartbeats.sweep(T0 + timedelta(minutes=31, seconds=1)) == 0
    assert sorted(p["kind"] for p in api.get(f"/v1/monitors/{m['id']}/pings").json["data"]) == ["ping", "start"]


def test_fail_right_after_start_in_the_same_second_is_recorded(api, at, alice):
    m = create_heartbeat(api, period_seconds=3600, grace_seconds=600)
    at.move_to(T0 + timedelta(minutes=30))
    ping(api, m, "/start")
    ping(api, m, "/fail")
    assert [c.result.error for c in checks_of(m["id"])] == [FAILURE_REPORTED]


def test_a_ping_in_time_racing_the_sweep_is_applied_after_the_miss(api, at, alice, monkeypatch):
    """The ping is read before its deadline, the tick's sweep writes the miss, then the ping's write loses and it
    reads again: its result is stamped after the miss, so the monitor ends up, not down for a period."""
    m = create_heartbeat(api, period_seconds=600, grace_seconds=0)
    deadline = T0 + timedelta(seconds=600)
    raced_ping(monkeypatch, m, deadline)  # received before its deadline; asserts the sweep landed in between
    ordered = sorted(checks_of(m["id"]), key=lambda p: p.result.checked_at)
    assert [(p.result.ok, p.slot) for p in ordered] == [(False, deadline), (True, deadline + timedelta(seconds=1))]


def test_editing_grace_during_a_run_keeps_the_run_deadline(api, at, alice):
    m = create_heartbeat(api, period_seconds=86400, grace_seconds=600)
    at.move_to(T0 + timedelta(hours=1))
    ping(api, m, "/start")
    assert api.patch(f"/v1/monitors/{m['id']}", {"grace_seconds": 900}).status == 200
    assert stored(alice, m).due_at == int((T0 + timedelta(hours=1, minutes=15)).timestamp())


def test_editing_grace_while_down_keeps_one_miss_a_period(api, at, alice):
    m = create_heartbeat(api, period_seconds=600, grace_seconds=60)
    assert heartbeats.sweep(T0 + timedelta(seconds=700)) == 1  # the miss at 09:11
    at.move_to(T0 + timedelta(seconds=720))
    assert api.patch(f"/v1/monitors/{m['id']}", {"grace_seconds": 120}).status == 200
    assert stored(alice, m).due_at == int(T0.timestamp()) + 660 + 600  # a period after the miss, not at once


def test_a_second_start_restarts_the_runs_count(api, at, alice):
    m = create_heartbeat(api, period_seconds=86400, grace_seconds=600)
    at.move_to(T0 + timedelta(hours=1))
    ping(api, m, "/start")
    at.move_to(T0 + timedelta(hours=1, minutes=8))
    ping(api, m, "/start")  # a retry of the run
    assert heartbeats.sweep(T0 + timedelta(hours=1, minutes=10)) == 0
    assert heartbeats.sweep(T0 + timedelta(hours=1, minutes=18)) == 1
    [late] = checks_of(m["id"])
    assert late.result.error_detail == "A run started at 2026-12-07 10:08:00 UTC and did not end within 10 min."


def test_uptime_counts_one_result_a_period_also_for_fail(api, at, alice):
    m = create_heartbeat(api, period_seconds=3600, grace_seconds=300)
    for k in range(1, 6):  # a job run every minute against a 1 h heartbeat: one ok, then four failures
        at.move_to(T0 + timedelta(minutes=k))
        ping(api, m, "" if k == 1 else "/fail")
    held = checks_of(m["id"])
    assert len(held) == 5  # every failure written (each can change the status)
    assert sorted(c.result.ok for c in held if c.result.counted) == [False, True]  # the period's ok, its first failure


def test_no_miss_before_period_and_grace_have_passed_since_the_ping(api, at, alice):
    m = create_heartbeat(api, period_seconds=60, grace_seconds=0)
    at.move_to(T0 + timedelta(seconds=0.3))  # cron "* * * * *", 300 ms into the minute
    ping(api, m)
    assert heartbeats.sweep(T0 + timedelta(seconds=60.05)) == 0  # the next tick, 59.75 s later
    assert heartbeats.sweep(T0 + timedelta(seconds=61)) == 1


def test_a_ping_in_the_second_of_a_miss_is_listed(api, at, alice):
    m = create_heartbeat(api, period_seconds=60, grace_seconds=0)
    assert heartbeats.sweep(T0 + timedelta(seconds=60.1)) == 1  # the miss at 09:01:00
    at.move_to(T0 + timedelta(seconds=60.5))
    ping(api, m)  # half a second late: the monitor comes back
    listed = api.get(f"/v1/monitors/{m['id']}/results").json["data"]
    assert [(r["ok"], r["checked_at"]) for r in listed] == [
        (True, "2026-12-07T09:01:01Z"),
        (False, "2026-12-07T09:01:00Z"),
    ]


def test_a_large_body_is_cut_to_its_excerpt_not_refused(api, at, alice):
    m = create_heartbeat(api)
    at.move_to(T0 + timedelta(minutes=1))
    r = ping(api, m, method="POST", body=b"log line\n" * 200_000)  # 1.8 MB of job output
    assert r.status == 200
    [logged] = api.get(f"/v1/monitors/{m['id']}/pings").json["data"]
    assert len(logged["body"].encode()) == 10 * 1024
    assert api.post("/v1/monitors", {"type": "heartbeat", "name": "x" * 2_000_000}).status == 413  # elsewhere: 1 MiB


def test_a_binary_body_excerpt_is_at_most_ten_kilobytes(api, at, alice):
    m = create_heartbeat(api)
    at.move_to(T0 + timedelta(minutes=1))
    ping(api, m, method="POST", body=bytes(range(256)) * 100)
    [logged] = api.get(f"/v1/monitors/{m['id']}/pings").json["data"]
    assert len(logged["body"].encode()) <= 10 * 1024


def test_a_deleted_heartbeats_token_goes_with_it(api, at, alice):
    m = create_heartbeat(api)
    assert PingTokenModel.get(token_of(m)).monitor_id == m["id"]
    assert api.delete(f"/v1/monitors/{m['id']}").status == 204
    assert ping(api, m).status == 404
    with pytest.raises(PingTokenModel.DoesNotExist):
        PingTokenModel.get(token_of(m))


# ------------------------------------------------------------------------------------------ from the second review


def raced_ping(monkeypatch: Any, m: dict[str, Any], deadline: datetime, kind: str = "ping") -> None:
    """A ping received just before ``deadline`` whose write loses to the tick's sweep (as in
    test_a_ping_in_time_racing_the_sweep_is_applied_after_the_miss): it is read again after the miss."""
    real_get, swept = MonitorModel.get, []

    def get(*args: Any, **kwargs: Any) -> Any:
        item = real_get(*args, **kwargs)
        if not swept:
            swept.append("sweeping")
            swept.append(heartbeats.sweep(deadline))
        return item

    monkeypatch.setattr(MonitorModel, "get", get)
    heartbeats.ping(heartbeats.Ping(token_of(m), kind, deadline - timedelta(milliseconds=300), None, None, b""))
    monkeypatch.undo()
    assert swept == ["sweeping", 1]


def all_rows(monitor_id: str) -> list[Any]:
    """Every stored result of a monitor, without the readers' dedupe (one per pack row)."""
    from chalicelib.monitors import packs

    rows = []
    for item in PackModel.query(packs.bucket_of(monitor_id), consistent_read=True):
        rows += [p for p in packs.decode_pack(item.body) if p.monitor_id == monitor_id]
    return rows


# ----------------------------------------------------------------------------------------- D1: stamped collision


def test_a_fail_in_the_second_after_a_raced_ping_is_not_lost(api, at, alice, monkeypatch):
    """The raced ping is stamped a second after the miss, and a /fail half a second after the deadline a second
    after that: the incident handler applies each (it ignores a result not newer than the last), and no reader's
    dedupe (one result a slot) drops one."""
    m = create_heartbeat(api, period_seconds=600, grace_seconds=0)
    deadline = T0 + timedelta(seconds=600)
    raced_ping(monkeypatch, m, deadline)
    at.move_to(deadline + timedelta(milliseconds=500))
    assert ping(api, m, "/fail").status == 200  # not throttled: a second other than the raced ping's

    rows = sorted(all_rows(m["id"]), key=lambda p: p.result.checked_at)
    assert [r.result.ok for r in rows] == [False, True, False]  # miss, ping, fail: all three written
    assert rows[0].result.checked_at < rows[1].result.checked_at < rows[2].result.checked_at  # each its own second


def test_a_fail_right_after_a_raced_ping_opens_an_incident(api, at, alice, monkeypatch):
    m = create_heartbeat(api, period_seconds=600, grace_seconds=0)
    deadline = T0 + timedelta(seconds=600)
    raced_ping(monkeypatch, m, deadline)
    at.move_to(deadline + timedelta(milliseconds=500))
    assert ping(api, m, "/fail").status == 200
    from chalicelib.events.incidents import to_result  # not at import: it fixes the stream's name then

    # The stream delivers the packs in the order they were written: miss, ping, fail.
    team = alice["team"]["id"]
    for packed in sorted(all_rows(m["id"]), key=lambda p: (p.result.checked_at, p.result.ok is False)):
        apply_results(team, m["id"], [to_result(packed)], deadline + timedelta(seconds=2))
    assert api.get(f"/v1/monitors/{m['id']}").json["status"] == "down"  # the job said /fail last
    assert FAILURE_REPORTED in {r["error"] for r in api.get(f"/v1/monitors/{m['id']}/results").json["data"]}


# ----------------------------------------------------------------------------------------- D2: rearm after a race


def test_a_grace_edit_after_a_ping_in_the_second_of_a_miss_keeps_the_grace(api, at, alice):
    """A ping half a second after its deadline, just after the sweep's miss: the monitor is up again, and a grace
    edit counts the new grace from that ping (not a period from the miss)."""
    m = create_heartbeat(api, period_seconds=3600, grace_seconds=300)
    deadline = T0 + timedelta(seconds=3900)
    assert heartbeats.sweep(deadline + timedelta(seconds=0.1)) == 1
    pinged = deadline + timedelta(seconds=0.5)
    at.move_to(pinged)
    assert ping(api, m).status == 200  # up again, next deadline 11:05:01 + 65 min
    at.move_to(pinged + timedelta(minutes=10))
    assert api.patch(f"/v1/monitors/{m['id']}", {"grace_seconds": 600}).status == 200
    # the job pings 2 min late, within its new 10 min grace: no miss is due before 12:15:01
    assert heartbeats.sweep(pinged + timedelta(seconds=3600 + 60)) == 0


# ----------------------------------------------------------------------------------------- D3: rearm in a window


def test_a_grace_edit_after_a_miss_in_a_maintenance_window_keeps_the_window_end(api, at, alice):
    m = create_heartbeat(api, period_seconds=3600, grace_seconds=0)
    window = {
        "title": "Upgrade",
        "monitor_ids": [m["id"]],
        "starts_at": "2026-12-07T09:50:00Z",
        "ends_at": "2026-12-07T10:10:00Z",
    }
    assert api.post("/v1/maintenance-windows", window).status == 201
    assert heartbeats.sweep(T0 + timedelta(hours=1)) == 1  # the miss at 10:00, in the window
    ends = int((T0 + timedelta(minutes=70)).timestamp())
    assert stored(alice, m).due_at == ends  # the window's end (the fix)
    at.move_to(T0 + timedelta(minutes=61))
    assert api.patch(f"/v1/monitors/{m['id']}", {"grace_seconds": 60}).status == 200
    assert stored(alice, m).due_at <= ends


# ----------------------------------------------------------------------------------------- D4: start while overdue


def test_a_start_on_a_down_heartbeat_is_a_run_with_its_own_grace(api, at, alice):
    """/start on a monitor down since a miss: the run has its own grace from its start (not the old deadline,
    which would be a "run unfinished" before the run began)."""
    m = create_heartbeat(api, period_seconds=86400, grace_seconds=600)
    first = T0 + timedelta(seconds=87000)
    assert heartbeats.sweep(first) == 1  # no ping in a day: down
    at.move_to(first + timedelta(hours=2))
    assert ping(api, m, "/start").status == 200
    start = first + timedelta(hours=2)
    assert stored(alice, m).due_at == int((start + timedelta(minutes=10)).timestamp())
    assert heartbeats.sweep(start + timedelta(minutes=1)) == 0


# ----------------------------------------------------------------------------------------- D5: lost miss


def test_a_miss_whose_results_write_fails_is_swept_again(api, at, alice, monkeypatch):
    """A failed pack write (throttling, a timeout) puts the deadline back: the next tick writes the miss."""
    m = create_heartbeat(api, period_seconds=600, grace_seconds=0)
    real_save, failures = PackModel.save, []

    def save(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(1)
            raise RuntimeError("ProvisionedThroughputExceeded")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(PackModel, "save", save)
    assert heartbeats.sweep(T0 + timedelta(seconds=601)) == 0  # logged and counted
    assert heartbeats.sweep(T0 + timedelta(seconds=661)) == 1
    assert [c.result.error for c in checks_of(m["id"])] == [PING_MISSED]


# ----------------------------------------------------------------------------------------- D6: fail after ok


def test_a_period_with_a_reported_failure_is_not_100_percent_up(api, at, alice):
    """A /fail after the period's ping is counted too: a period that failed is never counted up."""
    m = create_heartbeat(api, period_seconds=3600, grace_seconds=300)
    at.move_to(T0 + timedelta(minutes=1))
    ping(api, m)
    at.move_to(T0 + timedelta(minutes=5))
    ping(api, m, "/fail")  # down from 09:05 …
    at.move_to(T0 + timedelta(minutes=61))
    ping(api, m)  # … to 10:01
    counted = [(c.result.ok, c.result.counted) for c in sorted(checks_of(m["id"]), key=lambda p: p.slot)]
    assert (False, True) in counted, counted


# ----------------------------------------------------------------------------------------- D7: orphaned token


def test_a_delete_racing_a_rotation_leaves_no_token(api, at, alice, monkeypatch):
    from chalicelib.monitors import service

    m = create_heartbeat(api)
    real_load = service._load

    def load(team_id: str, monitor_id: str) -> Any:  # the rotation lands between the delete's read and write
        item = real_load(team_id, monitor_id)
        monkeypatch.setattr(service, "_load", real_load)
        service.rotate_ping_token(team_id, monitor_id, T0)
        return item

    monkeypatch.setattr(service, "_load", load)
    assert api.delete(f"/v1/monitors/{m['id']}").status == 204
    left = [t for t in PingTokenModel.scan() if t.monitor_id == m["id"]]
    assert left == [], [(t.token, t.team_id) for t in left]


def test_a_fail_in_the_second_after_a_late_ping_is_listed(api, at, alice):
    """The sweep's miss at 09:01:00, a ping half a second late (stamped 09:01:01), the job's /fail at 09:01:01.4
    (stamped 09:01:02): three results, three slots, all listed."""
    m = create_heartbeat(api, period_seconds=60, grace_seconds=0)
    assert heartbeats.sweep(T0 + timedelta(seconds=60.1)) == 1
    at.move_to(T0 + timedelta(seconds=60.5))
    assert ping(api, m).status == 200
    at.move_to(T0 + timedelta(seconds=61.4))
    assert ping(api, m, "/fail").status == 200
    assert len(all_rows(m["id"])) == 3  # written: miss, ping, fail
    listed = api.get(f"/v1/monitors/{m['id']}/results").json["data"]
    assert [(r["ok"], r["checked_at"]) for r in listed] == [
        (False, "2026-12-07T09:01:02Z"),
        (True, "2026-12-07T09:01:01Z"),
        (False, "2026-12-07T09:01:00Z"),
    ]


# ----------------------------------------------------------------------------------------- D8: storm over kinds


def test_a_storm_mixing_start_and_ping_writes_at_most_once_a_second_per_kind(api, at, alice, monkeypatch):
    """Starts have their own throttle, which a ping does not clear: one write a second per kind."""
    m = create_heartbeat(api)
    at.move_to(T0 + timedelta(minutes=1, milliseconds=100))
    saves: list[int] = []
    real = MonitorModel.save

    def save(self: Any, *args: Any, **kwargs: Any) -> Any:
        saves.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MonitorModel, "save", save)
    for suffix in ["/start", "", "/start", "", "/start", "/fail", "/start"]:
        assert ping(api, m, suffix).status == 200
    assert len(saves) <= 2, len(saves)


def test_a_ping_whose_result_write_failed_is_recorded_on_its_retry(api, at, alice, monkeypatch):
    """A ping's result is written before the monitor: if it fails, the monitor is unchanged, and the job's retry
    in the same second is recorded (not throttled)."""
    m = create_heartbeat(api, period_seconds=600, grace_seconds=0)
    assert heartbeats.sweep(T0 + timedelta(seconds=601)) == 1  # down
    real_save, failures = PackModel.save, []

    def save(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(1)
            raise RuntimeError("timeout")
        return real_save(self, *args, **kwargs)

    at.move_to(T0 + timedelta(seconds=650.2))
    monkeypatch.setattr(PackModel, "save", save)
    assert ping(api, m).status >= 500
    at.move_to(T0 + timedelta(seconds=650.7))
    assert ping(api, m).status == 200  # the retry
    assert [c.result.ok for c in checks_of(m["id"])] == [True, False]
