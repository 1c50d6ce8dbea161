"""Check results and uptime: the read side.

A monitor's checks are read from its periods, and from its bucket's packs where the aggregator has not taken
them yet (``monitors.aggregate``).  Uptime reads the hourly and daily rollups the aggregator computes, and counts
only the hours it has not rolled up yet from their periods: never a past day's checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import chain, groupby

from chalicelib.checks.model import CheckResult
from chalicelib.monitors import aggregate
from chalicelib.monitors.models import PackModel, PeriodModel, ProgressModel, RollupModel
from chalicelib.monitors.packs import (
    PERIOD,
    Packed,
    bucket_of,
    decode_pack,
    decode_period,
    dedupe,
    minute_key,
    minute_of,
    period_of,
    region_of_key,
)
from chalicelib.monitors.rollups import DAY, Tally, day_key, hour_key, start_of_day
from chalicelib.monitors.service import get as get_monitor
from chalicelib.observability import logger
from chalicelib.storage import cursor


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


RESULTS_SCOPE = "results|packed"  # a cursor of the per-result table (a DynamoDB key) is no position here: 400
PACK_PAGE = 12  # packs a query page: a few minutes of a bucket (a pack per region and worker)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Window:
    """Which checks a list shows: planned from ``low`` to ``high`` (seconds, both included), and before the
    position a cursor holds (``after``: the planned start and region of the last one shown)."""

    low: int | None
    high: int | None
    after: tuple[int, str] | None

    def holds(self, p: Packed, region: str | None) -> bool:
        slot = int(p.slot.timestamp())
        return (
            (region is None or p.region == region)
            and (self.low is None or slot >= self.low)
            and (self.high is None or slot <= self.high)
            and (self.after is None or (slot, p.region) < self.after)
        )

    @property
    def bottom(self) -> datetime | None:
        return datetime.fromtimestamp(self.low, UTC) if self.low is not None else None

    @property
    def top(self) -> datetime | None:
        tops = [t for t in (self.high, self.after[0] if self.after else None) if t is not None]
        return datetime.fromtimestamp(min(tops), UTC) if tops else None


def list_results(
    team_id: str,
    monitor_id: str,
    *,
    region: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    after: str | None,
    oldest: datetime,
) -> tuple[list[CheckResult], str | None]:
    """Newest first, one result per check, none planned before ``oldest`` (the team's retention: DynamoDB's TTL
    deletes an expired item up to days late, and packs may hold older checks).  The monitor must be the team's
    (404 otherwise); the cursor is bound to this query and holds the last result's position (its planned start
    and region).

    The monitor's checks are in its periods before the aggregator's watermark and in its bucket's packs from
    there (``monitors.aggregate``): a check is listed as soon as the worker wrote its pack.  Items are read
    newest first, and no further than the page needs: ``oldest`` bounds both queries' keys, so an expired item
    is never read, and a cursor reaches no further back than the retention of the day it is used."""
    monitor = get_monitor(team_id, monitor_id)
    scope = f"{RESULTS_SCOPE}|{monitor_id}|{region or ''}|{since or ''}|{until or ''}"
    position = None
    if after:
        found = cursor.decode_position(after, team_id=team_id, scope=scope, fields={"slot": int, "region": str})
        position = (int(found["slot"]), str(found["region"]))
    if until is not None and until < EPOCH:
        return [], None  # nothing was checked before 1970
    low = int(max(since, oldest).timestamp()) if since is not None else int(oldest.timestamp())
    window = Window(low, int(until.timestamp()) if until is not None else None, position)
    wanted = limit + 1  # one more: whether there is a next page
    per_item = max(1, PERIOD // timedelta(seconds=monitor.config.interval_seconds))
    per_item *= 1 if region else max(1, len(monitor.config.regions))
    mark = aggregate.watermark(consistent=False)
    newest_first = chain(
        _from_packs(monitor_id, region, window, mark),
        _from_periods(monitor_id, region, window, mark, page=min(100, -(-wanted // per_item))),
    )
    page, more = cursor.take(newest_first, limit)
    if not (more and page):
        return [p.result for p in page], None
    last = {"slot": int(page[-1].slot.timestamp()), "region": page[-1].region}
    return [p.result for p in page], cursor.encode(last, team_id=team_id, scope=scope)


def _from_packs(monitor_id: str, region: str | None, window: Window, mark: datetime | None) -> Iterator[Packed]:
    """The monitor's checks in its bucket's packs of the minutes from the watermark on, newest first: a minute's
    packs are read whole (one per region and worker), then its checks are given in order."""
    floors = [t for t in (mark, window.bottom) if t is not None]
    low = minute_key(max(floors)) if floors else "0"
    high = minute_key(minute_of(window.top)) + "~" if window.top else "~"
    if low > high:
        return
    found = PackModel.query(
        bucket_of(monitor_id),
        range_key_condition=PackModel.key.between(low, high),
        scan_index_forward=False,
        page_size=PACK_PAGE,
    )
    for _, items in groupby(found, key=lambda item: item.key.split("#", 1)[0]):
        checks: list[Packed] = []
        for item in items:
            if region is None or region_of_key(item.key) == region:
                checks += [p for p in _unpacked(item) if p.monitor_id == monitor_id]
        yield from (p for p in dedupe(checks) if window.holds(p, region))


def _from_periods(
    monitor_id: str, region: str | None, window: Window, mark: datetime | None, *, page: int
) -> Iterator[Packed]:
    """The monitor's checks in its periods before the watermark, newest first (``page`` periods a query page)."""
    if mark is None:
        return  # no period taken yet: every check is still in the packs
    high = mark - PERIOD if window.top is None else min(mark - PERIOD, period_of(window.top))
    low = period_of(window.bottom) if window.bottom else None
    if low is not None and low > high:
        return
    for item in PeriodModel.query(
        monitor_id,
        range_key_condition=PeriodModel.period.between(minute_key(low) if low else "0", minute_key(high)),
        scan_index_forward=False,
        page_size=page,
    ):
        yield from (p for p in dedupe(_period_checks(item)) if window.holds(p, region))


