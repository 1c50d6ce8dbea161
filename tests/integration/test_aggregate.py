"""The aggregator (``monitors.aggregate``) on moto: packs → each monitor's periods, hours and days; the results
API, which reads the periods and the packs not taken yet; and uptime, from the rollups and the hours not rolled up.

Packs are written as the worker writes them (``tests.packed``); every pass is run with an explicit ``now``.
"""

from __future__ import annotations

import base64
import json
import random
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
import time_machine

from chalicelib import clock
from chalicelib.checks.model import Timings
from chalicelib.monitors import aggregate, packs, results, rollups
from chalicelib.monitors.models import MonitorModel, PackModel, PeriodModel, ProgressModel, RollupModel
from chalicelib.monitors.rollups import Tally
from chalicelib.storage import cursor as signed
from tests import iam
from tests.events import stream_record
from tests.factories import create_monitor
from tests.packed import aggregated, check, failing, minutes, reads, write_packs
from tests.support import PASSWORD, on_plan

T0 = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)  # a pass at 15:03 takes 14:00 … 14:50, the hour of 14
RETENTION = timedelta(days=30)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def the_day_after_t0() -> Any:
    """The clock stands a day after T0 (and runs): the results API shows nothing older than the plan keeps (the
    free plan's 7 days), so its lists are read as of then, whatever day the suite runs on."""
    with time_machine.travel(T0 + DAY, tick=True) as traveller:
        yield traveller


def monitor_in(bucket: str, name: str = "shop") -> dict[str, str]:
    """A monitor (as the API shows it) whose id falls in ``bucket``."""
    n = next(n for n in range(10_000) if packs.bucket_of(f"mon_{name}{n}") == bucket)
    return {"id": f"mon_{name}{n}", "team_id": "team_alice"}


SHOP, BLOG = monitor_in("03", "shop"), monitor_in("11", "blog")
DOCS = monitor_in("03", "docs")  # SHOP's bucket: one pack holds both


def periods(monitor: dict) -> dict[str, list]:
    return {
        item.period: packs.decode_period(item.team_id, item.monitor_id, item.body)
        for item in PeriodModel.query(monitor["id"])
    }


def days_written() -> list[tuple[str, str]]:
    """Every daily rollup (not a bucket's roster of a day)."""
    found = RollupModel.scan()
    return [
        (r.monitor_id, r.period) for r in found if r.period.startswith("D#") and not r.monitor_id.startswith("roster#")
    ]


def rollup(monitor: dict, period: str) -> RollupModel:
    return RollupModel.get(monitor["id"], period)


def stored() -> dict[str, list]:
    """Every period and rollup item, as DynamoDB holds them."""
    return {
        "periods": sorted((json.dumps(i.to_dynamodb_dict(), sort_keys=True, default=str)) for i in PeriodModel.scan()),
        "rollups": sorted((json.dumps(i.to_dynamodb_dict(), sort_keys=True, default=str)) for i in RollupModel.scan()),
    }


def test_a_period_holds_each_monitors_checks_of_every_region_once(aws):
    checks = [check(SHOP, at, region) for at in minutes(T0 + timedelta(seconds=5), 10) for region in ("us", "eu")]
    checks += [check(DOCS, T0 + timedelta(minutes=3), "eu", ok=False, ms=None)]
    write_packs(checks)

    assert aggregate.take_period("03", T0 + timedelta(minutes=7), RETENTION, T0 + timedelta(minutes=13)) == {
        SHOP["id"],
        DOCS["id"],
    }

    assert periods(SHOP) == {"2026-12-06T14:00": packs.dedupe(c for c in checks if c.monitor_id == SHOP["id"])}
    assert periods(DOCS) == {"2026-12-06T14:00": [checks[-1]]}
    item = PeriodModel.get(SHOP["id"], "2026-12-06T14:00")
    assert (item.team_id, item.checks) == ("team_alice", 20)
    assert item.expires_at == T0 + timedelta(minutes=10) + RETENTION  # the plan's retention, then gone
    assert list(RollupModel.scan()) == []  # 14:00 does not close its hour


def test_the_last_period_of_an_hour_computes_its_rollups_and_of_a_day_the_days_from_the_checks(aws):
    hourly = monitor_in("03", "hourly")  # checked once an hour, in a period that does not close it
    checks = [
        check(SHOP, at, region, ok=(i % 7 != 3), ms=40.0 + 30 * i)
        for i, at in enumerate(minutes(T0, 60))
        for region in ("us", "eu")
    ]
    checks += [check(hourly, T0 + timedelta(minutes=7), "us", ms=None, ok=False)]
    earlier = [check(SHOP, T0 - timedelta(hours=2) + timedelta(minutes=5), "us", ms=900.0)]
    write_packs(checks + earlier)

    assert aggregate.run_pass(T0 - HOUR + timedelta(minutes=3), RETENTION) == 6  # 12:00 … 12:50
    assert aggregate.run_pass(T0 + HOUR + timedelta(minutes=3), RETENTION) == 12  # 13:00 … 14:50

    shop = [c for c in checks if c.monitor_id == SHOP["id"]]
    hour = rollup(SHOP, "H#2026-12-06T14")
    assert Tally.of_item(hour) == Tally.of(c.result for c in shop)
    assert (hour.checks, hour.failures, hour.latency_count) == (120, 18, 120)
    assert hour.latency_sum_ms == sum(c.result.response_time_ms for c in shop)
    assert (hour.le_100, hour.le_250, hour.le_500, hour.le_1000, hour.le_2500) == (6, 10, 16, 34, 54)
    assert hour.team_id == "team_alice"
    assert hour.expires_at == T0 + HOUR + aggregate.HOURLY_KEEP
    assert (rollup(hourly, "H#2026-12-06T14").checks, rollup(hourly, "H#2026-12-06T14").failures) == (1, 1)
    assert RollupModel.get(SHOP["id"], "H#2026-12-06T12").checks == 1
    assert ProgressModel.get("aggregated").through == T0 + HOUR
    # The day's rollup waits for the day's end: readers sum the hours of a day not over (monitors.results).
    assert days_written() == []

    midnight = datetime(2026, 12, 7, tzinfo=UTC)
    while aggregate.run_pass(midnight + timedelta(minutes=2, seconds=59), RETENTION):
        pass  # six hours a pass
    assert ProgressModel.get("aggregated").through == midnight - timedelta(minutes=10)  # 23:50 not due yet
    assert days_written() == []

    assert aggregate.run_pass(midnight + timedelta(minutes=3), RETENTION) == 1  # 23:50, the day's last period
    day = rollup(SHOP, "D#2026-12-06")
    assert Tally.of_item(day) == Tally.of(c.result for c in shop + earlier)  # every check of the day, once
    assert day.expires_at == midnight + aggregate.DAILY_KEEP
    assert rollup(hourly, "D#2026-12-06").checks == 1


