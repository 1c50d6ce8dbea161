"""The check worker's Lambda handler: an SQS batch of check-job messages → results, with partial batch failures.

Deployed once per region as ``functions.checker.handler.handler``; the local stack builds one per
simulated region with :func:`make_handler`.  The work itself is :mod:`functions.checker.worker`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib.bootstrap import configure_core
from chalicelib.observability import logger, metrics, tracer
from chalicelib.settings import get_settings
from chalicelib.storage.base import connect
from functions.checker.worker import TABLES, Worker

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

DEFAULT_BUDGET_S = 60.0  # when called without a Lambda context

configure_core(models=TABLES)  # once per cold start: settings, the worker's tables, clients
connect(TABLES)  # their clients built now, before any check is timed


def make_handler(region: str | None = None, cpu_scale: float = 1.0) -> Handler:
    """A handler labelling its results with ``region`` (default: ``CHECK_REGION``, else the Lambda's region),
    reporting its CPU times ``cpu_scale`` (``Worker.cpu_scale``)."""

    @tracer.capture_lambda_handler(capture_response=False)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        settings = get_settings()
        worker = Worker.for_invocation(
            region or settings.check_region or settings.aws_region,
            allow_private=settings.allow_private_targets,
            remaining_s=context.get_remaining_time_in_millis() / 1000 if context else DEFAULT_BUDGET_S,
            cpu_scale=cpu_scale,
            # In Lambda, one message an invocation: the process's CPU is the message's.
            alone=bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and len(event.get("Records", [])) == 1,
        )
        with worker.start(list(event.get("Records", []))) as run:

            def outcome(record: SQSRecord) -> int:
                return run.outcome(record.message_id, record.receipt_handle)

            try:
                # A processor per invocation: the local stack runs one handler per region in parallel threads.
                processor = BatchProcessor(event_type=EventType.SQS)
                return dict(process_partial_response(event=event, record_handler=outcome, processor=processor))
            finally:
                tally = run.tally()
                metrics.add_metric(name="ChecksRun", unit="Count", value=tally.checks_run)
                metrics.add_metric(name="ChecksFailed", unit="Count", value=tally.checks_failed)
                metrics.add_metric(name="JobsDropped", unit="Count", value=tally.dropped)
                metrics.flush_metrics()
                logger.info("check batch", extra={"region": worker.region, **vars(tally)})

    return handler


handler = make_handler()
