"""POST /v1/monitors/{id}/test: one real check now, against a loopback server, returned and not stored."""

from __future__ import annotations

import pytest

from chalicelib.monitors.models import PackModel, PeriodModel
from tests.factories import create_monitor
from tests.support import make_test_settings


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
