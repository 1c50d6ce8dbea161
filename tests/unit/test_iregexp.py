"""JSONPath's match() and search() on RE2: a tenant's pattern cannot hold a worker, in the deployed dependency set."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from chalicelib.checks import iregexp
from chalicelib.checks.assertions import Observed, evaluate, validate_assertion
from chalicelib.checks.model import Assertion

ROOT = Path(__file__).resolve().parents[2]


def observed(document: object) -> Observed:
    return Observed(status_code=200, response_time_ms=1.0, headers={}, body=json.dumps(document).encode())


def on_body(path: str, document: object, comparison: str = "not_empty") -> tuple[str, ...]:
    return evaluate([Assertion(source="json_body", comparison=comparison, property=path)], observed(document))


def test_it_answers_a_catastrophic_pattern_at_once() -> None:
    started = time.perf_counter()
    failures = on_body("$[?match(@.a, '(a+)+b')]", [{"a": "a" * 10_000}])
    assert failures == ("json_body $[?match(@.a, '(a+)+b')] not_empty (got no match)",)
    assert time.perf_counter() - started < 0.5  # `re` takes longer than the universe has for 10,000 a's


def test_it_takes_the_pattern_from_the_body_just_as_safely() -> None:
    document = [{"a": "a" * 5_000 + "!", "p": "(a|aa)+$"}, {"a": "fine", "p": "^f"}]
    started = time.perf_counter()
    assert on_body("$[?search(@.a, @.p)].a", document, "equals") == (
        "json_body $[?search(@.a, @.p)].a equals '' (got 'fine')",
    )
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("path", "selected"),
    [
        ("$[?match(@, 'a.c')]", ["abc", "aéc", "a.c"]),  # . is one character, outside ASCII too
        ("$[?match(@, 'a[.]c')]", ["a.c"]),  # in a class, a dot is a dot
        ("$[?match(@, 'a\\\\.c')]", ["a.c"]),  # escaped, a dot is a dot
        ("$[?search(@, 'b')]", ["abc", "xbx"]),
        ("$[?match(@, 'b')]", []),  # match() is the whole string
        ("$[?match(@, '\\\\p{Lu}.*')]", ["Éa"]),  # Unicode categories, as I-Regexp has them
        ("$[?match(@, '(a)\\\\1')]", []),  # a back-reference is not I-Regexp: it matches nothing
        ("$[?match(@, 'a{1001}')]", []),  # a repeat over RE2's 1,000: nothing, not an error
    ],
)
def test_it_matches_as_rfc_9535_says(path: str, selected: list[str]) -> None:
    document = ["abc", "aéc", "a.c", "a\nc", "xbx", "Éa", "aa"]
    matches = iregexp.Environment(strict=True).compile(path).findall(document)
    assert matches == selected


def test_a_dot_matches_neither_line_break() -> None:
    env = iregexp.Environment(strict=True)
    assert env.compile("$[?match(@, 'a.c')]").findall(["a\nc", "a\rc", "a\u2028c"]) == ["a\u2028c"]


def test_a_lone_surrogate_in_the_body_is_no_match_not_a_crash() -> None:
    body = b'[{"a": "\\ud800x"}, {"a": "yx"}]'  # JSON may escape a surrogate that UTF-8 cannot carry
    observed_body = Observed(status_code=200, response_time_ms=1.0, headers={}, body=body)
    check = Assertion(source="json_body", comparison="equals", target="yx", property="$[?search(@.a, 'x')].a")
    assert evaluate([check], observed_body) == ()


def test_a_pattern_longer_than_an_assertion_may_be_matches_nothing() -> None:
    long = "a" * (iregexp.MAX_PATTERN_CHARS + 1)
    assert iregexp.matches(long, long, whole=True) is False
    assert iregexp.matches(long[:-1], long[:-1], whole=True) is True


def test_a_pattern_that_compiles_to_a_huge_program_is_refused_at_once() -> None:
    """``\\pL{100}`` is 7 characters and 120,000 RE2 instructions (54 ms to compile): refused in the small
    sizing compile instead, and so is ``.{999}c`` (8,000 instructions, seconds on RE2's NFA over 1 MiB)."""
    for pattern in ("\\pL{100}", "(\\p{L}|\\p{N}){100}", ".{999}c", ".{999}.{999}.{999}.{999}.{999}1"):
        iregexp.programs.clear()
        started = time.thread_time()
        assert iregexp.compiled(pattern) is None, pattern
        assert time.thread_time() - started < 0.01, pattern
    assert iregexp.compiled("\\p{L}+") is not None  # 1,201 instructions: fine


def budgeted(*checks: Assertion, body: object) -> tuple[str, ...]:
    iregexp.programs.clear()  # each test's compiles are its own (the cache is the worker's)
    return evaluate(list(checks), observed(body))


def test_one_checks_patterns_share_a_budget_and_past_it_the_assertion_fails_saying_why() -> None:
    text = "ab" * 175_000  # 350,000 bytes
    pattern = "[ab]*a[ab]{20}c"  # 27 RE2 instructions: 9.45 million units a match, a DFA-hostile one
    path = f"$[?search(@.a, '{pattern}')]"
    check = Assertion(source="json_body", comparison="is_empty", property=path)
    assert budgeted(check, check, body=[{"a": text}]) == ()  # 0.1 + 18.9 million: within 20 million
    assert budgeted(check, check, check, body=[{"a": text}]) == (
        f"json_body {path} is_empty (got too costly to evaluate on this body: over the 20,000,000 limit of pattern"
        " work (program size x text bytes))",
    )


def test_the_budget_is_per_check_not_per_worker() -> None:
    text = "ab" * 175_000
    check = Assertion(source="json_body", comparison="is_empty", property="$[?search(@.a, '[ab]*a[ab]{20}c')]")
    for _ in range(3):
        assert evaluate([check, check], observed([{"a": text}])) == ()


def test_text_is_charged_by_its_utf8_bytes() -> None:
    """RE2 runs over bytes: an emoji is four of them, and costs four times an ASCII letter."""
    ascii_text, emoji_text = "a" * 200_000, "\U0001f600" * 200_000
    path = "$[?search(@, '[ab]*a[ab]{20}c')]"
    check = Assertion(source="json_body", comparison="is_empty", property=path)
    assert budgeted(check, check, check, body=[ascii_text]) == ()  # 3 x 27 x 200,000 = 16.2 million
    assert budgeted(check, body=[emoji_text])  # 27 x 800,000 bytes = 21.6 million: over


def test_compiling_patterns_a_body_supplies_is_charged_too() -> None:
    """search(@.t, @.p) takes its patterns from the body: each distinct one is a compile (refused ones as well),
    charged, so 200 distinct patterns cost their compiles, not seconds of CPU for free."""
    items = [{"t": "", "p": f"\\pL{{999}}{i}"} for i in range(300)]
    check = Assertion(source="json_body", comparison="is_empty", property="$[?search(@.t, @.p)]")
    started = time.thread_time()
    [failure] = budgeted(check, body=items)
    assert "too costly to evaluate on this body" in failure
    assert time.thread_time() - started < 1.0


def test_jsonpath_nodes_are_counted_so_a_selector_list_cannot_build_millions() -> None:
    """``$[*,*,…]`` makes a node per element per ``*``; ``count(@[*,…])`` inside a filter as many per step.  Both
    stop at the check's node budget, failing the assertion, without the memory or the minutes."""
    wide = "$[" + ",".join(["*"] * 10) + "]"
    check = Assertion(source="json_body", comparison="not_empty", property=wide)
    started = time.thread_time()
    [failure] = budgeted(check, body=list(range(100_000)))
    assert failure.endswith(
        "(got too costly to evaluate on this body: over the 100,000 limit of JSONPath nodes visited)"
    )
    nested = "$[?count(@[" + ",".join(["*"] * 50) + "]) == 0]"
    [failure] = budgeted(Assertion(source="json_body", comparison="not_empty", property=nested), body=[[0] * 100] * 100)
    assert "JSONPath nodes visited" in failure
    assert time.thread_time() - started < 3.0
    small = Assertion(source="json_body", comparison="equals", target="3", property="$.count")
    assert budgeted(small, body={"count": 3}) == ()


def test_a_body_nested_too_deeply_fails_the_assertion_not_the_check() -> None:
    check = Assertion(source="json_body", comparison="not_empty", property="$..status")
    body = Observed(status_code=200, response_time_ms=1.0, headers={}, body=("[" * 150 + "]" * 150).encode())
    assert evaluate([check], body) == ("json_body $..status not_empty (got a body nested too deeply to evaluate)",)


def test_a_number_out_of_range_in_a_path_is_a_validation_error() -> None:
    with pytest.raises(ValueError, match="out of range"):
        validate_assertion(Assertion(source="json_body", comparison="not_empty", property="$[?@ == 1e400]"))


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("ABC", "(?i)abc"),
        ("7", "\\d"),
        ("a", "\\x{61}"),
        ("a", "[[:alpha:]]"),
        ("\u03b1", "\\p{Greek}"),
        ("ab", "a*?b"),
    ],
)
def test_what_is_not_i_regexp_matches_nothing(value: str, pattern: str) -> None:
    """RFC 9535 2.4.7: a pattern that is not valid I-Regexp (RFC 9485) yields false; RE2 would accept these."""
    assert iregexp.matches(value, pattern, whole=True) is False


