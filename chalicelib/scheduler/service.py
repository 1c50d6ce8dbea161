"""The scheduler tick: read exactly the due monitors, send their jobs to each region's queue.

1. For each due schedule key, query the sparse ``schedule-index`` (paused monitors are not in it):
   reads are proportional to the due set, never a Scan.
2. Turn each monitor into one job per region per send, with its planned start in the minute.
3. Pack each region's jobs into as few messages as fit (many jobs per message), and send them with
   ``SendMessageBatch`` (10 messages a request); the 30-second monitors' second send goes with
   ``DelaySeconds=30``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalicelib.aws import names
from chalicelib.aws.clients import client
from chalicelib.checks.jobs import SQS_MAX_MESSAGE_BYTES, Job, pack
from chalicelib.monitors.checking import spec_from
from chalicelib.monitors.service import Monitor, scheduled
from chalicelib.observability import logger, metrics
from chalicelib.scheduler.due import DueKey, all_keys, due_keys, planned_start
from chalicelib.settings import get_settings

SQS_BATCH = 10
SQS_BATCH_BYTES = SQS_MAX_MESSAGE_BYTES  # SendMessageBatch's limit for its messages together


@dataclass
class TickReport:
    tick: str
    due_monitors: int = 0
    jobs: int = 0
    messages: int = 0
    sqs_requests: int = 0
    queries: int = 0
    regions: dict[str, int] = field(default_factory=dict)


def _due_monitors(keys: list[DueKey], report: TickReport) -> list[tuple[DueKey, Monitor]]:
    found = []
    for due in keys:
        report.queries += 1
        found += [(due, monitor) for monitor in scheduled(due.key)]
    return found


def plan_jobs(tick: datetime, force: bool = False) -> tuple[dict[tuple[str, int], list[Job]], TickReport]:
    """Jobs grouped by (region, delay seconds), and what was read."""
    report = TickReport(tick=tick.isoformat())
    keys = all_keys() if force else due_keys(tick)
    groups: dict[tuple[str, int], list[Job]] = defaultdict(list)
    for due, monitor in _due_monitors(keys, report):
        spec = spec_from(monitor)
        report.due_monitors += 1
        for repeat in due.repeats:
            # A forced tick (POST /dev/tick) means "check now", not "at your usual second of the minute".
            slot = tick if force else planned_start(tick, monitor.id, due.interval_seconds, repeat)
            for region in monitor.config.regions:
                groups[(region, repeat)].append(Job(monitor.team_id, monitor.id, region, slot, spec))
    return groups, report


def _queue_url(region: str) -> tuple[Any, str]:
    settings = get_settings()
    # Locally every region's queue lives in the one emulated region.
    sqs = client("sqs", None if settings.is_local else region)
    return sqs, sqs.get_queue_url(QueueName=names.check_queue(settings, region))["QueueUrl"]


def _send(region: str, delay: int, bodies: list[str], report: TickReport) -> None:
    sqs, url = _queue_url(region)
    batch: list[dict[str, Any]] = []
    size = 0

    def flush() -> None:
        nonlocal batch, size
        if not batch:
            return
        report.sqs_requests += 1
        response = sqs.send_message_batch(QueueUrl=url, Entries=batch)
        failed = {f["Id"] for f in response.get("Failed", [])}
        if failed:  # one retry of what SQS refused, then the tick fails loudly (EventBridge retries it)
            report.sqs_requests += 1
            retry = sqs.send_message_batch(QueueUrl=url, Entries=[e for e in batch if e["Id"] in failed])
            if retry.get("Failed"):
                raise RuntimeError(f"SQS refused {len(retry['Failed'])} check-job messages for {region}")
        batch, size = [], 0

    for index, body in enumerate(bodies):
        if len(batch) == SQS_BATCH or size + len(body) > SQS_BATCH_BYTES:
            flush()
        entry: dict[str, Any] = {"Id": str(index), "MessageBody": body}
        if delay:
            entry["DelaySeconds"] = delay
        batch.append(entry)
        size += len(body)
    flush()


def run_tick(tick: datetime, *, force: bool = False) -> TickReport:
    groups, report = plan_jobs(tick, force)
    for (region, delay), jobs in sorted(groups.items()):
        bodies = pack(jobs)
        report.jobs += len(jobs)
        report.messages += len(bodies)
        report.regions[region] = report.regions.get(region, 0) + len(jobs)
        _send(region, delay, bodies, report)
    metrics.add_metric(name="DueMonitors", unit="Count", value=report.due_monitors)
    metrics.add_metric(name="JobsSent", unit="Count", value=report.jobs)
    logger.info("tick", extra=vars(report))
    return report
