"""The packed form of check results (``monitors.packs``): what goes in comes out, one result per check."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.checks.model import CheckResult, Timings
from chalicelib.monitors import packs
from chalicelib.monitors.packs import Packed

SLOT = datetime(2026, 12, 6, 14, 17, 23, tzinfo=UTC)


def packed(monitor: str = "mon_a", region: str = "eu-west-1", ok: bool = True, **fields) -> Packed:
    result = CheckResult(
        **{
            "ok": ok,
            "checked_at": SLOT + timedelta(milliseconds=412),
            "region": region,
            "status_code": 200 if ok else 503,
            "response_time_ms": 85.3,
            "timings": Timings(dns_ms=1.2, connect_ms=3.0, tls_ms=10.5, ttfb_ms=60.1, total_ms=85.3),
            "error": None if ok else "status_mismatch",
            "error_detail": None if ok else "expected 2xx, got 503",
            "ssl_expires_at": datetime(2027, 3, 1, tzinfo=UTC),
            "assertion_failures": () if ok else ('json_body $.status equals "ok" (got "down")',),
            "degraded": False,
            "body_excerpt": None,
            "final_url": None,
            **fields,
        }
    )
    return Packed("team_1", monitor, region, SLOT, result, marked=not ok)


def test_a_pack_round_trips_every_field_the_api_shows() -> None:
    results = [packed(), packed("mon_b", ok=False), packed("mon_c", ssl_expires_at=None, response_time_ms=None)]
    assert packs.decode_pack(packs.encode_pack(results)) == results


def test_a_period_round_trips_without_repeating_its_ids() -> None:
    results = [packed(region=r) for r in ("us-east-1", "eu-west-1")]
    body = packs.encode_period(results)
    assert packs.decode_period("team_1", "mon_a", body) == results
    assert b"mon_a" not in gzip.decompress(body)


def test_a_pack_is_small_enough_to_pay_a_fraction_of_a_write_unit_per_check() -> None:
    """The point of packing: a DynamoDB write unit is a kilobyte; a result item was ~380 bytes."""
    results = [packed(f"mon_{i:026d}") for i in range(200)]
    assert len(packs.encode_pack(results)) / 200 < 80


@pytest.mark.parametrize(
    "body",
    [b"", b"not gzip", gzip.compress(b"[]", mtime=0), gzip.compress(b'{"v": 2, "r": []}', mtime=0)],
    ids=["empty", "not gzip", "a list", "another version"],
)
def test_a_body_this_code_did_not_write_is_a_value_error(body: bytes) -> None:
    with pytest.raises(ValueError, match="not a results pack"):
        packs.decode_pack(body)


def test_one_result_per_check_newest_first() -> None:
    first, again = packed(), packed(status_code=201)
    later = Packed("team_1", "mon_a", "eu-west-1", SLOT + timedelta(minutes=1), first.result)
    assert packs.dedupe([first, later, again]) == [later, first]


def test_buckets_are_stable_and_spread() -> None:
    ids = [f"mon_{i}" for i in range(1600)]
    buckets = [packs.bucket_of(m) for m in ids]
    assert buckets == [packs.bucket_of(m) for m in ids]
    counts = {b: buckets.count(b) for b in set(buckets)}
    assert len(counts) == packs.BUCKETS
    assert max(counts.values()) < 2 * min(counts.values())


def test_periods_and_lateness() -> None:
    assert packs.period_of(SLOT) == datetime(2026, 12, 6, 14, 10, tzinfo=UTC)
    assert packs.pack_key(packs.minute_of(SLOT), "eu-west-1", "w1") == "2026-12-06T14:17#eu-west-1#w1"
    closes = datetime(2026, 12, 6, 14, 20, tzinfo=UTC)
    assert not packs.is_late(packs.minute_of(SLOT), closes + packs.LATE_AFTER - timedelta(seconds=1))
    assert packs.is_late(packs.minute_of(SLOT), closes + packs.LATE_AFTER)
