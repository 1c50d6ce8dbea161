"""POST /v1/me/password: the current password proves it is you; every other session ends."""

from __future__ import annotations

from tests.support import PASSWORD, all_at_once, forgot_password

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

    assert (r.status, r.json["code"]) == (403, "invalid_credentials")  # a 401 would tell a client its session ended
    assert r.headers["content-type"] == "application/problem+json"
    assert "current password" in r.json["detail"]
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).status == 200


def test_the_new_password_follows_the_sign_up_rules(api, alice):
    r = api.post("/v1/me/password", {"current_password": PASSWORD, "new_password": "password"})

    assert r.status == 422
    assert [e["field"] for e in r.json["errors"]] == ["new_password"]


def test_it_needs_a_signed_in_caller(api):
    assert api.post("/v1/me/password", {"current_password": PASSWORD, "new_password": NEW}).status == 401


def test_guessing_the_current_password_is_limited(api, alice, settings):
    """A stolen access token must not become a way to guess the password without limit; its guesses are its own
    count, though: they do not stop the owner signing in."""
    for _ in range(settings.login_failures_before_backoff):
        assert api.post("/v1/me/password", {"current_password": "a wrong guess 123", "new_password": NEW}).status == 403

    r = api.post("/v1/me/password", {"current_password": PASSWORD, "new_password": NEW})  # even the right one, now

    assert r.status == 429
    assert int(r.headers["retry-after"]) > 0
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": NEW}).status == 401
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).status == 200


def test_parallel_guesses_are_counted_before_any_is_checked(api, alice, settings):
    """Guesses sent at once must not all read the count before any of them adds to it: only as many as the limit
    are checked (403); the rest are refused unchecked (429)."""
    from concurrent.futures import ThreadPoolExecutor

    from chalicelib import errors
    from chalicelib.auth import service as auth
    from chalicelib.clock import utcnow
    from chalicelib.ratelimit.models import CounterModel

    principal = auth.identify({"authorization": f"Bearer {api.token}"}, "127.0.0.1", utcnow())

    def guess(n: int) -> str:
        try:
            auth.change_password(principal, f"wrong guess number {n}", NEW, utcnow(), client_ip="127.0.0.1")
        except errors.TooManyRequests:
            return "429"
        except errors.WrongPassword:
            return "403"
        return "204"

    # Ten guesses are made at once: none writes its count before all ten have read whatever they read first.
    counted = all_at_once(CounterModel, "dynamodb.UpdateItem", 10)
    with counted as met, ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(guess, range(20)))

    assert met == [True] * 10
    assert outcomes.count("403") == settings.login_failures_before_backoff
    assert outcomes.count("429") == 20 - settings.login_failures_before_backoff


def test_the_right_password_clears_the_count(api, alice, settings):
    for _ in range(settings.login_failures_before_backoff - 1):
        assert api.post("/v1/me/password", {"current_password": "a wrong guess 123", "new_password": NEW}).status == 403

    assert api.post("/v1/me/password", {"current_password": PASSWORD, "new_password": NEW}).status == 204

    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": "mistyped it 42"}).status == 401
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": NEW}).status == 200


def test_changing_the_password_spends_every_outstanding_reset_link(api, alice, outbox):
    """A reset link mailed before the change (perhaps to someone reading the mailbox) must not undo it."""
    assert forgot_password(api, "alice@example.com").status == 202
    link = outbox.link("alice@example.com", "/reset-password")

    assert api.post("/v1/me/password", {"current_password": PASSWORD, "new_password": NEW}).status == 204

    r = api.post("/v1/auth/reset-password", {"token": link.split("token=")[1], "password": "the attacker's 9 words"})
    assert (r.status, r.json["code"]) == (400, "invalid_token")
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": NEW}).status == 200


def test_a_reset_spends_the_other_reset_links_too(api, alice, outbox):
    for _ in range(2):
        assert forgot_password(api, "alice@example.com").status == 202
    newer, older = (m["text"].split("token=")[1].split()[0] for m in outbox.to("alice@example.com")[:2])

    assert api.post("/v1/auth/reset-password", {"token": newer, "password": NEW}, token="").status == 204

    r = api.post("/v1/auth/reset-password", {"token": older, "password": "yet another 8 words"}, token="")
    assert (r.status, r.json["code"]) == (400, "invalid_token")
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": NEW}).status == 200


def _meanwhile(change):
    """``change`` lands just before the password change writes the user (it has read and checked it already)."""
    from chalicelib.users.models import UserModel
    from tests import iam
    from tests.support import before_aws_call, dynamodb_clients, on_table

    changing: list[bool] = []

    def slipped_in() -> None:
        changing.append(True)
        with iam.outside():
            change()

    on_users = on_table(UserModel)
    return before_aws_call(
        dynamodb_clients(UserModel),
        "dynamodb.UpdateItem",
        slipped_in,
        match=lambda params: not changing and on_users(params),
    )


def test_a_settings_change_landing_meanwhile_is_no_conflict(api, alice):
    # found by a fresh-eyes review of issue 19: the change was conditioned on the user item's version
    def settings_changed() -> None:
        r = api.patch("/v1/me", {"timezone": "Europe/Paris"})
        assert r.status == 200, r.body

    with _meanwhile(settings_changed) as fired:
        r = api.post("/v1/me/password", {"current_password": PASSWORD, "new_password": NEW})

    assert fired == [True]
    assert (r.status, r.body) == (204, b"")
    assert api.get("/v1/me").json["timezone"] == "Europe/Paris"  # both landed
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": NEW}).status == 200


def test_a_password_changed_meanwhile_is_not_overwritten(api, alice):
    from chalicelib.auth import passwords
    from chalicelib.users.models import UserModel

    elsewhere = "changed elsewhere meanwhile 5"

    def changed_elsewhere() -> None:  # another session's change, or a reset, wrote its password first
        user = UserModel.get(alice["user"]["id"], consistent_read=True)
        user.update(actions=[UserModel.password_hash.set(passwords.hash_password(elsewhere, 4))])

    with _meanwhile(changed_elsewhere):
        r = api.post("/v1/me/password", {"current_password": PASSWORD, "new_password": NEW})

    assert r.status == 409, r.body
    assert r.json["code"] == "conflict"
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": NEW}).status == 401
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": elsewhere}).status == 200
