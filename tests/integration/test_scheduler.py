"""The scheduler tick on moto: due monitors only, one job per region, many jobs per message, changes seen at once."""

from __future__ import annotations

import math
import secrets
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from chalicelib.aws import names
from chalicelib.aws.clients import client
from chalicelib.checks.jobs import MAX_MESSAGE_BYTES, Job, decode_message
from chalicelib.checks.sizing import (
    ASSUMED_CPU_MS,
    CPU_SHARE,
    DEFAULT_MEMORY_MB,
    HEADROOM,
    LAMBDA_MB_PER_VCPU,
    capacity,
)
from chalicelib.monitors import workload
from chalicelib.monitors.models import MonitorModel, ProgressModel
from chalicelib.monitors.workload import MIN_MEASURED_CHECKS
from chalicelib.scheduler.service import NothingSent, run_tick
from chalicelib.settings import get_settings
from tests.factories import create_monitor
from tests.support import aws_error, aws_requests, before_aws_call, dynamodb_clients, on_plan

URL = "https://1.1.1.1/"  # never checked here: the scheduler only sends jobs
TICK = datetime(2026, 11, 30, 11, 59, 5, tzinfo=UTC)  # it plans minute 0 of the hour: every phase 0 is due
MINUTE = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def pro(api, alice):
    """30-second monitors and more than ten: the pro plan."""
    on_plan(api, alice["team"]["id"])


def create(api, **fields):
    return create_monitor(api, **{"url": URL, **fields})


def drain(settings, region: str) -> list[tuple[Job, dict]]:
    sqs = client("sqs")
    url = sqs.get_queue_url(QueueName=names.check_queue(settings, region))["QueueUrl"]
    jobs = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
        if not got.get("Messages"):
            return jobs
        for message in got["Messages"]:
            jobs += [(Job.from_json(j), message) for j in decode_message(message["Body"])]
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def batches_sent(requests: list[tuple[str, dict]]) -> list[dict]:
    """The SendMessageBatch requests among ``requests`` (what botocore sent, not what the tick reports)."""
    return [params for operation, params in requests if operation == "SendMessageBatch"]


def due_now(monitor_id: str, interval: int, team_id: str) -> bool:  # in the minute TICK plans (minute 0)
    return MonitorModel.get(team_id, monitor_id).schedule_key == f"{interval}:0"


def test_a_tick_sends_one_job_per_region_to_each_regions_queue(api, alice, settings):
    m = create(api, regions=["us-east-1", "eu-west-1"], headers={"X-Token": "abc"})
    with aws_requests("sqs") as sent:
        report = run_tick(TICK)
    assert [operation for operation, _ in sent if operation != "GetQueueUrl"] == ["SendMessageBatch"] * 2
    queues = sorted(params["QueueUrl"].rsplit("/", 1)[1] for params in batches_sent(sent))
    assert queues == sorted(names.check_queue(settings, r) for r in ("us-east-1", "eu-west-1"))  # one per region
    assert (report.due_monitors, report.jobs, report.sqs_requests) == (1, 2, 2)  # and the tick says so
    for region in ("us-east-1", "eu-west-1"):
        [(job, _)] = drain(settings, region)
        assert job.monitor_id == m["id"]
        assert job.team_id == alice["team"]["id"]
        assert job.region == region
        assert job.spec.url == URL
        assert dict(job.spec.headers) == {"X-Token": "abc"}  # the worker reads nothing per check
        assert MINUTE <= job.slot < MINUTE + timedelta(minutes=1)  # in the next minute, not the tick's
    assert drain(settings, "ap-southeast-1") == []


def test_only_due_monitors_are_read_and_sent(api, alice, settings):
    team = alice["team"]["id"]
    hourly = [create(api, interval_seconds=3600, regions=["us-east-1"])["id"] for _ in range(12)]
    keys = {m: MonitorModel.get(team, m).schedule_key for m in hourly}
    phase = int(keys[hourly[0]].split(":")[1])
    due = [m for m in hourly if keys[m] == f"3600:{phase}"]
    assert 1 <= len(due) < len(hourly)
    with aws_requests("dynamodb") as read:
        report = run_tick(TICK + timedelta(minutes=phase))
    monitors = [(op, params) for op, params in read if params.get("TableName") == MonitorModel.Meta.table_name]
    # One query of the schedule index per interval's due key, whatever the number of monitors; no monitor read
    # one by one (the heartbeats' sweep reads its own index).
    assert [params.get("IndexName") for op, params in monitors if op == "Query"].count("schedule-index") == 8
    assert {op for op, params in monitors} == {"Query"}
    assert {params.get("IndexName") for op, params in monitors} == {"schedule-index", "due-index"}
    assert report.queries == 8
    assert sorted(j.monitor_id for j, _ in drain(settings, "us-east-1")) == sorted(due)
    assert report.due_monitors == len(due)


