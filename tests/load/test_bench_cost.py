"""Bench of issue 13: what a check costs, counted in a run of the whole local stack, and how soon an outage alerts.

Everything but the clock's source of ticks is the local stack: moto, and every handler of the app in the event
loop — the per-region check workers fed by their SQS queues, the results stream feeding the rollups and the
incident handler, the events stream feeding the alert and status-page handlers, the alerts queue feeding the
deliverer — with one loopback target for every monitor and a webhook channel on each.  The test fires the
scheduler itself, through the loop, at real minute boundaries (as the loop's own schedule source would, with the
same event).  The hourly status page refresh is left out (no page exists).

0. Warm-up: a forced tick checks every monitor at once (``POST /dev/tick``'s), so each new monitor goes from
   pending to up — a status change, with its events, once in a monitor's life — before anything is metered.
1. Metered: ``BENCH_MINUTES`` ticks (default 5) of ``BENCH_MONITORS`` monitors (default 10,000, on every interval
   from 30 s to 1 h) in three regions, every target up.  A meter (``tests/load/meter.py``) counts every AWS
   request the functions make and times every invocation, until the last tick's checks are stored and every
   stream is read; ``cost.py`` prices it per check.  Moto and the targets run in processes of their own.
2. Detection: a tick plans the next minute, and ``BENCH_DOWN`` targets (default 5) answer 503 from that minute's
   start on; ticks go on each minute until each of them has alerted (its ``incident.opened`` webhook has
   arrived), then the stack settles.  Detection is that webhook's arrival minus the instant the target went down.

Asserted: every (monitor, tick, region) has exactly one stored result and the target saw each monitor's path
exactly once per region and tick (0 lost, 0 duplicated), only the downed targets failed, every one of them
alerted, and the meter saw every result written.  Reported, not asserted: lateness (a result's ``checked_at``
minus its planned start, ``Job.start``), the cost, detection.  The cost table, then one line per figure for
machines, at the very end (also written to ``BENCH_FIGURES``, default ``out/bench-figures.txt``, which
``make bench`` prints last).
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib.aws import names
from chalicelib.aws.clients import client
from chalicelib.checks import tls
from chalicelib.checks.jobs import spread
from chalicelib.checks.sizing import ASSUMED_CPU_MS, MIN_MEMORY_MB, plan
from chalicelib.local import stack
from chalicelib.local.loop import EventLoop, next_fire, scheduled_event
from chalicelib.monitors import aggregate, packs, workload
from chalicelib.monitors.models import MonitorModel, PackModel
from chalicelib.monitors.packs import Packed
from chalicelib.monitors.rollups import DAILY_KEEP, HOURLY_KEEP
from chalicelib.monitors.service import INTERVALS as ALL_INTERVALS
from chalicelib.observability import logger
from chalicelib.scheduler import sizing
from chalicelib.scheduler.due import due_keys, planned_start
from chalicelib.scheduler.service import planned_minute
from chalicelib.settings import Settings
from tests.factories import create_channel, create_monitor
from tests.load import cost
from tests.load.meter import KeyScan, Meter, remote_items, remote_keys
from tests.load.stored import copies, parse_slot, percentile, period_items, stored_checks
from tests.load.targets import RemoteTarget, tls_bytes
from tests.support import make_test_settings, sign_up, start_aws

MONITORS = int(os.environ.get("BENCH_MONITORS", "10000"))
MINUTES = int(os.environ.get("BENCH_MINUTES", "5"))
# The monitors' intervals, in turn: by default every interval a monitor may have, 30 s to an hour.
INTERVALS = tuple(int(i) for i in os.environ.get("BENCH_INTERVALS", ",".join(map(str, ALL_INTERVALS))).split(","))
DOWN = min(MONITORS - 1, int(os.environ.get("BENCH_DOWN", "5")))
FIGURES = Path(os.environ.get("BENCH_FIGURES", str(cost.ROOT / "out" / "bench-figures.txt")))
INTERVAL = 60  # the template's, and the downed targets' monitors'
TARGET_P99_LATE_S = 2.0  # issue 5's target, shown beside the figure
TARGET_DETECTION_S = INTERVAL + 10  # issue 13's: within the interval + 10 s of the target going down (p95)
HEAD_S = 10  # lateness is also shown for the starts planned this long or more after their tick
EARLY_TOLERANCE_S = 0.0  # a start before its planned second is early, by any margin
SETTLE_S = 120  # after the last planned start's minute, for the results, rollups, incidents and alerts
LAMBDA_ASYNC_RETRIES = 2  # Lambda's default for an asynchronous (scheduled) invocation
EXTRA_TICKS = 3  # detection ticks beyond the failure threshold before the bench gives up on an alert


@pytest.fixture
def settings(aws_endpoint: str) -> Settings:
    return make_test_settings(ALLOW_PRIVATE_TARGETS="true", AWS_ENDPOINT_URL=aws_endpoint)


@pytest.fixture
def aws(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Vigil's AWS on a moto server in a process of its own (``aws_endpoint``): the emulator's CPU is not the
    stack's, as DynamoDB's and SQS's are not Lambda's."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "bench")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "bench")
    start_aws(settings)
    return settings


@pytest.fixture
def target() -> Iterator[RemoteTarget]:
    """The monitors' targets in a process of their own: their CPU is not the stack's."""
    server = RemoteTarget(tls=True)  # the checks over HTTPS, as most monitors' are; webhooks over HTTP
    assert server.ca is not None
    tls.use_trust_store(server.ca.ca_pem)
    try:
        yield server
    finally:
        tls.use_trust_store(None)
        server.close()


@pytest.fixture
def quiet() -> Iterator[None]:
    """The API logs a line per request while the bench seeds, the loop one per handler run: none is shown (the meter
    counts the functions' lines at the deployed level while it runs); the level is put back after."""
    level = logger.log_level
    logger.setLevel("WARNING")
    yield
    logger.setLevel(level)


def _template(api: Any, target: RemoteTarget) -> dict[str, Any]:
    """One monitor through the API: the shape a real one has, with a webhook channel."""
    sign_up(api, "bench@example.com", verified=False)  # no mail of its own: the bench meters the checks
    hook = create_channel(api, name="Hook", type="webhook", config={"url": target.url("/hook")})
    first = create_monitor(
        api, name="Bench 0", url=target.check_url("/m/0"), interval_seconds=INTERVAL, channel_ids=[hook["id"]]
    )
    assert len(first["regions"]) == 3
    assert first["interval_seconds"] == INTERVAL
    return first


def _seed(first: dict[str, Any], target: RemoteTarget, regions: list[str]) -> tuple[list[MonitorModel], list[str]]:
    """The template, checked up in every region by the warm-up, and its copies in that state, on mixed intervals;
    ``DOWN`` of them on 60 s alert on their first failure (``failure_threshold`` 1): those whose targets go down."""
    template = MonitorModel.get(first["team_id"], first["id"])
    assert template.status == "up", template.status
    assert sorted(template.steady_regions or []) == sorted(regions)
    monitors = copies(template, target.check_url, MONITORS, INTERVALS, with_state=True)
    minute_monitors = [m for m in monitors if int(m.interval_seconds) == INTERVAL]
    down = minute_monitors[:: max(1, len(minute_monitors) // max(1, DOWN))][:DOWN]
    for m in down:
        m.update(actions=[MonitorModel.failure_threshold.set(1)], add_version_condition=False)
    return monitors, [m.monitor_id for m in down]


def _due(monitors: list[MonitorModel], tick: float) -> list[tuple[MonitorModel, int]]:
    """The monitors a tick at ``tick`` sends (due in the next minute), each with each of its sends' offsets in that
    minute (0, or 0 and 30)."""
    keys = {due.key: due for due in due_keys(planned_minute(datetime.fromtimestamp(tick, UTC)))}
    return [(m, repeat) for m in monitors if (due := keys.get(m.schedule_key)) for repeat in due.repeats]


def _slot(monitor: MonitorModel, tick: float, repeat: int, region: str) -> str:
    minute = planned_minute(datetime.fromtimestamp(tick, UTC))
    start = planned_start(minute, monitor.monitor_id, int(monitor.interval_seconds), repeat)
    return f"{start:%Y-%m-%dT%H:%M:%S}#{region}"


def wait_clear_of_the_hour(now: float, minutes: float) -> float:
    """Seconds to wait so that ``minutes`` from then end before the hour's last aggregation period: the aggregator's
    pass over the metered periods would otherwise take that period, which closes the hour, and write every monitor's
    hourly and daily rollups — an hour's work, counted against five metered minutes (session 14's first run and
    session 15's last: $0.44/M, the rollups line 16 times its share).  Session 14 kept only the metered minutes off
    the hour's end; the pass looks past them."""
    next_hour = (int(now) // 3600 + 1) * 3600
    last_period = next_hour - packs.PERIOD.total_seconds()
    return 0.0 if now + minutes * 60 < last_period else next_hour + 5 - now


def _fire(loop: EventLoop, scheduler: Any, monitors: list[MonitorModel]) -> tuple[float, float]:
    """Fire the scheduler at the next real minute boundary, as the loop's schedule source does."""
    at = next_fire(time.time(), 60)
    time.sleep(max(0.0, at - time.time()))
    started = time.perf_counter()
    event = scheduled_event(scheduler.name, loop.region, at)
    outcome = loop.invoke(scheduler.name, scheduler.handler, event)
    for _ in range(LAMBDA_ASYNC_RETRIES):  # a failed scheduled invocation is retried, as Lambda retries it
        if outcome.ok:
            break
        outcome = loop.invoke(scheduler.name, scheduler.handler, event)
    assert outcome.ok, outcome.error
    assert outcome.result["jobs"] == len(_due(monitors, at)) * 3, outcome.result
    return at, time.perf_counter() - started


SIZING_TICKS = 7  # at most, before the workers' sizes settle: ~4 (planned, measured, planned again, settled)


def _size_workers(loop: EventLoop, scheduler: Any, monitors: list[MonitorModel], regions: list[str]) -> list[float]:
    """Real-minute ticks, unmetered, until every region's worker is sized from its measured CPU and the change has
    settled (scheduler.sizing): the steady state a running service is in.  Then the stack settles, so no
    invocation of these minutes runs into the metered window.  Returns the ticks."""
    ticks: list[float] = []
    for _ in range(SIZING_TICKS):
        ticks.append(_fire(loop, scheduler, monitors)[0])
        now = datetime.now(UTC)
        loads = workload.read(regions, now).values()
        if all(_sized(load, now) for load in loads):
            break
    else:
        raise AssertionError(f"the workers' sizes did not settle in {SIZING_TICKS} ticks")
    _settle(loop, ticks[-1])
    return ticks


def _sized(load: workload.Load, now: datetime) -> bool:
    """The size planned is the one it has, no change is settling, and its CPU is measured (or so few checks that
    even the assumed CPU plans the smallest size: a small run measures 1,000 only after many minutes)."""
    size = load.size
    peak = max(size.peak, size.last_peak)
    wanted = sizing.target(size, peak, load.cpu_ms, now)
    measured = load.cpu_ms is not None or plan(peak, ASSUMED_CPU_MS) == MIN_MEMORY_MB
    return measured and wanted is None and size.lane_mb(now) == size.memory_mb


def _worker_memory(settings: Settings) -> Any:
    """The memory each region's worker has now, in the emulator's Lambda (what the scheduler set)."""

    def memory_of(function: str) -> int | None:
        if not function.startswith(f"{cost.CHECKER}-"):
            return None
        region = function.removeprefix(f"{cost.CHECKER}-")
        found = client("lambda", region).get_function_configuration(FunctionName=names.checker_function(settings))
        return int(found["MemorySize"])

    return memory_of


def _warm_up(loop: EventLoop, scheduler: Any) -> float:
    """Check every monitor now (a forced tick), and wait until its results, rollups and events are done."""
    at = float(int(time.time()))
    outcome = loop.invoke(
        scheduler.name, scheduler.handler, scheduled_event(scheduler.name, loop.region, at, force=True)
    )
    assert outcome.ok, outcome.error
    assert loop.drain(SETTLE_S), "the local stack did not settle after the warm-up"
    return at


def _settle(loop: EventLoop, last_tick: float) -> None:
    """The last tick planned the minute after it: its last start is at most 119 s after the tick; then the results,
    rollups and alerts settle."""
    time.sleep(max(0.0, last_tick + 2 * INTERVAL - time.time()))
    assert loop.drain(SETTLE_S), "the local stack did not settle"


def _alerted(target: RemoteTarget, monitor_ids: set[str]) -> dict[str, float]:
    """Each monitor's first ``incident.opened`` webhook: its arrival time."""
    first: dict[str, float] = {}
    hooks = target.seen().hooks
    for arrived, payload in hooks:
        monitor_id = ((payload.get("data") or {}).get("monitor") or {}).get("id")
        if payload.get("type") == "incident.opened" and monitor_id in monitor_ids:
            first[monitor_id] = min(arrived, first.get(monitor_id, arrived))
    return first


# Tables most of whose writes make new items, whose keys the meter learns when a window opens (Meter.know_keys).
NEW_ITEMS = ("result_packs", "result_periods", "rollups")


def _pass(meter: Meter, keys: KeyScan, loop: EventLoop, aggregator: Any, at: float) -> tuple[list[Any], list[Any]]:
    """The aggregator's scheduled pass at ``at``, in a window of its own: its (calls, invocations)."""
    meter.start()
    meter.know_keys(keys, NEW_ITEMS)
    event = scheduled_event(aggregator.name, loop.region, at)
    outcome = meter.run_as("aggregator", lambda: loop.invoke(aggregator.name, aggregator.handler, event))
    meter.stop()
    assert outcome.ok, outcome.error
    return list(meter.calls), list(meter.invocations)


def _closes(meter: Meter, keys: KeyScan, since: float, until: float) -> tuple[list[Packed], list[tuple[Any, ...]]]:
    """What the aggregator's pass does at an hour's and at a day's close beyond taking a period, measured apart: the
    bench keeps its metered minutes off the hour's close (wait_clear_of_the_hour), and a real close rolls an hour
    (a day) of checks up, not the run's minutes.  Three windows, each as the aggregator: every bucket's packs read
    again (here the run's packs, from ``since`` to ``until``); each monitor's hourly rollup PUT and each bucket's
    roster of the day enrolled (``aggregate.roll_up``, ``aggregate.enrol``: the roster's first write, once a day,
    counted with the hour); the monitors of each bucket's roster, as its enrolment read it, have their days summed
    from their hours and PUT (``aggregate.close_day``), as ``aggregate._take`` does.  Returns the checks read and
    each window's (calls, invocations)."""
    start = packs.minute_of(datetime.fromtimestamp(since, UTC))
    end = packs.minute_of(datetime.fromtimestamp(until, UTC)) + timedelta(minutes=1)
    hour = start.replace(minute=0)
    found: list[list[Packed]] = []
    enrolled: list[set[str]] = []

    def hours() -> None:
        checks = aggregate.by_monitor(found[0])
        aggregate.roll_up(hour, checks)
        by_bucket: dict[str, set[str]] = {bucket: set() for bucket in aggregate.all_buckets()}
        for monitor_id in checks:
            by_bucket[packs.bucket_of(monitor_id)].add(monitor_id)
        enrolled.extend(aggregate.enrol(bucket, hour.date(), wanted) for bucket, wanted in by_bucket.items())

    def days() -> None:
        for monitors in enrolled:
            aggregate.close_day(hour.date(), monitors)

    windows = []
    work = [
        lambda: found.append([p for b in aggregate.all_buckets() for p in aggregate.read_checks(b, start, end)]),
        hours,
        days,
    ]
    for step in work:
        meter.start()
        meter.know_keys(keys, NEW_ITEMS)
        meter.run_as("aggregator", step)
        meter.stop()
        windows.append((list(meter.calls), list(meter.invocations)))
    return found[0], windows


CLEAR_MINUTES = MINUTES + 5  # what must end before the hour's last period: the metered ticks, their settling, a margin
# The longest wait_clear_of_the_hour can ask for (started just too late: a period and those minutes, and 5 s).
MAX_WAIT_S = packs.PERIOD.total_seconds() + CLEAR_MINUTES * 60 + 5


@pytest.mark.timeout(MAX_WAIT_S + 1200 + 60 * MINUTES)  # session 16: 1,500 s timed out a run that waited 1,128 s
def test_what_a_check_costs_and_how_soon_an_outage_alerts(api, app, aws, target, quiet):
    first = _template(api, target)
    regions = aws.check_regions
    assert len(regions) == 3

    loop = EventLoop(aws.aws_region, retry_seconds=0.1)
    loop.add_chalice_app(app, aws, new_tables=[PackModel.Meta.table_name])
    stack.add_check_workers(loop, aws)
    meter = Meter(
        cost.table_schemas(cost.main_template()),
        remote_items(str(aws.aws_endpoint_url), aws.home_region),
        prefix=aws.table_prefix,
        home_region=aws.home_region,
        check_regions=tuple(regions),
    )
    meter.time_handlers(loop, _worker_memory(aws))
    [scheduler] = [s for s in loop.schedules if s.name == "scheduler"]
    [aggregator] = [s for s in loop.schedules if s.name == "aggregator"]
    # The test fires the ticks (the loop's own clock would go on ticking); the hourly refresh has no page to publish.
    loop.schedules[:] = []
    functions = cost.function_configs({s.name for s in loop.sources} | {scheduler.name, aggregator.name})

    with meter.capturing_logs(logger, cost.deployed_log_level()):
        loop.start()
        try:
            warm_up = _warm_up(loop, scheduler)  # the template alone: pending, then up in every region
            seeding = time.monotonic()
            monitors, down = _seed(first, target, regions)
            seeded_s = time.monotonic() - seeding
            paths = {m.monitor_id: f"/m/{n}" for n, m in enumerate(monitors)}
            sizing = _size_workers(loop, scheduler, monitors, list(regions))
            sized = workload.read(list(regions), datetime.now(UTC))
            wait = wait_clear_of_the_hour(time.time(), CLEAR_MINUTES)
            if wait:
                print(f"\nwaiting {wait:.0f} s: the metered minutes would cross an hour", flush=True)
                time.sleep(wait)
            cpu_started, wall_started = time.process_time(), time.monotonic()
            meter.start()
            keys = remote_keys(str(aws.aws_endpoint_url), aws.home_region)
            meter.know_keys(keys, NEW_ITEMS)
            meter.prime(MonitorModel.Meta.table_name, (m.serialize() for m in monitors))
            requests_before = target.seen().request_bytes
            metered = [_fire(loop, scheduler, monitors) for _ in range(MINUTES)]
            _settle(loop, metered[-1][0])
            meter.stop()
            metered_request_bytes = target.seen().request_bytes - requests_before
            # Detection: the targets go down at the start of a minute that a tick has already planned, as in a
            # running service (a tick plans the minute after it; the aggregator's pass above left minutes unplanned).
            detection_ticks = [_fire(loop, scheduler, monitors)]
            went_down = detection_ticks[0][0] + 60
            target.take_down([paths[m] for m in down], went_down)
            threshold = 1  # the downed targets' monitors'
            for _ in range(threshold + EXTRA_TICKS):
                detection_ticks.append(_fire(loop, scheduler, monitors))
                time.sleep(max(0.0, detection_ticks[-1][0] + INTERVAL - 1 - time.time()))
                if len(_alerted(target, set(down))) == len(down):
                    break
            _settle(loop, detection_ticks[-1][0])
            cpu = (time.process_time() - cpu_started) / (time.monotonic() - wall_started)
            closing = Meter(
                meter.tables,
                remote_items(str(aws.aws_endpoint_url), aws.home_region),
                prefix=aws.table_prefix,
                home_region=aws.home_region,
                check_regions=tuple(regions),
            )
            # The aggregator's pass over what the run stored, as if the metered periods had closed, measured apart: it
            # takes every period from the first check on (the warm-up's, the sizing ticks'), so it is priced per check
            # it took; and no further: never the hour's last period (wait_clear_of_the_hour).
            last_minute = datetime.fromtimestamp(metered[-1][0] + 60, UTC)  # a tick plans the minute after it
            closed = packs.period_of(last_minute) + packs.PERIOD + packs.AGGREGATE_AFTER + timedelta(seconds=60)
            aggregated_at = max(time.time(), closed.timestamp())
            the_pass = _pass(closing, keys, loop, aggregator, aggregated_at)
            closed_checks, closes = _closes(closing, keys, warm_up, detection_ticks[-1][0] + 120)
        finally:
            meter.stop()
            loop.stop()

    # -- what ran and what was stored
    ticks = sizing + [at for at, _ in metered] + [at for at, _ in detection_ticks]
    metered_ticks = {at for at, _ in metered}
    forced = f"{datetime.fromtimestamp(warm_up, UTC):%Y-%m-%dT%H:%M:%S}"
    due = {t: _due(monitors, t) for t in ticks}
    expected_counts = Counter(
        (m.monitor_id, _slot(m, t, repeat, r)) for t in ticks for m, repeat in due[t] for r in regions
    )
    expected_counts.update((monitors[0].monitor_id, f"{forced}#{r}") for r in regions)
    expected = set(expected_counts)
    assert len(expected) == sum(expected_counts.values()), "two sends of one monitor planned for one second"
    stored = stored_checks()
    stored_keys = Counter((r.monitor_id, r.slot) for r in stored)
    missing = expected - set(stored_keys)
    extra = set(stored_keys) - expected
    per_region = Counter(r.region for r in stored)
    hits = {path: len(times) for path, times in target.seen().arrivals.items()}
    wanted_hits = Counter(paths[monitor_id] for monitor_id, _ in expected)
    wrong_hits = {p: hits.get(p, 0) for p in paths.values() if hits.get(p, 0) != wanted_hits[p]}
    duplicates = sum(max(0, hits.get(p, 0) - wanted_hits[p]) for p in paths.values()) + len(extra)
    periods_written = period_items(m.monitor_id for m in monitors)
    rollup_checks = sum(checks for _, checks, _ in periods_written)
    metered_keys = {
        (m.monitor_id, _slot(m, t, repeat, r)) for t in metered_ticks for m, repeat in due[t] for r in regions
    }
    metered_checks = len(metered_keys & set(stored_keys))
    unexpected_failures = [
        r for r in stored if not r.ok and not (r.monitor_id in down and r.checked_at.timestamp() >= went_down)
    ]

    late: list[float] = []
    late_after_head: list[float] = []  # planned HEAD_S or more after the tick: what the scheduler's run cannot delay
    early: list[float] = []
    interval_of = {m.monitor_id: int(m.interval_seconds) for m in monitors}
    late_by_interval: dict[int, list[float]] = {}
    late_by_minute: dict[str, list[float]] = {}  # which minute a late start was planned in: a clue to why
    for result in stored:
        if result.slot.startswith(forced):
            continue  # the warm-up starts every check at once: not a planned start
        planned, _ = parse_slot(result.slot)
        offset = (result.checked_at - planned - spread(result.monitor_id)).total_seconds()
        late.append(max(0.0, offset))
        late_by_interval.setdefault(interval_of[result.monitor_id], []).append(max(0.0, offset))
        late_by_minute.setdefault(f"{planned:%H:%M}", []).append(max(0.0, offset))
        if planned.second >= HEAD_S:
            late_after_head.append(max(0.0, offset))
        if offset < -EARLY_TOLERANCE_S:
            early.append(-offset)
    alerted = _alerted(target, set(down))
    detection = [alerted[m] - went_down for m in down if m in alerted]

    # -- what it cost
    tls_sent, plain_sent = tls_bytes()
    http_per_check = metered_request_bytes / max(1, metered_checks)
    tcp_ip = cost.TCP_IP_HEADER_BYTES * cost.CLIENT_SEGMENTS_PER_CHECK
    # The periods in steady state, from the items the pass wrote (the pass covered a few minutes, not a period).
    period_writes = [w for c in the_pass[0] for w in c.writes if w.table == "result_periods" and w.new]
    periods = cost.project_periods(
        "result_periods",
        periods_written,
        interval_of,
        len(regions),
        int(packs.PERIOD.total_seconds()),
        ttl_s=statistics.mean(w.ttl_s or 0.0 for w in period_writes),
        measured_wru_per_check=sum(w.units for w in period_writes) / rollup_checks,
    )
    # The hour's close: its reads per check read; its rollups per monitor an hour, per check of those monitors'
    # hour; the day's close per monitor a day, per check of their day.
    rolled = {p.monitor_id for p in closed_checks}
    rolled_hour_checks = sum(len(regions) * 3600 / interval_of[m] for m in rolled)
    reads, hours, days = closes
    parts = (
        cost.Part(
            "the periods' pass",
            rollup_checks,
            *the_pass,
            f"measured apart: the pass over the run's periods, per check it took ({rollup_checks})",
        ),
        cost.Part(
            "the hour's close (reads)",
            len(closed_checks),
            *reads,
            f"measured apart: the hour's packs read again, per check read ({len(closed_checks)})",
        ),
        cost.Part(
            "the hour's close (rollups)",
            rolled_hour_checks,
            *hours,
            f"measured apart: {len(rolled)} monitors' hourly rollups, per check of their hour",
        ),
        cost.Part(
            "the day's close",
            24 * rolled_hour_checks,
            *days,
            f"measured apart: {len(rolled)} monitors' days summed from their hours, per check of their day",
        ),
    )
    run = cost.Run(
        checks=metered_checks,
        monitors=MONITORS,
        interval_s=1 / statistics.mean(1 / int(m.interval_seconds) for m in monitors),  # a monitor's mean rate
        regions=tuple(regions),
        minutes=MINUTES,
        queues=len(loop.queues),
        tables=meter.tables,
        functions=functions,
        calls=meter.calls,
        invocations=meter.invocations,
        log_bytes=dict(meter.log_bytes),
        ticks=sum(1 for inv in meter.invocations if inv.function == scheduler.name),
        egress_bytes_per_check=http_per_check + (tls_sent - plain_sent) + tcp_ip,
        egress_basis=(
            f"measured: {http_per_check:.0f} B request + {tls_sent - plain_sent:.0f} B TLS handshake; "
            f"modelled: TCP/IP headers"
        ),
        rollup_items_per_monitor=int(HOURLY_KEEP.total_seconds() // 3600) + DAILY_KEEP.days,
        monitor_tables=("monitors", "monitor_states"),
        periods=periods,
        parts=parts,
    )
    lines = cost.cost_lines(run)
    egress = cost.egress_line(run)
    pack_writes = sum(1 for c in meter.calls for w in c.writes if w.table == "result_packs" and w.new)

    mix = Counter(int(m.interval_seconds) for m in monitors)
    print(
        f"\nend-to-end bench: {MONITORS} monitors x {len(regions)} regions, every handler running; intervals"
        f" {', '.join(f'{i} s x {n}' for i, n in sorted(mix.items()))};"
        f" the template's forced warm-up tick, its copies seeded in {seeded_s:.0f} s, {MINUTES} metered real-minute"
        f" ticks ({len(metered_keys)} checks), then {len(detection_ticks)} with {len(down)} targets down"
        f" ({', '.join(datetime.fromtimestamp(t, UTC).strftime('%H:%M:%S') for t in ticks)})\n"
        f"  scheduler runs: {', '.join(f'{s:.2f} s' for _, s in [*metered, *detection_ticks])}\n"
        f"  checks expected {len(expected)}, stored {len(stored)} (missing {len(missing)}, unexpected {len(extra)},"
        f" failed {sum(not r.ok for r in stored)}, of which not a down target's {len(unexpected_failures)})\n"
        f"  per region: {', '.join(f'{r} {per_region[r]}' for r in regions)}\n"
        f"  target requests: {sum(hits.values())}; paths not hit exactly as often as planned: {len(wrong_hits)}\n"
        f"  the aggregator's periods count {rollup_checks} checks\n"
        f"  workers sized in {len(sizing)} unmetered ticks: "
        + ", ".join(
            f"{r} {load.size.memory_mb} MB for a peak of {max(load.size.peak, load.size.last_peak)} checks a minute at"
            f" {load.cpu_ms if load.cpu_ms is not None else ASSUMED_CPU_MS:.2f} ms a check"
            f" ({'measured x 1.3 for arm64' if load.cpu_ms is not None else 'assumed'})"
            for r, load in sized.items()
        )
        + "\n"
        f"  lateness (checked_at - planned start): p50 {statistics.median(late):.3f} s,"
        f" p99 {percentile(late, 0.99):.3f} s, max {max(late):.3f} s   (target p99 <= {TARGET_P99_LATE_S} s)\n"
        f"  planned {HEAD_S} s or more after the tick ({len(late_after_head)}):"
        f" p50 {statistics.median(late_after_head):.3f} s,"
        f" p99 {percentile(late_after_head, 0.99):.3f} s, max {max(late_after_head):.3f} s\n"
        f"  lateness p99 by interval: "
        + ", ".join(f"{i} s {percentile(v, 0.99):.3f} s" for i, v in sorted(late_by_interval.items()))
        + "\n"
        "  lateness p99 by planned minute: "
        + ", ".join(f"{m} {percentile(v, 0.99):.3f} s" for m, v in sorted(late_by_minute.items()))
        + "\n"
        f"  early starts: {len(early)}" + (f", by up to {max(early):.3f} s" if early else "") + "\n"
        f"  detection (target down -> incident.opened webhook received): {len(detection)} of {len(down)} alerted,"
        + (f" p50 {statistics.median(detection):.1f} s, max {max(detection):.1f} s" if detection else "")
        + f" (target p95 <= {TARGET_DETECTION_S} s; failure threshold {threshold}, confirmation in 2 of 3 regions)\n"
        f"  process CPU while running: {cpu:.0%} of one core\n"
    )
    print(cost.render(lines, egress))
    print(_invocation_notes(run, meter))

    figures = {
        "cost_usd_per_million_checks": f"{cost.total(lines):.4f}",
        "egress_usd_per_million_checks": f"{egress.usd_per_million:.4f}",
        "lateness_p99_s": f"{percentile(late, 0.99):.3f}",
        "lost_checks": str(len(missing)),
        "duplicate_checks": str(duplicates),
        "detection_p95_s": f"{percentile(detection, 0.95):.1f}" if detection else "nan",
    }
    text = "".join(f"{name}={value}\n" for name, value in figures.items())
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(text)
    print(text, end="")

    assert not meter.errors, meter.errors[:5]
    assert pack_writes, "the meter saw no pack written"
    assert not missing, f"missing {sorted(missing)[:5]}"
    assert not extra, f"unexpected {sorted(extra)[:5]}"
    assert per_region == Counter(slot.split("#")[1] for _, slot in expected)
    assert not wrong_hits, f"paths not checked exactly once per region and tick: {list(wrong_hits.items())[:5]}"
    assert not unexpected_failures, unexpected_failures[:3]
    metered_slots = {c.slot.split("#")[0] for c in stored} - {forced}
    assert rollup_checks >= metered_checks, (rollup_checks, metered_checks)  # the pass took every metered check
    assert metered_slots
    assert len(detection) == len(down), f"no alert for {sorted(set(down) - set(alerted))}"
    assert not early, f"{len(early)} checks started before their planned start, by up to {max(early):.3f} s"


def _invocation_notes(run: cost.Run, meter: Meter) -> str:
    """What the invocations were like (the Lambda lines scale with them), and what the meter left out."""
    by_function: dict[str, list[Any]] = {}
    for inv in run.invocations:
        by_function.setdefault(cost.function_of(inv.function), []).append(inv)
    out = ["invocations in the metered window (local event loop):"]
    for name, invs in sorted(by_function.items()):
        records = sum(i.records for i in invs)
        out.append(
            f"  {name}: {len(invs)}, mean {statistics.mean(i.duration_ms for i in invs):,.1f} ms"
            + (f", {records / len(invs):.1f} records each" if records else "")
        )
    checker = by_function.get(cost.CHECKER, [])
    if checker:
        out.append(f"  checks per checker invocation: {run.checks / len(checker):,.0f}")
    if meter.own_time_s:
        spent = ", ".join(f"{name} {s:.2f} s" for name, s in sorted(meter.own_time_s.items(), key=lambda i: -i[1])[:6])
        out.append(f"the meter's own time, by function: {spent}")
    if meter.problems:
        out.append("warnings and errors the functions logged while metered:")
        for (function, level, message), n in meter.problems.most_common(8):
            out.append(f"  {n} x {function} {level}: {message}")
    if meter.unmetered_problems:
        out.append("warnings and errors the functions logged outside the metered window (warm-up, outage):")
        for (function, level, message), n in meter.unmetered_problems.most_common(8):
            out.append(f"  {n} x {function} {level}: {message}")
    if meter.left_out:
        out.append("not billed: " + "; ".join(f"{n} {why}" for why, n in sorted(meter.left_out.items())))
    return "\n".join(out)
