"""The check worker on moto against loopback targets: Lambda-shaped SQS events in, results and batch failures out."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.client
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError
from chalice.local import LambdaContext
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from chalicelib.aws import names
from chalicelib.aws.clients import client
from chalicelib.checks import ssrf
from chalicelib.checks.jobs import SPREAD_STEPS, Job, encode_message, spread
from chalicelib.local.loop import lambda_context
from chalicelib.monitors import packs as packing
from chalicelib.monitors.checking import spec_from
from chalicelib.monitors.models import PackModel
from chalicelib.monitors.service import get as get_monitor
from chalicelib.settings import get_settings, use_settings
from tests.events import lambda_event, sqs_record, sqs_records
from tests.factories import create_monitor
from tests.support import make_test_settings

REGIONS = ["us-east-1", "eu-west-1"]


@pytest.fixture
def settings():
    return make_test_settings(ALLOW_PRIVATE_TARGETS="true")  # loopback targets, as on a developer's machine


@pytest.fixture
def make_handler(aws):
    from functions.checker.handler import make_handler

    return make_handler


@pytest.fixture
def target() -> Iterator[HTTPServer]:
    """A threaded loopback server (pytest-httpserver's default serves one request at a time)."""
    server = HTTPServer(threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


def create(api, url: str, regions: list[str] | None = None) -> dict[str, Any]:
    return create_monitor(api, name="m", url=url, regions=regions or REGIONS)


def job(monitor: dict[str, Any], region: str = "us-east-1", slot: datetime | None = None) -> Job:
    spec = spec_from(get_monitor(monitor["team_id"], monitor["id"]))
    planned = slot or datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    return Job(monitor["team_id"], monitor["id"], region, planned, spec)


def record(body: str | list[Job], *, receive_count: int = 1, region: str = "us-east-1") -> dict[str, Any]:
    """A message of check jobs (or any body) from ``region``'s check queue, as Lambda hands it to the worker."""
    text = body if isinstance(body, str) else encode_message(body)
    arn = f"arn:aws:sqs:{region}:123456789012:test-checks-{region}"
    return sqs_record(text, receive_count=receive_count, queue_arn=arn)


def invoke(make_handler, records: list[dict[str, Any]], region: str = "us-east-1", context: Any = None):
    handler = make_handler(region)
    return handler(lambda_event(records), context or lambda_context(f"checker-{region}", region))


@dataclass(frozen=True)
class Stored:
    """A stored check, as the tests below look at it: its key (planned start and region) and what it found."""

    slot: str
    team_id: str
    region: str
    ok: bool
    degraded: bool
    status_code: int | None
    error: str | None
    error_detail: str | None
    assertion_failures: list[str]
    timings: dict[str, float]
    response_time_ms: float | None
    checked_at: datetime
    marked: bool


def results(monitor_id: str) -> list[Stored]:
    """Every check of the monitor its bucket's packs hold: a check stored twice is here twice."""
    found = []
    for item in PackModel.query(packing.bucket_of(monitor_id), consistent_read=True):
        for p in packing.decode_pack(item.body):
            if p.monitor_id != monitor_id:
                continue
            r = p.result
            found.append(
                Stored(
                    f"{p.slot:%Y-%m-%dT%H:%M:%S}#{p.region}",
                    p.team_id,
                    p.region,
                    r.ok,
                    r.degraded,
                    r.status_code,
                    r.error,
                    r.error_detail,
                    list(r.assertion_failures),
                    asdict(r.timings),
                    r.response_time_ms,
                    r.checked_at,
                    p.marked,
                )
            )
    return sorted(found, key=lambda c: c.slot)


def progress(region: str) -> datetime | None:
    from chalicelib.monitors.models import ProgressModel

    try:
        return ProgressModel.get(f"checks#{region}").through
    except ProgressModel.DoesNotExist:
        return None


def paths(server: HTTPServer) -> list[str]:
    return [request.path for request, _ in server.log]


def test_it_stores_one_result_per_job_under_its_monitor_slot_and_region(api, alice, target, make_handler):
    target.expect_request("/up").respond_with_data("fine")
    target.expect_request("/down").respond_with_data("broken", status=503)
    up, down = create(api, target.url_for("/up")), create(api, target.url_for("/down"))
    slot = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2)

    response = invoke(make_handler, [record([job(up, slot=slot), job(down, slot=slot)])])

    assert response == {"batchItemFailures": []}
    [stored] = results(up["id"])
    assert stored.slot == f"{slot:%Y-%m-%dT%H:%M:%S}#us-east-1"
    assert (stored.team_id, stored.region, stored.ok, stored.degraded) == (
        alice["team"]["id"],
        "us-east-1",
        True,
        False,
    )
    assert stored.status_code == 200
    assert stored.error is None
    assert stored.error_detail is None
    assert stored.assertion_failures == []
    assert set(stored.timings) == {"dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "total_ms"}
    assert stored.response_time_ms == stored.timings["total_ms"]
    assert slot <= stored.checked_at < datetime.now(UTC)
    [failed] = results(down["id"])
    assert (failed.ok, failed.status_code, failed.error) == (False, 503, "status_mismatch")


def steady(monitor: dict[str, Any], regions: list[str], **fields: Any) -> None:
    """What the incident handler writes once it has seen the monitor up in ``regions``."""
    from chalicelib.monitors.models import MonitorModel

    item = MonitorModel.get(monitor["team_id"], monitor["id"])
    actions = [MonitorModel.status.set("up"), MonitorModel.steady_regions.set(regions)]
    actions += [getattr(MonitorModel, name).set(value) for name, value in fields.items()]
    item.update(actions=actions, add_version_condition=False)


def one_minute_base(seconds_needed: int) -> datetime:
    """A start a second or so from now, or just past the next minute boundary, so that ``seconds_needed`` more
    seconds of starts stay in one minute (one pack per bucket, without urgency)."""
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    if base.second > 59 - seconds_needed:
        base += timedelta(seconds=61 - base.second)
    return base


def failing_and_fine(api, target: HTTPServer) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two monitors up and steady everywhere: one whose target now answers 503, one whose target is fine."""
    target.expect_request("/down").respond_with_data("broken", status=503)
    target.expect_request("/up").respond_with_data("fine")
    failing, fine = create(api, target.url_for("/down")), create(api, target.url_for("/up"))
    steady(failing, REGIONS)
    steady(fine, REGIONS)
    return failing, fine


def test_it_marks_the_results_the_incident_handler_must_see(api, alice, target, make_handler):
    """From what the look-up read of each monitor (``checks.marking``): an up check of a steady monitor is left
    unmarked; a failure, a monitor not yet steady, a region not steady, a check inside a window are marked."""
    target.expect_request("/up").respond_with_data("fine")
    target.expect_request("/down").respond_with_data("broken", status=503)
    now = datetime.now(UTC).replace(microsecond=0)
    fine, failing, pending, unsteady, windowed = (
        create(api, target.url_for(path)) for path in ("/up", "/down", "/up", "/up", "/up")
    )
    for monitor in (fine, failing):
        steady(monitor, REGIONS)
    steady(unsteady, ["eu-west-1"])
    window = [(now - timedelta(minutes=5)).isoformat(), (now + timedelta(hours=1)).isoformat()]
    steady(windowed, REGIONS, maintenance=[window])
    slot = now - timedelta(seconds=1)
    monitors = (fine, failing, pending, unsteady, windowed)

    response = invoke(make_handler, [record([job(m, slot=slot) for m in monitors])])

    assert response == {"batchItemFailures": []}
    marked = {m["id"]: [r.marked for r in results(m["id"])] for m in monitors}
    assert marked == {
        fine["id"]: [False],
        failing["id"]: [True],
        pending["id"]: [True],
        unsteady["id"]: [True],
        windowed["id"]: [True],
    }


def test_it_packs_results_per_bucket_and_minute_and_moves_the_regions_progress(api, alice, target, make_handler):
    """Many checks per item (issue 13): one pack per bucket of monitors and minute, marked when a result in it is,
    under a key naming the minute, the region and this delivery; then the region's progress is that minute."""
    from chalicelib.monitors import packs
    from chalicelib.monitors.models import PackModel

    target.expect_request("/up").respond_with_data("fine")
    target.expect_request("/down").respond_with_data("broken", status=503)
    monitors = [create(api, target.url_for("/up")) for _ in range(6)] + [create(api, target.url_for("/down"))]
    for m in monitors[:6]:
        steady(m, REGIONS)
    slot = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    message = record([job(m, slot=slot) for m in monitors])

    assert invoke(make_handler, [message]) == {"batchItemFailures": []}

    items = [item for b in {packs.bucket_of(m["id"]) for m in monitors} for item in PackModel.query(b)]
    assert sorted(item.bucket for item in items) == sorted({packs.bucket_of(m["id"]) for m in monitors})
    minute = packs.minute_key(packs.minute_of(slot))
    for item in items:
        assert item.key.startswith(f"{minute}#us-east-1#{message['messageId']}.1.")
        held = packs.decode_pack(item.body)
        assert item.checks == len(held)
        assert {packs.bucket_of(p.monitor_id) for p in held} == {item.bucket}
        assert item.marked is (True if any(p.marked for p in held) else None)
        assert item.late is None
        assert item.expires_at == packs.minute_of(slot) + packs.PACK_KEEP
    for m in monitors:
        [check] = results(m["id"])
        planned = f"{slot:%Y-%m-%dT%H:%M:%S}#us-east-1"
        assert (check.team_id, check.region, check.slot) == (alice["team"]["id"], "us-east-1", planned)
        assert check.ok is (m is not monitors[-1])
        assert check.marked is (m is monitors[-1])
    assert progress("us-east-1") == packs.minute_of(slot)
    assert progress("eu-west-1") is None


def test_the_progress_never_moves_back_and_a_failed_message_does_not_move_it(api, alice, target, make_handler):
    target.expect_request("/up").respond_with_data("fine")
    m = create(api, target.url_for("/up"))
    now = datetime.now(UTC).replace(microsecond=0)
    reached = (now - timedelta(minutes=3)).replace(second=0)
    assert invoke(make_handler, [record([job(m, slot=reached)])]) == {"batchItemFailures": []}
    assert invoke(make_handler, [record([job(m, slot=now - timedelta(minutes=5))])]) == {"batchItemFailures": []}
    assert progress("us-east-1") == reached

    # A message whose other job cannot be parsed fails (after its good job ran): its minute is not reached.
    poisoned = record(json.dumps({"v": 1, "jobs": [job(m, slot=now - timedelta(seconds=1)).to_json(), {"x": 1}]}))
    fine = record([job(m, slot=reached + timedelta(seconds=30))])
    assert invoke(make_handler, [poisoned, fine]) == {"batchItemFailures": [{"itemIdentifier": poisoned["messageId"]}]}
    assert len(results(m["id"])) == 4  # the poisoned message's good job ran and was stored
    assert progress("us-east-1") == reached


def test_a_duplicated_message_stores_each_result_once_and_a_redelivery_checks_nothing_again(
    api, alice, target, make_handler, settings
):
    target.expect_request("/a").respond_with_data("ok")
    target.expect_request("/b").respond_with_data("ok")
    a, b = create(api, target.url_for("/a")), create(api, target.url_for("/b"))
    planned = [job(a), job(b)]
    body = encode_message(planned)
    sqs = client("sqs")
    url = sqs.get_queue_url(QueueName=names.check_queue(settings, "us-east-1"))["QueueUrl"]
    for _ in range(2):  # SQS delivers at least once: the same body, twice
        sqs.send_message(QueueUrl=url, MessageBody=body)
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert len(got) == 2

    assert invoke(make_handler, sqs_records(got, url)) == {"batchItemFailures": []}
    assert [r.slot for r in results(a["id"])] == [planned[0].slot.strftime("%Y-%m-%dT%H:%M:%S#us-east-1")]
    assert len(results(b["id"])) == 1
    assert len(target.log) == 2  # the copies arrived in one batch: each job ran once

    # A redelivery (a timed-out invocation, a failed record) finds the results stored (in the packs, whichever
    # copy wrote them) and checks nobody again.
    assert invoke(make_handler, [record(body, receive_count=2)]) == {"batchItemFailures": []}
    assert len(target.log) == 2
    assert len(results(a["id"])) == len(results(b["id"])) == 1


def test_a_poisoned_job_or_message_fails_only_its_own_record(api, alice, target, make_handler):
    target.expect_request("/good").respond_with_data("ok")
    target.expect_request("/beside-poison").respond_with_data("ok")
    good, beside = create(api, target.url_for("/good")), create(api, target.url_for("/beside-poison"))
    poisoned_body = json.dumps({"v": 1, "jobs": [{"team_id": "t", "monitor_id": "m"}, job(beside).to_json()]})
    records = [record([job(good)]), record(poisoned_body), record("not a check-job message"), record('{"v":1}')]

    response = invoke(make_handler, records)

    assert response == {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records[1:]]}
    assert len(results(good["id"])) == 1
    # The poisoned message's good job still ran: its check is not held hostage (a redelivery overwrites it).
    assert len(results(beside["id"])) == 1


def test_jobs_of_a_paused_or_deleted_monitor_are_dropped(api, alice, target, make_handler):
    for path in ("/live", "/paused", "/deleted"):
        target.expect_request(path).respond_with_data("ok")
    live, paused, deleted = (create(api, target.url_for(p)) for p in ("/live", "/paused", "/deleted"))
    jobs = [job(live), job(paused), job(deleted)]  # planned at the tick, before the changes below
    assert api.post(f"/v1/monitors/{paused['id']}/pause").status == 200
    assert api.delete(f"/v1/monitors/{deleted['id']}").status == 204

    assert invoke(make_handler, [record(jobs)]) == {"batchItemFailures": []}

    assert paths(target) == ["/live"]
    assert len(results(live["id"])) == 1
    assert results(paused["id"]) == []
    assert results(deleted["id"]) == []


def planned(region: str = "us-east-1") -> list[Job]:
    """The jobs a forced tick plans for ``region`` now: each with its monitor's watch as the tick read it."""
    from chalicelib.scheduler.service import plan_jobs

    groups, _ = plan_jobs(datetime.now(UTC), force=True)
    return groups[region]


def test_a_job_carries_the_ticks_view_of_its_monitor_and_the_worker_reads_only_monitors_noted_since(
    api, alice, target, make_handler
):
    """Issue 13: no read of every monitor per check.  A job's watch (what marks its results) is what the tick read;
    the worker reads a monitor again only when a change note names it (``monitors.watching``)."""
    from chalicelib.monitors.models import MonitorModel
    from chalicelib.monitors.watching import note_one

    target.expect_request("/up").respond_with_data("fine")
    trusted, noted, paused, deleted, edited = (create(api, target.url_for("/up")) for _ in range(5))
    for m in (trusted, noted, paused, deleted, edited):
        steady(m, REGIONS)
    jobs = planned()
    assert {j.monitor_id for j in jobs} == {m["id"] for m in (trusted, noted, paused, deleted, edited)}
    assert all(j.watch is not None and j.watch.status == "up" and j.watched_at is not None for j in jobs)
    # Since the tick: two monitors written behind the API's back (no note: the worker keeps the tick's view of
    # ``trusted``), one of them noted as the incident handler notes its writes; one paused, one deleted, one
    # taken out of this region, through the API.
    for m in (trusted, noted):
        MonitorModel.get(m["team_id"], m["id"]).update(
            actions=[MonitorModel.steady_regions.set(["eu-west-1"])], add_version_condition=False
        )
    note_one(noted["team_id"], noted["id"])
    assert api.post(f"/v1/monitors/{paused['id']}/pause").status == 200
    assert api.delete(f"/v1/monitors/{deleted['id']}").status == 204
    assert api.patch(f"/v1/monitors/{edited['id']}", {"regions": ["eu-west-1"]}).status == 200

    assert invoke(make_handler, [record(jobs)]) == {"batchItemFailures": []}

    assert [r.marked for r in results(trusted["id"])] == [False]  # the tick's view: steady here, nothing to see
    assert [r.marked for r in results(noted["id"])] == [True]  # read again: this region is not steady any more
    assert results(paused["id"]) == results(deleted["id"]) == results(edited["id"]) == []
    assert len(target.log) == 2


def test_a_monitor_paused_mid_minute_misses_its_later_check_even_in_a_small_message(
    api, alice, target, make_handler, monkeypatch
):
    """A small message was looked up once, as it arrived: a monitor paused at second 10 was still checked at 40 (a
    30-second monitor's second check travels in the minute's one message since session 16; found by a fresh-eyes
    review).  A look-up chunk spans at most LOOKUP_SPAN_S of starts (1 s here), and the next chunk is looked up as
    the one before starts: the later job is looked up after the pause (2 s on), and dropped."""
    from functions.checker import worker

    monkeypatch.setattr(worker, "LOOKUP_SPAN_S", 1.0)
    first, later = create(api, target.url_for("/first")), create(api, target.url_for("/later"))
    for m in (first, later):
        steady(m, REGIONS)

    def pause_the_later_one(request: Request) -> Response:
        assert api.post(f"/v1/monitors/{later['id']}/pause").status == 200
        return Response("fine")

    target.expect_request("/first").respond_with_handler(pause_the_later_one)
    target.expect_request("/later").respond_with_data("fine")
    target.expect_request("/between").respond_with_data("fine")
    between = create(api, target.url_for("/between"))
    steady(between, REGIONS)
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    jobs = {j.monitor_id: j for j in planned()}
    message = [
        replace(jobs[first["id"]], slot=base),
        replace(jobs[between["id"]], slot=base + timedelta(seconds=2)),
        replace(jobs[later["id"]], slot=base + timedelta(seconds=4)),
    ]

    assert invoke(make_handler, [record(message)]) == {"batchItemFailures": []}

    assert [r.ok for r in results(first["id"])] == [True]
    assert results(later["id"]) == []
    assert sorted(request.path for request, _ in target.log) == ["/between", "/first"]


def test_a_chunk_after_a_gap_is_looked_up_one_span_before_it_starts_not_as_the_chunk_before_starts(
    api, alice, target, make_handler, monkeypatch
):
    """Two chunks with a gap of starts between them (a 30-second monitor's two checks, alone in a small message):
    the second chunk was looked up as the first one's check started, 30 s before its own start, so a pause made in
    between was missed.  A chunk is looked up no sooner than LOOKUP_SPAN_S (1 s here) before its first start."""
    from functions.checker import worker

    monkeypatch.setattr(worker, "LOOKUP_SPAN_S", 1.0)
    first, later = create(api, target.url_for("/first")), create(api, target.url_for("/later"))
    for m in (first, later):
        steady(m, REGIONS)

    def pause_the_later_one(request: Request) -> Response:
        time.sleep(0.5)  # well after a look-up made as this check started
        assert api.post(f"/v1/monitors/{later['id']}/pause").status == 200
        return Response("fine")

    target.expect_request("/first").respond_with_handler(pause_the_later_one)
    target.expect_request("/later").respond_with_data("fine")
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    jobs = {j.monitor_id: j for j in planned()}
    message = [replace(jobs[first["id"]], slot=base), replace(jobs[later["id"]], slot=base + timedelta(seconds=4))]

    assert invoke(make_handler, [record(message)]) == {"batchItemFailures": []}

    assert [r.ok for r in results(first["id"])] == [True]
    assert results(later["id"]) == []
    assert [request.path for request, _ in target.log] == ["/first"]


def test_jobs_starting_together_in_two_chunks_start_on_time_when_a_look_up_is_slow(
    api, alice, target, make_handler, monkeypatch
):
    """A forced tick's starts all fall in one second: the next chunk, looked up only as this one's first check
    started, held its jobs behind its look-up.  A chunk due within LOOKUP_SPAN_S is looked up while the chunk
    before it waits for its start."""
    from functions.checker import worker

    monkeypatch.setattr(worker, "LOOKUP_CHUNK", 1)
    keep = worker.Worker._keep

    def slow_keep(self, *args, **kwargs):
        time.sleep(1.5)  # a slow BatchGet
        return keep(self, *args, **kwargs)

    monkeypatch.setattr(worker.Worker, "_keep", slow_keep)
    arrived: dict[str, float] = {}

    def stamp(request: Request) -> Response:
        arrived[request.path] = time.time()
        return Response("ok")

    one, two = create(api, target.url_for("/one")), create(api, target.url_for("/two"))
    for m in (one, two):
        steady(m, REGIONS)
        target.expect_request(f"/{'one' if m is one else 'two'}").respond_with_handler(stamp)
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    jobs = {j.monitor_id: j for j in planned()}
    message = [replace(jobs[m["id"]], slot=base) for m in (one, two)]

    assert invoke(make_handler, [record(message)]) == {"batchItemFailures": []}

    for m, path in ((one, "/one"), (two, "/two")):
        start = (base + spread(m["id"])).timestamp()
        assert start <= arrived[path] < start + 0.5


@pytest.mark.parametrize("why", ["a message long after its tick", "a storm of notes", "notes that cannot be read"])
def test_the_worker_looks_every_job_up_when_the_ticks_view_cannot_be_trusted(why, api, alice, target, make_handler):
    """A redelivered or redriven message long after its tick (its notes may be gone), or a feed that overflowed:
    every job is looked up, as before watches travelled, so a monitor paused meanwhile is never checked."""
    from chalicelib.monitors.models import ChangeModel, MonitorModel
    from chalicelib.monitors.watching import MAX_NOTES, TRUSTED_FOR, note
    from tests.packed import failing

    target.expect_request("/up").respond_with_data("fine")
    paused, running = create(api, target.url_for("/up")), create(api, target.url_for("/up"))
    for m in (paused, running):
        steady(m, REGIONS)
    jobs = planned()
    # Written behind the notes' back: only a look-up can know.
    MonitorModel.get(paused["team_id"], paused["id"]).update(
        actions=[MonitorModel.paused.set(True)], add_version_condition=False
    )
    unreadable = contextlib.nullcontext()
    if why == "a storm of notes":
        note([("team_other", f"mon_{n:05d}") for n in range(MAX_NOTES + 1)])
    elif why == "notes that cannot be read":
        unreadable = failing(ChangeModel, "Query")  # DynamoDB answers 500 to every read of the notes
    else:
        jobs = [replace(j, watched_at=j.watched_at - TRUSTED_FOR - timedelta(seconds=1)) for j in jobs]

    with unreadable:
        assert invoke(make_handler, [record(jobs)]) == {"batchItemFailures": []}  # never a failed message

    assert results(paused["id"]) == []
    assert len(results(running["id"])) == 1


def test_a_job_without_a_watch_reads_its_monitor(api, alice, target, make_handler):
    """A job from before watches travelled (a message in flight across a deploy) is looked up as it always was."""
    from chalicelib.monitors.models import MonitorModel

    target.expect_request("/up").respond_with_data("fine")
    m = create(api, target.url_for("/up"))
    steady(m, REGIONS)
    [planned_job] = planned()
    MonitorModel.get(m["team_id"], m["id"]).update(
        actions=[MonitorModel.steady_regions.set(["eu-west-1"])], add_version_condition=False
    )
    bare = Job(planned_job.team_id, planned_job.monitor_id, planned_job.region, planned_job.slot, planned_job.spec)

    assert invoke(make_handler, [record([bare])]) == {"batchItemFailures": []}

    assert [r.marked for r in results(m["id"])] == [True]


def test_a_job_for_a_region_the_monitor_no_longer_has_is_dropped(api, alice, target, make_handler):
    target.expect_request("/m").respond_with_data("ok")
    m = create(api, target.url_for("/m"), regions=["us-east-1", "eu-west-1"])
    planned = [job(m, "us-east-1"), job(m, "eu-west-1")]
    assert api.patch(f"/v1/monitors/{m['id']}", {"regions": ["us-east-1"]}).status == 200

    assert (
        invoke(make_handler, [record([planned[1]], region="eu-west-1")], region="eu-west-1")["batchItemFailures"] == []
    )
    # A job routed to the wrong region's worker is not run there either: its result would carry the wrong region.
    assert (
        invoke(make_handler, [record([planned[0]], region="eu-west-1")], region="eu-west-1")["batchItemFailures"] == []
    )
    assert target.log == []
    assert results(m["id"]) == []

    assert invoke(make_handler, [record([planned[0]])], region="us-east-1")["batchItemFailures"] == []
    assert [r.region for r in results(m["id"])] == ["us-east-1"]


def test_a_messages_checks_run_concurrently(api, alice, target, make_handler):
    def slow(request: Request) -> Response:
        time.sleep(0.5)
        return Response("ok")

    target.expect_request("/slow").respond_with_handler(slow)
    m = create(api, target.url_for("/slow"))
    now = datetime.now(UTC).replace(microsecond=0)
    jobs = [job(m, slot=now - timedelta(seconds=s)) for s in range(1, 11)]  # ten past slots: all start at once

    started = time.monotonic()
    assert invoke(make_handler, [record(jobs)]) == {"batchItemFailures": []}

    assert time.monotonic() - started < 2.0  # one after another would take 5 s
    assert len(target.log) == 10
    assert len(results(m["id"])) == 10


def test_a_job_starts_at_its_planned_time_not_before(api, alice, target, make_handler):
    arrived: list[float] = []
    lock = threading.Lock()

    def stamp(request: Request) -> Response:
        with lock:
            arrived.append(time.time())
        return Response("ok")

    target.expect_request("/later").respond_with_handler(stamp)
    m = create(api, target.url_for("/later"))
    slot = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    start = slot + spread(m["id"])  # its share of the second (a 10 ms step), stable

    assert invoke(make_handler, [record([job(m, slot=slot)])]) == {"batchItemFailures": []}

    [at] = arrived
    assert start.timestamp() <= at < start.timestamp() + 0.5
    [stored] = results(m["id"])
    assert stored.checked_at >= start
    assert stored.slot == f"{slot:%Y-%m-%dT%H:%M:%S}#us-east-1"  # its identity is still the slot


def test_a_seconds_starts_are_spread_over_its_hundred_steps_and_each_monitor_keeps_its_own():
    ids = [f"mon_{i:06d}" for i in range(100_000)]
    steps = Counter(spread(i) for i in ids)

    assert SPREAD_STEPS == 100
    assert set(steps) == {timedelta(milliseconds=10 * k) for k in range(SPREAD_STEPS)}
    assert max(steps.values()) < 100_000 / SPREAD_STEPS * 1.1  # about even: no step holds a burst
    assert [spread(i) for i in ids[:50]] == [spread(i) for i in ids[:50]]


def test_a_checks_dns_lookup_counts_against_its_own_teams_slots(api, alice, target, make_handler, monkeypatch):
    """The worker runs each check as its monitor's team, so a team's hung lookups hold only that team's slots."""
    m = create(api, target.url_for("/"))
    target.expect_request("/").respond_with_data("ok")
    seen: list[int] = []
    system = ssrf.system_resolver

    def resolver(host: str, port: int) -> list[str]:  # the network seam: what the name servers answer
        seen.append(ssrf._lookups.in_flight(m["team_id"]))
        return system(host, port)

    monkeypatch.setattr(ssrf, "system_resolver", resolver)
    assert invoke(make_handler, [record([job(m)])]) == {"batchItemFailures": []}

    assert seen == [1]  # the lookup held one of alice's team's slots while it ran
    assert ssrf._lookups.in_flight(m["team_id"]) == 0


def test_a_start_too_late_for_the_invocation_starts_at_once(api, alice, target, make_handler):
    target.expect_request("/soon").respond_with_data("ok")
    m = create(api, target.url_for("/soon"))
    short = LambdaContext(function_name="vigil-test-checker", memory_size=512, max_runtime_ms=8_000)
    slot = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30)  # past the invocation's end

    started = time.monotonic()
    assert invoke(make_handler, [record([job(m, slot=slot)])], context=short) == {"batchItemFailures": []}

    assert time.monotonic() - started < 2.0
    [stored] = results(m["id"])
    assert stored.slot == f"{slot:%Y-%m-%dT%H:%M:%S}#us-east-1"  # stored under its planned slot all the same


