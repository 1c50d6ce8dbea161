"""The maintenance windows API: validation, the team's own monitors only, status over time, paging."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

import pytest

from chalicelib.clock import isoz, utcnow
from tests.factories import create_monitor

URL = "https://shop.example.invalid/"


def window(monitor_ids: list[str], start_in: timedelta = timedelta(hours=1), length: timedelta = timedelta(hours=2)):
    now = utcnow().replace(microsecond=0)
    return {
        "title": "Database upgrade",
        "description": "Postgres 17",
        "monitor_ids": monitor_ids,
        "starts_at": isoz(now + start_in),
        "ends_at": isoz(now + start_in + length),
    }


def test_create_read_change_delete(api, alice):
    monitor = create_monitor(api, url=URL)
    body = window([monitor["id"], monitor["id"]])
    r = api.post("/v1/maintenance-windows", body)
    assert r.status == 201, r.body
    created = r.json
    assert created["monitor_ids"] == [monitor["id"]]  # duplicates dropped
    assert (created["title"], created["description"], created["status"]) == (
        "Database upgrade",
        "Postgres 17",
        "scheduled",
    )
    assert (created["starts_at"], created["ends_at"]) == (body["starts_at"], body["ends_at"])
    assert created["created_by"] == alice["user"]["id"]
    assert api.get(f"/v1/maintenance-windows/{created['id']}").json == created

    r = api.patch(f"/v1/maintenance-windows/{created['id']}", {"title": "Upgrade", "description": None})
    assert r.status == 200, r.body
    assert (r.json["title"], r.json["description"], r.json["starts_at"]) == ("Upgrade", None, body["starts_at"])

    assert api.delete(f"/v1/maintenance-windows/{created['id']}").status == 204
    assert api.get(f"/v1/maintenance-windows/{created['id']}").status == 404


def test_the_status_goes_scheduled_in_progress_completed(api, alice):
    monitor = create_monitor(api, url=URL)
    created = api.post("/v1/maintenance-windows", window([monitor["id"]])).json
    path = f"/v1/maintenance-windows/{created['id']}"
    assert api.get(path).json["status"] == "scheduled"
    current = api.post("/v1/maintenance-windows", window([monitor["id"]], start_in=-timedelta(hours=1))).json
    assert current["status"] == "in_progress"
    # ending a window early: its end moves to now, which may be in the past by the time it is read
    r = api.patch(path, {"starts_at": isoz(utcnow() - timedelta(hours=1)), "ends_at": isoz(utcnow())})
    assert r.status == 200, r.body
    assert r.json["status"] == "completed"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"title": ""}, "title"),
        ({"monitor_ids": []}, "monitor_ids"),
        ({"starts_at": "tomorrow"}, "starts_at"),
        ({"starts_at": "2026-12-01T10:00:00"}, "starts_at"),  # no time zone
        ({"ends_at": None}, "ends_at"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_fields_are_422_naming_the_field(api, alice, change, field):
    monitor = create_monitor(api, url=URL)
    r = api.post("/v1/maintenance-windows", {**window([monitor["id"]]), **change})
    assert r.status == 422, r.body
    assert [e["field"] for e in r.json["errors"]] == [field], r.body


@pytest.mark.parametrize(
    ("start_in", "length", "message"),
    [
        (timedelta(hours=1), timedelta(0), "must be after starts_at"),
        (timedelta(hours=1), timedelta(hours=-1), "must be after starts_at"),
        (timedelta(days=-3), timedelta(days=1), "must be in the future"),
        (timedelta(hours=1), timedelta(days=91), "at most 90 days"),
    ],
)
def test_the_times_must_make_a_window(api, alice, start_in, length, message):
    monitor = create_monitor(api, url=URL)
    r = api.post("/v1/maintenance-windows", window([monitor["id"]], start_in, length))
    assert r.status == 422, r.body
    assert r.json["errors"][0]["field"] == "ends_at"
    assert message in r.json["errors"][0]["message"]


def test_only_the_teams_own_monitors_and_windows(api, alice, charlie):
    mine = create_monitor(api, url=URL)
    other = api.acting_as(charlie)
    theirs = create_monitor(other, url=URL)
    r = api.post("/v1/maintenance-windows", window([mine["id"], theirs["id"]]))
    assert r.status == 404
    assert theirs["id"] in r.json["detail"]
    created = api.post("/v1/maintenance-windows", window([mine["id"]])).json
    assert other.get(f"/v1/maintenance-windows/{created['id']}").status == 404
    assert other.patch(f"/v1/maintenance-windows/{created['id']}", {"title": "x"}).status == 404
    assert other.delete(f"/v1/maintenance-windows/{created['id']}").status == 404
    assert other.get("/v1/maintenance-windows").json["data"] == []
    r = api.patch(f"/v1/maintenance-windows/{created['id']}", {"monitor_ids": [theirs["id"]]})
    assert r.status == 404
    assert api.get(f"/v1/maintenance-windows/{created['id']}").json["monitor_ids"] == [mine["id"]]


def test_the_list_is_newest_first_and_pages_with_a_signed_cursor(api, alice):
    monitor = create_monitor(api, url=URL)
    made = [api.post("/v1/maintenance-windows", window([monitor["id"]])).json["id"] for _ in range(3)]
    page = api.get("/v1/maintenance-windows?limit=2").json
    assert [w["id"] for w in page["data"]] == made[:0:-1]
    rest = api.get(f"/v1/maintenance-windows?limit=2&cursor={page['next_cursor']}").json
    assert ([w["id"] for w in rest["data"]], rest["next_cursor"]) == ([made[0]], None)
    assert api.get(f"/v1/maintenance-windows?cursor={page['next_cursor']}x").status == 400


def test_a_window_stays_editable_after_one_of_its_monitors_is_deleted(api, alice):
    kept = create_monitor(api, url=URL)
    gone = create_monitor(api, url="https://gone.example.invalid/")
    created = api.post("/v1/maintenance-windows", window([kept["id"], gone["id"]])).json
    assert api.delete(f"/v1/monitors/{gone['id']}").status == 204
    r = api.patch(f"/v1/maintenance-windows/{created['id']}", {"title": "Renamed"})
    assert r.status == 200, r.body
    assert r.json["title"] == "Renamed"


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_at_the_edge_of_the_calendar_is_422_not_a_crash(api, alice, when):
    monitor = create_monitor(api, url="https://shop.example.invalid/")
    body = {"title": "Edge", "monitor_ids": [monitor["id"]], "starts_at": when, "ends_at": "2030-01-01T00:00:00Z"}
    r = api.post("/v1/maintenance-windows", body)
    assert r.status == 422, r.body
    assert r.json["errors"] == [{"field": "starts_at", "message": "is out of range"}]
    r = api.get(f"/v1/monitors/{monitor['id']}/results?since={quote(when)}")
    assert r.status == 422, r.body
    assert r.json["errors"][0]["field"] == "since"


@pytest.mark.parametrize("when", ["0.5", "1796617964", "2026-12-01", "2026-12-01T10:00Z", "2026-12-01 10:00:00Z"])
def test_a_time_not_written_as_rfc_3339_is_422_as_the_document_says(api, alice, when):
    """pydantic alone reads "0.5" as half a second past 1970 and a date as its midnight; the OpenAPI document says
    RFC 3339 (a fuzzer's "0.5" for ``until`` got a 200), and the same pattern is what is enforced."""
    monitor = create_monitor(api, url=URL)

    created = api.post("/v1/maintenance-windows", {**window([monitor["id"]]), "starts_at": when})
    listed = api.get(f"/v1/monitors/{monitor['id']}/results?until={quote(when)}")

    assert (created.status, [e["field"] for e in created.json["errors"]]) == (422, ["starts_at"]), created.body
    assert (listed.status, [e["field"] for e in listed.json["errors"]]) == (422, ["until"]), listed.body
    assert "RFC 3339" in created.json["errors"][0]["message"]
    published = api.get("/openapi.json").json["components"]["schemas"]["WindowIn"]["properties"]["starts_at"]
    assert re.fullmatch(published["pattern"], when) is None


def spans(monitor: dict) -> list[list[str]]:
    from chalicelib.monitors.models import MonitorModel

    return list(MonitorModel.get(monitor["team_id"], monitor["id"]).maintenance)


def test_each_monitor_carries_its_windows_spans_for_the_worker(api, alice):
    """The worker marks the results of checks inside a window from these (``checks.marking``)."""
    from datetime import datetime

    first, second = create_monitor(api, url=URL), create_monitor(api, url=URL)
    body = window([first["id"], second["id"]])
    created = api.post("/v1/maintenance-windows", body).json
    span = [datetime.fromisoformat(body["starts_at"]).isoformat(), datetime.fromisoformat(body["ends_at"]).isoformat()]
    assert spans(first) == [span]
    assert spans(second) == [span]

    later = window([first["id"]], start_in=timedelta(days=1))
    api.post("/v1/maintenance-windows", later)
    assert len(spans(first)) == 2
    assert spans(second) == [span]

    moved = api.patch(f"/v1/maintenance-windows/{created['id']}", {"monitor_ids": [first["id"]]})
    assert moved.status == 200, moved.body
    assert span in spans(first)
    assert spans(second) == []  # no longer named: no longer marked

    assert api.delete(f"/v1/maintenance-windows/{created['id']}").status == 204
    assert span not in spans(first)
    assert len(spans(first)) == 1
