"""What a check counts in its hour's and its day's rollup: the one table of rules, and a tally of checks by them.

The aggregator computes hours and days from packed checks (``monitors.aggregate``), the read side adds the hour
not yet rolled up (``monitors.results``); both count with :func:`increments`, as the per-result stream did.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from chalicelib.checks.model import CheckResult
from chalicelib.monitors.models import HISTOGRAM_BOUNDS, RollupModel
from chalicelib.monitors.packs import PACK_KEEP

HISTOGRAM_FIELDS = (*(f"le_{bound}" for bound in HISTOGRAM_BOUNDS), "le_inf")
COUNTERS = ("checks", "failures", "latency_sum_ms", "latency_count", *HISTOGRAM_FIELDS)
# A day is summed again from its hours whenever a late pack of it is taken, and a pack lives PACK_KEEP after its
# minute: the day's first hour must outlive its last minute by that, and a day more.
HOURLY_KEEP = PACK_KEEP + timedelta(days=1)
DAILY_KEEP = timedelta(days=400)
DAY = timedelta(days=1)


def hour_key(hour: datetime) -> str:
    return f"H#{hour:%Y-%m-%dT%H}"


def day_key(day: date) -> str:
    return f"D#{day:%Y-%m-%d}"


def start_of_day(day: date) -> datetime:
    """The day's first instant (UTC): rollups' days are UTC days."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def histogram_field(response_ms: float) -> str:
    """The latency bucket a response time falls in: ``le_<N>`` for the first bound it does not exceed."""
    for bound in HISTOGRAM_BOUNDS:
        if response_ms <= bound:
            return f"le_{bound}"
    return "le_inf"


def increments(ok: bool, response_ms: float | None) -> dict[str, float]:
    """What one check adds to the counters of its hour and its day."""
    added: dict[str, float] = {"checks": 1}
    if not ok:
        added["failures"] = 1
    if response_ms is not None:
        added |= {"latency_sum_ms": round(response_ms, 1), "latency_count": 1, histogram_field(response_ms): 1}
    return added


@dataclass
class Tally:
    """Counters of a rollup (an hour, a day, a window), by :func:`increments`."""

    counts: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, results: Iterable[CheckResult]) -> Tally:
        tally = cls()
        for result in results:
            tally.add(result)
        return tally

    @classmethod
    def of_item(cls, item: RollupModel) -> Tally:
        return cls({name: float(value) for name in COUNTERS if (value := getattr(item, name))})

    def add(self, result: CheckResult) -> None:
        if not result.counted:
            return
        for name, value in increments(result.ok, result.response_time_ms).items():
            self.counts[name] = self.counts.get(name, 0) + value

    def __iadd__(self, other: Tally) -> Tally:
        for name, value in other.counts.items():
            self.counts[name] = self.counts.get(name, 0) + value
        return self

    @property
    def checks(self) -> int:
        return int(self.counts.get("checks", 0))

    @property
    def failures(self) -> int:
        return int(self.counts.get("failures", 0))

    @property
    def average_ms(self) -> float | None:
        count = self.counts.get("latency_count", 0)
        return round(self.counts.get("latency_sum_ms", 0) / count, 1) if count else None

    def attributes(self) -> dict[str, Any]:
        """The rollup item's counters; a zero is left out, but for ``checks`` (a day's item is read ninety at a
        time, and a counter absent reads as zero)."""
        out: dict[str, Any] = {"checks": self.checks}
        for name in COUNTERS[1:]:
            value = self.counts.get(name, 0)
            # Sums of tenths drift in binary floating point: stored to the tenth, as each one was added.
            out[name] = (round(value, 1) if name == "latency_sum_ms" else int(value)) or None
        return out
