"""The check worker: run the check jobs of one batch of SQS messages and store their results.

The probes and the job contract are :mod:`chalicelib.checks`; this is the orchestration around them, beside
its entry point (:mod:`functions.checker.handler`), with the only tables it touches (:data:`TABLES`).

For each message of the batch, in its own thread, so no message waits for another's minute:

1. Decode the message and parse each job on its own; unparseable jobs fail the message (after the
   good ones ran), so it is redelivered and, in the end, parked in the DLQ for a person to read.
2. Drop the jobs this worker must not run: another region's, and those whose monitor was deleted,
   paused or taken out of this region since the tick — per 100 jobs in start order, each chunk looked up
   while the jobs before it run, so the minute's first checks never wait for its last.  A job carries the
   tick's view of its monitor; only the monitors a change note names since the tick are read again
   (``monitors.watching``: a consistent Query of the notes, then a BatchGet of those monitors).
   On a redelivery, also drop the jobs whose result is already stored (a BatchGet of result keys),
   so a message that failed half-way does not check its targets twice; and a job that another
   message of the same batch carries too (a duplicate delivery) runs once.
3. Hand each job to the check pool (shared by the batch, bounded) at its start — the scheduler
   spreads slots over the minute's seconds, and each monitor takes a stable share of its second
   (``Job.start``) — in start order, so an early job never queues behind a later one.  A start is
   never planned so late that the check could outlive the invocation: a late job starts at once.
4. Mark each result the incident handler must see (:mod:`chalicelib.checks.marking`), from the monitor's
   watch of step 2, and pack the results (:mod:`chalicelib.monitors.packs`): one item per
   bucket of monitors and minute, written at most :data:`PACK_FLUSH_S` after its oldest result (a pack holding
   a result that can move the monitor's status, within a second: ``checks.marking.urgent``), in
   ``BatchWriteItem`` batches of 25 with backoff, under a key naming this delivery of the message — by a writer
   thread of the message's own, so a slow write never holds a start back.  A check's
   identity is (monitor, planned start, region): a check two packs hold (a duplicated message) is read once.
5. When the message is done, the region's progress moves to its minute (what a monitor's ``last_checked_at``
   is derived from), and the CPU its threads spent is added to its region's hour (``monitors.workload``): what the
   scheduler sizes the worker from (``scheduler.sizing``).  Only a message that came ahead of its minute, on its
   first delivery, counts: a forced tick's or a redelivered message's checks start together, late.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalicelib.checks import kinds, ssrf
from chalicelib.checks.jobs import Job, decode_message
from chalicelib.checks.marking import UNKNOWN, URGENT_FLUSH_S, Watch, matters, urgent
from chalicelib.checks.model import CheckResult
from chalicelib.monitors import packs, workload
from chalicelib.monitors.models import ChangeModel, MonitorModel, PackModel, ProgressModel
from chalicelib.monitors.packs import Packed
from chalicelib.monitors.watching import TRUSTED_FOR, Feed, watch_of
from chalicelib.observability import logger
from chalicelib.storage.base import condition_failed

# Checks in flight per invocation: mostly waiting on the network, cheap in threads; 48 for up to 3,000 checks a
# minute (checks.sizing.MAX_LANE_CHECKS), as 32 were for 2,000.
CHECK_CONCURRENCY = 48
MESSAGE_CONCURRENCY = 10  # messages run side by side (an SQS batch without a batching window holds at most 10)
FINISH_MARGIN_S = 5.0  # kept after the last check's own timeout, to write its result before Lambda stops us
WRITE_BATCH = 25  # BatchWriteItem's limit
WRITE_ATTEMPTS = 6
WRITE_BACKOFF_S = 0.05  # doubled per attempt, with full jitter: 50 ms … 1.6 s
# What the look-up reads: to drop paused or deleted monitors' jobs, and to mark results (``checks.marking``).
MONITOR_FIELDS = [
    "team_id",
    "monitor_id",
    "paused",
    "regions",
    "status",
    "region_status",
    "steady_regions",
    "maintenance",
    "ssl_expiry_alert_days",
]
LAMBDA_TIMEOUT_S = (
    120  # the worker's Lambda timeout (infra/checker.json and the local stack use this): a minute of starts + checks
)
# Its SQS event source, deployed (infra/build.py) and in the local stack: one message an invocation, and up to 50
# invocations at once per region (each holds its message's minute).
EVENT_BATCH_SIZE = 1
MAX_CONCURRENT_INVOCATIONS = 50
LOOKUP_CHUNK = 100  # jobs looked up (paused? deleted? already done?) at a time: one BatchGetItem's limit
LOOKUP_SPAN_S = 10.0  # and no chunk spans more of the minute's starts: a small message's late jobs are looked up late
PACK_FLUSH_S = 40.0  # a result waits at most this long before its pack is written (a check is listed within a minute)
# Change notes and the monitors they name read (to drop paused or deleted monitors' jobs and mark results);
# packs and progress written.
TABLES = (ChangeModel, MonitorModel, PackModel, ProgressModel)


class PoisonedJobs(ValueError):
    """Some jobs of a message cannot be parsed: the message fails, whatever the others did."""


class ResultsNotStored(RuntimeError):
    """Some results could not be written even after retries: the message is redelivered."""


def result_slot(job: Job, region: str) -> str:
    """The result's sort key: the planned start (UTC, to the second) and the region that ran it."""
    return f"{job.slot.astimezone(UTC):%Y-%m-%dT%H:%M:%S}#{region}"


