"""The due-set as a table: which keys are due when, how often each monitor runs, and how even the load is."""

from __future__ import annotations

import random
import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.monitors.service import INTERVALS, schedule_key
from chalicelib.scheduler.due import all_keys, due_keys, planned_start, start_offset_seconds

MIDNIGHT = datetime(2026, 11, 30, tzinfo=UTC)


def sends(monitor_id: str, interval: int, minutes: int) -> int:
    key = schedule_key(monitor_id, interval)
    total = 0
    for minute in range(minutes):
        for due in due_keys(MIDNIGHT + timedelta(minutes=minute)):
            if due.key == key:
                total += len(due.repeats)
    return total


@pytest.mark.parametrize(
    ("minute", "expected"),
    [
        (0, {"30:0", "60:0", "120:0", "300:0", "600:0", "900:0", "1800:0", "3600:0"}),
        (1, {"30:0", "60:0", "120:1", "300:1", "600:1", "900:1", "1800:1", "3600:1"}),
        (7, {"30:0", "60:0", "120:1", "300:2", "600:7", "900:7", "1800:7", "3600:7"}),
        (59, {"30:0", "60:0", "120:1", "300:4", "600:9", "900:14", "1800:29", "3600:59"}),
        (60, {"30:0", "60:0", "120:0", "300:0", "600:0", "900:0", "1800:0", "3600:0"}),
        (24 * 60 + 17, {"30:0", "60:0", "120:1", "300:2", "600:7", "900:2", "1800:17", "3600:17"}),
    ],
)
def test_the_keys_due_at_each_minute(minute, expected):
    due = due_keys(MIDNIGHT + timedelta(minutes=minute, seconds=42))
    assert {d.key for d in due} == expected
    assert next(d for d in due if d.key == "30:0").repeats == (0, 30)
    assert all(d.repeats == (0,) for d in due if d.interval_seconds >= 60)


@pytest.mark.parametrize("interval", INTERVALS)
def test_every_monitor_runs_exactly_3600_over_interval_times_an_hour_and_a_day(interval):
    for n in range(5):
        monitor_id = f"mon_{interval}_{n}"
        assert sends(monitor_id, interval, 60) == 3600 // interval
        assert sends(monitor_id, interval, 24 * 60) == 24 * 3600 // interval


@pytest.mark.parametrize("interval", [i for i in INTERVALS if i >= 60])
def test_every_phase_of_an_interval_is_due_once_per_cycle(interval):
    minutes = interval // 60
    seen = Counter(d.key for m in range(minutes) for d in due_keys(MIDNIGHT + timedelta(minutes=m)))
    for phase in range(minutes):
        assert seen[f"{interval}:{phase}"] == 1


def test_a_forced_tick_covers_every_key():
    keys = {d.key for d in all_keys()}
    assert len(keys) == 1 + sum(i // 60 for i in INTERVALS if i >= 60)
    for interval in INTERVALS:
        for n in range(20):
            assert schedule_key(f"mon_{n}", interval) in keys


def test_the_load_per_tick_is_even_over_a_day():
    rng = random.Random(7)
    monitors = Counter(schedule_key(f"mon_{rng.getrandbits(64):x}", rng.choice(INTERVALS)) for _ in range(10_000))
    weights = {"30:0": 2}
    per_tick = [
        sum(monitors[d.key] * weights.get(d.key, 1) for d in due_keys(MIDNIGHT + timedelta(minutes=m)))
        for m in range(24 * 60)
    ]
    assert max(per_tick) / statistics.mean(per_tick) <= 1.5


def test_starts_are_spread_over_the_minute_and_stable():
    tick = MIDNIGHT + timedelta(minutes=5, seconds=3)
    offsets = [start_offset_seconds(f"mon_{n}", 60) for n in range(600)]
    assert min(offsets) == 5  # the tick's own headroom: nothing is planned while the tick is still sending
    assert max(offsets) == 59
    assert max(Counter(offsets).values()) < 25  # ~11 a second, none crowded
    assert planned_start(tick, "mon_a", 60, 0) == planned_start(tick, "mon_a", 60, 0)
    assert planned_start(tick, "mon_a", 60, 0).minute == 5
    assert all(5 <= start_offset_seconds(f"mon_{n}", 30) < 30 for n in range(100))
    assert planned_start(tick, "mon_a", 30, 30) - planned_start(tick, "mon_a", 30, 0) == timedelta(seconds=30)


def test_the_last_planned_start_up_to_a_minute_follows_the_schedule() -> None:
    """What ``last_checked_at`` is derived from: the monitor's planned start in the latest minute its region's
    workers finished (or the one before, for an interval of minutes, or when that start is still to come)."""
    from chalicelib.monitors.service import schedule_key
    from chalicelib.scheduler.due import last_planned_start, start_offset_seconds

    through = datetime(2026, 12, 6, 14, 17, tzinfo=UTC)
    later = through + timedelta(minutes=5)
    one = "mon_a"
    offset = timedelta(seconds=start_offset_seconds(one, 60))
    assert last_planned_start(one, 60, through + timedelta(seconds=42), later) == through + offset
    # The start in that minute is still to come: the one before.
    assert last_planned_start(one, 60, through, through + offset - timedelta(seconds=1)) == (
        through + offset - timedelta(minutes=1)
    )
    # Every 30 s: the minute's second start.
    assert last_planned_start(one, 30, through, later) == through + timedelta(
        seconds=30 + start_offset_seconds(one, 30)
    )
    # Every 5 minutes: the latest minute of its phase up to there.
    for monitor in ("mon_a", "mon_b", "mon_c", "mon_d", "mon_e"):
        phase = int(schedule_key(monitor, 300).split(":")[1])
        start = last_planned_start(monitor, 300, through, later)
        minute = start.replace(second=0)
        assert (int(minute.timestamp()) // 60) % 5 == phase
        assert through - timedelta(minutes=5) < minute <= through
        assert start - minute == timedelta(seconds=start_offset_seconds(monitor, 300))
