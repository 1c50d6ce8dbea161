"""scheduler.service.send_delay for a tick that runs after its planned minute began."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chalicelib.scheduler.due import planned_start
from chalicelib.scheduler.service import LEAD_SECONDS, send_delay

MINUTE = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_a_late_ticks_second_send_arrives_before_its_starts():
    """The tick for 12:00 runs at 12:00:20 (a cold start, a Lambda async retry, a 10,000-monitor parse): the first
    send goes at once, but the second still waits a full 30 s, reaching the worker at 12:00:50 — while its
    30-second monitors' second starts are planned from 12:00:35 on: up to 15 s late, every one of them."""
    now = MINUTE + timedelta(seconds=20)
    earliest_second_start = min(planned_start(MINUTE, f"mon_{i}", 30, 30) for i in range(200))
    assert earliest_second_start == MINUTE + timedelta(seconds=35)
    visible_at = now + timedelta(seconds=send_delay(MINUTE, 30, now))
    assert visible_at <= MINUTE + timedelta(seconds=30 - LEAD_SECONDS), visible_at
