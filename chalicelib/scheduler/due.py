"""Which schedule keys are due at a tick, and when in the minute each monitor starts.  Pure functions.

A monitor with interval I seconds lives under ``I:p`` where p = hash(id) mod (I/60)
(see :func:`chalicelib.monitors.service.schedule_key`).  In minute t (planned by the tick of minute t-1:
:mod:`chalicelib.scheduler.service`):

1. for every interval I ≥ 60, the key ``I:(t mod I/60)`` is due — so each monitor is due
   exactly once every I/60 minutes, and the monitors of one interval are spread evenly over them;
2. ``30:0`` is due every minute, with two checks in it 30 s apart (both sent with the minute's other jobs);
3. within its minute, a monitor starts at a stable offset between 5 s (``TICK_HEADROOM_SECONDS``) and
   59 s (or 29 s for 30-second monitors), so a minute's checks do not all start at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from chalicelib.monitors.service import INTERVALS


@dataclass(frozen=True)
class DueKey:
    key: str
    interval_seconds: int
    repeats: tuple[int, ...]  # second offsets of the sends within the minute: (0,) or (0, 30)


def minute_of(tick: datetime) -> datetime:
    return tick.astimezone(UTC).replace(second=0, microsecond=0)


def due_keys(tick: datetime) -> list[DueKey]:
    minute = int(minute_of(tick).timestamp()) // 60
    keys = []
    for interval in INTERVALS:
        if interval < 60:
            keys.append(DueKey(f"{interval}:0", interval, tuple(range(0, 60, interval))))
        else:
            minutes = interval // 60
            keys.append(DueKey(f"{interval}:{minute % minutes}", interval, (0,)))
    return keys


def all_keys() -> list[DueKey]:
    """Every key of every interval: a forced tick checks every active monitor now."""
    keys = []
    for interval in INTERVALS:
        if interval < 60:
            keys.append(DueKey(f"{interval}:0", interval, (0,)))
        else:
            keys += [DueKey(f"{interval}:{phase}", interval, (0,)) for phase in range(interval // 60)]
    return keys


# Starts are planned no earlier than this into their minute: the tick plans a minute ahead and its messages reach
# the workers a little before the minute (scheduler.service.LEAD_SECONDS), but SQS's and Lambda's delivery of a
# delayed message and the worker's first look-ups still take a moment.
TICK_HEADROOM_SECONDS = 5


def start_offset_seconds(monitor_id: str, interval_seconds: int) -> int:
    span = min(60, interval_seconds) - TICK_HEADROOM_SECONDS
    return TICK_HEADROOM_SECONDS + int(hashlib.sha256(f"start:{monitor_id}".encode()).hexdigest()[:8], 16) % span


def planned_start(tick: datetime, monitor_id: str, interval_seconds: int, repeat: int) -> datetime:
    return minute_of(tick) + timedelta(seconds=repeat + start_offset_seconds(monitor_id, interval_seconds))


def last_planned_start(monitor_id: str, interval_seconds: int, through: datetime, now: datetime) -> datetime:
    """The monitor's latest planned start in a minute up to ``through`` and not after ``now``: with the workers'
    progress as ``through``, when it was last checked (``last_checked_at``)."""
    minute = minute_of(through)
    offset = timedelta(seconds=start_offset_seconds(monitor_id, interval_seconds))
    if interval_seconds < 60:
        start = minute + offset + timedelta(seconds=60 - interval_seconds)
        step = timedelta(seconds=interval_seconds)
    else:
        minutes = interval_seconds // 60
        phase = int(hashlib.sha256(monitor_id.encode()).hexdigest()[:8], 16) % minutes  # monitors.schedule_key's
        start = minute - timedelta(minutes=(int(minute.timestamp()) // 60 - phase) % minutes) + offset
        step = timedelta(seconds=interval_seconds)
    while start > now:  # a message of the minute finished before this monitor's start came
        start -= step
    return start
