from __future__ import annotations


def test_health_touches_dynamodb(api):
    r = api.get("/health")
    assert r.status == 200, r.body
    assert r.json["checks"] == {"dynamodb": "ok"}


def test_unknown_route_is_a_404_problem(api):
    r = api.get("/nope/at/all")
    assert r.status == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json["code"] == "not_found"
    assert r.json["instance"] == "/nope/at/all"


def test_wrong_method_is_405(api):
    r = api.request("DELETE", "/health")
    assert r.status == 405
    assert "GET" in r.headers["allow"]
