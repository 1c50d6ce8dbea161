"""The worker's marking rules (``checks.marking``): which results the incident handler must see."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.checks.marking import UNKNOWN, Watch, matters, urgent
from chalicelib.checks.model import CheckResult
from tests.factories import check_result

AT = datetime(2026, 12, 6, 12, 0, 30, tzinfo=UTC)
STEADY = Watch(status="up", steady_regions=frozenset({"us-east-1", "eu-west-1"}), ssl_expiry_alert_days=14, known=True)


def check(ok: bool = True, region: str = "us-east-1", **fields) -> CheckResult:
    return check_result(
        AT, ok, region, **{"response_time_ms": 80.0, "ssl_expires_at": AT + timedelta(days=60), **fields}
    )


@pytest.mark.parametrize(
    ("case", "result", "watch", "marked"),
    [
        ("an up check of a steady monitor", check(), STEADY, False),
        ("a failure", check(ok=False), STEADY, True),
        ("a slow check", check(degraded=True), STEADY, True),
        ("a region not steady (a failure counted, or down)", check(region="ap-southeast-1"), STEADY, True),
        ("a monitor pending", check(), replace(STEADY, status="pending"), True),
        ("a monitor down", check(), replace(STEADY, status="down"), True),
        ("a monitor degraded", check(), replace(STEADY, status="degraded"), True),
        ("a monitor in maintenance (its window may have ended)", check(), replace(STEADY, status="maintenance"), True),
        (
            "a check inside a maintenance window",
            check(),
            replace(STEADY, maintenance=((AT - timedelta(minutes=1), AT + timedelta(hours=1)),)),
            True,
        ),
        (
            "a window that ended at the check's start",
            check(),
            replace(STEADY, maintenance=((AT - timedelta(hours=1), AT),)),
            False,
        ),
        (
            "a window still to come",
            check(),
            replace(STEADY, maintenance=((AT + timedelta(seconds=1), AT + timedelta(hours=1)),)),
            False,
        ),
        ("a certificate expiring within the alert days", check(ssl_expires_at=AT + timedelta(days=13)), STEADY, True),
        ("a certificate expiring later", check(ssl_expires_at=AT + timedelta(days=15)), STEADY, False),
        (
            "certificate alerts turned off",
            check(ssl_expires_at=AT + timedelta(days=1)),
            replace(STEADY, ssl_expiry_alert_days=0),
            False,
        ),
        ("nothing known of the monitor", check(), UNKNOWN, True),
    ],
)
def test_a_result_is_marked_when_it_can_change_something(case, result, watch, marked) -> None:
    assert matters(result, watch) is marked, case


@pytest.mark.parametrize(
    ("case", "result", "watch", "is_urgent"),
    [
        ("an up check of a steady monitor", check(), STEADY, False),
        ("a first failure of a monitor up", check(ok=False), STEADY, True),
        ("a failure of a region already counting failures", check(ok=False, region="ap-southeast-1"), STEADY, True),
        (
            "one more failure of a region down below the quorum (the monitor up)",
            check(ok=False, region="ap-southeast-1"),
            replace(STEADY, down_regions=frozenset({"ap-southeast-1"})),
            False,
        ),
        ("a failure of a monitor degraded (it may go down)", check(ok=False), replace(STEADY, status="degraded"), True),
        ("a failure of a monitor pending", check(ok=False), replace(STEADY, status="pending"), True),
        ("one more failure of a monitor down", check(ok=False), replace(STEADY, status="down"), False),
        (
            "a failure inside a window",
            check(ok=False),
            replace(STEADY, status="maintenance", maintenance=((AT - timedelta(minutes=1), AT + timedelta(hours=1)),)),
            False,
        ),
        ("any result once the window is over", check(), replace(STEADY, status="maintenance"), True),
        ("a failure once the window is over", check(ok=False), replace(STEADY, status="maintenance"), True),
        ("a slow check of a monitor up", check(degraded=True), STEADY, True),
        ("a slow check of a monitor degraded", check(degraded=True), replace(STEADY, status="degraded"), False),
        ("a slow recovery of a monitor down", check(degraded=True), replace(STEADY, status="down"), True),
        ("a clean check of a monitor down (a recovery)", check(), replace(STEADY, status="down"), True),
        ("a clean check of a monitor degraded", check(), replace(STEADY, status="degraded"), True),
        ("a clean check of a region not steady", check(region="ap-southeast-1"), STEADY, True),
        (
            "a clean check inside a maintenance window",
            check(),
            replace(STEADY, maintenance=((AT - timedelta(minutes=1), AT + timedelta(hours=1)),)),
            False,
        ),
        ("a certificate expiring within the alert days", check(ssl_expires_at=AT + timedelta(days=1)), STEADY, False),
        ("a failure of a monitor not read", check(ok=False), UNKNOWN, True),
        ("a clean check of a monitor not read", check(), UNKNOWN, False),
    ],
)
def test_a_result_is_urgent_when_it_can_move_the_status_now(case, result, watch, is_urgent) -> None:
    assert urgent(result, watch) is is_urgent, case
    if is_urgent:
        assert matters(result, watch), "an urgent result is marked"
