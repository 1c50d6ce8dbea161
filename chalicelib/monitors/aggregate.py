"""The aggregator: the worker's packs regrouped into each monitor's periods, and counted into its rollups.

The check worker writes packs: one region's checks of a bucket of monitors in one minute (``monitors.packs``).
A scheduled pass (:func:`run_pass`) takes each period a few minutes after it closed; the packs stream brings the
packs written after that, which :func:`retake` takes again.  Every write is a PUT of a value computed from the
packs themselves, never an increment: a pass replayed, retried after a partial failure or run twice at once writes
the same items again, and a check in two packs (a message delivered twice) is counted once.  No PUT replaces an
item holding more checks (:func:`put_all`): a take from an older view of the packs never undoes a newer one.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

from chalicelib.monitors.models import PackModel, PeriodModel, ProgressModel, RollupModel
from chalicelib.monitors.packs import (
    AGGREGATE_AFTER,
    BUCKETS,
    PERIOD,
    Packed,
    decode_pack,
    dedupe,
    encode_period,
    minute_key,
    period_of,
)
from chalicelib.monitors.rollups import DAILY_KEEP, DAY, HOURLY_KEEP, Tally, day_key, hour_key, start_of_day
from chalicelib.observability import logger, metrics
from chalicelib.storage.base import condition_failed

PROGRESS = "aggregated"  # the ProgressModel item: the end of the last period taken
MAX_PERIODS_PER_PASS = 36  # six hours of catch-up a pass; the next pass goes on from there
DAY_THREADS = 16  # a day is summed from its hours with a query per monitor, side by side
WRITE_THREADS = 16  # conditional PUTs (no batch takes a condition), side by side
HOUR = timedelta(hours=1)


class PassFailed(Exception):
    """Some buckets of a period could not be taken: the watermark stays before that period."""

    def __init__(self, period: datetime, buckets: list[str]) -> None:
        super().__init__(f"period {minute_key(period)}: buckets {', '.join(buckets)} failed")
        self.period = period
        self.buckets = buckets


# How long a team's results are kept: one time for all, or each team's (its plan's, ``events.aggregate``).
Retention = timedelta | Callable[[str], timedelta]


def kept(retention: Retention, team_id: str) -> timedelta:
    return retention if isinstance(retention, timedelta) else retention(team_id)


def all_buckets() -> list[str]:
    return [f"{i:02d}" for i in range(BUCKETS)]


# ---------------------------------------------------------------------------------------------- reading packs


def read_checks(bucket: str, start: datetime, end: datetime) -> list[Packed]:
    """Every check in a bucket's packs of the minutes in [start, end), one per check, newest first.

    A pack this code cannot read is logged with its key, counted (``UnreadablePacks``) and skipped: one bad item
    never stops the others being counted."""
    found: list[Packed] = []
    last_minute = minute_key(end - timedelta(minutes=1))
    for item in PackModel.query(
        bucket, range_key_condition=PackModel.key.between(minute_key(start), last_minute + "~"), consistent_read=True
    ):
        try:
            found += decode_pack(item.body)
        except Exception:  # noqa: BLE001 - an unreadable pack will never read: skip it, loudly
            logger.exception("unreadable results pack skipped", extra={"bucket": bucket, "key": item.key})
            metrics.add_metric(name="UnreadablePacks", unit="Count", value=1)
    return dedupe(found)


def by_monitor(checks: Iterable[Packed]) -> dict[str, list[Packed]]:
    grouped: dict[str, list[Packed]] = {}
    for p in checks:
        grouped.setdefault(p.monitor_id, []).append(p)
    return grouped


# ---------------------------------------------------------------------------------------------- taking a period


def take_period(bucket: str, period: datetime, retention: Retention, now: datetime) -> set[str]:
    """Take one bucket's period (again) from its packs, for a late pack or by hand; the monitors it holds.

    Its hour's rollups are computed too when the period is the last of its hour, or when the hour had closed
    by ``now`` (the pass that closed it may have counted it without this pack)."""
    period = period_of(period)
    hour = period.replace(minute=0)
    return _take(bucket, period, retention, now, roll=period + PERIOD == hour + HOUR or now >= hour + HOUR)


def _take(bucket: str, period: datetime, retention: Retention, now: datetime, *, roll: bool) -> set[str]:
    """1. Read the period's packs (every page, consistently) and keep one result per check.
    2. PUT one period item per monitor: its checks of every region, replacing what an earlier take wrote
       (unless that held more checks: :func:`put_all`).
    3. With ``roll``: read the hour's packs and PUT the hour's rollup of each monitor in them (all of them when
       the period closes the hour: a monitor checked hourly may have no check in this period; else those of this
       period), and enrol them in the bucket's roster of the day.
    4. Once the day is over by ``now``: sum the days of those monitors from their hours and PUT them — of every
       monitor of the roster when the period closes the day (its last hour is rolled up)."""
    checks = by_monitor(read_checks(bucket, period, period + PERIOD))
    key = minute_key(period)
    put_all(
        PeriodModel(
            m,
            key,
            team_id=found[0].team_id,
            body=encode_period(found),
            checks=len(found),
            expires_at=period + PERIOD + kept(retention, found[0].team_id),
        )
        for m, found in checks.items()
    )
    if roll:
        hour = period.replace(minute=0)
        hourly = by_monitor(read_checks(bucket, hour, hour + HOUR))
        if period + PERIOD != hour + HOUR:
            hourly = {m: found for m, found in hourly.items() if m in checks}
        roll_up(hour, hourly)
        day = hour.date()
        enrolled = enrol(bucket, day, set(hourly))
        if now >= end_of_day(day):
            closes_day = hour + HOUR == end_of_day(day) and period + PERIOD == hour + HOUR
            close_day(day, enrolled if closes_day else set(hourly))
    return set(checks)


# ---------------------------------------------------------------------------------------------- rollups


def roll_up(hour: datetime, checks: dict[str, list[Packed]]) -> None:
    """PUT each monitor's rollup of ``hour`` from all its checks of the hour."""
    put_all(
        _rollup(m, hour_key(hour), found[0].team_id, Tally.of(p.result for p in found), hour + HOUR + HOURLY_KEEP)
        for m, found in checks.items()
    )


