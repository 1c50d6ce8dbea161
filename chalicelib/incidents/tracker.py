"""The incident handler's core: fold a monitor's new check results into its state, and write what follows.

For each monitor, :func:`apply_results` loads the monitor, its state item, its open incident and the maintenance
windows over the results' span; folds the results in check-time order through :func:`incidents.state.apply`; and
writes, in **one transaction**:

- the state item, conditional on its version (a concurrent handler or a retry that applied the same results
  first makes this one start over from the new state, where those results are no longer newer: no-ops);
- the monitor's ``status``, ``region_status``, ``last_checked_at``, ``advisories`` and ``steady_regions`` (what the
  worker marks results by, ``checks.marking``);
- the incident (created under an id derived from the monitor and the time the quorum was reached, so even a
  replay that slipped past the state could only rewrite the same incident), and its timeline entries;
- monitor events (degraded, certificate expiring).

A result older than the last applied for its region changes nothing, so duplicated, replayed and out-of-order
stream records are harmless; a result checked before the last resolution never opens an incident.

A maintenance window's start and end go through the same run and writes (:func:`cross_maintenance`): the
scheduler's tick crosses them at their minute (``incidents.edges``), a window's change at once (``lifecycle``),
and a result past one that nothing crossed yet crosses it first (``incidents.state``, point 6).

Nothing is written for a result that changes nothing material (``incidents.state.material``: another failure of a
region already down, an up check while the status is degraded…): only its check time would move, and the monitor's
``last_checked_at`` is read from the results themselves (``monitors.results.latest_checks``).  The worker leaves
out the results that could not change anything at all (``checks.marking``), so most never come here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pynamodb.exceptions import PutError, TransactWriteError, UpdateError

from chalicelib.checks import model as check
from chalicelib.ids import derived_id
from chalicelib.incidents import events
from chalicelib.incidents.maintenance import Window, covering, open_windows
from chalicelib.incidents.models import EventModel, IncidentModel, MonitorStateModel, status_key
from chalicelib.incidents.state import (
    Event,
    Observation,
    Policy,
    Span,
    apply,
    down_regions,
    dump,
    knowledge,
    load,
    maintenance_edge,
    material,
    steady_regions,
)
from chalicelib.monitors.models import MonitorModel
from chalicelib.monitors.watching import note_one, watch_of
from chalicelib.observability import logger, metrics
from chalicelib.storage.base import condition_failed, lost_race, retry_lost_races, transaction

if TYPE_CHECKING:
    from chalicelib.monitors.service import Monitor

ATTEMPTS = 6
MAX_WRITES = 60  # items per transaction (DynamoDB allows 100); more results are applied in several
SSL_THRESHOLDS = (7, 3, 1)  # days, besides the monitor's own ssl_expiry_alert_days

CAUSES = {
    check.TIMEOUT: "timeout",
    check.DNS_FAILURE: "DNS lookup failed",
    check.CONNECTION_REFUSED: "connection refused",
    check.CONNECTION_RESET: "connection reset",
    check.CONNECTION_FAILED: "connection failed",
    check.TLS_ERROR: "TLS handshake failed",
    check.CERTIFICATE_EXPIRED: "certificate expired",
    check.CERTIFICATE_INVALID: "certificate invalid",
    check.INVALID_RESPONSE: "invalid response",
    check.TOO_MANY_REDIRECTS: "too many redirects",
    check.BODY_TOO_LARGE: "response too large",
    check.DESTINATION_NOT_ALLOWED: "destination not allowed",
    check.PING_MISSED: "no ping in time",
    check.RUN_UNFINISHED: "run did not finish in time",
    check.FAILURE_REPORTED: "the job reported a failure",
}


@dataclass(frozen=True)
class Result:
    """What the handler reads of a stored check result."""

    team_id: str
    monitor_id: str
    region: str
    checked_at: datetime
    ok: bool
    degraded: bool = False
    status_code: int | None = None
    error: str | None = None
    assertion_failures: tuple[str, ...] = ()
    ssl_expires_at: datetime | None = None
    planned_at: datetime | None = None  # the check's planned start


def _assertion_subject(failure: str) -> str:
    """``json_body $.status equals 'ok' (got "down")`` → ``$.status``; ``status_code less_than '300' …`` →
    ``status_code``."""
    cut = min((i for c in check.COMPARISONS if (i := failure.find(f" {c}")) > 0), default=len(failure))
    subject = failure[:cut]
    for source in check.SOURCES_WITH_PROPERTY:
        if subject.startswith(source + " "):
            return subject[len(source) + 1 :]
    return subject


def cause_of(result: Result) -> str | None:
    """A short, stable reason: "HTTP 503", "timeout", "assertion failed: $.status"."""
    if result.ok:
        return None
    if result.error == check.STATUS_MISMATCH and result.status_code is not None:
        return f"HTTP {result.status_code}"
    if result.error == check.ASSERTION_FAILED:
        if result.assertion_failures:
            return f"assertion failed: {_assertion_subject(result.assertion_failures[0])}"
        return "assertion failed"
    return CAUSES.get(result.error or "", result.error or "check failed")


@dataclass
class _Pending:
    """What one transaction will write: besides the state and the monitor, the incidents changed (an outage can
    open and resolve within one batch, and the next one open), the events, and the timeline entries a flapping
    region pushed out (``events.kept``)."""

    incidents: dict[str, IncidentModel] = field(default_factory=dict)
    items: list[EventModel] = field(default_factory=list)
    dropped: list[EventModel] = field(default_factory=list)

    def size(self) -> int:
        return 2 + len(self.incidents) + len(self.items) + len(self.dropped)

    def drop(self, entry: EventModel) -> None:
        """Delete ``entry`` in this transaction; or, if this transaction was to write it, leave it out (one
        transaction cannot both write and delete an item)."""
        unwritten = [e for e in self.items if (e.subject, e.key) == (entry.subject, entry.key)]
        if unwritten:
            self.items.remove(unwritten[0])
        else:
            self.dropped.append(entry)


@dataclass
class Applied:
    results: int = 0
    opened: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


class _Run:
    """One attempt at applying a monitor's results (restarted from fresh reads on a lost race)."""

    def __init__(
        self,
        monitor: MonitorModel,
        item: MonitorStateModel,
        windows: list[Window],
        now: datetime,
        incident: IncidentModel | None,
    ):
        self.monitor = monitor
        self.item = item
        self.windows = windows
        self.now = now
        self.policy = Policy(
            regions=tuple(str(r) for r in monitor.regions),
            failure_threshold=int(monitor.failure_threshold),
            recovery_threshold=int(monitor.recovery_threshold),
            confirmation_regions=int(monitor.confirmation_regions),
            interval_seconds=int(monitor.interval_seconds),
        )
        self.state = load(item.state)
        self.incident = incident  # the outage's, until it is over
        self.pending = _Pending()
        self.applied = Applied()
        self.dirty = False
        self.stale = False  # the state item's knowledge of the regions moved, and nothing the monitor shows

    # -- folding

    def fold(self, result: Result) -> None:
        obs = Observation(
            result.region, result.checked_at, result.ok, result.degraded, cause_of(result), result.planned_at
        )
        window = covering(self.windows, self.monitor.monitor_id, result.checked_at)
        state, changes = apply(self.state, obs, self.policy, window=window)
        if state == self.state:
            return
        moved = bool(changes) or material(state) != material(self.state) or self._shows_otherwise(state)
        learned = knowledge(state, self.policy) != knowledge(self.state, self.policy)
        self.state = state  # the check time moves on in memory: a later result of the batch is compared with it
        self.applied.results += 1
        if moved:
            self.dirty = True
        elif learned:
            self.stale = True  # only how far the regions have reported: the state item alone
        for change in changes:
            self._on(change)
        if window is None:  # no alert during a window: a certificate still expiring after it is told then
            self._ssl(result)

    def cross(self, at: datetime, window: Span | None) -> None:
        """A maintenance window's edge at ``at``: ``window`` is the span of the windows covering the monitor then."""
        state, changes = maintenance_edge(self.state, self.policy, at, window)
        if state == self.state:
            return
        self.state = state
        self.dirty = True
        for change in changes:
            self._on(change)

    def _shows_otherwise(self, state: Any) -> bool:
        """The monitor shows something else than ``state`` (written before steady_regions existed, or its write
        lost after the state's): written again, or the worker would go on marking its results."""
        m = self.monitor
        shown = dict(m.region_status.as_dict() if hasattr(m.region_status, "as_dict") else m.region_status or {})
        return (
            sorted(str(r) for r in m.steady_regions or ()) != sorted(steady_regions(state, self.policy))
            or m.status != state.status
            or shown != {r: state.region(r).label for r in self.policy.regions}
        )

    def _on(self, change: Event) -> None:
        m = self.monitor
        if change.kind == "incident_opened":
            self._open(change)
        elif change.kind == "incident_started" and self._is_current(change):
            assert self.incident is not None  # a late region's results show the outage began sooner
            self.incident.started_at = min(self.incident.started_at, change.at)
            self._touch()
        elif change.kind == "incident_started":
            self._move_start(change)  # of an incident already resolved
        elif change.kind == "incident_revealed":
            self._found_late(change)
        elif change.kind == "incident_resolved":
            self._resolve(change)
        elif change.kind in ("region_down", "region_up") and self._incident_is_open():
            incident = self.incident
            assert incident is not None
            region = change.region or ""
            kind = events.REGION_DOWN if change.kind == "region_down" else events.REGION_UP
            text = f"Down in {region}: {change.detail}" if change.kind == "region_down" else f"Up in {region}"
            self._timeline(kind, change.at, region, text, discriminator=region)
            if change.kind == "region_down" and region not in incident.affected_regions:
                incident.affected_regions = [*incident.affected_regions, region]  # type: ignore[list-item]
                self._touch()
        elif change.kind in ("maintenance_started", "maintenance_ended") and self._incident_is_open():
            started = change.kind == "maintenance_started"
            kind = events.MAINTENANCE_STARTED if started else events.MAINTENANCE_ENDED
            text = "Maintenance started: no alert until it ends" if started else change.detail or "Maintenance over"
            self._timeline(kind, change.at, None, text, discriminator="")
        elif change.kind == "status_changed":  # status pages republish on it
            self.pending.items.append(
                events.monitor_event(
                    m.team_id,
                    m.monitor_id,
                    events.STATUS_CHANGED,
                    change.at,
                    # from what: a change at the same moment from another status (a resume re-entering a window
                    # at its start) is a new event for the pages, not an overwrite of the tick's
                    discriminator=f"{m.status}>{change.detail}",  # found by a fresh-eyes review of issue 20
                    text=f"Status: {change.detail}",
                    data={"status": change.detail},
                )
            )
        elif change.kind in ("degraded", "degraded_recovered"):
            kind = events.DEGRADED if change.kind == "degraded" else events.DEGRADED_RECOVERED
            text = (
                f"Slower than {m.degraded_after_ms} ms in {change.region}"
                if change.kind == "degraded"
                else f"Back under {m.degraded_after_ms} ms in {change.region}"
            )
            self.pending.items.append(
                events.monitor_event(m.team_id, m.monitor_id, kind, change.at, text=text, region=change.region)
            )
            self.applied.events.append(kind)

    def _incident_is_open(self) -> bool:
        return self.incident is not None and self.incident.status != "resolved"

    def _incident_id(self, key: datetime) -> str:
        """An incident's id, from the moment it was first opened at (``state.Episode.key``)."""
        return derived_id("inc", key, self.monitor.monitor_id)

    def _new_incident(self, incident_id: str, at: datetime, cause: str | None, regions: list[str]) -> IncidentModel:
        m = self.monitor
        return IncidentModel(
            m.team_id,
            incident_id,
            team_status=status_key(m.team_id, "open"),
            monitor_id=m.monitor_id,
            status="open",
            cause=cause,
            started_at=at,
            affected_regions=regions,
            updated_at=self.now,
        )

    def _existing(self, incident_id: str) -> IncidentModel | None:
        """The incident of that id if one is stored (or about to be): a new one's id is derived from its moment."""
        return self.pending.incidents.get(incident_id) or _open_incident(self.monitor.team_id, incident_id)

    def _is_current(self, change: Event) -> bool:
        """``change`` is about the open incident."""
        if not self._incident_is_open():
            return False
        assert self.incident is not None
        return change.incident is None or self._incident_id(change.incident) == self.incident.incident_id

    def _move_start(self, change: Event) -> None:
        """A late region's story shows a resolved incident began sooner: its start moves back (no alert: its
        opening was told, at the moment the others' results showed it)."""
        if change.incident is None:
            return
        incident_id = self._incident_id(change.incident)
        incident = self._existing(incident_id)
        if incident is None:  # opened by a version that did not key incidents by their first moment, or deleted
            logger.info("an earlier start for an incident not found", extra={"incident_id": incident_id})
            return
        if change.at < incident.started_at:
            incident.started_at = change.at
            incident.updated_at = self.now
            self.pending.incidents[incident_id] = incident

    def _found_late(self, change: Event) -> None:
        """An outage a late region's results showed only after it was over, and after a later incident was decided:
        told as one that opened and resolved in one batch is (``_open`` then ``_resolve``), opened and resolved on
        its timeline and alerted as such, without touching the incident open now."""
        incident_id = self._incident_id(change.incident or change.at)
        if self._existing(incident_id) is not None:
            return  # told already (a state that lost its episodes: it is not told twice)
        end = change.until or change.at
        incident = self._new_incident(incident_id, change.at, change.detail, list(change.regions))
        incident.resolve(end, None, self.now)
        self.pending.incidents[incident_id] = incident
        opened = self._down_in(len(change.regions), change.detail)
        late = "; found late: a region's results arrived after it was over"
        for kind, at, text in ((events.OPENED, change.at, opened), (events.RESOLVED, end, "Recovered" + late)):
            self.pending.items.append(events.incident_event(incident, kind, at, discriminator="", text=text))
            self.applied.events.append(kind)
        self.applied.opened.append(incident_id)
        self.applied.resolved.append(incident_id)

    def _down_in(self, count: int, cause: str | None) -> str:
        """An opening's text.  No cause when none is known: an outage found late is told once its regions are up
        again, when none keeps the cause it reported."""
        text = f"Down in {count} of {len(self.policy.regions)} regions"
        return f"{text}: {cause}" if cause else text

    def _touch(self) -> None:
        assert self.incident is not None
        self.incident.updated_at = self.now
        self.pending.incidents[self.incident.incident_id] = self.incident

    def _timeline(self, kind: str, at: datetime, region: str | None, text: str, *, discriminator: str) -> None:
        incident = self.incident
        assert incident is not None
        entry = events.incident_event(incident, kind, at, discriminator=discriminator, text=text, region=region)
        self.pending.items.append(entry)
        if kind in events.REPEATING:  # counted on the incident, which is written with it
            self.pending.incidents[incident.incident_id] = incident
            pushed_out = events.kept(incident, entry)
            if pushed_out is not None:
                self.pending.drop(pushed_out)
        self.applied.events.append(kind)

    def _open(self, change: Event) -> None:
        m = self.monitor
        down = list(change.regions) or down_regions(self.state, self.policy)  # those that made the quorum
        incident_id = self._incident_id(change.incident or change.at)
        incident = self._existing(incident_id)
        if incident is None:
            incident = self._new_incident(incident_id, change.at, change.detail, down)
        else:
            # The same opening moment decided again by a state begun afresh (a resume deletes it; a window moved
            # into the past re-crosses what was decided): the incident of that moment opens again — written as new,
            # its version condition would fail every retry and the monitor's results would never be applied again.
            logger.warning("an incident opened again", extra={"monitor_id": m.monitor_id, "incident_id": incident_id})
            incident.set_status("acknowledged" if incident.acknowledged_at is not None else "open")  # as it was told
            incident.started_at, incident.cause = change.at, change.detail
            incident.affected_regions = down  # type: ignore[assignment]
            incident.resolved_at = incident.resolved_by = None
            # Its first opening's entries are keyed by the same moments: this one's are keyed apart, or they would
            # overwrite those — a change the alert and status-page handlers never see — and go untold.
            incident.openings = int(incident.openings or 1) + 1
        self.incident = incident
        self._touch()
        self.item.incident_id = incident_id
        for region in down:
            since = self.state.region(region).down_since or change.at
            cause = self.state.region(region).cause
            self._timeline(events.REGION_DOWN, since, region, f"Down in {region}: {cause}", discriminator=region)
        text = self._down_in(len(down), change.detail)
        self._timeline(events.OPENED, change.at, None, text, discriminator=_opening(incident))
        self.applied.opened.append(incident_id)

    def _resolve(self, change: Event) -> None:
        incident = self.incident
        self.item.incident_id = None
        if incident is None or incident.status == "resolved":  # resolved by hand already: nothing to add
            self.incident = None
            return
        incident.resolve(change.at, None, self.now)
        self._touch()
        text = change.detail or "Recovered"
        self._timeline(events.RESOLVED, change.at, None, text, discriminator=_opening(incident))
        self.applied.resolved.append(incident.incident_id)
        self.incident = None

    def _ssl(self, result: Result) -> None:
        """One ``ssl.expiring`` per certificate per threshold: the tightest threshold crossed, once."""
        days = int(self.monitor.ssl_expiry_alert_days or 0)
        expires = result.ssl_expires_at
        if days <= 0 or expires is None:
            return
        left = (expires - result.checked_at).total_seconds() / 86400
        thresholds = sorted({days, *(t for t in SSL_THRESHOLDS if t < days)}, reverse=True)
        crossed = [t for t in thresholds if left <= t]
        cert = expires.astimezone(UTC).isoformat()
        alerts: dict[str, list[int]] = dict(self.item.ssl_alerts or {})
        done = set(alerts.get(cert, []))
        if not crossed or set(crossed) <= done:
            return
        threshold = min(crossed)
        alerts[cert] = sorted(done | set(crossed), reverse=True)
        # Remember the latest certificates only: a renewed certificate is a new key.
        self.item.ssl_alerts = dict(sorted(alerts.items())[-3:])
        self.dirty = True
        m = self.monitor
        whole_days = max(0, int(left))
        self.pending.items.append(
            events.monitor_event(
                m.team_id,
                m.monitor_id,
                events.SSL_EXPIRING,
                result.checked_at,
                discriminator=f"{cert}#{threshold}",
                text=f"The certificate expires in {whole_days} day{'s' if whole_days != 1 else ''}",
                region=result.region,
                data={"expires_at": cert, "days_left": whole_days, "threshold_days": threshold},
            )
        )
        self.applied.events.append(events.SSL_EXPIRING)

    # -- writing

    def flush(self) -> None:
        if not self.dirty:
            if self.stale:  # one write, no monitor update: how far the regions have reported, for the next batch
                self.item.state = dump(self.state)
                self.item.updated_at = self.now
                self.item.save()
                self.stale = False
            return
        m, item, state = self.monitor, self.item, self.state
        item.state = dump(state)
        item.updated_at = self.now
        checked = [r.last_checked_at for r in state.regions.values() if r.last_checked_at is not None]
        advisories = [] if state.incident_open else self._advisories()
        version = int(item.version or 0) + 1  # the state's version once this write lands
        labels = {r: state.region(r).label for r in self.policy.regions}
        steady = steady_regions(state, self.policy)
        projection: list[Any] = [
            MonitorModel.status.set(state.status),
            MonitorModel.region_status.set(labels),
            MonitorModel.last_checked_at.set(max(checked)) if checked else MonitorModel.last_checked_at.remove(),
            MonitorModel.advisories.set(advisories),
            MonitorModel.steady_regions.set(steady),  # type: ignore[arg-type]
            MonitorModel.state_version.set(version),
        ]
        # The monitor is written without the user's version condition (an edit stays valid; it reloads if this
        # lands first), and only by a newer state than the one it shows.
        # Never a paused monitor's: a pause that landed since this batch read it wins (its outage ended with it).
        unpaused = MonitorModel.monitor_id.exists() & (
            MonitorModel.paused.does_not_exist() | (MonitorModel.paused == False)  # noqa: E712 - a condition
        )
        newer = unpaused & (MonitorModel.state_version.does_not_exist() | (MonitorModel.state_version < version))
        watched = watch_of(m)  # what marks its results (``checks.marking``) before this write
        if self.pending.incidents or self.pending.items or self.pending.dropped:
            # An incident or an event: all of it, or none of it.
            with transaction() as t:
                t.save(item)
                # Atomic with the state: always the newest view (no state_version test, which a state item
                # recreated from version 1 would fail forever).
                t.update(m, actions=projection, condition=unpaused, add_version_condition=False)
                for incident in self.pending.incidents.values():
                    t.save(incident)
                for event in self.pending.items:
                    t.save(event)
                for entry in self.pending.dropped:
                    t.delete(entry)
        else:
            # Counters only (most results): the state under its version, then the monitor's view of it.  Two
            # plain writes cost less than a transaction's doubled units; if the second is lost (a crash) or
            # overtaken (a newer state's), the next result writes it again.
            item.save()
            try:
                m.update(actions=projection, condition=newer, add_version_condition=False)
            except UpdateError as exc:
                if not condition_failed(exc):
                    raise
        # What the monitor shows now (in memory): a later result of the batch compares with it.
        m.status = state.status
        m.region_status = labels  # type: ignore[assignment]
        m.steady_regions = steady  # type: ignore[assignment]
        if watch_of(m) != watched:  # the workers must read it again for the checks already planned
            note_one(m.team_id, m.monitor_id)
        self.pending = _Pending()
        self.dirty = False

    def _advisories(self) -> list[dict[str, Any]]:
        out = []
        for region in down_regions(self.state, self.policy):
            r = self.state.region(region)
            since = r.down_since.astimezone(UTC).isoformat() if r.down_since else None
            out.append({"region": region, "since": since, "cause": r.cause})
        return out

    def pending_size(self) -> int:
        return self.pending.size()


