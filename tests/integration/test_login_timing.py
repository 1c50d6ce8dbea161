"""Unknown email and wrong password take similar time (no account enumeration by stopwatch)."""

from __future__ import annotations

import statistics
import time

import bcrypt
import pytest

from tests.support import PASSWORD, make_test_settings, register

ROUNDS = 10  # a real bcrypt cost makes the difference measurable: at cost 4 everything is noise


@pytest.fixture
def settings():
    return make_test_settings(
        BCRYPT_ROUNDS=str(ROUNDS),
        LOGIN_FAILURES_BEFORE_BACKOFF="100",
        LOGIN_FAILURES_PER_ACCOUNT="100",
        LOGIN_FAILURES_PER_IP="100",
    )


def _median_ms(api, email: str) -> float:
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        r = api.post("/v1/auth/login", {"email": email, "password": "wrong password 123"})
        samples.append((time.perf_counter() - started) * 1000)
        assert r.status == 401, r.body
        assert r.json["code"] == "invalid_credentials"
    return statistics.median(samples)


def _bcrypt_ms() -> float:
    """What one check of a password against a hash of this cost takes on this machine, alone."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(ROUNDS))
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        bcrypt.checkpw(b"wrong password 123", hashed)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def test_unknown_email_costs_about_as_much_as_a_wrong_password(api):
    register(api, "alice@example.com")
    signed_in = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD})
    assert signed_in.status == 200, signed_in.body  # the known address really is an account: its path is bcrypt's
    _median_ms(api, "warmup@example.com")
    known = _median_ms(api, "alice@example.com")
    unknown = _median_ms(api, "nobody@example.com")
    bcrypt_ms = _bcrypt_ms()

    assert min(known, unknown) > 0.5 * bcrypt_ms, (known, unknown, bcrypt_ms)  # both paths pay for a hash check
    assert unknown > 0.6 * known, (known, unknown)
    assert unknown < 1.6 * known, (known, unknown)