@dataclass
class Tally:
    """What one message (or a whole batch) did, for metrics and logs."""

    jobs: int = 0
    dropped: int = 0
    already_done: int = 0
    checks_run: int = 0
    checks_failed: int = 0
    answered: int = 0  # checks whose target answered (:func:`answered`): what the CPU is counted over
    stored: int = 0
    max_late_s: float = 0.0

    def add(self, other: Tally) -> None:
        for name, value in asdict(other).items():
            if name == "max_late_s":
                self.max_late_s = max(self.max_late_s, value)
            else:
                setattr(self, name, getattr(self, name) + value)


@dataclass
class _Outcome:
    tally: Tally
    error: BaseException | None = None


@dataclass(frozen=True)
class Worker:
    """One invocation's worker: which region it checks from, and when it must be done."""

    region: str
    allow_private: bool
    deadline: float  # time.monotonic() by which everything must be written
    # The CPU it reports is what it measured times this: 1 deployed; the local stack, on this machine's cores,
    # reports what the deployed arm64 worker would (``checks.sizing.ARM64_CPU_FACTOR``, assumed).
    cpu_scale: float = 1.0
    # Its one message is all its process runs (deployed, one message an invocation): the message's CPU is the
    # process's, its DNS lookups' threads and all.  Otherwise (the local stack) the CPU of the threads that run its
    # sections (``_Cpu``); a batch of several shares them, and records none (``BatchRun``).
    alone: bool = False

    @classmethod
    def for_invocation(
        cls, region: str, *, allow_private: bool, remaining_s: float, cpu_scale: float = 1.0, alone: bool = False
    ) -> Worker:
        return cls(region, allow_private, time.monotonic() + remaining_s, cpu_scale, alone)

    @contextmanager
    def start(self, records: list[dict[str, Any]]) -> Iterator[BatchRun]:
        """Start every message of the batch now; the caller then collects each record's outcome."""
        with (
            ThreadPoolExecutor(CHECK_CONCURRENCY, thread_name_prefix="vigil-check") as checks,
            ThreadPoolExecutor(
                max(1, min(len(records), MESSAGE_CONCURRENCY)), thread_name_prefix="vigil-message"
            ) as messages,
        ):
            yield BatchRun(self, records, checks, messages)

    # -- one message

    def run_message(
        self,
        body: str,
        receive_count: int,
        checks: ThreadPoolExecutor,
        tally: Tally,
        claim: Callable[[str], bool],
        message_id: str = "",
        measure: bool = True,
    ) -> None:
        """Run one message's jobs, counting into ``tally`` (kept even when the message fails).

        ``claim(result key)`` is False when another message of the batch already runs that job.  ``measure``: the
        threads it runs on are its own, and its CPU may be recorded (not so in a batch of several, :class:`BatchRun`).
        """
        cpu = _Cpu()
        started = time.process_time()
        with cpu.track():
            self._run_message(body, receive_count, checks, tally, claim, message_id, cpu)
        spent_ms = (time.process_time() - started) * 1000 if self.alone else cpu.ms
        # Over the checks that were answered: a check that fails early (no address, refused, blocked) costs little,
        # and counted in, a tenant's dead targets would lower the figure the lanes are cut for until they answer.
        if measure and tally.answered > 0 and receive_count == 1 and cpu.ahead:
            self._record_cpu(spent_ms * self.cpu_scale, tally.answered)

    def _record_cpu(self, cpu_ms: float, checks: int) -> None:
        try:
            workload.record_cpu(self.region, datetime.now(UTC), cpu_ms, checks)
        except Exception as exc:  # noqa: BLE001 - the results are stored; the sizing waits for other messages
            logger.warning("worker CPU not recorded", extra={"region": self.region, "error": type(exc).__name__})

    def _run_message(
        self,
        body: str,
        receive_count: int,
        checks: ThreadPoolExecutor,
        tally: Tally,
        claim: Callable[[str], bool],
        message_id: str,
        cpu: _Cpu,
    ) -> None:
        jobs, poisoned = _parse(body)
        tally.jobs = len(jobs) + len(poisoned)
        jobs.sort(key=lambda j: j.start)
        cpu.ahead = bool(jobs) and jobs[0].start > datetime.now(UTC)
        watches: dict[tuple[str, str], Watch] = {}
        packer = _Packer(self, f"{message_id or 'm'}.{receive_count}", cpu)
        done = _Done(self.region)
        read = [j.watched_at for j in jobs if j.watch is not None and j.watched_at is not None]
        # The tick's view is trusted only while its notes are kept and few minutes of them are to be read: a message
        # redelivered or redriven long after its tick looks every monitor up.
        trusted = bool(read) and datetime.now(UTC) - min(read) <= TRUSTED_FOR
        feed = Feed(min(read)) if trusted else None
        with ThreadPoolExecutor(1, thread_name_prefix="vigil-lookup") as lookups:
            self._run(
                self._runnable(jobs, receive_count, tally, claim, lookups, watches, done, feed, cpu),
                checks,
                tally,
                watches,
                packer,
            )
        if poisoned:
            raise PoisonedJobs(f"{len(poisoned)} of {tally.jobs} jobs cannot be parsed; first: {poisoned[0]}")
        if jobs:
            self.progress(max(packs.minute_of(j.slot) for j in jobs))

    def progress(self, minute: datetime) -> None:
        """Every result of a message of ``minute`` is stored: the region's progress moves there (never back)."""
        try:
            ProgressModel(f"checks#{self.region}").update(
                actions=[ProgressModel.through.set(minute)],
                condition=ProgressModel.through.does_not_exist() | (ProgressModel.through < minute),
            )
        except Exception as exc:  # noqa: BLE001 - the results are stored; only last_checked_at waits for the next
            if not condition_failed(exc):
                logger.warning("progress not written", extra={"region": self.region, "error": type(exc).__name__})

    def _runnable(
        self,
        jobs: list[Job],
        receive_count: int,
        tally: Tally,
        claim: Callable[[str], bool],
        lookups: ThreadPoolExecutor,
        watches: dict[tuple[str, str], Watch],
        done: _Done,
        feed: Feed | None,
        cpu: _Cpu,
    ) -> Iterator[Job]:
        """The jobs to run, in start order, looked up ``LOOKUP_CHUNK`` at a time, the next chunk while this one runs
        but no sooner than ``LOOKUP_SPAN_S`` before its first start.

        A message carries a region's whole minute (1,000 jobs and more): looking all of them up first
        would hold the minute's first checks behind every BatchGet of the message.  A chunk also spans at most
        ``LOOKUP_SPAN_S`` of starts, so a job is looked up at most two spans before it starts, however few jobs
        the message holds and however far apart they are: a monitor paused at second 10 is not checked again at
        second 40 (a 30-second monitor's second check travels in the minute's message since session 16; found by
        fresh-eyes reviews).  A chunk due within a span is looked up at once, while the one before waits for its
        start: starts that fall together (a forced tick) do not queue behind a look-up.
        """
        chunks = _chunks(jobs)

        def look_up(chunk: list[Job]) -> Future[list[Job]]:
            return lookups.submit(cpu.tracked(self._keep), chunk, receive_count, tally, claim, watches, done, feed)

        def due_in(chunk: list[Job]) -> float:  # seconds until ``chunk`` is looked up: one span before it starts
            return min(self._delay(j) for j in chunk) - LOOKUP_SPAN_S

        ahead: Future[list[Job]] | None = look_up(chunks[0]) if chunks else None
        for index in range(len(chunks)):
            current = ahead.result() if ahead else []
            ahead = None
            following = chunks[index + 1] if index + 1 < len(chunks) else None
            for job in current:
                # due within a span: looked up now, while this job waits for its start
                if following is not None and ahead is None and due_in(following) <= 0:
                    ahead = look_up(following)
                yield job  # the caller asks for the next job once this one has started
            if following is not None and ahead is None:  # this chunk is handed out (or dropped): wait for its time
                if (wait := due_in(following)) > 0:
                    time.sleep(wait)
                ahead = look_up(following)

    def _keep(
        self,
        jobs: list[Job],
        receive_count: int,
        tally: Tally,
        claim: Callable[[str], bool],
        watches: dict[tuple[str, str], Watch],
        stored: _Done,
        feed: Feed | None,
    ) -> list[Job]:
        live = self._live(jobs, watches, feed)
        done = 0
        if receive_count > 1:
            todo = [j for j in live if not stored.has(j)]
            live, done = todo, len(live) - len(todo)
        tally.dropped += len(jobs) - len(live) - done
        mine = [j for j in live if claim(f"{j.monitor_id}|{result_slot(j, self.region)}")]
        tally.already_done += done + len(live) - len(mine)
        return mine

    def _live(self, jobs: list[Job], watches: dict[tuple[str, str], Watch], feed: Feed | None) -> list[Job]:
        """The jobs whose monitor still exists, is not paused and still has this region; ``watches`` gets what
        marks their results.  A job's own watch (the tick's read) is trusted unless a change note names its monitor
        (``monitors.watching``); those monitors, and a job that carries no watch, are read again."""
        mine = [j for j in jobs if j.region == self.region]
        if len(mine) < len(jobs):
            # A queue feeding the wrong region's worker: a result labelled with this region would lie.
            logger.error("jobs for another region", extra={"region": self.region, "count": len(jobs) - len(mine)})
        if not mine:
            return []
        changed = feed.refresh() if feed is not None and any(j.watch is not None for j in mine) else set()
        everything = feed is None or feed.blind
        active = set()
        noted, unknown = set(), set()
        for j in mine:
            key = (j.team_id, j.monitor_id)
            if j.watch is None or everything:
                unknown.add(key)
            elif key in changed:
                noted.add(key)
            else:
                active.add(key)
                watches[key] = j.watch
        # A noted monitor was just written: read it consistently (it is one of few).
        for keys, consistent in ((noted, True), (unknown - noted, False)):
            if not keys:
                continue
            for m in MonitorModel.batch_get(keys, consistent_read=consistent, attributes_to_get=MONITOR_FIELDS):
                if not m.paused and self.region in (m.regions or []):
                    active.add((m.team_id, m.monitor_id))
                    watches[(m.team_id, m.monitor_id)] = watch_of(m)
        return [j for j in mine if (j.team_id, j.monitor_id) in active]

    def _latest_start(self, job: Job) -> float:
        return self.deadline - FINISH_MARGIN_S - job.spec.timeout_ms / 1000

    def _delay(self, job: Job) -> float:
        """Seconds to wait before starting ``job``: until its planned start, but never so long it cannot finish."""
        until_start = (job.start - datetime.now(UTC)).total_seconds()
        return min(until_start, self._latest_start(job) - time.monotonic())

    def _run(
        self,
        jobs: Iterable[Job],
        checks: ThreadPoolExecutor,
        tally: Tally,
        watches: dict[tuple[str, str], Watch],
        packer: _Packer,
    ) -> None:
        """Start ``jobs`` (in start order) each at its planned start.  Each result goes to the writer as its check
        ends, and the writer's own thread writes the packs: a slow write never holds a start back."""
        writer = _Writer(self, tally, watches, packer, packer.cpu)
        writing = threading.Thread(target=writer.run, name="vigil-writer", daemon=True)
        writing.start()
        try:
            for job in jobs:
                if (delay := self._delay(job)) > 0:
                    time.sleep(delay)
                future = checks.submit(packer.cpu.tracked(self._check), job)  # may raise (shutdown): not counted
                writer.expect()
                future.add_done_callback(packer.cpu.tracked(writer.collect))
        finally:  # a failed look-up fails the message, but the checks already running are still stored
            writer.wait_collected()
            writer.stop()
            writing.join()
            writer.flush(everything=True)
        writer.raise_if_failed()

    def _check(self, job: Job) -> tuple[Job, CheckResult]:
        with ssrf.lookups_for(job.team_id):  # a team's hung DNS lookups hold its own slots, not everyone's
            return job, kinds.run(job.spec, region=self.region, allow_private=self.allow_private)


