"""When a failed attempt is tried again: exponential backoff with jitter, never sooner than ``Retry-After``.

A failure worth retrying (5xx, 408, 429, no response: the kind's ``Sent.retryable``) is retried up to
``MAX_ATTEMPTS`` times in all, through the queue's DelaySeconds.  Jitter keeps the retries of many deliveries that
failed together from arriving together; a receiver's ``Retry-After`` is honoured, up to an hour.
"""

from __future__ import annotations

import random
from datetime import datetime
from email.utils import parsedate_to_datetime

from chalicelib.alerts.queue import MAX_DELAY_S

MAX_ATTEMPTS = 6
BACKOFF_BASE_S = 30  # then 60, 120, 240, 480 (each with jitter): about 15 minutes in all
MAX_RETRY_AFTER_S = 3600  # a receiver asking for more than an hour gets its retry in an hour


def backoff_seconds(failed_attempt: int, rng: random.Random | None = None) -> float:
    """Exponential with "equal jitter": half the step fixed, half random, so retries never align."""
    step = min(MAX_DELAY_S, BACKOFF_BASE_S * 2 ** (failed_attempt - 1))
    return step / 2 + (rng or random).uniform(0, step / 2)


def retry_after_seconds(value: str | None, now: datetime) -> float:
    """``Retry-After``: seconds, or an HTTP date; at most an hour.  Unreadable or absent → 0."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(min(int(value), MAX_RETRY_AFTER_S))
    try:
        when = parsedate_to_datetime(value)
        return max(0.0, min(float(MAX_RETRY_AFTER_S), (when - now).total_seconds()))
    except (TypeError, ValueError, OverflowError, IndexError):
        return 0.0