def test_a_replayed_pass_or_period_writes_the_same_items(aws):
    write_packs(
        check(m, at, r)
        for m in (SHOP, BLOG, DOCS)
        for at in minutes(T0, 60, timedelta(minutes=2))
        for r in ("us", "eu")
    )
    assert aggregate.run_pass(T0 + HOUR + timedelta(minutes=3), RETENTION) == 6
    first = stored()

    ProgressModel("aggregated").delete()  # as if the watermark's write was lost: the next pass takes it all again
    assert aggregate.run_pass(T0 + HOUR + timedelta(minutes=3), RETENTION) == 6
    aggregate.take_period("03", T0 + timedelta(minutes=50), RETENTION, T0 + 2 * HOUR)

    assert stored() == first
    assert rollup(SHOP, "H#2026-12-06T14").checks == 60


def test_a_check_in_two_packs_counts_once(aws):
    twice = check(SHOP, T0 + timedelta(minutes=4), "us", ok=False)
    write_packs([twice, check(SHOP, T0 + timedelta(minutes=5), "us")], writer="w1")
    write_packs([twice], writer="w2")  # its message was delivered again, to another worker

    aggregate.run_pass(T0 + HOUR + timedelta(minutes=3), RETENTION)
    aggregate.take_period("03", T0, RETENTION, T0 + timedelta(days=1))  # again once the day is over: its day too

    assert [p.slot for p in periods(SHOP)["2026-12-06T14:00"]] == [T0 + timedelta(minutes=5), T0 + timedelta(minutes=4)]
    for key in ("H#2026-12-06T14", "D#2026-12-06"):
        assert (rollup(SHOP, key).checks, rollup(SHOP, key).failures) == (2, 1)


def test_a_pass_takes_only_the_periods_due_and_goes_on_from_its_watermark(aws):
    write_packs([check(SHOP, T0 + timedelta(minutes=12), "us")])
    # No watermark yet: the first pass starts an hour back, and takes a period 3 minutes after it closed.
    assert aggregate.run_pass(T0 + timedelta(minutes=22, seconds=59), RETENTION) == 5  # 13:20 … 14:00
    assert ProgressModel.get("aggregated").through == T0 + timedelta(minutes=10)
    assert aggregate.run_pass(T0 + timedelta(minutes=23), RETENTION) == 1  # 14:10
    assert list(periods(SHOP)) == ["2026-12-06T14:10"]
    assert aggregate.run_pass(T0 + timedelta(minutes=24), RETENTION) == 0

    many = aggregate.run_pass(T0 + timedelta(days=1), RETENTION)  # a day behind: six hours a pass
    assert many == aggregate.MAX_PERIODS_PER_PASS
    assert ProgressModel.get("aggregated").through == T0 + timedelta(minutes=20) + 6 * HOUR


def test_a_failing_bucket_keeps_the_watermark_before_its_period_and_the_next_pass_takes_it(aws):
    shop = [check(SHOP, at, "us") for at in minutes(T0, 12, timedelta(minutes=5))]
    blog = [check(BLOG, at, "eu") for at in minutes(T0, 12, timedelta(minutes=5))]
    write_packs(shop + blog)
    ProgressModel("aggregated", through=T0 - HOUR).save()
    now = T0 + HOUR + timedelta(minutes=3)

    with failing(PackModel, "Query", "03", "2026-12-06T14:00") as failed, pytest.raises(aggregate.PassFailed) as raised:
        aggregate.run_pass(now, RETENTION)
    assert failed  # DynamoDB failed the bucket's query
    assert (raised.value.period, raised.value.buckets) == (T0, ["03"])
    assert ProgressModel.get("aggregated").through == T0  # 13:00 … 13:50 taken; 14:00 not past
    assert list(periods(BLOG)) == ["2026-12-06T14:00"]  # the other buckets were taken all the same
    assert periods(SHOP) == {}

    assert aggregate.run_pass(now, RETENTION) == 6  # the next pass (or Lambda's retry)
    assert sum(len(found) for found in periods(SHOP).values()) == 12
    assert rollup(SHOP, "H#2026-12-06T14").checks == rollup(BLOG, "H#2026-12-06T14").checks == 12


def test_a_concurrent_pass_that_went_further_is_never_moved_back(aws):
    ahead = T0 + 2 * HOUR
    client = ProgressModel._get_connection().connection.client

    def another_pass_first(**_):  # the other pass's write lands just before this one's
        client.meta.events.unregister("before-call.dynamodb.PutItem", another_pass_first)
        ProgressModel("aggregated", through=ahead).save()

    ProgressModel("aggregated", through=T0).save()
    client.meta.events.register_first("before-call.dynamodb.PutItem", another_pass_first)
    try:
        assert aggregate.run_pass(T0 + HOUR, RETENTION) == 1  # it took 14:00, then saw the other pass ahead
    finally:
        client.meta.events.unregister("before-call.dynamodb.PutItem", another_pass_first)
    assert ProgressModel.get("aggregated").through == ahead


