"""Assertions on a response: pure functions from what was observed to a list of failures.

Values compare as numbers when both sides parse as finite numbers, as strings
otherwise.  ``json_body`` selects with an RFC 9535 JSONPath (python-jsonpath in
strict mode, its ``match()`` and ``search()`` on RE2: see :mod:`iregexp`); a path
that matches several nodes yields their list.  A failure reads like
``json_body $.status equals 'ok' (got 'degraded')``; it never quotes the raw body.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jsonpath

from chalicelib.checks import iregexp
from chalicelib.checks.model import COMPARISONS, SOURCES, SOURCES_WITH_PROPERTY, Assertion

NUMERIC_SOURCES = ("status_code", "response_time", "ssl_expiry_days")
NEEDS_TARGET = ("equals", "not_equals", "greater_than", "less_than", "contains", "not_contains")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
MAX_SHOWN = 64  # characters of an observed value quoted in a failure

_JSONPATH = iregexp.Environment(strict=True)


class _Missing:
    def __repr__(self) -> str:
        return "nothing"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Observed:
    """What the checker saw: the inputs of every assertion."""

    status_code: int
    response_time_ms: float
    headers: Mapping[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    charset: str = "utf-8"
    ssl_expiry_days: float | None = None


def validate_assertion(assertion: Assertion) -> None:
    """Raise ValueError with a user-facing message if ``assertion`` cannot be evaluated."""
    a = assertion
    if a.source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}")
    if a.comparison not in COMPARISONS:
        raise ValueError(f"comparison must be one of {', '.join(COMPARISONS)}")
    if a.source in SOURCES_WITH_PROPERTY:
        if not a.property:
            raise ValueError(f"a {a.source} assertion needs a property ({_property_kind(a.source)})")
        if a.source == "header" and not HEADER_NAME.match(a.property):
            raise ValueError(f"{a.property!r} is not a valid header name")
        if a.source == "json_body":
            compile_jsonpath(a.property)
    elif a.property:
        raise ValueError(f"a {a.source} assertion takes no property")
    if a.comparison in ("greater_than", "less_than") and not a.target:
        raise ValueError(f"{a.comparison} needs a target")
    ordered = a.comparison in ("equals", "not_equals", "greater_than", "less_than")
    if a.source in NUMERIC_SOURCES and ordered and _number(a.target) is None:
        raise ValueError(f"the target of a {a.source} assertion must be a number")


def _property_kind(source: str) -> str:
    return "a header name" if source == "header" else "a JSONPath such as $.status"


@lru_cache(maxsize=1024)
def compile_jsonpath(path: str) -> Any:
    """A compiled RFC 9535 JSONPath; ValueError with the parser's first line if it is not one."""
    try:
        return _JSONPATH.compile(path)
    except (OverflowError, RecursionError):  # a number like 1e400, or brackets nested past the parser's depth
        raise ValueError(f"{path!r} is not a valid JSONPath: a number or nesting out of range") from None
    except jsonpath.JSONPathError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise ValueError(f"{path!r} is not a valid JSONPath: {first_line}") from None


def evaluate(assertions: Sequence[Assertion], observed: Observed) -> tuple[str, ...]:
    """Every failed assertion, described; an empty tuple when all hold."""
    failures: list[str] = []
    parsed: list[Any] = []  # the body parsed as JSON, once, by the first json_body assertion
    with iregexp.budget():
        for assertion in assertions:
            actual = _actual(assertion, observed, parsed)
            if isinstance(actual, _Unevaluated) or not _holds(assertion.comparison, actual, assertion.target):
                failures.append(_describe(assertion, actual, observed))
    return tuple(failures)


def _actual(a: Assertion, observed: Observed, parsed: list[Any]) -> Any:
    if a.source == "status_code":
        return observed.status_code
    if a.source == "response_time":
        return round(observed.response_time_ms, 1)
    if a.source == "ssl_expiry_days":
        return MISSING if observed.ssl_expiry_days is None else round(observed.ssl_expiry_days, 1)
    if a.source == "header":
        return observed.headers.get((a.property or "").lower(), MISSING)
    if a.source == "body":
        return observed.body.decode(observed.charset, "replace")
    if a.source == "json_body":
        if not parsed:
            parsed.append(_parse_json(observed.body))
        document = parsed[0]
        if document is _NOT_JSON:
            return _NOT_JSON
        try:
            matches = compile_jsonpath(a.property or "").findall(document)
        except ValueError:
            return MISSING
        except iregexp.TooCostly as exc:  # fails whatever the comparison: it could not be evaluated
            return _Unevaluated(f"too costly to evaluate on this body: {exc}")
        except (jsonpath.JSONPathError, RecursionError):  # JSONPathRecursionError: nested past 100 levels
            return _Unevaluated("a body nested too deeply to evaluate")
        if not matches:
            return MISSING
        return matches[0] if len(matches) == 1 else matches
    return MISSING


class _NotJson:
    def __repr__(self) -> str:
        return "a body that is not JSON"


_NOT_JSON: Any = _NotJson()


@dataclass(frozen=True)
class _Unevaluated:
    reason: str


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return _NOT_JSON


def _holds(comparison: str, actual: Any, target: str) -> bool:
    absent = actual is MISSING or actual is _NOT_JSON
    if comparison == "is_empty":
        return absent or actual is None or (isinstance(actual, str | list | dict) and len(actual) == 0)
    if comparison == "not_empty":
        return not _holds("is_empty", actual, target)
    if comparison == "not_equals":
        return not _holds("equals", actual, target)
    if comparison == "not_contains":
        return not _holds("contains", actual, target)
    if absent:
        return False
    if comparison == "equals":
        return _equal(actual, target)
    if comparison == "contains":
        if isinstance(actual, list):
            return any(_equal(item, target) for item in actual)
        if isinstance(actual, dict):
            return target in actual
        return target in _text(actual)
    left, right = _number(actual), _number(target)
    if comparison == "greater_than":
        return left > right if left is not None and right is not None else _text(actual) > target
    if comparison == "less_than":
        return left < right if left is not None and right is not None else _text(actual) < target
    return False


def _equal(actual: Any, target: str) -> bool:
    left, right = _number(actual), _number(target)
    if left is not None and right is not None:
        return left == right
    return _text(actual) == target


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _describe(a: Assertion, actual: Any, observed: Observed) -> str:
    subject = f"{a.source} {a.property}" if a.property and a.source in SOURCES_WITH_PROPERTY else a.source
    expectation = f"{a.comparison} '{_shorten(a.target)}'" if a.comparison in NEEDS_TARGET else a.comparison
    return f"{subject} {expectation} (got {_shown(a, actual, observed)})"


def _shown(a: Assertion, actual: Any, observed: Observed) -> str:
    if a.source == "body":
        return f"a {len(observed.body)}-byte body"  # the body itself is never quoted
    if actual is MISSING:
        return {"header": "no such header", "json_body": "no match", "ssl_expiry_days": "no certificate"}.get(
            a.source, "nothing"
        )
    if actual is _NOT_JSON:
        return repr(actual)
    if isinstance(actual, _Unevaluated):
        return actual.reason
    if a.source in NUMERIC_SOURCES:
        return _text(actual)
    return f"'{_shorten(_text(actual))}'"


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"