def answered(result: CheckResult) -> bool:
    """Whether the check's target answered, for the CPU per check (``Tally.answered``): a status (or a TCP check's
    connection), a hop that got one before a redirect failed, or a connection that got as far as a TLS handshake,
    failed or not — an expired or untrusted certificate costs its handshake, and a second one to read its expiry
    (``checks.net``), the dearest part of any check.  Left out: what failed before a connection (no address,
    refused, blocked, no connection in time) or, on plain HTTP, just after one: a little CPU each."""
    return result.ok or result.status_code is not None or result.final_url is not None or result.timings.tls_ms > 0


def _chunks(jobs: list[Job]) -> list[list[Job]]:
    """``jobs`` (in start order) in runs of at most ``LOOKUP_CHUNK`` jobs and ``LOOKUP_SPAN_S`` of starts."""
    chunks: list[list[Job]] = []
    for job in jobs:
        if (
            not chunks
            or len(chunks[-1]) >= LOOKUP_CHUNK
            or (job.start - chunks[-1][0].start).total_seconds() > LOOKUP_SPAN_S
        ):
            chunks.append([])
        chunks[-1].append(job)
    return chunks


def _parse(body: str) -> tuple[list[Job], list[str]]:
    """The message's jobs, and a short reason for each job that cannot be parsed (never its content)."""
    jobs: list[Job] = []
    poisoned: list[str] = []
    for index, raw in enumerate(decode_message(body)):
        try:
            job = Job.from_json(raw)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            poisoned.append(f"job {index}: {type(exc).__name__}")
            continue
        if job.slot.tzinfo is None:  # the scheduler writes UTC with its offset; a bare time is not ours
            poisoned.append(f"job {index}: slot without a time zone")
            continue
        jobs.append(job)
    return jobs, poisoned