def test_the_ssrf_guard_holds_at_run_time(api, alice, target, make_handler):
    target.expect_request("/private").respond_with_data("secret")
    m = create(api, target.url_for("/private"))  # accepted while private targets were allowed
    allowed = get_settings()
    use_settings(make_test_settings(ALLOW_PRIVATE_TARGETS="false"))
    try:
        assert invoke(make_handler, [record([job(m)])]) == {"batchItemFailures": []}
    finally:
        use_settings(allowed)

    assert target.log == []
    [stored] = results(m["id"])
    assert (stored.ok, stored.error, stored.status_code) == (False, "destination_not_allowed", None)


def test_unprocessed_results_are_resubmitted_and_a_write_that_never_lands_fails_the_record(
    api, alice, target, make_handler, monkeypatch
):
    from functions.checker import worker

    target.expect_request("/m").respond_with_data("ok")
    m = create(api, target.url_for("/m"))
    connection = PackModel._get_connection()
    real = connection.batch_write_item
    calls: list[int] = []

    def throttled(put_items, **kw):  # DynamoDB under pressure: it takes the first item, hands back the rest
        calls.append(len(put_items))
        response = real(put_items=put_items[:1], **kw)
        rest = [{"PutRequest": {"Item": item}} for item in put_items[1:]]
        return {**response, "UnprocessedItems": {PackModel.Meta.table_name: rest} if rest else {}}

    monkeypatch.setattr(connection, "batch_write_item", throttled)
    monkeypatch.setattr(worker, "WRITE_BACKOFF_S", 0.001)
    now = datetime.now(UTC).replace(microsecond=0)
    three = [job(m, slot=now - timedelta(minutes=k, seconds=1)) for k in (0, 1, 2)]  # a pack each: three minutes

    assert invoke(make_handler, [record(three)]) == {"batchItemFailures": []}
    assert calls == [3, 2, 1]
    assert len(results(m["id"])) == 3

    monkeypatch.setattr(worker, "WRITE_ATTEMPTS", 2)
    calls.clear()
    many = record([job(m, slot=now - timedelta(minutes=k)) for k in (3, 4, 5)])
    one = record([job(m, slot=now - timedelta(minutes=6))])  # fits in what DynamoDB takes
    assert invoke(make_handler, [many, one]) == {"batchItemFailures": [{"itemIdentifier": many["messageId"]}]}
    assert sorted(calls) == [1, 2, 3]  # two tries for the three, then their record fails
    assert len(results(m["id"])) == 3 + 2 + 1  # the first batch, two of the three (one per try), the one


