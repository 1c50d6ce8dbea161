"""Issue 17, part 1: first steps computed from what exists, the welcome email once, and strict settings."""

from __future__ import annotations

import pytest

from chalicelib.users.models import UserModel
from tests.factories import create_channel, create_monitor, create_status_page
from tests.support import Outbox, register, sign_up


def steps(api) -> dict[str, bool]:
    r = api.get("/v1/me/onboarding")
    assert r.status == 200, r.body
    found = {s["key"]: s["done"] for s in r.json["steps"]}
    assert list(found) == [
        "verify_email",
        "create_monitor",
        "add_alert_channel",
        "create_status_page",
        "invite_teammate",
    ]
    assert r.json["completed"] == all(found.values())
    return found


def test_each_step_is_done_from_what_exists_and_undone_when_it_goes(api):
    sign_up(api, "alice@example.com", verified=False)
    assert steps(api) == dict.fromkeys(steps(api), False)
    link = Outbox().link("alice@example.com", "/verify-email")
    assert api.post("/v1/auth/verify-email", {"token": link.split("token=", 1)[1]}, token="").status == 200
    assert steps(api)["verify_email"] is True
    monitor = create_monitor(api)
    create_channel(api, config={"addresses": ["alice@example.com"]})
    create_status_page(api)
    done = steps(api)
    assert [done[k] for k in ("create_monitor", "add_alert_channel", "create_status_page")] == [True] * 3
    assert done["invite_teammate"] is False
    r = api.post(
        f"/v1/teams/{api.get('/v1/me').json['current_team_id']}/invitations",
        {"email": "bob@example.com", "role": "member"},
    )
    assert r.status == 201, r.body
    assert api.get("/v1/me/onboarding").json["completed"] is True
    assert api.delete(f"/v1/monitors/{monitor['id']}").status == 204
    assert steps(api)["create_monitor"] is False  # computed, not a flag that stayed set


def test_the_steps_are_of_the_current_team(api, alice):
    create_monitor(api)
    team = api.post("/v1/teams", {"name": "Side"}).json["id"]
    switched = api.post("/v1/auth/switch-team", {"team_id": team}).json["access_token"]
    assert steps(api.acting_as(switched))["create_monitor"] is False
    assert steps(api)["create_monitor"] is True


def test_the_welcome_email_goes_once_when_the_address_is_first_verified(api):
    import re

    person = register(api, "alice@example.com", verified=False)
    assert api.post("/v1/auth/resend-verification", token=person["access_token"]).status == 202
    mails = Outbox().to("alice@example.com")
    assert [m["subject"] for m in mails] == ["Confirm your email address"] * 2  # two links, both valid
    tokens = [re.search(r"token=([^\s\"<>]+)", m["text"]).group(1) for m in mails]
    for token in tokens:  # the second verification finds the address verified already
        assert api.post("/v1/auth/verify-email", {"token": token}, token="").status == 200
    welcome = [m for m in Outbox().to("alice@example.com") if m["subject"] == "Welcome to Vigil"]
    assert len(welcome) == 1
    for path in ("/monitors/new", "/alert-channels/new", "/status-pages/new"):
        assert f"https://app.vigil.test{path}" in welcome[0]["text"]
    assert UserModel.get(person["user"]["id"]).welcomed_at is not None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": 5}, "name"),
        ({"timezone": 1}, "timezone"),
        ({"notification_preferences": {"critical_only": "true"}}, "notification_preferences.critical_only"),
        ({"notification_preferences": {"critical_only": 1}}, "notification_preferences.critical_only"),
        ({"notification_preferences": {"quiet_hours": {"start": "22:00", "end": "7:00"}}}, "notification_preferences"),
        ({"notification_preferences": {"quiet_hours": {"start": "24:00", "end": "07:00"}}}, "notification_preferences"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"nickname": "Al"}, "nickname"),
    ],
)
def test_settings_are_strict_and_each_bad_field_is_named(api, alice, body, field):
    before = api.get("/v1/me").json
    r = api.patch("/v1/me", body)
    assert (r.status, r.json["code"]) == (422, "validation_error"), r.body
    assert any(e["field"].startswith(field) for e in r.json["errors"]), r.json["errors"]
    assert api.get("/v1/me").json == before


# --- from the review of b67b84d -------------------------------------------------------------------------------


def test_a_removed_member_or_a_deleted_teams_token_reads_no_onboarding(api, alice, teammate):
    bob = teammate(role="member")
    create_monitor(api)
    as_bob = api.acting_as(bob)  # his access token names Alice's team
    assert api.delete(f"/v1/teams/{alice['team']['id']}/members/{bob['user']['id']}").status == 204
    r = as_bob.get("/v1/me/onboarding")
    assert (r.status, r.json["code"]) == (403, "not_a_member")
    side = api.post("/v1/teams", {"name": "Side"}).json["id"]
    as_side = api.acting_as(api.post("/v1/auth/switch-team", {"team_id": side}).json["access_token"])
    assert api.delete(f"/v1/teams/{side}").status == 204
    assert as_side.get("/v1/me/onboarding").status == 403


def test_no_welcome_for_an_address_verified_before(api):
    """Only the request that verifies the address welcomes: an account verified before welcomes existed (no
    ``welcomed_at``) following a second, still valid link gets nothing."""
    import re

    person = register(api, "alice@example.com", verified=False)
    assert api.post("/v1/auth/resend-verification", token=person["access_token"]).status == 202
    mails = Outbox().to("alice@example.com")
    first, second = (re.search(r"token=([^\s\"<>]+)", m["text"]).group(1) for m in mails)
    assert api.post("/v1/auth/verify-email", {"token": first}, token="").status == 200
    UserModel.get(person["user"]["id"]).update(actions=[UserModel.welcomed_at.remove()])
    assert api.post("/v1/auth/verify-email", {"token": second}, token="").status == 200
    assert [m["subject"] for m in Outbox().to("alice@example.com")].count("Welcome to Vigil") == 1


@pytest.mark.parametrize("zone", ["Europe", "America", "Etc", "posix/Europe/Paris", "right/UTC", "posixrules"])
def test_a_time_zone_that_is_no_iana_zone_is_a_422_never_a_500(api, alice, zone):
    r = api.patch("/v1/me", {"timezone": zone})
    assert (r.status, r.json["errors"][0]["field"]) == (422, "timezone")
    r = api.post(
        "/v1/auth/register", {"email": "z@example.com", "password": "correct horse battery 9", "timezone": zone}
    )
    assert (r.status, r.json["errors"][0]["field"]) == (422, "timezone")


@pytest.mark.parametrize("body", [{"timezone": None}, {"notification_preferences": None}, {"name": "a\nb"}])
def test_null_where_a_setting_cannot_be_null_or_a_name_of_two_lines_is_a_422(api, alice, body):
    r = api.patch("/v1/me", body)
    assert (r.status, r.json["errors"][0]["field"]) == (422, next(iter(body)))


def test_a_partial_preferences_object_changes_only_what_it_sends(api, alice):
    quiet = {"start": "22:00", "end": "07:00"}
    assert api.patch("/v1/me", {"notification_preferences": {"quiet_hours": quiet}}).status == 200
    r = api.patch("/v1/me", {"notification_preferences": {"critical_only": True}})
    assert r.json["notification_preferences"] == {"critical_only": True, "quiet_hours": quiet}
    r = api.patch("/v1/me", {"notification_preferences": {"quiet_hours": None}})
    assert r.json["notification_preferences"] == {"critical_only": True, "quiet_hours": None}
    assert api.patch("/v1/me", {"name": None}).json["name"] is None  # a name may be cleared
