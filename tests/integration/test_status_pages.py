"""Status pages: the admin API, the public views (JSON as API.md says, HTML, Atom, badges) that never show
private data, the 90-day bars from rollups only, and publishing to the bucket on every change."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from chalicelib import errors
from chalicelib.aws import names
from chalicelib.aws.clients import client
from chalicelib.clock import isoz, utcnow
from chalicelib.incidents.models import EventModel
from chalicelib.monitors.models import PackModel, PeriodModel, RollupModel
from chalicelib.settings import get_settings
from chalicelib.status_pages import service as pages
from chalicelib.status_pages.document import overall
from chalicelib.status_pages.models import SlugModel
from chalicelib.status_pages.publish import refresh_all
from tests import iam
from tests.events import stream_records
from tests.factories import create_monitor, create_status_page
from tests.support import ApiClient, all_at_once, before_aws_call, make_test_settings, on_plan, open_incident
from tests.support import recover as recover_everywhere

URL = "https://shop.example.invalid/"


@pytest.fixture
def settings():
    return make_test_settings(ALLOW_PRIVATE_TARGETS="true")


def public(api: ApiClient, slug: str = "acme") -> dict[str, Any]:
    r = api.get(f"/v1/public/status-pages/{slug}", token="")
    assert r.status == 200, r.body
    return dict(r.json)


def fail(monitor: dict[str, Any], minutes_ago: int = 5) -> str:
    first = utcnow() - timedelta(minutes=minutes_ago)
    opened = open_incident(monitor["team_id"], monitor["id"], first, error="timeout")
    streamed(opened, monitor["id"])
    return opened


def recover(monitor: dict[str, Any]) -> None:
    streamed(*recover_everywhere(monitor["team_id"], monitor["id"], utcnow()), monitor["id"])


def streamed(*subjects: str) -> None:
    """Hand the events of these subjects to the status page publisher, as the events stream does."""
    from chalicelib.events.status_pages import handle

    assert handle([r for subject in subjects for r in _stream(subject)]) == {"batchItemFailures": []}


# ------------------------------------------------------------------------------------------------- admin


def test_create_read_change_and_components(api, alice):
    shop = create_monitor(api, url=URL, name="shop-internal")
    blog = create_monitor(api, url="https://blog.example.invalid/")
    created = create_status_page(
        api, description="Acme's services", components=[{"monitor_id": shop["id"], "display_name": "Shop"}]
    )
    assert created["components"] == [{"monitor_id": shop["id"], "display_name": "Shop", "group": None}]
    assert created["url"] == "https://app.vigil.test/status/acme"  # STATUS_BASE_URL: APP_URL + /status by default
    assert created["published"] is True
    r = api.post(f"/v1/status-pages/{created['id']}/components", {"monitor_id": blog["id"], "group": "Content"})
    assert r.status == 201, r.body
    assert r.json["components"][1] == {"monitor_id": blog["id"], "display_name": "Service 1", "group": "Content"}
    assert api.post(f"/v1/status-pages/{created['id']}/components", {"monitor_id": blog["id"]}).status == 422
    r = api.delete(f"/v1/status-pages/{created['id']}/components/{shop['id']}")
    assert r.status == 204
    assert [c["monitor_id"] for c in api.get(f"/v1/status-pages/{created['id']}").json["components"]] == [blog["id"]]
    assert api.delete(f"/v1/status-pages/{created['id']}/components/{shop['id']}").status == 404
    assert [p["id"] for p in api.get("/v1/status-pages").json["data"]] == [created["id"]]


def test_a_default_component_name_is_one_no_other_component_has(api, alice):
    a, b, c = (create_monitor(api, url=f"https://{n}.example.invalid/") for n in "abc")
    created = create_status_page(
        api, components=[{"monitor_id": a["id"]}, {"monitor_id": b["id"], "display_name": "Service 3"}]
    )
    assert [c["display_name"] for c in created["components"]] == ["Service 1", "Service 3"]
    api.post(f"/v1/status-pages/{created['id']}/components", {"monitor_id": c["id"]})
    assert api.delete(f"/v1/status-pages/{created['id']}/components/{a['id']}").status == 204
    r = api.post(f"/v1/status-pages/{created['id']}/components", {"monitor_id": a["id"]})
    assert [c["display_name"] for c in r.json["components"]] == ["Service 3", "Service 2", "Service 1"]


def test_a_slug_is_unique_across_the_service_even_under_concurrent_creates(api, alice, charlie):
    create_status_page(api)
    other = api.acting_as(charlie)
    r = other.post("/v1/status-pages", {"name": "Not Acme", "slug": "acme"})
    assert (r.status, r.json["code"]) == (409, "slug_taken")
    assert other.post("/v1/status-pages", {"name": "x", "slug": "status"}).status == 409  # reserved

    outcomes: list[str] = []

    def create() -> None:
        try:
            pages.create(charlie["team"]["id"], {"name": "Race", "slug": "race"}, utcnow())
            outcomes.append("created")
        except errors.SlugTaken:
            outcomes.append("taken")

    threads = [threading.Thread(target=create) for _ in range(6)]
    with all_at_once(SlugModel, "dynamodb.TransactWriteItems", 6) as met:  # whatever each read
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert met == [True] * 6
    assert sorted(outcomes) == ["created"] + ["taken"] * 5
    assert [p["name"] for p in other.get("/v1/status-pages").json["data"]] == ["Race"]


def test_renaming_or_deleting_a_page_frees_its_slug(api, alice):
    on_plan(api, alice["team"]["id"])  # two pages at once
    created = create_status_page(api)
    r = api.patch(f"/v1/status-pages/{created['id']}", {"slug": "acme-corp"})
    assert r.status == 200, r.body
    assert api.get("/v1/public/status-pages/acme", token="").status == 404
    assert public(api, "acme-corp")["name"] == "Acme"
    second = create_status_page(api, name="Second")  # "acme" again
    assert api.delete(f"/v1/status-pages/{second['id']}").status == 204
    assert api.get("/v1/public/status-pages/acme", token="").status == 404
    create_status_page(api, name="Third")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"slug": "A"}, "slug"),
        ({"slug": "has space"}, "slug"),
        ({"slug": "-edge"}, "slug"),
        ({"name": ""}, "name"),
        ({"custom_domain": "not a domain"}, "custom_domain"),
        ({"components": [{"monitor_id": "m", "colour": "red"}]}, "components.0.colour"),
        ({"name": "Acme\x01"}, "name"),
        ({"name": "Acme\nInc"}, "name"),
        ({"description": "ok\nbut a bell\x07"}, "description"),
        ({"components": [{"monitor_id": "m", "display_name": "API\x0b"}]}, "components.0.display_name"),
        ({"components": [{"monitor_id": "m", "group": "Core\x7f"}]}, "components.0.group"),
    ],
)
def test_bad_pages_are_422_naming_the_field(api, alice, fields, field):
    r = api.post("/v1/status-pages", {"name": "Acme", "slug": "acme", **fields})
    assert r.status == 422, r.body
    assert field in [e["field"] for e in r.json["errors"]]


def test_components_name_only_the_teams_own_monitors(api, alice, charlie):
    other = api.acting_as(charlie)
    theirs = create_monitor(other, url=URL)
    r = api.post("/v1/status-pages", {"name": "Acme", "slug": "acme", "components": [{"monitor_id": theirs["id"]}]})
    assert r.status == 404
    created = create_status_page(api)
    assert api.post(f"/v1/status-pages/{created['id']}/components", {"monitor_id": theirs["id"]}).status == 404
    assert other.get(f"/v1/status-pages/{created['id']}").status == 404


def test_unpublished_and_unknown_pages_are_404_everywhere(api, alice):
    monitor = create_monitor(api, url=URL)
    created = create_status_page(
        api, components=[{"monitor_id": monitor["id"], "display_name": "Shop"}], published=False
    )
    paths = ("/v1/public/status-pages/acme", "/status/acme", "/status/acme/feed.atom", "/status/nope")
    for path in (*paths, "/v1/public/badges/.svg", "/v1/public/badges/%C3%A9.svg"):
        r = api.get(path, token="")
        assert r.status == 404, path
        assert r.headers["content-type"] == "application/problem+json"
    assert api.get(f"/v1/public/badges/{monitor['id']}.svg", token="").status == 404
    api.patch(f"/v1/status-pages/{created['id']}", {"published": True})
    assert api.get(f"/v1/public/badges/{monitor['id']}.svg", token="").status == 200
    assert api.get(f"/v1/public/badges/{monitor['id']}", token="").status == 404


def test_the_hourly_refresh_publishes_the_page_cloudfront_shows_for_a_missing_one(api, alice):
    from chalicelib.aws import names
    from chalicelib.aws.clients import client
    from chalicelib.status_pages.publish import NOT_FOUND_KEY

    create_status_page(api, components=[], published=False)
    assert refresh_all() == (0, 0)
    found = client("s3").get_object(Bucket=names.status_bucket(get_settings()), Key=NOT_FOUND_KEY)
    html = found["Body"].read().decode()
    assert found["ContentType"] == "text/html; charset=utf-8"
    assert "max-age" in found["CacheControl"]
    assert "<title>Status page not found</title>" in html
    assert '<html lang="en">' in html
    assert '<main id="content">' in html
    assert "acme" not in html.lower()  # it names no page, published or not


def test_text_stored_before_it_was_refused_never_breaks_the_feed_or_a_badge():
    """Control characters are refused at the API; any already stored are left out of the XML views."""
    from xml.etree import ElementTree

    from chalicelib.status_pages import render

    doc = {"name": "Acme\x01", "updated_at": "2026-12-01T00:00:00Z"}
    entry = {"id": "inc_1", "title": "API\x1b is down", "status": "investigating", "started_at": "2026-12-01T00:00:00Z"}
    entry |= {
        "resolved_at": None,
        "updates": [{"at": "2026-12-01T00:00:00Z", "status": "investigating", "text": "\x00"}],
    }
    feed = ElementTree.fromstring(render.atom_feed(doc, [entry], "https://s.example/acme", "https://s.example/f"))
    assert feed.find("{http://www.w3.org/2005/Atom}title").text == "Acme incidents"
    badge = ElementTree.fromstring(render.badge("API\x01\ud800", "operational"))
    assert badge.find("{http://www.w3.org/2000/svg}title").text == "API: up"


# ---------------------------------------------------------------------------------------------- public


def test_the_json_document_is_the_contract(api, alice):
    shop = create_monitor(api, url=URL)
    blog = create_monitor(api, url="https://blog.example.invalid/")
    create_status_page(
        api,
        description="Acme's services",
        components=[
            {"monitor_id": shop["id"], "display_name": "Shop", "group": "Commerce"},
            {"monitor_id": blog["id"], "display_name": "Blog"},
        ],
    )
    doc = public(api)
    assert set(doc) >= {
        "name",
        "description",
        "overall_status",
        "components",
        "active_incidents",
        "recent_incidents",
        "maintenance",
        "updated_at",
    }
    assert (doc["name"], doc["description"], doc["overall_status"]) == ("Acme", "Acme's services", "operational")
    first = doc["components"][0]
    assert set(first) == {"name", "group", "status", "uptime_90d", "days"}
    assert (first["name"], first["group"], first["status"]) == ("Shop", "Commerce", "operational")
    assert len(first["days"]) == 90
    assert set(first["days"][0]) == {"date", "uptime_pct"}

    incident_id = fail(shop)
    doc = public(api)
    assert doc["overall_status"] == "partial_outage"  # one of two components down
    assert [c["status"] for c in doc["components"]] == ["major_outage", "operational"]
    (active,) = doc["active_incidents"]
    assert (active["id"], active["status"], active["components"]) == (incident_id, "investigating", ["Shop"])
    fail(blog)
    assert public(api)["overall_status"] == "major_outage"  # every component down
    recover(shop)
    recover(blog)
    doc = public(api)
    assert doc["overall_status"] == "operational"
    assert doc["active_incidents"] == []
    assert [i["status"] for i in doc["recent_incidents"]] == ["resolved", "resolved"]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], "operational"),
        (["operational", "operational"], "operational"),
        (["operational", "degraded"], "degraded"),
        (["operational", "maintenance"], "maintenance"),
        (["degraded", "maintenance"], "degraded"),
        (["major_outage", "operational", "degraded"], "partial_outage"),
        (["major_outage", "major_outage"], "major_outage"),
        (["major_outage", "maintenance"], "partial_outage"),
    ],
)
def test_overall_status_is_the_worst_of_the_components(statuses, expected):
    assert overall(statuses) == expected


def test_maintenance_shows_as_scheduled_then_in_progress(api, alice):
    shop = create_monitor(api, url=URL)
    create_status_page(api, components=[{"monitor_id": shop["id"], "display_name": "Shop"}])
    now = utcnow()
    for start, title in ((timedelta(hours=2), "Upgrade"), (timedelta(minutes=-5), "Migration")):
        body = {"title": title, "monitor_ids": [shop["id"]], "starts_at": isoz(now + start)}
        body["ends_at"] = isoz(now + start + timedelta(hours=1))
        assert api.post("/v1/maintenance-windows", body).status == 201
    shown = public(api)["maintenance"]
    assert [(m["title"], m["status"], m["components"]) for m in shown] == [
        ("Migration", "in_progress", ["Shop"]),
        ("Upgrade", "scheduled", ["Shop"]),
    ]


def test_the_90_day_bars_read_the_rollups_only(api, alice):
    shop = create_monitor(api, url=URL)
    create_status_page(api, components=[{"monitor_id": shop["id"], "display_name": "Shop"}])
    today = utcnow().date()
    expires = utcnow() + timedelta(days=400)
    for days_ago, checks, failures in ((1, 1440, 144), (89, 100, 50), (90, 100, 100)):
        day = today - timedelta(days=days_ago)
        RollupModel(
            shop["id"], f"D#{day}", team_id=shop["team_id"], checks=checks, failures=failures, expires_at=expires
        ).save()
    # Today is not over: its hours, not a daily rollup.
    RollupModel(shop["id"], f"H#{today}T00", team_id=shop["team_id"], checks=1440, expires_at=expires).save()
    assert list(PackModel.scan()) == []  # no raw results at all: the bars come from rollups
    assert list(PeriodModel.query(shop["id"])) == []
    assert refresh_all() == (1, 0)  # the hourly refresh republishes every published page
    (component,) = public(api)["components"]
    by_day = {d["date"]: d["uptime_pct"] for d in component["days"]}
    assert by_day[str(today)] == 100.0
    assert by_day[str(today - timedelta(days=1))] == 90.0
    assert by_day[str(today - timedelta(days=89))] == 50.0
    assert str(today - timedelta(days=90)) not in by_day  # the 91st day is out of the window
    assert by_day[str(today - timedelta(days=2))] is None  # no data that day
    assert component["uptime_90d"] == round(100 * (1 - 194 / 2980), 3)


IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")


def test_no_view_shows_a_url_a_header_an_internal_name_or_an_ip(api, alice):
    monitor = create_monitor(
        api,
        url="http://127.0.0.1:9/private/health?token=QUERYSECRET123",
        name="db-primary-internal",
        headers={"Authorization": "Bearer HEADERSECRET456", "X-Env": "HEADERVALUE789"},
    )
    create_status_page(api, components=[{"monitor_id": monitor["id"], "display_name": "Checkout"}])
    fail(monitor)
    body = api.get("/v1/public/status-pages/acme", token="").body.decode()
    views = {
        "json": body,
        "html": api.get("/status/acme", token="").body.decode(),
        "feed": api.get("/status/acme/feed.atom", token="").body.decode(),
        "badge": api.get(f"/v1/public/badges/{monitor['id']}.svg", token="").body.decode(),
    }
    assert "Checkout" in views["html"]
    assert "Checkout" in views["badge"]
    assert "<entry>" in views["feed"]
    for name, text in views.items():
        for secret in ("QUERYSECRET123", "HEADERSECRET456", "HEADERVALUE789", "db-primary-internal", "/private/health"):
            assert secret not in text, (name, secret)
        assert "127.0.0.1" not in text
        assert IPV4.findall(text) == [], name
        assert "timeout" not in text.lower(), name  # the incident's cause is not told either


def test_public_views_are_cacheable_and_revalidate(api, alice):
    create_status_page(api)
    r = api.get("/status/acme", token="")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "max-age" in r.headers["cache-control"]
    again = api.get("/status/acme", token="", headers={"If-None-Match": r.headers["etag"]})
    assert (again.status, again.body) == (304, b"")
    assert api.get("/status/acme/feed.atom", token="").headers["content-type"].startswith("application/atom+xml")


# ------------------------------------------------------------------------------------------ publishing


def _objects(slug: str) -> dict[str, str]:
    s3 = client("s3")
    bucket = names.status_bucket(get_settings())
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"status/{slug}/").get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode() for o in listed}


def _clear(slug: str) -> None:
    s3 = client("s3")
    bucket = names.status_bucket(get_settings())
    for key in _objects(slug):
        s3.delete_object(Bucket=bucket, Key=key)


def _stream(subject: str) -> list[dict[str, Any]]:
    """The events stream's records of every event of ``subject``."""
    return stream_records(EventModel.query(subject))


