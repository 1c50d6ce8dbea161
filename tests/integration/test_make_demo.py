"""``make demo`` (``python -m chalicelib.local --demo``): the stack starts seeded, the demo account signs in, and on
the demo service's timer (driven fast here: a step of 3 s instead of a minute, and ticks forced instead of waiting
for each minute) an incident opens and resolves, its alerts reach the webhook receiver signed (every cycle's), a
monitor is degraded, every region checks, and the public status page shows the outage and its bars their history."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from chalicelib.local import demo
from tests.integration.test_make_dev import free_port, local_stack, wait_for_health

BUDGET_SECONDS = 90
# A forced tick runs every scheduled handler before it answers: on a loaded machine (the suite's other workers) that
# has taken more than 10 s.
TICK_SECONDS = 45


def call(method: str, url: str, body: Any = None, token: str = "", timeout: float = 10) -> tuple[int, Any]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def wait_for_line(log: Path, text: str, process: subprocess.Popen, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if text in log.read_text():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.timeout(300)  # its own waits bound it (two demo cycles, forced ticks of up to TICK_SECONDS each)
def test_make_demo_seeds_a_living_demo_where_an_incident_opens_and_resolves(tmp_path):
    port, demo_port = free_port(), free_port()
    log_path = tmp_path / "demo.log"
    stack = local_stack(
        log_path,
        port,
        "--demo",
        APP_URL=f"http://127.0.0.1:{port}",
        STRIPE_API_BASE="",  # no stand-in: another test may hold its port
        CHECK_REGIONS="us-east-1,eu-west-1,ap-southeast-1",  # whatever a developer's .env says
        ALLOW_PRIVATE_TARGETS="true",
        VIGIL_DEMO_PORT=str(demo_port),
        VIGIL_DEMO_STEP_SECONDS="3",
    )
    api, service = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{demo_port}"
    with stack as process:
        assert wait_for_health(f"{api}/health", process) == 200, log_path.read_text()
        assert wait_for_line(log_path, "The demo is running", process), log_path.read_text()
        output = log_path.read_text()
        assert demo.EMAIL in output
        assert demo.PASSWORD in output

        status, signed_in = call("POST", f"{api}/v1/auth/login", {"email": demo.EMAIL, "password": demo.PASSWORD})
        assert status == 200, signed_in
        token = signed_in["access_token"]
        monitors = {m["name"]: m for m in call("GET", f"{api}/v1/monitors", token=token)[1]["data"]}
        assert set(monitors) == {"Homepage", "Orders API", "Checkout", "Demo service port"}
        orders = monitors["Orders API"]["id"]
        onboarding = call("GET", f"{api}/v1/me/onboarding", token=token)[1]
        assert [s["key"] for s in onboarding["steps"] if not s["done"]] == ["invite_teammate"]

        resolved = None
        deadline = time.monotonic() + BUDGET_SECONDS
        while resolved is None and time.monotonic() < deadline and process.poll() is None:
            assert call("POST", f"{api}/dev/tick", timeout=TICK_SECONDS)[0] == 200
            time.sleep(1.0)
            incidents = call("GET", f"{api}/v1/incidents?monitor_id={orders}", token=token)[1]["data"]
            resolved = next((i for i in incidents if i["status"] == "resolved"), None)
        assert resolved is not None, log_path.read_text()[-3000:]

        incident = call("GET", f"{api}/v1/incidents/{resolved['id']}", token=token)[1]
        kinds = [entry["type"] for entry in incident["timeline"]]
        assert "opened" in kinds, kinds
        assert "resolved" in kinds, kinds
        assert incident["cause"] == "HTTP 503"

        results = call("GET", f"{api}/v1/monitors/{orders}/results?limit=100", token=token)[1]["data"]
        assert {r["region"] for r in results} == {"us-east-1", "eu-west-1", "ap-southeast-1"}
        checkout = call("GET", f"{api}/v1/monitors/{monitors['Checkout']['id']}/results?limit=100", token=token)[1]
        assert any(r["degraded"] for r in checkout["data"])

        page = call("GET", f"{api}/v1/public/status-pages/{demo.STATUS_SLUG}")[1]
        assert any(i["id"] == resolved["id"] for i in page["recent_incidents"]), page
        orders_bars = next(c for c in page["components"] if c["name"] == "Orders API")["days"]
        assert all(day["uptime_pct"] is not None for day in orders_bars[:-1])  # the seeded history
        assert page["components"][0]["uptime_90d"] is not None

        # Every cycle alerts (no cooldown): wait for the next cycle's incident to reach the receiver too.
        opened: list = []
        deadline = time.monotonic() + BUDGET_SECONDS
        while len(opened) < 2 and time.monotonic() < deadline and process.poll() is None:
            assert call("POST", f"{api}/dev/tick", timeout=TICK_SECONDS)[0] == 200
            time.sleep(1.0)
            hooks = call("GET", f"{service}/_demo/webhooks")[1]["data"]
            opened = [h for h in hooks if (h["type"], h["monitor"]) == ("incident.opened", "Orders API")]
        assert len(opened) >= 2, hooks
        assert all(h["signature_valid"] for h in hooks), hooks
        assert any(h["type"] == "incident.resolved" and h["monitor"] == "Orders API" for h in hooks), hooks

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    # Until Ctrl-C, nothing failed.  (Stopping can still log a request the emulator was serving as it stopped:
    # the local stack's shutdown order, not the demo's doing.)
    assert "Traceback" not in log_path.read_text().split("stopping…")[0]
