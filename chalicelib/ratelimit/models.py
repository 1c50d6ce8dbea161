"""Fixed-window counters (login failures, API-key requests), expired by TTL."""

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
