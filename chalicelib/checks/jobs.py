"""Check jobs and the SQS messages that carry them.

One message carries many jobs (up to 2,000 and ~1 MB of JSON, gzipped and
base64-encoded when that makes it smaller), each with the monitor's whole check
config and what marks its results as the tick read them (its *watch*), so a worker
reads again only the monitors written since the tick (``monitors.watching``).
A message is one worker invocation, which ``infra/build.py``
sizes for a full one.  A job's ``slot`` is the instant it was scheduled for: with the
monitor and the region it makes the result's key, so a redelivered job
overwrites its own result instead of adding one.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chalicelib.checks.kinds import Spec, kind_of, spec_from_json
from chalicelib.checks.marking import Watch

FORMAT_VERSION = 1
GZIP_PREFIX = "gz:"
# The worker's event source hands it one message an invocation: a message's jobs are the checks one invocation
# runs in its minute, and infra/build.py sizes the worker's memory (its CPU) for this many.
MAX_JOBS_PER_MESSAGE = 2000
SQS_MAX_MESSAGE_BYTES = 1_048_576  # SQS's limit for a message and for a whole SendMessageBatch (1 MiB since 2025)
MAX_MESSAGE_BYTES = 1_000_000  # below it


@dataclass(frozen=True)
class Job:
    team_id: str
    monitor_id: str
    region: str
    slot: datetime  # the planned second (UTC): the check's identity; it starts at ``start``
    spec: Spec  # what to check, of any kind (``checks.kinds``)
    # What marks the results (``checks.marking``) as the tick read the monitor, and when it read it: the worker
    # trusts it unless the monitor was written since (``monitors.watching``).  None: the worker reads the monitor.
    watch: Watch | None = None
    watched_at: datetime | None = None

    @property
    def start(self) -> datetime:
        """When the worker starts it: its slot, plus its monitor's stable share of that second (:func:`spread`)."""
        return self.slot + spread(self.monitor_id)

    def to_json(self) -> dict[str, Any]:
        kind = kind_of(self.spec)
        data = {
            "team_id": self.team_id,
            "monitor_id": self.monitor_id,
            "region": self.region,
            "slot": self.slot.isoformat(),
            "spec": kind.to_json(self.spec),
        }
        if kind.name != "http":  # an HTTP job is as it was before kinds: older workers still read it
            data["type"] = kind.name
        if self.watch is not None and self.watched_at is not None:
            data["watch"] = self.watch.to_json()
            data["watched_at"] = self.watched_at.isoformat()
        return data

    @staticmethod
    def from_json(data: dict[str, Any]) -> Job:
        spec = spec_from_json(str(data.get("type", "http")), dict(data["spec"]))
        return Job(
            team_id=str(data["team_id"]),
            monitor_id=str(data["monitor_id"]),
            region=str(data["region"]),
            slot=datetime.fromisoformat(data["slot"]),
            spec=spec,
            watch=Watch.from_json(data["watch"]) if "watch" in data else None,
            watched_at=_watched_at(data),
        )


def _watched_at(data: dict[str, Any]) -> datetime | None:
    """When the job's watch was read: both or neither, with a time zone (a job that breaks that is poisoned)."""
    if ("watch" in data) != ("watched_at" in data):
        raise ValueError("a watch without the time it was read, or the reverse")
    if "watched_at" not in data:
        return None
    at = datetime.fromisoformat(data["watched_at"])
    if at.tzinfo is None:
        raise ValueError("watched_at without a time zone")
    return at


SPREAD_STEPS = 100  # a second's starts are spread over this many steps (10 ms each)


def spread(monitor_id: str) -> timedelta:
    """A monitor's stable offset into its start's second: one of :data:`SPREAD_STEPS` steps of 10 ms.

    The scheduler plans starts to the second, and a second holds dozens of a worker's starts.  Begun together,
    their handshakes queue for the GIL and for a small Lambda's share of a CPU (throttled for the rest of each
    100 ms period once it is spent), and measure that wait as the targets' slowness.  The checker bench
    (``tests/load``), one message of 2,000 checks of a loopback target: started on the whole second, capped at the
    worker's share, p95 297 ms where a free CPU measured 44; over ten 100 ms steps, a free CPU still measured
    8.4 ms at the median for a 4.6 ms target (the few checks of a step slow each other); over a hundred 10 ms
    steps, 4.6 ms free and capped alike.  Alone, each check costs more CPU (3.5 ms against 2.7: every start wakes
    an idle process), which the worker's size allows for (``infra/build.py``).  The check's identity stays its
    slot, to the second."""
    step = zlib.crc32(f"spread:{monitor_id}".encode()) % SPREAD_STEPS
    return timedelta(microseconds=step * 1_000_000 // SPREAD_STEPS)


def encode_message(jobs: list[Job]) -> str:
    raw = json.dumps({"v": FORMAT_VERSION, "jobs": [j.to_json() for j in jobs]}, separators=(",", ":"))
    packed = GZIP_PREFIX + base64.b64encode(gzip.compress(raw.encode(), compresslevel=6)).decode("ascii")
    return packed if len(packed) < len(raw) else raw


def decode_message(body: str) -> list[dict[str, Any]]:
    """The raw job dicts of a message (each is parsed on its own, so one bad job fails alone)."""
    if body.startswith(GZIP_PREFIX):
        body = gzip.decompress(base64.b64decode(body[len(GZIP_PREFIX) :])).decode("utf-8")
    payload = json.loads(body)
    if payload.get("v") != FORMAT_VERSION or not isinstance(payload.get("jobs"), list):
        raise ValueError("not a Vigil check-job message")
    return list(payload["jobs"])


def pack(jobs: list[Job], per_message: int = MAX_JOBS_PER_MESSAGE) -> list[str]:
    """Split jobs into as few message bodies as hold at most ``per_message`` each (what one invocation of the
    region's worker runs: ``scheduler.sizing``), dealt in start order
    like cards (the first job to the first body, the second to the second, …), then halve any body over the size
    limit until it fits.

    Each body then holds an equal share of every second's starts: an invocation's checks come at the minute's own
    even pace, which is what ``infra/build.py`` sizes its CPU for.  Cut into runs of the list instead, one body
    held the 30-second monitors' first-half checks and the next held none (found in session 16: at 10,000 monitors
    1,510 starts in 25 s, 60 a second, where the worker is sized for 36: docs/decisions.md).  A halved body keeps
    that pace: each half holds half the checks of half the minute."""
    if not jobs:
        return []
    messages = -(-len(jobs) // max(1, per_message))
    ordered = sorted(jobs, key=lambda j: (j.start, j.monitor_id, j.region))
    return [body for lane in range(messages) for body in _fit(ordered[lane::messages])]


def _fit(jobs: list[Job]) -> list[str]:
    body = encode_message(jobs)
    if len(body) <= MAX_MESSAGE_BYTES or len(jobs) == 1:
        return [body]
    half = len(jobs) // 2
    return _fit(jobs[:half]) + _fit(jobs[half:])
