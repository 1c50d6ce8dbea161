"""Rate limits (issue 16): per API key by its team's plan, per team's keys together, per signed-in user, per
address on routes that need no sign-in; every answer to a key or a user says what is left (RFC 9651 fields)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import http_sf
import pytest
import time_machine

from chalicelib.api import quotas
from chalicelib.api.framework import all_routes
from chalicelib.api.routes import routers
from chalicelib.clock import utcnow
from chalicelib.ratelimit.models import CounterModel
from tests.support import all_at_once, make_test_settings, on_plan, register


@pytest.fixture
def minute():
    """The start of the next minute (access tokens stay valid: they last 15 minutes)."""
    return utcnow().replace(second=0, microsecond=0) + timedelta(minutes=1)


def make_key(api, token=None, scopes=("monitors:read",)):
    r = api.post("/v1/api-keys", {"name": "CI", "scopes": list(scopes)}, token=token)
    assert r.status == 201, r.body
    return r.json["key"]


def limits_of(response) -> dict[str, dict[str, int]]:
    """``RateLimit-Policy`` and ``RateLimit`` parsed as RFC 9651 lists, by policy name."""
    policies = http_sf.parse(response.headers["ratelimit-policy"].encode(), tltype="list")
    state = http_sf.parse(response.headers["ratelimit"].encode(), tltype="list")
    out = {name: dict(params) for name, params in policies}
    for name, params in state:
        out[name].update(params)
    return out


def test_a_keys_answers_count_down_to_a_429_and_the_window_resets(api, alice, minute):
    key = make_key(api)
    with time_machine.travel(minute + timedelta(seconds=20), tick=False):
        remaining = []
        for _ in range(60):
            r = api.get("/v1/monitors", token=key)
            assert r.status == 200
            limit = limits_of(r)
            assert (limit["default"]["q"], limit["default"]["w"]) == (60, 60)
            assert (limit["team"]["q"], limit["team"]["w"]) == (180, 60)
            assert limit["default"]["t"] == 40
            remaining.append(limit["default"]["r"])
        assert remaining == list(range(59, -1, -1))
        r = api.get("/v1/monitors", token=key)
        assert (r.status, r.json["code"]) == (429, "rate_limited")
        assert r.headers["content-type"] == "application/problem+json"
        assert limits_of(r)["default"]["r"] == 0
        assert int(r.headers["retry-after"]) >= 40
    with time_machine.travel(minute + timedelta(seconds=59, microseconds=900_000), tick=False):
        r = api.get("/v1/monitors", token=key)
        assert r.status == 429
        assert int(r.headers["retry-after"]) >= 1
    with time_machine.travel(minute + timedelta(seconds=60), tick=False):
        r = api.get("/v1/monitors", token=key)
        assert r.status == 200
        assert limits_of(r)["default"]["r"] == 59


def test_a_keys_limit_follows_its_teams_plan(api, alice):
    key = make_key(api)
    on_plan(api, alice["team"]["id"], "pro")
    r = api.get("/v1/monitors", token=key)
    assert limits_of(r)["default"]["q"] == 600
    assert limits_of(r)["team"]["q"] == 1800


def test_errors_to_a_key_carry_the_fields_too(api, alice):
    key = make_key(api)
    r = api.get("/v1/monitors/mon_does_not_exist", token=key)
    assert r.status == 404
    assert limits_of(r)["default"]["r"] == 59


def test_one_exhausted_key_leaves_the_teams_other_keys_and_other_teams_alone(api, alice, minute):
    charlie = register(api, "charlie@example.com")
    first, second = make_key(api), make_key(api)
    theirs = make_key(api, token=charlie["access_token"])
    with time_machine.travel(minute, tick=False):
        for _ in range(60):
            assert api.get("/v1/monitors", token=first).status == 200
        assert api.get("/v1/monitors", token=first).status == 429
        r = api.get("/v1/monitors", token=second)
        assert r.status == 200
        assert limits_of(r)["default"]["r"] == 59
        assert limits_of(r)["team"]["r"] == 180 - 61
        r = api.get("/v1/monitors", token=theirs)
        assert r.status == 200
        assert limits_of(r)["default"]["r"] == 59
        assert limits_of(r)["team"]["r"] == 179
        assert api.get("/v1/monitors").status == 200  # Alice herself, signed in


def use_up(api, keys: list[str]) -> None:
    """Each key makes its free plan's 60 requests of the minute."""
    for key in keys:
        for _ in range(60):
            assert api.get("/v1/monitors", token=key).status == 200


