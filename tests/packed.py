"""Checks as the check worker stores them: packs (``monitors.packs``), written straight to the table; and two
seams at DynamoDB's wire, to fail its requests and to count what its reads cost.

``check(monitor, slot, …)`` makes one check of a monitor (a dict with ``id`` and ``team_id``, as the API returns
it); ``write_packs(checks)`` writes them as the worker does: one pack per (bucket, minute, region).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.awsrequest import AWSResponse

from chalicelib.checks.model import CheckResult, Timings
from chalicelib.monitors import packs
from chalicelib.monitors.models import PackModel
from chalicelib.monitors.packs import Packed
from chalicelib.storage.base import BaseModel


def check(
    monitor: dict[str, Any],
    slot: datetime,
    region: str = "us-east-1",
    *,
    ok: bool = True,
    ms: float | None = 120.0,
    **fields: Any,
) -> Packed:
    """One check of ``monitor`` planned at ``slot`` in ``region``, started on time: a 200 in ``ms`` when ``ok``,
    else a 503 (``status_mismatch``); ``fields`` override any of the result's."""
    result = CheckResult(
        **{
            "ok": ok,
            "checked_at": slot,
            "region": region,
            "status_code": 200 if ok else 503,
            "response_time_ms": ms,
            "timings": Timings(dns_ms=1.0, connect_ms=2.0, tls_ms=3.0, ttfb_ms=100.0, total_ms=ms or 0.0),
            "error": None if ok else "status_mismatch",
            "error_detail": None if ok else "expected 2xx, got 503",
            "ssl_expires_at": None,
            "assertion_failures": (),
            "degraded": False,
            "body_excerpt": None,
            "final_url": None,
            **fields,
        }
    )
    return Packed(monitor["team_id"], monitor["id"], region, slot, result)


def write_packs(checks: Iterable[Packed], *, writer: str = "w1", late: bool = False) -> list[PackModel]:
    """The packs a worker called ``writer`` writes for ``checks``: one per bucket, planned minute and region."""
    grouped: dict[tuple[str, datetime, str], list[Packed]] = {}
    for p in checks:
        grouped.setdefault((packs.bucket_of(p.monitor_id), packs.minute_of(p.slot), p.region), []).append(p)
    written = []
    for (bucket, minute, region), found in grouped.items():
        item = PackModel(
            bucket,
            packs.pack_key(minute, region, writer),
            body=packs.encode_pack(found),
            checks=len(found),
            late=True if late else None,
            expires_at=minute + packs.PACK_KEEP,
        )
        item.save()
        written.append(item)
    return written


def aggregated(checks: Iterable[Packed], now: datetime, retention: timedelta = timedelta(days=30)) -> None:
    """What the aggregator's passes had done by ``now`` with these checks' packs: each period due by then taken,
    with its hour's rollups when the hour had closed (without walking every period between, as passes would)."""
    from chalicelib.monitors import aggregate

    due = {(packs.bucket_of(p.monitor_id), packs.period_of(p.slot)) for p in checks}
    for bucket, period in sorted(due, key=lambda d: (d[1], d[0])):
        if period + packs.PERIOD + packs.AGGREGATE_AFTER <= now:
            aggregate.take_period(bucket, period, retention, now)


def minutes(start: datetime, count: int, step: timedelta = timedelta(minutes=1)) -> list[datetime]:
    return [start + i * step for i in range(count)]


@contextmanager
def failing(model: type[BaseModel], operation: str, *values: str) -> Iterator[list[str]]:
    """DynamoDB answers a 500 to every ``operation`` on ``model``'s table whose request holds each of the string
    ``values`` (a bucket, a key), until the block ends: the network seam, below PynamoDB and botocore's retries.
    Yields the failed requests' bodies."""
    client = model._get_connection().connection.client
    failed: list[str] = []

    def fail(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        body = params["body"].decode() if isinstance(params["body"], bytes) else str(params["body"])
        if not all(f'"{value}"' in body for value in values):
            return None
        failed.append(body)
        error = {"Code": "InternalServerError", "Message": "Internal server error"}
        return AWSResponse(params["url"], 500, {}, None), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 500}}

    event = f"before-call.dynamodb.{operation}"
    client.meta.events.register_first(event, fail)
    try:
        yield failed
    finally:
        client.meta.events.unregister(event, fail)


@dataclass(frozen=True)
class Read:
    operation: str
    items: int
    size: int  # bytes, by DynamoDB's rules (``tests.load.cost.item_size``)
    units: float  # what DynamoDB bills for it (RRU)


@contextmanager
def reads(model: type[BaseModel]) -> Iterator[list[Read]]:
    """Every read DynamoDB answers on ``model``'s table while the block runs, sized from the items it returned
    (no projections here: a query reads what it returns)."""
    from tests.load.cost import item_size, read_units

    client = model._get_connection().connection.client
    seen: list[Read] = []

    def keep(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["vigil_consistent"] = bool(params.get("ConsistentRead"))

    def count(parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        items = parsed.get("Items") or ([parsed["Item"]] if parsed.get("Item") else [])
        size = sum(item_size(item) for item in items)
        units = read_units(size, consistent=context.get("vigil_consistent", False))
        seen.append(Read(model.name, len(items), size, units))

    hooks = [(f"before-parameter-build.dynamodb.{op}", keep) for op in ("Query", "GetItem")]
    hooks += [(f"after-call.dynamodb.{op}", count) for op in ("Query", "GetItem")]
    for event, hook in hooks:
        client.meta.events.register(event, hook)
    try:
        yield seen
    finally:
        for event, hook in hooks:
            client.meta.events.unregister(event, hook)


def checks_of(monitor_id: str) -> list[Packed]:
    """Every check of a monitor its bucket's packs hold (one per check, newest first)."""
    held = []
    for item in PackModel.query(packs.bucket_of(monitor_id), consistent_read=True):
        held += [p for p in packs.decode_pack(item.body) if p.monitor_id == monitor_id]
    return packs.dedupe(held)