def close_day(day: date, monitors: Iterable[str]) -> None:
    """PUT the daily rollup of each of ``monitors``, summed from its hours (a monitor without any is skipped).

    Written once the day is over, not at every hour of it (issue 13: that was a monitor's second write an hour):
    readers sum the hours of yesterday and today (``monitors.results``)."""
    wanted = sorted(set(monitors))
    if not wanted:
        return
    with ThreadPoolExecutor(min(DAY_THREADS, len(wanted)), thread_name_prefix="vigil-aggregate") as pool:
        days = dict(zip(wanted, pool.map(lambda m: sum_day(m, day), wanted), strict=True))
    put_all(
        _rollup(m, day_key(day), team_id, tally, end_of_day(day) + DAILY_KEEP)
        for m, (tally, team_id) in days.items()
        if team_id is not None
    )


def end_of_day(day: date) -> datetime:
    return start_of_day(day) + DAY


# A bucket's roster of a day: the monitors the aggregator rolled an hour of up, whose days it writes at the day's end
# (a monitor paused at noon has no check in the day's last hour, and its day is written all the same).  In parts, by
# a stable hash of the monitor: a part holds ~20 bytes a monitor gzipped, so eight keep each far under DynamoDB's
# 400 KB item up to millions of monitors (one item a bucket would reach it near 300,000).
ROSTER = "roster#"
ROSTER_PARTS = 8
ROSTER_ATTEMPTS = 5  # a concurrent take of the same bucket (a late pack's) enrolling at once: read again, merge


def roster(bucket: str, day: date) -> set[str]:
    """The monitors enrolled in the bucket's roster of ``day`` (read consistently)."""
    return enrol(bucket, day, set())