def test_checks_spread_over_the_minute_share_their_pack(api, alice, target, make_handler):
    """A message idle between starts does not write each check as it comes (a pack of one pays a whole write
    unit): its checks wait up to PACK_FLUSH_S and are written together.  (A monitor up and steady: a pending
    monitor's checks can move its status, and are written at once.)"""
    target.expect_request("/up").respond_with_data("fine")
    m = create(api, target.url_for("/up"))
    steady(m, REGIONS)
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    spread = [job(m, slot=base + timedelta(seconds=k)) for k in range(4)]  # a check a second, idle between

    assert invoke(make_handler, [record(spread)]) == {"batchItemFailures": []}

    assert len(results(m["id"])) == 4
    written = list(PackModel.query(packing.bucket_of(m["id"])))
    assert len(written) <= 2  # one a minute (two when the four straddle a minute boundary)


def test_a_result_that_can_move_the_status_is_written_at_once_and_the_rest_wait(api, alice, target, make_handler):
    """A first failure of a monitor up is written within ``URGENT_FLUSH_S`` (detection waits on it), in a pack of its
    own; the clean check started after it keeps waiting to share its pack (``checks.marking.urgent``)."""
    calls = {"n": 0}

    def flaky(request: Request) -> Response:
        calls["n"] += 1
        return Response("broken" if calls["n"] == 1 else "fine", status=503 if calls["n"] == 1 else 200)

    target.expect_request("/flaky").respond_with_handler(flaky)
    m = create(api, target.url_for("/flaky"))
    steady(m, REGIONS)
    base = one_minute_base(4)  # both checks in one minute: without urgency they would share one pack
    jobs = [job(m, slot=base), job(m, slot=base + timedelta(seconds=4))]

    assert invoke(make_handler, [record(jobs)]) == {"batchItemFailures": []}

    written = sorted(PackModel.query(packing.bucket_of(m["id"]), consistent_read=True), key=lambda p: p.key)
    contents = [[(p.result.ok, p.marked) for p in packing.decode_pack(item.body)] for item in written]
    assert contents == [[(False, True)], [(True, False)]]


