"""The clock seam: domain code takes ``now`` as an argument; edges call :func:`utcnow`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoz(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` suffix, to the second (the API's time format)."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def epoch(value: datetime) -> int:
    return int(value.timestamp())


def event_time(event: dict[str, Any]) -> datetime:
    """When a scheduled event (EventBridge) fired, in UTC: its ``time``, or now when it has none or a bad one."""
    try:
        return (parse_time(event.get("time")) or utcnow()).astimezone(UTC)
    except ValueError:
        return utcnow()


def parse_time(value: Any) -> datetime | None:
    """A time as stored or sent (ISO 8601, ``Z`` or an offset), or None when absent; a malformed one raises
    ``ValueError``."""
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None
