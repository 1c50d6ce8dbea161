"""/v1/monitors/*: monitors of every type (HTTP(S), TCP, heartbeat), their results and uptime, one-off test checks,
and a heartbeat's pings (``/v1/ping/{token}``: no auth, its token is its credential).

A monitor's request and response models are a union discriminated by ``type`` (``"http"`` when absent): each type
is its own model here (its fields and their rules), over the fields every type has."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import Discriminator, Field, RootModel, field_validator, model_validator
from pydantic import Tag as TypeTag

from chalicelib import errors, lifecycle
from chalicelib.api.framework import Call, Out, Reply, Router
from chalicelib.checks.assertions import validate_assertion
from chalicelib.checks.model import Assertion, CheckResult
from chalicelib.checks.ssrf import lookups_for
from chalicelib.clock import isoz, parse_time, utcnow
from chalicelib.masking import MASK, masked_body, masked_headers, masked_url
from chalicelib.monitors import heartbeats
from chalicelib.monitors import results as monitor_results
from chalicelib.monitors import service as monitors
from chalicelib.monitors.checking import run_test_check
from chalicelib.monitors.validation import (
    validate_destination,
    validate_headers,
    validate_host,
    validate_host_destination,
    validate_url,
)
from chalicelib.scheduler import due
from chalicelib.schema import Line, Schema, UtcTime, published
from chalicelib.settings import get_settings
from chalicelib.teams import authz

router = Router("monitors")

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
Source = Literal["status_code", "response_time", "header", "body", "json_body", "ssl_expiry_days"]
Comparison = Literal[
    "equals", "not_equals", "greater_than", "less_than", "contains", "not_contains", "is_empty", "not_empty"
]
Status = Literal["pending", "up", "degraded", "down", "paused", "maintenance"]
StatusPattern = Annotated[
    str, Field(pattern=r"^([1-5]xx|[1-5][0-9][0-9])$", description='a code ("200") or a class ("2xx")')
]
Tag = Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.:/-]+$")]
Interval = Annotated[int, Field(description="seconds between checks"), published(enum=list(monitors.INTERVALS))]


class AssertionIn(Schema):
    source: Source
    property: str | None = Field(default=None, max_length=500, description="header name or JSONPath")
    comparison: Comparison
    target: str = Field(default="", max_length=1000)

    @model_validator(mode="after")
    def _consistent(self) -> AssertionIn:
        # The checker's own rules: what is accepted here is what it can evaluate (JSONPath compiled too).
        validate_assertion(Assertion(self.source, self.comparison, self.target, self.property))
        return self


def _interval(value: int | None) -> int | None:
    if value is not None and value not in monitors.INTERVALS:
        raise ValueError(f"must be one of {', '.join(str(i) for i in monitors.INTERVALS)}")
    return value


NOT_NULL = (
    "type",
    "name",
    "url",
    "method",
    "headers",
    "host",
    "port",
    "tls",
    "interval_seconds",
    "timeout_ms",
    "regions",
    "expected_status",
    "follow_redirects",
    "verify_ssl",
    "assertions",
    "ssl_expiry_alert_days",
    "failure_threshold",
    "recovery_threshold",
    "channel_ids",
    "tags",
    "period_seconds",
    "grace_seconds",
)
Port = Annotated[int, Field(ge=1, le=65535, strict=True)]  # "22", 22.0 or true is not a port


class CommonFields(Schema):
    NOT_NULL = NOT_NULL
    """The fields every type of monitor has; create and patch differ only in which are required."""

    name: Line | None = Field(default=None, min_length=1, max_length=100)
    channel_ids: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(default=None, max_length=20)
    tags: list[Tag] | None = Field(default=None, max_length=20)

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, as the service's types."""
        out: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if name == "assertions" and value is not None:
                value = tuple(a.model_dump() for a in value)
            elif isinstance(value, list):
                value = tuple(value)
            out[name] = value
        return out


