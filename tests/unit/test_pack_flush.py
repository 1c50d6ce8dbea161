"""When the check worker writes its packs (issue 13): late enough to fill them, soon enough that a check is listed
within a minute of running."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.checks.jobs import Job
from chalicelib.checks.marking import URGENT_FLUSH_S
from chalicelib.checks.model import CheckResult, CheckSpec
from chalicelib.monitors import packs
from functions.checker import worker as worker_module
from functions.checker.worker import PACK_FLUSH_S, Worker, _Packer
from tests.factories import check_result

SLOT = datetime(2026, 12, 7, 12, 0, 5, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(worker_module.time, "monotonic", fake)
    return fake


def check(monitor: str, second: int) -> tuple[Job, CheckResult]:
    slot = SLOT.replace(second=second)
    job = Job("team", monitor, "us-east-1", slot, CheckSpec(url="https://example.invalid/"))
    result = check_result(slot)
    return job, result


def same_bucket() -> tuple[str, str]:
    first = "mon_a"
    second = next(f"mon_{n}" for n in range(1000) if packs.bucket_of(f"mon_{n}") == packs.bucket_of(first))
    return first, second


def test_a_minutes_checks_fill_few_packs_and_each_is_written_within_a_minute(clock: Clock) -> None:
    """A message's checks start over its minute.  The first check's pack waits PACK_FLUSH_S — long enough that a
    minute's checks of a bucket make two packs, not one every 15 s paying a write unit each (issue 13: the packs
    were $0.034 of the $0.30 per million) — and no longer than a minute, less the write: the results API lists a
    check within a minute of running (issue 13's contract)."""
    packer = _Packer(Worker.for_invocation("us-east-1", allow_private=True, remaining_s=120), "m.1")
    assert 30 <= PACK_FLUSH_S <= 45
    first, second = same_bucket()
    packer.add(*check(first, 5), marked=False)
    assert packer.until_due() == PACK_FLUSH_S
    clock.now += PACK_FLUSH_S - 1
    packer.add(*check(second, 44), marked=False)
    assert not packer.due()
    clock.now += 1
    assert packer.due()
    taken = packer._take(everything=False)
    assert [len(results) for _, results, _, _ in taken] == [2]  # both checks, in one pack


def test_an_urgent_result_is_written_within_a_second_however_long_the_others_wait(clock: Clock) -> None:
    packer = _Packer(Worker.for_invocation("us-east-1", allow_private=True, remaining_s=120), "m.1")
    packer.add(*check("mon_a", 5), marked=False)
    clock.now += 10
    assert packer.add(*check("mon_b", 15), marked=True, urgent=True)
    assert packer.until_due() == URGENT_FLUSH_S
    clock.now += URGENT_FLUSH_S
    [(_, results, _, _)] = packer._take(everything=False)
    assert [p.monitor_id for p in results] == ["mon_b"]  # the urgent pack alone; the other keeps filling
