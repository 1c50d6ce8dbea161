"""Monitors API: defaults, validation, SSRF at create, pagination, filters, pause/resume, masking, results, uptime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from chalicelib.clock import isoz
from chalicelib.monitors.models import MonitorModel, PackModel
from tests.factories import create_monitor
from tests.packed import aggregated, check, reads, write_packs
from tests.support import PASSWORD, on_plan, stored_headers

URL = "https://1.1.1.1/health"  # a public literal: no DNS needed, and no test ever checks it
REGIONS = ("us-east-1", "eu-west-1")


def create(api, **fields):
    return create_monitor(api, **{"url": URL, **fields})


def test_it_creates_a_monitor_with_the_documented_defaults(api, alice):
    m = create(api)
    assert m["id"].startswith("mon_")
    assert m["team_id"] == alice["team"]["id"]
    expected = {
        "method": "GET",
        "headers": {},
        "body": None,
        "interval_seconds": 60,
        "timeout_ms": 10000,
        "regions": ["us-east-1", "eu-west-1", "ap-southeast-1"],
        "expected_status": ["2xx"],
        "follow_redirects": True,
        "verify_ssl": True,
        "assertions": [],
        "degraded_after_ms": None,
        "ssl_expiry_alert_days": 14,
        "failure_threshold": 2,
        "recovery_threshold": 1,
        "confirmation_regions": 2,
        "channel_ids": [],
        "tags": [],
        "status": "pending",
        "region_status": {"us-east-1": "pending", "eu-west-1": "pending", "ap-southeast-1": "pending"},
        "last_checked_at": None,
    }
    assert {k: m[k] for k in expected} == expected
    assert api.get(f"/v1/monitors/{m['id']}").json == m
    stored = MonitorModel.get(alice["team"]["id"], m["id"])
    assert stored.schedule_key.startswith("60:")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"interval_seconds": 45}, "interval_seconds"),
        ({"timeout_ms": 500}, "timeout_ms"),
        ({"regions": ["mars-north-1"]}, "regions"),
        ({"regions": ["us-east-1"], "confirmation_regions": 2}, "confirmation_regions"),
        ({"url": "ftp://example.com/"}, "url"),
        ({"url": "https://user:pass@example.com/"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"headers": {"X-Evil": "a\r\nInjected: yes"}}, "headers"),
        ({"headers": {"Host": "other.example"}}, "headers"),
        ({"expected_status": ["200", "6xx"]}, "expected_status.1"),
        ({"assertions": [{"source": "json_body", "comparison": "equals", "target": "ok"}]}, "assertions.0"),
        ({"assertions": [{"source": "response_time", "comparison": "less_than", "target": "fast"}]}, "assertions.0"),
        ({"degraded_after_ms": 20000, "timeout_ms": 10000}, "degraded_after_ms"),
        ({"assertions": [{"source": "json_body", "property": "$[?(", "comparison": "equals"}]}, "assertions.0"),
        (
            {"assertions": [{"source": "status_code", "property": "x", "comparison": "equals", "target": "200"}]},
            "assertions.0",
        ),
        ({"method": "TRACE"}, "method"),
        ({"tags": ["ok", "not ok"]}, "tags.1"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_fields_are_422_naming_the_field(api, alice, fields, field):
    r = api.post("/v1/monitors", {"name": "Homepage", "url": URL, **fields})
    assert r.status == 422, r.body
    assert r.json["code"] == "validation_error"
    assert field in [e["field"] for e in r.json["errors"]], r.json
    assert list(MonitorModel.query(alice["team"]["id"])) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8000/",
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://2852039166/",
        "http://0x7f000001/",
        "http://100.64.0.1/",
    ],
)
def test_private_destinations_are_refused_at_create_and_update(api, alice, url):
    r = api.post("/v1/monitors", {"name": "Sneaky", "url": url})
    assert r.status == 422
    assert r.json["code"] == "destination_not_allowed"
    assert r.json["errors"][0]["field"] == "url"
    m = create(api)
    r = api.patch(f"/v1/monitors/{m['id']}", {"url": url})
    assert r.status == 422
    assert r.json["code"] == "destination_not_allowed"
    assert api.get(f"/v1/monitors/{m['id']}").json["url"] == URL


def test_a_name_that_does_not_resolve_yet_is_accepted(api, alice):
    assert create(api, url="https://not-yet-live.example.invalid/")["url"].startswith("https://not-yet-live")


def test_pagination_is_signed_and_bound_to_team_and_list(api, alice, charlie):
    ids = [create(api, name=f"m{i}")["id"] for i in range(5)]
    first = api.get("/v1/monitors?limit=2").json
    assert [m["id"] for m in first["data"]] == ids[:2]
    second = api.get(f"/v1/monitors?limit=2&cursor={first['next_cursor']}").json
    third = api.get(f"/v1/monitors?limit=2&cursor={second['next_cursor']}").json
    assert [m["id"] for m in second["data"] + third["data"]] == ids[2:]
    assert third["next_cursor"] is None

    body, sig = first["next_cursor"].split(".")
    tampered = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + sig
    for bad in (tampered, first["next_cursor"] + "x", "garbage", "a.b"):
        r = api.get(f"/v1/monitors?limit=2&cursor={bad}")
        assert r.status == 400, bad
        assert r.json["code"] == "invalid_cursor"
    # a cursor of another list (filtered) or of another team is refused
    assert api.get(f"/v1/monitors?limit=2&tag=x&cursor={first['next_cursor']}").status == 400
    r = api.get(f"/v1/monitors?limit=2&cursor={first['next_cursor']}", token=charlie["access_token"])
    assert r.status == 400


def test_filters_by_status_and_tag(api, alice):
    prod = create(api, name="prod", tags=["prod", "web"])
    create(api, name="staging", tags=["staging"])
    api.post(f"/v1/monitors/{prod['id']}/pause")
    assert [m["name"] for m in api.get("/v1/monitors?status=paused").json["data"]] == ["prod"]
    assert [m["name"] for m in api.get("/v1/monitors?status=pending").json["data"]] == ["staging"]
    assert [m["name"] for m in api.get("/v1/monitors?tag=web").json["data"]] == ["prod"]
    assert api.get("/v1/monitors?status=sleeping").status == 422


def test_pause_and_resume_move_the_schedule_key_in_the_same_write(api, alice):
    m = create(api, interval_seconds=300)
    team = alice["team"]["id"]
    key = MonitorModel.get(team, m["id"]).schedule_key
    assert key.startswith("300:")
    r = api.post(f"/v1/monitors/{m['id']}/pause")
    assert r.json["status"] == "paused"
    assert MonitorModel.get(team, m["id"]).schedule_key is None
    r = api.post(f"/v1/monitors/{m['id']}/resume")
    assert r.json["status"] == "pending"
    assert MonitorModel.get(team, m["id"]).schedule_key == key
    on_plan(api, team)  # 30-second checks
    api.patch(f"/v1/monitors/{m['id']}", {"interval_seconds": 30})
    assert MonitorModel.get(team, m["id"]).schedule_key == "30:0"


def test_patch_changes_only_what_is_sent_and_quorum_follows_regions(api, alice):
    m = create(api, tags=["a"])
    r = api.patch(f"/v1/monitors/{m['id']}", {"regions": ["us-east-1"], "name": "Renamed"})
    assert r.status == 200, r.body
    assert r.json["regions"] == ["us-east-1"]
    assert r.json["confirmation_regions"] == 1
    assert r.json["tags"] == ["a"]
    assert r.json["name"] == "Renamed"
    assert api.patch(f"/v1/monitors/{m['id']}", {"name": None}).status == 422


def test_credential_headers_are_masked_on_read_and_kept_when_sent_back(api, alice):
    m = create(api, headers={"Authorization": "Bearer s3cret-token", "Accept": "application/json"})
    assert m["headers"] == {"Authorization": "********", "Accept": "application/json"}
    everywhere = api.get("/v1/monitors").text + api.get(f"/v1/monitors/{m['id']}").text
    assert "s3cret-token" not in everywhere
    r = api.patch(f"/v1/monitors/{m['id']}", {"headers": {**m["headers"], "Accept": "text/html"}})
    assert r.status == 200
    stored = stored_headers(alice["team"]["id"], m["id"])
    assert stored == {"Authorization": "Bearer s3cret-token", "Accept": "text/html"}


def test_delete_needs_an_admin_and_removes_the_monitor(api, alice, teammate):
    m = create(api)
    member = api.acting_as(teammate("bob@example.com", role="member"))
    r = member.delete(f"/v1/monitors/{m['id']}")
    assert r.status == 403, r.body
    assert r.json["code"] == "forbidden"
    assert api.get(f"/v1/monitors/{m['id']}").status == 200  # still there
    admin = api.acting_as(teammate("dana@example.com", role="admin"))
    assert admin.delete(f"/v1/monitors/{m['id']}").status == 204
    assert api.get(f"/v1/monitors/{m['id']}").status == 404
    assert api.delete(f"/v1/monitors/{m['id']}").status == 404


def test_another_teams_monitor_is_404_everywhere(api, alice, charlie):
    m = create(api)
    api.token = charlie["access_token"]
    for method, path, body in [
        ("GET", "", None),
        ("PATCH", "", {"name": "mine"}),
        ("DELETE", "", None),
        ("POST", "/pause", None),
        ("POST", "/resume", None),
        ("POST", "/test", None),
        ("GET", "/results", None),
        ("GET", "/uptime", None),
    ]:
        r = api.request(method, f"/v1/monitors/{m['id']}{path}", body)
        assert r.status == 404, (method, path, r.status)
    assert api.get("/v1/monitors").json["data"] == []
    assert MonitorModel.get(alice["team"]["id"], m["id"]).name == "Homepage"


def test_results_are_newest_first_filtered_and_paginated(api, alice):
    m = create(api)
    base = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    write_packs(check(m, base + timedelta(minutes=i), region, ok=i != 2) for i in range(4) for region in REGIONS)
    with time_machine.travel(base + timedelta(hours=1), tick=False):  # within the plan's retention
        api.token = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).json[
            "access_token"
        ]
        page = api.get(f"/v1/monitors/{m['id']}/results?limit=3").json
        assert [r["checked_at"] for r in page["data"]] == ["2026-11-30T12:03:00Z"] * 2 + ["2026-11-30T12:02:00Z"]
        rest = api.get(f"/v1/monitors/{m['id']}/results?limit=10&cursor={page['next_cursor']}").json
        assert len(rest["data"]) == 5
        assert rest["next_cursor"] is None
        eu = api.get(f"/v1/monitors/{m['id']}/results?region=eu-west-1").json["data"]
        assert {r["region"] for r in eu} == {"eu-west-1"}
        assert len(eu) == 4
        window = api.get(f"/v1/monitors/{m['id']}/results?since=2026-11-30T12:01:00Z&until=2026-11-30T12:02:00Z").json[
            "data"
        ]
        assert sorted({r["checked_at"] for r in window}) == ["2026-11-30T12:01:00Z", "2026-11-30T12:02:00Z"]
        failed = next(r for r in window if not r["ok"])
        assert failed["error"] == "status_mismatch"
        assert failed["timings"] == {
            "dns_ms": 1.0,
            "connect_ms": 2.0,
            "tls_ms": 3.0,
            "ttfb_ms": 100.0,
            "total_ms": 120.0,
        }


def test_uptime_reads_rollups(api, alice):
    m = create(api)
    now = datetime(2026, 11, 30, 12, 45, tzinfo=UTC)
    # yesterday: 4 checks, 1 failure; today: 2 checks, no failure; 10 days ago: 1 failure out of 1
    checks = [
        check(m, at, ok=ok, ms=200.0)
        for at, ok in (
            [(now - timedelta(days=1, minutes=16 + i), i != 0) for i in range(4)]
            + [(now - timedelta(minutes=16 + i), True) for i in range(2)]
            + [(now - timedelta(days=10), False)]
        )
    ]
    write_packs(checks)
    aggregated(checks, now)
    with time_machine.travel(now, tick=False):
        token = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).json["access_token"]
        with reads(PackModel) as from_packs:
            r = api.get(f"/v1/monitors/{m['id']}/uptime?days=30", token=token)
    assert r.status == 200, r.body
    body = r.json
    assert len(body["days"]) == 30
    assert body["days"][-1] == {
        "date": "2026-11-30",
        "checks": 2,
        "failures": 0,
        "uptime_pct": 100.0,
        "avg_response_ms": 200.0,
    }
    assert body["days"][-2]["uptime_pct"] == 75.0
    assert body["days"][0]["uptime_pct"] is None
    assert body["uptime"]["7d"] == round(100 * 5 / 6, 3)
    assert body["uptime"]["30d"] == round(100 * 5 / 7, 3)
    assert body["uptime"]["24h"] == 100.0  # since 13:00 yesterday: only today's two checks
    assert from_packs == []  # nothing summed from the checks as the worker wrote them


def test_a_channel_id_the_team_does_not_own_is_404_and_nothing_is_stored(api, alice):
    r = api.post("/v1/monitors", {"name": "m", "url": URL, "channel_ids": ["ch_of_another_team"]})
    assert r.status == 404
    assert list(MonitorModel.query(alice["team"]["id"])) == []
    m = create(api)
    assert api.patch(f"/v1/monitors/{m['id']}", {"channel_ids": ["ch_of_another_team"]}).status == 404
    assert api.get(f"/v1/monitors/{m['id']}").json["channel_ids"] == []


def test_a_change_is_checked_in_order_the_monitor_then_its_fields_then_its_channels(api, alice):
    """404 for a monitor that is not there, then 422 for a bad field, and only then 404 for a channel."""
    m = create(api)

    r = api.patch("/v1/monitors/mon_nope", {"channel_ids": ["ch_nope"]})
    assert (r.status, r.json["detail"]) == (404, "No such monitor.")
    r = api.patch(f"/v1/monitors/{m['id']}", {"regions": ["mars-north-1"], "channel_ids": ["ch_nope"]})
    assert r.status == 422
    assert [e["field"] for e in r.json["errors"]] == ["regions"]
    r = api.post("/v1/monitors", {"name": "m", "url": URL, "regions": ["mars-north-1"], "channel_ids": ["ch_nope"]})
    assert r.status == 422
    assert [i.monitor_id for i in MonitorModel.query(alice["team"]["id"])] == [m["id"]]


def test_last_checked_at_is_derived_from_the_schedule_and_the_workers_progress(api, alice):
    """No check writes the monitor (issue 13): the time of its last check is its latest planned start in a minute
    every result of which its region's workers stored, and never before it existed, nor while it is paused."""
    from chalicelib.monitors.models import ProgressModel
    from chalicelib.scheduler.due import start_offset_seconds

    created = datetime(2026, 12, 6, 14, 0, 30, tzinfo=UTC)
    with time_machine.travel(created, tick=False):
        token = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).json["access_token"]
        m = api.post("/v1/monitors", {"name": "m", "url": URL, "regions": ["us-east-1", "eu-west-1"]}, token=token)
    monitor = m.json
    offset = timedelta(seconds=start_offset_seconds(monitor["id"], 60))

    def shown(at: datetime) -> str | None:
        with time_machine.travel(at, tick=False):
            one = api.get(f"/v1/monitors/{monitor['id']}", token=token).json["last_checked_at"]
            [listed] = api.get("/v1/monitors", token=token).json["data"]
            assert listed["last_checked_at"] == one
            return one

    assert shown(created + timedelta(minutes=10)) is None  # no worker has finished anything
    ProgressModel("checks#us-east-1", through=datetime(2026, 12, 6, 14, 5, tzinfo=UTC)).save()
    ProgressModel("checks#eu-west-1", through=datetime(2026, 12, 6, 14, 7, tzinfo=UTC)).save()
    assert shown(datetime(2026, 12, 6, 14, 9, tzinfo=UTC)) == isoz(datetime(2026, 12, 6, 14, 7, tzinfo=UTC) + offset)
    ProgressModel("checks#eu-west-1", through=datetime(2026, 12, 6, 13, 59, tzinfo=UTC)).save()
    assert shown(datetime(2026, 12, 6, 14, 9, tzinfo=UTC)) == isoz(datetime(2026, 12, 6, 14, 5, tzinfo=UTC) + offset)
    ProgressModel("checks#us-east-1", through=datetime(2026, 12, 6, 13, 58, tzinfo=UTC)).save()
    assert shown(datetime(2026, 12, 6, 14, 9, tzinfo=UTC)) is None  # before it existed

    ProgressModel("checks#us-east-1", through=datetime(2026, 12, 6, 14, 5, tzinfo=UTC)).save()
    with time_machine.travel(created + timedelta(minutes=9), tick=False):
        assert api.post(f"/v1/monitors/{monitor['id']}/pause", token=token).status == 200
    assert shown(datetime(2026, 12, 6, 14, 9, tzinfo=UTC)) is None