class MonitorFields(CommonFields):
    """The fields of every type Vigil checks (not a heartbeat's)."""

    interval_seconds: Interval | None = None
    timeout_ms: int | None = Field(default=None, ge=1000, le=30000)
    regions: list[str] | None = Field(default=None, min_length=1, max_length=20)
    verify_ssl: bool | None = None
    degraded_after_ms: int | None = Field(default=None, ge=1, le=30000)
    ssl_expiry_alert_days: int | None = Field(default=None, ge=0, le=365)
    failure_threshold: int | None = Field(default=None, ge=1, le=10)
    recovery_threshold: int | None = Field(default=None, ge=1, le=10)
    confirmation_regions: int | None = Field(default=None, ge=1, le=20)

    @field_validator("interval_seconds")
    @classmethod
    def _known_interval(cls, value: int | None) -> int | None:
        return _interval(value)


class HttpFields(MonitorFields):
    """An HTTP(S) monitor's own fields."""

    url: str | None = Field(default=None, min_length=1, max_length=2048)
    method: Method | None = None
    headers: dict[str, str] | None = None
    body: str | None = Field(default=None, max_length=65536)
    expected_status: list[StatusPattern] | None = Field(default=None, min_length=1, max_length=20)
    follow_redirects: bool | None = None
    assertions: list[AssertionIn] | None = Field(default=None, max_length=20)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return validate_url(value) if value is not None else None

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return validate_headers(value) if value is not None else None


class TcpFields(MonitorFields):
    """A TCP monitor's own fields: connect to ``host:port`` (and, with ``tls``, handshake), then close."""

    host: str | None = Field(default=None, min_length=1, max_length=253, description="a name or an IP address")
    port: Port | None = None
    tls: bool | None = Field(
        default=None, strict=True, description="complete a TLS handshake, and report the certificate"
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        return validate_host(value) if value is not None else None


class HeartbeatFields(CommonFields):
    """A heartbeat monitor's own fields: the job pings its ``ping_url`` at least every ``period_seconds``; no ping
    within ``period_seconds + grace_seconds`` is an outage."""

    period_seconds: int | None = Field(
        default=None,
        ge=heartbeats.PERIOD_MIN_SECONDS,
        le=heartbeats.PERIOD_MAX_SECONDS,
        strict=True,
        description="how often the job pings: 60 s to 30 days",
    )
    grace_seconds: int | None = Field(
        default=None,
        ge=0,
        le=heartbeats.GRACE_MAX_SECONDS,
        strict=True,
        description="how late a ping may be (and how long a started run may take): 0 to 7 days [300]",
    )


class HttpMonitorIn(HttpFields):
    type: Literal["http"] = "http"
    name: Line = Field(min_length=1, max_length=100)  # type: ignore[assignment]
    url: str = Field(min_length=1, max_length=2048)  # type: ignore[assignment]


class TcpMonitorIn(TcpFields):
    type: Literal["tcp"]
    name: Line = Field(min_length=1, max_length=100)  # type: ignore[assignment]
    host: str = Field(min_length=1, max_length=253, description="a name or an IP address")  # type: ignore[assignment]
    port: Port  # type: ignore[assignment]


class HeartbeatMonitorIn(HeartbeatFields):
    type: Literal["heartbeat"]
    name: Line = Field(min_length=1, max_length=100)  # type: ignore[assignment]
    period_seconds: int = Field(  # type: ignore[assignment]
        ge=heartbeats.PERIOD_MIN_SECONDS,
        le=heartbeats.PERIOD_MAX_SECONDS,
        strict=True,
        description="how often the job pings: 60 s to 30 days",
    )


def _type_of(value: Any) -> str:
    """The union's tag: a request's ``type``, ``"http"`` when it names none (as every request before types)."""
    if isinstance(value, dict):
        kind = value.get("type", "http")
        return kind if isinstance(kind, str) else ""
    return str(getattr(value, "type", ""))


TYPE_ERROR = "must be one of " + ", ".join(monitors.TYPES)
AnyMonitorIn = Annotated[
    Union[  # noqa: UP007
        Annotated[HttpMonitorIn, TypeTag("http")],
        Annotated[TcpMonitorIn, TypeTag("tcp")],
        Annotated[HeartbeatMonitorIn, TypeTag("heartbeat")],
    ],
    Discriminator(_type_of, custom_error_type="invalid_type", custom_error_message=TYPE_ERROR),
]


class MonitorIn(RootModel[Any]):
    """A new monitor, of one type."""

    TYPE_UNION: ClassVar[bool] = True  # its errors are named as sent (framework.validate)

    root: AnyMonitorIn


class MonitorPatch(HttpFields, TcpFields, HeartbeatFields):
    """Only the fields sent change; a monitor's type and the fields of another type cannot (422)."""

    type: Literal["http", "tcp", "heartbeat"] | None = None


class ListQuery(Schema):
    status: Status | None = None
    tag: Tag | None = None
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=2048)


