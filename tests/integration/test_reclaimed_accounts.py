"""Issue 19, pre-registration: Charlie signs up with Alice's address and never verifies it, builds a team with an
accomplice in it, keys and content; Alice takes the account over with a reset link.  She must get a fresh account:
nothing Charlie made, no one he let in, and none of his ways back in."""

from __future__ import annotations

from chalicelib import lifecycle
from chalicelib.alerts.models import ChannelModel
from chalicelib.auth.models import ApiKeyModel
from chalicelib.clock import utcnow
from chalicelib.monitors.models import MonitorModel
from chalicelib.teams.models import InvitationModel, MembershipModel, TeamModel
from chalicelib.users.models import UserModel
from tests.factories import create_channel, create_monitor, create_status_page
from tests.support import PASSWORD, aws_error, before_aws_call, dynamodb_clients, forgot_password, join_team, register

NEW = "alice's own passphrase 2026"


def squat(api):
    """Charlie, signed up as alice@example.com (never verified), with Bob his accomplice made an admin of his team,
    a second team, an invitation out, a key each, a monitor, a webhook channel and a public page.  Returns what a
    test needs to try afterwards."""
    charlie = register(api, "alice@example.com", verified=False, name="Alice (IT support)", timezone="Asia/Tokyo")
    as_charlie = api.acting_as(charlie)
    team = charlie["team"]["id"]
    # An unverified account may not invite (issue 15): Bob's membership and Carol's invitation are the rows an
    # accepted and a sent invitation store, whatever way in a later change may open.
    bob = join_team(api, team, register(api, "bob@example.com"), "admin")
    lifecycle.invite(team, charlie["user"]["id"], "carol@example.com", "member", utcnow())
    side = as_charlie.post("/v1/teams", {"name": "Acme Ops"}).json["id"]
    keys = [
        api.post("/v1/api-keys", {"name": name, "scopes": ["monitors:read"]}, token=person["access_token"]).json["key"]
        for name, person in (("charlie's", charlie), ("bob's", bob))
    ]
    for key in keys:
        assert api.get("/v1/monitors", token=key).status == 200
    create_monitor(as_charlie)
    create_channel(as_charlie, type="webhook", config={"url": "https://hooks.example.invalid/charlie"})
    create_status_page(as_charlie, slug="alice-status")
    quiet = {"critical_only": True, "quiet_hours": {"start": "00:00", "end": "23:59"}}
    assert as_charlie.patch("/v1/me", {"notification_preferences": quiet}).status == 200
    return {"charlie": charlie, "bob": bob, "teams": [team, side], "keys": keys}


def reset(api, outbox, password=NEW):
    assert forgot_password(api, "alice@example.com").status == 202
    link = outbox.link("alice@example.com", "/reset-password").split("token=")[1]
    return api.post("/v1/auth/reset-password", {"token": link, "password": password}, token="")


def sign_in(api, password=NEW):
    r = api.post("/v1/auth/login", {"email": "alice@example.com", "password": password}, token="")
    assert r.status == 200, r.body
    return r.json


def assert_nothing_of_charlies_is_left(api, squatted):
    charlie, bob = squatted["charlie"], squatted["bob"]
    for key in squatted["keys"]:
        assert api.get("/v1/monitors", token=key).status == 401
    assert api.get("/v1/me", token=charlie["access_token"]).status == 401
    assert api.post("/v1/auth/refresh", {"refresh_token": charlie["refresh_token"]}, token="").status == 401
    assert api.get(f"/v1/teams/{squatted['teams'][0]}", token=bob["access_token"]).status in (403, 404)
    assert api.get("/v1/me", token=bob["access_token"]).status == 200  # Bob's own account is his
    assert api.get("/v1/public/status-pages/alice-status").status == 404
    for team in squatted["teams"]:
        assert list(MembershipModel.query(team)) == []
        assert list(InvitationModel.by_team.query(team)) == []
        assert list(ApiKeyModel.by_team.query(team)) == []
        assert list(MonitorModel.query(team)) == []
        assert list(ChannelModel.query(team)) == []
        assert not any(True for _ in TeamModel.query(team))


