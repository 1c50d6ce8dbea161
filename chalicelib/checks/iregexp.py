"""RFC 9535's ``match()`` and ``search()`` on RE2, and a per-check budget for the whole JSONPath evaluation.

A JSONPath assertion's patterns come from a tenant, and with ``search(@.a, @.b)`` from the body a target served, so
a backtracking engine (``re``, ``regex``) lets one monitor's ``(a+)+b`` hold a worker's CPU, and every other team's
checks on it, for minutes.  RE2 answers in time proportional to its program's size x the text's UTF-8 bytes.

Linear is not small, and JSONPath itself is not free either, so one check's evaluation has a budget (:func:`budget`)
shared by all its assertions, and an evaluation past it raises :class:`TooCostly`, which fails the assertion saying
so (never the check's other assertions, never the worker):

1. A pattern is I-Regexp (RFC 9485; :func:`is_iregexp`) of at most 500 characters; anything else matches nothing,
   as RFC 9535 asks.  It is compiled first with a small memory limit, so an oversized program (``\\pL{100}`` is
   120,000 instructions) is refused in under a millisecond, and kept only under :data:`MAX_PROGRAM` instructions.
   Each compile a check causes costs :data:`COMPILE_WORK` (patterns taken from a body defeat the cache).
2. A match costs program size x UTF-8 bytes of the text (:data:`MAX_WORK` in all: at RE2's slowest, ~10 ns a unit
   measured, 0.2 s).  RE2 releases the GIL while it matches, so the worker's other checks run on meanwhile.
3. Every node JSONPath visits (selectors, descendants, a filter's ``@`` paths) counts against :data:`MAX_NODES`
   (:class:`CountedMatch`): ``$[*,*,*,…]`` over a large array no longer builds millions of nodes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import jsonpath
import re2
from jsonpath.function_extensions import ExpressionType, FilterFunction
from jsonpath.match import JSONPathMatch

MAX_PATTERN_CHARS = 500  # as long as an assertion's whole JSONPath may be
MAX_PROGRAM = 2_500  # RE2 instructions a pattern may compile to (\pL+ is 1,201; [a-z]+@[a-z]+\.com 13)
COMPILE_WORK = 100_000  # a compile's cost in match units (about a millisecond at worst, measured)
MAX_WORK = 20_000_000  # program size x text bytes one check may match, compiles included: ~0.2 s at worst
MAX_NODES = 100_000  # JSONPath nodes one check may visit (~30 MB and ~0.3 s at most, measured)
CACHE_SIZE = 512

_SIZING = re2.Options()  # compiles only to learn the program's size: refuses a big one at once
_SIZING.log_errors = False  # a tenant's bad pattern is an answer (no match), not a line on stderr
_SIZING.max_mem = 64 << 10
_MATCHING = re2.Options()  # RE2's default memory (8 MiB): room for its fast DFA
_MATCHING.log_errors = False

# RFC 9485's escapes: single characters, and \p{…}/\P{…} with a Unicode general category.
_SINGLE_ESCAPES = set("()*+-.?[\\]^{|}nrt")
_CATEGORIES = {
    *"LMNPZSC",
    *("Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po"),
    *("Zs", "Zl", "Zp", "Sm", "Sc", "Sk", "So", "Cc", "Cf", "Co", "Cn"),
}


class TooCostly(Exception):
    """A check's JSONPath evaluation would cost more than its budget."""


@dataclass
class _Budget:
    work: int = 0
    nodes: int = 0


_budget: ContextVar[_Budget | None] = ContextVar("iregexp_budget", default=None)


@contextmanager
def budget() -> Iterator[None]:
    """One check's evaluation: its assertions share :data:`MAX_WORK` and :data:`MAX_NODES`."""
    token = _budget.set(_Budget())
    try:
        yield
    finally:
        _budget.reset(token)


def _charge(work: int) -> None:
    spent = _budget.get()
    total = work if spent is None else spent.work + work  # outside a check (a test): one call's own bound
    if spent is not None:
        spent.work = total
    if total > MAX_WORK:
        raise TooCostly(f"over the {MAX_WORK:,} limit of pattern work (program size x text bytes)")