def test_the_feed_lists_the_pages_incidents_however_many_the_teams_other_monitors_had(api, alice):
    from chalicelib.ids import derived_id
    from chalicelib.incidents.models import IncidentModel

    shown = create_monitor(api, url=URL)
    hidden = create_monitor(api, url="https://internal.example.invalid/")
    create_status_page(api, components=[{"monitor_id": shown["id"], "display_name": "Shop"}])

    def resolved(monitor: dict[str, Any], days_ago: float) -> str:
        at = utcnow() - timedelta(days=days_ago)
        incident_id = derived_id("inc", at, monitor["id"])
        IncidentModel(
            monitor["team_id"], incident_id, team_status=f"{monitor['team_id']}#resolved", monitor_id=monitor["id"]
        ).update(
            actions=[
                IncidentModel.status.set("resolved"),
                IncidentModel.started_at.set(at),
                IncidentModel.resolved_at.set(at + timedelta(minutes=5)),
                IncidentModel.updated_at.set(at + timedelta(minutes=5)),
                IncidentModel.team_status.set(f"{monitor['team_id']}#resolved"),
                IncidentModel.monitor_id.set(monitor["id"]),
            ]
        )
        return incident_id

    mine = resolved(shown, days_ago=5)
    for i in range(60):  # the team's other monitor flapped a lot since
        resolved(hidden, days_ago=4 - i / 20)
    assert refresh_all() == (1, 0)
    feed = api.get("/status/acme/feed.atom", token="").body.decode()
    assert feed.count("<entry>") == 1
    assert mine in feed
    assert "Shop was down" in feed


