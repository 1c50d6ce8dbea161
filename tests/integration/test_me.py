"""GET|PATCH /v1/me and team switching."""

from __future__ import annotations

import pytest

from chalicelib.teams.models import MembershipModel, TeamModel
from tests.support import sign_up


@pytest.fixture
def alice(api):
    """Alice as everywhere, with her name on the account."""
    return sign_up(api, "alice@example.com", name="Alice")


def test_it_shows_the_account(api, alice):
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
    assert r.json["current_team_id"] == alice["team"]["id"]
    assert r.json["created_at"].endswith("Z")


def test_it_updates_settings(api, alice):
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


def test_it_refuses_bad_settings_field_by_field(api, alice):
    r = api.patch("/v1/me", {"timezone": "Nowhere/Special"})
    assert r.status == 422
    message = "unknown time zone 'Nowhere/Special'; use an IANA name like Europe/Paris"
    assert r.json["errors"] == [{"field": "timezone", "message": message}]
    r = api.patch("/v1/me", {"notification_preferences": {"quiet_hours": {"start": "25:00", "end": "7"}}})
    assert r.status == 422
    fields = sorted(e["field"] for e in r.json["errors"])
    assert fields == ["notification_preferences.quiet_hours.end", "notification_preferences.quiet_hours.start"]
    r = api.patch("/v1/me", {"email": "sneaky@example.com"})
    assert r.status == 422
    assert r.json["errors"][0] == {"field": "email", "message": "unknown field"}
    assert api.get("/v1/me").json["email"] == "alice@example.com"


def test_switch_team_acts_in_the_other_team_and_refuses_strangers(api, aws, alice, charlie):
    # Charlie's team adds Alice (teams API arrives with the teams issue; the membership is what matters here)
    from chalicelib.clock import utcnow

    MembershipModel(charlie["team"]["id"], alice["user"]["id"], role="member", joined_at=utcnow()).save()
    r = api.post("/v1/auth/switch-team", {"team_id": charlie["team"]["id"]})
    assert r.status == 200, r.json
    assert r.json["team"]["id"] == charlie["team"]["id"]
    assert api.get("/v1/me", token=r.json["access_token"]).json["current_team_id"] == charlie["team"]["id"]
    # the pre-switch refresh token is spent
    assert api.post("/v1/auth/refresh", {"refresh_token": alice["refresh_token"]}).status == 401

    strangers = TeamModel("team_dave", name="D", created_by="usr_d", created_at=utcnow(), updated_at=utcnow())
    strangers.save()
    r = api.post("/v1/auth/switch-team", {"team_id": "team_dave"}, token=charlie["access_token"])
    assert r.status == 404
    assert r.json["code"] == "not_found"


def test_a_change_with_no_body_is_a_400_not_a_silent_200(api, alice):
    from chalicelib.users.models import UserModel

    before = UserModel.get(alice["user"]["id"]).attribute_values
    monitor = api.post("/v1/monitors", {"name": "Shop", "url": "https://shop.example.com/"}).json
    for path in ("/v1/me", f"/v1/monitors/{monitor['id']}", f"/v1/teams/{alice['team']['id']}"):
        r = api.request("PATCH", path, body=b"")
        assert r.status == 400, (path, r.body)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json["code"] == "body_required"
    assert UserModel.get(alice["user"]["id"]).attribute_values == before
    assert api.patch("/v1/me", {"name": "Alice B"}).status == 200  # a body still works
