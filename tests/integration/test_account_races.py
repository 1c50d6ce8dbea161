"""Issue 17, from the second review of the account settings: races and failures half-way through an address change
or a deletion (each injected at botocore's edge, just before the DynamoDB call it names)."""

from __future__ import annotations

import json

from chalicelib.teams.models import MembershipModel
from chalicelib.users.models import UserEmailModel, UserModel
from tests.integration.test_me_email import NEW, before_transaction, follow, token_in
from tests.support import PASSWORD, Outbox, aws_error, before_aws_call, dynamodb_clients, register


def on_call(operation, action, match=lambda params: True):
    """Runs ``action()`` once just before the first DynamoDB ``operation`` whose params match."""
    return before_aws_call(dynamodb_clients(), f"dynamodb.{operation}", action, match=match)


def _throttle(operation):
    aws_error("ThrottlingException", operation)()


def _is_mark(params):
    return params.get("TableName") == UserModel.Meta.table_name and "deleting_at" in json.dumps(params)


def _deletes_from(table):
    def match(params):
        return any(i.get("Delete", {}).get("TableName") == table for i in params.get("TransactItems", []))

    return match


def login(api, email):
    return api.post("/v1/auth/login", {"email": email, "password": PASSWORD}, token="")


def half_deleted(api, teammate):
    """Bob, an admin of Alice's team, deletes his account and leaving her team is throttled: a 503, his account
    marked and his personal team gone, but still a member."""
    bob = teammate(role="admin")
    with on_call(
        "TransactWriteItems",
        lambda: _throttle("TransactWriteItems"),
        _deletes_from(MembershipModel.Meta.table_name),
    ) as fired:
        assert api.delete("/v1/me", {"password": PASSWORD}, token=bob["access_token"]).status == 503
    assert fired
    assert UserModel.get(bob["user"]["id"]).deleting_at is not None
    return bob


def test_no_team_is_handed_to_an_account_being_deleted(api, alice, teammate):
    bob = half_deleted(api, teammate)
    team = alice["team"]["id"]

    handed = api.post(f"/v1/teams/{team}/transfer-ownership", {"user_id": bob["user"]["id"]})
    assert handed.status == 409, "a marked user must not become an owner (nothing joins it)"


def test_a_half_deleted_member_is_finished_by_a_sign_in_or_a_sign_up(api, alice, teammate):
    bob = half_deleted(api, teammate)
    team = alice["team"]["id"]
    api.post(f"/v1/teams/{team}/transfer-ownership", {"user_id": bob["user"]["id"]})

    r = login(api, "bob@example.com")
    s = api.post("/v1/auth/register", {"email": "bob@example.com", "password": PASSWORD}, token="")
    assert (s.status, r.status) == (201, 401), (s.json, r.json)


def test_an_invitation_accepted_as_the_deletion_begins_makes_a_409_that_leaves_no_mark(api, alice, charlie):
    team = alice["team"]["id"]
    assert api.post(f"/v1/teams/{team}/invitations", {"email": "charlie@example.com", "role": "member"}).status == 201
    link = Outbox().link("charlie@example.com", "/invitations/accept").split("token=", 1)[1]

    def accept():
        assert api.post("/v1/invitations/accept", {"token": link}, token=charlie["access_token"]).status == 200

    with on_call("UpdateItem", accept, _is_mark) as fired:
        r = api.delete("/v1/me", {"password": PASSWORD})
    assert fired
    assert r.status == 409, r.json
    # Refused, the deletion leaves no mark: the account goes on as before ...
    assert api.post("/v1/teams", {"name": "Next"}).status == 201
    # ... and after the transfer the 409 asked for, a sign-up with her address does not erase her live account.
    assert api.post(f"/v1/teams/{team}/transfer-ownership", {"user_id": charlie["user"]["id"]}).status == 200
    stranger = api.post("/v1/auth/register", {"email": "alice@example.com", "password": PASSWORD}, token="")
    assert stranger.status == 409
    assert api.get("/v1/me").status == 200


def test_a_link_to_an_address_taken_since_changes_nothing_and_signs_no_one_out(api, alice, outbox):
    api.post("/v1/me/email", {"new_email": NEW, "password": PASSWORD})
    link = token_in(outbox, NEW)
    register(api, NEW)  # whoever reads that mailbox takes the address
    phone = login(api, "alice@example.com").json

    assert follow(api, link).status == 409
    assert api.get("/v1/me", token=phone["access_token"]).status == 200  # no session ended
    assert api.get("/v1/me").json["pending_email"] is None  # the request is dropped: it can never happen
    assert follow(api, link).status == 400  # and its link is spent


