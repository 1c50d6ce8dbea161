"""Powertools Logger, Metrics and Tracer, created once for the whole process.

Every log line is JSON and carries the request id, and once the caller is known
its user id and team id (thread-safe keys, so the threaded local server does not
mix requests).  Secrets never reach a log: the logger is only ever given ids.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "vigil"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="Vigil", service=SERVICE)
# Only AWS calls are traced: patching http.client too would put every customer URL a check visits into X-Ray.
tracer = Tracer(service=SERVICE, patch_modules=("botocore",))


def bind(**keys: object) -> None:
    """Add keys to every following log line of this thread's request or event."""
    logger.thread_safe_append_keys(**{k: v for k, v in keys.items() if v is not None})


def unbind_all() -> None:
    logger.thread_safe_clear_keys()