def test_an_unreadable_pack_is_logged_and_skipped_and_the_others_count(aws, logs):
    write_packs([check(SHOP, T0 + timedelta(minutes=1), "us")])
    PackModel("03", "2026-12-06T14:02#us#w9", body=b"not a pack", checks=1, expires_at=T0 + packs.PACK_KEEP).save()

    assert aggregate.take_period("03", T0, RETENTION, T0 + timedelta(minutes=13)) == {SHOP["id"]}

    assert [p.slot for p in periods(SHOP)["2026-12-06T14:00"]] == [T0 + timedelta(minutes=1)]
    [line] = [json.loads(x) for x in logs.getvalue().splitlines() if "unreadable results pack" in x]
    assert (line["bucket"], line["key"], line["level"]) == ("03", "2026-12-06T14:02#us#w9", "ERROR")


def test_a_monitor_checked_only_early_in_the_day_has_its_day_written_at_the_days_end(aws):
    """Each bucket's roster of the day names every monitor an hour of which was rolled up: a monitor paused at noon
    has no check in the day's last hour, and its day is written with the others'."""
    early = [check(SHOP, T0 - 2 * HOUR + timedelta(minutes=m), "us", ok=m != 5) for m in range(0, 60, 5)]  # 12:xx
    late = [check(DOCS, T0 + 9 * HOUR + timedelta(minutes=55), "eu")]  # 23:55, SHOP's bucket
    other = [check(BLOG, T0 + 9 * HOUR + timedelta(minutes=50), "us")]
    write_packs(early + late + other)
    ProgressModel("aggregated", through=T0 - 2 * HOUR).save()
    midnight = datetime(2026, 12, 7, tzinfo=UTC)
    while aggregate.run_pass(midnight - timedelta(minutes=5), RETENTION):  # the day's passes, up to 23:40
        pass
    assert aggregate.run_pass(midnight + timedelta(minutes=2), RETENTION) == 0
    assert days_written() == []  # 23:50 not taken yet: the day is read from its hours meanwhile
    assert bars(SHOP, midnight + timedelta(minutes=2)) == [("2026-12-06", 12, 1), ("2026-12-07", 0, 0)]
    assert aggregate.roster("03", T0.date()) == {SHOP["id"]}  # DOCS's hour is the last: not rolled up yet

    assert aggregate.run_pass(midnight + timedelta(minutes=3), RETENTION) == 1

    assert aggregate.roster("03", T0.date()) == {SHOP["id"], DOCS["id"]}

    assert sorted(days_written()) == sorted((m["id"], "D#2026-12-06") for m in (SHOP, DOCS, BLOG))
    assert (rollup(SHOP, "D#2026-12-06").checks, rollup(SHOP, "D#2026-12-06").failures) == (12, 1)
    assert rollup(SHOP, "D#2026-12-06").team_id == "team_alice"
    assert bars(SHOP, midnight + timedelta(minutes=4)) == [("2026-12-06", 12, 1), ("2026-12-07", 0, 0)]


def in_part(part: int, name: str) -> str:
    """A monitor id in ``part`` of its bucket's roster."""
    return next(
        f"mon_{name}{n}"
        for n in range(10_000)
        if zlib.crc32(f"mon_{name}{n}".encode()) // packs.BUCKETS % aggregate.ROSTER_PARTS == part
    )


def test_a_concurrent_enrolment_in_a_roster_is_merged_not_lost(aws):
    first, second, third = in_part(2, "a"), in_part(2, "b"), in_part(2, "c")  # one part: one item to race on
    aggregate.enrol("03", T0.date(), {first})
    client = RollupModel._get_connection().connection.client

    def another_take_first(**_: Any) -> None:  # a late pack's take enrols one between this one's read and write
        client.meta.events.unregister("before-call.dynamodb.PutItem", another_take_first)
        aggregate.enrol("03", T0.date(), {second})

    client.meta.events.register_first("before-call.dynamodb.PutItem", another_take_first)
    try:
        aggregate.enrol("03", T0.date(), {third})
    finally:
        client.meta.events.unregister("before-call.dynamodb.PutItem", another_take_first)
    assert aggregate.roster("03", T0.date()) == {first, second, third}


def test_a_roster_is_kept_in_parts_each_a_share_of_the_buckets_monitors(aws):
    """One item a bucket would reach DynamoDB's 400 KB near 300,000 monitors: eight parts, by a stable hash."""
    monitors = {f"mon_r{n}" for n in range(400)}
    aggregate.enrol("03", T0.date(), monitors)

    assert aggregate.roster("03", T0.date()) == monitors
    parts = {r.monitor_id: r.checks for r in RollupModel.scan() if r.monitor_id.startswith("roster#")}
    assert set(parts) == {f"roster#03#{part}" for part in range(aggregate.ROSTER_PARTS)}
    assert sum(parts.values()) == 400
    assert max(parts.values()) < 400 / aggregate.ROSTER_PARTS * 1.5  # about an eighth each


def test_a_days_rollup_an_older_version_wrote_before_the_day_was_over_is_not_read_for_it(aws):
    """Until session 17 the aggregator rewrote a day's rollup every hour: today's, left from the hour of the
    upgrade, is not what today holds."""
    RollupModel(SHOP["id"], "D#2026-12-06", team_id="team_alice", checks=3, expires_at=T0 + HOUR).save()
    write_packs([check(SHOP, T0 - HOUR + timedelta(minutes=m), "us") for m in range(0, 60, 10)])  # 13:xx
    ProgressModel("aggregated", through=T0 - HOUR).save()
    aggregate.run_pass(T0 + timedelta(minutes=3), RETENTION)

    assert bars(SHOP, T0 + timedelta(minutes=3)) == [("2026-12-05", 0, 0), ("2026-12-06", 6, 0)]