def test_publishing_writes_the_three_objects_when_an_incident_opens_and_again_when_it_resolves(api, alice):
    from chalicelib.events.status_pages import handle

    monitor = create_monitor(api, url=URL)
    create_status_page(api, components=[{"monitor_id": monitor["id"], "display_name": "Shop"}])
    keys = {"status/acme/index.html", "status/acme/index.json", "status/acme/feed.atom"}
    assert set(_objects("acme")) == keys  # published on creation
    _clear("acme")

    incident_id = open_incident(monitor["team_id"], monitor["id"], utcnow() - timedelta(minutes=5), error="timeout")
    assert _objects("acme") == {}  # nothing yet: the stream has not told the publisher
    assert handle(_stream(incident_id) + _stream(monitor["id"])) == {"batchItemFailures": []}
    objects = _objects("acme")
    assert set(objects) == keys
    assert json.loads(objects["status/acme/index.json"])["active_incidents"][0]["id"] == incident_id
    assert "Major outage" in objects["status/acme/index.html"]
    _clear("acme")

    recover_everywhere(monitor["team_id"], monitor["id"], utcnow())
    assert _objects("acme") == {}
    assert handle(_stream(incident_id)[-1:]) == {"batchItemFailures": []}  # the "resolved" entry
    objects = _objects("acme")
    assert set(objects) == keys
    doc = json.loads(objects["status/acme/index.json"])
    assert (doc["overall_status"], doc["active_incidents"]) == ("operational", [])
    assert doc["recent_incidents"][0]["id"] == incident_id
    assert incident_id in objects["status/acme/feed.atom"]