@dataclass
class _Writer:
    """A message's finished checks: marked (``checks.marking``) and packed as they end (on the check's thread), and
    written by :meth:`run`, on a thread of its own, as their packs fall due."""

    worker: Worker
    tally: Tally
    watches: dict[tuple[str, str], Watch]
    packer: _Packer
    cpu: _Cpu
    errors: list[str] = field(default_factory=list)
    lock: threading.Condition = field(default_factory=threading.Condition)
    wake: threading.Event = field(default_factory=threading.Event)
    stopping: bool = False
    expected: int = 0  # checks started
    collected: int = 0  # checks whose result (or crash) was taken

    def expect(self) -> None:
        with self.lock:
            self.expected += 1

    def wait_collected(self) -> None:
        """Until every started check's result is packed (a future's callbacks run after its waiters wake)."""
        with self.lock:
            self.lock.wait_for(lambda: self.collected >= self.expected)

    def collect(self, future: Future[tuple[Job, CheckResult]]) -> None:
        try:
            self._collect(future)
        except Exception as exc:  # noqa: BLE001 - a result not packed fails the message (redelivered), never lost
            logger.exception("result not packed", extra={"region": self.worker.region})
            with self.lock:
                self.errors.append(f"a result not packed: {type(exc).__name__}")
        finally:
            with self.lock:
                self.collected += 1
                self.lock.notify_all()

    def _collect(self, future: Future[tuple[Job, CheckResult]]) -> None:
        try:
            job, result = future.result()
        except Exception as exc:  # noqa: BLE001 - a checker bug fails this message, not the batch
            logger.exception("check crashed", extra={"region": self.worker.region})
            with self.lock:
                self.errors.append(f"a check crashed: {type(exc).__name__}")
            return
        watch = self.watches.get((job.team_id, job.monitor_id), UNKNOWN)
        late = (result.checked_at - job.start).total_seconds()
        with self.lock:
            self.tally.checks_run += 1
            self.tally.checks_failed += not result.ok
            self.tally.answered += answered(result)
            self.tally.max_late_s = max(self.tally.max_late_s, late)
        if self.packer.add(job, result, matters(result, watch), urgent(result, watch)):
            self.wake.set()  # an urgent (or full) pack: the writer's wait is shorter now

    def run(self) -> None:
        """Write each pack when it falls due, until :meth:`stop` (the rest is written by the last flush)."""
        with self.cpu.track():
            self._run()

    def _run(self) -> None:
        while True:
            self.wake.wait(self.packer.until_due())
            self.wake.clear()
            if self.stopping:
                return
            if self.packer.due():
                self.flush()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    def flush(self, everything: bool = False) -> None:
        try:
            stored = self.packer.flush(everything)
        except Exception as exc:  # noqa: BLE001 - keep checking and writing; the message fails at the end
            logger.exception("results not stored", extra={"region": self.worker.region})
            with self.lock:
                self.errors.append(f"results not stored: {type(exc).__name__}")
            return
        with self.lock:
            self.tally.stored += stored

    def raise_if_failed(self) -> None:
        if self.errors:
            raise ResultsNotStored("; ".join(self.errors))


