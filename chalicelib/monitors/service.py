"""Monitors: create, read, change, pause, delete, and the schedule key they live under.

Every read and write is keyed by ``(team_id, monitor_id)``: a monitor of another
team simply does not exist for the caller (404), by construction.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from chalicelib import errors
from chalicelib.checks.marking import Watch
from chalicelib.ids import new_id
from chalicelib.masking import (
    MaskedWithoutValue,
    is_sensitive_header,
    masked_body,
    origin,
    restore_body,
    restore_masked,
    restore_url,
)
from chalicelib.monitors import credentials, heartbeats
from chalicelib.monitors.models import MonitorModel
from chalicelib.monitors.watching import note, note_one, watch_of
from chalicelib.storage import cursor
from chalicelib.storage.base import (
    Counter,
    condition_failed,
    counted_transaction,
    load_team_item,
    retry_lost_races,
)

INTERVALS = (30, 60, 120, 300, 600, 900, 1800, 3600)
STATUSES = ("pending", "up", "degraded", "down", "paused", "maintenance")
SAVE_ATTEMPTS = 4
TYPES = ("http", "tcp", "heartbeat")
# The fields every type has; those of every type Vigil checks (not a heartbeat's: it is pinged); and each type's
# own.  A monitor's type never changes.
COMMON_FIELDS = frozenset(("name", "channel_ids", "tags"))
CHECKED_FIELDS = frozenset(
    (
        "interval_seconds",
        "timeout_ms",
        "regions",
        "verify_ssl",
        "degraded_after_ms",
        "ssl_expiry_alert_days",
        "failure_threshold",
        "recovery_threshold",
        "confirmation_regions",
    )
)
TYPE_FIELDS = {
    "http": frozenset(("url", "method", "headers", "body", "expected_status", "follow_redirects", "assertions")),
    "tcp": frozenset(("host", "port", "tls")),
    heartbeats.TYPE: frozenset(("period_seconds", "grace_seconds")),
}


def fields_of(kind: str) -> frozenset[str]:
    """The fields a monitor of ``kind`` has (as the API names them)."""
    return COMMON_FIELDS | TYPE_FIELDS[kind] | (CHECKED_FIELDS if kind != heartbeats.TYPE else frozenset())


def config_fields(changes: dict[str, Any]) -> dict[str, Any]:
    """The API's fields as :class:`MonitorConfig` names them: a heartbeat's period is its ``interval_seconds``."""
    out = dict(changes)
    if "period_seconds" in out:
        out["interval_seconds"] = out.pop("period_seconds")
    return out


def _save_counted(item: MonitorModel, counter: Counter | None, **save: Any) -> None:
    """Save the monitor, in one transaction with ``counter``'s step (the plan's active monitors) when there is one."""
    if counter is None:
        item.save(**save)
    else:
        counted_transaction(counter, lambda t: t.save(item, **save))


@dataclass(frozen=True)
class MonitorConfig:
    """What a user sets.  Validated at the API edge; ``None`` fields take their defaults."""

    name: str
    url: str = ""  # type http
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    interval_seconds: int = 60
    timeout_ms: int = 10000
    regions: tuple[str, ...] = ()
    expected_status: tuple[str, ...] = ("2xx",)
    follow_redirects: bool = True
    verify_ssl: bool = True
    assertions: tuple[dict[str, Any], ...] = ()
    degraded_after_ms: int | None = None
    ssl_expiry_alert_days: int = 14
    failure_threshold: int = 2
    recovery_threshold: int = 1
    confirmation_regions: int | None = None
    channel_ids: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    type: str = "http"  # one of TYPES
    host: str | None = None  # type tcp
    port: int | None = None  # type tcp
    tls: bool = False  # type tcp
    grace_seconds: int = heartbeats.GRACE_DEFAULT_SECONDS  # type heartbeat (its period is interval_seconds)

    @property
    def target(self) -> str:
        """What the monitor checks, as one string: its URL, or ``tcp://host:port`` (``tcps://`` over TLS); nothing
        for a heartbeat, which is pinged (its ping URL is not for the places a notification goes)."""
        if self.type == heartbeats.TYPE:
            return ""
        if self.type == "tcp":
            host = f"[{self.host}]" if self.host and ":" in self.host else self.host
            return f"{'tcps' if self.tls else 'tcp'}://{host}:{self.port}"
        return self.url


@dataclass(frozen=True)
class Monitor:
    id: str
    team_id: str
    config: MonitorConfig
    status: str
    paused: bool
    region_status: dict[str, str]
    last_checked_at: datetime | None
    created_at: datetime
    updated_at: datetime
    advisories: tuple[dict[str, Any], ...] = ()
    ping_token: str | None = None  # type heartbeat
    last_ping_at: datetime | None = None  # type heartbeat


def schedule_key(monitor_id: str, interval_seconds: int) -> str:
    """``<interval>:<phase>`` — the phase spreads monitors of one interval evenly over its minutes, stably."""
    minutes = max(1, interval_seconds // 60)
    phase = int(hashlib.sha256(monitor_id.encode()).hexdigest()[:8], 16) % minutes
    return f"{interval_seconds}:{phase}"


def to_monitor(item: MonitorModel) -> Monitor:
    config = MonitorConfig(
        name=item.name,
        url=item.url or "",
        method=item.method,
        headers=dict(item.headers.as_dict() if hasattr(item.headers, "as_dict") else item.headers or {}),
        body=item.body,
        interval_seconds=int(item.interval_seconds),
        timeout_ms=int(item.timeout_ms),
        regions=_strs(item.regions),
        expected_status=_strs(item.expected_status),
        follow_redirects=bool(item.follow_redirects),
        verify_ssl=bool(item.verify_ssl),
        assertions=tuple(item.assertions or ()),
        degraded_after_ms=int(item.degraded_after_ms) if item.degraded_after_ms is not None else None,
        ssl_expiry_alert_days=int(item.ssl_expiry_alert_days),
        failure_threshold=int(item.failure_threshold),
        recovery_threshold=int(item.recovery_threshold),
        confirmation_regions=int(item.confirmation_regions),
        channel_ids=_strs(item.channel_ids),
        tags=_strs(item.tags),
        type=item.type or "http",
        host=item.host,
        port=int(item.port) if item.port is not None else None,
        tls=bool(item.tls),
        grace_seconds=int(item.grace_seconds) if item.grace_seconds is not None else heartbeats.GRACE_DEFAULT_SECONDS,
    )
    region_status = dict(item.region_status.as_dict() if hasattr(item.region_status, "as_dict") else {})
    return Monitor(
        id=item.monitor_id,
        team_id=item.team_id,
        config=config,
        status="paused" if item.paused else item.status,
        paused=bool(item.paused),
        region_status={r: region_status.get(r, "pending") for r in config.regions},
        last_checked_at=item.last_checked_at,
        created_at=item.created_at,
        updated_at=item.updated_at,
        advisories=() if item.paused else tuple(item.advisories or ()),
        ping_token=item.ping_token,
        last_ping_at=item.last_ping_at,
    )


def _strs(values: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in values or ())


def _as_list(values: tuple[str, ...]) -> Any:
    return list(values)


def _complete(config: MonitorConfig, all_regions: tuple[str, ...]) -> MonitorConfig:
    """Fill defaults that depend on other fields and check the rules that span fields."""
    if config.type == heartbeats.TYPE:  # pinged, not checked: one place, and a miss or a failure is an outage
        return replace(
            config,
            regions=(heartbeats.REGION,),
            confirmation_regions=1,
            failure_threshold=1,
            recovery_threshold=1,
            degraded_after_ms=None,
        )
    regions = config.regions or all_regions
    unknown = [r for r in regions if r not in all_regions]
    if unknown:
        raise errors.ValidationFailed.single(
            "regions", f"unknown region(s) {', '.join(unknown)}; available: {', '.join(all_regions)}"
        )
    regions = tuple(dict.fromkeys(regions))
    quorum = config.confirmation_regions or len(regions) // 2 + 1
    problems = []
    if quorum > len(regions):
        problems.append(errors.FieldError("confirmation_regions", f"must be at most the {len(regions)} region(s)"))
    if config.degraded_after_ms is not None and config.degraded_after_ms >= config.timeout_ms:
        problems.append(errors.FieldError("degraded_after_ms", "must be less than timeout_ms"))
    if problems:
        raise errors.ValidationFailed(problems)
    return replace(config, regions=regions, confirmation_regions=quorum)


def _fits_one_job(config: MonitorConfig) -> None:
    """422 when the check would be too big to send (``monitors.checking.check_job_size``): at creation, and when a
    change touches what makes it big.  Never for other changes, nor a plan's downgrade: a monitor saved before the
    bound keeps working as it is."""
    from chalicelib.monitors.checking import check_job_size  # it builds on this module

    check_job_size(config)


def require_team_monitors(team_id: str, monitor_ids: list[str]) -> None:
    """404 naming the first id that is not a monitor of this team (one BatchGetItem for all of them)."""
    keys = [(team_id, m) for m in dict.fromkeys(monitor_ids)]
    if not keys:
        return
    found = {m.monitor_id for m in MonitorModel.batch_get(keys, attributes_to_get=["team_id", "monitor_id"])}
    for monitor_id in monitor_ids:
        if monitor_id not in found:
            raise errors.NotFound(f"No monitor {monitor_id} in this team.")


def _apply(item: MonitorModel, config: MonitorConfig) -> None:
    item.name = config.name
    item.type = None if config.type == "http" else config.type  # absent: http, as every monitor before types
    item.url = config.url if config.type == "http" else None
    item.host = config.host if config.type == "tcp" else None
    item.port = config.port if config.type == "tcp" else None
    item.tls = config.tls if config.type == "tcp" else None
    item.grace_seconds = config.grace_seconds if config.type == heartbeats.TYPE else None
    item.method = config.method
    item.headers = dict(config.headers)  # type: ignore[assignment]
    item.body = config.body
    item.interval_seconds = config.interval_seconds
    item.timeout_ms = config.timeout_ms
    item.regions = _as_list(config.regions)
    item.expected_status = _as_list(config.expected_status)
    item.follow_redirects = config.follow_redirects
    item.verify_ssl = config.verify_ssl
    item.assertions = list(config.assertions)
    item.degraded_after_ms = config.degraded_after_ms
    item.ssl_expiry_alert_days = config.ssl_expiry_alert_days
    item.failure_threshold = config.failure_threshold
    item.recovery_threshold = config.recovery_threshold
    item.confirmation_regions = config.confirmation_regions or 1
    item.channel_ids = _as_list(config.channel_ids)
    item.tags = _as_list(config.tags)
    checked = not item.paused and config.type != heartbeats.TYPE  # a heartbeat waits for pings (heartbeats.sweep)
    item.schedule_key = schedule_key(item.monitor_id, config.interval_seconds) if checked else None


def create(
    team_id: str,
    config: MonitorConfig,
    all_regions: tuple[str, ...],
    now: datetime,
    *,
    check_channels: Callable[[tuple[str, ...]], None],
    counter: Counter | None = None,
    default_regions: tuple[str, ...] | None = None,
) -> Monitor:
    """Save a new monitor: its config completed and validated (422; ``default_regions`` when it names none, all
    by default), then ``check_channels`` (the caller's: the ids must be the team's alert channels, 404), then the
    write, with ``counter``'s step (the plan's limit).  Its credential headers are stored sealed
    (``monitors.credentials``)."""
    if not config.regions and default_regions:
        config = replace(config, regions=default_regions)
    config = _complete(config, all_regions)
    _fits_one_job(config)
    check_channels(config.channel_ids)
    item = MonitorModel(team_id, new_id("mon"), status="pending", paused=False, created_at=now, updated_at=now)
    _apply(item, replace(config, headers=credentials.sealed(team_id, item.monitor_id, config.headers, {})))
    if config.type == heartbeats.TYPE:
        heartbeats.arm(item, since=now)
        heartbeats.create(item, counter)
    else:
        _save_counted(item, counter, condition=MonitorModel.monitor_id.does_not_exist())
    return to_monitor(item)


def _load(team_id: str, monitor_id: str) -> MonitorModel:
    return load_team_item(MonitorModel, team_id, monitor_id, "monitor")


def get(team_id: str, monitor_id: str) -> Monitor:
    return to_monitor(_load(team_id, monitor_id))


def find(team_id: str, monitor_id: str) -> Monitor | None:
    """The team's monitor, or None once deleted (an eventually consistent read: for notifications and pages)."""
    return get_many(team_id, [monitor_id]).get(monitor_id)


