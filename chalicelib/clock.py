"""The clock seam: domain code takes ``now`` as an argument; edges call :func:`utcnow`."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoz(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` suffix, to the second (the API's time format)."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def epoch(value: datetime) -> int:
    return int(value.timestamp())