def test_pausing_a_down_monitor_republishes_its_pages_without_the_outage(api, alice):
    from chalicelib.events.status_pages import handle

    monitor = create_monitor(api, url=URL)
    create_status_page(api, components=[{"monitor_id": monitor["id"], "display_name": "Shop"}])
    incident_id = open_incident(monitor["team_id"], monitor["id"], utcnow() - timedelta(minutes=5), error="timeout")
    assert handle(_stream(incident_id) + _stream(monitor["id"])) == {"batchItemFailures": []}
    _clear("acme")

    assert api.post(f"/v1/monitors/{monitor['id']}/pause").status == 200
    assert handle(_stream(incident_id) + _stream(monitor["id"])) == {"batchItemFailures": []}
    doc = json.loads(_objects("acme")["status/acme/index.json"])
    assert doc["active_incidents"] == []  # the page no longer says "down" of a component nobody checks
    assert [i["id"] for i in doc["recent_incidents"]] == [incident_id]


def test_unpublishing_or_deleting_removes_the_objects(api, alice):
    created = create_status_page(api)
    assert _objects("acme")
    api.patch(f"/v1/status-pages/{created['id']}", {"published": False})
    assert _objects("acme") == {}
    api.patch(f"/v1/status-pages/{created['id']}", {"published": True, "slug": "acme-2"})
    assert _objects("acme") == {}
    assert len(_objects("acme-2")) == 3
    api.delete(f"/v1/status-pages/{created['id']}")
    assert _objects("acme-2") == {}