def get_many(team_id: str, monitor_ids: list[str], *, consistent: bool = False) -> dict[str, Monitor]:
    """The team's monitors among these ids, by id (one BatchGetItem per 100); ids of none are left out."""
    keys = [(team_id, m) for m in dict.fromkeys(monitor_ids)]
    if not keys:
        return {}
    return {item.monitor_id: to_monitor(item) for item in MonitorModel.batch_get(keys, consistent_read=consistent)}


def scheduled(key: str) -> list[tuple[Monitor, Watch]]:
    """The active monitors under one schedule key (``<interval>:<phase>``: the sparse index holds only those
    that are checked), each with what marks its results (``monitors.watching``)."""
    return [
        (to_monitor(item), watch_of(item))
        for item in MonitorModel.by_schedule.query(key, page_size=500)
        if not item.paused
    ]


def team_of(monitor_id: str) -> str | None:
    """The team a monitor belongs to (the public badge knows only the monitor's id), or None."""
    found = list(MonitorModel.by_id.query(monitor_id, limit=1))
    return found[0].team_id if found else None


def _change(team_id: str, monitor_id: str, change: Callable[[MonitorModel], Counter | None]) -> MonitorModel:
    """Load, change, save under the version (with the counter step ``change`` returns, if any).  The incident
    handler writes the monitor too (its status), so a version conflict reloads and applies the change again: a
    user's edit never loses to a status update, and the status is never written back stale."""

    def attempt() -> MonitorModel:
        item = _load(team_id, monitor_id)
        _save_counted(item, change(item))
        return item

    saved = retry_lost_races(attempt, attempts=SAVE_ATTEMPTS)
    note_one(team_id, monitor_id)  # the workers read it again for the checks the tick already planned
    return saved


