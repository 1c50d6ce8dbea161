"""Check results and uptime: the read side, and the rollups that keep uptime cheap.

Uptime is never summed from raw results: each result adds itself to an hourly
and a daily rollup item (:func:`record`), and :func:`uptime` reads those.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any

from chalicelib.checks.model import CheckResult, Timings
from chalicelib.monitors.models import ProgressModel, ResultModel, RollupModel
from chalicelib.monitors.rollups import DAILY_KEEP, HOURLY_KEEP, increments
from chalicelib.monitors.service import get as get_monitor
from chalicelib.storage import cursor

TIMING_FIELDS = tuple(f.name for f in fields(Timings))
STREAM_REQUIRED = ("team_id", "monitor_id", "checked_at", "ok")


@dataclass(frozen=True)
class DayUptime:
    date: str
    checks: int
    failures: int
    uptime_pct: float | None
    avg_response_ms: float | None


@dataclass(frozen=True)
class Uptime:
    windows: dict[str, float | None]
    days: list[DayUptime]


@dataclass(frozen=True)
class StoredResult:
    """A stored check result and the monitor (and team) it belongs to."""

    team_id: str
    monitor_id: str
    result: CheckResult


def _check_result(item: ResultModel) -> CheckResult:
    timings = item.timings.as_dict() if hasattr(item.timings, "as_dict") else dict(item.timings or {})
    return CheckResult(
        ok=bool(item.ok),
        checked_at=item.checked_at,
        region=item.region,
        status_code=int(item.status_code) if item.status_code is not None else None,
        response_time_ms=float(item.response_time_ms) if item.response_time_ms is not None else None,
        timings=Timings(**{k: float(v) for k, v in timings.items() if k in TIMING_FIELDS}),
        error=item.error,
        error_detail=item.error_detail,
        ssl_expires_at=item.ssl_expires_at,
        assertion_failures=tuple(str(f) for f in item.assertion_failures or ()),
        degraded=bool(item.degraded),
        body_excerpt=None,  # never stored
        final_url=None,
    )


def from_stream_image(image: dict[str, Any]) -> StoredResult:
    """A result as the results stream carries it (DynamoDB JSON); one without what every reader needs raises
    ``ValueError`` (a stream handler reports it rather than count it for nobody)."""
    missing = [name for name in STREAM_REQUIRED if name not in image]
    if missing:
        raise ValueError(f"a check result without {', '.join(missing)}")
    item = ResultModel.from_raw_data(image)
    return StoredResult(item.team_id, item.monitor_id, _check_result(item))


def _slot_bound(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def list_results(
    team_id: str,
    monitor_id: str,
    *,
    region: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    after: str | None,
) -> tuple[list[CheckResult], str | None]:
    """Newest first.  The monitor must be the team's (404 otherwise); the cursor is bound to this query."""
    get_monitor(team_id, monitor_id)
    low = _slot_bound(since) if since else "0"
    high = _slot_bound(until) + "~" if until else "~"
    page, next_cursor = cursor.paginate(
        lambda start: ResultModel.query(
            monitor_id,
            range_key_condition=ResultModel.slot.between(low, high),
            filter_condition=(ResultModel.region == region) if region else None,
            scan_index_forward=False,
            last_evaluated_key=start,
            page_size=cursor.page_size(limit),
        ),
        team_id=team_id,
        scope=f"results|{monitor_id}|{region or ''}|{since or ''}|{until or ''}",
        limit=limit,
        after=after,
        key=("monitor_id", "slot"),
    )
    return [_check_result(item) for item in page], next_cursor


def progress(regions: list[str]) -> dict[str, datetime]:
    """Per region, the latest minute whose check message a worker finished (one small read for all)."""
    names = [f"checks#{r}" for r in sorted(set(regions))]
    return {item.name.split("#", 1)[1]: item.through for item in ProgressModel.batch_get(names)} if names else {}


def record(team_id: str, monitor_id: str, checked_at: datetime, ok: bool, response_ms: float | None) -> None:
    """Count one result into its hour and its day (atomic ADDs: concurrent workers never lose a count)."""
    at = checked_at.astimezone(UTC)
    for period, keep in ((f"H#{at:%Y-%m-%dT%H}", HOURLY_KEEP), (f"D#{at:%Y-%m-%d}", DAILY_KEEP)):
        actions: list[Any] = [RollupModel.team_id.set(team_id), RollupModel.expires_at.set(at + keep)]
        actions += [getattr(RollupModel, name).add(value) for name, value in increments(ok, response_ms).items()]
        RollupModel(monitor_id, period).update(actions=actions)


def pct(checks: int, failures: int) -> float | None:
    """The share of checks that passed, in percent to three decimals (None without checks)."""
    return round(100.0 * (checks - failures) / checks, 3) if checks else None


def daily(monitor_id: str, today: date, days: int) -> list[DayUptime]:
    """The last ``days`` days up to ``today``, oldest first, from the daily rollups only (one query of at most
    ``days`` small items); a day without checks is there with zero checks."""
    first = today - timedelta(days=days - 1)
    found = {
        item.period[2:]: item
        for item in RollupModel.query(
            monitor_id, range_key_condition=RollupModel.period.between(f"D#{first}", f"D#{today}")
        )
    }
    rows = []
    for offset in range(days - 1, -1, -1):
        day = str(today - timedelta(days=offset))
        item = found.get(day)
        checks = int(item.checks) if item else 0
        failures = int(item.failures) if item else 0
        latency = (float(item.latency_sum_ms) / int(item.latency_count)) if item and item.latency_count else None
        rows.append(DayUptime(day, checks, failures, pct(checks, failures), round(latency, 1) if latency else None))
    return rows


def total(rows: list[DayUptime]) -> float | None:
    return pct(sum(r.checks for r in rows), sum(r.failures for r in rows))


def uptime(team_id: str, monitor_id: str, days: int, now: datetime) -> Uptime:
    """Uptime over 24 h (hourly rollups), 7/30/90 days and per day (daily rollups): at most ~115 item reads."""
    get_monitor(team_id, monitor_id)
    today = now.astimezone(UTC).date()
    rows = daily(monitor_id, today, max(days, 90))
    hour_now = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    since = hour_now - timedelta(hours=23)
    hourly = list(
        RollupModel.query(
            monitor_id,
            range_key_condition=RollupModel.period.between(f"H#{since:%Y-%m-%dT%H}", f"H#{hour_now:%Y-%m-%dT%H}"),
        )
    )

    windows = {
        "24h": pct(sum(int(i.checks) for i in hourly), sum(int(i.failures) for i in hourly)),
        "7d": total(rows[-7:]),
        "30d": total(rows[-30:]),
        "90d": total(rows[-90:]),
    }
    return Uptime(windows=windows, days=rows[-days:])
