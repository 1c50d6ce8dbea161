"""Heartbeat monitors: the job pings Vigil, and Vigil notices when it stops (issue 14).

A heartbeat monitor is not checked: it waits.  Each wait ends at a deadline, ``period + grace`` after it began (the
last ping, the monitor's creation, its resume).  The monitor item carries its deadline in a sparse, sharded index
(``due-index``: ``due_shard`` = one of :data:`DUE_SHARDS`, ``due_at`` = epoch seconds), which the tick queries each
minute for the deadlines passed (:func:`sweep`): it reads the entries due and nothing else, never a scan.

Pings and misses become check results of the one region :data:`REGION`, written as packs like a worker's
(``monitors.packs``), so the incident handler, alerts, status pages and uptime take them unchanged; the monitor is
stored with ``regions = ["global"]`` and thresholds of one (a miss opens an incident at once, a ping resolves it).

- ``ping``: the job ran.  The wait starts again.  Its result is written when it is the first of its period window
  (what uptime counts: periods, not pings) or when it can change the monitor's status (``checks.marking``);
  otherwise only the ping log has it.
- ``start``: a run began; it must end (``ping`` or ``fail``) within the grace, or the run is late.
- ``fail``: the job says it failed: a failed result at once (an incident opens).
- A passed deadline is a failed result at the deadline (``ping_missed``, or ``run_unfinished`` after a start),
  and the next deadline is a period later: an outage counts each period it misses.

A paused monitor has no deadline, and its pings are answered and ignored.  A ping storm writes at most once per
second per monitor and kind of signal (a start; a ping or fail): one in the second of the last of its kind is
answered and not recorded.  So ``curl …/start && job && curl …`` in one second records both.

Results are ordered as the handler must apply them: a ping (or fail) recorded after a miss of a later deadline —
a ping received just before its deadline, whose write lost to the tick's sweep — is stamped a second after that
miss, so the miss never outlives the ping that answers it (and a result per second keeps each its own slot).
A miss inside a maintenance window ending before the next deadline brings that deadline to the window's end: a
job still silent then is down then, not a period later.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib import errors
from chalicelib.checks import marking
from chalicelib.checks.model import FAILURE_REPORTED, PING_MISSED, RUN_UNFINISHED, CheckResult, Timings
from chalicelib.monitors import packs
from chalicelib.monitors.models import MonitorModel, PackModel, PingModel, PingTokenModel
from chalicelib.monitors.watching import watch_of
from chalicelib.observability import logger, metrics
from chalicelib.storage import cursor
from chalicelib.storage.base import Counter, counted_transaction, lost_race, retry_lost_races, transaction

TYPE = "heartbeat"
REGION = "global"
PERIOD_MIN_SECONDS = 60
PERIOD_MAX_SECONDS = 30 * 86400
GRACE_DEFAULT_SECONDS = 300
GRACE_MAX_SECONDS = 7 * 86400
DUE_SHARDS = 10  # the index's hash keys: pings spread their index writes over as many partitions
KINDS = ("ping", "start", "fail")
TOKEN_BYTES = 16  # 128 bits
TOKEN_LENGTH = 22  # its URL-safe base64
PING_BODY_KEEP = 10 * 1024
USER_AGENT_KEEP = 512
PING_KEEP = timedelta(days=30)
MAX_MISSES = 100  # per monitor and sweep: a tick down for longer counts its first hundred periods, then resumes
WRITE_ATTEMPTS = 4

UNKNOWN, IGNORED, THROTTLED, RECORDED = "unknown", "ignored", "throttled", "recorded"
# What a sweep changes on a monitor (put back as they were when its misses cannot be written).
SWEPT = ("due_at", "missed_at", "started_at", "last_result_at", "counted_window", "failed_window")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def could_be_token(token: str) -> bool:
    """A token this code could have made (anything else is a 404 without a read)."""
    return len(token) == TOKEN_LENGTH and all(c.isascii() and (c.isalnum() or c in "-_") for c in token)


def shard_of(monitor_id: str) -> str:
    return f"hb{zlib.crc32(monitor_id.encode()) % DUE_SHARDS}"


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


def _after(at: datetime, seconds: int) -> int:
    """The first whole second at least ``seconds`` after ``at`` (a deadline is never early)."""
    return math.ceil(at.timestamp()) + seconds


def _wait(item: MonitorModel) -> int:
    return int(item.interval_seconds) + int(item.grace_seconds or 0)


def _window(item: MonitorModel, at_epoch: int) -> int:
    """The period window an instant falls in (epoch-aligned): uptime counts one result per window."""
    return at_epoch // int(item.interval_seconds)


def arm(item: MonitorModel, since: datetime) -> None:
    """A new wait begins at ``since`` (a ping, creation, resume): its deadline is ``period + grace`` later."""
    item.due_from = since
    item.due_at = _after(since, _wait(item))
    item.due_shard = shard_of(item.monitor_id)
    item.started_at = None
    item.missed_at = None


def _deadline(item: MonitorModel) -> int:
    """The current wait's end: ``period + grace`` after it began — or, down since a miss, a period after that miss
    (or the end of the maintenance window it fell in) — or sooner, ``grace`` after a run's start."""
    if item.missed_at is not None:
        due = int(item.missed_at) + int(item.interval_seconds)
        window_end = _window_end(item, datetime.fromtimestamp(int(item.missed_at), UTC))
        due = min(due, window_end) if window_end is not None and window_end > int(item.missed_at) else due
    else:
        due = _after(item.due_from, _wait(item))
    if item.started_at is not None:
        due = min(due, _after(item.started_at, int(item.grace_seconds or 0)))
    return due


