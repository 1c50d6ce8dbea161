"""The check workers' size follows their load (issue 13): the tick cuts each region's minute into lanes for the
memory its worker has, then plans that memory for the region's busiest minute and its measured CPU per check.

1. Before packing (:func:`read`): each region's :class:`~chalicelib.monitors.workload.Load`, one BatchGet.
   :func:`lane_checks` is how many checks one message takes: what the worker's memory runs at
   :data:`~chalicelib.checks.sizing.CPU_SHARE` busy, at the workers' measured CPU per check (the assumed figure
   until they measured enough), for the smaller size while a change settles, and for the size this tick is about
   to shrink it to (its messages start on the worker shrunk).
2. After every region's jobs are sent (:func:`settle`), for each region: its busiest minute of this hour and the
   last is kept; the memory planned for it (``checks.sizing.plan``) replaces the worker's when it saves at least
   :data:`MIN_SAVING` of the lanes' memory for that minute — at most every :data:`RESIZE_EVERY`, except the first
   time and the first time a measured CPU plans it — with ``lambda:UpdateFunctionConfiguration`` in the region.
   A failure is logged and counted (``WorkerSizeFailures``): the worker keeps its size, and its lanes follow it.
3. Each tick, the memory is read back first (``lambda:GetFunctionConfiguration``, one free call a region): a stack
   update puts the template's size back, and a worker whose memory is not the one set is planned again at once.
   Read back only every few minutes, a deploy's workers ran lanes cut for the size set on the template's until then.

A forced tick (every monitor at once) counts toward no peak: it is not a minute's load.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from chalicelib.aws import names
from chalicelib.aws.clients import client
from chalicelib.checks.sizing import ASSUMED_CPU_MS, HEADROOM, capacity, lanes, plan
from chalicelib.monitors import workload
from chalicelib.monitors.workload import Load, Size
from chalicelib.observability import logger, metrics
from chalicelib.settings import get_settings

MIN_SAVING = 0.10  # a new size must save this share of the lanes' memory for the peak minute
RESIZE_EVERY = timedelta(minutes=10)  # each change starts every lane cold once


def read(regions: list[str], now: datetime) -> dict[str, Load]:
    """Each region's load; a region whose items cannot be read is planned as deployed, on the assumed CPU."""
    try:
        return workload.read(regions, now)
    except Exception:  # noqa: BLE001 - sizing never holds back the checks: the deployed size is always safe
        logger.exception("worker sizes not read")
        metrics.add_metric(name="WorkerSizeFailures", unit="Count", value=1)
        return {region: Load(Size(region), None) for region in regions}


def cpu_ms(load: Load) -> float:
    return load.cpu_ms if load.cpu_ms is not None else ASSUMED_CPU_MS


def lane_checks(load: Load, checks: int, now: datetime) -> int:
    """The checks one message of the region takes now, for a minute of ``checks``: what the memory it has runs, or
    the memory this tick is about to shrink it to (:func:`settle`) where that is less.  The minute's messages wait in
    their queue until just before it, and start on the worker as it is by then, shrunk or not."""
    size = load.size
    memory = size.lane_mb(now)
    this, last, _ = size.peaks(checks, now)
    if (planned := target(size, max(this, last), load.cpu_ms, now)) is not None:
        memory = min(memory, planned)
    return capacity(memory, cpu_ms(load))


def target(size: Size, peak: int, cpu: float | None, now: datetime) -> int | None:
    """The region's new worker memory, or None to keep the one it has."""
    if peak <= 0:
        return None
    figure = cpu if cpu is not None else ASSUMED_CPU_MS
    planned = plan(peak, figure)
    if planned == size.memory_mb:
        return None
    if size.changed_at is None:
        return planned  # the deployed size, never planned
    first_measured = cpu is not None and not size.measured
    if now - size.changed_at < RESIZE_EVERY and not first_measured:
        return None
    checks = math.ceil(peak * HEADROOM)
    before = lanes(checks, size.memory_mb, figure) * size.memory_mb
    after = lanes(checks, planned, figure) * planned
    return planned if after <= before * (1 - MIN_SAVING) else None


def settle(
    loads: dict[str, Load], checks: dict[str, int], cut: dict[str, int], now: datetime, *, force: bool
) -> dict[str, int]:
    """Keep each region's peak and resize its worker where that pays (step 2); the sizes set, by region.  ``cut``:
    the checks this tick's messages of each region took (:func:`lane_checks`)."""
    resized = {}
    for region, load in sorted(loads.items()):
        try:
            if (memory := _settle(load, 0 if force else checks.get(region, 0), cut.get(region), now)) is not None:
                resized[region] = memory
        except Exception:  # noqa: BLE001 - one region's failure leaves its worker as it is, and the others go on
            logger.exception("worker size not settled", extra={"region": region})
            metrics.add_metric(name="WorkerSizeFailures", unit="Count", value=1)
    return resized


def _settle(load: Load, checks: int, cut: int | None, now: datetime) -> int | None:
    size = load.size
    size = _as_deployed(size, now)
    this, last, hour = size.peaks(checks, now)
    if (this, last, hour) != (size.peak, size.last_peak, size.peak_hour):
        workload.save_peak(size.region, this, hour, last)
        if hour != size.peak_hour:
            workload.forget_cpu(size.region, now)
    memory = target(size, max(this, last), load.cpu_ms, now)
    if memory is None:
        return None
    if cut is not None and capacity(memory, cpu_ms(load)) < cut:
        # This tick's messages, on their way, were cut for more than that size runs (a read-back, or the clock,
        # changed the plan after they were cut): the next tick cuts its own for it first.
        logger.info("worker shrink left to the next tick", extra={"region": size.region, "memory_mb": memory})
        return None
    # Recorded first: for the change's settling the lanes are cut for the smaller size, whichever it ends as.  A
    # change refused is recorded back as it was; were that lost too, the next read-back (step 3) finds the truth.
    workload.save_size(size.region, memory, size.memory_mb, now, measured=load.cpu_ms is not None)
    try:
        _functions(size.region).update_function_configuration(
            FunctionName=names.checker_function(get_settings()), MemorySize=memory
        )
    except Exception:
        workload.save_size(size.region, size.memory_mb, size.previous_mb, size.changed_at, measured=size.measured)
        raise
    logger.info(
        "worker resized",
        extra={"region": size.region, "memory_mb": memory, "was_mb": size.memory_mb, "cpu_ms": load.cpu_ms},
    )
    return memory


def _functions(region: str) -> Any:
    return client("lambda", region, fast=True)


def _as_deployed(size: Size, now: datetime) -> Size:
    """``size`` with the memory the worker really has: where it is not the one set (a stack update put the
    template's back), that one is recorded, and planned from as if never set (changed again at once if need be)."""
    found = _functions(size.region).get_function_configuration(FunctionName=names.checker_function(get_settings()))
    actual = int(found["MemorySize"])
    if actual == size.memory_mb:
        return size
    logger.warning("worker size not the one set", extra={"region": size.region, "set_mb": size.memory_mb, "mb": actual})
    workload.save_size(size.region, actual, actual, None, measured=False)
    return replace(size, memory_mb=actual, previous_mb=actual, changed_at=None, measured=False)
