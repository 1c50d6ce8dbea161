"""The incident state machine: pure, so it can be tested as a table of cases.

Per monitor it keeps, for each region, the consecutive failures and successes and whether
the region counts as down; from those it derives the monitor's status.  :func:`apply`
folds one check result into the state:

1. A result not newer than the last one applied for its region is ignored (duplicates and
   out-of-order stream records change nothing).
2. The region's counters move; it goes down after ``failure_threshold`` consecutive failures
   and up again after ``recovery_threshold`` consecutive successes.
3. The monitor is down when at least ``confirmation_regions`` regions are down.  A down region
   below that quorum is an advisory (visible, named), not an outage.
   A failure planned more than one and a half intervals after its region's last failure starts a new run of
   failures (when the policy knows the interval): the results between were up ones that the worker did not
   mark (``checks.marking``), or checks that never ran.  Planned starts, not actual ones: a start delayed by a
   busy worker never breaks a run.
4. Incidents follow the regions in check time, whatever order their results arrive in (one region's results can
   be minutes late: its queue backed up, its worker throttled).  Each region's story is kept as down spans — the
   current one and the recent closed ones — and a region's last result vouches for it until its next planned
   check (one interval); past that it is *unknown*.  Then (see :func:`_decide`):

   a. An incident opens at the first moment after the last resolution when the quorum is *known* down: at least
      ``confirmation_regions`` regions down at that moment, each vouched for.  A region whose results lag is
      waited for, so a stale "down" never opens an outage that did not happen, and a late region's span that
      overlapped another's still opens the incident it makes (and resolves it, if it is over).
   b. An open incident resolves at the first moment the quorum is *certainly* lost: the regions known down plus
      the unknown ones fall below the quorum.  So a recovery is held while a late region could still show the
      outage went on; a region silent for :func:`hold_cap` while others report is *timed out* (counted up, and
      named on the timeline).  After a resolution that timed a region out, nothing checked before it opens an
      incident: a late region's stale failures never reopen an outage already over.
   c. A late region's story can change what was decided before it arrived, but only before an incident's start
      (open or resolved: the resolved ones are kept as :class:`Episode` for :func:`hold_cap`): it moves the start
      back while the quorum is known down all the way to it (a moment still unknown stops it: the rest of the
      story may show a break), and a separate, earlier quorum it shows, over in check time before the story
      arrived, is an incident found late (``incident_revealed``: opened and resolved at its moments, told as any
      incident that opened and resolved in one batch).  A resolution is decided up to the latest moment any region
      told of, not only the arriving result's own (a time-out at that result's own moment too, with the regions
      silent past the cap by then: a region that trails the others is unknown at the latest moment).  So, as long
      as every region reports within the cap, the incidents depend only on the regions' check-time sequences,
      whatever order their results arrive in.
   Without an interval (a policy that does not know it) every region is vouched for by its last result.
5. An up monitor whose response was slower than ``degraded_after_ms`` is ``degraded`` (not while in maintenance:
   a slow response in a window is expected, and no alert may go out; after it, the next slow one tells).
6. Maintenance windows have two edges, crossed by :func:`maintenance_edge` at their moment — on the scheduler's
   tick that passes them (``incidents.edges``), when a window is changed (``lifecycle``), or by the first result
   past one that no tick crossed yet (:func:`apply`):

   a. At a window's start the status becomes ``maintenance``.  An incident open then stays open, marked on its
      timeline (``maintenance_started``).
   b. Inside it, results move the regions' counters and nothing else: no incident opens or resolves, no degraded
      (a result checked inside a window decides nothing, whenever it arrives).  One checked before it still
      decides what happened before it (part 4), never a moment inside it.
   c. At its end the monitor takes at once the state its regions last reported, vouched for or not (nothing may
      have been checked since): the quorum of regions whose last word is "down" — a region silent past
      :func:`hold_cap` counts up — keeps an open incident open (``maintenance_ended``, no alert: "down" was
      announced), or opens one at the end; without it an open incident resolves at the end.  So the only alert
      is for a state other than the one last announced.  Nothing up to the end is decided again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from chalicelib.clock import parse_time


@dataclass(frozen=True)
class Policy:
    regions: tuple[str, ...]
    failure_threshold: int = 2
    recovery_threshold: int = 1
    confirmation_regions: int = 2
    interval_seconds: int | None = None  # the check interval: a longer gap between failures breaks their run


@dataclass(frozen=True)
class Observation:
    region: str
    checked_at: datetime
    ok: bool
    degraded: bool = False
    cause: str | None = None  # e.g. "HTTP 503", "timeout"
    planned_at: datetime | None = None  # the check's planned start (its slot), when known


MIN_HOLD = timedelta(minutes=10)  # a held recovery waits at least this long for a silent region
KNOWLEDGE_STEP = timedelta(minutes=10)  # how stale a region's stored last check time may be in a steady incident
MAX_SPANS = 8  # closed down spans kept per region (flapping beyond it within the hold is too fast to matter)

Span = tuple[datetime, datetime]  # [went down, came back up), in check time


@dataclass(frozen=True)
class Episode:
    """A resolved incident, kept while a late region's story could still move its start (docstring, point 4c)."""

    key: datetime  # the moment it was first opened at: its identity (the tracker derives the incident's id from it)
    start: datetime  # in check time, moved back by late stories
    end: datetime  # resolved at, in check time
    guard: datetime  # nothing checked up to it opens another incident after it (its end, or later after a time-out)


