"""Issue 17: POST /v1/me/email moves an account to a new address once that address is verified — never onto an
address another account holds, and never telling the caller which addresses have accounts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from chalicelib.users.models import UserEmailModel, UserModel
from tests.support import (
    PASSWORD,
    Outbox,
    all_at_once,
    aws_error,
    before_aws_call,
    dynamodb_clients,
    forgot_password,
    register,
)

NEW = "alice.new@example.org"


def token_in(outbox: Outbox, address: str) -> str:
    return outbox.link(address, "/verify-email").split("token=", 1)[1]


def follow(api, token: str):
    return api.post("/v1/auth/verify-email", {"token": token}, token="")


def test_the_change_waits_for_the_new_address_then_switches_tells_the_old_one_and_ends_other_sessions(
    api, alice, outbox
):
    other = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).json

    r = api.post("/v1/me/email", {"new_email": " Alice.New@Example.org ", "password": PASSWORD})

    assert (r.status, r.body) == (202, b"")
    assert api.get("/v1/me").json["email"] == "alice@example.com"  # nothing changes until the link is followed
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).status == 200
    assert api.post("/v1/auth/login", {"email": NEW, "password": PASSWORD}).status == 401
    assert api.get("/v1/me", token=other["access_token"]).status == 200

    done = follow(api, token_in(outbox, NEW))

    assert done.status == 200
    assert (done.json["user"]["email"], done.json["user"]["email_verified"]) == (NEW, True)
    assert api.get("/v1/me").json["email"] == NEW  # the session that asked goes on
    assert api.get("/v1/me", token=other["access_token"]).status == 401
    assert api.post("/v1/auth/refresh", {"refresh_token": other["refresh_token"]}).status == 401
    assert api.post("/v1/auth/login", {"email": NEW, "password": PASSWORD}).status == 200
    assert api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).status == 401
    told = outbox.to("alice@example.com")[0]
    assert told["subject"] == "Your Vigil email address was changed"
    assert "a***@example.org" in told["text"]
    assert NEW not in told["text"]
    stored = UserModel.get(alice["user"]["id"])
    assert (stored.email, stored.pending_email) == (NEW, None)
    assert UserEmailModel.get(NEW).user_id == alice["user"]["id"]
    assert not any(True for _ in UserEmailModel.query("alice@example.com"))  # the old address is free
    assert api.post("/v1/auth/register", {"email": "alice@example.com", "password": PASSWORD}).status == 201
    assert follow(api, token_in(outbox, NEW)).status == 400  # the link worked once


def test_a_wrong_password_is_a_403_and_mails_no_one(api, alice, outbox):
    before = len(outbox.all())

    r = api.post("/v1/me/email", {"new_email": NEW, "password": "not my password 42"})

    assert (r.status, r.json["code"]) == (403, "invalid_credentials")
    assert api.get("/v1/me").status == 200  # no sign of a dead session
    assert len(outbox.all()) == before
    assert UserModel.get(alice["user"]["id"]).pending_email is None


def test_an_address_another_account_holds_gets_the_same_answer_and_never_changes_hands(api, alice, charlie, outbox):
    free = api.post("/v1/me/email", {"new_email": NEW, "password": PASSWORD})
    taken = api.post("/v1/me/email", {"new_email": "charlie@example.com", "password": PASSWORD})

    assert (taken.status, taken.body, dict(taken.headers).get("content-type")) == (
        free.status,
        free.body,
        dict(free.headers).get("content-type"),
    )
    note = outbox.to("charlie@example.com")[0]
    assert note["subject"] == "Someone tried to use your address on Vigil"
    assert "token=" not in note["text"]
    assert "token=" not in note["html"]
    assert UserEmailModel.get("charlie@example.com").user_id == charlie["user"]["id"]
    assert UserModel.get(alice["user"]["id"]).email == "alice@example.com"
    assert follow(api, token_in(outbox, NEW)).status == 400  # the latest request replaced the earlier link
    assert (
        api.post("/v1/auth/login", {"email": "charlie@example.com", "password": PASSWORD}).json["user"]["id"]
        == (charlie["user"]["id"])
    )


def test_only_the_latest_requests_link_works(api, alice, outbox):
    api.post("/v1/me/email", {"new_email": "first@example.org", "password": PASSWORD})
    first = token_in(outbox, "first@example.org")
    api.post("/v1/me/email", {"new_email": "second@example.org", "password": PASSWORD})

    assert (follow(api, first).status, api.get("/v1/me").json["email"]) == (400, "alice@example.com")
    assert follow(api, token_in(outbox, "second@example.org")).status == 200
    assert api.get("/v1/me").json["email"] == "second@example.org"


def test_an_address_taken_before_the_link_is_followed_is_a_409_and_changes_nothing(api, alice, outbox):
    api.post("/v1/me/email", {"new_email": NEW, "password": PASSWORD})
    token = token_in(outbox, NEW)
    dora = register(api, NEW)

    r = follow(api, token)

    assert (r.status, r.json["code"]) == (409, "email_taken")
    assert UserEmailModel.get(NEW).user_id == dora["user"]["id"]
    assert UserEmailModel.get("alice@example.com").user_id == alice["user"]["id"]
    assert api.get("/v1/me").json["email"] == "alice@example.com"


def test_two_accounts_racing_to_one_free_address_one_wins(api, alice, charlie, outbox):
    api.post("/v1/me/email", {"new_email": NEW, "password": PASSWORD})
    api.post("/v1/me/email", {"new_email": NEW, "password": PASSWORD}, token=charlie["access_token"])
    tokens = [m["text"].split("token=", 1)[1].split()[0] for m in outbox.to(NEW)[:2]]

    both_read = all_at_once(UserEmailModel, "dynamodb.TransactWriteItems", 2)
    with both_read as met, ThreadPoolExecutor(max_workers=2) as pool:
        statuses = sorted(r.status for r in pool.map(lambda t: follow(api, t), tokens))

    assert met == [True, True]
    assert statuses == [200, 409]
    owner = UserEmailModel.get(NEW).user_id
    assert owner in (alice["user"]["id"], charlie["user"]["id"])
    assert [u.email for u in UserModel.batch_get([alice["user"]["id"], charlie["user"]["id"]])].count(NEW) == 1


def test_bad_new_addresses_are_422s_naming_new_email(api, alice):
    for body in (
        {"new_email": "not an address", "password": PASSWORD},
        {"new_email": "ALICE@example.com", "password": PASSWORD},  # the address it has
        {"new_email": 42, "password": PASSWORD},
        {"password": PASSWORD},
    ):
        r = api.post("/v1/me/email", body)
        assert (r.status, [e["field"] for e in r.json["errors"]]) == (422, ["new_email"]), body


def test_requests_are_limited_to_five_an_hour(api, alice, outbox):
    for n in range(5):
        assert api.post("/v1/me/email", {"new_email": f"n{n}@example.org", "password": PASSWORD}).status == 202

    r = api.post("/v1/me/email", {"new_email": "n5@example.org", "password": PASSWORD})

    assert r.status == 429
    assert int(r.headers["retry-after"]) > 0
    assert outbox.to("n5@example.org") == []


def test_an_unverified_account_that_fixes_its_address_is_verified_and_welcomed_once(api, outbox):
    typo = register(api, "alice@exmaple.com", verified=False)
    old_link = token_in(outbox, "alice@exmaple.com")
    api.token = typo["access_token"]

    assert api.post("/v1/me/email", {"new_email": "alice@example.com", "password": PASSWORD}).status == 202
    assert follow(api, token_in(outbox, "alice@example.com")).json["user"]["email_verified"] is True

    welcomes = [m for m in outbox.to("alice@example.com") if m["subject"] == "Welcome to Vigil"]
    assert len(welcomes) == 1
    assert follow(api, old_link).status == 400  # the old address's verification link is dead


def test_a_reset_link_mailed_to_the_old_address_is_spent_by_the_change(api, alice, outbox):
    forgot_password(api, "alice@example.com")
    reset = outbox.link("alice@example.com", "/reset-password").split("token=", 1)[1]
    api.post("/v1/me/email", {"new_email": NEW, "password": PASSWORD})
    assert follow(api, token_in(outbox, NEW)).status == 200

    r = api.post("/v1/auth/reset-password", {"token": reset, "password": "taken over 77 words"}, token="")

    assert (r.status, r.json["code"]) == (400, "invalid_token")
    assert api.post("/v1/auth/login", {"email": NEW, "password": PASSWORD}).status == 200


# --- from the review of the change ---------------------------------------------------------------------------


def before_transaction(action):
    """Runs ``action()`` once, just before the next DynamoDB transaction is sent (at botocore's edge); ``action`` may
    raise to fail that transaction as the network would."""
    return before_aws_call(dynamodb_clients(), "dynamodb.TransactWriteItems", action)


throttled = aws_error("ThrottlingException", "TransactWriteItems")


def test_a_password_reset_cancels_a_pending_change_made_with_a_stolen_password(api, alice, outbox):
    """Eve, who phished the password, asks to move the account to her address; Alice resets her password."""
    api.post("/v1/me/email", {"new_email": "eve@evil.example", "password": PASSWORD})
    eves = token_in(outbox, "eve@evil.example")
    forgot_password(api, "alice@example.com")
    reset = outbox.link("alice@example.com", "/reset-password").split("token=", 1)[1]
    assert (
        api.post("/v1/auth/reset-password", {"token": reset, "password": "brand new secret 77 x"}, token="").status
        == 204
    )

    assert follow(api, eves).status == 400
    stored = UserModel.get(alice["user"]["id"])
    assert (stored.email, stored.pending_email) == ("alice@example.com", None)


def test_a_password_change_cancels_a_pending_change(api, alice, outbox):
    other = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).json
    api.post("/v1/me/email", {"new_email": "eve@evil.example", "password": PASSWORD}, token=other["access_token"])
    assert api.get("/v1/me", token=other["access_token"]).json["pending_email"] == "eve@evil.example"

    assert (
        api.post("/v1/me/password", {"current_password": PASSWORD, "new_password": "brand new secret 77 x"}).status
        == 204
    )

    assert follow(api, token_in(outbox, "eve@evil.example")).status == 400
    assert api.get("/v1/me").json["pending_email"] is None


def test_a_change_asked_by_a_session_that_has_ended_cannot_be_made(api, alice, outbox):
    other = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).json
    api.post("/v1/me/email", {"new_email": NEW, "password": PASSWORD}, token=other["access_token"])
    assert api.post("/v1/auth/logout", token=other["access_token"]).status == 204

    assert follow(api, token_in(outbox, NEW)).status == 400
    assert api.get("/v1/me").json["email"] == "alice@example.com"


def test_one_stranger_gets_at_most_three_such_mails_a_day_whoever_asks(api, outbox):
    for n in range(3):
        person = register(api, f"throwaway{n}@nowhere.example", verified=False)
        for _ in range(2):
            r = api.post(
                "/v1/me/email",
                {"new_email": "victim@stranger.example", "password": PASSWORD},
                token=person["access_token"],
            )
            assert r.status == 202

    assert len(outbox.to("victim@stranger.example")) == 3


def test_a_failed_switch_leaves_the_link_to_follow_again_and_the_other_sessions_end(api, alice, outbox):
    other = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).json
    api.post("/v1/me/email", {"new_email": NEW, "password": PASSWORD})
    link = token_in(outbox, NEW)

    with before_transaction(throttled):
        assert follow(api, link).status == 503  # throttled: "try again shortly"
    assert api.get("/v1/me").json["email"] == "alice@example.com"

    assert follow(api, link).status == 200
    assert api.get("/v1/me").json["email"] == NEW
    assert api.get("/v1/me", token=other["access_token"]).status == 401


def test_a_write_of_the_user_racing_the_switch_does_not_pass_for_a_taken_address(api, alice, outbox):
    api.post("/v1/me/email", {"new_email": NEW, "password": PASSWORD})

    def rename():
        UserModel.get(alice["user"]["id"]).update(actions=[UserModel.name.set("Alice B.")])

    with before_transaction(rename):
        r = follow(api, token_in(outbox, NEW))

    assert r.status == 200
    stored = UserModel.get(alice["user"]["id"])
    assert (stored.email, stored.name) == (NEW, "Alice B.")


def test_an_unverified_old_address_is_not_told_of_the_change(api, outbox):
    typo = register(api, "alice@exmaple.com", verified=False)
    api.token = typo["access_token"]
    api.post("/v1/me/email", {"new_email": "alice@example.com", "password": PASSWORD})
    assert follow(api, token_in(outbox, "alice@example.com")).status == 200

    subjects = [m["subject"] for m in outbox.to("alice@exmaple.com")]
    assert subjects == ["Confirm your email address"]  # the sign-up's, and nothing since


def test_the_older_link_for_the_same_address_stops_working(api, alice, outbox):
    api.post("/v1/me/email", {"new_email": NEW, "password": PASSWORD})
    older = token_in(outbox, NEW)
    api.post("/v1/me/email", {"new_email": NEW, "password": PASSWORD})

    assert follow(api, older).status == 400
    assert follow(api, token_in(outbox, NEW)).status == 200


def test_a_reset_link_of_an_address_left_and_come_back_to_stays_spent(api, alice, outbox):
    forgot_password(api, "alice@example.com")
    reset = outbox.link("alice@example.com", "/reset-password").split("token=", 1)[1]
    for address in (NEW, "alice@example.com"):
        api.post("/v1/me/email", {"new_email": address, "password": PASSWORD})
        assert follow(api, token_in(outbox, address)).status == 200

    r = api.post("/v1/auth/reset-password", {"token": reset, "password": "taken over 77 words"}, token="")
    assert (r.status, r.json["code"]) == (400, "invalid_token")


def test_the_confirmation_names_the_account_that_asked_and_the_notice_a_readable_address(api, alice, outbox, settings):
    api.post("/v1/me/email", {"new_email": NEW, "password": PASSWORD})
    asked = outbox.to(NEW)[0]
    assert "a***@example.com" in asked["text"]
    assert "alice@example.com" not in asked["text"]
    follow(api, token_in(outbox, NEW))

    told = outbox.to("alice@example.com")[0]["text"]
    assert settings.support_email in told
    assert "no-reply" not in told


def test_an_address_change_committing_during_a_deletion_leaves_no_claim_behind(api, alice, outbox):
    from chalicelib.auth import service as auth

    api.post("/v1/me/email", {"new_email": NEW, "password": PASSWORD})
    link = token_in(outbox, NEW)

    with before_transaction(lambda: follow(api, link)) as fired:
        auth.erase_user(alice["user"]["id"])

    assert fired
    assert not any(True for _ in UserEmailModel.query(NEW))
    assert not any(True for _ in UserEmailModel.query("alice@example.com"))
    assert api.post("/v1/auth/register", {"email": NEW, "password": PASSWORD}).status == 201
