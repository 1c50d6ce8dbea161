"""The waits of progressive backoff, as a table: free failures, then 1 s doubling up to the cap."""

from __future__ import annotations

import pytest

from chalicelib.ratelimit.backoff import Policy, wait_after

POLICY = Policy(free=5, cap=900, memory=86400)


@pytest.mark.parametrize(
    ("failures", "wait"),
    [(0, 0), (4, 0), (5, 1), (6, 2), (7, 4), (14, 512), (15, 900), (16, 900), (10_000, 900)],
)
def test_it_waits_nothing_while_failures_are_free_then_doubles_up_to_the_cap(failures: int, wait: int) -> None:
    assert wait_after(failures, POLICY) == wait