@dataclass(frozen=True)
class RegionState:
    down: bool = False
    failures: int = 0
    successes: int = 0
    checked: bool = False
    last_checked_at: datetime | None = None
    last_planned_at: datetime | None = None  # the planned start of the last result applied, when known
    down_since: datetime | None = None
    cause: str | None = None
    down_at: datetime | None = None  # check time (planned when known) of the result that took it down
    spans: tuple[Span, ...] = ()  # recent closed down spans, oldest first

    @property
    def label(self) -> str:
        if not self.checked:
            return "pending"
        return "down" if self.down else "up"

    @property
    def last_at(self) -> datetime | None:
        """The check time of its last result: planned when known (a region's checks share slots with the others')."""
        return self.last_planned_at or self.last_checked_at

    @property
    def went_down_at(self) -> datetime | None:
        return self.down_at or self.down_since


@dataclass(frozen=True)
class MonitorState:
    regions: dict[str, RegionState] = field(default_factory=dict)
    incident_open: bool = False
    degraded: bool = False
    status: str = "pending"
    last_resolved_at: datetime | None = None  # no quorum from before it opens an incident
    opened_at: datetime | None = None  # when the open incident's quorum was reached, in check time
    maintenance_through: datetime | None = None  # the end of the last window left: nothing up to it is decided again
    settled_at: datetime | None = None  # the open incident's quorum known down again after its last recovery
    maintenance: Span | None = None  # the window (or overlapping windows) the monitor is in, as its edges told
    open_key: datetime | None = None  # the moment the open incident was first opened at (its identity)
    episodes: tuple[Episode, ...] = ()  # recent resolved incidents, oldest first (point 4c)
    episodes_floor: datetime | None = None  # the guard of the last episode no longer kept: no story reaches before
    episodes_quorum: int | None = None  # the quorum the episodes were decided with: another one forgets them

    def region(self, name: str) -> RegionState:
        return self.regions.get(name, RegionState())


@dataclass(frozen=True)
class Event:
    """What changed: ``region_down``, ``region_up``, ``incident_opened``, ``incident_started``,
    ``incident_resolved``, ``degraded``, ``degraded_recovered``, ``status_changed``, ``maintenance_started`` and
    ``maintenance_ended`` (an open incident's, for its timeline)."""

    kind: str
    at: datetime
    region: str | None = None
    detail: str | None = None
    regions: tuple[str, ...] = ()  # incident_opened, incident_revealed: the regions down at that moment
    until: datetime | None = None  # incident_revealed: when it resolved, in check time
    incident: datetime | None = None  # incident_opened/started/revealed: the incident's identity (``Episode.key``)


def _step_region(region: RegionState, obs: Observation, policy: Policy) -> RegionState:
    at = obs.planned_at or obs.checked_at
    if obs.ok:
        successes = region.successes + 1
        down = region.down and successes < policy.recovery_threshold
        recovered = region.down and not down
        went_down = region.went_down_at
        return replace(
            region,
            checked=True,
            failures=0,
            successes=successes,
            down=down,
            down_since=region.down_since if down else None,
            cause=region.cause if down else None,
            last_checked_at=obs.checked_at,
            last_planned_at=obs.planned_at,
            down_at=region.down_at if down else None,
            spans=(*region.spans, (went_down, at))[-MAX_SPANS:] if recovered and went_down else region.spans,
        )
    failures = region.failures + 1
    if not region.down and region.failures and policy.interval_seconds:
        # Planned starts when both are known (a late start is not a gap); the actual ones otherwise.
        before, now = (
            (region.last_planned_at, obs.planned_at)
            if region.last_planned_at is not None and obs.planned_at is not None
            else (region.last_checked_at, obs.checked_at)
        )
        if before is not None and (now - before).total_seconds() > 1.5 * policy.interval_seconds:
            failures = 1  # the up results between were not seen: a new run of failures
    down = region.down or failures >= policy.failure_threshold
    return replace(
        region,
        checked=True,
        failures=failures,
        successes=0,
        down=down,
        down_since=(region.down_since or obs.checked_at) if down else None,
        cause=obs.cause if down else region.cause,
        last_checked_at=obs.checked_at,
        last_planned_at=obs.planned_at,
        # A region already down in a state stored before down_at existed went down at down_since.
        down_at=(region.down_at or (region.down_since if region.down else None) or at) if down else None,
    )