def test_a_session_opened_while_the_address_switches_does_not_survive_it(api, alice, outbox):
    api.post("/v1/me/email", {"new_email": NEW, "password": PASSWORD})
    link = token_in(outbox, NEW)
    late = {}

    with before_transaction(lambda: late.update(login(api, "alice@example.com").json)):
        assert follow(api, link).status == 200

    assert api.get("/v1/me", token=late["access_token"]).status == 401


def test_a_sign_up_racing_the_deletion_finishes_it_and_the_deletion_still_answers_204(api, alice):
    def sign_up():
        s = api.post("/v1/auth/register", {"email": "alice@example.com", "password": PASSWORD}, token="")
        assert s.status == 201, s.json

    with on_call("TransactWriteItems", sign_up, _deletes_from(UserEmailModel.Meta.table_name)):
        r = api.delete("/v1/me", {"password": PASSWORD})
    assert not any(True for _ in UserModel.query(alice["user"]["id"]))  # the account is gone ...
    assert r.status == 204, (r.status, r.json)  # ... and its owner is told so


def test_the_old_address_is_told_even_if_a_read_after_the_commit_fails(api, alice, outbox):
    api.post("/v1/me/email", {"new_email": NEW, "password": PASSWORD})
    link = token_in(outbox, NEW)
    armed = []

    with (
        before_transaction(lambda: armed.append(True)),
        on_call(
            "GetItem",
            lambda: armed and _throttle("GetItem"),
            lambda p: bool(armed) and p.get("TableName") == UserModel.Meta.table_name,
        ),
    ):
        r = follow(api, link)
    assert UserModel.get(alice["user"]["id"]).email == NEW  # committed; the link is spent
    assert r.status == 503
    assert [m["subject"] for m in outbox.to("alice@example.com") if "changed" in m["subject"]], "no notice"


def test_after_that_409_and_the_transfer_it_asks_for_a_sign_up_cannot_erase_the_live_account(api, alice, charlie):
    team = alice["team"]["id"]
    api.post(f"/v1/teams/{team}/invitations", {"email": "charlie@example.com", "role": "member"})
    link = Outbox().link("charlie@example.com", "/invitations/accept").split("token=", 1)[1]
    with on_call(
        "UpdateItem",
        lambda: api.post("/v1/invitations/accept", {"token": link}, token=charlie["access_token"]),
        _is_mark,
    ):
        assert api.delete("/v1/me", {"password": PASSWORD}).status == 409
    assert api.post(f"/v1/teams/{team}/transfer-ownership", {"user_id": charlie["user"]["id"]}).status == 200
    assert api.get("/v1/me").status == 200  # Alice uses her account as usual

    stranger = api.post(
        "/v1/auth/register", {"email": "alice@example.com", "password": "another pass 12345 x"}, token=""
    )
    assert stranger.status == 409, "a sign-up must not erase a live account"


def test_invitations_to_an_address_the_account_left_are_withdrawn(api, alice, outbox):
    owner = register(api, "owner@example.com")
    t = owner["team"]["id"]
    assert (
        api.post(
            f"/v1/teams/{t}/invitations", {"email": "alice@example.com", "role": "admin"}, token=owner["access_token"]
        ).status
        == 201
    )
    link = outbox.link("alice@example.com", "/invitations/accept").split("token=", 1)[1]
    api.post("/v1/me/email", {"new_email": NEW, "password": PASSWORD})
    assert follow(api, token_in(outbox, NEW)).status == 200
    carol = register(api, "alice@example.com")  # the address is free: someone else's now
    r = api.post("/v1/invitations/accept", {"token": link}, token=carol["access_token"])
    assert r.status == 400, "an invitation meant for Alice must not pass to the next holder of her old address"


def test_an_account_being_deleted_cannot_move_its_address(api, alice, outbox):
    from chalicelib.clock import utcnow
    from chalicelib.users import service as users

    api.post("/v1/me/email", {"new_email": NEW, "password": PASSWORD})
    users.mark_deleting(alice["user"]["id"], utcnow())
    assert follow(api, token_in(outbox, NEW)).status != 200