def test_both_checks_of_a_thirty_second_monitor_travel_in_the_minutes_one_send(api, alice, settings):
    create(api, interval_seconds=30, regions=["us-east-1"])
    report = run_tick(TICK, now=MINUTE - timedelta(seconds=3))  # the send is due at once
    assert (report.jobs, report.messages) == (2, 1)
    [(first, message), (second, again)] = sorted(drain(settings, "us-east-1"), key=lambda found: found[0].slot)
    assert message["MessageId"] == again["MessageId"]
    assert first.slot.second < 30
    assert second.slot - first.slot == timedelta(seconds=30)


def measured_cpu(region: str, at: datetime, *, lane: int) -> None:
    """The region's workers measured a CPU per check so dear that one message of the deployed size takes ``lane``."""
    per_check = DEFAULT_MEMORY_MB / LAMBDA_MB_PER_VCPU * 60 * CPU_SHARE * 1000 / (lane + 0.5)
    workload.record_cpu(region, at, per_check * MIN_MEASURED_CHECKS, MIN_MEASURED_CHECKS)


def test_each_message_of_a_minute_holds_an_even_share_of_its_starts(api, alice, settings, monkeypatch):
    """Found in session 16: a region's jobs were cut into runs of the list, so one message held every 30-second
    monitor's first-half check (its starts packed into 25 s) and another none, where the worker's CPU is sized for
    a message's checks at the minute's even pace.  Dealt in start order, every message holds an even share of
    every stretch of the minute."""
    on_plan(api, alice["team"]["id"], "enterprise")
    for interval in [30] * 6 + [60] * 6 + [300] * 6:  # listed by interval, as the tick reads its keys
        create(api, interval_seconds=interval, regions=["us-east-1"])
    measured_cpu("us-east-1", TICK, lane=8)
    report = run_tick(TICK, now=MINUTE - timedelta(seconds=3))
    assert report.lane_checks == {"us-east-1": 8}
    received = drain(settings, "us-east-1")
    messages: dict[str, list[Job]] = {}
    for job, message in received:
        messages.setdefault(message["MessageId"], []).append(job)
    assert report.messages == len(messages) == -(-report.jobs // 8) >= 3
    starts = sorted(job.start for job, _ in received)
    for jobs in messages.values():
        assert abs(len(jobs) - report.jobs / len(messages)) <= 1
        # its k-th start is never earlier than the minute's (k·messages)-th: no message's starts bunch up
        for k, start in enumerate(sorted(j.start for j in jobs)):
            assert start >= starts[k * len(messages)]
            assert start <= starts[min(len(starts) - 1, (k + 1) * len(messages) - 1)]


def test_many_jobs_travel_in_few_messages(api, alice, settings):
    on_plan(api, alice["team"]["id"], "enterprise")  # 150 monitors
    for _ in range(150):
        create(api, regions=["us-east-1"])
    with aws_requests("sqs") as sent:
        report = run_tick(TICK)
    assert [len(params["Entries"]) for params in batches_sent(sent)] == [1]  # one request, one message
    assert (report.jobs, report.messages, report.sqs_requests) == (150, 1, 1)
    assert len(drain(settings, "us-east-1")) == 150


def test_jobs_too_big_for_one_message_travel_in_messages_over_the_old_256_kib_limit(api, alice, settings):
    """~60 KB a job (a random body does not compress): 20 go in two ~600 KB messages, one SendMessageBatch each."""
    for _ in range(20):
        create(api, regions=["us-east-1"], method="POST", body=secrets.token_urlsafe(45_000))

    with aws_requests("sqs") as sent:
        report = run_tick(TICK)
    received = drain(settings, "us-east-1")

    assert [len(params["Entries"]) for params in batches_sent(sent)] == [1, 1]  # a request for each message
    assert (report.jobs, report.messages, report.sqs_requests) == (20, 2, 2)
    sizes = {message["MessageId"]: len(message["Body"]) for _, message in received}
    assert len(sizes) == 2
    assert all(256 * 1024 < size <= MAX_MESSAGE_BYTES for size in sizes.values())
    assert len(received) == 20


def test_pause_resume_interval_change_and_delete_are_seen_by_the_next_tick(api, alice, settings):
    m = create(api, regions=["us-east-1"])
    api.post(f"/v1/monitors/{m['id']}/pause")
    assert run_tick(TICK).jobs == 0
    api.post(f"/v1/monitors/{m['id']}/resume")
    assert run_tick(TICK).jobs == 1
    drain(settings, "us-east-1")
    api.patch(f"/v1/monitors/{m['id']}", {"interval_seconds": 30})
    assert run_tick(TICK).jobs == 2
    drain(settings, "us-east-1")
    api.delete(f"/v1/monitors/{m['id']}")
    assert run_tick(TICK).jobs == 0


def test_a_monitor_with_no_region_left_is_never_sent(api, alice, settings):
    m = create(api, regions=["eu-west-1"])
    report = run_tick(TICK)
    assert report.regions == {"eu-west-1": 1}
    assert drain(settings, "us-east-1") == []
    assert [j.monitor_id for j, _ in drain(settings, "eu-west-1")] == [m["id"]]


def test_a_forced_tick_sends_every_active_monitor(api, alice, settings):
    team = alice["team"]["id"]
    ids = [create(api, interval_seconds=3600, regions=["us-east-1"])["id"] for _ in range(6)]
    assert not all(due_now(m, 3600, team) for m in ids)
    run_tick(TICK, force=True)
    assert sorted(j.monitor_id for j, _ in drain(settings, "us-east-1")) == sorted(ids)


def test_a_tick_plans_the_next_minute_and_its_messages_arrive_just_before_it(api, alice, settings):
    """However long a tick takes, the minute it plans has not begun: its messages wait in SQS until LEAD_SECONDS
    before that minute, so no start waits for the tick."""
    from chalicelib.scheduler.service import LEAD_SECONDS, send_delay

    create(api, interval_seconds=30, regions=["us-east-1"])
    create(api, interval_seconds=60, regions=["us-east-1"])
    sent: list[dict] = []
    sqs = client("sqs", fast=True)  # the scheduler's own: it sends with short timeouts
    original = sqs.send_message_batch

    def record(**kwargs):
        sent.extend(kwargs["Entries"])
        return original(**kwargs)

    sqs.send_message_batch = record  # the queue's own client: what SQS is asked to delay
    try:
        report = run_tick(TICK, now=TICK + timedelta(seconds=12))  # a tick that took 12 s
    finally:
        del sqs.send_message_batch
    assert report.minute == MINUTE.isoformat()
    delays = sorted(entry.get("DelaySeconds", 0) for entry in sent)
    lead = 60 - 5 - 12 - LEAD_SECONDS  # 11:59:17 -> 11:59:57
    assert delays == [lead]  # one message: the 30-second monitor's two checks and the other's one
    assert report.jobs == 3
    assert send_delay(MINUTE, MINUTE + timedelta(seconds=2)) == 0  # a tick later than its minute: at once
    assert send_delay(MINUTE, MINUTE - timedelta(hours=1)) == 900  # SQS's longest delay
    jobs = [job for job, _ in drain(settings, "us-east-1")]
    assert jobs == []  # nothing is visible before its delay


def test_a_forced_tick_plans_now_undelayed(api, alice, settings):
    m = create(api, interval_seconds=300, regions=["us-east-1"])
    report = run_tick(TICK, force=True, now=TICK)
    assert report.jobs == 1
    [(job, _)] = drain(settings, "us-east-1")
    assert job.monitor_id == m["id"]
    assert job.slot == TICK


def test_a_tcp_monitor_is_planned_with_its_spec_and_one_of_an_unknown_type_is_skipped(api, alice, settings):
    r = api.post(
        "/v1/monitors", {"type": "tcp", "name": "db", "host": "1.1.1.1", "port": 5432, "regions": ["us-east-1"]}
    )
    assert r.status == 201, r.body
    tcp = r.json
    newer = create(api, regions=["us-east-1"])
    item = MonitorModel.get(alice["team"]["id"], newer["id"])
    item.update(actions=[MonitorModel.type.set("dns")])  # an item of a type this code does not know (a rollback)
    http = create(api, regions=["us-east-1"])

    report = run_tick(TICK, force=True)

    planned = {job.monitor_id: job for job, _ in drain(settings, "us-east-1")}
    assert set(planned) == {tcp["id"], http["id"]}
    assert (planned[tcp["id"]].spec.host, planned[tcp["id"]].spec.port) == ("1.1.1.1", 5432)
    assert planned[http["id"]].spec.url == URL
    assert report.due_monitors == 2


# --- issue 18: one region's queue failing holds back no other region ----------------------------------------------


def refusing(region_queue: str, times: int):
    """SendMessageBatch to ``region_queue`` fails ``times`` times, as an SQS outage in that region would (at
    botocore's edge)."""
    return before_aws_call(
        [client("sqs", fast=True)],  # the scheduler's client
        "sqs.SendMessageBatch",
        aws_error("ServiceUnavailable", "SendMessageBatch"),
        match=lambda params: params.get("QueueUrl", "").endswith(region_queue),
        times=times,
    )


def test_one_regions_queue_failing_holds_back_no_other_region(api, alice, settings):
    m = create(api)
    with refusing(names.check_queue(settings, "eu-west-1"), times=2):
        report = run_tick(TICK)

    assert report.failed_regions == ["eu-west-1"]
    assert [job.monitor_id for job, _ in drain(settings, "us-east-1")] == [m["id"]]
    assert [job.monitor_id for job, _ in drain(settings, "ap-southeast-1")] == [m["id"]]
    assert drain(settings, "eu-west-1") == []


def test_a_region_that_fails_once_is_sent_again_after_the_others_and_nothing_twice(api, alice, settings):
    for n in range(3):
        create(api, name=f"m{n}")
    with refusing(names.check_queue(settings, "eu-west-1"), times=1):
        report = run_tick(TICK)

    assert report.failed_regions == []
    assert len(drain(settings, "eu-west-1")) == 3


def test_a_tick_that_sent_nothing_fails_so_that_its_retry_sends_it(api, alice, settings):
    create(api)
    with refusing("", times=6), pytest.raises(NothingSent):  # every queue, first try and second
        run_tick(TICK)

    assert all(drain(settings, region) == [] for region in ("us-east-1", "eu-west-1", "ap-southeast-1"))
    run_tick(TICK)  # the retry
    assert all(len(drain(settings, region)) == 1 for region in ("us-east-1", "eu-west-1", "ap-southeast-1"))


def test_a_monitor_whose_job_would_be_too_big_is_refused_at_save_naming_the_field(api, alice, settings):
    ascii_body = create(api, name="Big but fine", method="POST", body="a" * 65536)  # the body's own limit
    accents = {"name": "Accents", "url": URL, "method": "POST", "body": "é" * 30000}  # 6 bytes each as sent

    r = api.post("/v1/monitors", accents)
    assert (r.status, [e["field"] for e in r.json["errors"]]) == (422, ["body"])
    assert "KiB" in r.json["errors"][0]["message"]
    r = api.patch(f"/v1/monitors/{ascii_body['id']}", {"body": "é" * 30000})
    assert (r.status, [e["field"] for e in r.json["errors"]]) == (422, ["body"])

    report = run_tick(TICK)  # what was saved travels
    assert report.failed_regions == []
    assert MonitorModel.get(alice["team"]["id"], ascii_body["id"]).body == "a" * 65536


class ScriptedSQS:
    """An SQS client whose SendMessageBatch answers from a script (the network seam of ``_send``); records every
    body SQS took."""

    def __init__(self, script):
        self.script = list(script)
        self.accepted: list[str] = []

    def send_message_batch(self, QueueUrl, Entries):
        step = self.script.pop(0) if self.script else "ok"
        if step == "raise":
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendMessageBatch")
        if step == "refuse-last":
            self.accepted += [e["MessageBody"] for e in Entries[:-1]]
            return {"Successful": [{"Id": e["Id"]} for e in Entries[:-1]], "Failed": [{"Id": Entries[-1]["Id"]}]}
        self.accepted += [e["MessageBody"] for e in Entries]
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def test_a_batch_half_taken_then_failing_sends_only_the_rest_on_the_regions_second_try(monkeypatch):
    """SQS takes "a", refuses "b", and the in-batch retry raises: the region's second try sends "b" alone."""
    from chalicelib.scheduler import service as scheduler

    sqs = ScriptedSQS(["refuse-last", "raise"])
    monkeypatch.setattr(scheduler, "_queue_url", lambda region: (sqs, "url"))
    report = scheduler.TickReport(tick="t")
    bodies = ["a", "b"]

    assert not scheduler._sent("r", bodies, MINUTE, True, TICK, report)
    assert scheduler._sent("r", bodies, MINUTE, True, TICK, report)
    assert sorted(sqs.accepted) == ["a", "b"]
    assert report.messages_sent == 2


def test_a_region_that_fails_is_tried_twice_in_a_tick_whatever_its_groups(api, alice, settings):
    """A region that hangs costs its whole timeout per call: it is tried only twice, and listed once."""
    create(api, interval_seconds=30)
    with refusing(names.check_queue(settings, "eu-west-1"), times=10) as fired:
        report = run_tick(TICK)

    assert report.failed_regions == ["eu-west-1"]
    assert len(fired) == 2
    assert len(drain(settings, "us-east-1")) == 2  # both checks of the minute


def test_a_partly_sent_tick_does_not_fail_so_nothing_is_sent_twice(api, alice, settings, monkeypatch):
    from chalicelib.scheduler import service as scheduler

    create(api, name="one", regions=["us-east-1"])
    create(api, name="two", regions=["us-east-1"])
    measured_cpu("us-east-1", datetime.now(UTC), lane=1)  # one job a message (the tick reads the clock) ...
    monkeypatch.setattr(scheduler, "SQS_BATCH", 1)  # ... one message a request: two requests for the region
    calls = [0]

    def second_and_later():
        calls[0] += 1
        if calls[0] > 1:
            aws_error("ServiceUnavailable", "SendMessageBatch")()

    with before_aws_call([client("sqs", fast=True)], "sqs.SendMessageBatch", second_and_later, times=10):
        report = run_tick(TICK)  # no NothingSent: one message went

    assert (report.messages_sent, report.failed_regions) == (1, ["us-east-1"])
    assert len(drain(settings, "us-east-1")) == 1


def test_a_monitor_saved_before_the_size_bound_keeps_working(api, alice):
    """Renamed, or fitted to a lower plan, it is not refused for a body it already had."""
    big = create(api, name="legacy", method="POST", body="x")
    MonitorModel.get(alice["team"]["id"], big["id"]).update(actions=[MonitorModel.body.set("é" * 30000)])

    assert api.patch(f"/v1/monitors/{big['id']}", {"name": "renamed"}).status == 200
    assert api.patch(f"/v1/monitors/{big['id']}", {"body": "é" * 30000}).status == 422


def worker_memory(region: str) -> int:
    function = client("lambda", region).get_function_configuration(FunctionName=names.checker_function(get_settings()))
    return int(function["MemorySize"])


def stored_size(region: str) -> workload.Size:
    return workload.read([region], datetime.now(UTC))[region].size


def test_the_tick_sizes_each_regions_worker_for_its_minute_from_its_measured_cpu(api, alice, settings):
    """Issue 13: the worker's memory follows its load.  Six checks of a CPU so dear that they need 700 MB: the
    tick cuts the minute for the memory the worker has (439 MB: four checks a message), then gives it 700 MB, in
    its region only; the next tick's messages take the checks the new size runs, once the change has settled."""
    on_plan(api, alice["team"]["id"], "enterprise")
    for _ in range(3):
        create(api, interval_seconds=30, regions=["us-east-1"])  # two checks a minute each
    create(api, interval_seconds=60, regions=["eu-west-1"])
    now = MINUTE - timedelta(seconds=3)
    per_check = 700 / LAMBDA_MB_PER_VCPU * 60 * CPU_SHARE * 1000 / math.ceil(6 * HEADROOM)
    workload.record_cpu("us-east-1", now, per_check * MIN_MEASURED_CHECKS, MIN_MEASURED_CHECKS)

    report = run_tick(TICK, now=now)

    assert report.lane_checks["us-east-1"] == 4
    assert len({message["MessageId"] for _, message in drain(settings, "us-east-1")}) == 2
    assert report.resized == {"us-east-1": 700}
    assert (worker_memory("us-east-1"), worker_memory("eu-west-1")) == (700, DEFAULT_MEMORY_MB)
    size = stored_size("us-east-1")
    assert (size.memory_mb, size.previous_mb, size.measured, size.peak) == (700, DEFAULT_MEMORY_MB, True, 6)
    assert stored_size("eu-west-1").memory_mb == DEFAULT_MEMORY_MB  # one check a minute: the deployed size is plan

    settling = run_tick(TICK + timedelta(minutes=1), now=now + timedelta(minutes=1))
    assert settling.lane_checks["us-east-1"] == 4  # invocations may still start at 439 MB
    settled = run_tick(TICK + timedelta(minutes=2), now=now + timedelta(minutes=2))
    assert settled.lane_checks["us-east-1"] == 7
    assert settled.resized == {}


def test_a_forced_tick_counts_toward_no_peak_and_sizes_nothing(api, alice, settings):
    on_plan(api, alice["team"]["id"], "enterprise")
    for _ in range(3):
        create(api, interval_seconds=30, regions=["us-east-1"])
    now = datetime.now(UTC)
    workload.record_cpu("us-east-1", now, 5000.0 * MIN_MEASURED_CHECKS, MIN_MEASURED_CHECKS)
    report = run_tick(now, force=True, now=now)
    assert report.jobs == 3
    assert report.resized == {}
    assert worker_memory("us-east-1") == DEFAULT_MEMORY_MB
    assert stored_size("us-east-1").peak == 0


def test_a_failed_resize_leaves_the_worker_and_its_lanes_as_they_were_and_the_checks_go(api, alice, settings):
    on_plan(api, alice["team"]["id"], "enterprise")
    for _ in range(3):
        create(api, interval_seconds=30, regions=["us-east-1"])
    now = MINUTE - timedelta(seconds=3)
    workload.record_cpu("us-east-1", now, 5000.0 * MIN_MEASURED_CHECKS, MIN_MEASURED_CHECKS)
    lam = client("lambda", "us-east-1", fast=True)
    with before_aws_call([lam], "lambda.UpdateFunctionConfiguration", aws_error("TooManyRequestsException", "x")):
        report = run_tick(TICK, now=now)
    assert (report.jobs, report.messages_sent, report.resized) == (6, report.messages, {})
    assert len(drain(settings, "us-east-1")) == 6
    assert worker_memory("us-east-1") == DEFAULT_MEMORY_MB
    assert stored_size("us-east-1").memory_mb == DEFAULT_MEMORY_MB  # not recorded: the next tick tries again
    assert run_tick(TICK + timedelta(minutes=1), now=now + timedelta(minutes=1)).resized == {"us-east-1": 1475}
    assert worker_memory("us-east-1") == 1475


def test_unreadable_sizes_plan_every_region_as_deployed(api, alice, settings):
    """The failure is made on the progress table's own client (a fresh-eyes review of issue 13 found it made on
    another, never firing, and nothing recorded that the deployed plan would differ from)."""
    create(api, regions=["us-east-1"])
    measured_cpu("us-east-1", MINUTE, lane=8)  # read, the lanes would take eight checks
    failure = aws_error("InternalServerError", "BatchGetItem")
    with before_aws_call(dynamodb_clients(ProgressModel), "dynamodb.BatchGetItem", failure, times=4) as fired:
        report = run_tick(TICK, now=MINUTE - timedelta(seconds=3))
    assert fired
    assert report.lane_checks == {"us-east-1": capacity(DEFAULT_MEMORY_MB, ASSUMED_CPU_MS)}
    assert report.messages_sent == 1


def test_a_worker_whose_memory_a_stack_update_put_back_is_sized_again_on_the_next_tick(api, alice, settings):
    """CloudFormation sets the template's 439 MB on every stack update: lanes cut for the size the scheduler set
    overload it.  The tick reads the memory back and plans again from what it finds.  A fresh-eyes review of issue
    13: read back every ten minutes, a deploy's workers ran lanes cut for 1,475 MB on 439 (3.4 times the CPU they
    are sized for) for up to ten minutes; read back every tick, the next tick puts it right."""
    on_plan(api, alice["team"]["id"], "enterprise")
    for _ in range(3):
        create(api, interval_seconds=30, regions=["us-east-1"])
    now = MINUTE - timedelta(seconds=3)
    workload.record_cpu("us-east-1", now, 5000.0 * MIN_MEASURED_CHECKS, MIN_MEASURED_CHECKS)
    assert run_tick(TICK, now=now).resized == {"us-east-1": 1475}
    lam = client("lambda", "us-east-1")
    lam.update_function_configuration(FunctionName=names.checker_function(settings), MemorySize=DEFAULT_MEMORY_MB)

    later = now + timedelta(minutes=5)  # 12:04:57: its messages were cut for 1,475 MB, and they get it back
    found = run_tick(TICK + timedelta(minutes=5), now=later)
    assert found.resized == {"us-east-1": 1475}
    assert worker_memory("us-east-1") == 1475
    size = stored_size("us-east-1")
    assert (size.memory_mb, size.previous_mb) == (1475, DEFAULT_MEMORY_MB)  # lanes for 439 MB while it settles


def sized(region: str, memory_mb: int, at: datetime, cpu_ms: float) -> None:
    """The region's worker given ``memory_mb`` by a tick an hour before ``at``, its checks measured at ``cpu_ms``."""
    functions = client("lambda", region)
    functions.update_function_configuration(FunctionName=names.checker_function(get_settings()), MemorySize=memory_mb)
    workload.save_size(region, memory_mb, memory_mb, at - timedelta(hours=1), measured=True)
    workload.record_cpu(region, at, cpu_ms * MIN_MEASURED_CHECKS, MIN_MEASURED_CHECKS)


def test_a_shrink_leaves_no_message_of_its_tick_cut_for_the_size_before(api, alice, settings):
    """Found by a fresh-eyes review of issue 13: the tick cut its minute for the memory the worker had, then shrank
    it, and that minute's messages (on their way, delayed until just before it) started on the smaller worker.
    Ten checks a minute that 1,769 MB runs in one lane, 1,011 MB in two: one lane of ten ran at 1,011 MB, 167 %
    of the 70 % busy it is sized for.  The lanes of the tick that shrinks it are cut for the smaller size."""
    on_plan(api, alice["team"]["id"], "enterprise")
    for _ in range(10):
        create(api, interval_seconds=60, regions=["us-east-1"])
    now = MINUTE - timedelta(seconds=3)
    sized("us-east-1", 1769, now, 4000.0)
    assert capacity(1769, 4000.0) == 10

    report = run_tick(TICK, now=now)

    assert report.resized == {"us-east-1": 1011}  # eleven checks with the headroom: two lanes of at most six
    per_message = Counter(message["MessageId"] for _, message in drain(settings, "us-east-1"))
    assert sorted(per_message.values()) == [5, 5]
    assert report.lane_checks["us-east-1"] == capacity(worker_memory("us-east-1"), 4000.0) == 6


def test_a_shrink_the_read_back_brings_waits_for_a_tick_that_cut_its_lanes_for_it(api, alice, settings):
    """The tick cuts its lanes before it reads the worker's memory back: when what it finds plans a smaller size
    than the lanes were cut for, the change waits for the next tick, which cuts its lanes for it first."""
    on_plan(api, alice["team"]["id"], "enterprise")
    for _ in range(10):
        create(api, interval_seconds=60, regions=["us-east-1"])
    now = MINUTE + timedelta(seconds=57)  # 12:00:57
    sized("us-east-1", 1769, now, 4000.0)
    workload.save_size("us-east-1", 1769, 1769, now - timedelta(minutes=5), measured=True)  # too soon to change
    functions = client("lambda", "us-east-1")
    functions.update_function_configuration(FunctionName=names.checker_function(settings), MemorySize=1500)

    first = run_tick(TICK + timedelta(minutes=1), now=now)
    assert first.lane_checks["us-east-1"] == capacity(1769, 4000.0) == 10
    assert first.resized == {}
    assert worker_memory("us-east-1") == 1500

    second = run_tick(TICK + timedelta(minutes=2), now=now + timedelta(minutes=1))
    assert second.lane_checks["us-east-1"] == 6  # what 1,011 MB runs
    assert second.resized == {"us-east-1": 1011}


def test_a_measured_cpu_of_nothing_holds_no_check_back(api, alice, settings):
    """Found by a fresh-eyes review of issue 13: a CPU per check of zero (a thousand checks recorded with none)
    divided by zero while the tick cut its lanes, and the tick failed before sending anything."""
    create(api, regions=["us-east-1"])
    now = MINUTE - timedelta(seconds=3)
    workload.record_cpu("us-east-1", now, 0.0, MIN_MEASURED_CHECKS)
    report = run_tick(TICK, now=now)
    assert report.messages_sent == 1
    assert report.lane_checks == {"us-east-1": capacity(DEFAULT_MEMORY_MB, ASSUMED_CPU_MS)}  # as never measured
