"""What a check counts in a rollup (``monitors.rollups``): one table of rules for the aggregator and the readers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.checks.model import CheckResult, Timings
from chalicelib.monitors.rollups import Tally, histogram_field, increments
from tests.factories import check_result

AT = datetime(2026, 12, 6, 14, 17, tzinfo=UTC)


def result(ok: bool = True, ms: float | None = 120.0) -> CheckResult:
    fields = {"status_code": 200 if ok else None, "error": None if ok else "timeout"}
    return check_result(AT, ok, response_time_ms=ms, timings=Timings(total_ms=ms or 0.0), **fields)


@pytest.mark.parametrize(
    ("ok", "ms", "added"),
    [
        (True, 80.0, {"checks": 1, "latency_sum_ms": 80.0, "latency_count": 1, "le_100": 1}),
        (True, 100.0, {"checks": 1, "latency_sum_ms": 100.0, "latency_count": 1, "le_100": 1}),
        (True, 100.04, {"checks": 1, "latency_sum_ms": 100.0, "latency_count": 1, "le_250": 1}),
        (False, 3000.0, {"checks": 1, "failures": 1, "latency_sum_ms": 3000.0, "latency_count": 1, "le_5000": 1}),
        (True, 12000.0, {"checks": 1, "latency_sum_ms": 12000.0, "latency_count": 1, "le_inf": 1}),
        (False, None, {"checks": 1, "failures": 1}),  # no response: no latency at all
    ],
)
def test_what_one_check_adds(ok: bool, ms: float | None, added: dict[str, float]) -> None:
    assert increments(ok, ms) == added


def test_the_histogram_bounds_are_inclusive() -> None:
    assert [histogram_field(ms) for ms in (0, 250, 250.1, 10000, 10000.1)] == [
        "le_100",
        "le_250",
        "le_500",
        "le_10000",
        "le_inf",
    ]


def test_a_tally_stores_its_counters_without_zeros_and_its_latency_to_the_tenth() -> None:
    tally = Tally.of([result(ms=0.1), result(ms=0.2), result(ok=False, ms=None)])
    assert tally.attributes() == {
        "checks": 3,
        "failures": 1,
        "latency_sum_ms": 0.3,  # not 0.30000000000000004
        "latency_count": 2,
        "le_100": 2,
        "le_250": None,
        "le_500": None,
        "le_1000": None,
        "le_2500": None,
        "le_5000": None,
        "le_10000": None,
        "le_inf": None,
    }
    assert (tally.checks, tally.failures, tally.average_ms) == (3, 1, 0.2)


def test_tallies_add_up() -> None:
    day = Tally.of([result()])
    day += Tally.of([result(ok=False, ms=300.0)])
    assert (day.checks, day.failures, day.average_ms) == (2, 1, 210.0)
    assert Tally().average_ms is None
    assert Tally().attributes()["checks"] == 0
