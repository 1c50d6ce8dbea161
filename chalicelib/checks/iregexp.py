"""RFC 9535's ``match()`` and ``search()`` on RE2: linear time in the text, whatever the pattern.

A JSONPath assertion's patterns come from a tenant, and with ``search(@.a, @.b)`` from the body a target served, so
a backtracking engine (``re``, ``regex``) lets one monitor's ``(a+)+b`` hold a worker's CPU, and every other team's
checks on it, for minutes.  RE2 answers in time proportional to pattern x text; a pattern is bounded in length, and
the text by the checker's body limit.  A pattern RE2 cannot compile (a back-reference, a look-around, a repeat over
1,000) matches nothing, as RFC 9535 asks of an invalid I-Regexp.

Linear is not small: a 300-character pattern that defeats RE2's DFA takes seconds over a 1 MiB string.  So one
check's patterns share a budget of pattern x text characters (:data:`MAX_WORK`, about 0.2 s at RE2's slowest,
measured); an evaluation past it raises :class:`TooCostly`, which fails the assertion saying so.  RE2 releases the
GIL while it matches, so the worker's other checks run on meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache

import jsonpath
import re2
from jsonpath.function_extensions import ExpressionType, FilterFunction

MAX_PATTERN_CHARS = 500  # as long as an assertion's whole JSONPath may be
MAX_PROGRAM_BYTES = 1 << 20  # RE2's memory for one compiled pattern (its default is 8 MiB)
MAX_WORK = 20_000_000  # pattern x text characters one check may match: ~0.2 s where RE2 falls back to its NFA

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a tenant's bad pattern is an answer (no match), not a line on stderr
_OPTIONS.max_mem = MAX_PROGRAM_BYTES


class TooCostly(Exception):
    """A check's patterns would match more than :data:`MAX_WORK` characters' worth."""

    def __init__(self, work: int) -> None:
        super().__init__(f"over the {MAX_WORK:,} limit of pattern x text characters (this one {work:,})")


_spent: ContextVar[list[int] | None] = ContextVar("iregexp_spent", default=None)


@contextmanager
def budget() -> Iterator[None]:
    """One check's evaluation: its ``match()`` and ``search()`` calls share :data:`MAX_WORK`."""
    token = _spent.set([0])
    try:
        yield
    finally:
        _spent.reset(token)


def _charge(pattern: str, value: str) -> None:
    work = len(pattern) * max(len(value), 1)
    spent = _spent.get()
    if spent is None:  # outside a check (compiling, a test): one call's own bound
        if work > MAX_WORK:
            raise TooCostly(work)
        return
    spent[0] += work
    if spent[0] > MAX_WORK:
        raise TooCostly(spent[0])


def to_re2(pattern: str) -> str:
    """I-Regexp (RFC 9485) in RE2's syntax: ``.`` outside a class is any character but CR and LF."""
    parts: list[str] = []
    escaped = in_class = False
    for ch in pattern:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "[":
            in_class = True
        elif ch == "]":
            in_class = False
        elif ch == "." and not in_class:
            parts.append(r"[^\n\r]")
            continue
        parts.append(ch)
    return "".join(parts)


@lru_cache(maxsize=512)
def compiled(pattern: str) -> re2._Regexp | None:
    """The pattern compiled, or None when it is too long or not one RE2 takes."""
    if len(pattern) > MAX_PATTERN_CHARS:
        return None
    try:
        return re2.compile(to_re2(pattern), _OPTIONS)
    except (re2.error, UnicodeEncodeError):  # a lone surrogate cannot be UTF-8
        return None


def matches(value: object, pattern: object, *, whole: bool) -> bool:
    if not isinstance(value, str) or not isinstance(pattern, str):
        return False
    regexp = compiled(pattern)
    if regexp is None:
        return False
    _charge(pattern, value)
    try:
        found = regexp.fullmatch(value) if whole else regexp.search(value)
    except UnicodeEncodeError:  # a JSON string may hold a lone surrogate ("\ud800"), which UTF-8 cannot
        return False
    return found is not None


class Match(FilterFunction):
    """``match(value, pattern)``: the whole value matches."""

    arg_types = [ExpressionType.VALUE, ExpressionType.VALUE]
    return_type = ExpressionType.LOGICAL

    def __call__(self, value: object, pattern: object) -> bool:
        return matches(value, pattern, whole=True)


class Search(FilterFunction):
    """``search(value, pattern)``: some part of the value matches."""

    arg_types = [ExpressionType.VALUE, ExpressionType.VALUE]
    return_type = ExpressionType.LOGICAL

    def __call__(self, value: object, pattern: object) -> bool:
        return matches(value, pattern, whole=False)


class Environment(jsonpath.JSONPathEnvironment):
    """RFC 9535 (strict) with ``match()`` and ``search()`` on RE2, whether or not ``regex`` is installed."""

    def setup_function_extensions(self) -> None:
        super().setup_function_extensions()
        self.function_extensions["match"] = Match()
        self.function_extensions["search"] = Search()