@contextmanager
def meanwhile(operation: str, change: Callable[[], Any], *, times: int = 1) -> Iterator[list[bool]]:
    """``change`` (another writer's, through the API) lands just before the next ``operation`` on the objects of
    "acme" is sent: the publish under test read the page, then someone changed it."""

    changing: list[bool] = []

    def slipped_in() -> None:
        changing.append(True)
        try:
            with iam.outside():  # the API's doing, not the publisher's
                change()
        finally:
            changing.clear()

    def of_acme(params: dict[str, Any]) -> bool:  # and not the change's own publishing
        keys = [params["Key"]] if "Key" in params else [o["Key"] for o in params["Delete"]["Objects"]]
        return not changing and all(key.startswith("status/acme/") for key in keys)

    with before_aws_call([client("s3")], operation, slipped_in, match=of_acme, times=times) as fired:
        yield fired
    assert fired, f"no {operation} was made"


@pytest.mark.parametrize("change", ["unpublish", "delete", "rename"])
def test_a_refresh_that_read_a_page_before_it_was_taken_down_does_not_put_it_back(api, alice, change):
    created = create_status_page(api)
    path = f"/v1/status-pages/{created['id']}"
    take_down = {
        "unpublish": lambda: api.patch(path, {"published": False}),
        "delete": lambda: api.delete(path),
        "rename": lambda: api.patch(path, {"slug": "acme-2"}),
    }[change]

    with meanwhile("s3.PutObject", lambda: assert_status(take_down(), 200, 204)):
        assert refresh_all() == (1, 0)  # it rendered "acme" as published, and its puts land after the delete

    assert _objects("acme") == {}
    assert api.get("/status/acme", token="").status == 404
    if change == "rename":
        assert json.loads(_objects("acme-2")["status/acme-2/index.json"])["name"] == "Acme"


