"""TCP monitors through the API: the type union (and HTTP as its default), validation, the SSRF guard at create
and update, and a type that never changes (``test_tcp_local_stack`` checks one end to end)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from chalicelib.monitors.models import MonitorModel
from tests.factories import create_monitor
from tests.unit.test_ssrf import BLOCKED

PUBLIC_HOST = "1.1.1.1"  # a public literal: no DNS needed, and no test here ever checks it


def create_tcp(api: Any, **fields: Any) -> dict[str, Any]:
    r = api.post("/v1/monitors", {"type": "tcp", "name": "Postgres", "host": PUBLIC_HOST, "port": 5432, **fields})
    assert r.status == 201, r.body
    created: dict[str, Any] = r.json
    return created


def test_a_tcp_monitor_has_its_own_fields_and_none_of_http(api, alice):
    m = create_tcp(api, host="DB.Example.COM", tls=True, tags=["db"])

    assert (m["type"], m["host"], m["port"], m["tls"]) == ("tcp", "db.example.com", 5432, True)
    assert {"url", "method", "headers", "body", "expected_status", "follow_redirects", "assertions"}.isdisjoint(m)
    assert (m["interval_seconds"], m["timeout_ms"], m["failure_threshold"], m["confirmation_regions"]) == (
        60,
        10000,
        2,
        2,
    )
    assert m["regions"] == ["us-east-1", "eu-west-1", "ap-southeast-1"]
    assert (m["status"], m["tags"]) == ("pending", ["db"])
    assert api.get(f"/v1/monitors/{m['id']}").json == m
    stored = MonitorModel.get(alice["team"]["id"], m["id"])
    assert (stored.type, stored.host, stored.port, stored.tls, stored.url) == (
        "tcp",
        "db.example.com",
        5432,
        True,
        None,
    )
    assert stored.schedule_key.startswith("60:")


def test_an_http_monitor_is_the_default_type_and_says_so(api, alice):
    m = create_monitor(api, url="https://1.1.1.1/health")

    assert (m["type"], m["url"]) == ("http", "https://1.1.1.1/health")
    assert {"host", "port", "tls"}.isdisjoint(m)
    assert MonitorModel.get(alice["team"]["id"], m["id"]).type is None  # as every monitor written before types
    assert api.post("/v1/monitors", {"type": "http", "name": "x", "url": "https://1.1.1.1/"}).status == 201


def test_a_list_holds_monitors_of_every_type(api, alice):
    tcp = create_tcp(api)
    http = create_monitor(api, url="https://1.1.1.1/health")

    listed = {m["id"]: m for m in api.get("/v1/monitors").json["data"]}
    assert (listed[tcp["id"]]["type"], listed[tcp["id"]]["port"]) == ("tcp", 5432)
    assert (listed[http["id"]]["type"], listed[http["id"]]["url"]) == ("http", "https://1.1.1.1/health")


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"type": "tcp", "name": "x", "host": PUBLIC_HOST}, "port", "Field required"),
        ({"type": "tcp", "name": "x", "port": 22}, "host", "Field required"),
        ({"type": "tcp", "name": "x", "host": PUBLIC_HOST, "port": 0}, "port", "greater than or equal to 1"),
        ({"type": "tcp", "name": "x", "host": PUBLIC_HOST, "port": 65536}, "port", "less than or equal to 65535"),
        ({"type": "tcp", "name": "x", "host": PUBLIC_HOST, "port": "ssh"}, "port", "valid integer"),
        ({"type": "tcp", "name": "x", "host": PUBLIC_HOST, "port": "22"}, "port", "valid integer"),  # never coerced
        ({"type": "tcp", "name": "x", "host": PUBLIC_HOST, "port": True}, "port", "valid integer"),
        ({"type": "tcp", "name": "x", "host": PUBLIC_HOST, "port": 22.0}, "port", "valid integer"),
        ({"type": "tcp", "name": "x", "host": PUBLIC_HOST, "port": 22, "tls": "true"}, "tls", "valid boolean"),
        ({"type": "tcp", "name": "x", "host": PUBLIC_HOST, "port": 22, "tls": 1}, "tls", "valid boolean"),
        ({"type": "tcp", "name": "x", "host": "db example", "port": 22}, "host", "not a valid host name"),
        ({"type": "tcp", "name": "x", "host": "[not-v6]", "port": 22}, "host", "not a valid"),
        ({"type": "tcp", "name": "x", "host": "fe80::1%eth0", "port": 22}, "host", "zone identifiers are not allowed"),
        ({"type": "tcp", "name": "x", "host": ".".join(["üöä" * 12] * 6) + ".test", "port": 22}, "host", "IDNA form"),
        (
            {"type": "tcp", "name": "x", "host": PUBLIC_HOST, "port": 22, "url": "https://x.test/"},
            "url",
            "unknown field",
        ),
        ({"type": "tcp", "name": "x", "host": PUBLIC_HOST, "port": 22, "method": "GET"}, "method", "unknown field"),
        ({"type": "http", "name": "x", "url": "https://1.1.1.1/", "port": 22}, "port", "unknown field"),
        ({"type": "dns", "name": "x"}, "type", "must be one of http, tcp"),
        ({"type": None, "name": "x", "url": "https://1.1.1.1/"}, "type", "must be one of http, tcp"),
        ({"type": 7, "name": "x", "url": "https://1.1.1.1/"}, "type", "must be one of http, tcp"),
    ],
)
def test_a_bad_tcp_request_is_a_422_naming_the_field(api, alice, body, field, message):
    r = api.post("/v1/monitors", body)

    assert r.status == 422, r.body
    assert r.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in r.json["errors"]]
    assert message in next(e["message"] for e in r.json["errors"] if e["field"] == field)
    assert list(MonitorModel.scan()) == []


@pytest.mark.parametrize("url", BLOCKED)
def test_every_blocked_destination_is_refused_as_a_tcp_host_at_create_and_update(api, alice, url):
    host = urlsplit(url).hostname or ""
    host = f"[{host}]" if ":" in host else host  # IPv6 literals as users write them
    r = api.post("/v1/monitors", {"type": "tcp", "name": "Sneaky", "host": host, "port": 6379})
    assert r.status == 422, r.body
    assert (r.json["code"], r.json["errors"][0]["field"]) == ("destination_not_allowed", "host")
    assert "127.0.0.1" not in r.body.decode()
    assert "169.254.169" not in r.body.decode()

    m = create_tcp(api)
    r = api.patch(f"/v1/monitors/{m['id']}", {"host": host})
    assert (r.status, r.json["code"]) == (422, "destination_not_allowed")
    assert api.get(f"/v1/monitors/{m['id']}").json["host"] == PUBLIC_HOST


def test_a_patch_changes_a_tcp_monitors_fields_but_never_its_type(api, alice):
    m = create_tcp(api)
    r = api.patch(f"/v1/monitors/{m['id']}", {"port": 6432, "tls": True, "host": "8.8.8.8"})
    assert r.status == 200, r.body
    assert (r.json["port"], r.json["tls"], r.json["host"]) == (6432, True, "8.8.8.8")

    for body, field in [
        ({"type": "http"}, "type"),
        ({"url": "https://1.1.1.1/"}, "url"),
        ({"headers": {"X-A": "b"}}, "headers"),
        ({"port": None}, "port"),
        ({"port": 70000}, "port"),
    ]:
        r = api.patch(f"/v1/monitors/{m['id']}", body)
        assert r.status == 422, (body, r.body)
        assert field in [e["field"] for e in r.json["errors"]]
    stored = MonitorModel.get(alice["team"]["id"], m["id"])
    assert (stored.type, stored.port, stored.url) == ("tcp", 6432, None)

    http = create_monitor(api, url="https://1.1.1.1/health")
    for body, field in [({"type": "tcp"}, "type"), ({"port": 22}, "port"), ({"host": "8.8.8.8"}, "host")]:
        r = api.patch(f"/v1/monitors/{http['id']}", body)
        assert r.status == 422, (body, r.body)
        assert field in [e["field"] for e in r.json["errors"]]
    assert api.get(f"/v1/monitors/{http['id']}").json["type"] == "http"


def test_the_openapi_spec_has_the_monitor_union_discriminated_by_type(api):
    spec = api.get("/openapi.json").json
    create = spec["paths"]["/v1/monitors"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schemas = spec["components"]["schemas"]

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref", "")
        return schemas[ref.rsplit("/", 1)[-1]] if ref else schema

    union = resolve(create)
    members = {ref["$ref"].rsplit("/", 1)[-1] for ref in union["oneOf"]}
    assert members == {"HttpMonitorIn", "TcpMonitorIn", "HeartbeatMonitorIn"}
    assert set(schemas["TcpMonitorIn"]["required"]) >= {"type", "name", "host", "port"}
    assert schemas["TcpMonitorIn"]["properties"]["port"]["maximum"] == 65535
    got = spec["paths"]["/v1/monitors/{monitor_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    out = resolve(got["schema"])
    assert out["discriminator"]["propertyName"] == "type"
    assert set(out["discriminator"]["mapping"]) == {"http", "tcp", "heartbeat"}


def test_a_patch_refuses_another_types_host_or_url_before_resolving_it(api, alice, monkeypatch):
    """The type decides first: a field the monitor does not have is never looked up (no DNS wait, one error)."""
    from chalicelib.checks import ssrf

    looked_up: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return ["93.184.216.34"]

    monkeypatch.setattr(ssrf, "system_resolver", resolver)  # DNS: the network seam
    tcp = create_tcp(api)
    http = create_monitor(api, url="https://1.1.1.1/health")

    r = api.patch(f"/v1/monitors/{tcp['id']}", {"url": "https://status.example.test/"})
    assert (r.status, r.json["errors"]) == (422, [{"field": "url", "message": "not a field of a tcp monitor"}])
    r = api.patch(f"/v1/monitors/{http['id']}", {"host": "db.example.test"})
    assert (r.status, r.json["errors"]) == (422, [{"field": "host", "message": "not a field of an http monitor"}])
    assert looked_up == []

    r = api.patch(f"/v1/monitors/{tcp['id']}", {"host": "db.example.test"})  # its own field: looked up, allowed
    assert (r.status, r.json["host"], looked_up) == (200, "db.example.test", ["db.example.test"])
