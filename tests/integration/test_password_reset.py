"""Forgot / reset password: no email for strangers, single-use links, every session revoked."""

from __future__ import annotations

import time_machine

from chalicelib.auth.models import OneTimeTokenModel
from tests.support import PASSWORD, aws_calls, forgot_password, register, run_alerts_queue

NEW_PASSWORD = "a whole new passphrase 42"


def test_unknown_email_gets_202_and_no_email(api, outbox):
    r = forgot_password(api, "nobody@example.com")
    assert r.status == 202
    assert outbox.all() == []
    assert list(OneTimeTokenModel.scan()) == []


def test_malformed_email_still_gets_202(api, outbox):
    assert forgot_password(api, "not an email").status == 202
    assert outbox.all() == []


def test_reset_link_works_once_and_revokes_every_session(api, outbox):
    first = register(api, "alice@example.com", verified=False)
    second = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).json
    assert forgot_password(api, "Alice@Example.com").status == 202
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
            assert forgot_password(api, email).status == 202
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
    forgot_password(api, "alice@example.com")
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
    r = forgot_password(api, "bob@example.com", headers=forged)
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


# --- issue 19: its time must not tell whether the address has an account ---------------------------------------


def resets_to(outbox, address):
    return [m for m in outbox.to(address) if m["subject"] == "Reset your Vigil password"]


def test_forgot_password_does_the_same_work_for_an_account_as_for_none(api, alice, outbox):
    """Both answers make the same AWS calls, in the same order (one message on the alerts queue), and neither looks
    the address up or mails inline: the alert deliveries handler does, off the request."""
    api.post("/v1/auth/forgot-password", {"email": "warm.up@example.com"}, token="")  # the first send finds the queue
    with aws_calls() as known:
        assert api.post("/v1/auth/forgot-password", {"email": "alice@example.com"}, token="").status == 202
    with aws_calls() as unknown:
        assert api.post("/v1/auth/forgot-password", {"email": "nobody@example.com"}, token="").status == 202

    assert known == unknown
    assert [c for c in known if c[0] != "dynamodb"] == [("sqs", "SendMessage", "test-alerts")]
    assert resets_to(outbox, "alice@example.com") == []

    run_alerts_queue()

    assert len(resets_to(outbox, "alice@example.com")) == 1
    assert outbox.to("nobody@example.com") == outbox.to("warm.up@example.com") == []
    stored = [t.email for t in OneTimeTokenModel.scan() if t.purpose == "reset_password"]
    assert stored == ["alice@example.com"]  # nothing stored for the others


def test_a_link_asked_for_more_than_an_hour_before_it_could_be_sent_is_not_sent(api, alice, outbox):
    with time_machine.travel("2026-11-30 12:00:00Z", tick=False) as traveller:
        api.post("/v1/auth/forgot-password", {"email": "alice@example.com"}, token="")
        traveller.shift(3600)
        run_alerts_queue()
    assert resets_to(outbox, "alice@example.com") == []


def test_a_link_asked_for_before_a_password_change_is_spent_when_it_arrives(api, alice, outbox):
    api.post("/v1/auth/forgot-password", {"email": "alice@example.com"}, token="")
    assert api.post("/v1/me/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}).status == 204
    run_alerts_queue()

    token = outbox.link("alice@example.com", "/reset-password").split("token=")[1]
    r = api.post("/v1/auth/reset-password", {"token": token, "password": "the attacker's 9 words"}, token="")
    assert (r.status, r.json["code"]) == (400, "invalid_token")


# --- a sign-in in flight while the password is reset (found by a fresh-eyes review) -----------------------------


def reset_while_the_next_password_is_checked(monkeypatch, token: str) -> None:
    """The owner follows her reset link while a sign-in with the old password is in its bcrypt check (~250 ms at
    cost 12: someone signing in over and over always has one in flight)."""
    from chalicelib import lifecycle
    from chalicelib.auth import passwords
    from chalicelib.clock import utcnow

    real = passwords.verify_password

    def verify(password: str, hashed: str) -> bool:
        ok = real(password, hashed)
        monkeypatch.setattr(passwords, "verify_password", real)
        lifecycle.reset_password(token, NEW_PASSWORD, "198.51.100.20", utcnow())
        return ok

    monkeypatch.setattr(passwords, "verify_password", verify)


def sign_in(api, password: str, address: str):
    body = {"email": "alice@example.com", "password": password}
    return api.from_address(address).post("/v1/auth/login", body, token="")


def test_a_sign_in_in_flight_during_a_reset_leaves_no_session(api, alice, outbox, monkeypatch):
    forgot_password(api, "alice@example.com")
    token = outbox.link("alice@example.com", "/reset-password").split("token=")[1]
    reset_while_the_next_password_is_checked(monkeypatch, token)

    r = sign_in(api, PASSWORD, "203.0.113.7")

    assert (r.status, r.json["code"]) == (401, "invalid_credentials")
    assert sign_in(api, NEW_PASSWORD, "198.51.100.20").status == 200  # the reset landed: the new password works
    from chalicelib.auth.models import SessionModel

    live = [s for s in SessionModel.scan() if s.user_id == alice["user"]["id"] and s.revoked_at is None]
    assert len(live) == 1  # the owner's new one only: the sign-in in flight kept nothing


def test_a_squatters_sign_in_in_flight_during_a_reclaim_gets_nothing(api, outbox, monkeypatch):
    register(api, "alice@example.com", verified=False)  # someone else signed up with Alice's address
    forgot_password(api, "alice@example.com")
    token = outbox.link("alice@example.com", "/reset-password").split("token=")[1]
    reset_while_the_next_password_is_checked(monkeypatch, token)

    r = sign_in(api, PASSWORD, "203.0.113.7")

    assert (r.status, r.json["code"]) == (401, "invalid_credentials")
    owner = sign_in(api, NEW_PASSWORD, "198.51.100.20")
    assert owner.status == 200, owner.body


def test_a_squatter_saving_his_profile_cannot_stop_the_reclaim(api, outbox, monkeypatch):
    """Whoever signed up with Alice's address, still signed in, saves his profile over and over: the reset (its link
    spent first, then ~250 ms of bcrypt) still lands — it is not written under the user's version."""
    from chalicelib.auth import passwords
    from chalicelib.clock import utcnow
    from chalicelib.users import service as users

    squatter = register(api, "alice@example.com", verified=False)
    forgot_password(api, "alice@example.com")
    token = outbox.link("alice@example.com", "/reset-password").split("token=")[1]
    real = passwords.hash_password

    def hash_while_he_saves_his_profile(password: str, rounds: int) -> str:
        hashed = real(password, rounds)
        monkeypatch.setattr(passwords, "hash_password", real)
        users.update_settings(squatter["user"]["id"], utcnow(), name="Alice (IT support)")  # his PATCH /v1/me
        return hashed

    monkeypatch.setattr(passwords, "hash_password", hash_while_he_saves_his_profile)
    r = api.post("/v1/auth/reset-password", {"token": token, "password": NEW_PASSWORD}, token="")

    assert r.status == 204, r.body
    assert sign_in(api, NEW_PASSWORD, "198.51.100.20").status == 200
    assert sign_in(api, PASSWORD, "203.0.113.7").status == 401