def test_a_teams_keys_together_are_capped_at_three_times_a_keys_limit(api, alice, minute):
    keys = [make_key(api) for _ in range(4)]
    with time_machine.travel(minute, tick=False):
        use_up(api, keys[:3])
        r = api.get("/v1/monitors", token=keys[3])
        assert (r.status, r.json["code"]) == (429, "rate_limited")
        assert "team" in r.json["detail"]
        assert limits_of(r)["team"]["r"] == 0
        assert limits_of(r)["default"]["r"] == 60  # the key's own count given back
        assert int(r.headers["retry-after"]) >= 60


def test_two_hundred_parallel_requests_against_a_limit_of_a_hundred_admit_exactly_a_hundred(api, alice, minute):
    """A user's limit set to 100: the conditional ADD admits exactly 100 of 200 concurrent requests."""
    from chalicelib.settings import get_settings, use_settings

    before = get_settings()
    use_settings(make_test_settings(USER_REQUESTS_PER_MINUTE="100"))
    try:
        assert get_settings().user_requests_per_minute == 100
        counted = all_at_once(CounterModel, "dynamodb.UpdateItem", 16)  # sixteen at once, then on
        with time_machine.travel(minute, tick=False), counted as met, ThreadPoolExecutor(max_workers=16) as pool:
            statuses = sorted(pool.map(lambda _: api.get("/v1/monitors").status, range(200)))
    finally:
        use_settings(before)
    assert met == [True] * 16
    assert statuses == [200] * 100 + [429] * 100
    (counter,) = [c for c in CounterModel.scan() if c.key.startswith("api-user#")]
    assert counter.hits == 100


def test_parallel_requests_of_one_key_admit_exactly_its_plans_limit(api, alice, minute):
    key = make_key(api)
    counted = all_at_once(CounterModel, "dynamodb.UpdateItem", 16)  # sixteen at once, then on
    with time_machine.travel(minute, tick=False), counted as met, ThreadPoolExecutor(max_workers=16) as pool:
        statuses = sorted(pool.map(lambda _: api.get("/v1/monitors", token=key).status, range(120)))
    assert met == [True] * 16
    assert statuses == [200] * 60 + [429] * 60


def test_a_signed_in_users_answers_carry_their_own_limit(api, alice):
    r = api.get("/v1/monitors")
    limit = limits_of(r)
    assert list(limit) == ["default"]
    assert limit["default"]["q"] == 1200
    assert limit["default"]["r"] == 1199
    assert limits_of(api.get("/v1/me"))["default"]["r"] == 1198


ADDRESS_LIMITED = [r for r in all_routes(routers(make_test_settings())) if r.ip_limit is not None]


def test_the_routes_that_need_no_sign_in_are_limited_per_address():
    limited = {(r.method, r.path) for r in ADDRESS_LIMITED}
    for expected in [
        ("POST", "/v1/auth/register"),
        ("POST", "/v1/auth/login"),
        ("POST", "/v1/auth/forgot-password"),
        ("POST", "/v1/auth/reset-password"),
        ("POST", "/v1/auth/verify-email"),
        ("POST", "/v1/auth/resend-verification"),
        ("POST", "/v1/invitations/accept"),
        ("POST", "/v1/webhooks/stripe"),
        ("GET", "/v1/public/status-pages/{slug}"),
        ("GET", "/v1/public/badges/{badge}"),
        ("GET", "/status/{slug}"),
    ]:
        assert expected in limited, expected