def update(
    team_id: str,
    monitor_id: str,
    changes: dict[str, Any],
    all_regions: tuple[str, ...],
    now: datetime,
    *,
    check_channels: Callable[[tuple[str, ...]], None],
    check_target: Callable[[dict[str, Any]], None],
) -> Monitor:
    """Apply a partial change: the monitor is loaded (404), the change checked against its type, then its new
    target by ``check_target`` (the SSRF guard: 422), completed and validated (422), new channel ids checked by
    ``check_channels`` (404), then saved.  A header, URL query value or body (or a body's field) sent back masked
    keeps its stored value, for the same receiver only: a URL moved to another scheme, host or port leaves the
    stored credentials behind (its sensitive headers dropped, a body holding credentials refused).  A new credential
    header is sealed (``monitors.credentials``).  The schedule key moves in the same write, so the next tick sees a
    new interval at once."""

    def change(item: MonitorModel) -> None:
        current = to_monitor(item).config
        _same_type(current.type, changes)  # before any lookup: another type's host or URL is refused unresolved
        wanted = config_fields(changes)
        check_target(wanted)
        _keep_stored(current, wanted)
        if "regions" in wanted and "confirmation_regions" not in wanted:
            wanted["confirmation_regions"] = None  # back to the majority of the new regions
        config = _complete(replace(current, **wanted), all_regions)
        if wanted.keys() & {"body", "headers", "assertions", "url", "method"}:
            _fits_one_job(config)
        if "channel_ids" in wanted:
            check_channels(config.channel_ids)
        _apply(item, replace(config, headers=credentials.sealed(team_id, monitor_id, config.headers, current.headers)))
        if config.type == heartbeats.TYPE and (config.interval_seconds, config.grace_seconds) != (
            current.interval_seconds,
            current.grace_seconds,
        ):
            heartbeats.rearm(item, now)
        item.updated_at = now

    return to_monitor(_change(team_id, monitor_id, change))


