"""Fixed-window counters in DynamoDB.

A counter key is ``<name>#<window start>``; one atomic ``ADD`` per event keeps it
right under concurrency, and the TTL removes old windows.  Reads cost one
GetItem, writes one UpdateItem.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import UpdateError

from chalicelib.ratelimit.models import CounterModel
from chalicelib.storage.base import condition_failed


@dataclass(frozen=True)
class Window:
    count: int
    resets_in: int  # seconds until the window ends


def _window(now: datetime, seconds: int) -> tuple[int, int]:
    epoch = int(now.timestamp())
    start = epoch - epoch % seconds
    return start, start + seconds


def resets_in(seconds: int, now: datetime) -> int:
    """Whole seconds until the current window ends (never less than the true wait)."""
    return _window(now, seconds)[1] - int(now.timestamp())


def peek(name: str, seconds: int, now: datetime) -> Window:
    start, _ = _window(now, seconds)
    try:
        item = CounterModel.get(f"{name}#{start}")
        count = int(item.hits)
    except CounterModel.DoesNotExist:
        count = 0
    return Window(count=count, resets_in=resets_in(seconds, now))


def _add_one(name: str, seconds: int, now: datetime, condition: Any = None) -> Window:
    """One ``UpdateItem ADD`` on the window's counter (under ``condition``, when given); the count after it."""
    start, end = _window(now, seconds)
    item = CounterModel(f"{name}#{start}")
    item.update(
        actions=[
            CounterModel.hits.add(1),
            CounterModel.window_ends.set(end),
            CounterModel.expires_at.set(datetime.fromtimestamp(end + seconds, tz=now.tzinfo)),
        ],
        condition=condition,
    )
    return Window(count=int(item.hits), resets_in=resets_in(seconds, now))


def hit(name: str, seconds: int, now: datetime) -> Window:
    return _add_one(name, seconds, now)


def admit(name: str, limit: int, seconds: int, now: datetime) -> Window | None:
    """Count one request against ``limit`` per window, or refuse it (None) once the window holds ``limit``.

    One conditional ``UpdateItem ADD`` (no read first): concurrent requests are admitted exactly ``limit`` times
    a window, and a refused one counts nothing."""
    try:
        return _add_one(name, seconds, now, CounterModel.hits.does_not_exist() | (CounterModel.hits < limit))
    except UpdateError as exc:
        if condition_failed(exc):
            return None
        raise


def refund(name: str, seconds: int, now: datetime) -> None:
    """Take back one request :func:`admit` counted in this window (one it counted, then another limit refused)."""
    start, _ = _window(now, seconds)
    try:
        CounterModel(f"{name}#{start}").update(actions=[CounterModel.hits.add(-1)], condition=CounterModel.hits > 0)
    except UpdateError as exc:
        if not condition_failed(exc):
            raise


def clear(name: str, seconds: int, now: datetime) -> None:
    start, _ = _window(now, seconds)
    CounterModel(f"{name}#{start}").delete()


def remember(name: str, seconds: int, now: datetime) -> None:
    """Note ``name`` for ``seconds`` from ``now`` (an address an account signed in from), one write."""
    CounterModel(name).update(
        actions=[CounterModel.hits.set(1), CounterModel.expires_at.set(now + timedelta(seconds=seconds))]
    )


def remembers(name: str, now: datetime) -> bool:
    """Whether ``name`` was noted by :func:`remember` and its time is not over."""
    try:
        item = CounterModel.get(name, consistent_read=True)
    except CounterModel.DoesNotExist:
        return False
    return item.expires_at is not None and item.expires_at > now
