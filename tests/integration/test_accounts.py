"""Accounts end to end: register → verify → login → refresh → logout, with the reuse and revocation cases."""

from __future__ import annotations

import hashlib
import json

import time_machine

from chalicelib.auth import passwords
from chalicelib.auth.models import OneTimeTokenModel, SessionModel
from chalicelib.users.models import UserModel
from tests.support import PASSWORD, run_alerts_queue


def register(api, email="alice@example.com", password=PASSWORD, **extra):
    return api.post("/v1/auth/register", {"email": email, "password": password, **extra})


def test_it_registers_verifies_logs_in_refreshes_and_logs_out(api, outbox):
    r = register(api, "Alice@Example.com", name="Alice", timezone="Europe/Paris")
    assert r.status == 201, r.json
    body = r.json
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] <= 900
    assert body["user"]["email"] == "alice@example.com"
    assert body["user"]["email_verified"] is False
    assert body["user"]["timezone"] == "Europe/Paris"
    assert body["team"]["personal"] is True
    assert body["user"]["current_team_id"] == body["team"]["id"]
    assert "password" not in r.text
    assert "hash" not in r.text

    # the verification email is in the outbox, its link on the configured APP_URL
    mails = outbox.to("alice@example.com")
    assert len(mails) == 1
    assert mails[0]["subject"] == "Confirm your email address"
    link = outbox.link("alice@example.com", "https://app.vigil.test/verify-email")
    assert "href=" in mails[0]["html"]
    token = link.split("token=")[1]
    # only a hash of the token is stored: the one link's item, keyed by the token's hash, holds no token
    stored = list(OneTimeTokenModel.scan())
    assert [t.token_hash for t in stored] == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in str(stored[0].attribute_values)

    r = api.post("/v1/auth/verify-email", {"token": token})
    assert r.status == 200, r.json
    assert r.json["user"]["email_verified"] is True
    r = api.post("/v1/auth/verify-email", {"token": token})
    assert r.status == 400
    assert r.json["code"] == "invalid_token"

    r = api.post("/v1/auth/login", {"email": "ALICE@example.com", "password": PASSWORD})
    assert r.status == 200, r.json
    access, refresh_token = r.json["access_token"], r.json["refresh_token"]
    me = api.get("/v1/me", token=access)
    assert me.status == 200
    assert me.json["email_verified"] is True

    r = api.post("/v1/auth/refresh", {"refresh_token": refresh_token})
    assert r.status == 200
    new_access, new_refresh = r.json["access_token"], r.json["refresh_token"]
    assert new_refresh != refresh_token

    r = api.post("/v1/auth/logout", token=new_access)
    assert r.status == 204
    for token_ in (access, new_access):
        r = api.get("/v1/me", token=token_)
        assert r.status == 401
        assert r.headers["content-type"] == "application/problem+json"
    assert api.post("/v1/auth/refresh", {"refresh_token": new_refresh}).status == 401


def test_reusing_a_spent_refresh_token_revokes_the_session(api):
    first = register(api).json
    second = api.post("/v1/auth/refresh", {"refresh_token": first["refresh_token"]}).json
    assert api.get("/v1/me", token=second["access_token"]).status == 200

    replay = api.post("/v1/auth/refresh", {"refresh_token": first["refresh_token"]})
    assert replay.status == 401
    assert replay.json["code"] == "refresh_token_reused"
    # the whole session is gone: the newest pair fails too
    assert api.get("/v1/me", token=second["access_token"]).status == 401
    assert api.post("/v1/auth/refresh", {"refresh_token": second["refresh_token"]}).status == 401
    session = SessionModel.get(next(iter(SessionModel.scan())).session_id)
    assert session.revoked_reason == "refresh_token_reuse"


def test_a_refresh_token_is_not_an_access_token_and_vice_versa(api):
    tokens = register(api).json
    r = api.get("/v1/me", token=tokens["refresh_token"])
    assert r.status == 401
    assert api.post("/v1/auth/refresh", {"refresh_token": tokens["access_token"]}).status == 401


def test_duplicate_email_is_409(api):
    assert register(api).status == 201
    r = register(api, "ALICE@example.com")
    assert r.status == 409
    assert r.json["code"] == "email_taken"
    assert len(list(UserModel.scan())) == 1


