"""From a monitor to a check: the spec the checker runs, and the one-off test check of the API."""

from __future__ import annotations

import json
from dataclasses import replace

from chalicelib import errors
from chalicelib.checks import kinds, ssrf
from chalicelib.checks.kinds import Spec
from chalicelib.checks.model import Assertion, CheckResult, CheckSpec, TcpSpec
from chalicelib.clock import utcnow
from chalicelib.monitors import credentials, heartbeats
from chalicelib.monitors.service import Monitor, MonitorConfig
from chalicelib.ratelimit import service as ratelimit
from chalicelib.sealing.service import Unreadable
from chalicelib.settings import get_settings

TEST_CHECK_MAX_MS = 25_000  # API Gateway ends a request at 29 s
# A team's test checks a window: enough to try assertions over and over, not to make Vigil a target's flood (each is
# a request from the API's region, at up to the API's per-user rate otherwise).
TEST_CHECKS_PER_WINDOW = 30
TEST_CHECK_WINDOW_S = 600


MAX_SPEC_BYTES = 128 * 1024  # one job's check, encoded as the scheduler sends it: several fit a message


def spec_from(monitor: Monitor, *, max_timeout_ms: int | None = None) -> Spec:
    """What the checker runs for ``monitor``, of its type (``checks.kinds``), its credential headers opened
    (``monitors.credentials``: ``sealing.Unreadable`` when one does not open here)."""
    config = monitor.config
    if config.headers:
        config = replace(config, headers=credentials.opened(monitor.team_id, monitor.id, config.headers))
    return spec_of(config, max_timeout_ms=max_timeout_ms)


def check_job_size(config: MonitorConfig) -> None:
    """422 for a monitor whose check would be over :data:`MAX_SPEC_BYTES` as the scheduler sends it (JSON, text
    outside ASCII escaped: up to six bytes a character), naming its largest field: a job too big for a queue
    message would fail its region's whole tick."""
    if config.type not in ("http", "tcp"):
        return
    spec = spec_of(config)
    size = len(json.dumps(kinds.kind_of(spec).to_json(spec), separators=(",", ":")))
    if size <= MAX_SPEC_BYTES:
        return
    parts = {"body": config.body or "", "headers": config.headers, "assertions": config.assertions}
    field = max(parts, key=lambda name: len(json.dumps(parts[name])))
    raise errors.ValidationFailed.single(
        field,
        f"the check is {size // 1024} KiB as sent to the workers, over {MAX_SPEC_BYTES // 1024} KiB: shorten the"
        " body, headers or assertions (a character outside ASCII takes up to six bytes, an emoji twelve)",
    )


def spec_of(c: MonitorConfig, *, max_timeout_ms: int | None = None) -> Spec:
    """What the checker runs for a monitor of this config."""
    timeout = min(c.timeout_ms, max_timeout_ms) if max_timeout_ms else c.timeout_ms
    if c.type not in ("http", "tcp"):  # a heartbeat (pinged, not checked), or a type newer than this code
        raise ValueError(f"no check runs a monitor of type {c.type!r}")
    if c.type == "tcp":
        return TcpSpec(
            host=c.host or "",
            port=c.port or 0,
            tls=c.tls,
            verify_ssl=c.verify_ssl,
            timeout_ms=timeout,
            degraded_after_ms=c.degraded_after_ms,
        )
    return CheckSpec(
        url=c.url,
        method=c.method,
        headers=tuple(c.headers.items()),
        body=c.body,
        timeout_ms=timeout,
        expected_status=tuple(c.expected_status),
        follow_redirects=c.follow_redirects,
        verify_ssl=c.verify_ssl,
        assertions=tuple(
            Assertion(
                source=a["source"], comparison=a["comparison"], target=a.get("target", ""), property=a.get("property")
            )
            for a in c.assertions
        ),
        degraded_after_ms=c.degraded_after_ms,
    )


def run_test_check(monitor: Monitor) -> CheckResult:
    """One check now, from the API's own region, through the same SSRF guard as every scheduled check."""
    settings = get_settings()
    if monitor.config.type == heartbeats.TYPE:
        raise errors.Conflict("A heartbeat monitor is not checked: its job pings it (its ping_url).")
    try:
        spec = spec_from(monitor, max_timeout_ms=TEST_CHECK_MAX_MS)
    except Unreadable:
        raise errors.Conflict(
            "The monitor's stored credential headers cannot be read: send their values again (PATCH its headers)."
        ) from None
    now = utcnow()
    if ratelimit.admit(f"test-checks#{monitor.team_id}", TEST_CHECKS_PER_WINDOW, TEST_CHECK_WINDOW_S, now) is None:
        raise errors.TooManyRequests(
            ratelimit.resets_in(TEST_CHECK_WINDOW_S, now),
            f"At most {TEST_CHECKS_PER_WINDOW} test checks every {TEST_CHECK_WINDOW_S // 60} minutes for a team.",
        )
    with ssrf.lookups_for(monitor.team_id):
        return kinds.run(spec, region=settings.aws_region, allow_private=settings.allow_private_targets)
