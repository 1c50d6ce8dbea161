"""Issue 17: DELETE /v1/me erases a person — their lone teams with everything in them, their place in others,
their keys, sessions and address — and refuses while they own a team others belong to."""

from __future__ import annotations

from chalicelib.monitors.models import MonitorModel
from chalicelib.teams.models import MembershipModel, TeamModel
from chalicelib.users.models import UserEmailModel, UserModel
from tests.factories import create_monitor, create_status_page
from tests.support import PASSWORD, Outbox, aws_error, before_aws_call, dynamodb_clients, register


def test_a_wrong_password_deletes_nothing(api, alice):
    r = api.delete("/v1/me", {"password": "not the password 123"})
    assert (r.status, r.json["code"]) == (403, "invalid_credentials")
    assert api.get("/v1/me").status == 200
    assert api.delete("/v1/me", {}).status == 422


def test_the_owner_of_a_team_others_belong_to_must_transfer_it_first(api, alice, teammate):
    teammate(role="member")
    r = api.delete("/v1/me", {"password": PASSWORD})
    assert (r.status, r.json["code"]) == (409, "conflict")
    assert "transfer ownership" in r.json["detail"]
    assert api.get("/v1/me").status == 200
    assert TeamModel.get(alice["team"]["id"]).team_id == alice["team"]["id"]


def test_deleting_an_account_erases_its_lone_teams_and_frees_its_address(api, alice):
    side = api.post("/v1/teams", {"name": "Side"}).json["id"]
    monitor = create_monitor(api)
    create_status_page(api, slug="alice-status", components=[{"monitor_id": monitor["id"]}])
    assert api.get("/v1/public/status-pages/alice-status").status == 200
    old_token, user_id = alice["access_token"], alice["user"]["id"]

    assert api.delete("/v1/me", {"password": PASSWORD}).status == 204

    assert api.get("/v1/me", token=old_token).status == 401  # every session ended
    assert list(MonitorModel.query(alice["team"]["id"])) == []  # nothing left to schedule
    assert api.get("/v1/public/status-pages/alice-status").status == 404
    for team in (alice["team"]["id"], side):
        assert list(MembershipModel.query(team)) == []
        assert not any(True for _ in TeamModel.query(team))
    assert not any(True for _ in UserModel.query(user_id))
    assert not any(True for _ in UserEmailModel.query("alice@example.com"))
    again = api.post("/v1/auth/register", {"email": "alice@example.com", "password": PASSWORD})
    assert again.status == 201
    assert again.json["user"]["id"] != user_id


def test_a_member_who_deletes_their_account_leaves_the_team_and_their_keys_stop(api, alice, teammate):
    bob = teammate(role="admin")
    key = api.post("/v1/api-keys", {"name": "bob's", "scopes": ["monitors:read"]}, token=bob["access_token"]).json
    assert api.get("/v1/monitors", token=key["key"]).status == 200
    create_monitor(api)
    own = [m.team_id for m in MembershipModel.by_user.query(bob["user"]["id"]) if m.team_id != alice["team"]["id"]]
    assert len(own) == 1  # his personal team

    assert api.delete("/v1/me", {"password": PASSWORD}, token=bob["access_token"]).status == 204

    members = api.get(f"/v1/teams/{alice['team']['id']}/members").json["data"]
    assert [m["user_id"] for m in members] == [alice["user"]["id"]]
    assert api.get("/v1/api-keys").json["data"] == []  # revoked, not left live in the list
    assert api.get("/v1/monitors", token=key["key"]).status == 401
    assert len(api.get("/v1/monitors").json["data"]) == 1  # Alice's team and its monitors stay
    assert not any(True for _ in TeamModel.query(own[0]))
    assert list(MembershipModel.by_user.query(bob["user"]["id"])) == []


def test_a_deleted_accounts_outstanding_link_is_a_400_not_a_404(api):
    person = register(api, "dora@example.com", verified=False)
    link = Outbox().link("dora@example.com", "/verify-email")
    assert api.delete("/v1/me", {"password": PASSWORD}, token=person["access_token"]).status == 204
    r = api.post("/v1/auth/verify-email", {"token": link.split("token=", 1)[1]}, token="")
    assert (r.status, r.json["code"]) == (400, "invalid_token")


# --- from the review of 17c376a -------------------------------------------------------------------------------


def test_a_team_whose_subscription_renews_is_cancelled_first(api, alice):
    from tests.support import on_plan

    on_plan(api, alice["team"]["id"], "pro")
    r = api.delete("/v1/me", {"password": PASSWORD})
    assert (r.status, r.json["code"]) == (409, "conflict")
    assert "cancel it in billing" in r.json["detail"]
    assert api.get("/v1/me").status == 200
    team = TeamModel.get(alice["team"]["id"])
    team.update(actions=[TeamModel.cancel_at_period_end.set(True)])  # as the portal's cancellation event sets it
    assert api.delete("/v1/me", {"password": PASSWORD}).status == 204