@dataclass
class _Done:
    """The checks already stored, for a redelivered message: the region's packs of the job's bucket and minute
    (whichever delivery or copy of the message wrote them), read once per bucket and minute."""

    region: str
    seen: dict[tuple[str, datetime], set[tuple[str, int]]] = field(default_factory=dict)

    def has(self, job: Job) -> bool:
        bucket, minute = packs.bucket_of(job.monitor_id), packs.minute_of(job.slot)
        if (bucket, minute) not in self.seen:
            prefix = f"{packs.minute_key(minute)}#{self.region}#"
            found: set[tuple[str, int]] = set()
            for item in PackModel.query(bucket, PackModel.key.startswith(prefix), consistent_read=True):
                found |= {(p.monitor_id, int(p.slot.timestamp())) for p in packs.decode_pack(item.body)}
            self.seen[(bucket, minute)] = found
        return (job.monitor_id, int(job.slot.timestamp())) in self.seen[(bucket, minute)]


# A pack taken to be written: its (bucket, minute), results, oldest result's and first urgent result's times.
Taken = tuple[tuple[str, datetime], list[Packed], float, float | None]


class _Packer:
    """A message's results, packed per bucket and minute and written in ``BatchWriteItem`` batches.  Results are
    added on the checks' threads and written on the writer's: its state is behind one lock, its writes are not."""

    def __init__(self, worker: Worker, writer: str, cpu: _Cpu | None = None):
        self.worker = worker
        self.cpu = cpu or _Cpu()
        self.writer = writer  # <message id>.<delivery>: an earlier delivery's packs keep their own keys
        self.sequence = 0
        self.buffers: dict[tuple[str, datetime], list[Packed]] = {}
        self.since: dict[tuple[str, datetime], float] = {}  # each pending pack's oldest result
        self.urgent: dict[tuple[str, datetime], float] = {}  # a pack holding an urgent result: since when
        self.lock = threading.Lock()

    def add(self, job: Job, result: CheckResult, marked: bool, urgent: bool = False) -> bool:
        """Pend ``result`` in its pack; True when that made the pack urgent or full (it must be written sooner)."""
        now = time.monotonic()
        slot = job.slot.astimezone(UTC).replace(microsecond=0)
        packed = Packed(job.team_id, job.monitor_id, self.worker.region, slot, result, marked)
        key = (packs.bucket_of(job.monitor_id), packs.minute_of(slot))
        with self.lock:
            pending = self.buffers.setdefault(key, [])
            pending.append(packed)
            self.since.setdefault(key, now)
            if urgent and key not in self.urgent:
                self.urgent[key] = now
                return True
            return len(pending) == packs.MAX_PACK_RESULTS

    def until_due(self) -> float:
        """Seconds until a pending pack must be written (0: now; ``PACK_FLUSH_S`` when nothing is pending)."""
        with self.lock:
            if not self.buffers:
                return PACK_FLUSH_S
            if any(len(b) >= packs.MAX_PACK_RESULTS for b in self.buffers.values()):
                return 0.0
            oldest = min(self.since.values())
            deadline = min([oldest + PACK_FLUSH_S, *(t + URGENT_FLUSH_S for t in self.urgent.values())])
        return max(0.0, deadline - time.monotonic())

    def due(self) -> bool:
        """Whether a pending pack must be written now: one is full, their
        oldest result would wait longer than ``PACK_FLUSH_S``, or an urgent one longer than ``URGENT_FLUSH_S``.
        Never merely because the message is idle between starts: the packs would hold a check or two each, and
        pay a write unit each."""
        return bool(self.buffers) and self.until_due() <= 0

    def flush(self, everything: bool = False) -> int:
        """Write the pending packs that are due — all of them, unless only urgent ones are — or
        ``everything``; the number of results they hold.  On a failure the results go back to pending: the next
        flush writes them again under new keys (a check in two packs is read once)."""
        taken = self._take(everything)
        if not taken:
            return 0
        now = datetime.now(UTC)
        items = []
        for (bucket, minute), results, _, _ in taken:
            for start in range(0, len(results), packs.MAX_PACK_RESULTS):
                part = results[start : start + packs.MAX_PACK_RESULTS]
                with self.lock:
                    self.sequence += 1
                    sequence = self.sequence
                items.append(
                    packs.pack_item(bucket, minute, self.worker.region, f"{self.writer}.{sequence}", part, now)
                )
        try:
            for start in range(0, len(items), WRITE_BATCH):
                write_items(items[start : start + WRITE_BATCH])
        except BaseException:
            self._put_back(taken)
            raise
        return sum(len(results) for _, results, _, _ in taken)

    def _take(self, everything: bool) -> list[Taken]:
        with self.lock:
            if not self.buffers:
                return []
            at = time.monotonic()
            full = any(len(b) >= packs.MAX_PACK_RESULTS for b in self.buffers.values())
            if everything or full or at - min(self.since.values()) >= PACK_FLUSH_S:
                keys = sorted(self.buffers)
            else:  # only the urgent packs: the rest keep filling
                keys = sorted(k for k, since in self.urgent.items() if at - since >= URGENT_FLUSH_S)
            taken = [(key, self.buffers.pop(key), self.since.pop(key), self.urgent.pop(key, None)) for key in keys]
            return taken

    def _put_back(self, taken: list[Taken]) -> None:
        """A failed write's packs pend again as they were: as old, and as urgent (the next try comes as soon)."""
        with self.lock:
            for key, results, since, urgent_since in taken:
                self.buffers[key] = results + self.buffers.get(key, [])
                self.since[key] = min(since, self.since.get(key, since))
                if urgent_since is not None:
                    self.urgent[key] = min(urgent_since, self.urgent.get(key, urgent_since))


