"""Secrets stay with those who may change them (issue 19): a monitor's URL query credentials, its body's credentials,
a heartbeat's ping token and a webhook's path token are masked for whoever reads them, more so for whoever cannot
change them; sent back masked, a value keeps the stored one, for the same receiver only."""

from __future__ import annotations

import pytest

from chalicelib.monitors.models import MonitorModel
from tests.factories import create_channel, create_heartbeat, create_monitor
from tests.support import make_test_settings, stored_channel_config

URL = "https://shop.example.invalid/health?api_key=url-secret-0001&region=eu-west-one"
BODY = '{"user": "probe-user", "password": "body-secret-0002", "attempts": 3}'
HEADERS = {"Authorization": "Bearer header-secret-0003", "X-Tenant": "tenant-0004"}
SECRETS = ("url-secret-0001", "body-secret-0002", "header-secret-0003")


@pytest.fixture
def settings():
    return make_test_settings(ALLOW_PRIVATE_TARGETS="true")  # the webhook receiver below is a loopback server


@pytest.fixture
def carol(teammate):
    """Carol, a viewer of Alice's team."""
    return teammate("carol@example.com", role="viewer")


def reads(api, path: str) -> tuple[dict, str]:
    """The object at ``path`` and every byte of its list's and its own answers, as text."""
    one = api.get(path)
    assert one.status == 200, one.body
    return one.json, api.get(path.rsplit("/", 1)[0]).text + one.text


def test_a_viewer_sees_no_value_of_a_monitors_request(api, alice, carol):
    m = create_monitor(api, url=URL, method="POST", headers=HEADERS, body=BODY)
    shown, everything = reads(api.acting_as(carol), f"/v1/monitors/{m['id']}")

    assert shown["url"] == "https://shop.example.invalid/health?api_key=********&region=********"
    assert shown["headers"] == {"Authorization": "********", "X-Tenant": "********"}
    assert shown["body"] == "********"
    for value in (*SECRETS, "eu-west-one", "probe-user", "tenant-0004"):
        assert value not in everything


def test_a_member_sees_the_request_with_its_credentials_masked(api, alice, bob):
    m = create_monitor(api, url=URL, method="POST", headers=HEADERS, body=BODY)
    shown, everything = reads(api.acting_as(bob), f"/v1/monitors/{m['id']}")

    assert shown["url"] == "https://shop.example.invalid/health?api_key=********&region=eu-west-one"
    assert shown["headers"] == {"Authorization": "********", "X-Tenant": "tenant-0004"}
    assert shown["body"] == '{"user": "probe-user", "password": "********", "attempts": 3}'
    for secret in SECRETS:
        assert secret not in everything
    assert m == {**shown, "last_checked_at": m["last_checked_at"]}  # its creator is shown no more


def test_a_read_only_api_key_is_shown_what_a_viewer_is(api, alice):
    m = create_monitor(api, url=URL, method="POST", body=BODY)
    key = api.post("/v1/api-keys", {"name": "dashboard", "scopes": ["monitors:read"]}).json["key"]
    shown = api.get(f"/v1/monitors/{m['id']}", token=key).json
    assert (shown["url"], shown["body"]) == (
        "https://shop.example.invalid/health?api_key=********&region=********",
        "********",
    )


def test_masked_values_sent_back_keep_the_stored_ones_and_the_rest_changes(api, alice, bob):
    m = create_monitor(api, url=URL, method="POST", body=BODY)
    as_bob = api.acting_as(bob)
    url = m["url"].replace("/health", "/ready").replace("eu-west-one", "us-east-one")
    body = m["body"].replace("probe-user", "other-user")
    r = as_bob.patch(f"/v1/monitors/{m['id']}", {"url": url, "body": body})
    assert r.status == 200, r.body
    assert (r.json["url"], r.json["body"]) == (url, body)

    stored = MonitorModel.get(alice["team"]["id"], m["id"])
    assert stored.url == "https://shop.example.invalid/ready?api_key=url-secret-0001&region=us-east-one"
    assert stored.body == '{"user": "other-user", "password": "body-secret-0002", "attempts": 3}'
    # the whole body sent back as a viewer reads it keeps it too
    assert api.patch(f"/v1/monitors/{m['id']}", {"body": "********"}).status == 200
    assert MonitorModel.get(alice["team"]["id"], m["id"]).body == stored.body


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"url": "https://collector.example.invalid/health?api_key=********"}, "url"),
        ({"url": "https://shop.example.invalid/health?session=********"}, "url"),  # nothing stored to keep
        ({"url": "https://collector.example.invalid/health", "body": '{"password": "********"}'}, "body"),
        ({"url": "https://collector.example.invalid/health", "body": "********"}, "body"),
        ({"url": "https://collector.example.invalid/health"}, "body"),  # the body's credential stays behind
        ({"body": '{"password": "********", "pin": "********"}'}, "body"),
    ],
)
def test_a_masked_value_with_nothing_of_the_same_receiver_to_keep_is_refused(api, alice, bob, change, field):
    m = create_monitor(api, url=URL, method="POST", body=BODY)
    r = api.acting_as(bob).patch(f"/v1/monitors/{m['id']}", change)
    assert r.status == 422, r.body
    assert [e["field"] for e in r.json["errors"]] == [field]
    stored = MonitorModel.get(alice["team"]["id"], m["id"])
    assert (stored.url, stored.body) == (URL, BODY)  # nothing changed