def test_weak_and_short_passwords_are_refused(api):
    for bad in ("short1", "password123", "qwertyuiop"):
        r = register(api, password=bad)
        assert r.status == 422, bad
        assert r.json["errors"][0]["field"] == "password"
    assert list(UserModel.scan()) == []


def test_bad_email_and_unknown_timezone_are_422(api):
    r = register(api, "not-an-email")
    assert r.status == 422
    assert r.json["errors"][0]["field"] == "email"
    r = register(api, timezone="Mars/Olympus_Mons")
    assert r.status == 422
    assert r.json["errors"][0]["field"] == "timezone"


def test_passwords_past_72_bytes_are_not_truncated(api, settings):
    long_password = "é" * 40 + "tail-one"  # 88 bytes of UTF-8
    assert register(api, password=long_password).status == 201
    other = "é" * 40 + "tail-two"  # same first 72 bytes
    r = api.post("/v1/auth/login", {"email": "alice@example.com", "password": other})
    assert r.status == 401
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": long_password}).status == 200


def test_production_cost_is_at_least_12():
    stored = passwords.hash_password(PASSWORD, 12)
    assert passwords.cost_of(stored) >= 12
    assert passwords.verify_password(PASSWORD, stored)


def test_unknown_email_and_wrong_password_answer_alike(api):
    register(api)
    wrong = api.post("/v1/auth/login", {"email": "alice@example.com", "password": "wrong password 123"})
    unknown = api.post("/v1/auth/login", {"email": "nobody@example.com", "password": "wrong password 123"})
    assert wrong.status == unknown.status == 401
    assert wrong.json["code"] == unknown.json["code"] == "invalid_credentials"
    assert wrong.json["detail"] == unknown.json["detail"]


def test_failures_per_ip_are_limited_across_accounts(api, settings):
    for i in range(settings.login_failures_per_ip):
        r = api.post("/v1/auth/login", {"email": f"user{i}@example.com", "password": "nope nope 1"})
        assert (r.status, r.json["code"]) == (401, "invalid_credentials")  # each account failed once only
    r = api.post("/v1/auth/login", {"email": "fresh@example.com", "password": "nope nope 1"})
    assert (r.status, r.json["code"]) == (429, "rate_limited")
    assert int(r.headers["retry-after"]) > 0


def test_access_tokens_expire_after_15_minutes(api):
    with time_machine.travel("2026-11-30 12:00:00Z", tick=False) as traveller:
        tokens = register(api).json
        assert api.get("/v1/me", token=tokens["access_token"]).status == 200
        traveller.shift(899)
        assert api.get("/v1/me", token=tokens["access_token"]).status == 200  # a second before the end
        traveller.shift(2)
        r = api.get("/v1/me", token=tokens["access_token"])
        assert r.status == 401
        assert r.json["code"] == "token_expired"


def test_no_secret_reaches_the_logs(api, outbox, logs):
    tokens = register(api).json
    assert api.get("/v1/me", token=tokens["access_token"]).status == 200
    api.post("/v1/auth/login", {"email": "alice@example.com", "password": "wrong password 123"})
    api.post("/v1/auth/forgot-password", {"email": "alice@example.com"})
    asked = len(logs.getvalue())
    run_alerts_queue()  # the link is mailed off the request: its handler's lines carry no request id
    handled = [json.loads(line) for line in logs.getvalue()[asked:].splitlines()]
    reset = outbox.link("alice@example.com", "https://app.vigil.test/reset-password").split("token=")[1]
    api.post("/v1/auth/reset-password", {"token": reset, "password": "a whole new passphrase 42"})
    printed = logs.getvalue()
    lines = [json.loads(line) for line in printed.splitlines()]
    requests = [line for line in lines if line["message"] == "request"]
    assert len(requests) == 5
    assert [line["message"] for line in handled] == ["email sent"]
    assert all(line["request_id"] for line in lines if line not in handled)  # the request id is on every line
    me = next(line for line in requests if line["route"] == "/v1/me")
    assert me["user_id"] == tokens["user"]["id"]
    assert me["team_id"] == tokens["team"]["id"]
    for secret in (
        PASSWORD,
        "wrong password 123",
        "a whole new passphrase 42",
        tokens["access_token"],
        tokens["refresh_token"],
        reset,
    ):
        assert secret not in printed


def test_a_success_counts_no_failure_against_the_address_it_came_from(api, settings):
    register(api)
    for _ in range(settings.login_failures_per_ip + 3):
        r = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD})
        assert r.status == 200, r.body
