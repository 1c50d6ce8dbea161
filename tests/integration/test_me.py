"""GET|PATCH /v1/me and team switching."""

from __future__ import annotations

from chalicelib.teams.models import MembershipModel, TeamModel

PASSWORD = "correct horse battery staple 9"


def _alice(api):
    r = api.post("/v1/auth/register", {"email": "alice@example.com", "password": PASSWORD, "name": "Alice"})
    api.token = r.json["access_token"]
    return r.json


def test_it_shows_the_account(api):
    tokens = _alice(api)
    r = api.get("/v1/me")
    assert r.status == 200
    assert set(r.json) >= {
        "id",
        "email",
        "name",
        "email_verified",
        "timezone",
        "notification_preferences",
        "current_team_id",
        "created_at",
    }
    assert r.json["notification_preferences"] == {"critical_only": False, "quiet_hours": None}
    assert r.json["current_team_id"] == tokens["team"]["id"]
    assert r.json["created_at"].endswith("Z")


def test_it_updates_settings(api):
    _alice(api)
    r = api.patch(
        "/v1/me",
        {
            "name": "Alice A.",
            "timezone": "America/New_York",
            "notification_preferences": {"critical_only": True, "quiet_hours": {"start": "22:00", "end": "07:00"}},
        },
    )
    assert r.status == 200, r.json
    again = api.get("/v1/me").json
    assert again["name"] == "Alice A."
    assert again["timezone"] == "America/New_York"
    assert again["notification_preferences"] == {
        "critical_only": True,
        "quiet_hours": {"start": "22:00", "end": "07:00"},
    }
    r = api.patch("/v1/me", {"notification_preferences": {"critical_only": False, "quiet_hours": None}})
    assert r.json["notification_preferences"]["quiet_hours"] is None
    assert r.json["name"] == "Alice A."  # untouched fields stay


def test_it_refuses_bad_settings_field_by_field(api):
    _alice(api)
    r = api.patch("/v1/me", {"timezone": "Nowhere/Special"})
    assert r.status == 422
    assert r.json["errors"] == [{"field": "timezone", "message": r.json["errors"][0]["message"]}]
    r = api.patch("/v1/me", {"notification_preferences": {"quiet_hours": {"start": "25:00", "end": "7"}}})
    assert r.status == 422
    fields = sorted(e["field"] for e in r.json["errors"])
    assert fields == ["notification_preferences.quiet_hours.end", "notification_preferences.quiet_hours.start"]
    r = api.patch("/v1/me", {"email": "sneaky@example.com"})
    assert r.status == 422
    assert r.json["errors"][0] == {"field": "email", "message": "unknown field"}
    assert api.get("/v1/me").json["email"] == "alice@example.com"


def test_switch_team_acts_in_the_other_team_and_refuses_strangers(api, aws):
    tokens = _alice(api)
    bob = api.post("/v1/auth/register", {"email": "bob@example.com", "password": PASSWORD}).json
    # Bob's team adds Alice (teams API arrives with the teams issue; the membership is what matters here)
    from chalicelib.clock import utcnow

    MembershipModel(bob["team"]["id"], tokens["user"]["id"], role="member", joined_at=utcnow()).save()
    r = api.post("/v1/auth/switch-team", {"team_id": bob["team"]["id"]})
    assert r.status == 200, r.json
    assert r.json["team"]["id"] == bob["team"]["id"]
    assert api.get("/v1/me", token=r.json["access_token"]).json["current_team_id"] == bob["team"]["id"]
    # the pre-switch refresh token is spent
    assert api.post("/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}).status == 401

    charlie_team = TeamModel("team_charlie", name="C", created_by="usr_c", created_at=utcnow(), updated_at=utcnow())
    charlie_team.save()
    r = api.post("/v1/auth/switch-team", {"team_id": "team_charlie"}, token=bob["access_token"])
    assert r.status == 404
    assert r.json["code"] == "not_found"