def _keep_stored(current: MonitorConfig, wanted: dict[str, Any]) -> None:
    """Each value of ``wanted`` sent back masked (a header, a URL query value, the body or a field of it) takes its
    stored value.  A stored credential never follows the monitor to another receiver (scheme, host and port): there,
    a masked value is a 422, sensitive headers are dropped and a body holding credentials must be sent again —
    whoever may edit the URL must send the values themselves, as for a webhook channel."""
    moved = bool(wanted.get("url")) and bool(current.url) and origin(wanted["url"]) != origin(current.url or "")
    kept = {} if moved else dict(current.headers or {})
    if "headers" in wanted and wanted["headers"] is not None:
        with _masked_keeps("headers", "an existing header"):
            wanted["headers"] = restore_masked(dict(wanted["headers"]), kept)
    elif moved and current.headers:
        wanted["headers"] = {k: v for k, v in current.headers.items() if not is_sensitive_header(k)}
    if wanted.get("url"):
        with _masked_keeps("url", "the stored value of the same query parameter"):
            wanted["url"] = restore_url(wanted["url"], "" if moved else current.url)
    if "body" in wanted:
        with _masked_keeps("body", "the stored body (or the stored value of the same field)"):
            wanted["body"] = restore_body(wanted["body"], None if moved else current.body)
    elif moved and masked_body(current.body) != current.body:
        raise errors.ValidationFailed.single(
            "body", "holds credentials for the old receiver (scheme, host and port): send the body again"
        )


