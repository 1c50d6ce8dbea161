"""Maintenance windows' edges, crossed on the scheduler's tick that passes them (issue 20).

A window's monitors enter maintenance at its start and take their real state at its end on the tick of that
minute, not with their next result (which could be an interval away, and the status page with it).  Each tick:

1. Query the sparse ``edge-index`` for the windows whose next edge not yet crossed has passed (one query of one
   partition, usually empty: a few read units an hour, whatever the number of monitors and checks), and read them
   again consistently.
2. For each window, each edge passed in order (its start, its end — both, when the tick that should have crossed
   the start failed), the span of the team's windows covering each of its monitors at that moment: one query of
   the team's windows not ended by then.
3. Cross the edge for each monitor through the incident handler's own writes (``tracker.cross_maintenance``:
   ``incidents.state.maintenance_edge`` and one transaction a monitor whose status, incident or timeline moves).
4. Move the window's edge on (to its end, or out of the index).  A failure before that leaves the edge due: the
   next tick crosses it again, which changes nothing already crossed.  A window changed or deleted meanwhile (its
   edge moved by its change, or gone) has its monitors crossed again now, with the windows as they are.
"""

from __future__ import annotations

import time
from datetime import datetime

from chalicelib import errors
from chalicelib.incidents import events, maintenance, tracker
from chalicelib.incidents.maintenance import Window
from chalicelib.observability import logger, metrics

MAX_WINDOWS = 50  # a tick's share: more stay due, for the next tick
BUDGET_S = 15.0  # no window is started later than this into the pass (a window is up to 100 monitors' writes)


def cross(now: datetime) -> int:
    """Cross every window edge passed by ``now`` (at most :data:`MAX_WINDOWS` windows, started within
    :data:`BUDGET_S`: the tick's Lambda has 50 s, and the checks were sent first); the number of edges crossed.
    One window's failure is logged and counted, and leaves its edge for the next tick, as do the windows left."""
    crossed = 0
    started = time.monotonic()
    for window in maintenance.due_edges(now, MAX_WINDOWS):
        if time.monotonic() - started > BUDGET_S:
            break
        try:
            crossed += _cross(window, now)
        except Exception:  # noqa: BLE001 - the edge stays due: the next tick crosses it again
            logger.exception("maintenance window edge not crossed", extra={"window_id": window.id})
            metrics.add_metric(name="MaintenanceEdgeFailures", unit="Count", value=1)
    if crossed:
        metrics.add_metric(name="MaintenanceEdgesCrossed", unit="Count", value=crossed)
    return crossed


def _cross(window: Window, now: datetime) -> int:
    moments = window.edges_passed(now)
    edges: dict[tuple[str, str], list[tracker.Edge]] = {(window.team_id, m): [] for m in window.monitor_ids}
    for at in moments:
        # The window as just read, with the team's others: another may cover a monitor past this one's end.
        others = [w for w in maintenance.open_windows(window.team_id, at, at) if w.id != window.id]
        windows = [*others, window]
        for key in edges:
            edges[key].append((at, maintenance.covering(windows, key[1], at)))
    failed = report_failures(tracker.cross_maintenance(edges, now), window.id)
    if failed:
        raise RuntimeError(f"{failed} of {len(edges)} monitors not crossed")
    _told(window, moments)
    if not maintenance.edge_crossed(window, now):
        _cross_as_it_is(window, now)
    return len(moments)


def _told(window: Window, moments: list[datetime]) -> None:
    """An event a monitor an edge crossed, for its status pages (``events.WINDOW_EDGE``): the window moves on their
    list even when no monitor's status does (back-to-back windows, a paused monitor).  Keyed by the window and the
    edge, so crossing an edge again writes nothing new."""
    # found by a fresh-eyes review of issue 20: at such an edge the pages listed the window as before until the
    # next event or the hourly refresh
    for at in moments:  # one put each (a window has at most 100 monitors, an edge is rare): no batch grant needed
        edge = "start" if at == window.starts_at else "end"
        for monitor_id in window.monitor_ids:
            discriminator = f"{window.id}#{edge}"
            events.monitor_event(window.team_id, monitor_id, events.WINDOW_EDGE, at, discriminator=discriminator).save()


def _cross_as_it_is(window: Window, now: datetime) -> None:
    """The window changed (or went) while its edge was crossed as it was read: its change may have crossed its
    monitors before this pass did, so they take the windows as they are now, as the change does (``lifecycle``).
    """
    # found by a fresh-eyes review of issue 20: a window deleted then stayed entered until its end, hiding outages
    try:
        fresh: Window | None = maintenance.get(window.team_id, window.id)
    except errors.NotFound:
        fresh = None
    others = [w for w in maintenance.open_windows(window.team_id, now, now) if w.id != window.id]
    windows = [*others, *([fresh] if fresh is not None else [])]
    monitor_ids = sorted(set(window.monitor_ids) | set(fresh.monitor_ids if fresh is not None else ()))
    edges = {(window.team_id, m): [(now, maintenance.covering(windows, m, now))] for m in monitor_ids}
    if report_failures(tracker.cross_maintenance(edges, now), window.id):
        # Logged and counted, as a change's own crossing that failed is (``lifecycle``).
        metrics.add_metric(name="MaintenanceEdgeFailures", unit="Count", value=1)


def report_failures(outcome: dict[tuple[str, str], Exception | None], window_id: str) -> int:
    """Log each monitor that could not cross an edge; how many."""
    failed = 0
    for (_, monitor_id), error in outcome.items():
        if error is not None:
            failed += 1
            logger.error(
                "maintenance edge not crossed for a monitor",
                extra={"window_id": window_id, "monitor_id": monitor_id, "error": type(error).__name__},
                exc_info=error,
            )
    return failed