def test_a_slug_freed_during_a_publish_shows_the_page_that_took_it_not_the_old_one(api, alice, charlie):
    created = create_status_page(api)

    def rename_and_retake() -> None:
        assert_status(api.patch(f"/v1/status-pages/{created['id']}", {"slug": "acme-2"}), 200)
        create_status_page(api.acting_as(charlie), name="Charlie's Acme")

    with meanwhile("s3.PutObject", rename_and_retake):
        assert refresh_all() == (1, 0)

    objects = _objects("acme")
    assert json.loads(objects["status/acme/index.json"])["name"] == "Charlie's Acme"
    assert all("Charlie" in body for body in objects.values())  # all three are theirs, none is alice's
    assert json.loads(_objects("acme-2")["status/acme-2/index.json"])["name"] == "Acme"


def test_an_unpublish_whose_delete_lands_after_the_page_was_published_again_leaves_it_published(api, alice):
    created = create_status_page(api)
    path = f"/v1/status-pages/{created['id']}"

    def published_again() -> None:
        assert_status(api.patch(path, {"published": True, "name": "Acme again"}), 200)

    with meanwhile("s3.DeleteObjects", published_again):
        assert_status(api.patch(path, {"published": False}), 200)  # its delete was decided before the republish

    assert api.get(path).json["published"] is True
    assert json.loads(_objects("acme")["status/acme/index.json"])["name"] == "Acme again"
    assert len(_objects("acme")) == 3


def test_a_page_that_changes_faster_than_it_can_be_published_fails_the_refresh_for_the_next_try(api, alice):
    from chalicelib.status_pages.publish import OBJECTS, ROUNDS

    created = create_status_page(api)
    names_given = (f"Acme {n}" for n in range(100))

    def renamed() -> None:
        assert_status(api.patch(f"/v1/status-pages/{created['id']}", {"name": next(names_given)}), 200)

    puts = ROUNDS * len(OBJECTS)
    with meanwhile("s3.PutObject", renamed, times=puts) as fired:  # a change before each of its puts
        assert refresh_all() == (0, 1)  # every write it made was stale by its read-back: logged, counted, raised
    assert len(fired) == puts

    assert refresh_all() == (1, 0)
    assert json.loads(_objects("acme")["status/acme/index.json"])["name"] == f"Acme {puts - 1}"


def test_a_refresh_that_rendered_a_monitor_up_before_it_went_down_does_not_land_operational(api, alice):
    # found by a fresh-eyes review of issue 19: the read-back compared the page's version only, which a monitor's
    # status does not move
    from chalicelib.status_pages.publish import republish_for

    monitor = create_monitor(api, name="Shop")
    create_status_page(api, components=[{"monitor_id": monitor["id"]}])
    team_id = alice["team"]["id"]

    def outage_published() -> None:  # the incident handler and the events stream's publish, all done meanwhile
        open_incident(team_id, monitor["id"], utcnow() - timedelta(minutes=3), error="timeout")
        assert republish_for(team_id, {monitor["id"]}) == 1

    with meanwhile("s3.PutObject", outage_published):
        assert refresh_all() == (1, 0)  # it rendered "operational" before the outage, and its puts land after

    shown = json.loads(_objects("acme")["status/acme/index.json"])
    assert shown["overall_status"] == "major_outage"
    assert [c["status"] for c in shown["components"]] == ["major_outage"]
    assert "Major outage" in _objects("acme")["status/acme/index.html"]


