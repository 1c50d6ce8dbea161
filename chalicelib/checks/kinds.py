"""The kinds of check a job can carry — HTTP(S) and TCP — one entry each: its spec (``checks.model``), how the spec
travels in a job message, and the function that runs it.

Adding a kind of check is its spec, its checker module and one entry in :data:`KINDS`; the scheduler, the worker,
the result packs and the incident pipeline take any kind's ``CheckResult`` as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from chalicelib.checks.http import run_check
from chalicelib.checks.model import Assertion, CheckResult, CheckSpec, TcpSpec
from chalicelib.checks.tcp import run_tcp_check
from chalicelib.masking import request_secrets, without_secrets

Spec = CheckSpec | TcpSpec


@dataclass(frozen=True)
class Kind:
    name: str  # the job's "type" (absent: "http", as every message before kinds)
    spec: type[CheckSpec] | type[TcpSpec]
    to_json: Callable[[Any], dict[str, Any]]
    from_json: Callable[[dict[str, Any]], Any]
    run: Callable[..., CheckResult]  # (spec, *, region, allow_private) → result; never raises for the target


def _http_to_json(spec: CheckSpec) -> dict[str, Any]:
    data = asdict(spec)
    data["headers"] = [list(h) for h in spec.headers]
    return data


def _typed(spec: object, **kinds: tuple[type, ...]) -> None:
    """``ValueError`` unless each named field of ``spec`` is of one of its types (a bool is never an int here):
    a job that parses but would crash its check, or stall its message, is poisoned instead."""
    for name, types in kinds.items():
        value = getattr(spec, name)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(f"a job's {name} is not of its type")


def _http_from_json(data: dict[str, Any]) -> CheckSpec:
    spec = dict(data)
    spec["headers"] = tuple((str(k), str(v)) for k, v in spec.get("headers", []))
    spec["expected_status"] = tuple(str(s) for s in spec.get("expected_status", ("2xx",)))
    spec["assertions"] = tuple(Assertion(**a) for a in spec.get("assertions", []))
    checked = CheckSpec(**spec)
    _typed(checked, url=(str,), method=(str,), body=(str, type(None)), follow_redirects=(bool,), verify_ssl=(bool,))
    _typed(checked, timeout_ms=(int,), connect_timeout_ms=(int,), degraded_after_ms=(int, type(None)))
    for a in checked.assertions:
        _typed(a, source=(str,), comparison=(str,), target=(str,), property=(str, type(None)))
    if not checked.url or checked.timeout_ms <= 0 or checked.connect_timeout_ms <= 0:
        raise ValueError("an HTTP job without a URL or a time to run")
    return checked


def _tcp_from_json(data: dict[str, Any]) -> TcpSpec:
    spec = TcpSpec(**data)
    _typed(spec, host=(str,), port=(int,), tls=(bool,), verify_ssl=(bool,))
    _typed(spec, timeout_ms=(int,), connect_timeout_ms=(int,), degraded_after_ms=(int, type(None)))
    if not spec.host or not 1 <= spec.port <= 65535 or spec.timeout_ms <= 0 or spec.connect_timeout_ms <= 0:
        raise ValueError("a TCP job without a host, a port or a time to run")
    return spec


KINDS: dict[str, Kind] = {
    "http": Kind("http", CheckSpec, _http_to_json, _http_from_json, run_check),
    "tcp": Kind("tcp", TcpSpec, asdict, _tcp_from_json, run_tcp_check),
}


def kind_of(spec: Spec) -> Kind:
    for kind in KINDS.values():
        if type(spec) is kind.spec:
            return kind
    raise TypeError(f"no kind of check runs a {type(spec).__name__}")


def spec_from_json(kind: str, data: dict[str, Any]) -> Spec:
    """A job's spec; ``ValueError`` for a kind this code does not know (a newer scheduler's job: poisoned)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of check {kind!r}")
    spec: Spec = KINDS[kind].from_json(data)
    return spec


def run(spec: Spec, *, region: str, allow_private: bool) -> CheckResult:
    """Run one check of any kind.  What a target sends back never shows the credentials it was sent: a target
    that echoes its request (on the monitor's own origin, where stored credentials go) would otherwise hand them to
    every reader of the results and of a test check's answer."""
    result: CheckResult = kind_of(spec).run(spec, region=region, allow_private=allow_private)
    # found by a fresh-eyes review of issue 19: the URL's query and the body's credentials are echoed as well
    secrets = request_secrets(spec.url, spec.headers, spec.body) if isinstance(spec, CheckSpec) else []
    if not secrets:
        return result
    return replace(
        result,
        error_detail=None if result.error_detail is None else without_secrets(result.error_detail, secrets),
        assertion_failures=tuple(without_secrets(f, secrets) for f in result.assertion_failures),
        body_excerpt=None if result.body_excerpt is None else without_secrets(result.body_excerpt, secrets),
    )