def _period_checks(item: PeriodModel) -> list[Packed]:
    try:
        return decode_period(item.team_id, item.monitor_id, item.body)
    except Exception:  # noqa: BLE001 - one unreadable item hides its own checks, not the others'
        logger.exception(
            "unreadable results period skipped", extra={"monitor_id": item.monitor_id, "period": item.period}
        )
        return []


def _unpacked(item: PackModel) -> list[Packed]:
    try:
        return decode_pack(item.body)
    except Exception:  # noqa: BLE001 - one unreadable pack hides its own checks, not the others'
        logger.exception("unreadable results pack skipped", extra={"bucket": item.bucket, "key": item.key})
        return []


def progress(regions: list[str]) -> dict[str, datetime]:
    """Per region, the latest minute whose check message a worker finished (one small read for all)."""
    names = [f"checks#{r}" for r in sorted(set(regions))]
    return {item.name.split("#", 1)[1]: item.through for item in ProgressModel.batch_get(names)} if names else {}


def pct(checks: int, failures: int) -> float | None:
    """The share of checks that passed, in percent to three decimals (None without checks)."""
    return round(100.0 * (checks - failures) / checks, 3) if checks else None


def daily(monitor_id: str, now: datetime, days: int) -> list[DayUptime]:
    """The last ``days`` days up to ``now``'s, oldest first; a day without checks is there with zero checks.

    The days before today from their daily rollups (one query of at most ``days`` small items); today from its
    hourly rollups (a day's rollup is written once it is over, ``aggregate.close_day``), and yesterday from its
    own too while its rollup is not written (the first minutes of a day): one query of at most 24 (48); the hours
    the aggregator has not rolled up yet from their periods (:func:`_not_rolled_up`)."""
    current = _hour(now)
    past = _past_days(monitor_id, current.date(), days)
    # From the hour before at the least: in a day's first hour, yesterday's last one, rolled up, is one small item;
    # not read, its periods would be (about 9 KB, for nothing once yesterday's rollup is written).
    first = min(current.replace(hour=0), current - HOUR)
    hours = _hours(monitor_id, _hours_from(current, past, first), current)
    return _days(current.date(), days, past, hours, _not_rolled_up(monitor_id, now, hours))


def total(rows: list[DayUptime]) -> float | None:
    return pct(sum(r.checks for r in rows), sum(r.failures for r in rows))