class ResultsQuery(Schema):
    region: str | None = Field(default=None, max_length=50)
    since: UtcTime | None = None
    until: UtcTime | None = None
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=2048)


class UptimeQuery(Schema):
    days: int = Field(default=90, ge=1, le=90)


class AssertionOut(Out):
    source: Source
    property: str | None
    comparison: Comparison
    target: str


class AdvisoryOut(Out):
    region: str
    since: str | None
    cause: str | None


class CommonOut(Out):
    """What every type of monitor shows."""

    id: str
    team_id: str
    name: str
    channel_ids: list[str]
    tags: list[str]
    status: Status
    region_status: dict[str, Literal["up", "down", "pending"]]
    advisories: list[AdvisoryOut] = Field(
        description="regions down while the monitor is not (below confirmation_regions): which, since when, why"
    )
    last_checked_at: str | None
    created_at: str
    updated_at: str


class MonitorOutFields(CommonOut):
    """What every type Vigil checks shows."""

    interval_seconds: int
    timeout_ms: int
    regions: list[str]
    verify_ssl: bool
    degraded_after_ms: int | None
    ssl_expiry_alert_days: int
    failure_threshold: int
    recovery_threshold: int
    confirmation_regions: int


class HttpMonitorOut(MonitorOutFields):
    type: Literal["http"]
    url: str = Field(
        description="credential-like query values (token, key, secret, sig, code, …) masked as ********; every"
        " query value for whoever cannot change the monitor"
    )
    method: Method
    headers: dict[str, str] = Field(
        description="values of credential-like headers masked; every value for whoever cannot change the monitor"
    )
    body: str | None = Field(
        description="a JSON or form body with the values of credential-like keys masked (another kind of body as it"
        " is); masked whole for whoever cannot change the monitor"
    )
    expected_status: list[str]
    follow_redirects: bool
    assertions: list[AssertionOut]


class TcpMonitorOut(MonitorOutFields):
    type: Literal["tcp"]
    host: str
    port: int
    tls: bool


class HeartbeatMonitorOut(CommonOut):
    type: Literal["heartbeat"]
    period_seconds: int
    grace_seconds: int
    ping_url: str = Field(
        description="GET, POST or HEAD it when the job runs; /start and /fail after it (its token masked for"
        " whoever cannot change the monitor)"
    )
    last_ping_at: str | None


AnyMonitorOut = Annotated[HttpMonitorOut | TcpMonitorOut | HeartbeatMonitorOut, Field(discriminator="type")]


class MonitorOut(RootModel[Any]):
    """A monitor, of one type."""

    root: AnyMonitorOut


class MonitorList(Out):
    data: list[AnyMonitorOut]
    next_cursor: str | None


class TimingsOut(Out):
    dns_ms: float | None
    connect_ms: float | None
    tls_ms: float | None
    ttfb_ms: float | None
    total_ms: float | None