def _opening(incident: IncidentModel) -> str:
    """The discriminator of an opening's and its resolution's timeline entries: none for the first."""
    openings = int(incident.openings or 1)
    return "" if openings <= 1 else f"opening-{openings}"


def _open_incident(team_id: str, incident_id: str | None) -> IncidentModel | None:
    if not incident_id:
        return None
    try:
        return IncidentModel.get(team_id, incident_id, consistent_read=True)
    except IncidentModel.DoesNotExist:
        return None


@dataclass
class _Loaded:
    """A batch's reads, made together: its monitors, their state items and open incidents (one BatchGetItem
    each), and each team's maintenance windows over the batch (one query per team)."""

    monitors: dict[tuple[str, str], MonitorModel]
    states: dict[str, MonitorStateModel]
    incidents: dict[tuple[str, str], IncidentModel]
    windows: dict[str, list[Window]]


def _preload(groups: dict[tuple[str, str], list[Result]]) -> _Loaded:
    keys = list(groups)
    monitors = {(m.team_id, m.monitor_id): m for m in MonitorModel.batch_get(keys, consistent_read=True)}
    states = {
        s.monitor_id: s
        for s in MonitorStateModel.batch_get([k[1] for k in keys if k in monitors], consistent_read=True)
    }
    open_keys = [(s.team_id, s.incident_id) for s in states.values() if s.incident_id]
    incidents = (
        {(i.team_id, i.incident_id): i for i in IncidentModel.batch_get(open_keys, consistent_read=True)}
        if open_keys
        else {}
    )
    spans: dict[str, tuple[datetime, datetime]] = {}
    for (team_id, _), results in groups.items():
        if not results:
            continue  # a window's edge alone: its windows come with it
        low, high = min(r.checked_at for r in results), max(r.checked_at for r in results)
        if team_id in spans:
            low, high = min(low, spans[team_id][0]), max(high, spans[team_id][1])
        spans[team_id] = (low, high)
    windows = {team_id: open_windows(team_id, low, high) for team_id, (low, high) in spans.items()}
    return _Loaded(monitors, states, incidents, windows)