def write_items(items: list[PackModel]) -> None:
    """One ``BatchWriteItem`` of up to 25 packs, resubmitting unprocessed items with exponential backoff.

    PynamoDB's ``Model.batch_write`` resubmits them at once, without backoff, which only adds to the
    throttling that left them unprocessed.
    """
    connection = PackModel._get_connection()
    meta: Any = PackModel.Meta
    table = meta.table_name
    puts = [item.serialize() for item in items]
    attempts = WRITE_ATTEMPTS
    for attempt in range(attempts):
        response = connection.batch_write_item(put_items=puts) or {}
        unprocessed = response.get("UnprocessedItems", {}).get(table, [])
        if not unprocessed:
            return
        puts = [request["PutRequest"]["Item"] for request in unprocessed]
        if attempt + 1 < attempts:
            time.sleep(random.uniform(0, WRITE_BACKOFF_S * 2**attempt))  # noqa: S311 - jitter, not security
    raise ResultsNotStored(f"{len(puts)} packs still unprocessed after {attempts} attempts")


class BatchRun:
    """Every message of one invocation, started at once; ``outcome`` reports one record's."""

    def __init__(
        self, worker: Worker, records: list[dict[str, Any]], checks: ThreadPoolExecutor, messages: ThreadPoolExecutor
    ) -> None:
        self.worker = worker
        self._claimed: set[str] = set()
        self._lock = threading.Lock()
        self._futures: dict[tuple[str, str], Future[_Outcome]] = {}
        # Several messages share the invocation's check threads (and, past MESSAGE_CONCURRENCY, its message threads):
        # each would count a shared thread's whole CPU as its own.  Deployed and locally a batch holds one message.
        self._shared = len({(str(r.get("messageId")), str(r.get("receiptHandle"))) for r in records}) > 1
        for record in records:
            key = (str(record.get("messageId")), str(record.get("receiptHandle")))
            if key not in self._futures:  # the very same delivery listed twice runs once
                self._futures[key] = messages.submit(self._message, record, checks)

    def _message(self, record: dict[str, Any], checks: ThreadPoolExecutor) -> _Outcome:
        receive_count = int((record.get("attributes") or {}).get("ApproximateReceiveCount", "1"))
        tally = Tally()
        try:
            self.worker.run_message(
                str(record.get("body", "")),
                receive_count,
                checks,
                tally,
                self._claim,
                message_id=str(record.get("messageId") or ""),
                measure=not self._shared,
            )
            return _Outcome(tally)
        except Exception as exc:  # noqa: BLE001 - each message fails alone, in the batch response
            logger.warning(
                "message failed",
                extra={"region": self.worker.region, "message_id": record.get("messageId"), "error": str(exc)},
            )
            return _Outcome(tally, exc)

    def _claim(self, key: str) -> bool:
        """The first message of the batch to claim a job runs it; a duplicate's copy is skipped.

        Safe: if the claimer then fails to store the result, its own record fails and is redelivered.
        """
        with self._lock:
            if key in self._claimed:
                return False
            self._claimed.add(key)
            return True

    def outcome(self, message_id: str, receipt_handle: str) -> int:
        """The number of results the message stored; raises its error if it failed."""
        found = self._futures[(message_id, receipt_handle)].result()
        if found.error is not None:
            raise found.error
        return found.tally.stored

    def tally(self) -> Tally:
        total = Tally()
        for future in self._futures.values():
            total.add(future.result().tally)
        return total


