"""Packed check results: many checks per item, never one item per check (issue 13).

A DynamoDB write costs one unit per started kilobyte, so an item per check (~380 bytes) paid a whole unit for
each.  Results travel in two packed forms instead:

1. **Packs** (:class:`PackModel`, written by the check worker): the results of one region's checks of one
   *bucket* of monitors in one minute, as gzipped compact JSON — one item per (bucket, minute, region, write).
   A monitor's bucket is a stable hash of its id (:func:`bucket_of`), so its recent results are in a few
   known items.  Packs live for :data:`PACK_KEEP` and their stream feeds the incident handler (packs holding a
   marked result, ``checks.marking``) and the late re-aggregation (packs written after their period closed).
2. **Periods** (:class:`PeriodModel`, written by the aggregator): one monitor's results of one
   :data:`PERIOD` (all regions), kept for the retention; the aggregator regroups packs into them and counts
   them into the rollups.

A result's identity is (monitor, planned start, region): a message delivered twice may leave two packs holding
the same check, and every reader keeps one (:func:`dedupe`).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.checks.model import CheckResult, Timings
from chalicelib.monitors.models import PackModel

BUCKETS = 16  # changing it moves every monitor's recent packs: drain the aggregator first (docs/cost.md)
PERIOD = timedelta(minutes=10)
PACK_KEEP = timedelta(days=3)  # room for the aggregator to catch up after an outage of its own
LATE_AFTER = timedelta(minutes=2)  # a pack written this long after its period closed is re-aggregated alone
AGGREGATE_AFTER = timedelta(minutes=3)  # the aggregator takes a period this long after it closed
MAX_PACK_RESULTS = 1000  # per item, well under DynamoDB's 400 KB
FORMAT = 1
TIMING_FIELDS = ("dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "total_ms")


def bucket_of(monitor_id: str) -> str:
    return f"{zlib.crc32(monitor_id.encode()) % BUCKETS:02d}"


def minute_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(second=0, microsecond=0)


def period_of(at: datetime) -> datetime:
    at = minute_of(at)
    return at.replace(minute=at.minute - at.minute % (PERIOD.seconds // 60))


def minute_key(minute: datetime) -> str:
    return f"{minute:%Y-%m-%dT%H:%M}"


def pack_key(minute: datetime, region: str, writer: str) -> str:
    """``<minute>#<region>#<writer>``: sorted by minute, so a period is one range of a bucket."""
    return f"{minute_key(minute)}#{region}#{writer}"


def region_of_key(key: str) -> str:
    return key.split("#")[1]


def is_late(minute: datetime, now: datetime) -> bool:
    """Written after the aggregator may have taken its period: it is re-aggregated on its own."""
    return now >= period_of(minute) + PERIOD + LATE_AFTER


@dataclass(frozen=True)
class Packed:
    """One check as packs and periods hold it."""

    team_id: str
    monitor_id: str
    region: str
    slot: datetime  # the planned start: with the monitor and the region, the check's identity
    result: CheckResult
    marked: bool = False

    @property
    def identity(self) -> tuple[str, datetime, str]:
        return (self.monitor_id, self.slot, self.region)


def _num(value: float | None) -> float | int | None:
    if value is None:
        return None
    rounded = round(float(value), 1)
    return int(rounded) if rounded.is_integer() else rounded


def _row(p: Packed, with_ids: bool) -> list[Any]:
    r = p.result
    slot = int(p.slot.timestamp())
    timings = asdict(r.timings)
    row: list[Any] = [
        slot,
        # µs after the planned start: the check time to the microsecond, as an event key needs it (two regions'
        # checks of one planned second can start in the same millisecond, and their events must not collide).
        (r.checked_at - datetime.fromtimestamp(slot, UTC)) // timedelta(microseconds=1),
        1 if r.ok else 0,
        r.status_code,
        _num(r.response_time_ms),
        [_num(timings[name]) for name in TIMING_FIELDS],
        r.error,
        r.error_detail,
        int(r.ssl_expires_at.timestamp()) if r.ssl_expires_at else None,
        list(r.assertion_failures),
        1 if r.degraded else 0,
        1 if p.marked else 0,
        0 if r.counted else 1,
    ]
    while row and row[-1] in (None, 0, []) and len(row) > 6:  # trailing defaults are left out
        row.pop()
    return [p.team_id, p.monitor_id, p.region, *row] if with_ids else [p.region, *row]


