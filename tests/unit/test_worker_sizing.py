"""The check worker's size from its load (issue 13): the arithmetic (checks.sizing), the size kept per region
(monitors.workload.Size) and when the scheduler changes it (scheduler.sizing.target)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.checks import sizing
from chalicelib.checks.sizing import ASSUMED_CPU_MS, DEFAULT_MEMORY_MB, MIN_MEMORY_MB, capacity, lanes, plan
from chalicelib.monitors.workload import SETTLE, Size, hour_key
from chalicelib.scheduler.sizing import RESIZE_EVERY, target

NOW = datetime(2026, 12, 7, 14, 30, tzinfo=UTC)


def test_the_deployed_size_runs_one_message_of_two_thousand_assumed_checks_at_seventy_percent():
    assert DEFAULT_MEMORY_MB == 439
    assert capacity(DEFAULT_MEMORY_MB, ASSUMED_CPU_MS) >= 2000
    assert 2000 * ASSUMED_CPU_MS / 1000 / 60 <= 0.70 * DEFAULT_MEMORY_MB / 1769
    assert 2000 * ASSUMED_CPU_MS / 1000 / 60 > 0.70 * (DEFAULT_MEMORY_MB - 1) / 1769


@pytest.mark.parametrize(
    ("peak", "cpu_ms", "memory", "lane_count"),
    [
        (4896, 5.2, 564, 2),  # the bench's 10,000 monitors, on the assumed CPU: two lanes, not three at 439 MB
        (4896, 4.3, 466, 2),  # ... on a measured 4.3 ms
        (100, 5.2, MIN_MEMORY_MB, 1),  # a small region: one lane, never below the floor that measures true
        (40000, 5.2, 658, 14),  # a busy one: lanes of at most 3,000 checks
        (40000, 15.0, 1769, 15),  # ... and of at most one vCPU
    ],
)
def test_the_memory_is_planned_for_the_peak_minute_in_as_many_lanes_as_keep_each_above_the_floor(
    peak, cpu_ms, memory, lane_count
):
    planned = plan(peak, cpu_ms)
    assert MIN_MEMORY_MB <= planned <= sizing.MAX_MEMORY_MB
    assert lanes(peak, planned, cpu_ms) == lane_count
    assert lanes(round(peak * sizing.HEADROOM), planned, cpu_ms) == lane_count  # the headroom fits too
    assert planned == memory
    busy = peak / lane_count * cpu_ms / 1000 / 60 / (planned / 1769)
    assert busy <= sizing.CPU_SHARE


def test_a_lane_is_never_busier_than_seventy_percent_of_its_share():
    for memory in (439, 466, 563, 1000, 1769):
        for cpu_ms in (2.0, 4.3, 5.2, 9.0):
            checks = capacity(memory, cpu_ms)
            assert checks * cpu_ms / 1000 / 60 <= sizing.CPU_SHARE * memory / 1769
            full = (checks + 1) * cpu_ms / 1000 / 60 > sizing.CPU_SHARE * memory / 1769
            assert full or checks == sizing.MAX_LANE_CHECKS


def test_while_a_change_settles_lanes_are_cut_for_the_smaller_size():
    grown = Size("us-east-1", memory_mb=900, previous_mb=500, changed_at=NOW)
    shrunk = Size("us-east-1", memory_mb=500, previous_mb=900, changed_at=NOW)
    assert grown.lane_mb(NOW + SETTLE - timedelta(seconds=1)) == 500
    assert shrunk.lane_mb(NOW + timedelta(seconds=1)) == 500
    assert grown.lane_mb(NOW + SETTLE) == 900
    assert Size("us-east-1").lane_mb(NOW) == DEFAULT_MEMORY_MB  # never set: as deployed


def test_the_peak_is_the_busiest_minute_of_this_hour_and_the_last():
    size = Size("us-east-1", peak=5000, peak_hour=hour_key(NOW), last_peak=6000)
    assert size.peaks(4000, NOW) == (5000, 6000, hour_key(NOW))
    assert size.peaks(7000, NOW) == (7000, 6000, hour_key(NOW))
    next_hour = NOW + timedelta(hours=1)
    assert size.peaks(4000, next_hour) == (4000, 5000, hour_key(next_hour))  # this hour's becomes the last
    assert size.peaks(4000, NOW + timedelta(hours=2)) == (4000, 0, hour_key(NOW + timedelta(hours=2)))


def test_the_deployed_size_is_planned_at_once_then_changed_only_for_a_tenth_saved_at_most_every_ten_minutes():
    deployed = Size("us-east-1")
    assert target(deployed, 4896, None, NOW) == 564
    assert target(deployed, 0, None, NOW) is None  # nothing planned: nothing known
    assert target(deployed, 100, None, NOW) is None  # already the plan

    planned = Size("us-east-1", memory_mb=564, previous_mb=439, changed_at=NOW)
    assert target(planned, 4896, 4.3, NOW + timedelta(minutes=3)) == 466  # the first measured CPU: at once
    measured = Size("us-east-1", memory_mb=600, previous_mb=564, changed_at=NOW, measured=True)
    assert target(measured, 4896, 4.3, NOW + timedelta(minutes=3)) is None  # too soon after a change
    assert target(measured, 4896, 4.3, NOW + RESIZE_EVERY) == 466
    settled = Size("us-east-1", memory_mb=466, previous_mb=600, changed_at=NOW, measured=True)
    assert plan(4896, 4.1) < 466
    assert target(settled, 4896, 4.1, NOW + RESIZE_EVERY) is None  # under a tenth saved
    assert target(settled, 4896, 2.0, NOW + RESIZE_EVERY) is None  # the floor: 2 x 439 MB saves 6 %
    # more checks than two lanes of 466 MB take: three lanes until it grows, which saves nearly a third
    assert lanes(round(5200 * sizing.HEADROOM), 466, 4.3) == 3
    assert target(settled, 5200, 4.3, NOW + RESIZE_EVERY) == plan(5200, 4.3) == 495
