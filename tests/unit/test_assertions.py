"""Assertions as a table: every source and every comparison, on one observed response."""

from __future__ import annotations

import json
import re

import pytest

from chalicelib.checks.assertions import Observed, evaluate, validate_assertion
from chalicelib.checks.http import status_matches
from chalicelib.checks.model import Assertion

BODY = {
    "status": "ok",
    "count": 3,
    "ratio": 0.25,
    "version": "10",
    "live": True,
    "nothing": None,
    "blank": "",
    "tags": ["eu", "prod"],
    "items": [{"id": 1, "ok": True}, {"id": 2, "ok": False}],
    "meta": {"region": "eu-west-1"},
}

OBSERVED = Observed(
    status_code=200,
    response_time_ms=123.4,
    headers={"content-type": "application/json", "x-version": "2.5.1", "x-empty": "", "x-count": "42"},
    body=json.dumps(BODY).encode(),
    ssl_expiry_days=29.6,
)


def a(source: str, comparison: str, target: str = "", prop: str | None = None) -> Assertion:
    return Assertion(source=source, comparison=comparison, target=target, property=prop)


HOLDS = [
    a("status_code", "equals", "200"),
    a("status_code", "equals", "200.0"),
    a("status_code", "not_equals", "500"),
    a("status_code", "greater_than", "199"),
    a("status_code", "less_than", "300"),
    a("status_code", "contains", "20"),
    a("status_code", "not_contains", "5"),
    a("status_code", "not_empty"),
    a("response_time", "less_than", "500"),
    a("response_time", "greater_than", "100"),
    a("response_time", "not_equals", "0"),
    a("response_time", "equals", "123.4"),
    a("header", "equals", "2.5.1", "X-Version"),
    a("header", "contains", "json", "Content-Type"),
    a("header", "not_contains", "xml", "content-type"),
    a("header", "not_equals", "2.5.0", "x-version"),
    a("header", "greater_than", "40", "X-Count"),  # numerically: 42 > 40
    a("header", "less_than", "9", "X-Version"),  # "2.5.1" is not a number: compared as text
    a("header", "is_empty", "", "X-Empty"),
    a("header", "is_empty", "", "X-Absent"),
    a("header", "not_empty", "", "X-Version"),
    a("header", "not_equals", "anything", "X-Absent"),
    a("body", "contains", '"status": "ok"'),
    a("body", "not_contains", "error"),
    a("body", "not_empty"),
    a("json_body", "equals", "ok", "$.status"),
    a("json_body", "not_equals", "degraded", "$.status"),
    a("json_body", "equals", "3", "$.count"),
    a("json_body", "equals", "3.0", "$.count"),
    a("json_body", "greater_than", "2", "$.count"),
    a("json_body", "less_than", "0.5", "$.ratio"),
    a("json_body", "greater_than", "9", "$.version"),  # "10" and "9" both parse: numeric, not text order
    a("json_body", "equals", "true", "$.live"),
    a("json_body", "equals", "null", "$.nothing"),
    a("json_body", "is_empty", "", "$.nothing"),
    a("json_body", "is_empty", "", "$.blank"),
    a("json_body", "is_empty", "", "$.missing"),
    a("json_body", "not_empty", "", "$.tags"),
    a("json_body", "contains", "prod", "$.tags"),
    a("json_body", "not_contains", "staging", "$.tags"),
    a("json_body", "contains", "region", "$.meta"),
    a("json_body", "contains", "west", "$.meta.region"),
    a("json_body", "equals", "1", "$.items[0].id"),
    a("json_body", "contains", "2", "$.items[*].id"),
    a("json_body", "equals", "2", "$.items[?@.ok == false].id"),
    a("json_body", "equals", "eu-west-1", '$["meta"]["region"]'),
    a("ssl_expiry_days", "greater_than", "14"),
    a("ssl_expiry_days", "less_than", "30"),
    a("ssl_expiry_days", "not_empty"),
]

FAILS = [
    (a("status_code", "equals", "201"), "status_code equals '201' (got 200)"),
    (a("status_code", "greater_than", "200"), "status_code greater_than '200' (got 200)"),
    (a("status_code", "is_empty"), "status_code is_empty (got 200)"),
    (a("response_time", "less_than", "100"), "response_time less_than '100' (got 123.4)"),
    (a("header", "equals", "2.5.0", "X-Version"), "header X-Version equals '2.5.0' (got '2.5.1')"),
    (a("header", "less_than", "9", "X-Count"), "header X-Count less_than '9' (got '42')"),  # numerically
    (a("header", "equals", "1", "X-Absent"), "header X-Absent equals '1' (got no such header)"),
    (a("header", "not_empty", "", "X-Empty"), "header X-Empty not_empty (got '')"),
    (a("body", "contains", "SECRET-TOKEN"), f"body contains 'SECRET-TOKEN' (got a {len(OBSERVED.body)}-byte body)"),
    (a("body", "is_empty"), f"body is_empty (got a {len(OBSERVED.body)}-byte body)"),
    (a("json_body", "equals", "degraded", "$.status"), "json_body $.status equals 'degraded' (got 'ok')"),
    (a("json_body", "equals", "ok", "$.missing"), "json_body $.missing equals 'ok' (got no match)"),
    (a("json_body", "less_than", "3", "$.count"), "json_body $.count less_than '3' (got '3')"),
    (a("json_body", "contains", "staging", "$.tags"), "json_body $.tags contains 'staging' (got '[\"eu\",\"prod\"]')"),
    (a("json_body", "not_empty", "", "$.nothing"), "json_body $.nothing not_empty (got 'null')"),
    (a("ssl_expiry_days", "greater_than", "30"), "ssl_expiry_days greater_than '30' (got 29.6)"),
]


