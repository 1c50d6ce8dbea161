"""Which check results the incident handler must see: the worker marks them, the stream mapping passes only those.

Almost every result is an up check of a monitor that is up everywhere: it cannot open, resolve or move anything
the incident handler keeps, so sending it there would only cost an invocation and the reads to find that out
(issue 13).  The worker marks a result when it *can* matter, from what the incident handler last wrote on the
monitor (its *watch*: see the end of this docstring for how fresh):

- the result is a failure, or slower than the monitor's ``degraded_after_ms``;
- the monitor is not ``up`` (pending, down, degraded, in maintenance): every result may change that;
- its region is not steady — not in ``steady_regions``, the regions the handler last saw checked, up and with no
  failure counted (a first failure below the threshold, a recovery not yet confirmed);
- the check started inside one of the monitor's maintenance windows (the status becomes ``maintenance``);
- its certificate expires within the monitor's ``ssl_expiry_alert_days`` (an ``ssl.expiring`` may be due).

The rest is marked too when the worker knows nothing of the monitor's state (a monitor the handler never wrote).

Of the marked results, those that can move the monitor's status now are *urgent* (:func:`urgent`): the worker
writes their pack within :data:`URGENT_FLUSH_S` instead of letting it fill for up to 40 s, so an outage is
alerted, and a recovery announced, within seconds of the check that saw it.  Urgent: a failure of a monitor not
down, in a region not already down; a check (slow or not) of a monitor down, or of a region not steady; a slow
check of a monitor up, a clean one of a monitor degraded; any result once a maintenance window is over while the
status still says ``maintenance``.  Nothing inside a window.  A monitor down for days, or a region down below the
quorum, keeps failing without urgency, so its checks keep sharing packs — the latter unless another region counts
failures (a quorum may be forming, and its opening waits on the down region's word of the same moment: up to 40 s
late otherwise, found by a fresh-eyes review).

What the worker knows is the tick's read of the monitor (carried in the job, a minute or two before the check),
or a fresh read when a change note names it (``monitors.watching``).  Either can be a little behind the handler
(its last result still in the stream): a first
failure's region is then still listed as steady, and the next result — an up one — goes unmarked.  The handler
therefore treats a failure that follows its region's last failure by more than one and a half intervals as a
new run of failures (``incidents.state``), as if the unseen up result had been applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalicelib.checks.model import CheckResult

UP = "up"
URGENT_FLUSH_S = 1.0  # an urgent result's pack is written this soon (results finishing together share it)


@dataclass(frozen=True)
class Watch:
    """What the incident handler last wrote on a monitor that decides whether a result can matter."""

    status: str = "pending"
    steady_regions: frozenset[str] = frozenset()
    down_regions: frozenset[str] = frozenset()  # regions counted down (below the quorum, the monitor may be up)
    regions: frozenset[str] = frozenset()  # every region the handler last showed (empty: not known)
    maintenance: tuple[tuple[datetime, datetime], ...] = ()  # [start, end) of each window not ended
    ssl_expiry_alert_days: int = 0
    known: bool = field(default=False)  # False: nothing read; every result is marked

    def in_maintenance(self, at: datetime) -> bool:
        return any(start <= at < end for start, end in self.maintenance)

    def to_json(self) -> dict[str, Any]:
        """As a check job carries it (``checks.jobs``): only a known watch travels."""
        return {
            "status": self.status,
            "steady": sorted(self.steady_regions),
            "down": sorted(self.down_regions),
            "regions": sorted(self.regions),
            "maintenance": [[start.isoformat(), end.isoformat()] for start, end in self.maintenance],
            "ssl_days": self.ssl_expiry_alert_days,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> Watch:
        """Raises ValueError (or TypeError) for anything the scheduler would not have written."""
        lists = {name: data.get(name, []) for name in ("steady", "down", "maintenance", "regions")}
        if not all(isinstance(value, list) for value in lists.values()):
            raise ValueError("a watch's regions and spans are lists")
        spans = []
        for start, end in lists["maintenance"]:
            span = (datetime.fromisoformat(str(start)), datetime.fromisoformat(str(end)))
            if any(t.tzinfo is None for t in span):
                raise ValueError("a maintenance span without a time zone")
            spans.append(span)
        return Watch(
            status=str(data["status"]),
            steady_regions=frozenset(str(r) for r in lists["steady"]),
            down_regions=frozenset(str(r) for r in lists["down"]),
            regions=frozenset(str(r) for r in lists["regions"]),
            maintenance=tuple(spans),
            ssl_expiry_alert_days=int(data.get("ssl_days", 0)),
            known=True,
        )


UNKNOWN = Watch()


def matters(result: CheckResult, watch: Watch) -> bool:
    """Whether the incident handler must see ``result`` (see the module's rules)."""
    if not watch.known or not result.ok or result.degraded:
        return True
    if watch.status != UP or result.region not in watch.steady_regions:
        return True
    if watch.in_maintenance(result.checked_at):
        return True
    if watch.ssl_expiry_alert_days > 0 and result.ssl_expires_at is not None:
        days_left = (result.ssl_expires_at - result.checked_at).total_seconds() / 86400
        if days_left <= watch.ssl_expiry_alert_days:
            return True
    return False


def urgent(result: CheckResult, watch: Watch) -> bool:
    """Whether ``result`` can move the monitor's status now (see the module's rules): its pack is written at once."""
    if not watch.known:
        return not result.ok
    if watch.in_maintenance(result.checked_at):
        return False  # nothing is announced inside a window
    if watch.status == "maintenance":
        return True  # its window is over: this result gives the monitor its real status
    if not result.ok:
        if watch.status == "down":
            return False
        # A region down below the quorum keeps failing without urgency, unless another region counts failures (or
        # was never checked): a quorum may be forming, and its opening waits on this region's word of that moment.
        return result.region not in watch.down_regions or any(
            r != result.region and r not in watch.steady_regions and r not in watch.down_regions for r in watch.regions
        )
    if watch.status == "down" or result.region not in watch.steady_regions:
        return True  # a recovery, slow or not
    return result.degraded != (watch.status == "degraded")