class ResultOut(Out):
    checked_at: str
    region: str
    ok: bool
    degraded: bool
    status_code: int | None
    response_time_ms: float | None
    timings: TimingsOut
    error: str | None
    error_detail: str | None
    ssl_expires_at: str | None
    assertion_failures: list[str]


class ResultList(Out):
    data: list[ResultOut]
    next_cursor: str | None


class DayOut(Out):
    date: str
    checks: int
    failures: int
    uptime_pct: float | None
    avg_response_ms: float | None


class UptimeOut(Out):
    uptime: dict[Literal["24h", "7d", "30d", "90d"], float | None]
    days: list[DayOut]


def last_checks(found: list[monitors.Monitor], now: datetime) -> dict[str, datetime]:
    """When each monitor was last checked, derived from its schedule and how far each of its regions' workers
    got (``monitors.results.progress``): the incident handler writes a monitor only when something material
    changes, so no check writes it (issue 13).  Not for a paused monitor, nor in the minute of its last change
    (creation, resume, edit), the minute after it, or before."""
    reached = monitor_results.progress([r for m in found for r in m.config.regions])
    out = {}
    for m in found:
        if m.config.type == heartbeats.TYPE:
            continue  # pinged, not checked: its last ping is when it was last heard from
        starts = [
            due.last_planned_start(m.id, m.config.interval_seconds, reached[r], now)
            for r in m.config.regions
            if r in reached
        ]
        # Only starts two minutes or more after the last change's minute (creation, resume, a new interval or
        # regions): the tick of the change's minute plans the next one (scheduler.service), and may have run
        # before the change, with no check of it, or under the old schedule.
        changed = m.updated_at.astimezone(UTC).replace(second=0, microsecond=0)
        latest = max((s for s in starts if s >= changed + timedelta(minutes=2)), default=None)
        if latest is not None and not m.paused:
            out[m.id] = latest
    return out


def _last_checked(monitor: monitors.Monitor, latest: dict[str, datetime]) -> datetime | None:
    """The later of what the incident handler last wrote and the derived time of the last check."""
    times = [t for t in (monitor.last_checked_at, latest.get(monitor.id)) if t is not None]
    return max(times) if times else None


def may_edit(call: Call) -> bool:
    """Whether the caller could change the team's monitors (a member or above; an API key with
    ``monitors:write``): what a monitor is shown with (:func:`monitor_out`)."""
    return authz.holds(call.user, authz.WRITE, "monitors:write")


def monitor_out(monitor: monitors.Monitor, latest: dict[str, datetime] | None = None, *, editor: bool) -> MonitorOut:
    """``latest``: when each monitor was last checked (:func:`last_checks`), read for it when not given.

    Credentials are masked for everyone: header values, URL query values and the values of a JSON or form body
    whose names say they are one (a masked value sent back keeps the stored one).  Who cannot change the monitor
    (a viewer, a read-only key: not an ``editor``) needs none of its request: every header and query value, the
    whole body and a heartbeat's ping token are masked."""
    return MonitorOut(root=_monitor_out(monitor, latest, editor=editor))