Edge = tuple[datetime, Span | None]  # a maintenance edge's moment, and the span of the windows covering it then


def _attempt(
    team_id: str,
    monitor_id: str,
    results: list[Result],
    now: datetime,
    loaded: _Loaded | None = None,
    edges: Sequence[Edge] = (),
) -> Applied | None:
    if loaded is None:
        loaded = _preload({(team_id, monitor_id): results})
    monitor = loaded.monitors.get((team_id, monitor_id))
    if monitor is None:
        return None  # deleted since: its late results change nothing
    if monitor.paused:
        return None  # a paused monitor opens no incident (results of checks already in flight)
    item = loaded.states.get(monitor_id) or MonitorStateModel(monitor_id, team_id=team_id, updated_at=now)
    incident = loaded.incidents.get((team_id, item.incident_id)) if item.incident_id else None
    windows = [w for w in loaded.windows.get(team_id, []) if monitor_id in w.monitor_ids]
    run = _Run(monitor, item, windows, now, incident)
    for at, window in edges:
        run.cross(at, window)
    for result in results:
        run.fold(result)
        if run.pending_size() >= MAX_WRITES:
            run.flush()
    run.flush()
    return run.applied


def _applied_alone(
    team_id: str, monitor_id: str, results: list[Result], now: datetime, edges: Sequence[Edge] = ()
) -> Applied:
    applied = retry_lost_races(
        lambda: _attempt(team_id, monitor_id, results, now, edges=edges) or Applied(),
        attempts=ATTEMPTS,
        on_retry=lambda: metrics.add_metric(name="IncidentStateRaces", unit="Count", value=1),
    )
    _log(monitor_id, applied)
    return applied


