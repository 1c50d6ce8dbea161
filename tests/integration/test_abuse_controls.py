"""Abuse controls on every plan: an account whose email is not verified mails no one else (invitations, email and
SMS channels to other addresses, channel tests, incident notes), and a team's invitations and channel tests are
rate-limited (429 with Retry-After)."""

from __future__ import annotations

import pytest

from chalicelib.alerts.models import ChannelModel, DeliveryModel
from chalicelib.teams.models import InvitationModel
from tests.factories import create_channel, create_monitor
from tests.integration.test_alerts import verify
from tests.support import make_test_settings, on_plan, open_incident, sign_up


@pytest.fixture
def settings():
    return make_test_settings(ALLOW_PRIVATE_TARGETS="true")  # channel tests to a loopback port nothing serves


@pytest.fixture
def una(api):
    """Una, registered, her address not verified (the client acts as her)."""
    return sign_up(api, "una@example.com", verified=False)


def test_an_unverified_account_cannot_invite(api, una, outbox):
    r = api.post(f"/v1/teams/{una['team']['id']}/invitations", {"email": "stranger@example.com", "role": "member"})
    assert (r.status, r.json["code"]) == (403, "email_not_verified")
    assert "Verify your email address" in r.json["detail"]
    assert list(InvitationModel.scan()) == []
    assert outbox.to("stranger@example.com") == []
    verify(una)
    r = api.post(f"/v1/teams/{una['team']['id']}/invitations", {"email": "stranger@example.com", "role": "member"})
    assert r.status == 201


def test_an_unverified_account_alerts_only_its_own_address(api, una):
    own = create_channel(api, type="email", config={"addresses": ["UNA@example.com"]})
    other = api.post(
        "/v1/alert-channels",
        {"name": "x", "type": "email", "config": {"addresses": ["una@example.com", "boss@example.com"]}},
    )
    assert (other.status, other.json["code"]) == (403, "email_not_verified")
    sms = api.post("/v1/alert-channels", {"name": "x", "type": "sms", "config": {"phone_numbers": ["+14155550123"]}})
    assert sms.status == 403
    patched = api.patch(f"/v1/alert-channels/{own['id']}", {"config": {"addresses": ["boss@example.com"]}})
    assert patched.status == 403
    assert [c.channel_id for c in ChannelModel.query(una["team"]["id"])] == [own["id"]]
    assert (
        api.post("/v1/alert-channels", {"name": "h", "type": "webhook", "config": {"url": "https://1.1.1.1/h"}}).status
        == 201
    )


def test_an_unverified_account_sends_no_channel_test_and_no_note(api, una):
    channel = create_channel(api, type="email", config={"addresses": ["una@example.com"]})
    r = api.post(f"/v1/alert-channels/{channel['id']}/test")
    assert (r.status, r.json["code"]) == (403, "email_not_verified")
    assert list(DeliveryModel.scan()) == []
    monitor = create_monitor(api, url="https://1.1.1.1/")
    from chalicelib.clock import utcnow

    incident_id = open_incident(una["team"]["id"], monitor["id"], utcnow(), status_code=503)
    r = api.post(f"/v1/incidents/{incident_id}/notes", {"text": "Looking"})
    assert (r.status, r.json["code"]) == (403, "email_not_verified")
    verify(una)
    assert api.post(f"/v1/incidents/{incident_id}/notes", {"text": "Looking"}).status == 201


def test_a_teams_channel_tests_and_invitations_are_limited_per_hour(api, alice):
    verify(alice)
    channel = create_channel(api, type="webhook", config={"url": "http://127.0.0.1:9/hook"})
    statuses = [api.post(f"/v1/alert-channels/{channel['id']}/test").status for _ in range(11)]
    assert statuses[:10] == [200] * 10
    r = api.post(f"/v1/alert-channels/{channel['id']}/test")
    assert (r.status, r.json["code"]) == (429, "rate_limited")
    assert 0 < int(r.headers["retry-after"]) <= 3600
    team = alice["team"]["id"]
    on_plan(api, team)  # room for eleven invitations: the limit met is the hour's, not the plan's
    sent = [
        api.post(f"/v1/teams/{team}/invitations", {"email": f"p{n}@example.com", "role": "viewer"}).status
        for n in range(10)
    ]
    assert sent == [201] * 10
    r = api.post(f"/v1/teams/{team}/invitations", {"email": "p10@example.com", "role": "viewer"})
    assert (r.status, r.json["code"]) == (429, "rate_limited")
    assert 0 < int(r.headers["retry-after"]) <= 3600
    assert "p10@example.com" not in [i.email for i in InvitationModel.scan()]


def test_a_refused_invitation_spends_nothing_of_the_hours_quota(api, alice):
    team = alice["team"]["id"]
    for _ in range(12):  # each refused: alice is already a member
        r = api.post(f"/v1/teams/{team}/invitations", {"email": "alice@example.com", "role": "viewer"})
        assert r.status == 409
    assert api.post(f"/v1/teams/{team}/invitations", {"email": "new@example.com", "role": "viewer"}).status == 201