def _monitor_out(
    monitor: monitors.Monitor, latest: dict[str, datetime] | None = None, *, editor: bool
) -> HttpMonitorOut | TcpMonitorOut | HeartbeatMonitorOut:
    c = monitor.config
    common: dict[str, Any] = {
        "id": monitor.id,
        "team_id": monitor.team_id,
        "name": c.name,
        "channel_ids": list(c.channel_ids),
        "tags": list(c.tags),
        "status": monitor.status,
        "region_status": monitor.region_status,
        "advisories": [
            AdvisoryOut(region=a["region"], since=_isoz_text(a.get("since")), cause=a.get("cause"))
            for a in monitor.advisories
        ],
        "created_at": isoz(monitor.created_at) or "",
        "updated_at": isoz(monitor.updated_at) or "",
    }
    if c.type == heartbeats.TYPE:
        return HeartbeatMonitorOut(
            type="heartbeat",
            period_seconds=c.interval_seconds,
            grace_seconds=c.grace_seconds,
            ping_url=f"{get_settings().app_url}/v1/ping/{monitor.ping_token if editor else MASK}",
            last_ping_at=isoz(monitor.last_ping_at),
            last_checked_at=isoz(monitor.last_ping_at),
            **common,
        )
    if latest is None:
        latest = last_checks([monitor], utcnow())
    shared: dict[str, Any] = {
        **common,
        "interval_seconds": c.interval_seconds,
        "timeout_ms": c.timeout_ms,
        "regions": list(c.regions),
        "verify_ssl": c.verify_ssl,
        "degraded_after_ms": c.degraded_after_ms,
        "ssl_expiry_alert_days": c.ssl_expiry_alert_days,
        "failure_threshold": c.failure_threshold,
        "recovery_threshold": c.recovery_threshold,
        "confirmation_regions": c.confirmation_regions or 1,
        "last_checked_at": isoz(_last_checked(monitor, latest)),
    }
    if c.type == "tcp":
        return TcpMonitorOut(type="tcp", host=c.host or "", port=c.port or 0, tls=c.tls, **shared)
    return HttpMonitorOut(
        type="http",
        url=masked_url(c.url, every_value=not editor),
        method=c.method,  # type: ignore[arg-type]
        headers=masked_headers(c.headers, every_value=not editor),
        body=masked_body(c.body) if editor or not c.body else MASK,
        expected_status=list(c.expected_status),
        follow_redirects=c.follow_redirects,
        assertions=[AssertionOut.model_validate(a) for a in c.assertions],
        **shared,
    )


def _validate_destination(team_id: str, kind: str, changes: dict[str, Any]) -> None:
    with lookups_for(team_id):  # the lookup holds one of the team's slots, as its checks' lookups do
        if kind == "tcp":
            validate_host_destination(changes["host"], changes["port"])
        elif kind == "http":
            validate_destination(changes["url"])


def _isoz_text(value: str | None) -> str | None:
    return isoz(parse_time(value))