def enrol(bucket: str, day: date, monitors: set[str]) -> set[str]:
    """Add ``monitors`` to the bucket's roster of ``day``, and return the whole roster: each part read, and written
    only when it gains one.  A part only grows, and its count guards the write: a concurrent take's enrolment is
    merged, never lost."""
    by_part: dict[int, set[str]] = {part: set() for part in range(ROSTER_PARTS)}
    for monitor_id in monitors:
        by_part[zlib.crc32(monitor_id.encode()) // BUCKETS % ROSTER_PARTS].add(monitor_id)
    enrolled: set[str] = set()
    for part, wanted in by_part.items():
        enrolled |= _enrol_part(bucket, part, day, wanted)
    return enrolled


def _enrol_part(bucket: str, part: int, day: date, monitors: set[str]) -> set[str]:
    """The part's monitors once ``monitors`` are among them."""
    for _ in range(ROSTER_ATTEMPTS):
        known, count = _roster_item(bucket, part, day)
        if monitors <= known:
            return known
        merged = sorted(known | monitors)
        item = RollupModel(
            f"{ROSTER}{bucket}#{part}",
            day_key(day),
            team_id="-",
            checks=len(merged),
            monitors=gzip.compress(json.dumps(merged, separators=(",", ":")).encode(), mtime=0),
            expires_at=end_of_day(day) + HOURLY_KEEP,
        )
        try:
            item.save(condition=RollupModel.checks.does_not_exist() if count is None else RollupModel.checks == count)
            return set(merged)
        except Exception as exc:
            if not condition_failed(exc):
                raise
    raise RosterContended(f"bucket {bucket}, part {part}, day {day}: the roster kept changing")


class RosterContended(RuntimeError):
    """A roster's write lost to concurrent ones every time: the take fails, and is taken again."""


def _roster_item(bucket: str, part: int, day: date) -> tuple[set[str], int | None]:
    try:
        item = RollupModel.get(f"{ROSTER}{bucket}#{part}", day_key(day), consistent_read=True)
    except RollupModel.DoesNotExist:
        return set(), None
    return set(json.loads(gzip.decompress(item.monitors or b""))) if item.monitors else set(), int(item.checks)


def sum_day(monitor_id: str, day: date) -> tuple[Tally, str | None]:
    """A monitor's day as the sum of its hours' rollups (read consistently: one was just written), and its team (None
    without any hour)."""
    tally, team_id = Tally(), None
    for item in RollupModel.query(
        monitor_id,
        range_key_condition=RollupModel.period.between(f"H#{day:%Y-%m-%d}T00", f"H#{day:%Y-%m-%d}T23"),
        consistent_read=True,
    ):
        tally += Tally.of_item(item)
        team_id = item.team_id
    return tally, team_id


def _rollup(monitor_id: str, period: str, team_id: str, tally: Tally, expires_at: datetime) -> RollupModel:
    return RollupModel(monitor_id, period, team_id=team_id, expires_at=expires_at, **tally.attributes())


def put_all(items: Iterable[PeriodModel | RollupModel]) -> None:
    """PUT each item, side by side, unless the one it replaces holds more checks.

    Packs only grow (until they expire), so of two takes of the same packs the one with more checks read them
    later: a pass's take never undoes a late pack's take that landed during it, nor a take of packs partly expired
    what was taken while they were all there."""
    found = list(items)
    if found:
        with ThreadPoolExecutor(min(WRITE_THREADS, len(found)), thread_name_prefix="vigil-aggregate") as pool:
            list(pool.map(_put_unless_fewer, found))


def _put_unless_fewer(item: PeriodModel | RollupModel) -> None:
    model = type(item)
    try:
        item.save(condition=model.checks.does_not_exist() | (model.checks <= item.checks))
    except Exception as exc:
        if not condition_failed(exc):
            raise


# ---------------------------------------------------------------------------------------------- the pass


def watermark(*, consistent: bool = True) -> datetime | None:
    """The end of the last period every bucket of which was taken (None before the first pass).

    A reader may read it eventually consistent (half the price): a watermark a moment old is still one before
    which every period was taken, and the packs after it are all still there."""
    try:
        return ProgressModel.get(PROGRESS, consistent_read=consistent).through
    except ProgressModel.DoesNotExist:
        return None


def run_pass(now: datetime, retention: Retention) -> int:
    """Take every period due since the watermark, oldest first; the number of periods taken.

    1. Start at the watermark.  Without one (the first pass), at the period of an hour ago, saved as the watermark
       before anything is taken: the worker may have written packs a little before the aggregator first ran, and
       nothing was packed before the worker was (older checks are in the rollups they were counted into).
    2. A period is due ``AGGREGATE_AFTER`` after it closed (the last workers of its minutes are done).  Take each
       due period, at most ``MAX_PERIODS_PER_PASS``, for every bucket.
    3. When a bucket fails, still try the others, then raise :class:`PassFailed`: the watermark stays before the
       period, so the next pass (or Lambda's retry) takes it again.  Nothing is lost meanwhile: packs live
       ``PACK_KEEP``, and taking a period again writes the same items.
    4. Otherwise move the watermark past the period, only forward: when a concurrent pass has gone further,
       this one stops (that pass goes on from there).
    """
    mark = watermark()
    if mark is None:
        # The first pass saves where it starts before taking anything: a pass that fails and is retried later (an
        # hour later, say) goes on from there rather than from an hour before its own start.
        mark = period_of(now - HOUR)
        try:
            ProgressModel(PROGRESS, through=mark).save(condition=ProgressModel.through.does_not_exist())
        except Exception as exc:
            if not condition_failed(exc):
                raise
            mark = watermark() or mark  # a concurrent first pass saved its own
    period = mark
    taken = 0
    while taken < MAX_PERIODS_PER_PASS and period + PERIOD + AGGREGATE_AFTER <= now:
        closes_hour = period.minute + PERIOD.seconds // 60 == 60
        failed = [b for b in all_buckets() if not _try(b, period, retention, now, roll=closes_hour)]
        if failed:
            raise PassFailed(period, failed)
        taken += 1
        period += PERIOD
        if not _advance(period):
            logger.info("another pass moved the watermark further", extra={"through": period.isoformat()})
            break
    return taken


def _try(bucket: str, period: datetime, retention: Retention, now: datetime, *, roll: bool) -> bool:
    try:
        _take(bucket, period, retention, now, roll=roll)
    except Exception:  # noqa: BLE001 - the pass goes on with the other buckets, then fails
        logger.exception("taking a period failed", extra={"bucket": bucket, "period": minute_key(period)})
        metrics.add_metric(name="AggregationFailures", unit="Count", value=1)
        return False
    return True


def _advance(through: datetime) -> bool:
    """Move the watermark to ``through`` unless it is there or further already (a concurrent pass)."""
    try:
        ProgressModel(PROGRESS, through=through).save(
            condition=ProgressModel.through.does_not_exist() | (ProgressModel.through < through)
        )
    except Exception as exc:
        if condition_failed(exc):
            return False
        raise
    return True


# ---------------------------------------------------------------------------------------------- late packs


def retake(records: list[dict[str, Any]], now: datetime, retention: Retention) -> dict[str, Any]:
    """The packs stream: take again the period of each pack written late (``late``: its period may have been taken
    without it), each (bucket, period) once however many of its packs the batch holds.

    A record that is not a late pack's write is skipped.  When a period fails, Lambda is told to resume from the
    first record of it (partial batch response): the records after come again, and taking again is harmless."""
    first: dict[tuple[str, datetime], tuple[int, str]] = {}
    for index, record in enumerate(records):
        change = record.get("dynamodb") or {}
        image = change.get("NewImage") or {}
        if record.get("eventName") not in ("INSERT", "MODIFY") or image.get("late") != {"BOOL": True}:
            continue
        try:
            bucket, key = image["bucket"]["S"], image["key"]["S"]
            minute = datetime.strptime(key.split("#", 1)[0], "%Y-%m-%dT%H:%M").replace(tzinfo=UTC)
        except (KeyError, TypeError, ValueError):
            logger.error("a late pack's record without its key", extra={"event_id": record.get("eventID")})
            metrics.add_metric(name="UnreadablePacks", unit="Count", value=1)
            continue
        first.setdefault((bucket, period_of(minute)), (index, str(change.get("SequenceNumber", ""))))
    failed: list[tuple[int, str]] = []
    for (bucket, period), at in first.items():
        try:
            take_period(bucket, period, retention, now)
        except Exception:  # noqa: BLE001 - reported to Lambda, which retries from this period's first record
            where = {"bucket": bucket, "period": minute_key(period)}
            logger.exception("taking a late pack's period failed", extra=where)
            failed.append(at)
    return {"batchItemFailures": [{"itemIdentifier": min(failed)[1]}] if failed else []}