@contextlib.contextmanager
def _masked_keeps(field: str, what: str) -> Iterator[None]:
    """A masked value sent back with nothing to keep is a 422 naming ``field``: the mask is never stored."""
    try:
        yield
    except MaskedWithoutValue:
        raise errors.ValidationFailed.single(
            field,
            f"a masked value can only keep {what} of the same receiver (scheme, host and port); send the value itself",
        ) from None


def seal_stored(team_id: str, monitor_id: str) -> bool:
    """Seal a monitor's credential headers stored before sealing (``infra/seal.py``), as a change would; True if
    one was.  A concurrent write is read again (the version); a monitor deleted meanwhile stays deleted."""
    sealed: list[bool] = []

    def change(item: MonitorModel) -> None:
        headers = dict(item.headers.as_dict() if hasattr(item.headers, "as_dict") else item.headers or {})
        new = credentials.sealed(team_id, monitor_id, headers, headers)
        sealed[:] = [new != headers]
        item.headers = new  # type: ignore[assignment]

    try:
        _change(team_id, monitor_id, change)
    except errors.NotFound:
        return False
    return bool(sealed and sealed[0])


def _same_type(kind: str, changes: dict[str, Any]) -> None:
    """422 for a change of type, or of a field another type has: a monitor's type is fixed at its creation."""
    problems = []
    if changes.get("type", kind) != kind:
        problems.append(
            errors.FieldError("type", f"{_a(kind).capitalize()} monitor stays one; create a new monitor instead")
        )
    problems += [
        errors.FieldError(name, f"not a field of {_a(kind)} monitor")
        for name in sorted(changes.keys() - fields_of(kind) - {"type"})
    ]
    if problems:
        raise errors.ValidationFailed(problems)


def _a(kind: str) -> str:
    return f"an {kind}" if kind == "http" else f"a {kind}"