@pytest.mark.parametrize("assertion", HOLDS, ids=lambda x: f"{x.source}-{x.comparison}-{x.property}-{x.target}")
def test_it_holds(assertion: Assertion) -> None:
    validate_assertion(assertion)
    assert evaluate([assertion], OBSERVED) == ()


@pytest.mark.parametrize(("assertion", "message"), FAILS, ids=lambda x: getattr(x, "source", ""))
def test_it_fails_with_a_readable_message(assertion: Assertion, message: str) -> None:
    validate_assertion(assertion)
    assert evaluate([assertion], OBSERVED) == (message,)


def test_every_source_and_comparison_is_exercised() -> None:
    exercised = {(x.source, x.comparison) for x in HOLDS} | {(x.source, x.comparison) for x, _ in FAILS}
    assert {s for s, _ in exercised} == {
        "status_code",
        "response_time",
        "header",
        "body",
        "json_body",
        "ssl_expiry_days",
    }
    assert {c for _, c in exercised} == {
        "equals",
        "not_equals",
        "greater_than",
        "less_than",
        "contains",
        "not_contains",
        "is_empty",
        "not_empty",
    }


def test_json_assertions_on_a_body_that_is_not_json() -> None:
    observed = Observed(status_code=200, response_time_ms=1.0, headers={}, body=b"<html>not json</html>")
    failures = evaluate([a("json_body", "equals", "ok", "$.status"), a("json_body", "is_empty", "", "$.x")], observed)
    assert failures == ("json_body $.status equals 'ok' (got a body that is not JSON)",)


def test_a_deeply_nested_body_is_not_json_rather_than_a_crash() -> None:
    observed = Observed(status_code=200, response_time_ms=1.0, headers={}, body=b"[" * 200_000 + b"]" * 200_000)
    assert evaluate([a("json_body", "not_empty", "", "$[0]")], observed) == (
        "json_body $[0] not_empty (got a body that is not JSON)",
    )


def test_ssl_expiry_without_a_certificate() -> None:
    observed = Observed(status_code=200, response_time_ms=1.0, headers={}, body=b"")
    assert evaluate([a("ssl_expiry_days", "greater_than", "14")], observed) == (
        "ssl_expiry_days greater_than '14' (got no certificate)",
    )


def test_the_body_is_decoded_with_its_charset() -> None:
    observed = Observed(
        status_code=200, response_time_ms=1.0, headers={}, body="Grüße".encode("latin-1"), charset="latin-1"
    )
    assert evaluate([a("body", "contains", "Grüße")], observed) == ()


def test_a_long_value_is_shortened_in_the_message() -> None:
    observed = Observed(status_code=200, response_time_ms=1.0, headers={"x": "v" * 500}, body=b"")
    (failure,) = evaluate([a("header", "equals", "w", "x")], observed)
    assert len(failure) < 120
    assert failure.endswith("…')")


@pytest.mark.parametrize(
    ("assertion", "message"),
    [
        (a("cookie", "equals", "1"), "source must be one of"),
        (a("status_code", "matches", "1"), "comparison must be one of"),
        (a("header", "equals", "1"), "needs a property (a header name)"),
        (a("header", "equals", "1", "Bad Header"), "is not a valid header name"),
        (a("json_body", "equals", "1"), "needs a property (a JSONPath"),
        (a("json_body", "equals", "1", "status"), "is not a valid JSONPath"),
        (a("json_body", "equals", "1", "$["), "is not a valid JSONPath"),
        (a("status_code", "equals", "1", "$.x"), "takes no property"),
        (a("body", "greater_than", ""), "greater_than needs a target"),
        (a("status_code", "equals", "ok"), "must be a number"),
        (a("response_time", "less_than", "fast"), "must be a number"),
    ],
)
def test_it_refuses_an_assertion_it_cannot_evaluate(assertion: Assertion, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_assertion(assertion)


@pytest.mark.parametrize(
    ("status", "expected", "matches"),
    [
        (200, ("2xx",), True),
        (204, ("2XX",), True),
        (301, ("2xx",), False),
        (301, ("3xx",), True),
        (404, ("200", "404"), True),
        (503, ("2xx", "500"), False),
        (200, ("201",), False),
    ],
)
def test_expected_status_codes_and_classes(status: int, expected: tuple[str, ...], matches: bool) -> None:
    assert status_matches(status, expected) is matches