def test_a_slow_write_never_holds_a_start_back(api, alice, target, make_handler, monkeypatch):
    """The packs are written on the writer's own thread: while an urgent pack's write takes seconds (DynamoDB
    throttling, a retry's backoff), the next check still starts on its second."""
    failing, fine = failing_and_fine(api, target)
    original = botocore.client.BaseClient._make_api_call

    def slow_writes(self: Any, operation: str, params: dict[str, Any]) -> Any:
        if operation == "BatchWriteItem":
            time.sleep(3)  # on the network: what a throttled table does to a write
        return original(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", slow_writes)
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    jobs = [job(failing, slot=base), job(fine, slot=base + timedelta(seconds=2))]

    assert invoke(make_handler, [record(jobs)]) == {"batchItemFailures": []}

    [later] = results(fine["id"])
    assert (later.checked_at - jobs[1].start).total_seconds() < 0.5  # its start: the slot and its step of it
    assert [r.ok for r in results(failing["id"])] == [False]


def test_a_region_down_below_quorum_does_not_write_a_pack_per_check(api, alice, target, make_handler):
    """us-east-1 cannot reach the target (a geo-block), eu-west-1 can: the monitor is up (below the quorum of 2),
    with us-east-1 down as an advisory, for days.  Each further failure there changes nothing: not urgent, or each
    would be written within a second in a pack of its own — one write per check, forever.
    (Its checks in one minute and bucket should share one pack, as a monitor down's do.)"""
    target.expect_request("/blocked").respond_with_data("forbidden", status=403)
    m = create(api, target.url_for("/blocked"))
    # status up; us-east-1 down below the quorum (an advisory), not steady
    steady(m, ["eu-west-1"], region_status={"us-east-1": "down", "eu-west-1": "up"})
    base = one_minute_base(8)
    jobs = [job(m, slot=base + timedelta(seconds=k)) for k in (0, 3, 6)]

    assert invoke(make_handler, [record(jobs)]) == {"batchItemFailures": []}

    assert [r.ok for r in results(m["id"])] == [False, False, False]
    written = list(PackModel.query(packing.bucket_of(m["id"]), consistent_read=True))
    assert len(written) == 1, f"{len(written)} packs for 3 checks of one bucket and minute"


def test_an_urgent_result_stays_urgent_after_a_failed_write(api, alice, target, make_handler, monkeypatch):
    """A first failure's pack is written within URGENT_FLUSH_S; its write is throttled once (botocore's retries
    spent).  _put_back() returns the results but not their urgency (nor their age): the outage waits another
    PACK_FLUSH_S — here until the message's last check, 8 s on — before the incident handler can see it."""
    failing, fine = failing_and_fine(api, target)
    original = botocore.client.BaseClient._make_api_call
    writes: list[tuple[float, bool]] = []

    def throttled_once(self: Any, operation: str, params: dict[str, Any]) -> Any:
        if operation == "BatchWriteItem":
            if not writes:
                writes.append((time.monotonic(), False))
                raise ClientError(
                    {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, operation
                )
            writes.append((time.monotonic(), True))
        return original(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", throttled_once)
    base = one_minute_base(10)
    jobs = [job(failing, slot=base), job(fine, slot=base + timedelta(seconds=8))]

    with pytest.raises(BatchProcessingError):  # the message fails (a write failed): redelivered, as it must
        invoke(make_handler, [record(jobs)])

    assert [r.ok for r in results(failing["id"])] == [False]
    failed_at, retried_at = writes[0][0], writes[1][0]
    assert retried_at - failed_at < 5, f"the outage's result was rewritten {retried_at - failed_at:.1f} s later"


def cpu_recorded(region: str, at: datetime) -> tuple[float, int] | None:
    from chalicelib.monitors import workload
    from chalicelib.monitors.models import ProgressModel

    try:
        item = ProgressModel.get(workload.cpu_name(region, at), consistent_read=True)
    except ProgressModel.DoesNotExist:
        return None
    return float(item.cpu_ms or 0), int(item.checks or 0)


def test_a_message_ahead_of_its_minute_adds_its_measured_cpu_to_its_regions_hour(api, alice, target, make_handler):
    """What the scheduler sizes the worker from (scheduler.sizing): the CPU the message's threads spent, and its
    checks; the local stack's worker reports it scaled (cpu_scale) as the deployed arm64 worker would spend it."""
    target.expect_request("/ok").respond_with_data("fine")
    monitors = [create(api, target.url_for("/ok"), regions=["us-east-1", "eu-west-1"]) for _ in range(3)]
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    assert invoke(make_handler, [record([job(m, slot=soon) for m in monitors])]) == {"batchItemFailures": []}
    cpu_ms, checks = cpu_recorded("us-east-1", soon)
    assert checks == 3
    assert 0 < cpu_ms < 3 * 1000  # milliseconds of its own threads, not the whole process's
    assert cpu_recorded("eu-west-1", soon) is None

    later = soon + timedelta(seconds=2)
    again = record([job(m, "eu-west-1", slot=later) for m in monitors], region="eu-west-1")
    scaled = make_handler("eu-west-1", cpu_scale=1000.0)
    scaled(lambda_event([again]), lambda_context("checker-eu-west-1", "eu-west-1"))
    cpu_eu, checks_eu = cpu_recorded("eu-west-1", later)
    assert checks_eu == 3
    assert cpu_eu > cpu_ms  # scaled by a thousand: a check's CPU is far over a microsecond


def test_a_forced_or_redelivered_message_adds_no_cpu(api, alice, target, make_handler):
    """Their checks start together, late: not the minute's pace the worker is sized for."""
    target.expect_request("/ok").respond_with_data("fine")
    monitor = create(api, target.url_for("/ok"), regions=["us-east-1"])
    now = datetime.now(UTC)
    assert invoke(make_handler, [record([job(monitor)])]) == {"batchItemFailures": []}  # planned a second ago
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    assert invoke(make_handler, [record([job(monitor, slot=soon)], receive_count=2)]) == {"batchItemFailures": []}
    assert cpu_recorded("us-east-1", now) is None
    assert cpu_recorded("us-east-1", soon) is None
    assert len(results(monitor["id"])) == 2


def test_the_cpu_is_counted_over_the_checks_that_were_answered(api, alice, target, make_handler):
    """A check that fails before its target answers (refused, no address, blocked) costs little CPU: counted in,
    a tenant's dead targets would lower the figure the lanes are cut for until they answer again."""
    target.expect_request("/ok").respond_with_data("fine")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused = f"http://127.0.0.1:{closed.getsockname()[1]}/"  # bound, never listening: refused
    answered = [create(api, target.url_for("/ok"), regions=["us-east-1"]) for _ in range(2)]
    dead = create(api, refused, regions=["us-east-1"])
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    try:
        assert invoke(make_handler, [record([job(m, slot=soon) for m in [*answered, dead]])]) == {
            "batchItemFailures": []
        }
    finally:
        closed.close()
    assert [r.ok for r in results(dead["id"])] == [False]
    assert cpu_recorded("us-east-1", soon)[1] == 2


@contextlib.contextmanager
def not_tls() -> Iterator[str]:
    """An https URL whose server takes connections and answers the handshake with plain text: a TLS failure, as an
    expired or untrusted certificate is, after the connection was made."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    serving = threading.Thread(target=serve, daemon=True)
    serving.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        stop.set()
        serving.join()
        listener.close()


def test_a_check_whose_tls_handshake_failed_was_answered(api, alice, target, make_handler):
    """A TLS failure (an expired or untrusted certificate, a server that speaks no TLS) comes after a connection and
    a handshake, the dearest part of a check: left out of the checks while its CPU is counted, the figure the lanes
    are cut for grew with every such target (fresh-eyes review)."""
    target.expect_request("/ok").respond_with_data("fine")
    fine = create(api, target.url_for("/ok"), regions=["us-east-1"])
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    with not_tls() as url:
        broken = create(api, url, regions=["us-east-1"])
        assert invoke(make_handler, [record([job(m, slot=soon) for m in (fine, broken)])]) == {"batchItemFailures": []}
    [result] = results(broken["id"])
    assert (result.ok, result.status_code, result.error) == (False, None, "tls_error")
    assert cpu_recorded("us-east-1", soon)[1] == 2


def test_a_deployed_worker_alone_in_its_process_counts_all_of_its_cpu(api, alice, target, make_handler, monkeypatch):
    """In Lambda (one message an invocation) the message's CPU is the process's: its DNS lookups' threads too,
    which its own sections do not cover.  A thread spinning beside it stands for them here."""
    target.expect_request("/ok").respond_with_data("fine")
    monitor = create(api, target.url_for("/ok"), regions=["us-east-1"])
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "test-checker")
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        assert invoke(make_handler, [record([job(monitor, slot=soon)])]) == {"batchItemFailures": []}
    finally:
        stop.set()
        spinner.join()
    cpu_ms, checks = cpu_recorded("us-east-1", soon)
    assert checks == 1
    assert cpu_ms > 300  # the spinning thread's share of the seconds the message waited for its start


def test_the_messages_of_a_batch_of_several_record_no_cpu(api, alice, target, make_handler):
    """They share the invocation's check threads: each message counted a shared thread's whole CPU, the batch's
    checks' CPU once per message (fresh-eyes review).  Deployed and locally a batch holds one message."""
    target.expect_request("/ok").respond_with_data("fine")
    monitors = [create(api, target.url_for("/ok"), regions=["us-east-1"]) for _ in range(4)]
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    batch = [record([job(m, slot=soon) for m in monitors[:2]]), record([job(m, slot=soon) for m in monitors[2:]])]
    assert invoke(make_handler, batch) == {"batchItemFailures": []}
    assert all(len(results(m["id"])) == 1 for m in monitors)
    assert cpu_recorded("us-east-1", soon) is None