def test_a_late_pack_is_taken_again_with_its_hour(aws):
    write_packs([check(SHOP, T0 + timedelta(minutes=25), "us")])
    aggregate.run_pass(T0 + HOUR + timedelta(minutes=3), RETENTION)
    assert rollup(SHOP, "H#2026-12-06T14").checks == 1

    late = write_packs([check(SHOP, T0 + timedelta(minutes=26), "eu", ok=False)], late=True)
    on_time = write_packs([check(BLOG, T0 + timedelta(minutes=47), "eu")])  # not late: the next pass's
    records = [stream_record(item, sequence=n) for n, item in enumerate(late + on_time, 1)]

    assert aggregate.retake(records, T0 + HOUR + timedelta(minutes=4), RETENTION) == {"batchItemFailures": []}

    assert [(p.slot.minute, p.result.ok) for p in periods(SHOP)["2026-12-06T14:20"]] == [(26, False), (25, True)]
    assert (rollup(SHOP, "H#2026-12-06T14").checks, rollup(SHOP, "H#2026-12-06T14").failures) == (2, 1)
    assert days_written() == []  # the day is not over
    assert periods(BLOG) == {}


def test_a_late_pack_of_a_day_already_over_is_taken_again_with_its_hour_and_its_day(aws):
    write_packs([check(SHOP, T0 + timedelta(minutes=25), "us")])
    write_packs([check(SHOP, T0 + 9 * HOUR + timedelta(minutes=55), "us")])  # 23:55
    midnight = datetime(2026, 12, 7, tzinfo=UTC)
    ProgressModel("aggregated", through=T0).save()
    while aggregate.run_pass(midnight + timedelta(minutes=3), RETENTION):
        pass
    assert rollup(SHOP, "D#2026-12-06").checks == 2

    late = write_packs([check(SHOP, T0 + timedelta(minutes=26), "eu", ok=False)], late=True)
    now = midnight + timedelta(minutes=30)
    assert aggregate.retake([stream_record(late[0])], now, RETENTION) == {"batchItemFailures": []}

    assert (rollup(SHOP, "H#2026-12-06T14").checks, rollup(SHOP, "H#2026-12-06T14").failures) == (2, 1)
    assert (rollup(SHOP, "D#2026-12-06").checks, rollup(SHOP, "D#2026-12-06").failures) == (3, 1)


def test_a_late_pack_taken_after_midnight_before_the_days_close_leaves_yesterdays_last_hour_counted(api, alice):
    """A late pack of 22:05 taken at 00:01 writes yesterday's rollup from the hours rolled up by then: the last hour
    (23:00 … 23:40 in periods, rolled up at 00:03) is not in it, and is still counted from its periods until then
    (fresh-eyes review of issue 13)."""
    shop = create_monitor(api, url=URL)
    midnight = datetime(2026, 12, 7, tzinfo=UTC)
    write_packs(check(shop, at, "us") for at in minutes(midnight - 2 * HOUR, 120))  # 22:00 … 23:59
    ProgressModel("aggregated", through=midnight - 2 * HOUR).save()
    while aggregate.run_pass(midnight - timedelta(seconds=1), RETENTION):  # 22:00 … 23:40, the hour of 22
        pass
    late = write_packs([check(shop, midnight - 2 * HOUR + timedelta(minutes=5), "eu", ok=False)], late=True)
    assert aggregate.retake([stream_record(late[0])], midnight + timedelta(minutes=1), RETENTION) == {
        "batchItemFailures": []
    }
    assert RollupModel.get(shop["id"], "D#2026-12-06").checks == 61  # the hour of 22 and its late check

    now = midnight + timedelta(minutes=2)
    assert bars(shop, now) == [("2026-12-06", 61 + 50, 1), ("2026-12-07", 0, 0)]
    found = results.uptime(shop["team_id"], shop["id"], 2, now)
    assert [(d.checks, d.failures) for d in found.days] == [(111, 1), (0, 0)]
    assert found.windows["24h"] == found.windows["7d"] == round(100 * 110 / 111, 3)

    aggregate.run_pass(midnight + timedelta(minutes=3), RETENTION)  # 23:50: the hour of 23, and the day
    assert bars(shop, midnight + timedelta(minutes=3)) == [("2026-12-06", 121, 1), ("2026-12-07", 0, 0)]


def test_a_late_packs_take_that_lands_during_a_pass_is_not_undone_by_the_pass(aws):
    write_packs([check(SHOP, T0 + timedelta(minutes=5), "us")])
    ProgressModel("aggregated", through=T0).save()
    client = PeriodModel._get_connection().connection.client

    def late_pack_taken_first(**_: Any) -> None:  # between the pass's read of the packs and its write
        client.meta.events.unregister("before-call.dynamodb.PutItem", late_pack_taken_first)
        with iam.outside():  # a worker and the retake function, not the pass
            write_packs([check(SHOP, T0 + timedelta(minutes=6), "eu", ok=False)], late=True)
            aggregate.take_period("03", T0, RETENTION, T0 + timedelta(minutes=13))  # the packs stream's take

    client.meta.events.register_first("before-call.dynamodb.PutItem", late_pack_taken_first)
    try:
        assert aggregate.run_pass(T0 + timedelta(minutes=13), RETENTION) == 1
    finally:
        client.meta.events.unregister("before-call.dynamodb.PutItem", late_pack_taken_first)

    assert [p.slot.minute for p in periods(SHOP)["2026-12-06T14:00"]] == [6, 5]


def test_a_period_taken_again_once_some_of_its_packs_expired_keeps_its_checks(aws):
    write_packs([check(SHOP, T0 + timedelta(minutes=5), "us", ok=False)])
    write_packs([check(SHOP, T0 + timedelta(minutes=5), "eu")], writer="w2")
    aggregate.run_pass(T0 + HOUR + timedelta(minutes=3), RETENTION)
    PackModel.get("03", "2026-12-06T14:05#us#w1").delete()  # its TTL ran out

    aggregate.take_period("03", T0, RETENTION, T0 + timedelta(days=3))  # a late pack's take, say

    assert len(periods(SHOP)["2026-12-06T14:00"]) == 2
    for key in ("H#2026-12-06T14", "D#2026-12-06"):
        assert (rollup(SHOP, key).checks, rollup(SHOP, key).failures) == (2, 1)