def steady_regions(state: MonitorState, policy: Policy) -> list[str]:
    """The regions checked, up and with no failure counted: there, an up result changes nothing material."""
    return [r for r in policy.regions if (s := state.region(r)).checked and not s.down and s.failures == 0]


def material(state: MonitorState) -> tuple[Any, ...]:
    """What of the state matters beyond the moment of the last check: what decides the next transitions and what
    is shown.  A result that leaves this unchanged (an up check in a steady region, another failure of a region
    already down) need not be written: only each region's last check time and an up region's count of
    successes have moved."""
    regions = tuple(
        sorted(
            (
                name,
                r.down,
                0 if r.down else r.failures,
                r.successes if r.down else 0,
                r.checked,
                r.down_since,
                r.cause,
            )
            for name, r in state.regions.items()
        )
    )
    return (
        regions,
        state.incident_open,
        state.degraded,
        state.status,
        state.last_resolved_at,
        state.opened_at,
        state.maintenance,
        state.maintenance_through,
        state.open_key,
        state.episodes,
        state.episodes_floor,
    )


def knowledge(state: MonitorState, policy: Policy) -> tuple[Any, ...]:
    """How far the regions have reported, where a decision is pending on it — the next batch reads it to know whom
    it can vouch for (``_Regions``), so the tracker writes it (the state item alone) when it moves:

    - not in an incident, the down regions' last check times while another region counts failures (a quorum may
      form: its moment needs the down regions vouched for);
    - in an incident, every region's while its resolution is held (a moment is uncertain), and otherwise to
      :data:`KNOWLEDGE_STEP` (a region silent past the hold cap is told from one whose results were not kept).

    A steady state writes little: a site down everywhere writes a region's time every ten minutes, a region down
    below the quorum for days nothing.  A recovery after a long outage may wait up to an interval for the other
    regions' next results (their last ones were not kept); its moment is still the right one."""
    if state.incident_open:
        pending = _held(state, policy)
        times = [(name, r.last_at if pending else _floor(r.last_at)) for name, r in sorted(state.regions.items())]
    else:
        counting = any(r.failures and not r.down for r in state.regions.values())
        times = [(name, r.last_at) for name, r in sorted(state.regions.items()) if r.down and counting]
    return (tuple(times), state.maintenance_through)