def set_paused(
    team_id: str,
    monitor_id: str,
    paused: bool,
    now: datetime,
    *,
    counter: Callable[[int], Counter | None] = lambda delta: None,
) -> tuple[Monitor, bool]:
    """Pause or resume; the monitor, and whether it was paused before.  A paused monitor leaves the schedule index
    in the same write: it is not checked.  A monitor that becomes active (or stops being) moves ``counter(+1)``
    (or ``counter(-1)``) in the same transaction: a resume beyond the plan's limit is refused."""
    before: list[bool] = []

    def change(item: MonitorModel) -> Counter | None:
        before[:] = [bool(item.paused)]  # the last attempt's read (a lost race reloads)
        heartbeat = item.type == heartbeats.TYPE
        if heartbeat and paused:
            heartbeats.disarm(item)
        elif heartbeat and item.paused:  # resumed: a new wait begins now
            heartbeats.arm(item, since=now)
        item.paused = paused
        checked = not paused and not heartbeat
        item.schedule_key = schedule_key(item.monitor_id, int(item.interval_seconds)) if checked else None
        item.updated_at = now
        return counter(-1 if paused else 1) if paused != before[0] else None

    monitor = to_monitor(_change(team_id, monitor_id, change))
    return monitor, before[0]


def rotate_ping_token(team_id: str, monitor_id: str, now: datetime) -> Monitor:
    """A heartbeat monitor's new ping token: the old one is refused from this write on (409 for another type)."""

    def attempt() -> MonitorModel:
        item = _load(team_id, monitor_id)
        if item.type != heartbeats.TYPE:
            raise errors.Conflict(f"{_a(item.type or 'http').capitalize()} monitor has no ping URL.")
        item.updated_at = now
        heartbeats.rotate(item)
        return item

    return to_monitor(retry_lost_races(attempt, attempts=SAVE_ATTEMPTS))


def delete(team_id: str, monitor_id: str, *, counter: Callable[[int], Counter | None] = lambda delta: None) -> Monitor:
    """Delete the monitor; returns it as it was.  An active one moves ``counter(-1)`` in the same transaction."""
    item = retry_lost_races(lambda: _delete(_load(team_id, monitor_id), counter), attempts=SAVE_ATTEMPTS)
    note_one(team_id, monitor_id)  # the checks the tick already planned are dropped
    return to_monitor(item)


def _delete(item: MonitorModel, counter: Callable[[int], Counter | None]) -> MonitorModel:
    """Delete a loaded monitor as it was read (its version: a pause, a resume or a rotated ping token since is a
    lost race, to read again), with its count and its ping token in the same transaction."""
    step = None if item.paused else counter(-1)
    if step is None and item.type != heartbeats.TYPE:
        item.delete()
        return item
    counted_transaction(step, functools.partial(_delete_steps, item))
    return item


def _delete_steps(item: MonitorModel, t: Any) -> None:
    t.delete(item)
    heartbeats.forget(t, item)


def unlink_channel(team_id: str, channel_id: str) -> None:
    """A deleted alert channel leaves every monitor of the team that named it."""
    for monitor in MonitorModel.query(team_id, filter_condition=MonitorModel.channel_ids.contains(channel_id)):
        remaining = [c for c in monitor.channel_ids if c != channel_id]
        try:
            monitor.update(
                actions=[MonitorModel.channel_ids.set(remaining)],
                condition=MonitorModel.monitor_id.exists(),  # never recreate a monitor deleted meanwhile
                add_version_condition=False,
            )
        except Exception as exc:
            if not condition_failed(exc):
                raise


def set_maintenance(team_id: str, spans: dict[str, list[tuple[datetime, datetime]]]) -> None:
    """Write on each monitor the [start, end) of its maintenance windows not ended: the tick reads them into its
    jobs (and a worker reads them again for a monitor noted since) to mark the results the incident handler must
    see (``checks.marking``).  A monitor deleted meanwhile stays deleted."""
    if not spans:
        return
    written = []
    try:
        for monitor in MonitorModel.batch_get([(team_id, m) for m in spans]):
            value = [[start.isoformat(), end.isoformat()] for start, end in sorted(spans[monitor.monitor_id])]
            if value == list(monitor.maintenance or []):
                continue
            try:
                monitor.update(
                    actions=[MonitorModel.maintenance.set(value)],
                    condition=MonitorModel.monitor_id.exists(),
                    add_version_condition=False,
                )
                written.append((team_id, monitor.monitor_id))
            except Exception as exc:
                if not condition_failed(exc):
                    raise
    finally:
        note(written)


