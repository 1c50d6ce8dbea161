"""The check-job messages: how a region's jobs are split into SQS messages, and that a message reads back whole."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.checks import jobs
from chalicelib.checks.jobs import MAX_JOBS_PER_MESSAGE, MAX_MESSAGE_BYTES, Job, decode_message, pack
from chalicelib.checks.marking import Watch
from chalicelib.checks.model import CheckSpec, TcpSpec

TICK = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def make_jobs(count: int, body: str | None = None) -> list[Job]:
    spec = CheckSpec(url="https://shop.example.com/health", method="POST" if body else "GET", body=body)
    slots = [TICK + timedelta(seconds=5 + i % 55) for i in range(count)]
    return [Job("team_1", f"mon_{i:06d}", "eu-west-1", slot, spec) for i, slot in enumerate(slots)]


def counts(bodies: list[str]) -> list[int]:
    return [len(decode_message(body)) for body in bodies]


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, []),
        (1, [1]),
        (MAX_JOBS_PER_MESSAGE, [MAX_JOBS_PER_MESSAGE]),
        (MAX_JOBS_PER_MESSAGE + 1, [1001, 1000]),  # two messages of equal counts, not a full one and a straggler
        (3 * MAX_JOBS_PER_MESSAGE + 2, [1501, 1501, 1500, 1500]),
    ],
)
def test_a_message_holds_at_most_the_jobs_one_invocation_is_sized_for_split_evenly(count, expected):
    bodies = pack(make_jobs(count))

    assert counts(bodies) == expected
    sent = [[Job.from_json(raw) for raw in decode_message(body)] for body in bodies]
    assert sorted(j.monitor_id for body in sent for j in body) == sorted(j.monitor_id for j in make_jobs(count))
    for body in sent:  # each in start order, dealt from the whole list: every message spans the minute alike
        assert [j.start for j in body] == sorted(j.start for j in body)
        if len(bodies) > 1:
            assert body[0].start - TICK < timedelta(seconds=6)
            assert body[-1].start - TICK > timedelta(seconds=58)


def test_jobs_too_big_for_one_message_are_halved_until_each_fits():
    # Random bodies do not compress: ~60 KB a job, so 20 of them cannot travel together under 1 MB.
    big = make_jobs(20, body=secrets.token_urlsafe(45_000))

    bodies = pack(big)

    assert counts(bodies) == [10, 10]
    assert all(262_144 < len(body) <= MAX_MESSAGE_BYTES for body in bodies)  # over SQS's old 256 KiB limit


def test_the_limits_fit_sqs():
    assert MAX_MESSAGE_BYTES < jobs.SQS_MAX_MESSAGE_BYTES == 1_048_576
    assert MAX_JOBS_PER_MESSAGE == 2000


WATCH = Watch(
    status="up",
    steady_regions=frozenset({"eu-west-1", "us-east-1"}),
    down_regions=frozenset(),
    regions=frozenset({"eu-west-1", "us-east-1", "ap-southeast-1"}),  # ap counts failures: a quorum may form
    maintenance=((TICK + timedelta(hours=1), TICK + timedelta(hours=2)),),
    ssl_expiry_alert_days=14,
    known=True,
)


def test_a_jobs_watch_and_when_it_was_read_travel_together():
    [job] = make_jobs(1)
    watched = replace(job, watch=WATCH, watched_at=TICK)

    [raw] = decode_message(pack([watched])[0])

    assert Job.from_json(raw) == watched
    assert Job.from_json(job.to_json()) == job  # no watch: none travels


@pytest.mark.parametrize(
    "broken",
    [
        lambda raw: {k: v for k, v in raw.items() if k != "watched_at"},  # a watch never re-read: not trusted
        lambda raw: {k: v for k, v in raw.items() if k != "watch"},
        lambda raw: {**raw, "watched_at": "2026-12-06T12:00:00"},  # no time zone
        lambda raw: {**raw, "watch": {**raw["watch"], "maintenance": [["2026-12-06T13:00:00", "2026-12-06T14:00"]]}},
        lambda raw: {**raw, "watch": {**raw["watch"], "steady": "us-east-1"}},  # a string, not a list
        lambda raw: {**raw, "watch": {k: v for k, v in raw["watch"].items() if k != "status"}},
    ],
)
def test_a_watch_the_scheduler_would_not_have_written_makes_its_job_unparseable(broken):
    [job] = make_jobs(1)
    raw = replace(job, watch=WATCH, watched_at=TICK).to_json()

    with pytest.raises((ValueError, TypeError, KeyError)):
        Job.from_json(broken(raw))


def test_a_tcp_job_travels_with_its_type_and_an_http_job_as_before_types():
    tcp = Job("team_1", "mon_1", "eu-west-1", TICK, TcpSpec(host="db.example.com", port=5432, tls=True))
    http = make_jobs(1)[0]

    [tcp_json, http_json] = decode_message(pack([tcp, http])[0])

    assert tcp_json["type"] == "tcp"
    assert tcp_json["spec"] == {
        "host": "db.example.com",
        "port": 5432,
        "tls": True,
        "verify_ssl": True,
        "timeout_ms": 10000,
        "degraded_after_ms": None,
        "connect_timeout_ms": 5000,
    }
    assert "type" not in http_json  # an older worker reads it as it always did
    assert Job.from_json(tcp_json) == tcp
    assert Job.from_json(http_json) == http


@pytest.mark.parametrize(
    "change",
    [
        {"type": "dns"},  # a kind this worker does not know (a newer scheduler's)
        {"type": "tcp", "spec": {"url": "https://x.test/"}},  # an HTTP spec under the TCP type
        {"type": "tcp", "spec": {"host": "db.example.com", "port": 70000}},
        {"type": "tcp", "spec": {"host": "db.example.com", "port": "5432"}},
        {"type": "tcp", "spec": {"host": "db.example.com", "port": True}},
        {"type": "tcp", "spec": {"host": 123, "port": 5432}},
        {"type": "tcp", "spec": {"host": None, "port": 5432}},
        {"type": "tcp", "spec": {"host": "", "port": 5432}},
        {"type": "tcp", "spec": {"host": "db.example.com", "port": 5432, "timeout_ms": "10"}},
        {"type": "tcp", "spec": {"host": "db.example.com", "port": 5432, "tls": "yes"}},
        {"type": "tcp", "spec": {"host": "db.example.com", "port": 5432, "degraded_after_ms": 1.5}},
        {"spec": {"url": 123}},
        {"spec": {"url": "https://x.test/", "timeout_ms": "1000"}},
        {"spec": {"url": "https://x.test/", "timeout_ms": 0}},
        {"spec": {"url": "https://x.test/", "follow_redirects": "no"}},
        {"spec": {"url": "https://x.test/", "assertions": [{"source": 1, "comparison": "equals"}]}},
    ],
)
def test_a_job_of_an_unknown_or_broken_kind_is_unparseable(change):
    raw = make_jobs(1)[0].to_json() | change

    with pytest.raises((TypeError, ValueError)):
        Job.from_json(raw)