def test_leaving_withdraws_the_invitations_the_member_sent_and_revokes_keys_first(api, alice, teammate):
    from tests.support import on_plan

    bob = teammate(role="admin")
    team = alice["team"]["id"]
    on_plan(api, team, "pro")  # room for two invitations beside two members
    sent = api.post(
        f"/v1/teams/{team}/invitations", {"email": "carol@example.com", "role": "member"}, token=bob["access_token"]
    )
    assert sent.status == 201, sent.body
    mine = api.post(f"/v1/teams/{team}/invitations", {"email": "erin@example.com", "role": "member"})
    assert mine.status == 201
    link = Outbox().link("carol@example.com", "/invitations/accept")

    assert api.delete("/v1/me", {"password": PASSWORD}, token=bob["access_token"]).status == 204

    pending = api.get(f"/v1/teams/{team}/invitations").json["data"]
    assert [i["email"] for i in pending] == ["erin@example.com"]  # Alice's own stays
    carol = register(api, "carol@example.com")
    r = api.post("/v1/invitations/accept", {"token": link.split("token=", 1)[1]}, token=carol["access_token"])
    assert (r.status, r.json["code"]) == (400, "invalid_token"), r.body  # revoked with its sender


# --- the deletion's loose ends: invitations to the address, a failure half-way, a team joined meanwhile ---------


def _erases_the_address_claim(params):
    deletes = [i.get("Delete", {}).get("TableName") for i in params.get("TransactItems", [])]
    return UserEmailModel.Meta.table_name in deletes


def before_erase(action):
    """Runs ``action()`` just before the transaction that erases the user and its address claim (at botocore's
    edge): everything before it is done, the account is not."""
    return before_aws_call(dynamodb_clients(), "dynamodb.TransactWriteItems", action, match=_erases_the_address_claim)


def failing_erase():
    """That transaction fails once, as a throttled call would."""
    return before_erase(aws_error("ThrottlingException", "TransactWriteItems"))


def test_pending_invitations_to_the_deleted_address_are_withdrawn(api, alice, charlie):
    team = alice["team"]["id"]
    assert api.post(f"/v1/teams/{team}/invitations", {"email": "charlie@example.com", "role": "admin"}).status == 201
    link = Outbox().link("charlie@example.com", "/invitations/accept")

    assert api.delete("/v1/me", {"password": PASSWORD}, token=charlie["access_token"]).status == 204

    assert api.get(f"/v1/teams/{team}/invitations").json["data"] == []
    again = register(api, "charlie@example.com")  # whoever holds the address next starts with no invitation
    r = api.post("/v1/invitations/accept", {"token": link.split("token=", 1)[1]}, token=again["access_token"])
    assert r.status == 400, r.body
    assert [m["user_id"] for m in api.get(f"/v1/teams/{team}/members").json["data"]] == [alice["user"]["id"]]


def test_a_deletion_that_failed_half_way_is_finished_by_signing_in_with_the_password(api, alice):
    user_id = alice["user"]["id"]
    with failing_erase() as failed:
        assert api.delete("/v1/me", {"password": PASSWORD}).status == 503
    assert failed
    assert list(MembershipModel.by_user.query(user_id)) == []  # the team went; the account did not

    r = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}, token="")

    assert (r.status, r.json["detail"]) == (401, "This account was deleted.")
    assert not any(True for _ in UserModel.query(user_id))
    assert not any(True for _ in UserEmailModel.query("alice@example.com"))


def test_a_deletion_that_failed_half_way_is_finished_by_signing_up_with_the_address(api, alice):
    with failing_erase():
        assert api.delete("/v1/me", {"password": PASSWORD}).status == 503

    r = api.post("/v1/auth/register", {"email": "alice@example.com", "password": PASSWORD}, token="")

    assert r.status == 201, r.body
    assert r.json["user"]["id"] != alice["user"]["id"]
    assert not any(True for _ in UserModel.query(alice["user"]["id"]))


def test_nothing_joins_an_account_whose_deletion_began(api, alice, charlie):
    """A team created, or an invitation accepted, while the deletion runs would outlive the user: once the user is
    marked (the deletion's first write), both are refused."""
    from chalicelib.clock import utcnow
    from chalicelib.users import service as users

    team = alice["team"]["id"]
    assert api.post(f"/v1/teams/{team}/invitations", {"email": "charlie@example.com", "role": "member"}).status == 201
    link = Outbox().link("charlie@example.com", "/invitations/accept").split("token=", 1)[1]
    users.mark_deleting(charlie["user"]["id"], utcnow())  # as DELETE /v1/me does before it removes anything

    created = api.post("/v1/teams", {"name": "Late"}, token=charlie["access_token"])
    accepted = api.post("/v1/invitations/accept", {"token": link}, token=charlie["access_token"])

    assert (created.status, created.json["code"]) == (409, "account_deleting")
    assert (accepted.status, accepted.json["code"]) == (409, "account_deleting")
    assert api.delete("/v1/me", {"password": PASSWORD}, token=charlie["access_token"]).status == 204
    assert list(MembershipModel.by_user.query(charlie["user"]["id"])) == []
    assert [m["user_id"] for m in api.get(f"/v1/teams/{team}/members").json["data"]] == [alice["user"]["id"]]
