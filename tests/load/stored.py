"""What the end-to-end benches share: their monitors (one through the API, then copies), and what they read back of
the checks they ran — every check in every pack (``monitors.packs``), a check stored twice here twice — and what
the aggregator makes of them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.ids import new_id
from chalicelib.incidents.models import MonitorStateModel
from chalicelib.monitors import aggregate, packs
from chalicelib.monitors.models import MonitorModel, PackModel, PeriodModel
from chalicelib.monitors.service import schedule_key


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
    return period_checks(monitor_ids)


def period_items(monitor_ids: Iterable[str]) -> list[tuple[int, int, str]]:
    """The aggregator's period items of these monitors: each one's size (DynamoDB's), checks and monitor.  One Scan
    (a Query a monitor is a pass over the whole table each on moto)."""
    from tests.load.cost import item_size

    wanted = set(monitor_ids)
    return [
        (item_size(item.serialize()), int(item.checks), item.monitor_id)
        for item in PeriodModel.scan()
        if item.monitor_id in wanted
    ]


def period_checks(monitor_ids: Iterable[str]) -> int:
    """The checks the aggregator's period items of these monitors hold."""
    return sum(checks for _, checks, _ in period_items(monitor_ids))


def copies(
    template: MonitorModel, url: Any, count: int, interval_s: int | Sequence[int], *, with_state: bool = False
) -> list[MonitorModel]:
    """``template`` (made through the API, the shape a real monitor has) and ``count - 1`` copies of it, written with
    batch_write: the n-th checks ``url(f"/m/{n}")`` every ``interval_s`` (or the n-th of them, in turn).  With
    ``with_state``, each copy also gets the incident handler's memory of the template (its ``monitor_states`` item):
    a copy is then what the template is, a monitor the handler has seen up in every region."""
    intervals = [interval_s] if isinstance(interval_s, int) else list(interval_s)
    shared = {
        name: value
        for name, value in template.attribute_values.items()
        if name not in ("team_id", "monitor_id", "name", "url", "schedule_key", "version", "interval_seconds")
    }
    state = MonitorStateModel.get(template.monitor_id, consistent_read=True) if with_state else None
    monitors = [template]
    with MonitorModel.batch_write() as batch:
        for n in range(1, count):
            monitor_id = new_id("mon")
            interval = intervals[n % len(intervals)]
            item = MonitorModel(
                template.team_id,
                monitor_id,
                name=f"Bench {n}",
                url=url(f"/m/{n}"),
                interval_seconds=interval,
                schedule_key=schedule_key(monitor_id, interval),
                **shared,
            )
            batch.save(item)
            monitors.append(item)
    if state is not None:
        fields = {k: v for k, v in state.attribute_values.items() if k not in ("monitor_id", "version")}
        with MonitorStateModel.batch_write() as batch:
            for item in monitors[1:]:
                batch.save(MonitorStateModel(item.monitor_id, **fields))
    return monitors


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def parse_slot(slot: str) -> tuple[datetime, str]:
    when, region = slot.split("#", 1)
    return datetime.fromisoformat(when).replace(tzinfo=UTC), region
