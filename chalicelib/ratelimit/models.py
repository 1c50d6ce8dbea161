"""Counters: fixed windows (login failures, API requests) expired by TTL, and a team's count of live API keys."""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute

from chalicelib.storage.base import BaseModel


class CounterModel(BaseModel):
    logical_name = "rate_limits"

    class Meta:
        pass

    key = UnicodeAttribute(hash_key=True)
    hits = NumberAttribute(default=0)
    window_ends = NumberAttribute()
    expires_at = TTLAttribute()