def test_last_checked_at_never_shows_a_check_of_the_minute_a_monitor_was_created_or_resumed_in(api, alice):
    """That minute's tick may have run before the change: its planned start there was never checked."""
    from chalicelib.monitors.models import ProgressModel

    created = datetime(2026, 12, 6, 14, 0, 4, tzinfo=UTC)  # after 14:00's tick
    with time_machine.travel(created, tick=False):
        token = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).json["access_token"]
        m = api.post("/v1/monitors", {"name": "m", "url": URL, "regions": ["us-east-1"]}, token=token).json
    ProgressModel("checks#us-east-1", through=datetime(2026, 12, 6, 14, 0, tzinfo=UTC)).save()
    with time_machine.travel(datetime(2026, 12, 6, 14, 0, 59, tzinfo=UTC), tick=False):
        assert api.get(f"/v1/monitors/{m['id']}", token=token).json["last_checked_at"] is None

    with time_machine.travel(datetime(2026, 12, 6, 14, 3, 10, tzinfo=UTC), tick=False):
        assert api.post(f"/v1/monitors/{m['id']}/pause", token=token).status == 200
    with time_machine.travel(datetime(2026, 12, 6, 14, 5, 4, tzinfo=UTC), tick=False):
        assert api.post(f"/v1/monitors/{m['id']}/resume", token=token).status == 200
    ProgressModel("checks#us-east-1", through=datetime(2026, 12, 6, 14, 5, tzinfo=UTC)).save()
    with time_machine.travel(datetime(2026, 12, 6, 14, 5, 59, tzinfo=UTC), tick=False):
        shown = api.get(f"/v1/monitors/{m['id']}", token=token).json["last_checked_at"]
    assert shown is None or shown < "2026-12-06T14:05", shown