def rearm(item: MonitorModel, now: datetime) -> None:
    """The period or grace changed: the current wait (or run, or outage) ends by the new rule (at once, if that is
    past)."""
    if item.paused or item.due_from is None:
        return
    item.due_at = max(_deadline(item), _epoch(now))
    item.due_shard = shard_of(item.monitor_id)


def disarm(item: MonitorModel) -> None:
    """Paused: out of the deadline index (no deadline passes while paused)."""
    item.due_shard = None
    item.due_at = None
    item.started_at = None


# ------------------------------------------------------------------------------------------------- tokens


def create(item: MonitorModel, counter: Counter | None = None) -> None:
    """Save a new heartbeat monitor with a new ping token, and the token's lookup item, in one transaction with
    ``counter``'s step (the plan's count: its refusal is the 402)."""
    item.ping_token = new_token()

    def steps(t: Any) -> None:
        t.save(item, condition=MonitorModel.monitor_id.does_not_exist())
        t.save(_token_item(item), condition=PingTokenModel.token.does_not_exist())

    counted_transaction(counter, steps)


def rotate(item: MonitorModel) -> None:
    """Give a loaded heartbeat monitor a new ping token: the monitor (under its version), the new token's item and
    the old one's removal in one transaction (a lost race raises: reload and try again)."""
    old = item.ping_token
    item.ping_token = new_token()
    with transaction() as t:
        t.save(item)
        t.save(_token_item(item), condition=PingTokenModel.token.does_not_exist())
        if old:
            t.delete(PingTokenModel(old))


def forget(t: Any, item: MonitorModel) -> None:
    """A heartbeat monitor deleted in transaction ``t`` (as read, under its version) takes its token with it."""
    if item.type == TYPE and item.ping_token:
        t.delete(PingTokenModel(item.ping_token))


def _token_item(item: MonitorModel) -> PingTokenModel:
    return PingTokenModel(item.ping_token, team_id=item.team_id, monitor_id=item.monitor_id)


# ------------------------------------------------------------------------------------------------- results


def _result(at: datetime, *, ok: bool, error: str | None = None, detail: str | None = None) -> CheckResult:
    return CheckResult(
        ok=ok,
        checked_at=at,
        region=REGION,
        status_code=None,
        response_time_ms=None,
        timings=Timings(),
        error=error,
        error_detail=detail,
        ssl_expires_at=None,
        assertion_failures=(),
        degraded=False,
        body_excerpt=None,
        final_url=None,
    )


def _write(item: MonitorModel, results: list[CheckResult], writer: str, now: datetime) -> list[PackModel]:
    """Results of one monitor, as packs like a worker's (one per minute), marked by what the monitor shows; the
    packs written.  The same ``writer`` writes the same keys: a retry overwrites, never adds."""
    watch = watch_of(item)
    by_minute: dict[datetime, list[packs.Packed]] = {}
    for r in results:
        slot = r.checked_at.replace(microsecond=0)
        marked = marking.matters(r, watch)
        packed = packs.Packed(item.team_id, item.monitor_id, REGION, slot, r, marked)
        by_minute.setdefault(packs.minute_of(slot), []).append(packed)
    written = []
    for minute, found in by_minute.items():
        pack = packs.pack_item(packs.bucket_of(item.monitor_id), minute, REGION, writer, found, now)
        pack.save()
        written.append(pack)
    return written


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


# ------------------------------------------------------------------------------------------------- pings


@dataclass(frozen=True)
class Ping:
    token: str
    kind: str  # one of KINDS
    at: datetime
    source_ip: str | None
    user_agent: str | None
    body: bytes


def known(token: str) -> bool:
    """Whether a ping token is in use (one consistent read)."""
    if not could_be_token(token):
        return False
    try:
        PingTokenModel.get(token, consistent_read=True, attributes_to_get=["token"])
    except PingTokenModel.DoesNotExist:
        return False
    return True