ACME_KEYS = ["status/acme/index.html", "status/acme/index.json", "status/acme/feed.atom"]


def test_objects_a_failed_unpublish_left_behind_are_removed_by_the_hourly_refresh(api, alice, logs):
    # found by a fresh-eyes review of issue 19: DeleteObjects answers 200 with the keys it kept under Errors
    created = create_status_page(api)
    kept = threading.Event()
    s3 = client("s3")

    def keep_them(params: dict[str, Any], **_: Any) -> None:  # S3 keeps every key it was asked to delete
        kept.set()
        params["Delete"]["Objects"] = [{"Key": "status/not-a-page/x"}]  # none of the page's is deleted

    def say_so(parsed: dict[str, Any], **_: Any) -> None:
        parsed["Errors"] = [{"Key": key, "Code": "InternalError"} for key in ACME_KEYS]

    s3.meta.events.register("before-parameter-build.s3.DeleteObjects", keep_them)
    s3.meta.events.register("after-call.s3.DeleteObjects", say_so)
    try:
        assert_status(api.patch(f"/v1/status-pages/{created['id']}", {"published": False}), 200)
    finally:
        s3.meta.events.unregister("before-parameter-build.s3.DeleteObjects", keep_them)
        s3.meta.events.unregister("after-call.s3.DeleteObjects", say_so)
    assert kept.is_set()
    assert api.get(f"/v1/status-pages/{created['id']}").json["published"] is False  # the change stands
    assert len(_objects("acme")) == 3  # but the page is still public
    assert "S3 kept status/acme/index.html" in logs.getvalue()  # and that is not silent

    assert refresh_all() == (0, 0)

    assert _objects("acme") == {}
    assert api.get("/status/acme", token="").status == 404


def test_the_hourly_refresh_leaves_published_pages_and_the_missing_page_alone(api, alice):
    on_plan(api, alice["team"]["id"])  # three pages
    create_status_page(api)
    create_status_page(api, name="Blog", slug="blog")
    assert_status(
        api.patch(f"/v1/status-pages/{create_status_page(api, slug='draft')['id']}", {"published": False}), 200
    )

    assert refresh_all() == (2, 0)

    assert len(_objects("acme")) == len(_objects("blog")) == 3
    assert _objects("draft") == {}
    assert client("s3").get_object(Bucket=names.status_bucket(get_settings()), Key="status/404.html")


def assert_status(r: Any, *statuses: int) -> None:
    assert r.status in statuses, r.body


def test_renaming_to_a_taken_slug_is_slug_taken(api, alice):
    on_plan(api, alice["team"]["id"])  # two pages at once
    create_status_page(api)
    second = create_status_page(api, slug="second")
    r = api.patch(f"/v1/status-pages/{second['id']}", {"slug": "acme"})
    assert (r.status, r.json["code"]) == (409, "slug_taken")
    assert api.get(f"/v1/status-pages/{second['id']}").json["slug"] == "second"


def test_deleting_a_monitor_takes_it_off_its_pages(api, alice):
    shop = create_monitor(api, url=URL)
    created = create_status_page(api, components=[{"monitor_id": shop["id"], "display_name": "Shop"}])
    assert api.delete(f"/v1/monitors/{shop['id']}").status == 204
    assert api.get(f"/v1/status-pages/{created['id']}").json["components"] == []
    assert public(api)["components"] == []


def test_a_page_shows_the_25_newest_resolved_incidents_of_its_fortnight_however_many_there_were(api, alice):
    # found by a fresh-eyes review of issue 19: a monitor flapping for two weeks made a page (and each render of it,
    # a timeline query each) without bound
    from chalicelib.status_pages.document import RECENT_INCIDENTS

    monitor = create_monitor(api, name="Shop")
    create_status_page(api, components=[{"monitor_id": monitor["id"]}])
    team_id = alice["team"]["id"]
    first = utcnow() - timedelta(days=13)
    opened = []
    for n in range(RECENT_INCIDENTS + 2):
        at = first + timedelta(hours=n)
        opened.append(open_incident(team_id, monitor["id"], at, error="timeout"))
        assert recover_everywhere(team_id, monitor["id"], at + timedelta(minutes=10)) == [opened[-1]]

    assert refresh_all() == (1, 0)

    shown = json.loads(_objects("acme")["status/acme/index.json"])
    assert [i["id"] for i in shown["recent_incidents"]] == opened[::-1][:RECENT_INCIDENTS]
    assert all(i["status"] == "resolved" for i in shown["recent_incidents"])


