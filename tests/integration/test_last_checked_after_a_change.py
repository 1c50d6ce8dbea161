"""last_checked_at (api.monitors.last_checks) knows the tick at minute T plans T+1: no check shown before one ran."""

from __future__ import annotations

from datetime import UTC, datetime

import time_machine

from chalicelib.monitors.models import ProgressModel
from chalicelib.scheduler.service import run_tick
from tests.integration.test_scheduler import drain
from tests.support import PASSWORD

URL = "https://1.1.1.1/health"


def test_last_checked_at_never_shows_a_start_of_the_minute_after_the_change(api, alice, settings):
    """The tick at 14:00:00 planned 14:01 before the monitor existed (created 14:00:04): minute 14:01 never checks
    it, yet once the workers' progress reaches 14:01 the API says it was checked then."""
    with time_machine.travel(datetime(2026, 12, 6, 14, 0, 0, tzinfo=UTC), tick=False):
        token = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).json["access_token"]
        run_tick(datetime(2026, 12, 6, 14, 0, 0, tzinfo=UTC))  # plans 14:01
    with time_machine.travel(datetime(2026, 12, 6, 14, 0, 4, tzinfo=UTC), tick=False):
        m = api.post("/v1/monitors", {"name": "m", "url": URL, "regions": ["us-east-1"]}, token=token).json
    with time_machine.travel(datetime(2026, 12, 6, 14, 1, 0, tzinfo=UTC), tick=False):
        run_tick(datetime(2026, 12, 6, 14, 1, 0, tzinfo=UTC))  # plans 14:02
    with time_machine.travel(datetime(2026, 12, 6, 14, 2, 30, tzinfo=UTC), tick=False):  # past the SQS delay
        jobs = [job for job, _ in drain(settings, "us-east-1") if job.monitor_id == m["id"]]
    assert jobs
    assert all(job.slot >= datetime(2026, 12, 6, 14, 2, tzinfo=UTC) for job in jobs)  # no job in 14:01

    ProgressModel("checks#us-east-1", through=datetime(2026, 12, 6, 14, 1, tzinfo=UTC)).save()  # 14:01 all stored
    with time_machine.travel(datetime(2026, 12, 6, 14, 2, 30, tzinfo=UTC), tick=False):
        shown = api.get(f"/v1/monitors/{m['id']}", token=token).json["last_checked_at"]
    assert shown is None, f"claims a check at {shown} that no tick ever planned"
