"""Opaque, prefixed, time-sortable identifiers (``usr_…``, ``team_…``)."""

from __future__ import annotations

import secrets
import time

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