def ping(p: Ping) -> str:
    """Record a ping: :data:`UNKNOWN` (no such token: 404), :data:`IGNORED` (paused), :data:`THROTTLED` (a ping
    of this second was recorded), or :data:`RECORDED`."""
    if not could_be_token(p.token) or p.kind not in KINDS:
        return UNKNOWN
    try:
        found = PingTokenModel.get(p.token, consistent_read=True)
    except PingTokenModel.DoesNotExist:
        return UNKNOWN
    team_id, monitor_id = found.team_id, found.monitor_id
    done: list[MonitorModel] = []

    def attempt() -> str:
        done.clear()
        try:
            item = MonitorModel.get(team_id, monitor_id, consistent_read=True)
        except MonitorModel.DoesNotExist:
            return UNKNOWN
        if item.ping_token != p.token or item.type != TYPE:  # rotated since the token was read
            return UNKNOWN
        if item.paused:
            return IGNORED
        last = item.last_start_at if p.kind == "start" else item.last_ping_at
        if last is not None and _epoch(last) == _epoch(p.at):
            return THROTTLED
        results = _received(item, p)
        # Its results first: written, they stand for a ping that came (a failure after this leaves the monitor
        # unchanged, and the job's retry is not throttled).  A lost race takes them back before reading again.
        written = _write(item, results, f"hb.{item.monitor_id}.{p.kind}.{p.at.timestamp():.6f}", p.at)
        try:
            item.save()  # under its version: a concurrent ping, edit or sweep makes this one read again
        except Exception:
            for pack in written:
                pack.delete()
            raise
        done.append(item)
        return RECORDED

    try:
        outcome = retry_lost_races(attempt, attempts=WRITE_ATTEMPTS)
    except Exception as exc:
        if lost_race(exc):  # four concurrent writes in a row: the job should ping again
            raise errors.ServiceUnavailable("The monitor is busy; ping again.", headers={"Retry-After": "1"}) from None
        raise
    if outcome != RECORDED:
        return outcome
    item = done[0]
    PingModel(
        item.monitor_id,
        f"{p.at.astimezone(UTC).isoformat()}#{p.kind}",
        team_id=item.team_id,
        kind=p.kind,
        source_ip=p.source_ip,
        user_agent=(p.user_agent or "")[:USER_AGENT_KEEP] or None,
        body=excerpt(p.body),
        expires_at=p.at + PING_KEEP,
    ).save()
    metrics.add_metric(name="HeartbeatPings", unit="Count", value=1)
    return RECORDED


def excerpt(body: bytes) -> str | None:
    """At most :data:`PING_BODY_KEEP` bytes of a body, as text (bytes that are not UTF-8 replaced, and the text cut
    again to the limit: a replacement character takes three bytes)."""
    text = body[:PING_BODY_KEEP].decode("utf-8", errors="replace")
    return text.encode()[:PING_BODY_KEEP].decode("utf-8", errors="ignore") or None


def _received(item: MonitorModel, p: Ping) -> list[CheckResult]:
    """Apply a ping to the monitor item (in memory); the results it makes."""
    at = p.at.astimezone(UTC)
    if p.kind == "start":  # a run began: it ends within the grace (a second start restarts that count)
        item.started_at = item.last_start_at = at
        item.due_at = _deadline(item)
        item.due_shard = shard_of(item.monitor_id)
        return []
    item.last_ping_at = at
    arm(item, at)
    # Its slot is a second after the last result's (a miss it raced, a ping or fail of the second before): each
    # result its own slot, in the order the handler must apply them.
    slot = max(_epoch(at), int(item.last_result_at or 0) + 1)
    stamped = at if slot == _epoch(at) else datetime.fromtimestamp(slot, UTC)
    if p.kind == "fail":
        result = _result(stamped, ok=False, error=FAILURE_REPORTED, detail="The job reported a failure (/fail).")
    else:
        result = _result(stamped, ok=True)
    return _counted(item, result)


def _counted(item: MonitorModel, result: CheckResult) -> list[CheckResult]:
    """A result counts in uptime when it is the first of its period window, or the window's first failure after an
    ok (a period that failed is never counted up); another is written only when it can change the monitor's status
    (a failure always can)."""
    window = _window(item, _epoch(result.checked_at))
    first = item.counted_window is None or int(item.counted_window) != window
    first_failure = not result.ok and (item.failed_window is None or int(item.failed_window) != window)
    if first or first_failure:
        item.counted_window = window
        if not result.ok:
            item.failed_window = window
        counted = [result]
    else:
        uncounted = CheckResult(**{**vars(result), "counted": False})
        counted = [uncounted] if marking.matters(uncounted, watch_of(item)) else []
    if counted:
        item.last_result_at = _epoch(result.checked_at)
    return counted