def test_a_late_pack_of_an_open_hour_leaves_the_hour_to_the_pass(aws):
    late = write_packs([check(SHOP, T0 + timedelta(minutes=5), "us")], late=True)
    assert aggregate.retake([stream_record(late[0])], T0 + timedelta(minutes=13), RETENTION)["batchItemFailures"] == []
    assert list(periods(SHOP)) == ["2026-12-06T14:00"]
    assert list(RollupModel.scan()) == []


def test_a_late_period_that_fails_is_reported_from_its_first_record(aws):
    shop = write_packs([check(SHOP, T0 + timedelta(minutes=5), "us")], late=True)
    blog = write_packs([check(BLOG, T0 + timedelta(minutes=5), "us")], late=True)
    shop_again = write_packs([check(SHOP, T0 + timedelta(minutes=6), "eu")], late=True, writer="w2")
    records = [stream_record(item, sequence=n) for n, item in enumerate(shop + blog + shop_again, 1)]
    now = T0 + HOUR

    with failing(PackModel, "Query", "11"):
        assert aggregate.retake(records, now, RETENTION) == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert len(periods(SHOP)["2026-12-06T14:00"]) == 2  # taken once, with both of its packs
    with failing(PackModel, "Query", "03") as failed:
        assert aggregate.retake(records, now, RETENTION) == {"batchItemFailures": [{"itemIdentifier": "1"}]}
    assert len(failed) == 1  # records 1 and 3 are one period: taken (and failed) once
    assert aggregate.retake(records, now, RETENTION) == {"batchItemFailures": []}
    assert len(periods(BLOG)["2026-12-06T14:00"]) == 1


# ---------------------------------------------------------------------------------------------- read through the API

URL = "https://1.1.1.1/health"  # a public literal: never checked here


@pytest.fixture
def shop(api, alice) -> dict:
    return create_monitor(api, url=URL, regions=["us-east-1", "eu-west-1"])


def listed(api, monitor: dict, **query: Any) -> dict:
    r = api.get(f"/v1/monitors/{monitor['id']}/results?{urlencode(query)}")
    assert r.status == 200, r.body
    return r.json


def every_page(api, monitor: dict, **query: Any) -> list[list[dict]]:
    pages, after = [], None
    while True:
        body = listed(api, monitor, **query, **({"cursor": after} if after else {}))
        pages.append(body["data"])
        if not (after := body["next_cursor"]):
            return pages


def test_a_check_is_listed_as_soon_as_its_pack_is_written_and_the_same_once_its_period_is_taken(api, shop):
    slot = T0 + timedelta(minutes=3)
    write_packs([check(shop, slot, "eu-west-1", ok=False, ms=812.3, checked_at=slot + timedelta(milliseconds=412))])

    before = listed(api, shop)
    assert before == {
        "data": [
            {
                "checked_at": "2026-12-06T14:03:00Z",
                "region": "eu-west-1",
                "ok": False,
                "degraded": False,
                "status_code": 503,
                "response_time_ms": 812.3,
                "timings": {"dns_ms": 1.0, "connect_ms": 2.0, "tls_ms": 3.0, "ttfb_ms": 100.0, "total_ms": 812.3},
                "error": "status_mismatch",
                "error_detail": "expected 2xx, got 503",
                "ssl_expires_at": None,
                "assertion_failures": [],
            }
        ],
        "next_cursor": None,
    }
    assert aggregate.run_pass(T0 + timedelta(minutes=13), RETENTION) == 6  # 13:10 … 14:00
    assert list(periods(shop)) == ["2026-12-06T14:00"]
    assert listed(api, shop) == before


def test_a_check_in_two_packs_is_listed_once(api, shop):
    twice = check(shop, T0 + timedelta(minutes=4), "us-east-1")
    write_packs([twice], writer="w1")
    write_packs([twice], writer="w2")
    assert len(listed(api, shop)["data"]) == 1
    aggregate.run_pass(T0 + timedelta(minutes=13), RETENTION)
    assert len(listed(api, shop)["data"]) == 1


def test_pages_run_from_the_packs_into_the_periods_with_no_check_lost_or_repeated(api, shop):
    checks = [check(shop, at, r) for at in minutes(T0, 30) for r in ("us-east-1", "eu-west-1")]
    write_packs(checks)
    assert aggregate.run_pass(T0 + timedelta(minutes=23), RETENTION) == 6  # 14:00 … 14:19 taken, 14:20 … in packs
    expected = [(c.slot, c.region) for c in packs.dedupe(checks)]

    def shown(pages: list[list[dict]]) -> list[tuple[datetime, str]]:
        return [(clock.parse_time(r["checked_at"]), r["region"]) for page in pages for r in page]

    pages = every_page(api, shop, limit=7)
    assert [len(p) for p in pages] == [7] * 8 + [4]
    assert shown(pages) == expected

    window = {"region": "eu-west-1", "since": "2026-12-06T14:15:00Z", "until": "2026-12-06T14:24:59Z", "limit": 3}
    pages = every_page(api, shop, **window)
    assert shown(pages) == [(T0 + timedelta(minutes=m), "eu-west-1") for m in range(24, 14, -1)]

    assert listed(api, shop, until="1969-12-31T23:59:59Z")["data"] == []
    assert listed(api, shop, since="2026-12-06T14:30:00Z")["data"] == []


