"""The alert channels API: secrets shown once and masked after, validation per kind, the SSRF guard, teams."""

from __future__ import annotations

import json

import pytest

from tests.factories import create_channel, create_monitor
from tests.support import stored_channel_config


def test_secrets_are_shown_once_and_masked_after(api, alice):
    hook = create_channel(
        api, type="webhook", config={"url": "https://hooks.example.invalid/", "headers": {"X-Api-Key": "k-123456"}}
    )
    slack = create_channel(
        api, type="slack", config={"webhook_url": "https://hooks.slack.com/services/T000/B000/XXXXSECRET"}
    )
    pager = create_channel(api, type="pagerduty", config={"routing_key": "R0UTINGKEY0123456789abcd"})
    assert "secret" not in api.get(f"/v1/alert-channels/{hook['id']}").json
    listed = json.dumps(api.get("/v1/alert-channels").json)
    for secret in (hook["secret"], "k-123456", "XXXXSECRET", "R0UTINGKEY0123456789abcd"):
        assert secret not in listed
    assert api.get(f"/v1/alert-channels/{slack['id']}").json["config"] == {
        "webhook_url": "https://hooks.slack.com/services/********"
    }
    assert api.get(f"/v1/alert-channels/{pager['id']}").json["config"] == {"routing_key": "R0UT********"}
    # sending the masked values back keeps the stored secrets
    shown = api.get(f"/v1/alert-channels/{hook['id']}").json["config"]
    assert shown["headers"] == {"X-Api-Key": "********"}
    assert api.patch(f"/v1/alert-channels/{hook['id']}", {"config": shown, "name": "Renamed"}).status == 200
    stored = stored_channel_config(alice["team"]["id"], hook["id"])
    assert (stored["headers"], stored["secret"]) == ({"X-Api-Key": "k-123456"}, hook["secret"])
    assert (
        api.patch(
            f"/v1/alert-channels/{slack['id']}",
            {"config": {"webhook_url": "https://hooks.slack.com/services/********"}},
        ).status
        == 200
    )
    assert stored_channel_config(alice["team"]["id"], slack["id"])["webhook_url"].endswith("XXXXSECRET")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": "slack", "config": {"webhook_url": "https://example.com/services/x"}}, "config.webhook_url"),
        ({"type": "slack", "config": {"webhook_url": "http://hooks.slack.com/services/x"}}, "config.webhook_url"),
        ({"type": "discord", "config": {"webhook_url": "https://discord.com/other"}}, "config.webhook_url"),
        ({"type": "email", "config": {"addresses": ["not-an-address"]}}, "config.addresses"),
        ({"type": "email", "config": {}}, "config.addresses"),
        ({"type": "sms", "config": {"phone_numbers": ["555-0123"]}}, "config.phone_numbers.0"),
        ({"type": "webhook", "config": {"url": "ftp://x.example/"}}, "config.url"),
        (
            {"type": "webhook", "config": {"url": "https://x.example/", "headers": {"webhook-id": "x"}}},
            "config.headers",
        ),
        ({"type": "webhook", "config": {"url": "https://x.example/", "extra": 1}}, "config.extra"),
        ({"type": "carrier-pigeon", "config": {}}, "type"),
        ({"type": "email", "config": {"addresses": ["a@b.co,evil@d.co"]}}, "config.addresses"),
        ({"type": "email", "config": {"addresses": ["a\u0000@b.co"]}}, "config.addresses"),
        (
            {"type": "webhook", "config": {"url": "https://x.example/", "headers": {"X-Note": "caf\u2603"}}},
            "config.headers",
        ),
        (
            {"type": "webhook", "config": {"url": "https://x.example/", "headers": {"X-Note": "a\u0007"}}},
            "config.headers",
        ),
        ({"type": "pagerduty", "config": {"routing_key": "R0UT********"}}, "config"),
        ({"type": "email", "config": {"addresses": ["a@b.co"]}, "notify_on": ["sometimes"]}, "notify_on.0"),
    ],
)
def test_bad_channels_are_422_naming_the_field(api, alice, fields, field):
    r = api.post("/v1/alert-channels", {"name": "x", **fields})
    assert r.status == 422, r.body
    assert field in [e["field"] for e in r.json["errors"]]


def test_urls_pass_the_ssrf_guard(api, alice):
    r = api.post("/v1/alert-channels", {"name": "x", "type": "webhook", "config": {"url": "http://127.0.0.1:9/"}})
    assert r.status == 422
    assert (r.json["code"], r.json["errors"][0]["field"]) == ("destination_not_allowed", "config.url")


def test_channels_belong_to_their_team(api, alice, charlie):
    mine = create_channel(api, type="email", config={"addresses": ["ops@example.com"]})
    other = api.acting_as(charlie)
    for method, path in (
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/test"),
        ("GET", "/deliveries"),
    ):
        body = {"name": "x"} if method == "PATCH" else None
        assert other.request(method, f"/v1/alert-channels/{mine['id']}{path}", body).status == 404
    r = other.post("/v1/monitors", {"name": "m", "url": "https://x.example.invalid/", "channel_ids": [mine["id"]]})
    assert r.status == 404
    monitor = create_monitor(api, url="https://x.example.invalid/", channel_ids=[mine["id"]])
    assert api.delete(f"/v1/alert-channels/{mine['id']}").status == 204
    assert api.get(f"/v1/monitors/{monitor['id']}").json["channel_ids"] == []