def _floor(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    step = int(KNOWLEDGE_STEP.total_seconds())
    return datetime.fromtimestamp(int(t.timestamp()) // step * step, tz=t.tzinfo)


def _hold_start(state: MonitorState, policy: Policy) -> datetime | None:
    """When the open incident's pending resolution began (its last recovery), if one is pending."""
    if not _held(state, policy):
        return None
    return max(end for r in state.regions.values() for _, end in r.spans if state.opened_at and end > state.opened_at)


def _held(state: MonitorState, policy: Policy) -> bool:
    """An open incident where a region recovered, and the quorum has not been known down since, but may be (at the
    slot before the last check time: at the last one, the regions whose results of that slot are on their way are
    unknown in any outage).  Without a recovery since the incident opened, or since its quorum was seen again, no
    resolution is pending: nothing needs to be known of who reported when."""
    recoveries = [
        end for r in state.regions.values() for _, end in r.spans if state.opened_at and end > state.opened_at
    ]
    if not recoveries or (state.settled_at is not None and state.settled_at >= max(recoveries)):
        return False
    known = _Regions(state, policy, time_out=False)
    if known.latest is None:
        return False
    down, unknown = known.counts(known.latest - (known.vouch or timedelta(0)))
    return len(down) < policy.confirmation_regions <= len(down) + len(unknown)


def down_regions(state: MonitorState, policy: Policy) -> list[str]:
    return [r for r in policy.regions if state.region(r).down]


def _status(state: MonitorState, policy: Policy) -> str:
    if state.maintenance is not None:
        return "maintenance"
    if state.incident_open:
        return "down"
    if not any(state.region(r).checked for r in policy.regions):
        return "pending"
    return "degraded" if state.degraded else "up"


def hold_cap(policy: Policy) -> timedelta | None:
    """How long a recovery waits for a silent region (in the others' check time) before timing it out."""
    if not policy.interval_seconds:
        return None
    return max(2 * timedelta(seconds=policy.interval_seconds), MIN_HOLD)


class _Regions:
    """What is known of each region at a moment in check time: down, up, or unknown (nothing vouches for it)."""

    def __init__(
        self,
        state: MonitorState,
        policy: Policy,
        *,
        time_out: bool = True,
        exact_since: datetime | None = None,
        as_of: datetime | None = None,
    ) -> None:
        self.state = state
        self.policy = policy
        self.vouch = timedelta(seconds=policy.interval_seconds) if policy.interval_seconds else None
        lasts = [last for r in policy.regions if (last := state.region(r).last_at) is not None]
        # ``as_of``: who had been silent past the cap by then (a moment behind the latest one told)
        self.latest = as_of if as_of is not None else max(lasts, default=None)
        cap = hold_cap(policy)
        self.timed_out = [
            r
            for r in policy.regions
            # A region's stored time may be KNOWLEDGE_STEP old without it being silent (``knowledge``).
            if time_out
            and cap is not None
            and self.latest is not None
            and self._silent(state.region(r)) > cap + self._slack(state.region(r), exact_since)
        ]

    @staticmethod
    def _slack(region: RegionState, exact_since: datetime | None) -> timedelta:
        """How old a region's stored time may be: exact if it reported since a hold began (a held incident's times
        are all kept), else up to KNOWLEDGE_STEP (``knowledge``)."""
        if exact_since is not None and region.last_at is not None and region.last_at >= exact_since:
            return timedelta(0)
        return KNOWLEDGE_STEP

    def _silent(self, region: RegionState) -> timedelta:
        """How long the others have reported while ``region`` said nothing: a region never heard from counts from
        the open incident's start (it may be late from its very first result), and is no one's concern otherwise."""
        assert self.latest is not None
        # Before the incident a steady region's up results are not marked (``checks.marking``): its last applied
        # result can be days old without it being late.  Silence counts from the incident's start at the soonest.
        heard = [t for t in (region.last_at, self.state.opened_at) if t is not None]
        return timedelta.max if not heard else self.latest - max(heard)

    def at(self, name: str, t: datetime) -> str:
        r = self.state.region(name)
        if any(start <= t < end for start, end in r.spans):
            return "down"
        last = r.last_at
        if last is None:
            return "up" if self.vouch is None or name in self.timed_out else "unknown"
        if self.vouch is None or t < last + self.vouch:
            return "down" if r.down and (r.went_down_at is None or r.went_down_at <= t) else "up"
        return "up" if name in self.timed_out else "unknown"

    def counts(self, t: datetime) -> tuple[list[str], list[str]]:
        """The regions down at ``t``, and the unknown ones."""
        seen = {name: self.at(name, t) for name in self.policy.regions}
        return [n for n, s in seen.items() if s == "down"], [n for n, s in seen.items() if s == "unknown"]


def _decide(state: MonitorState, policy: Policy, obs: Observation) -> tuple[MonitorState, list[Event]]:
    """Open and resolve incidents as the regions' stories, in check time, say (docstring, points 4 and 6): never at
    a moment up to the end of the last window left, nor from the start of the window the monitor is in."""
    quorum = policy.confirmation_regions
    events: list[Event] = []
    at = obs.planned_at or obs.checked_at
    ceiling = state.maintenance[0] if state.maintenance is not None else None
    if ceiling is not None and at >= ceiling:
        return state, events  # inside the window's span (its end is crossed first: ``_crossed``)
    floor = state.maintenance_through
    state, events = _late_stories(state, policy)
    for _ in range(2 * MAX_SPANS * max(len(policy.regions), 1) + 2):  # each pass opens or resolves one
        # Held, every region's time is kept exactly; otherwise it may be KNOWLEDGE_STEP old (``knowledge``).
        hold = _hold_start(state, policy)
        known = _Regions(state, policy, exact_since=hold)
        if not state.incident_open:
            guard = _last_guard(state)  # the last resolution's, the last window's end, the episodes' floor
            moments = {at} | {
                start for name in policy.regions for start in _starts(state.region(name)) if start is not None
            }
            opened = next(
                (
                    t
                    for t in sorted(moments)
                    if (guard is None or t > guard)
                    and (ceiling is None or t < ceiling)
                    and len(known.counts(t)[0]) >= quorum
                ),
                None,
            )
            if opened is None:
                break
            down, _ = known.counts(opened)
            cause = obs.cause or next((state.region(r).cause for r in down if state.region(r).cause), None)
            state = replace(state, incident_open=True, opened_at=opened, open_key=opened)
            events.append(Event("incident_opened", opened, detail=cause, regions=tuple(down), incident=opened))
            continue
        if state.opened_at is None:  # an incident opened by a version that did not keep when: its quorum's moment
            state = replace(state, opened_at=_quorum_reached(state, policy) or at)
        since = state.opened_at or at
        earlier = _earlier_start(state, policy, known, since, _last_guard(state))
        if earlier is not None:  # a late region's story: the quorum was there sooner, without a break since
            state = replace(state, opened_at=earlier)
            events.append(Event("incident_started", earlier, incident=state.open_key))
            since = earlier
        # In check time from the start: the first moment the quorum is certainly lost resolves it, unless an
        # earlier moment is uncertain (a late region could still show the quorum lost there, or held).
        strict = _Regions(state, policy, time_out=False)  # certain: a silent region may still be down
        resolved = None
        certain = True
        after = max(since, floor) if floor is not None else since  # a window's end decided what came before
        # Up to the latest moment any region told of (a late result's own moment is behind it), never into the
        # window the monitor is in.
        now = max(at, strict.latest) if strict.latest is not None else at
        if ceiling is not None:
            now = max(at, min(now, ceiling - timedelta(microseconds=1)))
        for t in _edges(state, policy, strict, after=after, until=now):
            down, unknown = strict.counts(t)
            if len(down) >= quorum:
                continue
            certain = False
            if len(down) + len(unknown) < quorum:
                resolved = t
            break
        if certain and now > since:
            state = replace(state, settled_at=now)
        late: list[str] = []
        judged = known
        if resolved is None and known.timed_out:
            # At the latest moment told; or else at the arriving result's own, with the regions silent past the cap
            # by then (one that trails the others is unknown at the latest moment at every result while it trails).
            for t, judged in ((now, known), (at, _Regions(state, policy, exact_since=hold, as_of=at))):
                if judged.timed_out and t > after and _possible(judged, t) < quorum:
                    resolved = t
                    late = [r for r in judged.timed_out if state.region(r).last_at or state.opened_at]
                    break
        if resolved is None:
            break
        up = [r for r in policy.regions if judged.at(r, resolved) == "up" and r not in late]
        detail = "Recovered" + (f" (confirmed in {', '.join(up)})" if up else "")
        if late:
            detail += f"; no result in time from {', '.join(late)}"
        guard = max(resolved, known.latest) if late and known.latest else resolved
        state = _closed(state, resolved, guard)
        events.append(Event("incident_resolved", resolved, detail=detail))
    return state, events


def _closed(state: MonitorState, end: datetime, guard: datetime) -> MonitorState:
    """The open incident resolved at ``end``: kept as an episode (point 4c)."""
    start = state.opened_at or end
    episode = Episode(key=state.open_key or start, start=start, end=end, guard=guard)
    return replace(
        state,
        incident_open=False,
        opened_at=None,
        open_key=None,
        settled_at=None,
        last_resolved_at=guard,
        episodes=(*state.episodes, episode),
    )


def _under(state: MonitorState, policy: Policy) -> MonitorState:
    """The state under ``policy``'s quorum.  Its kept episodes were decided with the quorum of their time: under
    another, a late story would read the past again — a lowered quorum would find the old advisories outages,
    "found late" and alerted (found by a fresh-eyes review of issue 20) — so they are forgotten: nothing before
    the last of them is decided again.  Nor is anything the regions told before the change: an advisory after the
    last episode, or before the open incident, was decided too (a state that does not say its quorum, stored
    before it was kept, only forgets its episodes)."""
    quorum = policy.confirmation_regions
    if state.episodes_quorum == quorum:
        return state
    if state.episodes_quorum is None and not state.episodes:
        return replace(state, episodes_quorum=quorum)
    told = [] if state.episodes_quorum is None else [r.last_at for r in state.regions.values() if r.last_at]
    guards = [e.guard for e in state.episodes] + told + ([state.episodes_floor] if state.episodes_floor else [])
    if not guards:
        return replace(state, episodes_quorum=quorum)
    return replace(state, episodes=(), episodes_floor=max(guards), episodes_quorum=quorum)


def _last_guard(state: MonitorState) -> datetime | None:
    """Nothing up to it opens an incident or moves one's start: the last resolution's guard, the last window's end,
    or the guard of the last incident no longer kept."""
    guards = [t for t in (state.last_resolved_at, state.maintenance_through, state.episodes_floor) if t is not None]
    return max(guards, default=None)


def _late_stories(state: MonitorState, policy: Policy) -> tuple[MonitorState, list[Event]]:
    """What late regions' stories change before the incidents already decided (docstring, point 4c): each kept
    episode's start (and the open incident's) moved back while the quorum held up to it, and separate quorums found
    in the gap before it (after the episode before it, and after the last window left), opened and resolved in
    check time."""
    if not policy.interval_seconds or not (state.episodes or (state.incident_open and state.opened_at)):
        return state, []
    known = _Regions(state, policy)
    strict = _Regions(state, policy, time_out=False)
    events: list[Event] = []
    kept: list[Episode] = []
    before = state.episodes_floor
    opened_at = state.opened_at
    incidents: list[Episode | None] = [*state.episodes, None]  # None: the open incident, if any
    for episode in incidents:
        if episode is None and not (state.incident_open and opened_at is not None):
            break
        key = episode.key if episode is not None else state.open_key
        start = episode.start if episode is not None else opened_at
        assert start is not None
        lo = max((t for t in (before, state.maintenance_through) if t is not None), default=None)
        if lo is None or lo < start:
            earlier = _earlier_start(state, policy, known, start, lo)
            if earlier is not None:
                start = earlier
                events.append(Event("incident_started", earlier, incident=key))
            # Never into the window the monitor is in (one made with its start in the past): nothing from it on.
            until = min(start, state.maintenance[0]) if state.maintenance is not None else start
            for found in _separate(state, policy, known, strict, lo, until):
                kept.append(found)
                down, _ = known.counts(found.start)
                cause = next((state.region(r).cause for r in down if state.region(r).cause), None)
                events.append(
                    Event(
                        "incident_revealed",
                        found.start,
                        detail=cause,
                        regions=tuple(down),
                        until=found.end,
                        incident=found.key,
                    )
                )
        if episode is None:
            opened_at = start
        else:
            kept.append(replace(episode, start=start))
            before = episode.guard
    if not events:
        return state, []
    return replace(state, episodes=tuple(kept), opened_at=opened_at), events


def _separate(
    state: MonitorState, policy: Policy, known: _Regions, strict: _Regions, lo: datetime | None, until: datetime
) -> list[Episode]:
    """The quorums known down in (``lo``, ``until``), each ended by a certain break before ``until`` (one that runs
    into ``until`` is that incident's, :func:`_earlier_start`; an uncertain end waits for more of the story)."""
    found: list[Episode] = []
    cursor = lo
    moments = sorted({start for name in policy.regions for start in _starts(state.region(name)) if start is not None})
    for t in moments:
        if (cursor is not None and t <= cursor) or t >= until:
            continue
        if len(known.counts(t)[0]) < policy.confirmation_regions:
            continue
        end = None
        for edge in _edges(state, policy, strict, after=t, until=until):
            if edge >= until:
                break
            down, unknown = strict.counts(edge)
            if len(down) >= policy.confirmation_regions:
                continue
            if len(down) + len(unknown) < policy.confirmation_regions:
                end = edge
            break
        if end is None:
            break
        found.append(Episode(key=t, start=t, end=end, guard=end))
        cursor = end
    return found


def _possible(known: _Regions, t: datetime) -> int:
    """How many regions may be down at ``t``: those known down and those unknown."""
    down, unknown = known.counts(t)
    return len(down) + len(unknown)


def _edges(
    state: MonitorState, policy: Policy, known: _Regions, *, after: datetime | None, until: datetime
) -> list[datetime]:
    """The moments in (``after``, ``until``] where what is known of some region changes (a span's start or end,
    a region going down, its last result's vouch running out), and ``until``: between two, nothing changes."""
    edges: set[datetime | None] = {until}
    for name in policy.regions:
        r = state.region(name)
        edges |= {edge for span in r.spans for edge in span}
        edges |= {r.went_down_at if r.down else None, r.last_at}
        edges |= {r.last_at + known.vouch if known.vouch and r.last_at else None}
    return sorted(t for t in edges if t is not None and (after is None or t > after) and t <= until)


def _earlier_start(
    state: MonitorState, policy: Policy, known: _Regions, since: datetime, after: datetime | None
) -> datetime | None:
    """The first moment after ``after`` (the guard before the incident) from which the quorum has held, without a
    certain break, up to ``since`` (the incident's start as known), when that is sooner."""
    points = [t for t in _edges(state, policy, known, after=after, until=since) if t < since]
    start = None
    for t in reversed(points):  # walk back from the start while the quorum is known to have held
        down, _ = known.counts(t)
        if len(down) < policy.confirmation_regions:
            break  # a break, or a moment not known yet: the rest of a late story may still move it
        start = t
    return start


def _quorum_reached(state: MonitorState, policy: Policy) -> datetime | None:
    """When the regions down now were first a quorum together, as far as the state says."""
    went_down = sorted(
        t for name in policy.regions if (t := state.region(name).went_down_at) and state.region(name).down
    )
    quorum = policy.confirmation_regions
    return went_down[quorum - 1] if len(went_down) >= quorum else None


def _starts(region: RegionState) -> list[datetime | None]:
    return [start for start, _ in region.spans] + ([region.went_down_at] if region.down else [])


def _pruned(state: MonitorState, policy: Policy) -> MonitorState:
    """Closed spans older than any late result could still meet are dropped."""
    cap = hold_cap(policy)
    known = _Regions(state, policy)
    if cap is None or known.latest is None:
        keep_after = None
    else:
        keep_after = known.latest - cap - timedelta(seconds=policy.interval_seconds or 0)
    regions = {}
    for name, r in state.regions.items():
        last = r.spans[-1] if r.spans else None
        spans = tuple(
            span
            for span in r.spans
            if (span == last if keep_after is None else span[1] > keep_after)
            or (state.opened_at is not None and span[1] > state.opened_at)
        )[-MAX_SPANS:]
        regions[name] = r if spans == r.spans else replace(r, spans=spans)
    episodes, floor = state.episodes, state.episodes_floor
    while episodes and ((keep_after is not None and episodes[0].guard <= keep_after) or len(episodes) > MAX_SPANS):
        floor = max(floor, episodes[0].guard) if floor is not None else episodes[0].guard
        episodes = episodes[1:]
    return replace(state, regions=regions, episodes=episodes, episodes_floor=floor)


def apply(
    state: MonitorState, obs: Observation, policy: Policy, *, window: Span | None = None
) -> tuple[MonitorState, list[Event]]:
    """Fold one result into the state; returns the new state and what changed (in order).  ``window``: the span of
    the maintenance windows covering the result's check time, if any."""
    if obs.region not in policy.regions:
        return state, []
    before = state.region(obs.region)
    if before.last_checked_at is not None and obs.checked_at <= before.last_checked_at:
        return state, []
    state = _under(state, policy)
    state, events = _crossed(state, policy, obs.checked_at, window)
    before = state.region(obs.region)
    after = _step_region(before, obs, policy)
    if after.down and not before.down:
        events.append(Event("region_down", obs.checked_at, obs.region, obs.cause))
    if before.down and not after.down:
        events.append(Event("region_up", obs.checked_at, obs.region))
    new = replace(state, regions={**state.regions, obs.region: after})
    quiet = window is not None or new.maintenance is not None  # nothing is told inside a window
    if window is None:
        was_open = new.incident_open
        new, decided = _decide(new, policy, obs)
        events += decided
        if new.incident_open and not was_open and new.maintenance is not None:
            # A late region's story opened an outage that began before the window the monitor is in now.
            events.append(Event("maintenance_started", new.maintenance[0]))
    new = _pruned(new, policy)

    if obs.ok and not new.incident_open and not quiet:  # slowness in a window is expected, and untold
        if obs.degraded and not new.degraded:
            new = replace(new, degraded=True)
            events.append(Event("degraded", obs.checked_at, obs.region))
        elif not obs.degraded and new.degraded:
            new = replace(new, degraded=False)
            events.append(Event("degraded_recovered", obs.checked_at, obs.region))

    status = _status(new, policy)
    if status != new.status:
        events.append(Event("status_changed", obs.checked_at, detail=status))
        new = replace(new, status=status)
    return new, events


# ---------------------------------------------------------------- maintenance windows' edges


def maintenance_edge(
    state: MonitorState, policy: Policy, at: datetime, covering: Span | None
) -> tuple[MonitorState, list[Event]]:
    """The monitor at ``at``, a window's edge (its start or end, or now for a window changed), where ``covering``
    is the span of the windows covering it then (None: none does).  Crossing an edge already crossed changes
    nothing, so the tick, a window's change and a result may each cross the same one (docstring, point 6)."""
    current = state.maintenance
    if covering is not None:
        if state.maintenance_through is not None and covering[1] <= state.maintenance_through:
            return state, []  # a window already left (a late edge, a late result)
        if current is None:
            return _enter(state, policy, covering, at)
        if covering[0] > current[1]:  # the window it was in ended before this one began, uncrossed
            state, left = _leave(state, policy, current[1])
            state, entered = _enter(state, policy, covering, max(at, current[1]))
            return state, left + entered
        return (state if covering == current else replace(state, maintenance=covering)), []
    if current is None:
        # A state stored before windows had edges says only its status.
        return _leave(state, policy, at) if state.status == "maintenance" else (state, [])
    if at < current[0]:
        return state, []  # the end of a window before the one it is in
    return _leave(state, policy, at)


def _crossed(state: MonitorState, policy: Policy, t: datetime, window: Span | None) -> tuple[MonitorState, list[Event]]:
    """The edges a result checked at ``t`` shows passed that nothing crossed yet (a window's end between two ticks,
    a tick that failed): a result in a window enters it; one past the end of the window the monitor is in leaves it
    at that end.  Never shrinks a window (the windows a result is applied with are read from an index a moment
    behind: a window cut short is left by its change, ``lifecycle``)."""
    current = state.maintenance
    if window is not None:
        if current is not None and window[0] <= current[1]:  # the same maintenance, perhaps longer
            longer = (current[0], max(current[1], window[1]))
            return (state if longer == current else replace(state, maintenance=longer)), []
        return maintenance_edge(state, policy, window[0], window)
    if current is not None:
        return maintenance_edge(state, policy, current[1], None) if t >= current[1] else (state, [])
    if state.status == "maintenance" and (state.maintenance_through is None or t > state.maintenance_through):
        return _leave(state, policy, t)  # stored before windows had edges: its first result after the window
    return state, []


def _enter(state: MonitorState, policy: Policy, window: Span, at: datetime) -> tuple[MonitorState, list[Event]]:
    new = replace(state, maintenance=window)
    events = [Event("maintenance_started", at)] if state.incident_open else []
    status = _status(new, policy)
    if status != state.status:
        events.append(Event("status_changed", at, detail=status))
        new = replace(new, status=status)
    return new, events


def last_word_down(state: MonitorState, policy: Policy) -> list[str]:
    """The regions whose last result said down (vouched for or not), but those silent past the hold cap."""
    timed_out = _Regions(state, policy).timed_out
    return [r for r in policy.regions if state.region(r).down and r not in timed_out]


def _leave(state: MonitorState, policy: Policy, at: datetime) -> tuple[MonitorState, list[Event]]:
    """The monitor at a window's end: what its regions last said, at once (docstring, point 6c)."""
    down = last_word_down(state, policy)
    held = len(down) >= policy.confirmation_regions
    through = max(state.maintenance_through, at) if state.maintenance_through is not None else at
    new = replace(state, maintenance=None, maintenance_through=through)
    events: list[Event] = []
    if state.incident_open:
        still = f": still down in {', '.join(down)}" if held else ""
        events.append(Event("maintenance_ended", at, detail=f"Maintenance over{still}"))
        if not held:
            timed_out = [r for r in _Regions(state, policy).timed_out if state.region(r).down]
            up = [r for r in policy.regions if state.region(r).checked and not state.region(r).down]
            detail = "Recovered during maintenance" + (f" (up in {', '.join(up)})" if up else "")
            if timed_out:
                detail += f"; no result in time from {', '.join(timed_out)}"
            new = _closed(new, at, at)
            events.append(Event("incident_resolved", at, detail=detail))
    elif held:
        cause = next((state.region(r).cause for r in down if state.region(r).cause), None)
        new = replace(new, incident_open=True, opened_at=at, open_key=at)
        events.append(Event("incident_opened", at, detail=cause, incident=at))
    status = _status(new, policy)
    if status != state.status:
        events.append(Event("status_changed", at, detail=status))
        new = replace(new, status=status)
    return new, events


# ---------------------------------------------------------------- storage form


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def dump(state: MonitorState) -> dict[str, Any]:
    """The state as plain JSON (stored on the monitor's state item)."""
    return {
        "regions": {
            name: {
                "down": r.down,
                "failures": r.failures,
                "successes": r.successes,
                "checked": r.checked,
                "last_checked_at": _iso(r.last_checked_at),
                "last_planned_at": _iso(r.last_planned_at),
                "down_since": _iso(r.down_since),
                "cause": r.cause,
                "down_at": _iso(r.down_at),
                "spans": [[start.isoformat(), end.isoformat()] for start, end in r.spans],
            }
            for name, r in sorted(state.regions.items())
        },
        "incident_open": state.incident_open,
        "degraded": state.degraded,
        "status": state.status,
        "last_resolved_at": _iso(state.last_resolved_at),
        "opened_at": _iso(state.opened_at),
        "maintenance_through": _iso(state.maintenance_through),
        "settled_at": _iso(state.settled_at),
        "maintenance": [state.maintenance[0].isoformat(), state.maintenance[1].isoformat()]
        if state.maintenance is not None
        else None,
        "open_key": _iso(state.open_key),
        "episodes": [
            [e.key.isoformat(), e.start.isoformat(), e.end.isoformat(), e.guard.isoformat()] for e in state.episodes
        ],
        "episodes_floor": _iso(state.episodes_floor),
        "episodes_quorum": state.episodes_quorum,
    }


def load(data: dict[str, Any] | None) -> MonitorState:
    if not data:
        return MonitorState()
    regions = {
        str(name): RegionState(
            down=bool(r.get("down")),
            failures=int(r.get("failures") or 0),
            successes=int(r.get("successes") or 0),
            checked=bool(r.get("checked")),
            last_checked_at=parse_time(r.get("last_checked_at")),
            last_planned_at=parse_time(r.get("last_planned_at")),
            down_since=parse_time(r.get("down_since")),
            cause=r.get("cause"),
            down_at=parse_time(r.get("down_at")),
            spans=tuple(_span(span) for span in r.get("spans") or ()),
        )
        for name, r in (data.get("regions") or {}).items()
    }
    return MonitorState(
        regions=regions,
        incident_open=bool(data.get("incident_open")),
        degraded=bool(data.get("degraded")),
        status=str(data.get("status") or "pending"),
        last_resolved_at=parse_time(data.get("last_resolved_at")),
        opened_at=parse_time(data.get("opened_at")),
        maintenance_through=parse_time(data.get("maintenance_through")),
        settled_at=parse_time(data.get("settled_at")),
        maintenance=_span(data["maintenance"]) if data.get("maintenance") else None,
        open_key=parse_time(data.get("open_key")),
        episodes=tuple(_episode(e) for e in data.get("episodes") or ()),
        # A state stored before episodes were kept: the incidents it resolved are not kept, as if pruned (their
        # ids are derived from moments it did not keep: found late again, one would be written anew over itself).
        episodes_floor=parse_time(data.get("episodes_floor" if "episodes" in data else "last_resolved_at")),
        episodes_quorum=int(data["episodes_quorum"]) if data.get("episodes_quorum") is not None else None,
    )


def _episode(value: Any) -> Episode:
    key, start, end, guard = (parse_time(str(v)) for v in value)
    if key is None or start is None or end is None or guard is None:
        raise ValueError(f"not an episode: {value!r}")
    return Episode(key=key, start=start, end=end, guard=guard)


def _span(value: Any) -> Span:
    start, end = (parse_time(str(v)) for v in value)
    if start is None or end is None:
        raise ValueError(f"not a span: {value!r}")
    return start, end