class CountedMatch(JSONPathMatch):
    """A JSONPath node, counted against the check's :data:`MAX_NODES` as it is made."""

    def __init__(self, **kwargs: Any) -> None:
        spent = _budget.get()
        if spent is not None:
            spent.nodes += 1
            if spent.nodes > MAX_NODES:
                raise TooCostly(f"over the {MAX_NODES:,} limit of JSONPath nodes visited")
        super().__init__(**kwargs)


def is_iregexp(pattern: str) -> bool:
    """True if ``pattern`` is within RFC 9485's I-Regexp (a lexical check: RE2 refuses what is malformed).

    Refused: flags and groups with ``(?``, lazy quantifiers, POSIX classes, escapes outside I-Regexp's (``\\d``,
    ``\\x{…}``, ``\\b``…), and ``\\p{…}`` other than a general category (``\\p{Greek}``)."""
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                return False
            nxt = pattern[i + 1]
            if nxt in "pP":
                end = pattern.find("}", i + 2)
                if i + 2 >= n or pattern[i + 2] != "{" or end < 0 or pattern[i + 3 : end] not in _CATEGORIES:
                    return False
                i = end + 1
                continue
            if nxt not in _SINGLE_ESCAPES:
                return False
            i += 2
            continue
        if ch == "(" and pattern.startswith("(?", i):
            return False
        if ch == "[" and pattern.startswith("[[:", i):
            return False
        if ch in "*+?}" and i + 1 < n and pattern[i + 1] == "?":
            return False
        i += 1
    return True


def to_re2(pattern: str) -> str:
    """I-Regexp in RE2's syntax: ``.`` outside a class is any character but CR and LF."""
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


class _Programs:
    """The compiled patterns, least recently used dropped first; a compile is charged to the check causing it."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._programs: OrderedDict[str, re2._Regexp | None] = OrderedDict()

    def get(self, pattern: str) -> re2._Regexp | None:
        with self._lock:
            if pattern in self._programs:
                self._programs.move_to_end(pattern)
                return self._programs[pattern]
        _charge(COMPILE_WORK)
        program = _compile(pattern)
        with self._lock:
            self._programs[pattern] = program
            while len(self._programs) > self._size:
                self._programs.popitem(last=False)
        return program

    def clear(self) -> None:
        with self._lock:
            self._programs.clear()


def _compile(pattern: str) -> re2._Regexp | None:
    if len(pattern) > MAX_PATTERN_CHARS or not is_iregexp(pattern):
        return None
    translated = to_re2(pattern)
    try:
        if re2.compile(translated, _SIZING).programsize > MAX_PROGRAM:
            return None
        return re2.compile(translated, _MATCHING)
    except (re2.error, UnicodeEncodeError):  # a lone surrogate cannot be UTF-8
        return None


programs = _Programs(CACHE_SIZE)


def compiled(pattern: str) -> re2._Regexp | None:
    """The pattern compiled, or None when it is not one this module runs (see the module's point 1)."""
    return programs.get(pattern)


def matches(value: object, pattern: object, *, whole: bool) -> bool:
    if not isinstance(value, str) or not isinstance(pattern, str):
        return False
    regexp = compiled(pattern)
    if regexp is None:
        return False
    try:
        text = value.encode("utf-8")
    except UnicodeEncodeError:  # a JSON string may hold a lone surrogate ("\ud800"), which UTF-8 cannot
        return False
    _charge(regexp.programsize * max(len(text), 1))
    found = regexp.fullmatch(value) if whole else regexp.search(value)
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


# python-jsonpath 2.2.2 makes each path's root node (and so every child: ``new_child`` uses the node's class) from
# its module's ``JSONPathMatch``, not from ``match_class``: counted nodes need that name to be ours.  Outside a
# check's budget a CountedMatch counts nothing, so this changes nothing for any other caller.
jsonpath.path.JSONPathMatch = CountedMatch  # type: ignore[misc]


class Environment(jsonpath.JSONPathEnvironment):
    """RFC 9535 (strict) with ``match()`` and ``search()`` on RE2, whether or not ``regex`` is installed, and every
    node counted against the check's budget."""

    match_class = CountedMatch

    def setup_function_extensions(self) -> None:
        super().setup_function_extensions()
        self.function_extensions["match"] = Match()
        self.function_extensions["search"] = Search()
