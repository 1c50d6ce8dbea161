"""Results stream → rollups, through the real stream path on moto: new results count once, rewrites don't."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.local.loop import EventLoop
from chalicelib.monitors.models import ResultModel, RollupModel
from tests.events import lambda_event, stream_record


@pytest.fixture
def loop(app, aws) -> Iterator[EventLoop]:
    event_loop = EventLoop(aws.aws_region, retry_seconds=0.1, wall_clock=False)
    event_loop.add_chalice_app(app, aws, new_tables=[f"{aws.table_prefix}check_results"])
    event_loop.start()
    yield event_loop
    event_loop.stop()


def result(at: datetime, ok: bool, ms: float, region: str = "us-east-1") -> ResultModel:
    return ResultModel(
        "mon_1",
        f"{at:%Y-%m-%dT%H:%M:%S}#{region}",
        team_id="team_1",
        region=region,
        checked_at=at,
        ok=ok,
        response_time_ms=ms,
        expires_at=at + timedelta(days=30),
    )


def test_each_new_result_counts_once_in_its_hour_and_day(loop):
    at = datetime(2026, 11, 30, 14, 5, tzinfo=UTC)
    result(at, True, 120.0).save()
    result(at, True, 120.0, "eu-west-1").save()
    result(at + timedelta(minutes=1), False, 3000.0).save()
    result(at, True, 120.0).save()  # a redelivered job rewrites its own result: MODIFY, not counted
    assert loop.drain(10)
    day = RollupModel.get("mon_1", "D#2026-11-30")
    hour = RollupModel.get("mon_1", "H#2026-11-30T14")
    for item in (day, hour):
        assert (item.checks, item.failures) == (3, 1)
        assert item.latency_sum_ms == 3240.0
        assert (item.le_250, item.le_5000) == (2, 1)
        assert item.team_id == "team_1"
    assert day.expires_at > hour.expires_at


def test_a_failing_record_stops_the_batch_so_nothing_after_it_is_counted_twice(aws):
    from chalicelib.events.results import rollups

    good = {
        "monitor_id": {"S": "mon_1"},
        "team_id": {"S": "team_1"},
        "checked_at": {"S": "2026-11-30T14:05:00.000000+0000"},
        "ok": {"BOOL": True},
        "response_time_ms": {"N": "80"},
    }
    broken = {k: v for k, v in good.items() if k != "team_id"}
    event = lambda_event(
        [stream_record(good, sequence="1"), stream_record(broken, sequence="2"), stream_record(good, sequence="3")]
    )

    response = rollups(event, None)  # as Lambda calls it

    assert response == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert RollupModel.get("mon_1", "D#2026-11-30").checks == 1  # record 3 waits for the retry from record 2
