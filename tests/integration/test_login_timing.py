"""Unknown email and wrong password take similar time (no account enumeration by stopwatch)."""

from __future__ import annotations

import statistics
import time

import pytest

from tests.support import make_test_settings, register


@pytest.fixture
def settings():
    # A real bcrypt cost makes the difference measurable: at cost 4 everything is noise.
    return make_test_settings(BCRYPT_ROUNDS="10", LOGIN_FAILURES_PER_ACCOUNT="100", LOGIN_FAILURES_PER_IP="100")


def _median_ms(api, email: str) -> float:
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        r = api.post("/v1/auth/login", {"email": email, "password": "wrong password 123"})
        samples.append((time.perf_counter() - started) * 1000)
        assert r.status == 401
    return statistics.median(samples)


def test_unknown_email_costs_about_as_much_as_a_wrong_password(api):
    register(api, "alice@example.com")
    _median_ms(api, "warmup@example.com")
    known = _median_ms(api, "alice@example.com")
    unknown = _median_ms(api, "nobody@example.com")
    assert unknown > 0.6 * known, (known, unknown)
    assert unknown < 1.6 * known, (known, unknown)
