"""POST /v1/me/password: the current password proves it is you; every other session ends."""

from __future__ import annotations

from tests.support import PASSWORD

NEW = "a brand new passphrase 77"


def test_it_changes_the_password_and_signs_out_every_other_session(api, alice):
    other = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).json

    r = api.post("/v1/me/password", {"current_password": PASSWORD, "new_password": NEW})

    assert (r.status, r.body) == (204, b"")
    assert api.get("/v1/me").status == 200  # this session goes on
    assert api.get("/v1/me", token=other["access_token"]).status == 401
    assert api.post("/v1/auth/refresh", {"refresh_token": other["refresh_token"]}).status == 401
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).status == 401
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": NEW}).status == 200


def test_a_wrong_current_password_changes_nothing(api, alice):
    r = api.post("/v1/me/password", {"current_password": "not it at all 123", "new_password": NEW})

    assert r.status == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in r.json["errors"]] == ["current_password"]
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).status == 200


def test_the_new_password_follows_the_sign_up_rules(api, alice):
    r = api.post("/v1/me/password", {"current_password": PASSWORD, "new_password": "password"})

    assert r.status == 422
    assert [e["field"] for e in r.json["errors"]] == ["new_password"]


def test_it_needs_a_signed_in_caller(api):
    assert api.post("/v1/me/password", {"current_password": PASSWORD, "new_password": NEW}).status == 401


def test_guessing_the_current_password_is_limited_like_signing_in(api, alice, settings):
    """A stolen access token must not become a way to guess the password without limit."""
    for _ in range(settings.login_failures_per_account):
        assert api.post("/v1/me/password", {"current_password": "a wrong guess 123", "new_password": NEW}).status == 422

    r = api.post("/v1/me/password", {"current_password": PASSWORD, "new_password": NEW})  # even the right one, now

    assert r.status == 429
    assert int(r.headers["retry-after"]) > 0
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": NEW}).status == 429
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).status == 429