def test_a_monitor_moved_with_values_of_its_own_takes_them(api, alice, bob):
    m = create_monitor(api, url=URL, method="POST", body=BODY)
    moved = {"url": "https://collector.example.invalid/h?api_key=bobs-key", "body": '{"password": "bobs"}'}
    assert api.acting_as(bob).patch(f"/v1/monitors/{m['id']}", moved).status == 200
    stored = str(MonitorModel.get(alice["team"]["id"], m["id"]).attribute_values)
    assert "url-secret-0001" not in stored
    assert "body-secret-0002" not in stored


def test_a_heartbeats_ping_token_is_for_those_who_may_change_it(api, alice, bob, carol):
    m = create_heartbeat(api)
    token = m["ping_url"].rsplit("/", 1)[-1]
    assert api.acting_as(bob).get(f"/v1/monitors/{m['id']}").json["ping_url"] == m["ping_url"]
    shown, everything = reads(api.acting_as(carol), f"/v1/monitors/{m['id']}")
    assert shown["ping_url"] == "https://app.vigil.test/v1/ping/********"
    assert token not in everything


HOOK_PATH = "/hooks/T0KEN-path-secret-0005"


def test_a_webhook_url_past_its_first_segment_is_for_those_who_manage_channels(api, alice, bob, carol):
    url = f"https://hooks.example.invalid{HOOK_PATH}?token=query-secret-0006&v=2"
    hook = create_channel(api, type="webhook", config={"url": url})
    owners = api.get(f"/v1/alert-channels/{hook['id']}").json["config"]["url"]
    assert owners == f"https://hooks.example.invalid{HOOK_PATH}?token=********&v=2"
    for reader in (bob, carol):
        shown, everything = reads(api.acting_as(reader), f"/v1/alert-channels/{hook['id']}")
        assert shown["config"]["url"] == "https://hooks.example.invalid/hooks/********"
        assert "T0KEN-path-secret-0005" not in everything
        assert "query-secret-0006" not in everything
    # what the owner reads, sent back with another query value changed, keeps the token
    r = api.patch(f"/v1/alert-channels/{hook['id']}", {"config": {"url": owners.replace("v=2", "v=3")}})
    assert r.status == 200, r.body
    stored = stored_channel_config(alice["team"]["id"], hook["id"])["url"]  # unsealed, as a sender reads it
    assert stored == f"https://hooks.example.invalid{HOOK_PATH}?token=query-secret-0006&v=3"


def test_a_receiver_echoing_the_webhooks_path_shows_no_token_in_the_deliveries(api, alice, bob, httpserver):
    httpserver.expect_request(HOOK_PATH).respond_with_data(f"no route for POST {HOOK_PATH}", status=404)
    hook = create_channel(api, type="webhook", config={"url": httpserver.url_for(HOOK_PATH)})
    tested = api.post(f"/v1/alert-channels/{hook['id']}/test")
    assert tested.status == 200, tested.body
    assert tested.json["log"][0]["excerpt"] == "no route for POST /hooks/[redacted]"
    deliveries = api.acting_as(bob).get(f"/v1/alert-channels/{hook['id']}/deliveries")
    assert deliveries.status == 200
    assert "T0KEN-path-secret-0005" not in deliveries.text