@pytest.mark.parametrize("route", ADDRESS_LIMITED, ids=lambda r: f"{r.method} {r.path}")
def test_an_address_over_a_routes_limit_gets_a_429_and_another_address_does_not_count(api, alice, route, minute):
    path = route.path.replace("{slug}", "acme").replace("{badge}", "mon_x.svg")
    start = int(minute.timestamp())
    later = minute + timedelta(minutes=2)
    name = f"ip#{route.method} {route.path}"
    with time_machine.travel(minute, tick=False):
        CounterModel(f"{name}#10.0.0.9#{start}", hits=route.ip_limit, window_ends=start + 60, expires_at=later).save()
        assert api.request(route.method, path, {}).status != 429  # another address's count is its own
        CounterModel(f"{name}#127.0.0.1#{start}", hits=route.ip_limit, window_ends=start + 60, expires_at=later).save()
        r = api.request(route.method, path, {})
    assert (r.status, r.json["code"]) == (429, "rate_limited")
    assert int(r.headers["retry-after"]) == 60
    assert CounterModel.get(f"{name}#127.0.0.1#{start}").hits == route.ip_limit  # a refusal counts nothing


def test_registering_from_one_address_is_limited_to_twenty_a_minute(api, minute):
    with time_machine.travel(minute, tick=False):
        for k in range(20):
            r = api.post("/v1/auth/register", {"email": f"u{k}@example.com", "password": "correct horse battery 9"})
            assert r.status == 201, r.body
        r = api.post("/v1/auth/register", {"email": "u21@example.com", "password": "correct horse battery 9"})
        assert (r.status, r.json["code"]) == (429, "rate_limited")
        assert 0 < int(r.headers["retry-after"]) <= 60
    from chalicelib.users.models import UserEmailModel

    assert sum(1 for _ in UserEmailModel.scan()) == 20
    with time_machine.travel(minute + timedelta(minutes=1), tick=False):
        r = api.post("/v1/auth/register", {"email": "u21@example.com", "password": "correct horse battery 9"})
        assert r.status == 201


def test_the_quota_headers_are_well_formed_structured_fields():
    counts = [quotas.Count("default", 60, 12, 30), quotas.Count("team", 180, 100, 30)]
    fields = quotas.fields(counts)
    assert http_sf.parse(fields["RateLimit-Policy"].encode(), tltype="list") == [
        ("default", {"q": 60, "w": 60}),
        ("team", {"q": 180, "w": 60}),
    ]
    assert http_sf.parse(fields["RateLimit"].encode(), tltype="list") == [
        ("default", {"r": 12, "t": 30}),
        ("team", {"r": 100, "t": 30}),
    ]


# --- from the review of 50821d2 ---------------------------------------------------------------------------------


def test_refused_requests_of_a_key_are_counted_and_carry_the_fields(api, alice, minute):
    """A 403 costs reads as a 200 does: a key without the scope, or on a route keys cannot reach, is counted."""
    key = make_key(api, scopes=("incidents:read",))
    with time_machine.travel(minute, tick=False):
        answers = [api.get("/v1/monitors" if k % 2 else "/v1/me", token=key) for k in range(61)]
    assert [r.status for r in answers] == [403] * 60 + [429]
    assert [limits_of(r)["default"]["r"] for r in answers[:3]] == [59, 58, 57]
    assert limits_of(answers[-1])["default"]["r"] == 0


def test_refused_requests_of_a_user_are_counted(api, alice, teammate, minute):
    from chalicelib.settings import get_settings, use_settings

    viewer = teammate("vera@example.com", role="viewer")
    before = get_settings()
    use_settings(make_test_settings(USER_REQUESTS_PER_MINUTE="20"))
    try:
        with time_machine.travel(minute, tick=False):
            body = {"name": "x", "url": "https://1.1.1.1/"}
            statuses = [api.post("/v1/monitors", body, token=viewer["access_token"]).status for _ in range(21)]
    finally:
        use_settings(before)
    assert statuses == [403] * 20 + [429]


def test_a_refusal_by_the_teams_cap_gives_the_keys_own_count_back(api, alice, minute):
    keys = [make_key(api) for _ in range(4)]
    with time_machine.travel(minute, tick=False):
        use_up(api, keys[:3])
        for _ in range(10):
            assert api.get("/v1/monitors", token=keys[3]).status == 429
        r = api.get("/v1/monitors", token=keys[3])
    assert limits_of(r)["default"]["r"] == 60
    assert limits_of(r)["team"]["r"] == 0
    assert sorted(c.hits for c in CounterModel.scan() if c.key.startswith("api-key#")) == [0, 60, 60, 60]