def _from_row(team_id: str, monitor_id: str, region: str, row: list[Any]) -> Packed:
    row = list(row) + [None] * (13 - len(row))
    slot_s, offset_us, ok, status, response, timings, error, detail, ssl, failures, degraded, marked, uncounted = row[
        :13
    ]
    slot = datetime.fromtimestamp(int(slot_s), UTC)
    timing_values = dict(zip(TIMING_FIELDS, [float(v or 0) for v in (timings or [])], strict=False))
    result = CheckResult(
        ok=bool(ok),
        checked_at=slot + timedelta(microseconds=int(offset_us or 0)),
        region=region,
        status_code=int(status) if status is not None else None,
        response_time_ms=float(response) if response is not None else None,
        timings=Timings(**timing_values),
        error=error,
        error_detail=detail,
        ssl_expires_at=datetime.fromtimestamp(int(ssl), UTC) if ssl is not None else None,
        assertion_failures=tuple(str(f) for f in failures or ()),
        degraded=bool(degraded),
        body_excerpt=None,  # never stored
        final_url=None,
        counted=not uncounted,
    )
    return Packed(team_id, monitor_id, region, slot, result, bool(marked))


def _zip(payload: Any) -> bytes:
    return gzip.compress(json.dumps(payload, separators=(",", ":")).encode(), compresslevel=6, mtime=0)


def _unzip(blob: bytes) -> Any:
    return json.loads(gzip.decompress(blob))


def encode_pack(results: Iterable[Packed]) -> bytes:
    """A pack's body: ``{"v": 1, "r": [[team, monitor, region, slot, …], …]}`` gzipped."""
    return _zip({"v": FORMAT, "r": [_row(p, with_ids=True) for p in results]})


def decode_pack(blob: bytes) -> list[Packed]:
    """A pack's results; raises ``ValueError`` for a body this code did not write."""
    try:
        payload = _unzip(blob)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise ValueError(f"not a results pack: {type(exc).__name__}") from exc
    if not isinstance(payload, dict) or payload.get("v") != FORMAT or not isinstance(payload.get("r"), list):
        raise ValueError("not a results pack")
    return [_from_row(str(row[0]), str(row[1]), str(row[2]), row[3:]) for row in payload["r"]]


def encode_period(results: Iterable[Packed]) -> bytes:
    """A monitor's period: its rows without the ids (the item's key says them)."""
    return _zip({"v": FORMAT, "r": [_row(p, with_ids=False) for p in results]})


def decode_period(team_id: str, monitor_id: str, blob: bytes) -> list[Packed]:
    payload = _unzip(blob)
    if not isinstance(payload, dict) or payload.get("v") != FORMAT:
        raise ValueError("not a results period")
    return [_from_row(team_id, monitor_id, str(row[0]), row[1:]) for row in payload["r"]]


def pack_item(
    bucket: str, minute: datetime, region: str, writer: str, results: list[Packed], now: datetime
) -> PackModel:
    """One pack of a bucket's results of one minute and region, written by ``writer`` (unique to this write)."""
    return PackModel(
        bucket,
        pack_key(minute, region, writer),
        body=encode_pack(results),
        checks=len(results),
        marked=True if any(p.marked for p in results) else None,
        late=True if is_late(minute, now) else None,
        expires_at=minute + PACK_KEEP,
    )


def dedupe(results: Iterable[Packed]) -> list[Packed]:
    """One result per check (the first seen), newest first."""
    seen: dict[tuple[str, datetime, str], Packed] = {}
    for p in results:
        seen.setdefault(p.identity, p)
    return sorted(seen.values(), key=lambda p: (p.slot, p.region), reverse=True)