class _Cpu:
    """The CPU a message's own threads spend (``time.thread_time``: locally not its neighbours'): each thread that
    runs a section for it counts all the CPU it has spent, up to the end of its last section — its wake-ups and its
    pool's bookkeeping between sections too, which a sum of the sections alone left out (9 % of a check's CPU in the
    checker bench) — and the CPU its DNS lookups took on the threads the process shares for them
    (``ssrf.lookups_cpu_s``).  A worker's threads serve its one message: one message an invocation, and its pools
    made per invocation.  A worker alone in its process counts the process's CPU instead (``Worker.alone``)."""

    def __init__(self) -> None:
        self.ahead = False  # its first start was still ahead when it arrived: a minute's message, not a burst
        self._spent: dict[int, float] = {}  # thread → its CPU (s) at the end of its latest section
        self._lock = threading.Lock()
        self._local = threading.local()

    @property
    def ms(self) -> float:
        with self._lock:
            return sum(self._spent.values()) * 1000

    @contextmanager
    def track(self) -> Iterator[None]:
        if getattr(self._local, "on", False):
            yield
            return
        self._local.on = True
        try:
            yield
        finally:
            self._local.on = False
            spent = time.thread_time() + ssrf.lookups_cpu_s()
            with self._lock:
                self._spent[threading.get_ident()] = spent

    def tracked(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            with self.track():
                return fn(*args, **kwargs)

        return run
