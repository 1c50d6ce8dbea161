"""Issue 17: POST /v1/me/email moves an account to a new address once that address is verified — never onto an
address another account holds, and never telling the caller which addresses have accounts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from chalicelib.users.models import UserEmailModel, UserModel
from tests.support import PASSWORD, Outbox, register

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

    with ThreadPoolExecutor(max_workers=2) as pool:
        statuses = sorted(r.status for r in pool.map(lambda t: follow(api, t), tokens))

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
    api.post("/v1/auth/forgot-password", {"email": "alice@example.com"}, token="")
    reset = outbox.link("alice@example.com", "/reset-password").split("token=", 1)[1]
    api.post("/v1/me/email", {"new_email": NEW, "password": PASSWORD})
    assert follow(api, token_in(outbox, NEW)).status == 200

    r = api.post("/v1/auth/reset-password", {"token": reset, "password": "taken over 77 words"}, token="")

    assert (r.status, r.json["code"]) == (400, "invalid_token")
    assert api.post("/v1/auth/login", {"email": NEW, "password": PASSWORD}).status == 200
