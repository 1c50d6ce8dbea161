"""The scheduler tick: read exactly the monitors due in the next minute, send their jobs to each region's queue.

The tick at minute T plans minute T+1, and its messages are delayed (SQS ``DelaySeconds``) to reach the workers
``LEAD_SECONDS`` before T+1 begins: however long the tick takes — a cold start, EventBridge's own delay, reading
and parsing tens of thousands of monitors (seconds of CPU at 10,000) — no start of T+1 waits for it.

1. For each key due in T+1, query the sparse ``schedule-index`` (paused monitors are not in it):
   reads are proportional to the due set, never a Scan.
2. Turn each monitor into one job per region per send, with its planned start in T+1 and what marks its results
   as this read saw it (``monitors.watching``: the workers read again only the monitors written since), its
   credential headers opened (``monitors.credentials``: a few KMS calls an hour, whatever the number of monitors;
   the job reaches the region's worker in an encrypted queue).  A monitor whose credentials do not open is not
   checked, and logged; the others are.
3. Pack each region's jobs of the minute — both checks of a 30-second monitor among them — into as few messages as
   fit (many jobs per message, each an even share of every second's starts: ``checks.jobs.pack``), and send them
   with ``SendMessageBatch`` (10 messages a request), delayed until ``LEAD_SECONDS`` before T+1.

A forced tick (``POST /dev/tick``) plans now, undelayed: "check every monitor now".

4. Then every heartbeat monitor whose deadline passed gets its miss (``monitors.heartbeats.sweep``): one query
   per shard of the sparse deadline index, reading only what is due.  A failure there is logged and counted, and
   the next tick sweeps again: it never holds back the checks.
5. Last, the maintenance windows' starts and ends passed since the last tick are crossed
   (``incidents.edges.cross``): their monitors' status changes on this tick, not with their next result.  The
   same: a failure is logged and counted, the edges stay due, and the checks were sent before.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.aws import names
from chalicelib.aws.clients import client
from chalicelib.checks.jobs import SQS_MAX_MESSAGE_BYTES, Job, pack
from chalicelib.checks.marking import Watch
from chalicelib.incidents import edges
from chalicelib.monitors import heartbeats
from chalicelib.monitors.checking import spec_from
from chalicelib.monitors.service import Monitor, scheduled
from chalicelib.observability import logger, metrics
from chalicelib.scheduler import sizing
from chalicelib.scheduler.due import DueKey, all_keys, due_keys, minute_of, planned_start
from chalicelib.settings import get_settings

SQS_BATCH = 10
SQS_BATCH_BYTES = SQS_MAX_MESSAGE_BYTES  # SendMessageBatch's limit for its messages together
LEAD_SECONDS = 3  # a minute's jobs reach the workers this long before it: their first look-ups are done by then
SQS_MAX_DELAY_SECONDS = 900
RETRY_WITHIN_SECONDS = 25  # failed regions are tried again only this early in the tick (its Lambda has 50 s)


@dataclass
class TickReport:
    tick: str
    minute: str = ""  # the minute it planned
    due_monitors: int = 0
    jobs: int = 0
    messages: int = 0
    sqs_requests: int = 0
    queries: int = 0
    regions: dict[str, int] = field(default_factory=dict)
    messages_sent: int = 0
    failed_regions: list[str] = field(default_factory=list)  # whose jobs could not all be sent, even on a retry
    heartbeats_missed: int = 0
    unopened: int = 0  # monitors not checked: their credential headers did not open (``monitors.credentials``)
    maintenance_edges: int = 0  # maintenance windows' starts and ends crossed
    lane_checks: dict[str, int] = field(default_factory=dict)  # checks a message took, by region (``sizing``)
    resized: dict[str, int] = field(default_factory=dict)  # workers given a new memory (MB), by region


def _due_monitors(keys: list[DueKey], report: TickReport) -> list[tuple[DueKey, Monitor, Watch]]:
    found = []
    for due in keys:
        report.queries += 1
        found += [(due, monitor, watch) for monitor, watch in scheduled(due.key)]
    return found


def planned_minute(tick: datetime) -> datetime:
    """The minute a tick plans: the next one."""
    return minute_of(tick) + timedelta(minutes=1)


def plan_jobs(tick: datetime, force: bool = False) -> tuple[dict[str, list[Job]], TickReport]:
    """The minute's jobs by region, and what was read."""
    report = TickReport(tick=tick.isoformat())
    minute = planned_minute(tick)
    report.minute = minute.isoformat()
    keys = all_keys() if force else due_keys(minute)
    groups: dict[str, list[Job]] = defaultdict(list)
    read_at = datetime.now(UTC)  # what the jobs' watches are as of (the workers read notes written since)
    for due, monitor, watch in _due_monitors(keys, report):
        try:
            spec = spec_from(monitor)
        except ValueError:  # a type this code does not check: the others' checks go on
            logger.warning("monitor of an unknown type not planned", extra={"monitor_id": monitor.id})
            continue
        except Exception as exc:  # noqa: BLE001 - its credentials did not open (sealing): nothing is sent for it
            report.unopened += 1
            logger.error(
                "monitor not checked: its credential headers cannot be opened",
                extra={"monitor_id": monitor.id, "team_id": monitor.team_id, "error": type(exc).__name__},
            )
            continue
        report.due_monitors += 1
        for repeat in due.repeats:
            # A forced tick (POST /dev/tick) means "check now", not "at your usual second of the minute".
            slot = tick if force else planned_start(minute, monitor.id, due.interval_seconds, repeat)
            for region in monitor.config.regions:
                groups[region].append(Job(monitor.team_id, monitor.id, region, slot, spec, watch, read_at))
    return groups, report