def test_a_target_echoing_the_credentials_shows_them_in_no_test_check_nor_stored_result(api, alice, bob, httpserver):
    # found by a fresh-eyes review of issue 19: a member sets an assertion the echo fails, and its "actual" value
    # (or the error's detail) was the stored credential, opened for the check
    echoed = {"seen": "Bearer header-secret-0003", "token": "header-secret-0003"}
    httpserver.expect_request("/echo").respond_with_json(echoed)
    url = httpserver.url_for("/echo")
    assertions = [
        {"source": "json_body", "property": "$.seen", "comparison": "equals", "target": "nothing"},
        {"source": "json_body", "property": "$.token", "comparison": "equals", "target": "nothing"},
    ]
    m = create_monitor(api, url=url, headers=HEADERS, assertions=assertions)

    r = api.acting_as(bob).post(f"/v1/monitors/{m['id']}/test")

    assert r.status == 200, r.body
    assert httpserver.log
    assert httpserver.log[0][0].headers["Authorization"] == HEADERS["Authorization"]  # it was sent
    assert len(r.json["assertion_failures"]) == 2  # the assertions failed, and say so
    assert all("[redacted]" in failure for failure in r.json["assertion_failures"]), r.json["assertion_failures"]
    assert "header-secret-0003" not in r.text

    from chalicelib.checks import kinds, ssrf
    from chalicelib.monitors.checking import spec_from
    from chalicelib.monitors.service import get as get_monitor

    with ssrf.lookups_for(alice["team"]["id"]):  # as the worker runs each team's checks
        stored = kinds.run(spec_from(get_monitor(alice["team"]["id"], m["id"])), region="eu-west-1", allow_private=True)
    assert len(stored.assertion_failures) == 2  # a scheduled check's result: the worker runs the same
    assert "header-secret-0003" not in repr(stored)


def test_a_target_echoing_the_urls_and_the_bodys_credentials_shows_them_in_no_test_check(api, alice, bob, httpserver):
    # found by a fresh-eyes review of issue 19: only the credential headers' values were redacted, and a member (who
    # reads the URL's and the body's credentials masked) moved the path to an echo of the same origin to read them
    echoed = {"args": {"api_key": "url-secret-0001"}, "json": {"password": "body-secret-0002"}}
    httpserver.expect_request("/anything").respond_with_json(echoed)
    m = create_monitor(api, url=httpserver.url_for("/health") + "?api_key=url-secret-0001", method="POST", body=BODY)
    as_bob = api.acting_as(bob)
    url = as_bob.get(f"/v1/monitors/{m['id']}").json["url"].replace("/health", "/anything")
    assertions = [
        {"source": "json_body", "property": "$.args.api_key", "comparison": "equals", "target": "nothing"},
        {"source": "json_body", "property": "$.json.password", "comparison": "equals", "target": "nothing"},
    ]
    assert as_bob.patch(f"/v1/monitors/{m['id']}", {"url": url, "assertions": assertions}).status == 200

    r = as_bob.post(f"/v1/monitors/{m['id']}/test")

    assert r.status == 200, r.body
    assert httpserver.log[0][0].args["api_key"] == "url-secret-0001"  # they were sent
    assert len(r.json["assertion_failures"]) == 2
    assert all("[redacted]" in failure for failure in r.json["assertion_failures"]), r.json["assertion_failures"]
    assert "url-secret-0001" not in r.text
    assert "body-secret-0002" not in r.text


def test_a_long_credential_echoed_shows_no_part_of_it_where_its_value_is_cut_short(api, alice, bob, httpserver):
    # found by a fresh-eyes review of issue 19: an assertion shows 63 characters of the value it got, then "…", and
    # only a credential cut off at the very end of the text was redacted: a long token showed all but its tail
    token = "tok" + "0123456789abcdef" * 5  # 83 characters, as long API keys and JWTs are
    httpserver.expect_request("/echo").respond_with_json({"seen": token, "wrapped": f"key={token}"})
    assertions = [
        {"source": "json_body", "property": "$.seen", "comparison": "equals", "target": "nothing"},
        {"source": "json_body", "property": "$.wrapped", "comparison": "equals", "target": "nothing"},
    ]
    m = create_monitor(api, url=httpserver.url_for("/echo"), headers={"X-Api-Key": token}, assertions=assertions)

    r = api.acting_as(bob).post(f"/v1/monitors/{m['id']}/test")

    assert r.status == 200, r.body
    assert len(r.json["assertion_failures"]) == 2
    assert all("[redacted]" in failure for failure in r.json["assertion_failures"]), r.json["assertion_failures"]
    assert token[:12] not in r.text
