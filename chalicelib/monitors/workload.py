"""What each region's check workers carry, measured, and the worker size the scheduler set for it (issue 13).

Two kinds of small item in the progress table (:class:`ProgressModel`), only ever updated:

- ``cpu#<region>#<hour>``: each worker message adds the CPU its checks took and how many ran
  (:func:`record_cpu`, one UpdateItem a message).  :func:`read` turns this hour's and the last into a CPU per
  check, once at least :data:`MIN_MEASURED_CHECKS` were measured.
- ``size#<region>``: the memory the scheduler gave the region's worker (``checks.sizing``), the one before and
  when it changed, whether a measured CPU planned it, and the busiest minute of this hour and the last
  (:class:`Size`).  Before the scheduler first sets it, the worker has its deployed size,
  :data:`~chalicelib.checks.sizing.DEFAULT_MEMORY_MB`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from chalicelib.checks.sizing import DEFAULT_MEMORY_MB
from chalicelib.monitors.models import ProgressModel

MIN_MEASURED_CHECKS = 1000  # fewer checks measured this hour and the last: the CPU per check is not yet known
SETTLE = timedelta(minutes=2)  # after a change, invocations may still start at the size before for this long
KEEP_HOURS = 3  # a region's CPU items older than this are deleted by the scheduler


def hour_key(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%dT%H}"


def cpu_name(region: str, at: datetime) -> str:
    return f"cpu#{region}#{hour_key(at)}"


def size_name(region: str) -> str:
    return f"size#{region}"


def record_cpu(region: str, at: datetime, cpu_ms: float, checks: int) -> None:
    """Add one message's measured CPU (ms, over ``checks`` checks) to its region's hour."""
    ProgressModel(cpu_name(region, at)).update(
        actions=[ProgressModel.cpu_ms.add(round(cpu_ms, 3)), ProgressModel.checks.add(checks)]
    )


def forget_cpu(region: str, now: datetime) -> None:
    """Delete the region's CPU item of :data:`KEEP_HOURS` ago (the scheduler, once an hour at most)."""
    ProgressModel(cpu_name(region, now - timedelta(hours=KEEP_HOURS))).delete()


@dataclass(frozen=True)
class Size:
    """The region's worker size as the scheduler last set it."""

    region: str
    memory_mb: int = DEFAULT_MEMORY_MB
    previous_mb: int = DEFAULT_MEMORY_MB
    changed_at: datetime | None = None  # None: never set by the scheduler (the deployed size)
    measured: bool = False  # planned on the workers' measured CPU, not the assumed figure
    peak: int = 0  # the busiest minute's checks of ``peak_hour``
    peak_hour: str = ""
    last_peak: int = 0  # of the hour before ``peak_hour``

    def lane_mb(self, now: datetime) -> int:
        """The memory a lane can count on now: the smaller size for :data:`SETTLE` after a change."""
        if self.changed_at is not None and now - self.changed_at < SETTLE:
            return min(self.memory_mb, self.previous_mb)
        return self.memory_mb

    def peaks(self, checks: int, now: datetime) -> tuple[int, int, str]:
        """(this hour's busiest minute, counting ``checks`` now; the last hour's; this hour's key)."""
        hour = hour_key(now)
        if self.peak_hour == hour:
            return max(self.peak, checks), self.last_peak, hour
        if self.peak_hour == hour_key(now - timedelta(hours=1)):
            return checks, self.peak, hour
        return checks, 0, hour


@dataclass(frozen=True)
class Load:
    size: Size
    cpu_ms: float | None  # the workers' CPU per check over this hour and the last; None: too few measured


def read(regions: list[str], now: datetime) -> dict[str, Load]:
    """Each region's :class:`Load`: its size item and its CPU items of this hour and the last, in one BatchGet."""
    names = [size_name(r) for r in regions]
    for region in regions:
        names += [cpu_name(region, now), cpu_name(region, now - timedelta(hours=1))]
    items = {item.name: item for item in ProgressModel.batch_get(names)} if regions else {}
    out = {}
    for region in regions:
        cpu = checks = 0.0
        for name in (cpu_name(region, now), cpu_name(region, now - timedelta(hours=1))):
            if (item := items.get(name)) is not None:
                cpu += float(item.cpu_ms or 0)
                checks += float(item.checks or 0)
        # A CPU of nothing is no measurement (the lanes divide by it): the assumed figure stands.
        measured = cpu / checks if checks >= MIN_MEASURED_CHECKS and cpu > 0 else None
        out[region] = Load(_size(region, items.get(size_name(region))), measured)
    return out


def _size(region: str, item: ProgressModel | None) -> Size:
    if item is None or item.memory_mb is None:
        return Size(region)
    return Size(
        region,
        memory_mb=int(item.memory_mb),
        previous_mb=int(item.previous_mb or item.memory_mb),
        changed_at=item.changed_at,
        measured=bool(item.measured),
        peak=int(item.peak or 0),
        peak_hour=item.peak_hour or "",
        last_peak=int(item.last_peak or 0),
    )


def save_peak(region: str, peak: int, hour: str, last_peak: int) -> None:
    ProgressModel(size_name(region)).update(
        actions=[
            ProgressModel.peak.set(peak),
            ProgressModel.peak_hour.set(hour),
            ProgressModel.last_peak.set(last_peak),
        ]
    )


def save_size(region: str, memory_mb: int, previous_mb: int, at: datetime | None, *, measured: bool) -> None:
    """The region's worker size, changed ``at`` (None: as deployed, never planned)."""
    ProgressModel(size_name(region)).update(
        actions=[
            ProgressModel.memory_mb.set(memory_mb),
            ProgressModel.previous_mb.set(previous_mb),
            ProgressModel.changed_at.set(at) if at is not None else ProgressModel.changed_at.remove(),
            ProgressModel.measured.set(measured),
        ]
    )
