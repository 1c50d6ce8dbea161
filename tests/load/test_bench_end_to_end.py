"""Bench (b) of issue 5: end to end in the local stack, 1,000 monitors on 60 s, three real minutes.

Everything but the clock's source of ticks is the local stack: moto, the event loop driving the
per-region check workers from their SQS queues (the aggregator's periods counted after), and a
loopback HTTP target.  The test fires the scheduler itself, through the loop, at three consecutive
real minute boundaries (as the loop's own schedule source would, with the same event), so the
bench stops after exactly three ticks; the planned starts are real wall-clock instants and the
lateness is real.

Figures: every (monitor, tick, region) has exactly one stored result and the target saw each
monitor's path exactly once per region and tick; lateness is a result's ``checked_at`` (the check's
actual start) minus its planned start (the ``slot`` key), p99 ≤ 2 s.  A check started before its
planned second counts as early, reported apart (it would not make a late one look on time), and fails
the bench: the worker waits for each planned start, and its budget leaves the minute's last start time.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.checks.jobs import spread
from chalicelib.clock import utcnow
from chalicelib.local import stack
from chalicelib.local.loop import EventLoop, next_fire, scheduled_event
from chalicelib.monitors.models import MonitorModel, PackModel
from chalicelib.observability import logger
from chalicelib.scheduler.due import planned_start
from chalicelib.scheduler.service import planned_minute
from tests.factories import create_monitor
from tests.load.stored import aggregated, copies, parse_slot, percentile, stored_checks
from tests.load.targets import Target
from tests.support import make_test_settings, sign_up

MONITORS = 1000
INTERVAL = 60
TICKS = 3
MAX_P99_LATE_S = 2.0
HEAD_S = 10  # lateness is also shown for the starts planned this long or more after their tick
EARLY_TOLERANCE_S = 0.0  # a start before its planned second is early, by any margin


@pytest.fixture
def settings():
    return make_test_settings(ALLOW_PRIVATE_TARGETS="true")


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def quiet() -> Iterator[None]:
    """The loop logs a line per handler run and the worker one per batch: thousands, on the bench's stdout.

    Set once the loop is built: importing the checker's handler configures the logger again.
    """
    level = logger.log_level
    yield
    logger.setLevel(level)


def _seed(api: Any, target: Target) -> list[MonitorModel]:
    """One monitor through the API (the shape a real one has), then its copies with batch_write."""
    sign_up(api, "bench@example.com", verified=False)  # no mail of its own: the bench meters the checks
    first = create_monitor(api, name="Bench 0", url=target.url("/m/0"), interval_seconds=INTERVAL)
    assert len(first["regions"]) == 3
    assert first["interval_seconds"] == INTERVAL
    template = MonitorModel.get(first["team_id"], first["id"])
    return copies(template, target.url, MONITORS, INTERVAL)


@pytest.mark.timeout(900)
def test_every_due_check_runs_once_per_region_and_on_time(api, app, aws, target, quiet):
    monitors = _seed(api, target)
    regions = aws.check_regions
    assert len(regions) == 3

    loop = EventLoop(aws.aws_region, retry_seconds=0.1)
    # What issue 5 measures: the tick and the workers (the aggregator runs after, as if its periods had closed).
    # The incident handler (its own bench, test_bench_incidents.py) would share this one process's GIL with the
    # workers, which Lambda never does.
    loop.add_chalice_app(app, aws, new_tables=[PackModel.Meta.table_name], only=("scheduler",))
    stack.add_check_workers(loop, aws)
    [scheduler] = [s for s in loop.schedules if s.name == "scheduler"]
    # The test fires the ticks: the loop's own clock would go on ticking after the third.
    loop.schedules.remove(scheduler)
    logger.setLevel("WARNING")
    loop.start()
    cpu_started, wall_started = time.process_time(), time.monotonic()
    try:
        ticks, tick_runs = _run_ticks(loop, scheduler)
        # The last tick planned the minute after it: its last start is at most 119 s after it; then the results settle.
        time.sleep(max(0.0, ticks[-1] + 2 * INTERVAL - time.time()))
        assert loop.drain(120), "the local stack did not settle"
        cpu = (time.process_time() - cpu_started) / (time.monotonic() - wall_started)
    finally:
        loop.stop()

    expected = {
        (
            m.monitor_id,
            f"{_start(m.monitor_id, t):%Y-%m-%dT%H:%M:%S}#{r}",
        )
        for m in monitors
        for t in ticks
        for r in regions
    }
    stored = stored_checks()
    stored_keys = Counter((r.monitor_id, r.slot) for r in stored)
    missing = expected - set(stored_keys)
    extra = set(stored_keys) - expected
    per_region = Counter(r.region for r in stored)

    late: list[float] = []
    late_after_head: list[
        float
    ] = []  # planned HEAD_S or more after the tick: what the scheduler's own run cannot delay
    early: list[float] = []
    for result in stored:
        planned, _ = parse_slot(result.slot)
        offset = (result.checked_at - planned - spread(result.monitor_id)).total_seconds()
        late.append(max(0.0, offset))
        if planned.second >= HEAD_S:
            late_after_head.append(max(0.0, offset))
        if offset < -EARLY_TOLERANCE_S:
            early.append(-offset)

    # The target's side: each monitor's path, once per region and tick.
    hits = {path: len(times) for path, times in target.arrivals.items()}
    wrong_hits = {f"/m/{n}": hits.get(f"/m/{n}", 0) for n in range(MONITORS) if hits.get(f"/m/{n}", 0) != 9}
    rollup_checks = aggregated([m.monitor_id for m in monitors], utcnow())  # the aggregator's periods
    failed = sum(not r.ok for r in stored)

    print(
        f"\nend-to-end bench: {MONITORS} monitors on {INTERVAL} s x {len(regions)} regions, {TICKS} real-minute ticks"
        f" ({', '.join(datetime.fromtimestamp(t, UTC).strftime('%H:%M:%S') for t in ticks)})\n"
        f"  scheduler runs: {', '.join(f'{s:.2f} s' for s in tick_runs)}\n"
        f"  checks expected {len(expected)}, stored {len(stored)} (missing {len(missing)}, unexpected {len(extra)},"
        f" failed {failed})\n"
        f"  per region: {', '.join(f'{r} {per_region[r]}' for r in regions)}\n"
        f"  target requests: {sum(hits.values())}; paths not hit exactly 9 times: {len(wrong_hits)}\n"
        f"  the aggregator's periods count {rollup_checks} checks\n"
        f"  lateness (checked_at - planned start): p50 {statistics.median(late):.3f} s,"
        f" p99 {percentile(late, 0.99):.3f} s, max {max(late):.3f} s   (target p99 <= {MAX_P99_LATE_S} s)\n"
        f"  planned {HEAD_S} s or more after the tick ({len(late_after_head)}):"
        f" p50 {statistics.median(late_after_head):.3f} s,"
        f" p99 {percentile(late_after_head, 0.99):.3f} s, max {max(late_after_head):.3f} s\n"
        f"  early starts: {len(early)}" + (f", by up to {max(early):.3f} s" if early else "") + "\n"
        f"  process CPU while running: {cpu:.0%} of one core"
    )
    assert not missing, f"missing {sorted(missing)[:5]}"
    assert not extra, f"unexpected {sorted(extra)[:5]}"
    assert all(count == 1 for count in stored_keys.values())
    assert per_region == dict.fromkeys(regions, MONITORS * TICKS)
    assert not wrong_hits, f"paths not checked exactly once per region and tick: {list(wrong_hits.items())[:5]}"
    assert failed == 0
    assert rollup_checks == MONITORS * TICKS * len(regions)
    assert percentile(late, 0.99) <= MAX_P99_LATE_S
    assert not early, f"{len(early)} checks started before their planned start, by up to {max(early):.3f} s"


def _start(monitor_id: str, tick: float) -> datetime:
    """The planned start of a monitor in the minute a tick at ``tick`` plans (the next one)."""
    return planned_start(planned_minute(datetime.fromtimestamp(tick, UTC)), monitor_id, INTERVAL, 0)


def _run_ticks(loop: EventLoop, scheduler: Any) -> tuple[list[float], list[float]]:
    """Fire the scheduler at the next ``TICKS`` real minute boundaries, as the loop's schedule source does."""
    ticks: list[float] = []
    runs: list[float] = []
    for _ in range(TICKS):
        at = next_fire(time.time(), 60)
        time.sleep(max(0.0, at - time.time()))
        started = time.perf_counter()
        outcome = loop.invoke(scheduler.name, scheduler.handler, scheduled_event(scheduler.name, loop.region, at))
        runs.append(time.perf_counter() - started)
        assert outcome.ok, outcome.error
        assert outcome.result["jobs"] == MONITORS * 3, outcome.result
        ticks.append(at)
    return ticks, runs