def test_a_webhook_url_with_a_token_is_masked_and_kept_when_sent_back(api, alice):
    hook = create_channel(
        api, type="webhook", config={"url": "https://hooks.example.invalid/in?token=supersecret123&v=2"}
    )
    shown = api.get(f"/v1/alert-channels/{hook['id']}").json["config"]
    assert shown["url"] == "https://hooks.example.invalid/in?token=********&v=2"
    assert "supersecret123" not in json.dumps(hook)
    assert api.patch(f"/v1/alert-channels/{hook['id']}", {"config": shown}).status == 200
    stored = stored_channel_config(alice["team"]["id"], hook["id"])["url"]
    assert stored == "https://hooks.example.invalid/in?token=supersecret123&v=2"
    r = api.patch(
        f"/v1/alert-channels/{hook['id']}", {"config": {"url": "https://other.example.invalid/?token=********"}}
    )
    assert r.status == 422


def test_a_masked_chat_url_only_ever_keeps_the_stored_one(api, alice):
    r = api.post(
        "/v1/alert-channels",
        {"name": "x", "type": "slack", "config": {"webhook_url": "https://evil.example.com/a/********"}},
    )
    assert r.status == 422
    slack = create_channel(
        api, type="slack", config={"webhook_url": "https://hooks.slack.com/services/T0/B0/SECRETXYZ"}
    )
    r = api.patch(
        f"/v1/alert-channels/{slack['id']}", {"config": {"webhook_url": "https://evil.example.com/services/********"}}
    )
    assert r.status == 422
    stored = stored_channel_config(alice["team"]["id"], slack["id"])["webhook_url"]
    assert stored == "https://hooks.slack.com/services/T0/B0/SECRETXYZ"


def test_every_webhook_header_value_is_masked_and_kept_only_for_the_same_receiver(api, alice):
    headers = {"X-Hub-Sig": "sig-0123456789", "X-Team": "ops"}
    hook = create_channel(api, type="webhook", config={"url": "https://hooks.example.invalid/in", "headers": headers})
    shown = api.get(f"/v1/alert-channels/{hook['id']}").json["config"]
    assert shown["headers"] == {"X-Hub-Sig": "********", "X-Team": "********"}  # any name can be a credential
    assert "sig-0123456789" not in json.dumps(api.get("/v1/alert-channels").json)
    # the same receiver: the masked values keep the stored ones
    same = {"url": "https://hooks.example.invalid/other-path", "headers": shown["headers"]}
    assert api.patch(f"/v1/alert-channels/{hook['id']}", {"config": same}).status == 200
    assert stored_channel_config(alice["team"]["id"], hook["id"])["headers"] == headers
    # another host: a stored credential never follows the channel there
    moved = {"url": "https://collector.example.invalid/in", "headers": shown["headers"]}
    r = api.patch(f"/v1/alert-channels/{hook['id']}", {"config": moved})
    assert r.status == 422, r.body
    assert r.json["errors"][0]["field"] == "config"
    stored = stored_channel_config(alice["team"]["id"], hook["id"])
    assert (stored["url"], stored["headers"]) == ("https://hooks.example.invalid/other-path", headers)


def test_a_pagerduty_key_sent_back_masked_is_kept(api, alice):
    pager = create_channel(api, type="pagerduty", config={"routing_key": "R0UTINGKEY0123456789abcd"})
    shown = api.get(f"/v1/alert-channels/{pager['id']}").json["config"]
    assert api.patch(f"/v1/alert-channels/{pager['id']}", {"config": shown, "name": "Pager"}).status == 200
    assert stored_channel_config(alice["team"]["id"], pager["id"])["routing_key"] == "R0UTINGKEY0123456789abcd"
    r = api.patch(f"/v1/alert-channels/{pager['id']}", {"config": {"routing_key": "XXXX********"}})
    assert r.status == 422, r.body


def test_the_api_offers_every_registered_kind_and_notify_on_name(api, alice):
    from chalicelib.alerts.kinds import KINDS
    from chalicelib.alerts.notification import NOTIFY_ON_CHOICES

    schemas = api.get("/openapi.json").json["components"]["schemas"]
    assert schemas["ChannelIn"]["properties"]["type"]["enum"] == list(KINDS)
    assert schemas["ChannelOut"]["properties"]["notify_on"]["items"]["enum"] == list(NOTIFY_ON_CHOICES)
    r = api.post("/v1/alert-channels", {"name": "Ops", "type": "carrier-pigeon", "config": {}})
    assert r.status == 422, r.body
    assert r.json["errors"][0]["field"] == "type"