def apply_results(team_id: str, monitor_id: str, results: Iterable[Result], now: datetime) -> Applied:
    """Apply one monitor's results (any order, duplicates welcome).  Returns what changed."""
    ordered = sorted(results, key=lambda r: (r.checked_at, r.region))
    if not ordered:
        return Applied()
    return _applied_alone(team_id, monitor_id, ordered, now)


def _log(monitor_id: str, applied: Applied) -> None:
    for incident_id in applied.opened:
        logger.info("incident opened", extra={"monitor_id": monitor_id, "incident_id": incident_id})
    for incident_id in applied.resolved:
        logger.info("incident resolved", extra={"monitor_id": monitor_id, "incident_id": incident_id})


Key = tuple[str, str]  # (team_id, monitor_id)


def apply_many(groups: dict[Key, list[Result]], now: datetime) -> dict[Key, Exception | None]:
    """Apply a stream batch: ``{(team_id, monitor_id): results}``.  The reads are made for the whole batch at
    once; a monitor that loses a race is applied again on its own, from fresh reads.  Returns each monitor's
    failure (None when applied)."""
    ordered = {
        key: sorted(results, key=lambda r: (r.checked_at, r.region)) for key, results in groups.items() if results
    }
    return _apply_batch({key: ([], results) for key, results in ordered.items()}, now)