def test_a_region_no_check_ever_ran_in_is_refused_before_anything_is_read(api, shop):
    write_packs(check(shop, at, "us-east-1") for at in minutes(T0, 30))
    with reads(PeriodModel) as period_reads, reads(PackModel) as pack_reads:
        r = api.get(f"/v1/monitors/{shop['id']}/results?region=mars-north-1")
    assert r.status == 422, r.body
    assert r.json["errors"] == [
        {"field": "region", "message": "must be one of us-east-1, eu-west-1, ap-southeast-1, global"}
    ]
    assert period_reads == pack_reads == []
    assert len(listed(api, shop, region="us-east-1")["data"]) == 30


def test_a_page_reads_only_the_periods_it_needs(api, shop):
    write_packs(
        check(shop, at, r) for at in minutes(T0, 6 * 60, timedelta(minutes=1)) for r in ("us-east-1", "eu-west-1")
    )
    ProgressModel("aggregated", through=T0).save()
    assert aggregate.run_pass(T0 + timedelta(hours=6, minutes=3), RETENTION) == 36
    with reads(PeriodModel) as period_reads, reads(PackModel) as pack_reads, reads(ProgressModel) as mark_reads:
        assert len(listed(api, shop, limit=50)["data"]) == 50
    assert sum(r.items for r in period_reads) == 3  # 20 checks a period: 3 periods hold the page and one more
    assert [r.items for r in pack_reads] == [0]  # none since the watermark
    assert [r.units for r in mark_reads] == [0.5]  # the watermark, read eventually consistent


def test_a_cursor_edited_or_used_for_another_list_is_400(api, alice, shop, charlie):
    write_packs(check(shop, at, "us-east-1") for at in minutes(T0, 5))
    other = create_monitor(api, url=URL)
    cursor = listed(api, shop, limit=2)["next_cursor"]
    body, signature = cursor.split(".")
    forged = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged["k"]["slot"] += 3600
    forged_body = base64.urlsafe_b64encode(json.dumps(forged, separators=(",", ":")).encode()).rstrip(b"=").decode()

    # Signed for this very list, but not a position this code writes (a time as text: an older format, say).
    scope = f"{results.RESULTS_SCOPE}|{shop['id']}|||"
    odd = signed.encode(
        {"slot": "2026-12-06T14:03:00", "region": "us-east-1"}, team_id=alice["team"]["id"], scope=scope
    )

    for path, query in [
        (shop["id"], {"cursor": odd}),
        (shop["id"], {"cursor": f"{forged_body}.{signature}"}),  # edited
        (shop["id"], {"cursor": cursor, "region": "us-east-1"}),  # another query of the same monitor
        (other["id"], {"cursor": cursor}),  # another monitor
        (shop["id"], {"cursor": cursor + "x"}),
    ]:
        r = api.get(f"/v1/monitors/{path}/results?{urlencode(query)}")
        assert (r.status, r.json["code"]) == (400, "invalid_cursor"), query
    assert api.get(f"/v1/monitors/{shop['id']}/results?{urlencode({'cursor': cursor})}").status == 200
    r = api.get(f"/v1/monitors/{shop['id']}/results", token=charlie["access_token"])
    assert r.status == 404  # not his monitor, whatever he holds


def signed_in_again(api) -> None:
    """A fresh access token for alice, at the clock's time (after it moved past the last one's life)."""
    api.token = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}).json["access_token"]


def checked_at(body: dict) -> list[str]:
    return [r["checked_at"] for r in body["data"]]


def test_a_result_older_than_the_plan_keeps_is_never_listed_nor_read_though_its_item_is_still_there(api, shop):
    """Stored under a longer retention (30 days: the team was on Pro, or DynamoDB's TTL is days late), a period
    older than the free plan's 7 days is still in the table: the list neither shows it nor reads it."""
    old, kept, latest = T0 - 7 * DAY, T0 - 5 * DAY, T0
    checks = [check(shop, at, "us-east-1") for at in (old, kept, latest)]
    write_packs(checks)
    aggregated(checks, T0 + HOUR, RETENTION)
    ProgressModel("aggregated", through=T0 + HOUR).save()
    assert len(list(PeriodModel.query(shop["id"]))) == 3  # the old one too: not expired yet

    with reads(PeriodModel) as period_reads, reads(PackModel) as pack_reads:
        every = listed(api, shop, limit=10)
    assert checked_at(every) == [clock.isoz(latest), clock.isoz(kept)]
    assert sum(r.items for r in period_reads) == 2  # the key condition stops at the retention: not read at all
    assert sum(r.items for r in pack_reads) == 0
    asked_for_it = listed(api, shop, since=clock.isoz(old - HOUR), until=clock.isoz(old + HOUR))
    assert asked_for_it == {"data": [], "next_cursor": None}  # `since` cannot reach past it either

    first = listed(api, shop, limit=1)
    second = listed(api, shop, limit=1, cursor=first["next_cursor"])
    assert checked_at(second) == [clock.isoz(kept)]
    assert second["next_cursor"] is None  # no page leads to the old one

    on_plan(api, shop["team_id"], "pro")  # 30 days: the same item is within the plan's retention
    assert checked_at(listed(api, shop, limit=10)) == [clock.isoz(latest), clock.isoz(kept), clock.isoz(old)]


def test_a_cursor_reaches_no_further_back_than_the_retention_on_the_day_it_is_used(api, shop, the_day_after_t0):
    kept, latest = T0 - 5 * DAY, T0
    checks = [check(shop, at, "us-east-1") for at in (kept, latest)]
    write_packs(checks)
    aggregated(checks, T0 + HOUR, RETENTION)
    ProgressModel("aggregated", through=T0 + HOUR).save()
    first = listed(api, shop, limit=1)
    assert (checked_at(first), bool(first["next_cursor"])) == ([clock.isoz(latest)], True)

    the_day_after_t0.shift(2 * DAY)  # the check at T0 - 5 days is now 8 days old
    signed_in_again(api)
    assert listed(api, shop, limit=1, cursor=first["next_cursor"]) == {"data": [], "next_cursor": None}


