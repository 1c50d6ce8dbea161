"""Lazily built, cached boto3 clients with timeouts, pointed by the settings.

``AWS_ENDPOINT_URL`` sends every client to an emulator (the embedded moto
server, LocalStack, DynamoDB Local) instead of AWS.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.settings import get_settings

_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"})
_cache: dict[tuple[str, str, str | None, bool], Any] = {}
_lock = threading.Lock()
_session: list[boto3.session.Session] = []  # one session: botocore loads each service model once


def _boto_session() -> boto3.session.Session:
    if not _session:
        _session.append(boto3.session.Session())
    return _session[0]


# For calls that must fail fast rather than hold up others (the scheduler's sends: one region's outage must not
# eat the minute the other regions' jobs need): a second's connect, three seconds' read, one retry.
FAST = Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 2, "mode": "standard"})


def client(service: str, region: str | None = None, *, fast: bool = False) -> Any:
    settings = get_settings()
    key = (service, region or settings.aws_region, settings.aws_endpoint_url, fast)
    with _lock:
        found = _cache.get(key)
        if found is None:
            found = _cache[key] = _boto_session().client(
                service, region_name=key[1], endpoint_url=key[2], config=FAST if fast else _CONFIG
            )
        return found


def reset_clients() -> None:
    with _lock:
        _cache.clear()