def cross_maintenance(edges: dict[Key, list[Edge]], now: datetime) -> dict[Key, Exception | None]:
    """Cross maintenance windows' edges: ``{(team_id, monitor_id): [(moment, covering span), …]}``, each monitor's
    in order, through the same writes as results (``incidents.state.maintenance_edge``).  Returns each monitor's
    failure (None when crossed)."""
    return _apply_batch({key: (list(found), []) for key, found in edges.items() if found}, now)


def _apply_batch(work: dict[Key, tuple[list[Edge], list[Result]]], now: datetime) -> dict[Key, Exception | None]:
    outcome: dict[Key, Exception | None] = {}
    try:
        loaded: _Loaded | None = _preload({key: results for key, (_, results) in work.items()})
    except Exception:  # noqa: BLE001 - fall back to one monitor at a time (which reports its own failure)
        logger.exception("batch reads failed; applying monitor by monitor")
        loaded = None
    for (team_id, monitor_id), (edges, results) in work.items():
        try:
            if loaded is None:
                raise _Reload
            applied = _attempt(team_id, monitor_id, results, now, loaded, edges) or Applied()
            _log(monitor_id, applied)
            outcome[(team_id, monitor_id)] = None
        except (TransactWriteError, PutError, _Reload) as exc:
            if not isinstance(exc, _Reload) and not lost_race(exc):
                outcome[(team_id, monitor_id)] = exc
                continue
            try:
                _applied_alone(team_id, monitor_id, results, now, edges)
                outcome[(team_id, monitor_id)] = None
            except Exception as retry_exc:  # noqa: BLE001 - reported per monitor
                outcome[(team_id, monitor_id)] = retry_exc
        except Exception as exc:  # noqa: BLE001 - reported per monitor
            outcome[(team_id, monitor_id)] = exc
    return outcome