def _timings(values: dict[str, Any]) -> TimingsOut:
    return TimingsOut(**{k: values.get(k) for k in ("dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "total_ms")})


def result_out(result: CheckResult) -> ResultOut:
    """A stored result or a fresh one (``/test``): the same shape."""
    timings = vars(result.timings)
    return ResultOut(
        checked_at=isoz(result.checked_at) or "",
        region=result.region,
        ok=result.ok,
        degraded=result.degraded,
        status_code=result.status_code,
        response_time_ms=result.response_time_ms,
        timings=_timings(dict(timings or {})),
        error=result.error,
        error_detail=result.error_detail,
        ssl_expires_at=isoz(result.ssl_expires_at),
        assertion_failures=list(result.assertion_failures),
    )


@router.route(
    "POST",
    "/v1/monitors",
    summary="Create a monitor",
    auth="team",
    permission=authz.WRITE,
    scope="monitors:write",
    body=MonitorIn,
    response=MonitorOut,
    status=201,
    errors=(402, 404, 503),  # 503: the key service did not answer (sealing)
)
def create_monitor(call: Call) -> MonitorOut:
    """Refuses targets that resolve to private, loopback, link-local or metadata addresses
    (422 ``destination_not_allowed``)."""
    body = call.body.root
    changes = body.changes()
    changes["type"] = body.type
    _validate_destination(call.user.team_id, body.type, changes)
    config = monitors.MonitorConfig(**monitors.config_fields(changes))
    created = lifecycle.create_monitor(call.user.team_id, config, get_settings().check_regions, utcnow())
    return monitor_out(created, editor=True)


@router.route(
    "GET",
    "/v1/monitors",
    summary="List monitors",
    auth="team",
    permission=authz.READ,
    scope="monitors:read",
    query=ListQuery,
    response=MonitorList,
    errors=(400,),
)
def list_monitors(call: Call) -> MonitorList:
    q = call.query
    found, next_cursor = monitors.list_monitors(
        call.user.team_id, status=q.status, tag=q.tag, limit=q.limit, after=q.cursor
    )
    latest, editor = last_checks(found, utcnow()), may_edit(call)
    return MonitorList(data=[_monitor_out(m, latest, editor=editor) for m in found], next_cursor=next_cursor)


@router.route(
    "GET",
    "/v1/monitors/{monitor_id}",
    summary="A monitor",
    auth="team",
    permission=authz.READ,
    scope="monitors:read",
    response=MonitorOut,
)
def get_monitor(call: Call, monitor_id: str) -> MonitorOut:
    return monitor_out(monitors.get(call.user.team_id, monitor_id), editor=may_edit(call))


@router.route(
    "PATCH",
    "/v1/monitors/{monitor_id}",
    summary="Change a monitor",
    auth="team",
    permission=authz.WRITE,
    scope="monitors:write",
    body=MonitorPatch,
    response=MonitorOut,
    errors=(402, 409, 503),
)
def patch_monitor(call: Call, monitor_id: str) -> MonitorOut:
    """Send only the fields to change.  A value sent back masked (a header, a URL query value, the body or a field
    of it) keeps the stored one, for the same receiver (scheme, host and port) only: with a URL of another one it
    is a 422, and a body holding credentials must be sent again."""
    changes = call.body.changes()
    team_id = call.user.team_id
    regions = get_settings().check_regions
    changed = lifecycle.update_monitor(team_id, monitor_id, changes, regions, utcnow(), partial(_check_target, team_id))
    return monitor_out(changed, editor=True)


def _check_target(team_id: str, changes: dict[str, Any]) -> None:
    """A PATCH's new URL or host through the SSRF guard (422 ``destination_not_allowed``), once the monitor's
    type has allowed the field; looked up as the team's."""
    with lookups_for(team_id):
        if "url" in changes:
            validate_destination(changes["url"])
        if "host" in changes:
            validate_host_destination(changes["host"], changes.get("port"))


@router.route(
    "DELETE",
    "/v1/monitors/{monitor_id}",
    summary="Delete a monitor",
    auth="team",
    permission=authz.MANAGE,
    scope="monitors:write",
    status=204,
)
def delete_monitor(call: Call, monitor_id: str) -> Reply:
    lifecycle.delete_monitor(call.user.team_id, monitor_id, utcnow())
    return Reply(status=204)


@router.route(
    "POST",
    "/v1/monitors/{monitor_id}/pause",
    summary="Pause a monitor",
    auth="team",
    permission=authz.WRITE,
    scope="monitors:write",
    response=MonitorOut,
)
def pause_monitor(call: Call, monitor_id: str) -> MonitorOut:
    """A paused monitor is not checked and opens no incident."""
    return monitor_out(lifecycle.set_monitor_paused(call.user.team_id, monitor_id, True, utcnow()), editor=True)


@router.route(
    "POST",
    "/v1/monitors/{monitor_id}/resume",
    summary="Resume a monitor",
    auth="team",
    permission=authz.WRITE,
    scope="monitors:write",
    response=MonitorOut,
)
def resume_monitor(call: Call, monitor_id: str) -> MonitorOut:
    return monitor_out(lifecycle.set_monitor_paused(call.user.team_id, monitor_id, False, utcnow()), editor=True)


@router.route(
    "POST",
    "/v1/monitors/{monitor_id}/test",
    summary="Run one check now (not stored)",
    auth="team",
    permission=authz.WRITE,
    scope="monitors:write",
    response=ResultOut,
    errors=(409, 429, 503),
)
def test_monitor(call: Call, monitor_id: str) -> ResultOut:
    """One check from one region, returned and not stored; the same SSRF guard applies.  A heartbeat monitor is not
    checked (409): its job pings it.  A team runs at most 30 every 10 minutes (429 with ``Retry-After``)."""
    monitor = monitors.get(call.user.team_id, monitor_id)
    return result_out(run_test_check(monitor))


@router.route(
    "POST",
    "/v1/monitors/{monitor_id}/rotate-ping-token",
    summary="Give a heartbeat monitor a new ping URL",
    auth="team",
    permission=authz.WRITE,
    scope="monitors:write",
    response=MonitorOut,
    errors=(409,),
)
def rotate_ping_token(call: Call, monitor_id: str) -> MonitorOut:
    """The old ping URL is refused (404) from now on.  Another type of monitor has no ping URL (409)."""
    return monitor_out(monitors.rotate_ping_token(call.user.team_id, monitor_id, utcnow()), editor=True)


class PingsQuery(Schema):
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=2048)


class PingOut(Out):
    received_at: str
    kind: Literal["ping", "start", "fail"]
    source_ip: str | None
    user_agent: str | None
    body: str | None = Field(description="the first 10 KB of a POST's body, as text")


class PingList(Out):
    data: list[PingOut]
    next_cursor: str | None


@router.route(
    "GET",
    "/v1/monitors/{monitor_id}/pings",
    summary="A heartbeat monitor's pings as received, newest first",
    auth="team",
    permission=authz.READ,
    scope="monitors:read",
    query=PingsQuery,
    response=PingList,
    errors=(400,),
)
def list_pings(call: Call, monitor_id: str) -> PingList:
    """Kept 30 days.  Empty for a monitor of another type."""
    team_id = call.user.team_id
    monitors.get(team_id, monitor_id)  # 404 unless the team's
    found, next_cursor = heartbeats.list_pings(team_id, monitor_id, limit=call.query.limit, after=call.query.cursor)
    return PingList(
        data=[
            PingOut(
                received_at=isoz(parse_time(p.key.split("#", 1)[0])) or "",
                kind=p.kind,  # type: ignore[arg-type]
                source_ip=p.source_ip,
                user_agent=p.user_agent,
                body=p.body,
            )
            for p in found
        ],
        next_cursor=next_cursor,
    )


@router.route(
    "GET",
    "/v1/monitors/{monitor_id}/results",
    summary="Check results, newest first",
    auth="team",
    permission=authz.READ,
    scope="monitors:read",
    query=ResultsQuery,
    response=ResultList,
    errors=(400,),
)
def list_results(call: Call, monitor_id: str) -> ResultList:
    """None planned longer ago than the plan's ``result_retention_days`` (7, 30 or 90), whatever ``since`` asks."""
    q = call.query
    known = (*get_settings().check_regions, heartbeats.REGION)
    if q.region is not None and q.region not in known:
        # Refused before any read: a region no check ever ran in would read the monitor's whole history for nothing.
        raise errors.ValidationFailed.single("region", f"must be one of {', '.join(known)}")
    found, next_cursor = lifecycle.list_results(
        call.user.team_id,
        monitor_id,
        region=q.region,
        since=q.since,
        until=q.until,
        limit=q.limit,
        after=q.cursor,
        now=utcnow(),
    )
    return ResultList(data=[result_out(r) for r in found], next_cursor=next_cursor)


@router.route(
    "GET",
    "/v1/monitors/{monitor_id}/uptime",
    summary="Uptime over 24 h to 90 days, and per day",
    auth="team",
    permission=authz.READ,
    scope="monitors:read",
    query=UptimeQuery,
    response=UptimeOut,
)
def get_uptime(call: Call, monitor_id: str) -> UptimeOut:
    """Read from daily (and hourly) rollups, never summed from raw results."""
    found = monitor_results.uptime(call.user.team_id, monitor_id, call.query.days, utcnow())
    return UptimeOut(
        uptime=found.windows,  # type: ignore[arg-type]
        days=[DayOut(**vars(day)) for day in found.days],
    )
