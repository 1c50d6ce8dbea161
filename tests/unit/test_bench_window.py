"""The cost bench meters no minute whose aggregation closes an hour (its hourly and daily rollups, an hour's work,
would be counted against five minutes of checks): ``wait_clear_of_the_hour``."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.load.test_bench_cost import wait_clear_of_the_hour


def at(hh_mm_ss: str) -> float:
    return datetime.fromisoformat(f"2026-12-07T{hh_mm_ss}+00:00").astimezone(UTC).timestamp()


def test_a_window_that_ends_before_the_hours_last_period_starts_at_once():
    assert wait_clear_of_the_hour(at("08:00:00"), 10) == 0.0
    assert wait_clear_of_the_hour(at("08:39:59"), 10) == 0.0


def test_a_window_whose_aggregation_would_close_the_hour_starts_just_after_it():
    # session 15's last run: metered from 11:49:30, its pass took the 11:50-12:00 period, which closed the hour
    assert wait_clear_of_the_hour(at("11:49:30"), 10) == 10 * 60 + 30 + 5
    assert wait_clear_of_the_hour(at("07:52:00"), 10) == 8 * 60 + 5  # session 14's first run, which crossed 08:00
    assert wait_clear_of_the_hour(at("08:40:00"), 10) == 20 * 60 + 5
    assert wait_clear_of_the_hour(at("08:59:59"), 10) == 6


def test_the_bench_never_times_out_while_it_waits():
    """Session 16: started at 14:41, the bench waited 1,128 s and its 1,500 s timeout ended it mid-run."""
    from tests.load.test_bench_cost import (
        CLEAR_MINUTES,
        MAX_WAIT_S,
        test_what_a_check_costs_and_how_soon_an_outage_alerts,
    )

    waits = [wait_clear_of_the_hour(at("08:00:00") + second, CLEAR_MINUTES) for second in range(3600)]
    assert max(waits) == MAX_WAIT_S
    (timeout,) = [m.args[0] for m in test_what_a_check_costs_and_how_soon_an_outage_alerts.pytestmark]
    assert timeout - MAX_WAIT_S >= 1200  # a run that did not wait took 766 s (12 min 46 s)