class _Reload(Exception):
    """Apply this monitor from its own fresh reads."""


def forget_monitor(monitor: Monitor, now: datetime) -> None:
    """A deleted monitor's outage ends with it: its open incident resolves, and its state goes."""
    _end(monitor, now, "deleted")


def pause_changed(monitor: Monitor, now: datetime) -> None:
    """Paused, a monitor is not checked, so no result could ever resolve its outage: it resolves now, and its
    state starts afresh (pending) when it is resumed.  Either way its status changes for its status pages."""
    if monitor.paused:
        _end(monitor, now, "paused")
        return
    # Afresh: counts a handler batch wrote while the pause landed (its monitor write refused) do not carry over.
    with transaction() as t:
        t.delete(MonitorStateModel(monitor.id), add_version_condition=False)
        t.save(
            events.monitor_event(
                monitor.team_id,
                monitor.id,
                events.STATUS_CHANGED,
                now,
                text="Resumed",
                data={"status": "pending"},
            )
        )


def _end(monitor: Monitor, now: datetime, reason: str) -> None:
    """End what the incident handler keeps for a monitor (deleted or paused).  A concurrent change (an
    acknowledgement, the handler's last write) makes it reload and try again.  The resolution says why, and
    keeps what the alert handler needs to close the outage where machines opened it (a deleted monitor's item
    is gone): its channels and its name — never its URL or headers."""
    left = {
        "ended_by": reason,
        "monitor": {
            "name": monitor.config.name,
            "method": monitor.config.method if monitor.config.type == "http" else None,
            "regions": list(monitor.config.regions),
            "tags": list(monitor.config.tags),
        },
        "channel_ids": list(monitor.config.channel_ids),
    }
    retry_lost_races(lambda: _end_once(monitor, now, left), attempts=ATTEMPTS)