@pytest.mark.parametrize(
    ("value", "pattern"),
    [("a-b", "a\\-b"), ("Ab", "\\p{Lu}\\p{Ll}"), ("x1", "[a-z]\\P{L}"), ("a\tb", "a\\tb"), ("aab", "a{1,3}b")],
)
def test_what_is_i_regexp_still_matches(value: str, pattern: str) -> None:
    assert iregexp.matches(value, pattern, whole=True) is True


def test_it_is_safe_with_only_the_deployed_dependencies() -> None:
    """requirements.txt alone (no `regex`, no `iregexp_check` from the dev tree): still RE2, still at once."""
    script = textwrap.dedent(
        """
        import importlib.metadata as md, re, sys, time
        from packaging.requirements import Requirement

        def closure(names):
            seen, todo = set(), list(names)
            while todo:
                name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
                if name in seen:
                    continue
                seen.add(name)
                for line in md.requires(name) or ():
                    requirement = Requirement(line)
                    if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                        todo.append(requirement.name)
            return seen

        lines = [line.split("#")[0].strip() for line in open("requirements.txt")]
        pinned = [Requirement(line).name for line in lines if line and not line.startswith("-")]
        deployed = closure(pinned)
        modules = md.packages_distributions()
        blocked = {m for m, dists in modules.items()
                   if not any(re.sub(r"[-_.]+", "-", d).lower() in deployed for d in dists)}
        assert "regex" in blocked  # the dev tree has it (through moto): the deployed one must not need it
        for name in blocked | {"iregexp_check"}:
            sys.modules[name] = None  # import fails, as it would in the Lambda package

        import json
        from chalicelib.checks.assertions import Observed, evaluate, validate_assertion
        from chalicelib.checks.model import Assertion

        body = json.dumps([{"a": "a" * 30}]).encode()
        check = Assertion(source="json_body", comparison="not_empty", property="$[?match(@.a, '(a+)+b')]")
        started = time.perf_counter()
        failures = evaluate([check], Observed(status_code=200, response_time_ms=1.0, headers={}, body=body))
        print(len(failures), round(time.perf_counter() - started, 3))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    failed, seconds = done.stdout.split()
    assert failed == "1"
    assert float(seconds) < 0.5  # with `re`, 30 a's against (a+)+b take minutes


def test_the_checker_ships_the_engine_it_imports() -> None:
    for requirements in ("requirements.txt", "functions/checker/requirements.txt"):
        pins = (ROOT / requirements).read_text().splitlines()
        assert any(line.startswith("google-re2==") for line in pins), requirements
