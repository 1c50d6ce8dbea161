"""What the check worker knows of a monitor between ticks: the tick's view, and notes of what changed since.

The scheduler's tick reads every due monitor whole (its index projects all of it), so each job carries the
monitor's *watch* — what marks its results (:mod:`chalicelib.checks.marking`) — as the tick read it, and when.
Reading every monitor again in the worker, to drop the jobs of monitors paused, deleted or taken out of a region
since the tick and to mark results from the freshest state, cost half a read unit per check (issue 13: a
BatchGetItem bills each item as 4 KB): more than storing the check.

Instead, every write to a monitor leaves a *change note* (:func:`note`): a tiny item under the minute of the write.
A worker reads the notes written since its tick (:class:`Feed`: strongly consistent, incremental, a read unit or two
per look-up of a hundred jobs) and reads again only the monitors they name, exactly as it read every monitor before.

A note is written just after its monitor.  A crash between the two, or a note the table refused, leaves the workers
on the tick's view of that monitor until the next tick: a monitor paused in that minute is checked once more, and
a result may be marked from a state a minute old — which the incident handler already tolerates
(``checks.marking``).  Such a note is logged as an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.checks.marking import Watch
from chalicelib.clock import utcnow
from chalicelib.monitors.models import ChangeModel
from chalicelib.observability import logger

# A job's watch is trusted only this long after its tick read it (a message redelivered or redriven later is looked
# up in full, as before watches travelled), and notes outlive that by far.
TRUSTED_FOR = timedelta(minutes=10)
KEEP = timedelta(hours=1)
# Notes a refresh reads at most: past it (a storm of writes: a regional outage's status changes, one tenant saving
# windows in a loop), the feed gives up on telling monitors apart and every job of the message is looked up in full,
# which costs what every message cost before notes.
MAX_NOTES = 1000
# Notes up to this long before the tick's read count as after it: the schedule index is eventually consistent
# (its copy of a monitor can trail the table by a moment), and two functions' clocks can differ a little.
MARGIN = timedelta(seconds=15)
# Each refresh reads again this far back: a note stamped just before the last read can land just after it.
OVERLAP = timedelta(seconds=10)


def _minute(at: datetime) -> str:
    return f"{at:%Y-%m-%dT%H:%M}"


def _stamp(at: datetime) -> str:
    return f"{at:%Y-%m-%dT%H:%M:%S.%f}"


def note(keys: Iterable[tuple[str, str]]) -> None:
    """Note that each (team id, monitor id) was just written (after the write landed)."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return
    at = utcnow().astimezone(UTC)
    items = [
        ChangeModel(_minute(at), f"{_stamp(at)}#{team_id}#{monitor_id}", expires_at=at + KEEP)
        for team_id, monitor_id in keys
    ]
    try:
        if len(items) == 1:
            items[0].save()
        else:
            with ChangeModel.batch_write() as batch:
                for item in items:
                    batch.save(item)
    except Exception:  # noqa: BLE001 - the monitor is written: the workers see it at the next tick (module doc)
        logger.exception("monitor change not noted", extra={"monitors": [m for _, m in keys][:20]})


def note_one(team_id: str, monitor_id: str) -> None:
    note([(team_id, monitor_id)])


class Feed:
    """The monitors noted as changed since ``since`` (the tick's read, at most :data:`TRUSTED_FOR` ago), read again
    on each :meth:`refresh`.  ``blind`` once it cannot tell monitors apart — a refresh found more than
    :data:`MAX_NOTES`, or could not read the notes at all — and then every monitor counts as changed: its worker
    looks every job up, as before notes, rather than fail a message (and delay its checks by a redelivery)."""

    def __init__(self, since: datetime):
        self._from = since.astimezone(UTC) - MARGIN
        self._read_at: datetime | None = None
        self.changed: set[tuple[str, str]] = set()
        self.blind = False

    def refresh(self, now: datetime | None = None) -> set[tuple[str, str]]:
        """Every monitor noted since ``since`` up to ``now``: what earlier refreshes found, and what landed since."""
        if self.blind:
            return set(self.changed)
        try:
            return self._refresh(now)
        except Exception:  # noqa: BLE001 - a read the table refused (its budget is tight: ``ChangeModel``)
            logger.warning("change notes not read: looking every job up", exc_info=True)
            self.blind = True
            return set(self.changed)

    def _refresh(self, now: datetime | None) -> set[tuple[str, str]]:
        now = (now or utcnow()).astimezone(UTC)
        start = self._from if self._read_at is None else max(self._from, self._read_at - OVERLAP)
        minute = start.replace(second=0, microsecond=0)
        read = 0
        while minute <= now:
            condition = ChangeModel.key >= _stamp(start) if minute <= start else None
            for item in ChangeModel.query(_minute(minute), condition, consistent_read=True, page_size=MAX_NOTES):
                read += 1
                if read > MAX_NOTES:
                    self.blind = True
                    return set(self.changed)
                _, team_id, monitor_id = item.key.split("#", 2)
                self.changed.add((team_id, monitor_id))
            minute += timedelta(minutes=1)
        self._read_at = now
        return set(self.changed)


def watch_of(monitor: Any) -> Watch:
    """What a read of a monitor item says that marks its results (a maintenance span it cannot read is left out)."""
    spans = []
    for span in monitor.maintenance or ():
        try:
            start, end = (datetime.fromisoformat(str(v)) for v in span)
        except (TypeError, ValueError):
            continue
        spans.append((start, end))
    raw = monitor.region_status
    shown: dict[str, Any] = dict(raw.as_dict() if hasattr(raw, "as_dict") else raw or {})
    return Watch(
        status=str(monitor.status or "pending"),
        steady_regions=frozenset(str(r) for r in monitor.steady_regions or ()),
        down_regions=frozenset(str(r) for r, label in shown.items() if label == "down"),
        regions=frozenset(str(r) for r in shown),
        maintenance=tuple(spans),
        ssl_expiry_alert_days=int(monitor.ssl_expiry_alert_days or 0),
        known=True,
    )