def _monitor_item(team_id: str, monitor_id: str) -> MonitorModel | None:
    try:
        return MonitorModel.get(team_id, monitor_id, consistent_read=True)
    except MonitorModel.DoesNotExist:
        return None


def _end_once(monitor: Monitor, now: datetime, left: dict[str, Any]) -> None:
    team_id, monitor_id, reason = monitor.team_id, monitor.id, left["ended_by"]
    try:
        item: MonitorStateModel | None = MonitorStateModel.get(monitor_id, consistent_read=True)
    except MonitorStateModel.DoesNotExist:
        item = None
    if item is None and reason == "deleted":
        return
    incident = _open_incident(team_id, item.incident_id) if item is not None else None
    # Loaded, so that its version moves on (an update of an item not loaded would set its version back to 1).
    paused_item = _monitor_item(team_id, monitor_id) if reason == "paused" else None
    with transaction() as t:
        if item is not None:
            t.delete(item, add_version_condition=False)
        if incident is not None and incident.status != "resolved":
            incident.resolve(now, None, now)
            t.save(incident)
            t.save(
                events.incident_event(
                    incident,
                    events.RESOLVED,
                    now,
                    discriminator=f"monitor-{reason}",
                    data=left,
                    text=f"The monitor was {reason}",
                )
            )
        if paused_item is not None:
            # Its view starts afresh (the state that wrote it is gone, so no version to compare with).
            t.update(
                paused_item,
                actions=[
                    MonitorModel.status.set("pending"),
                    MonitorModel.region_status.set({}),
                    MonitorModel.advisories.set([]),
                    MonitorModel.steady_regions.set([]),
                    MonitorModel.state_version.remove(),
                ],
                condition=MonitorModel.monitor_id.exists(),
                add_version_condition=False,
            )
            t.save(
                events.monitor_event(
                    team_id, monitor_id, events.STATUS_CHANGED, now, text="Paused", data={"status": "paused"}
                )
            )
