"""POST /v1/monitors/{id}/test: one real check now, against a loopback server, returned and not stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.monitors.models import MonitorModel, PackModel, PeriodModel
from tests.factories import create_monitor
from tests.support import make_test_settings, stored_headers


@pytest.fixture
def settings():
    return make_test_settings(ALLOW_PRIVATE_TARGETS="true")  # the local stage lets a developer check loopback


def test_it_runs_one_check_and_stores_nothing(api, alice, httpserver):
    httpserver.expect_request("/health", headers={"X-Probe": "vigil"}).respond_with_json({"status": "ok"})
    m = create_monitor(
        api,
        name="Local",
        url=httpserver.url_for("/health"),
        headers={"X-Probe": "vigil"},
        assertions=[{"source": "json_body", "property": "$.status", "comparison": "equals", "target": "ok"}],
    )
    r = api.post(f"/v1/monitors/{m['id']}/test")
    assert r.status == 200, r.body
    result = r.json
    assert result["ok"] is True
    assert result["status_code"] == 200
    assert result["error"] is None
    assert result["assertion_failures"] == []
    assert result["region"] == "us-east-1"
    assert set(result["timings"]) == {"dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "total_ms"}
    assert result["timings"]["total_ms"] >= result["timings"]["ttfb_ms"] > 0
    assert len(httpserver.log) == 1
    assert list(PackModel.scan()) == []  # a test check is not stored
    assert list(PeriodModel.scan()) == []


def test_a_failing_assertion_is_reported(api, alice, httpserver):
    httpserver.expect_request("/health").respond_with_json({"status": "degraded"})
    m = create_monitor(
        api,
        name="Local",
        url=httpserver.url_for("/health"),
        assertions=[{"source": "json_body", "property": "$.status", "comparison": "equals", "target": "ok"}],
    )
    result = api.post(f"/v1/monitors/{m['id']}/test").json
    assert result["ok"] is False
    assert result["error"] == "assertion_failed"
    assert len(result["assertion_failures"]) == 1


def test_a_closed_port_is_connection_refused(api, alice):
    m = create_monitor(api, name="Closed", url="http://127.0.0.1:9/")
    result = api.post(f"/v1/monitors/{m['id']}/test").json
    assert result["ok"] is False
    assert result["error"] == "connection_refused"
    assert "127.0.0.1" not in (result["error_detail"] or "")


SECRET = "Bearer alices-production-token"


def test_a_stored_credential_never_follows_the_monitor_to_another_receiver(api, alice, bob, httpserver):
    """Bob (an editor) points Alice's monitor at a server of his and runs /test: the stored Authorization stays
    behind; a header without a secret moves with it; the monitor keeps working once he sends a value of his own."""
    httpserver.expect_request("/steal").respond_with_data("ok")
    m = create_monitor(
        api, url=httpserver.url_for("/health"), headers={"Authorization": SECRET, "Accept": "text/plain"}
    )
    elsewhere = httpserver.url_for("/steal").replace("localhost", "127.0.0.1")  # another host, same server
    as_bob = api.acting_as(bob)

    r = as_bob.patch(f"/v1/monitors/{m['id']}", {"url": elsewhere})
    assert r.status == 200, r.body
    assert r.json["headers"] == {"Accept": "text/plain"}
    assert as_bob.post(f"/v1/monitors/{m['id']}/test").status == 200

    (sent,) = [request for request, _ in httpserver.log if request.path == "/steal"]
    assert "Authorization" not in sent.headers
    assert sent.headers["Accept"] == "text/plain"
    stored = MonitorModel.get(alice["team"]["id"], m["id"])
    assert SECRET not in str(stored.attribute_values)


def test_a_masked_credential_sent_back_with_another_receiver_is_refused(api, alice, bob, httpserver):
    m = create_monitor(api, url=httpserver.url_for("/health"), headers={"Authorization": SECRET})
    elsewhere = httpserver.url_for("/health").replace("localhost", "127.0.0.1")
    as_bob = api.acting_as(bob)

    r = as_bob.patch(f"/v1/monitors/{m['id']}", {"url": elsewhere, "headers": m["headers"]})
    assert r.status == 422, r.body
    assert r.json["errors"][0]["field"] == "headers"
    assert MonitorModel.get(alice["team"]["id"], m["id"]).url == httpserver.url_for("/health")  # nothing changed
    # The same receiver (another path) keeps it; a new value for the new receiver is taken.
    same = httpserver.url_for("/other")
    assert as_bob.patch(f"/v1/monitors/{m['id']}", {"url": same, "headers": m["headers"]}).status == 200
    assert stored_headers(alice["team"]["id"], m["id"]) == {"Authorization": SECRET}
    r = as_bob.patch(f"/v1/monitors/{m['id']}", {"url": elsewhere, "headers": {"Authorization": "Bearer bobs"}})
    assert r.status == 200, r.body


def test_no_url_key_or_body_credential_follows_the_monitor_to_another_receiver(api, alice, bob, httpserver):
    """Bob (an editor) reads Alice's monitor with its key and password masked, and tries to point it at a server of
    his with them: refused until he sends values of his own, which are all /test sends there."""
    httpserver.expect_request("/steal").respond_with_data("ok")
    body = '{"user": "probe", "password": "alices-body-secret"}'
    m = create_monitor(api, url=httpserver.url_for("/health?key=alices-url-key"), method="POST", body=body)
    elsewhere = httpserver.url_for("/steal").replace("localhost", "127.0.0.1")  # another host, same server
    as_bob = api.acting_as(bob)
    shown = as_bob.get(f"/v1/monitors/{m['id']}").json
    assert (shown["url"], shown["body"]) == (m["url"], m["body"])
    assert "alices" not in m["url"] + m["body"]

    for change in ({"url": elsewhere}, {"url": f"{elsewhere}?key=********", "body": shown["body"]}):
        assert as_bob.patch(f"/v1/monitors/{m['id']}", change).status == 422
    mine = {"url": f"{elsewhere}?key=bobs", "body": '{"user": "probe", "password": "bobs"}'}
    assert as_bob.patch(f"/v1/monitors/{m['id']}", mine).status == 200
    assert as_bob.post(f"/v1/monitors/{m['id']}/test").status == 200

    (sent,) = [request for request, _ in httpserver.log if request.path == "/steal"]
    assert "alices" not in sent.url + sent.get_data(as_text=True)
    assert sent.get_data(as_text=True) == mine["body"]


def test_a_team_runs_at_most_30_test_checks_every_10_minutes(api, alice, bob, charlie, httpserver):
    # found by a fresh-eyes review of issue 19: each test check is a request from Vigil, at up to the API's per-user
    # rate (1,200 a minute): a member could point Vigil's API at any site as a flood
    import time_machine

    from chalicelib.monitors.checking import TEST_CHECK_WINDOW_S, TEST_CHECKS_PER_WINDOW
    from chalicelib.ratelimit import service as ratelimit

    httpserver.expect_request("/health").respond_with_data("ok")
    ours = create_monitor(api, url=httpserver.url_for("/health"))
    theirs = create_monitor(api.acting_as(charlie), url=httpserver.url_for("/health"))
    start = datetime.now(UTC).replace(microsecond=0)
    resets = ratelimit.resets_in(TEST_CHECK_WINDOW_S, start)
    with time_machine.travel(start, tick=False):
        answers = [
            (api if n % 2 else api.acting_as(bob)).post(f"/v1/monitors/{ours['id']}/test").status
            for n in range(TEST_CHECKS_PER_WINDOW + 1)
        ]
        over = api.post(f"/v1/monitors/{ours['id']}/test")
        elsewhere = api.acting_as(charlie).post(f"/v1/monitors/{theirs['id']}/test")

    assert answers == [200] * TEST_CHECKS_PER_WINDOW + [429]  # the team's, whoever in it asks
    assert (over.status, over.json["code"]) == (429, "rate_limited")
    assert int(over.headers["retry-after"]) == resets
    assert len(httpserver.log) == TEST_CHECKS_PER_WINDOW + 1  # refused ones sent nothing; charlie's team had its own
    assert elsewhere.status == 200
    with time_machine.travel(start + timedelta(seconds=resets), tick=False):
        assert api.post(f"/v1/monitors/{ours['id']}/test").status == 200