def fit_to_plan(
    team_id: str, *, min_interval: int, max_regions: int | None, all_regions: tuple[str, ...], now: datetime
) -> list[tuple[Monitor, list[str]]]:
    """A plan's lower limits, applied to every monitor of the team: an interval below ``min_interval`` is raised to
    it, regions beyond ``max_regions`` dropped (the first ones kept, the quorum back to their majority).  The
    monitors changed, each with what changed, in words."""
    changed = []
    for item in MonitorModel.query(team_id, page_size=100):
        config = to_monitor(item).config
        if config.type == heartbeats.TYPE:
            continue  # a period of at least a minute, and one place: within every plan
        wanted: dict[str, Any] = {}
        said = []
        if config.interval_seconds < min_interval:
            wanted["interval_seconds"] = min(i for i in INTERVALS if i >= min_interval)
            said.append(f"checked every {wanted['interval_seconds']} s instead of {config.interval_seconds} s")
        if max_regions is not None and len(config.regions) > max_regions:
            wanted["regions"] = config.regions[:max_regions]
            wanted["confirmation_regions"] = None
            said.append(f"checked from {', '.join(wanted['regions'])} only")
        if not wanted:
            continue

        def change(loaded: MonitorModel, wanted: dict[str, Any] = wanted) -> None:
            _apply(loaded, _complete(replace(to_monitor(loaded).config, **wanted), all_regions))
            loaded.updated_at = now

        changed.append((to_monitor(_change(team_id, item.monitor_id, change)), said))
    return changed


def newest_active(team_id: str) -> list[Monitor]:
    """The team's monitors not paused, the most recently created first."""
    found = [to_monitor(item) for item in MonitorModel.query(team_id, page_size=100) if not item.paused]
    return sorted(found, key=lambda m: m.created_at, reverse=True)


def count_active(team_id: str) -> int:
    """The team's monitors not paused (what the plan's ``monitors`` limit counts)."""
    return sum(
        1
        for m in MonitorModel.query(
            team_id, attributes_to_get=["team_id", "monitor_id", "paused"], page_size=500, consistent_read=True
        )
        if not m.paused
    )


def team_monitor_ids(team_id: str) -> list[str]:
    return [m.monitor_id for m in MonitorModel.query(team_id, attributes_to_get=["team_id", "monitor_id"])]


def _purge_one(team_id: str, monitor_id: str) -> MonitorModel | None:
    try:
        item = _load(team_id, monitor_id)
    except errors.NotFound:
        return None  # deleted meanwhile
    return _delete(item, lambda delta: None)


def purge_team(team_id: str) -> None:
    """Delete every monitor of a team (team deletion; its counters go with it)."""
    deleted = []
    try:
        for found in MonitorModel.query(team_id):
            retry_lost_races(functools.partial(_purge_one, team_id, found.monitor_id))
            deleted.append((team_id, found.monitor_id))
    finally:
        note(deleted)


def list_monitors(
    team_id: str, *, status: str | None, tag: str | None, limit: int, after: str | None
) -> tuple[list[Monitor], str | None]:
    """A page of the team's monitors, oldest first, filtered; the cursor is signed for this team and list."""
    condition: Any = None
    if status == "paused":
        condition = MonitorModel.paused == True  # noqa: E712 - a PynamoDB condition, not a comparison
    elif status is not None:
        condition = (MonitorModel.status == status) & (MonitorModel.paused == False)  # noqa: E712
    if tag is not None:
        tag_condition = MonitorModel.tags.contains(tag)
        condition = tag_condition if condition is None else condition & tag_condition
    page, next_cursor = cursor.paginate(
        lambda start: MonitorModel.query(team_id, filter_condition=condition, last_evaluated_key=start, page_size=100),
        team_id=team_id,
        scope=f"monitors|{status or ''}|{tag or ''}",
        limit=limit,
        after=after,
        key=("team_id", "monitor_id"),
    )
    return [to_monitor(item) for item in page], next_cursor