def test_one_teams_failing_publish_leaves_the_others_published_and_retries_from_its_first_record(api, alice, charlie):
    # found by a fresh-eyes review of issue 19: the first team's failure raised, and no later team was published
    from chalicelib.events.status_pages import PUBLIC_EVENTS, handle
    from tests.support import aws_error

    ours = create_monitor(api, name="Shop")
    create_status_page(api, components=[{"monitor_id": ours["id"]}])
    theirs_api = api.acting_as(charlie)
    theirs = create_monitor(theirs_api, name="Blog")
    create_status_page(theirs_api, name="Charlie", slug="charlie", components=[{"monitor_id": theirs["id"]}])
    _clear("acme")
    _clear("charlie")
    records = []
    for monitor in (ours, theirs):
        incident_id = open_incident(monitor["team_id"], monitor["id"], utcnow() - timedelta(minutes=5), error="x")
        records += _stream(incident_id)
    public = [r for r in records if r["dynamodb"]["NewImage"]["type"]["S"] in PUBLIC_EVENTS]
    first_of_ours = public[0]["dynamodb"]["SequenceNumber"]  # what the publisher reads of alice's, first

    def of_acme(params: dict[str, Any]) -> bool:
        return str(params.get("Key", "")).startswith("status/acme/")

    with before_aws_call([client("s3")], "s3.PutObject", aws_error("ServiceUnavailable", "PutObject"), match=of_acme):
        answer = handle(records)

    assert answer == {"batchItemFailures": [{"itemIdentifier": first_of_ours}]}
    assert json.loads(_objects("charlie")["status/charlie/index.json"])["overall_status"] == "major_outage"
    assert "status/acme/index.json" not in _objects("acme")  # retried from its first record: not lost
    assert handle(records) == {"batchItemFailures": []}
    assert json.loads(_objects("acme")["status/acme/index.json"])["overall_status"] == "major_outage"


def test_a_renamed_page_is_published_at_its_new_slug_when_its_old_objects_could_not_be_removed(api, alice, logs):
    # found by a fresh-eyes review of issue 19: the old slug's failed delete now raises, and it stopped the publish
    # at the new slug: the page answered 404 at its new address until the hourly refresh
    created = create_status_page(api)
    s3 = client("s3")

    def say_so(parsed: dict[str, Any], **_: Any) -> None:  # S3 answers 200 and keeps every key it was asked to delete
        parsed["Errors"] = [{"Key": key, "Code": "InternalError"} for key in ACME_KEYS]

    s3.meta.events.register("after-call.s3.DeleteObjects", say_so)
    try:
        r = api.patch(f"/v1/status-pages/{created['id']}", {"slug": "acme-status"})
    finally:
        s3.meta.events.unregister("after-call.s3.DeleteObjects", say_so)

    assert r.status == 200, r.body
    assert "S3 kept status/acme/index.html" in logs.getvalue()  # the failure is told
    assert len(_objects("acme-status")) == 3  # and the page is where it now is
    assert json.loads(_objects("acme-status")["status/acme-status/index.json"])["slug"] == "acme-status"


def test_a_page_reads_its_monitors_strongly_consistent_so_a_read_back_sees_a_status_written_before_it(api, alice):
    # found by a fresh-eyes review of issue 19: the settle read-back rebuilt the page from an eventually consistent
    # BatchGetItem, which may not yet hold the status whose publish raced it
    from tests.support import aws_requests

    monitor = create_monitor(api, name="Shop")
    create_status_page(api, components=[{"monitor_id": monitor["id"]}])

    with aws_requests("dynamodb") as sent:
        assert refresh_all() == (1, 0)

    monitors_table = f"{get_settings().table_prefix}monitors"
    reads = [p for op, p in sent if op == "BatchGetItem" and monitors_table in p["RequestItems"]]
    assert len(reads) >= 2  # the render and its read-back
    assert all(p["RequestItems"][monitors_table].get("ConsistentRead") is True for p in reads)
