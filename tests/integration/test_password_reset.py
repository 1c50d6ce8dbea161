"""Forgot / reset password: no email for strangers, single-use links, every session revoked."""

from __future__ import annotations

import time_machine

from chalicelib.auth.models import OneTimeTokenModel
from tests.support import PASSWORD, register

NEW_PASSWORD = "a whole new passphrase 42"


def test_unknown_email_gets_202_and_no_email(api, outbox):
    r = api.post("/v1/auth/forgot-password", {"email": "nobody@example.com"})
    assert r.status == 202
    assert outbox.all() == []
    assert list(OneTimeTokenModel.scan()) == []


def test_malformed_email_still_gets_202(api, outbox):
    assert api.post("/v1/auth/forgot-password", {"email": "not an email"}).status == 202
    assert outbox.all() == []


def test_reset_link_works_once_and_revokes_every_session(api, outbox):
    first = register(api, "alice@example.com", verified=False)
    second = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).json
    assert api.post("/v1/auth/forgot-password", {"email": "Alice@Example.com"}).status == 202
    mail = outbox.to("alice@example.com")[0]
    assert mail["subject"] == "Reset your Vigil password"
    link = outbox.link("alice@example.com", "https://app.vigil.test/reset-password")
    token = link.split("token=")[1]

    r = api.post("/v1/auth/reset-password", {"token": token, "password": NEW_PASSWORD})
    assert r.status == 204
    again = api.post("/v1/auth/reset-password", {"token": token, "password": "yet another passphrase 7"})
    assert again.status == 400
    assert again.json["code"] == "invalid_token"

    for tokens in (first, second):
        assert api.get("/v1/me", token=tokens["access_token"]).status == 401
        assert api.post("/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}).status == 401
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).status == 401
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": NEW_PASSWORD}).status == 200


def test_reset_link_expires_after_an_hour(api, outbox):
    """Two links mailed in the same second: Alice's followed a second before the hour is up works, Bob's followed a
    second after it does not."""
    with time_machine.travel("2026-11-30 12:00:00Z", tick=False) as traveller:
        links = {}
        for email in ("alice@example.com", "bob@example.com"):
            register(api, email, verified=False)
            assert api.post("/v1/auth/forgot-password", {"email": email}).status == 202
            links[email] = outbox.link(email, "https://app.vigil.test/reset-password").split("token=")[1]
        traveller.shift(3599)
        r = api.post("/v1/auth/reset-password", {"token": links["alice@example.com"], "password": NEW_PASSWORD})
        assert r.status == 204, r.body
        traveller.shift(2)
        r = api.post("/v1/auth/reset-password", {"token": links["bob@example.com"], "password": NEW_PASSWORD})
        assert (r.status, r.json["code"]) == (400, "invalid_token")
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": NEW_PASSWORD}).status == 200
    assert api.post("/v1/auth/login", {"email": "bob@example.com", "password": PASSWORD}).status == 200


def test_reset_refuses_a_weak_password_and_keeps_the_link_usable(api, outbox):
    register(api, "alice@example.com", verified=False)
    api.post("/v1/auth/forgot-password", {"email": "alice@example.com"})
    token = outbox.link("alice@example.com", "https://app.vigil.test/reset-password").split("token=")[1]
    r = api.post("/v1/auth/reset-password", {"token": token, "password": "password1"})
    assert r.status == 422
    assert r.json["errors"][0]["field"] == "password"
    assert api.post("/v1/auth/reset-password", {"token": token, "password": NEW_PASSWORD}).status == 204


def test_a_verification_token_is_not_a_reset_token(api, outbox):
    register(api, "alice@example.com", verified=False)
    token = outbox.link("alice@example.com", "https://app.vigil.test/verify-email").split("token=")[1]
    assert api.post("/v1/auth/reset-password", {"token": token, "password": NEW_PASSWORD}).status == 400


def test_links_ignore_the_request_host_header(api, outbox):
    forged = {"host": "evil.example", "x-forwarded-host": "evil.example"}
    r = api.post("/v1/auth/register", {"email": "bob@example.com", "password": PASSWORD}, headers=forged)
    assert r.status == 201, r.body
    r = api.post("/v1/auth/forgot-password", {"email": "bob@example.com"}, headers=forged)
    assert r.status == 202, r.body
    mails = outbox.to("bob@example.com")
    assert [m["subject"] for m in mails] == ["Reset your Vigil password", "Confirm your email address"]
    assert outbox.link("bob@example.com", "https://app.vigil.test/reset-password")
    assert all("https://app.vigil.test/" in m["text"] for m in mails)
    assert not [m for m in mails if "evil.example" in m["text"] + m["html"]]


def test_resend_verification_sends_a_fresh_link_and_the_old_one_still_works_once(api, outbox):
    tokens = register(api, "alice@example.com", verified=False)
    assert api.post("/v1/auth/resend-verification", token=tokens["access_token"]).status == 202
    assert len(outbox.to("alice@example.com")) == 2
    token = outbox.link("alice@example.com", "https://app.vigil.test/verify-email").split("token=")[1]
    assert api.post("/v1/auth/verify-email", {"token": token}).status == 200
    sent = [m["subject"] for m in outbox.to("alice@example.com")]
    assert sent.count("Welcome to Vigil") == 1  # once verified
    assert api.post("/v1/auth/resend-verification", token=tokens["access_token"]).status == 202
    assert [m["subject"] for m in outbox.to("alice@example.com")] == sent  # verified: nothing more to send


def test_verification_link_expires_after_24_hours(api, outbox):
    """Two links mailed in the same second: Alice's followed a second before the day is up works, Bob's a second
    after it does not."""
    with time_machine.travel("2026-11-30 12:00:00Z", tick=False) as traveller:
        links = {}
        for email in ("alice@example.com", "bob@example.com"):
            register(api, email, verified=False)
            links[email] = outbox.link(email, "https://app.vigil.test/verify-email").split("token=")[1]
        traveller.shift(24 * 3600 - 1)
        r = api.post("/v1/auth/verify-email", {"token": links["alice@example.com"]})
        assert r.status == 200, r.body
        assert r.json["user"]["email_verified"] is True
        traveller.shift(2)
        r = api.post("/v1/auth/verify-email", {"token": links["bob@example.com"]})
        assert (r.status, r.json["code"]) == (400, "invalid_token")