def test_packs_never_taken_show_no_check_older_than_the_plan_keeps(api, shop):
    """Before any aggregator pass (no watermark) every check is read from the packs: their keys start at the
    retention too, so an old pack is not read."""
    old, latest = T0 - 8 * DAY, T0
    write_packs([check(shop, at, "eu-west-1") for at in (old, latest)])
    with reads(PackModel) as pack_reads:
        assert checked_at(listed(api, shop)) == [clock.isoz(latest)]
    assert sum(r.items for r in pack_reads) == 1


# ---------------------------------------------------------------------------------------------- uptime


def bars(monitor: dict, now: datetime, days: int = 2) -> list[tuple[str, int, int]]:
    return [(d.date, d.checks, d.failures) for d in results.daily(monitor["id"], now, days)]


def test_the_bars_count_the_hours_not_rolled_up_from_their_periods_and_no_check_twice(aws):
    checks = [check(SHOP, at, "us", ok=at.minute % 20 != 7) for at in minutes(T0 - HOUR, 100)]  # 13:00 … 14:39
    write_packs(checks)
    ProgressModel("aggregated", through=T0 - HOUR).save()

    aggregate.run_pass(T0 - timedelta(minutes=2), RETENTION)  # 13:00 … 13:40: the hour of 13 not rolled up
    assert list(RollupModel.scan()) == []
    assert bars(SHOP, T0 + timedelta(minutes=1)) == [("2026-12-05", 0, 0), ("2026-12-06", 50, 3)]
    aggregate.run_pass(T0 + timedelta(minutes=3), RETENTION)  # 13:50, and the hour of 13 rolled up
    assert bars(SHOP, T0 + timedelta(minutes=3)) == [("2026-12-05", 0, 0), ("2026-12-06", 60, 3)]
    aggregate.run_pass(T0 + timedelta(minutes=43), RETENTION)  # 14:00 … 14:30
    assert bars(SHOP, T0 + timedelta(minutes=43)) == [("2026-12-05", 0, 0), ("2026-12-06", 100, 5)]
    assert results.daily(SHOP["id"], T0 + timedelta(minutes=43), 1)[0].avg_response_ms == 120.0


def test_the_last_hour_of_a_day_not_rolled_up_yet_counts_in_its_own_day(aws):
    evening = datetime(2026, 12, 5, 23, 0, tzinfo=UTC)
    write_packs(check(SHOP, at, "us") for at in minutes(evening, 60))
    ProgressModel("aggregated", through=evening).save()
    aggregate.run_pass(evening + timedelta(minutes=45), RETENTION)  # 23:00 … 23:30 taken
    assert bars(SHOP, evening + timedelta(minutes=62)) == [("2026-12-05", 40, 0), ("2026-12-06", 0, 0)]


def test_uptime_over_24_hours_adds_the_hour_going_on_to_the_last_23_hours(api, alice):
    shop = create_monitor(api, url=URL)
    now = T0 + timedelta(minutes=35)
    yesterday = [check(shop, now - timedelta(hours=23, minutes=30), "us", ok=False)]  # 15:05: in the 24 h
    too_old = [check(shop, now - timedelta(hours=25), "us", ok=False)]
    this_hour = [check(shop, at, "us") for at in minutes(T0, 20)]  # in periods only
    write_packs(yesterday + too_old + this_hour)
    aggregated(yesterday + too_old + this_hour, now)

    found = results.uptime(shop["team_id"], shop["id"], 1, now)

    assert found.windows["24h"] == round(100 * 20 / 21, 3)
    assert [(d.checks, d.failures) for d in found.days] == [(20, 0)]


@pytest.mark.parametrize("start", [T0, T0 + 9 * HOUR], ids=["14h", "23h"])  # 23:53: today's 23 hours the most
def test_the_90_day_bars_read_no_more_than_5_units_and_uptime_6(api, alice, start):
    """The status page's 90 bars: 89 daily rollups, today's hourly rollups (a day's rollup is written once it is
    over) and this hour's periods (five by :53), for a monitor checked every 30 s from three regions, every
    histogram bucket in use: the largest items.  Uptime reads the monitor and the last 23 hours' rollups."""
    shop = create_monitor(api, url=URL)
    now = start + timedelta(minutes=53)
    counters = {"failures": 24, "latency_sum_ms": 1_557_792.4, "latency_count": 8631}
    day = Tally({"checks": 8640, **counters, **{name: 1000 + i for i, name in enumerate(rollups.HISTOGRAM_FIELDS)}})
    hour = Tally({name: value / 24 for name, value in day.counts.items()})
    for n in range(1, 90):
        at = datetime.combine(start.date() - timedelta(days=n), datetime.min.time(), UTC)
        keep = at + rollups.DAILY_KEEP
        RollupModel(
            shop["id"], rollups.day_key(at.date()), team_id=shop["team_id"], expires_at=keep, **day.attributes()
        ).save()
    for n in range(2, 25 + start.hour):  # yesterday 00:00 … today two hours before start
        at = start - n * HOUR
        keep = at + rollups.HOURLY_KEEP
        RollupModel(
            shop["id"], rollups.hour_key(at), team_id=shop["team_id"], expires_at=keep, **hour.attributes()
        ).save()
    write_packs(realistic(shop, start - HOUR, start + timedelta(minutes=50)))
    ProgressModel("aggregated", through=start - HOUR).save()
    assert aggregate.run_pass(now, RETENTION) == 6 + 5

    with reads(RollupModel) as rollup_reads, reads(PeriodModel) as period_reads:
        shown = results.daily(shop["id"], now, 90)
    # Today: 00:00 … start - 2 h as written above, the hour before start rolled up from its checks, the start's
    # hour from the periods.
    today = ((start.hour - 1) * 360 + 120 * 3 + 100 * 3, start.hour - 1 + 1 + 1)
    assert [(d.checks, d.failures) for d in shown[-2:]] == [(8640, 24), today]
    assert shown[-3].checks == 8640  # the day before: its daily rollup
    assert [r.items for r in period_reads] == [5]  # 60 checks each, about 1.5 KB
    assert sum(r.units for r in rollup_reads + period_reads) <= 5

    with reads(MonitorModel) as monitor_reads, reads(RollupModel) as rollup_reads, reads(PeriodModel) as period_reads:
        results.uptime(shop["team_id"], shop["id"], 90, now)
    assert [r.items for r in rollup_reads] == [89, 23]
    assert sum(r.units for r in monitor_reads + rollup_reads + period_reads) <= 6


