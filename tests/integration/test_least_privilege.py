"""Each function's own IAM policy (``infra/resources.json``) against the calls its code makes.

Every test that uses the ``aws`` fixture already runs under ``tests/iam.py``'s check; these show that the check
itself refuses what a policy does not allow (threads included), and run the handlers Lambda invokes through their
own entry points, whose glue (a plan's retention, a batch's records) the service tests skip.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.aws import names
from chalicelib.local.loop import lambda_context, scheduled_event
from chalicelib.monitors import packs
from chalicelib.monitors.aggregate import roster
from chalicelib.monitors.models import PeriodModel, ProgressModel, RollupModel
from chalicelib.settings import Settings
from infra import build
from tests import iam
from tests.events import stream_record
from tests.packed import check, write_packs
from tests.support import start_aws

T0 = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)


def code_of(module: str, name: str) -> Callable[[Callable[[], Any]], Any]:
    """A function that runs a callable as code of ``chalicelib/<module>`` would: its frame names that file."""
    namespace: dict[str, Any] = {}
    exec(compile(f"def {name}(call):\n    return call()\n", f"/app/chalicelib/{module}", "exec"), namespace)
    return namespace[name]  # type: ignore[no-any-return]


@pytest.fixture
def moto(settings: Settings):
    with mock_aws():
        start_aws(settings)
        yield settings


def test_a_call_outside_the_functions_policy_is_caught_in_its_threads_too(moto: Settings) -> None:
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    users, monitors = f"{moto.table_prefix}users", f"{moto.table_prefix}monitors"
    as_scheduler = code_of("events/schedule.py", "scheduler")

    def read_a_user() -> Any:
        return dynamodb.get_item(TableName=users, Key={"user_id": {"S": "usr_1"}})

    def in_a_pool() -> Any:
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(read_a_user).result()

    with iam.enforced(moto) as watch:
        key = {"team_id": {"S": "t"}, "monitor_id": {"S": "m"}}
        as_scheduler(lambda: dynamodb.get_item(TableName=monitors, Key=key))
        assert watch.violations == []
        as_scheduler(read_a_user)
        as_scheduler(in_a_pool)
        read_a_user()  # the test's own call: no function's
        with iam.outside():
            as_scheduler(read_a_user)  # what a test slips in mid-call

    refused = f"Scheduler may not dynamodb:GetItem on arn:aws:dynamodb:us-east-1:123456789012:table/{users}"
    assert watch.violations == [refused, refused]


def test_sms_goes_to_phone_numbers_only_and_only_from_the_functions_that_alert(moto: Settings) -> None:
    sns = boto3.client("sns", region_name="us-east-1")
    topic = sns.create_topic(Name="someone-elses-topic")["TopicArn"]
    as_deliverer = code_of("events/alerts.py", "handle_message")
    as_aggregator = code_of("events/aggregate.py", "aggregator")

    with iam.enforced(moto) as watch:
        as_deliverer(lambda: sns.publish(PhoneNumber="+14155550123", Message="down"))
        assert watch.violations == []
        as_deliverer(lambda: sns.publish(TopicArn=topic, Message="down"))
        as_aggregator(lambda: sns.publish(PhoneNumber="+14155550123", Message="down"))

    assert watch.violations == [
        f"AlertDeliveries may not sns:Publish on {topic}",
        "Aggregator may not sns:Publish on *",
    ]


def test_only_the_functions_that_send_open_secrets_and_each_only_those_it_sends_with(moto: Settings) -> None:
    from chalicelib.sealing import service as sealing

    config = sealing.seal(sealing.ALERT_CHANNEL, "whsec_x", team_id="team_1", record="ch_1")
    header = sealing.seal(sealing.MONITOR_HEADERS, "Bearer x", team_id="team_1", record="mon_1/Authorization")

    def opening(purpose: str, value: str, record: str) -> Callable[[], str]:
        def run() -> str:
            sealing.forget_keys()  # each function is a process of its own, with no key kept
            return sealing.unseal(purpose, value, team_id="team_1", record=record)

        return run

    channel = opening(sealing.ALERT_CHANNEL, config, "ch_1")
    monitor = opening(sealing.MONITOR_HEADERS, header, "mon_1/Authorization")
    as_api, as_deliverer = code_of("api/framework.py", "_dispatch"), code_of("events/alerts.py", "handle_message")
    as_scheduler, as_planner = code_of("events/schedule.py", "scheduler"), code_of("events/alerts.py", "plan_records")
    as_pages = code_of("events/status_pages.py", "status_pages")

    with iam.enforced(moto) as watch:
        opened = [as_api(channel), as_api(monitor), as_deliverer(channel), as_scheduler(monitor)]
        assert watch.violations == []
        as_planner(channel)  # the alert handler plans deliveries: it sends nothing
        as_pages(monitor)
        as_scheduler(channel)  # each opens only what it sends with
        as_deliverer(monitor)

    assert opened == ["whsec_x", "Bearer x", "whsec_x", "Bearer x"]
    key = iam._kms_keys(moto)[names.secrets_key(moto)]
    assert watch.violations == [
        f"Alerts may not kms:Decrypt on {key} with purpose alert-channel",
        f"StatusPages may not kms:Decrypt on {key} with purpose monitor-headers",
        f"Scheduler may not kms:Decrypt on {key} with purpose alert-channel",
        f"AlertDeliveries may not kms:Decrypt on {key} with purpose monitor-headers",
    ]


def test_the_outermost_entry_point_is_the_function_an_api_request_that_republishes_is_the_apis() -> None:
    as_api = code_of("api/framework.py", "_dispatch")
    as_republish = code_of("status_pages/publish.py", "republish_for")
    as_dev_route = code_of("api/dev.py", "tick")
    import sys

    assert as_api(lambda: as_republish(lambda: iam.acting_function(sys._getframe()))) == "APIHandler"
    assert as_republish(lambda: iam.acting_function(sys._getframe())) == "StatusPages"
    assert as_api(lambda: as_dev_route(lambda: iam.acting_function(sys._getframe()))) is None  # local only


# --- the handlers, invoked as Lambda invokes them (aws: under the check) -------------------------------------------


def test_the_aggregator_and_retake_run_under_their_policies_with_each_teams_plan(aws: Settings, alice: dict) -> None:
    monitor = {"id": "mon_shop1", "team_id": alice["team"]["id"]}
    write_packs([check(monitor, T0 + timedelta(minutes=5), "us-east-1", ok=False)])
    ProgressModel("aggregated", through=T0).save()

    at = (T0 + timedelta(hours=1, minutes=3)).timestamp()
    from chalicelib.events import aggregate

    taken = aggregate.aggregator(
        scheduled_event("aggregator", "us-east-1", at), lambda_context("aggregator", "us-east-1")
    )
    assert taken == {"periods": 6}  # 14:00 … 14:50
    assert [p.period for p in PeriodModel.query(monitor["id"])] == ["2026-12-06T14:00"]
    assert {r.period for r in RollupModel.query(monitor["id"])} == {"H#2026-12-06T14"}  # its day: at the day's end
    assert monitor["id"] in roster(packs.bucket_of(monitor["id"]), T0.date())

    late = write_packs([check(monitor, T0 + timedelta(minutes=7), "eu-west-1")], late=True)
    event = {"Records": [stream_record(late[0])]}
    assert aggregate.retake(event, lambda_context("retake", "us-east-1")) == {"batchItemFailures": []}
    assert RollupModel.get(monitor["id"], "H#2026-12-06T14").checks == 2


def test_every_event_handler_lambda_runs_is_an_entry_point_of_its_own_function(app) -> None:
    """A handler left out of tests/iam.py's entry points would run unchecked (its IAM calls and its keys)."""
    handlers = {name: h for name, h in app.handler_map.items() if type(h).__name__ == "EventSourceHandler"}
    assert len(handlers) == len(build.EVENT_FUNCTIONS)
    for name, handler in handlers.items():
        code = handler.func.__code__
        module = code.co_filename.rpartition("/chalicelib/")[2]
        found = iam.ENTRY_POINTS.get((module, code.co_name)) or iam.ENTRY_POINTS.get((module, None))
        assert found == "".join(part.capitalize() for part in name.split("_")), name