def assert_fresh(api, alice):
    as_alice = api.acting_as(alice)
    me = as_alice.get("/v1/me").json
    assert (me["email"], me["email_verified"], me["name"], me["timezone"]) == ("alice@example.com", True, None, "UTC")
    assert me["notification_preferences"] == {"critical_only": False, "quiet_hours": None}
    (team,) = as_alice.get("/v1/teams").json["data"]
    assert (team["id"], team["role"]) == (alice["team"]["id"], "owner")
    members = as_alice.get(f"/v1/teams/{team['id']}/members").json["data"]
    assert [m["user_id"] for m in members] == [alice["user"]["id"]]
    for path in ("/v1/monitors", "/v1/alert-channels", "/v1/api-keys", "/v1/status-pages"):
        assert as_alice.get(path).json["data"] == [], path
    assert as_alice.get(f"/v1/teams/{team['id']}/invitations").json["data"] == []


def test_a_reset_of_an_account_never_verified_leaves_its_owner_a_fresh_account(api, outbox):
    squatted = squat(api)

    assert reset(api, outbox).status == 204

    assert_nothing_of_charlies_is_left(api, squatted)
    r = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}, token="")
    assert r.status == 401  # Charlie's password is gone with him
    alice = sign_in(api)
    assert alice["team"]["id"] not in squatted["teams"]
    assert alice["user"]["id"] == squatted["charlie"]["user"]["id"]  # the same account, taken back
    assert_fresh(api, alice)
    assert UserModel.get(alice["user"]["id"]).reclaiming_team_id is None  # her sign-in took the last look


def test_carols_invitation_from_charlie_is_gone_with_his_team(api, outbox):
    squat(api)
    link = outbox.link("carol@example.com", "/invitations/accept").split("token=", 1)[1]
    carol = register(api, "carol@example.com")

    reset(api, outbox)

    r = api.post("/v1/invitations/accept", {"token": link}, token=carol["access_token"])
    assert r.status in (400, 404), r.body


def test_a_clearing_that_fails_half_way_is_finished_by_the_first_sign_in(api, outbox):
    squatted = squat(api)
    monitors = MonitorModel.Meta.table_name

    with before_aws_call(  # the purge of Charlie's team fails at its monitors
        dynamodb_clients(),
        "dynamodb.DeleteItem",
        aws_error("ThrottlingException", "DeleteItem"),
        match=lambda params: params.get("TableName") == monitors,
    ) as fired:
        assert reset(api, outbox).status == 503
    assert fired
    for key in squatted["keys"]:  # the keys went first
        assert api.get("/v1/monitors", token=key).status == 401

    alice = sign_in(api)

    assert_nothing_of_charlies_is_left(api, squatted)
    assert_fresh(api, alice)


def test_a_reset_of_a_verified_account_keeps_its_teams(api, alice, teammate, outbox):
    bob = teammate(role="admin")
    create_monitor(api)

    assert reset(api, outbox).status == 204

    signed = sign_in(api)
    assert signed["team"]["id"] == alice["team"]["id"]
    members = api.acting_as(signed).get(f"/v1/teams/{alice['team']['id']}/members").json["data"]
    assert {m["user_id"] for m in members} == {alice["user"]["id"], bob["user"]["id"]}
    assert len(api.acting_as(signed).get("/v1/monitors").json["data"]) == 1


def test_a_reclaim_whose_session_revocation_failed_ends_the_sessions_at_the_first_sign_in(api, outbox):
    """A throttled write on the sessions table fails the reset half-way (503): the squatter's session must still end,
    at the latest when the owner first signs in (the reclaim's last look) — found by a fresh-eyes review."""
    from chalicelib.auth.models import SessionModel
    from tests.support import aws_error, before_aws_call, dynamodb_clients, forgot_password, register

    squatter = register(api, "alice@example.com", verified=False)
    forgot_password(api, "alice@example.com")
    token = outbox.link("alice@example.com", "/reset-password").split("token=")[1]
    with before_aws_call(
        dynamodb_clients(),
        "dynamodb.UpdateItem",
        aws_error("ThrottlingException", "UpdateItem"),
        match=lambda params: params.get("TableName") == SessionModel.Meta.table_name,
    ) as fired:
        r = api.post("/v1/auth/reset-password", {"token": token, "password": "alice's own passphrase 2026"}, token="")
    assert fired
    assert r.status >= 500, r.body

    owner = api.post(
        "/v1/auth/login", {"email": "alice@example.com", "password": "alice's own passphrase 2026"}, token=""
    )
    assert owner.status == 200, owner.body
    assert api.acting_as(squatter["access_token"]).get("/v1/me").status == 401
    assert api.acting_as(owner.json["access_token"]).get("/v1/me").status == 200