def test_the_90_day_bars_in_a_days_first_hour_read_no_more_than_5_units(api, alice):
    """At 00:53 yesterday's rollup is written and its last hour rolled up: the bars read that hour's rollup (one
    small item), not its six periods again (6 units in all; fresh-eyes review of issue 13)."""
    shop = create_monitor(api, url=URL)
    midnight = datetime(2026, 12, 7, tzinfo=UTC)
    now = midnight + timedelta(minutes=53)
    counters = {"failures": 24, "latency_sum_ms": 1_557_792.4, "latency_count": 8631}
    day = Tally({"checks": 8640, **counters, **{name: 1000 + i for i, name in enumerate(rollups.HISTOGRAM_FIELDS)}})
    hour = Tally({name: value / 24 for name, value in day.counts.items()})
    for n in range(2, 90):
        at = midnight - n * DAY
        RollupModel(
            shop["id"],
            rollups.day_key(at.date()),
            team_id=shop["team_id"],
            expires_at=at + rollups.DAILY_KEEP,
            **day.attributes(),
        ).save()
    for n in range(2, 25):  # yesterday 00:00 … 22:00
        at = midnight - n * HOUR
        RollupModel(
            shop["id"],
            rollups.hour_key(at),
            team_id=shop["team_id"],
            expires_at=at + rollups.HOURLY_KEEP,
            **hour.attributes(),
        ).save()
    write_packs(realistic(shop, midnight - HOUR, midnight + timedelta(minutes=50)))
    ProgressModel("aggregated", through=midnight - HOUR).save()
    assert aggregate.run_pass(now, RETENTION) == 6 + 5  # 23:00 … 00:40: yesterday's last hour and its day
    assert RollupModel.get(shop["id"], "D#2026-12-06").checks == 23 * 360 + 120 * 3

    with reads(RollupModel) as rollup_reads, reads(PeriodModel) as period_reads:
        shown = results.daily(shop["id"], now, 90)
    assert [(d.checks, d.failures) for d in shown[-2:]] == [(23 * 360 + 120 * 3, 23 + 1), (100 * 3, 1)]
    assert [r.items for r in period_reads] == [5]  # today's 00:00 … 00:40, not yesterday's 23:xx again
    assert sum(r.units for r in rollup_reads + period_reads) <= 5


def realistic(monitor: dict, start: datetime, end: datetime) -> list:
    """Checks every 30 s from three regions, with varied timings, as a real HTTPS target gives."""
    rng = random.Random(7)
    found = []
    for at in minutes(start, int((end - start) / timedelta(seconds=30)), timedelta(seconds=30)):
        for region in ("us-east-1", "eu-west-1", "ap-southeast-1"):
            dns, connect, tls, ttfb = (
                round(rng.uniform(a, b), 1) for a, b in ((0.5, 30), (5, 90), (10, 120), (20, 400))
            )
            total = round(dns + connect + tls + ttfb + rng.uniform(0, 40), 1)
            found.append(
                check(
                    monitor,
                    at,
                    region,
                    ms=total,
                    ok=at.minute != 17 or at.second or region != "us-east-1",
                    checked_at=at + timedelta(milliseconds=rng.randrange(0, 900)),
                    timings=Timings(dns_ms=dns, connect_ms=connect, tls_ms=tls, ttfb_ms=ttfb, total_ms=total),
                    ssl_expires_at=datetime(2027, 3, 1, 12, tzinfo=UTC),
                )
            )
    return found


def test_a_failing_first_pass_is_taken_up_where_it_started_however_late_the_next_pass(aws):
    """No watermark yet: the first pass saves where it starts, so its retries (an hour later, say) skip nothing."""
    write_packs([check(SHOP, at, "us") for at in minutes(T0, 10)])  # 14:00 … 14:09
    with failing(PackModel, "Query", "03"):  # SHOP's bucket
        for m in (13, 18, 23, 28):
            with pytest.raises(aggregate.PassFailed):
                aggregate.run_pass(T0 + timedelta(minutes=m), RETENTION)
    aggregate.run_pass(T0 + timedelta(hours=1, minutes=13), RETENTION)
    assert sum(item.checks for item in PeriodModel.query(SHOP["id"])) == 10


def test_each_teams_results_are_kept_as_long_as_its_plan_says(api, alice, charlie):
    """The aggregator keeps a free team's results 7 days and a pro team's 30 (``RESULT_RETENTION_DAYS`` caps
    both): the period items' TTL, from the plan read when they are written."""
    from chalicelib.events.aggregate import _retention  # not at import: it fixes the stream's name then
    from tests.support import on_plan

    free = {"id": monitor_in("03", "free")["id"], "team_id": alice["team"]["id"]}
    pro = {"id": monitor_in("03", "paid")["id"], "team_id": charlie["team"]["id"]}
    on_plan(api, charlie["team"]["id"])
    write_packs([check(free, T0 + timedelta(seconds=5)), check(pro, T0 + timedelta(seconds=6))])

    aggregate.take_period("03", T0, _retention(), T0 + timedelta(minutes=13))

    period_end = T0 + timedelta(minutes=10)
    assert PeriodModel.get(free["id"], "2026-12-06T14:00").expires_at == period_end + timedelta(days=7)
    assert PeriodModel.get(pro["id"], "2026-12-06T14:00").expires_at == period_end + timedelta(days=30)
