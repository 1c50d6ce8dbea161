"""Fixed-window counters in DynamoDB.

A counter key is ``<name>#<window start>``; one atomic ``ADD`` per event keeps it
right under concurrency, and the TTL removes old windows.  Reads cost one
GetItem, writes one UpdateItem.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from chalicelib.ratelimit.models import CounterModel


@dataclass(frozen=True)
class Window:
    count: int
    resets_in: int  # seconds until the window ends


def _window(now: datetime, seconds: int) -> tuple[int, int]:
    epoch = int(now.timestamp())
    start = epoch - epoch % seconds
    return start, start + seconds


def peek(name: str, seconds: int, now: datetime) -> Window:
    start, end = _window(now, seconds)
    try:
        item = CounterModel.get(f"{name}#{start}")
        count = int(item.hits)
    except CounterModel.DoesNotExist:
        count = 0
    return Window(count=count, resets_in=end - int(now.timestamp()))


def hit(name: str, seconds: int, now: datetime) -> Window:
    start, end = _window(now, seconds)
    item = CounterModel(f"{name}#{start}")
    item.update(
        actions=[
            CounterModel.hits.add(1),
            CounterModel.window_ends.set(end),
            CounterModel.expires_at.set(datetime.fromtimestamp(end + seconds, tz=now.tzinfo)),
        ]
    )
    return Window(count=int(item.hits), resets_in=end - int(now.timestamp()))


def clear(name: str, seconds: int, now: datetime) -> None:
    start, _ = _window(now, seconds)
    CounterModel(f"{name}#{start}").delete()
