"""Opaque, prefixed, time-sortable identifiers (``usr_…``, ``team_…``)."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import datetime

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """``prefix_`` + 10 chars of millisecond time + 16 chars (80 bits) of randomness."""
    millis = int(time.time() * 1000)
    return f"{prefix}_{_b32(millis, 10)}{_b32(secrets.randbits(80), 16)}"


def derived_id(prefix: str, at: datetime, *parts: str) -> str:
    """Like :func:`new_id`, but the same for the same inputs: sorted by ``at``, unique by ``parts``.

    For objects a retried or replayed event must not create twice (one incident per outage)."""
    millis = int(at.timestamp() * 1000)
    digest = hashlib.sha256("|".join([at.isoformat(), *parts]).encode()).digest()
    return f"{prefix}_{_b32(millis, 10)}{_b32(int.from_bytes(digest[:10], 'big'), 16)}"


def id_floor(prefix: str, at: datetime) -> str:
    """The smallest id of ``prefix`` made at ``at`` or later (for range queries over time-sorted ids)."""
    return f"{prefix}_{_b32(int(at.timestamp() * 1000), 10)}"