_queue_urls: dict[tuple[str | None, str], str] = {}  # a queue's URL never changes: one GetQueueUrl per process


def _queue_url(region: str) -> tuple[Any, str]:
    settings = get_settings()
    # Locally every region's queue lives in the one emulated region.
    sqs = client("sqs", None if settings.is_local else region, fast=True)
    name = names.check_queue(settings, region)
    key = (settings.aws_endpoint_url, name)
    if key not in _queue_urls:
        _queue_urls[key] = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return sqs, _queue_urls[key]


def _send(region: str, delay: int, bodies: list[str], report: TickReport) -> None:
    """Send ``bodies`` to the region's queue in batches, taking each out of the list as soon as SQS took it: after
    a failure the list holds exactly what is still to send (a retry sends nothing twice).  What SQS refuses within
    a batch is tried once more."""
    sqs, url = _queue_url(region)
    while bodies:
        batch: list[dict[str, Any]] = []
        size = 0
        for index, body in enumerate(bodies[:SQS_BATCH]):
            if batch and size + len(body) > SQS_BATCH_BYTES:
                break
            batch.append({"Id": str(index), "MessageBody": body, **({"DelaySeconds": delay} if delay else {})})
            size += len(body)
        for _ in range(2):
            report.sqs_requests += 1
            refused = {f["Id"] for f in sqs.send_message_batch(QueueUrl=url, Entries=batch).get("Failed", [])}
            left = [e for e in batch if e["Id"] in refused]
            bodies[: len(batch)] = [e["MessageBody"] for e in left]  # what SQS took leaves the list at once
            report.messages_sent += len(batch) - len(left)
            batch = [{**e, "Id": str(i)} for i, e in enumerate(left)]  # the refused lead the list now
            if not batch:
                break
        if batch:
            raise RuntimeError(f"SQS refused {len(batch)} check-job messages for {region}")


def _sent(
    region: str, bodies: list[str], minute: datetime, force: bool, now: datetime | None, report: TickReport
) -> bool:
    delay = 0 if force else send_delay(minute, now or datetime.now(UTC))
    try:
        _send(region, delay, bodies, report)
    except Exception:  # noqa: BLE001 - one region's queue must not hold back the others
        logger.exception("check jobs not sent", extra={"region": region, "messages": len(bodies)})
        return False
    return True


def send_delay(minute: datetime, now: datetime) -> int:
    """Seconds a send of ``minute`` waits in its queue: until ``LEAD_SECONDS`` before it (at once when that is past:
    a tick that ran late)."""
    lead = (minute - now).total_seconds() - LEAD_SECONDS
    return min(SQS_MAX_DELAY_SECONDS, max(0, int(lead)))


class NothingSent(RuntimeError):
    """No region's jobs could be sent: the tick fails, and its retry (Lambda retries a failed scheduled invocation)
    duplicates nothing."""


def run_tick(tick: datetime, *, force: bool = False, now: datetime | None = None) -> TickReport:
    """``now``: the clock the delays are counted from (read before each send unless given).

    Each region's send stands alone: a region whose queue fails is tried once more after every other region's jobs
    are on their way (while the tick has time left), then logged and
    counted (``CheckSendFailures``, alarmed) while the others' checks go on.  The tick fails only when no message
    at all was sent, so that Lambda's retry of it duplicates nothing."""
    started = time.monotonic()
    groups, report = plan_jobs(tick, force)
    minute = planned_minute(tick)
    failed: list[tuple[str, list[str], int]] = []
    loads = sizing.read(sorted(groups), now or datetime.now(UTC))
    for region, jobs in sorted(groups.items()):
        report.lane_checks[region] = sizing.lane_checks(
            loads[region], 0 if force else len(jobs), now or datetime.now(UTC)
        )
        bodies = pack(jobs, report.lane_checks[region])
        report.jobs += len(jobs)
        report.messages += len(bodies)
        report.regions[region] = len(jobs)
        if not _sent(region, bodies, minute, force, now, report):
            failed.append((region, bodies, len(jobs)))
    unsent = 0
    for region, bodies, count in failed:  # one more try each (one send a region), after every other region's jobs
        in_time = time.monotonic() - started < RETRY_WITHIN_SECONDS
        if not (in_time and _sent(region, bodies, minute, force, now, report)):
            unsent += count
            report.failed_regions.append(region)
    if report.failed_regions:
        metrics.add_metric(name="CheckSendFailures", unit="Count", value=len(report.failed_regions))
    report.resized = sizing.settle(loads, report.regions, report.lane_checks, now or datetime.now(UTC), force=force)
    try:
        report.heartbeats_missed = heartbeats.sweep(now or datetime.now(UTC))
    except Exception:  # noqa: BLE001 - the deadlines stay due: the next tick sweeps them
        logger.exception("heartbeat sweep failed")
        metrics.add_metric(name="HeartbeatSweepFailures", unit="Count", value=1)
    try:
        report.maintenance_edges = edges.cross(now or datetime.now(UTC))
    except Exception:  # noqa: BLE001 - the edges stay due: the next tick crosses them
        logger.exception("maintenance edges not crossed")
        metrics.add_metric(name="MaintenanceEdgeFailures", unit="Count", value=1)
    metrics.add_metric(name="DueMonitors", unit="Count", value=report.due_monitors)
    metrics.add_metric(name="JobsSent", unit="Count", value=report.jobs - unsent)  # a region's, once all of it went
    logger.info("tick", extra=vars(report))
    if report.messages and not report.messages_sent:
        raise NothingSent(f"no check jobs could be sent: {', '.join(report.failed_regions)}")
    metrics.add_metric(name="Ticks", unit="Count", value=1)  # the heartbeat an alarm watches for each minute
    return report