# ------------------------------------------------------------------------------------------------- deadlines


def sweep(now: datetime) -> int:
    """Every deadline passed by ``now``: a failed result each, and the next deadline a period on.  One query per
    shard of the deadline index, reading only its entries due.  The number of misses written."""
    missed = 0
    for shard in range(DUE_SHARDS):
        for entry in MonitorModel.by_deadline.query(
            f"hb{shard}", range_key_condition=MonitorModel.due_at <= _epoch(now), page_size=100
        ):
            try:
                missed += _miss(entry.team_id, entry.monitor_id, now)
            except Exception:  # noqa: BLE001 - one monitor's failure leaves the others' deadlines to be swept
                logger.exception("heartbeat deadline not swept", extra={"monitor_id": entry.monitor_id})
                metrics.add_metric(name="HeartbeatSweepFailures", unit="Count", value=1)
    if missed:
        metrics.add_metric(name="HeartbeatMisses", unit="Count", value=missed)
    return missed


def _miss(team_id: str, monitor_id: str, now: datetime) -> int:
    """The monitor's passed deadlines: its item first (the next deadline, and what orders a ping after them), then
    the results, under a key of the first deadline (a retry rewrites the same packs).  If they cannot be written,
    the deadline goes back (unless the monitor was written since), so the next tick sweeps it again."""
    done: list[tuple[MonitorModel, list[CheckResult], int, dict[str, Any]]] = []

    def attempt() -> None:
        done.clear()
        try:
            item = MonitorModel.get(team_id, monitor_id, consistent_read=True)
        except MonitorModel.DoesNotExist:
            return
        if item.paused or item.type != TYPE or item.due_at is None or int(item.due_at) > _epoch(now):
            return  # pinged, paused or deleted since the index said so
        before = {name: getattr(item, name) for name in SWEPT}
        due = int(item.due_at)
        results = _missed(item, _epoch(now))
        item.save()
        done.append((item, results, due, before))

    retry_lost_races(attempt, attempts=WRITE_ATTEMPTS)
    if not done:
        return 0
    item, results, due, before = done[0]
    try:
        _write(item, results, f"hb.{item.monitor_id}.miss.{due}", now)
    except Exception:
        with contextlib.suppress(Exception):  # the monitor written since (a ping, an edit): it has moved on
            item.update(
                actions=[
                    getattr(MonitorModel, name).set(value)
                    if value is not None
                    else getattr(MonitorModel, name).remove()
                    for name, value in before.items()
                ]
            )
        raise
    return len(results)


def _missed(item: MonitorModel, now: int) -> list[CheckResult]:
    """The deadlines passed, as failed results (at most :data:`MAX_MISSES`), and the next deadline: a period on, or
    the end of the maintenance window the last miss fell in, if that comes first."""
    period, grace = int(item.interval_seconds), int(item.grace_seconds or 0)
    due = int(item.due_at)
    results: list[CheckResult] = []
    while due <= now and len(results) < MAX_MISSES:
        started: datetime | None = item.started_at
        slot = max(due, int(item.last_result_at or 0) + 1)
        at = datetime.fromtimestamp(slot, UTC)
        if started is not None and due >= _after(started, grace):  # the run's own deadline
            detail = f"A run started at {started:%Y-%m-%d %H:%M:%S} UTC and did not end within {_duration(grace)}."
            failure = _result(at, ok=False, error=RUN_UNFINISHED, detail=detail)
            item.started_at = None
        else:
            detail = f"No ping within {_duration(period)} and {_duration(grace)} of grace."
            failure = _result(at, ok=False, error=PING_MISSED, detail=detail)
        results += _counted(item, failure)
        item.missed_at = slot
        due = _deadline(item)
    if due <= now:  # more periods missed than counted: the next deadline is the first still ahead
        due += (now - due) // period * period + period
    item.due_at = due
    return results


def _window_end(item: MonitorModel, at: datetime) -> int | None:
    """The end of the maintenance window ``at`` falls in (the spans the monitor carries), or None."""
    watch = watch_of(item)
    ends = [end for start, end in watch.maintenance if start <= at < end]
    return _after(max(ends), 0) if ends else None


# ------------------------------------------------------------------------------------------------- the ping log


def list_pings(team_id: str, monitor_id: str, *, limit: int, after: str | None) -> tuple[list[PingModel], str | None]:
    """A page of a monitor's pings as received, newest first (the caller has checked the monitor is the team's)."""
    return cursor.paginate(
        lambda start: PingModel.query(
            monitor_id,
            filter_condition=PingModel.team_id == team_id,
            scan_index_forward=False,
            last_evaluated_key=start,
            page_size=100,
        ),
        team_id=team_id,
        scope=f"pings|{monitor_id}",
        limit=limit,
        after=after,
        key=("monitor_id", "key"),
    )