def uptime(team_id: str, monitor_id: str, days: int, now: datetime) -> Uptime:
    """Uptime over 24 h (the last 23 hourly rollups and the hour going on), 7/30/90 days and per day (the daily
    rollups, today's from its hours): at most ~115 small items and this hour's few periods."""
    get_monitor(team_id, monitor_id)
    current = _hour(now)
    past = _past_days(monitor_id, current.date(), max(days, 90))
    hours = _hours(monitor_id, _hours_from(current, past, current - 23 * HOUR), current)
    hourly = {hour: tally for hour, tally in hours.items() if hour >= current - 23 * HOUR}
    recent = _not_rolled_up(monitor_id, now, hours)
    rows = _days(current.date(), max(days, 90), past, hours, recent)
    last_day = Tally()
    for tally in (*hourly.values(), *recent.values()):
        last_day += tally
    windows = {
        "24h": pct(last_day.checks, last_day.failures),
        "7d": total(rows[-7:]),
        "30d": total(rows[-30:]),
        "90d": total(rows[-90:]),
    }
    return Uptime(windows=windows, days=rows[-days:])


def _hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _past_days(monitor_id: str, today: date, days: int) -> dict[date, Tally]:
    """The daily rollups of the ``days`` - 1 days before ``today`` (a day's is written once it is over)."""
    if days <= 1:
        return {}
    found = RollupModel.query(
        monitor_id,
        range_key_condition=RollupModel.period.between(day_key(today - timedelta(days=days - 1)), day_key(today - DAY)),
    )
    return {date.fromisoformat(item.period[2:]): Tally.of_item(item) for item in found}


def _hours_from(current: datetime, past: dict[date, Tally], wanted: datetime) -> datetime:
    """The first hourly rollup to read: ``wanted``, or yesterday's first while yesterday's daily rollup is not
    written yet (the aggregator writes it a few minutes into today, once it has rolled up yesterday's last hour)."""
    yesterday = current.date() - DAY
    if yesterday in past:
        return wanted
    return min(wanted, start_of_day(yesterday))


def _hours(monitor_id: str, first: datetime, last: datetime) -> dict[datetime, Tally]:
    """The monitor's hourly rollups from the hour ``first`` to the hour ``last``, by hour."""
    found = RollupModel.query(
        monitor_id, range_key_condition=RollupModel.period.between(hour_key(first), hour_key(last))
    )
    return {datetime.strptime(item.period, "H#%Y-%m-%dT%H").replace(tzinfo=UTC): Tally.of_item(item) for item in found}


def _not_rolled_up(monitor_id: str, now: datetime, rolled: dict[datetime, Tally]) -> dict[datetime, Tally]:
    """The hours the rollups do not count yet, counted from the monitor's periods: the hour going on, and the one
    before until the aggregator has taken its last period (a few minutes into this one); at most 12 small items.

    Checks still only in packs (the last ten minutes or so) are not counted yet."""
    current = _hour(now)
    tallies = {hour: Tally() for hour in (current - HOUR, current) if hour not in rolled}
    if not tallies:
        return {}
    periods = PeriodModel.period.between(minute_key(min(tallies)), minute_key(current + HOUR - PERIOD))
    for item in PeriodModel.query(monitor_id, range_key_condition=periods):
        hour = _hour(datetime.strptime(item.period, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC))
        if hour in tallies:
            tallies[hour] += Tally.of(p.result for p in _period_checks(item))
    return tallies


def _days(
    today: date, days: int, past: dict[date, Tally], hours: dict[datetime, Tally], recent: dict[datetime, Tally]
) -> list[DayUptime]:
    """Each day from its daily rollup (``past``) or, without one (today; yesterday for a few minutes), from its
    rolled-up ``hours`` and the ``recent`` hours not rolled up yet.

    A recent hour counts in its day even beside its daily rollup: a day's rollup is the sum of its rolled-up
    hours, and a late pack taken after midnight writes yesterday's before its last hour is rolled up."""
    tallies = {str(day): tally for day, tally in past.items()}
    for hour, tally in (*((h, t) for h, t in hours.items() if h.date() not in past), *recent.items()):
        tallies[str(hour.date())] = tallies.get(str(hour.date()), Tally())
        tallies[str(hour.date())] += tally
    rows = []
    for offset in range(days - 1, -1, -1):
        day = str(today - timedelta(days=offset))
        t = tallies.get(day, Tally())
        rows.append(DayUptime(day, t.checks, t.failures, pct(t.checks, t.failures), t.average_ms))
    return rows
