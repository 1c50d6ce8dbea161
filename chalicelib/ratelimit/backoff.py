"""Progressive backoff in DynamoDB: after ``free`` failures, each further attempt waits twice as long as the one
before (1 s, 2 s, 4 s, … up to ``cap``), counted per name (a sign-in address on one account).

An attempt is reserved before it is made, by a compare-and-set on the failure count: however many arrive at once,
each failure count is taken by one of them, so no more than ``free`` go through before the first wait, and one per
wait after it.  A success forgets the name; a name quiet for ``memory`` seconds after its wait is forgotten too (the
TTL removes its item; until it does, the item is read as gone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from pynamodb.exceptions import UpdateError

from chalicelib.ratelimit.models import CounterModel
from chalicelib.storage.base import condition_failed

RACES = 10  # compare-and-set attempts before a request that keeps losing is told to wait a second


@dataclass(frozen=True)
class Policy:
    free: int  # failures before the first wait
    cap: int  # seconds: the longest wait
    memory: int  # seconds after the end of its wait at which a quiet name's failures are forgotten
    first: int = 1  # seconds: the first wait


def wait_after(failures: int, policy: Policy) -> int:
    """Seconds the next attempt waits once ``failures`` attempts failed in a row (0 while they are free)."""
    if failures < policy.free:
        return 0
    return min(policy.cap, policy.first * 2 ** min(failures - policy.free, 62))


def reserve(name: str, policy: Policy, now: datetime) -> int:
    """Count one attempt of ``name`` as failed before it is made; 0 when it may be made now, else the whole seconds
    to wait (nothing counted).

    1. Read the name's failures ``n`` and when its wait ends (an item past its memory reads as none).
    2. Refuse while the wait lasts.
    3. Write ``n + 1`` failures and the wait they earn, on the condition that the item still holds ``n``: of two
       attempts that read the same ``n`` one wins; the other reads again (at most :data:`RACES` times)."""
    epoch = now.timestamp()
    for _ in range(RACES):
        try:
            item = CounterModel.get(name, consistent_read=True)
            stored, ends = int(item.hits), float(item.not_before or 0)
            forgotten = item.expires_at is not None and item.expires_at <= now
        except CounterModel.DoesNotExist:
            stored, ends, forgotten = -1, 0.0, True
        failures = 0 if forgotten else stored
        if not forgotten and ends > epoch:
            return math.ceil(ends - epoch)
        wait = wait_after(failures + 1, policy)
        condition = CounterModel.hits.does_not_exist() if stored < 0 else CounterModel.hits == stored
        try:
            CounterModel(name).update(
                actions=[
                    CounterModel.hits.set(failures + 1),
                    CounterModel.not_before.set(epoch + wait),
                    CounterModel.expires_at.set(now + timedelta(seconds=wait + policy.memory)),
                ],
                condition=condition,
            )
        except UpdateError as exc:
            if condition_failed(exc):
                continue  # another attempt took this count: read again
            raise
        return 0
    return 1


def forget(name: str) -> None:
    """The failures of ``name`` are forgotten (a success)."""
    CounterModel(name).delete()
