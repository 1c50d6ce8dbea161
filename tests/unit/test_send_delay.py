"""scheduler.service.send_delay for a tick that runs after its planned minute began."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chalicelib.scheduler.due import planned_start
from chalicelib.scheduler.service import LEAD_SECONDS, send_delay

MINUTE = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_a_late_ticks_send_goes_at_once_and_reaches_the_minutes_second_half_in_time():
    """The tick for 12:00 runs at 12:00:20 (a cold start, a Lambda async retry, a 10,000-monitor parse): its one
    send goes at once, and carries the 30-second monitors' second checks too, planned from 12:00:35 on.  (Sent
    apart 30 s later, as before session 16, it reached the worker at 12:00:50: up to 15 s late, every one.)"""
    now = MINUTE + timedelta(seconds=20)
    earliest_second_start = min(planned_start(MINUTE, f"mon_{i}", 30, 30) for i in range(200))
    assert earliest_second_start == MINUTE + timedelta(seconds=35)
    assert send_delay(MINUTE, now) == 0
    assert send_delay(MINUTE, MINUTE - timedelta(seconds=30)) == 30 - LEAD_SECONDS
