"""What the benches read back of the checks they ran: every check in every pack (``monitors.packs``) — a check
stored twice is here twice — and what the aggregator makes of them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from chalicelib.monitors import aggregate, packs
from chalicelib.monitors.models import PackModel, PeriodModel


@dataclass(frozen=True)
class StoredCheck:
    monitor_id: str
    slot: str  # <planned start>#<region>, as the benches key a check
    region: str
    ok: bool
    checked_at: datetime


def stored_checks() -> list[StoredCheck]:
    found = []
    for item in PackModel.scan():
        for p in packs.decode_pack(item.body):
            found.append(
                StoredCheck(
                    p.monitor_id, f"{p.slot:%Y-%m-%dT%H:%M:%S}#{p.region}", p.region, p.result.ok, p.result.checked_at
                )
            )
    return found


def aggregated(monitor_ids: Iterable[str], now: datetime) -> int:
    """Run the aggregator's pass as if its periods had closed, and count the checks its period items hold."""
    aggregate.run_pass(now + packs.PERIOD + packs.AGGREGATE_AFTER + timedelta(minutes=1), timedelta(days=30))
    return sum(int(item.checks) for m in monitor_ids for item in PeriodModel.query(m))
