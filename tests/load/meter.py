"""Counting what a run costs at the network edge of AWS: every request, from botocore's own event hooks.

Not a mock: requests go where they always go (the emulator); three botocore events watch each one on its way.

1. ``before-parameter-build`` keeps the request's parameters; ``before-call`` its serialized size and, for a
   DynamoDB write, each item as it is before the write; ``after-call`` the response's size and each item as it is
   after.  DynamoDB bills by what it stores — the larger of an item's old and new size, the index entries a write
   changes, the whole item a projected read touches — so item sizes come from the emulator's own table (the
   ``lookup`` a bench hands in: ``moto_items``), never from what the caller sent.
2. The hooks are botocore built-in handlers (:func:`install`): every session made afterwards has them, the app's
   boto3 session and PynamoDB's per-thread sessions alike.  ``tests/load/conftest.py`` installs them before any
   test makes a client; they count only while a :class:`Meter` is started.
3. Each request is put down to the function that made it: the handler the local event loop is running on this
   thread (:meth:`Meter.time_handlers` wraps each one, which also times every invocation), the check worker's
   pools (their threads' names), or an event source's own reading of its queue or stream (``poller:<source>``).
   The bench's own requests (seeding, waiting for queues to drain, reading results) and the local loop's empty
   one-second polls, which Lambda's twenty-second long polls replace (modelled in ``cost.py``), are left out and
   counted apart.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from botocore import handlers

from tests.load.cost import CHECKER, POLLER, Call, Invocation, Read, TableSchema, Write, index_writes, item_size

Lookup = Callable[[str, dict[str, Any]], dict[str, Any] | None]  # (physical table, key) → item (DynamoDB JSON)
KeyScan = Callable[[str, tuple[str, ...]], list[dict[str, Any]]]  # (physical table, key names) → every key in it

STATE = "vigil_meter"
WORKER_THREADS = ("vigil-check", "vigil-message", "vigil-lookup", "vigil-writer")  # the check worker's threads
LOOP_THREAD = "vigil-loop-"  # chalicelib/local/loop.py: one thread per event source
AGGREGATOR_THREADS = "vigil-aggregate"  # chalicelib/monitors/aggregate.py's pools
WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")

_active: Meter | None = None
_local = threading.local()


def install() -> None:
    """Add the hooks to every botocore session made from now on.  Idempotent."""
    for entry in HOOKS:
        if entry not in handlers.BUILTIN_HANDLERS:
            handlers.BUILTIN_HANDLERS.append(entry)


def uninstall() -> None:
    """Take the hooks out of the sessions made from now on (those made meanwhile keep them, counting nothing)."""
    for entry in HOOKS:
        while entry in handlers.BUILTIN_HANDLERS:
            handlers.BUILTIN_HANDLERS.remove(entry)


def who() -> str | None:
    """The function making a request on this thread; None for the bench's own main thread."""
    name = getattr(_local, "function", None)
    if name:
        return str(name)
    thread = threading.current_thread()
    if thread.name.startswith(WORKER_THREADS):
        return CHECKER
    if thread.name.startswith(LOOP_THREAD):
        return POLLER + thread.name[len(LOOP_THREAD) :]
    if thread.name.startswith(AGGREGATOR_THREADS):
        return "aggregator"
    if thread is threading.main_thread():
        return None
    return "unattributed"


def moto_items(region: str) -> Lookup:
    """Items as the in-process emulator (moto, under ``mock_aws`` or its threaded server) stores them."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][region]

    def lookup(table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        for _ in range(5):
            try:
                found = backend.get_item(table, key)
                return dict(found.to_json()["Attributes"]) if found is not None else None
            except RuntimeError:  # another thread changed the item while it was copied: read it again
                continue
            except Exception:
                return None
        return None

    return lookup


def _remote_call(endpoint: str, region: str, operation: str, params: dict[str, Any], timeout_s: float) -> Any:
    """One DynamoDB request to a moto server in another process over plain HTTP (not through botocore, whose hooks
    would meter it as a function's), its answer parsed."""
    request = urllib.request.Request(
        endpoint.rstrip("/") + "/",
        data=json.dumps(params).encode(),
        method="POST",
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"DynamoDB_20120810.{operation}",
            "Authorization": (
                f"AWS4-HMAC-SHA256 Credential=bench/20260101/{region}/dynamodb/aws4_request, SignedHeaders=host, "
                "Signature=0"
            ),
        },
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as answer:
        return json.loads(answer.read())


def remote_items(endpoint: str, region: str) -> Lookup:
    """Items as a moto server in another process stores them: a consistent GetItem."""

    def lookup(table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        params = {"TableName": table, "Key": key, "ConsistentRead": True}
        try:
            found = _remote_call(endpoint, region, "GetItem", params, 30).get("Item")
        except (OSError, ValueError):
            return None
        return dict(found) if found else None

    return lookup


def remote_keys(endpoint: str, region: str) -> KeyScan:
    """Every key of a table as a moto server in another process stores them: a consistent Scan projected to the key
    attributes, page by page."""

    def scan(table: str, keys: tuple[str, ...]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        names = {f"#k{n}": name for n, name in enumerate(keys)}
        params: dict[str, Any] = {"TableName": table, "ProjectionExpression": ", ".join(names), "ConsistentRead": True}
        params["ExpressionAttributeNames"] = names
        while True:
            page = _remote_call(endpoint, region, "Scan", params, 60)
            found += page.get("Items") or []
            if not page.get("LastEvaluatedKey"):
                return found
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    return scan


class Meter:
    """The calls and invocations of one metered window (between :meth:`start` and :meth:`stop`)."""

    def __init__(
        self,
        tables: dict[str, TableSchema],
        lookup: Lookup,
        *,
        prefix: str,
        home_region: str,
        check_regions: tuple[str, ...],
    ) -> None:
        self.tables = tables
        self.lookup = lookup
        self.prefix = prefix
        self.home_region = home_region
        self.check_regions = tuple(check_regions)
        self.calls: list[Call] = []
        self.invocations: list[Invocation] = []
        self.left_out: Counter[str] = Counter()
        self.errors: list[str] = []
        self.log_bytes: dict[str, int] = defaultdict(int)
        self.problems: Counter[tuple[str, str, str]] = Counter()  # (function, level, message): lines logged
        self.unmetered_problems: Counter[tuple[str, str, str]] = Counter()  # the same, outside the window
        self.own_time_s: dict[str, float] = defaultdict(float)  # the meter's own time in each function's requests
        self._lock = threading.Lock()
        # Whole items looked up to size a projected read, until a metered write touches them (a monitor's look-up
        # by every check would otherwise be one more read of the emulator per check).
        self._read_cache: dict[tuple[str, Any], dict[str, Any] | None] = {}
        # Tables whose every key is known (:meth:`know_keys`): a write to a key not among them replaces nothing, and
        # needs no look-up of what it replaces, inside the function's own time.
        self._keys: dict[str, set[Any]] = {}

    # -- the window

    def start(self) -> None:
        global _active
        self.calls, self.invocations, self.errors = [], [], []
        self.left_out.clear()
        self.log_bytes.clear()
        self.problems.clear()
        self.own_time_s.clear()
        self._read_cache.clear()
        self._keys.clear()
        _active = self

    def know_keys(self, scan: KeyScan, logical: Iterable[str]) -> None:
        """Learn every key of these tables now (the window open: every write from here on adds its key).

        Sizing a write needs the item it replaces, which the meter reads from the emulator before the write: on the
        function's own thread, in its billed time.  Most writes of the packs, periods and rollups make new items,
        and for those the read is both needless and a cost the function does not have (the aggregator's pass spent
        a third of its measured time in the meter)."""
        for name in logical:
            schema = self.tables[name]
            physical = self.prefix + name
            found = {_frozen(schema.key_of(item)) for item in scan(physical, schema.keys)}
            with self._lock:
                self._keys[physical] = self._keys.get(physical, set()) | found

    def stop(self) -> None:
        global _active
        _active = None

    # -- Lambda invocations

    def time_handlers(self, loop: Any, memory_of: Callable[[str], int | None] = lambda name: None) -> None:
        """Wrap every handler of the local event loop: it marks its thread as that function while it runs, and
        each invocation's wall time is kept (Lambda bills it, rounded up to the millisecond), with the memory
        ``memory_of(function)`` says it had as it began (None: its template's)."""
        for source in loop.sources:
            source.handler = self._timed(source.name, source.handler, memory_of)

    def run_as(self, name: str, work: Callable[[], Any]) -> Any:
        """Run ``work`` on this thread as one invocation of the function ``name`` (its requests are that
        function's; its threads named as a function's pools are too)."""
        return self._timed(name, lambda _event, _context: work())({}, None)

    def _timed(
        self,
        name: str,
        handler: Callable[[dict[str, Any], Any], Any],
        memory_of: Callable[[str], int | None] = lambda name: None,
    ) -> Callable[[dict[str, Any], Any], Any]:
        def run(event: dict[str, Any], context: Any) -> Any:
            memory = memory_of(name)  # before it is the function's: the meter's own look-up, not billed
            outer = getattr(_local, "function", None)
            _local.function = name
            started = time.perf_counter()
            try:
                return handler(event, context)
            finally:
                elapsed_ms = (time.perf_counter() - started) * 1000
                _local.function = outer
                if _active is self:
                    records = len(event.get("Records") or [])
                    self.invocations.append(Invocation(name, elapsed_ms, records, memory))

        return run

    # -- log lines

    @contextlib.contextmanager
    def capturing_logs(self, logger: Any, level: str) -> Iterator[None]:
        """Count the bytes each function writes to its log (what CloudWatch Logs ingests) at the deployed level:
        the Powertools logger's lines, and the metrics it prints (EMF).  Nothing reaches the console meanwhile;
        the local loop's own lines ("handler ran") are not a function's and are left out."""
        handler = logger.registered_handler
        sink = _Sink(self)
        local_stack = _NotLocalStack()
        underlying = logging.getLogger(logger.name)  # Powertools' own logging.Logger
        old_level, old_disabled = logger.log_level, os.environ.get("POWERTOOLS_METRICS_DISABLED")
        old_stream, old_propagate = handler.setStream(sink), underlying.propagate
        handler.addFilter(local_stack)
        underlying.propagate = False  # nor kept by pytest's log capture: thousands of lines a minute
        logger.setLevel(level)
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "false"
        from chalicelib.observability import metrics

        metrics.clear_metrics()
        try:
            with contextlib.redirect_stdout(_Tee(sink, sys.stdout)):
                yield
        finally:
            metrics.clear_metrics()
            if old_disabled is None:
                os.environ.pop("POWERTOOLS_METRICS_DISABLED", None)
            else:
                os.environ["POWERTOOLS_METRICS_DISABLED"] = old_disabled
            handler.removeFilter(local_stack)
            handler.setStream(old_stream)
            underlying.propagate = old_propagate
            logger.setLevel(old_level)

    # -- requests

    def before(self, service: str, operation: str, request: dict[str, Any], state: dict[str, Any]) -> None:
        state["function"] = who()
        state["request_bytes"] = _body_size(request.get("body")) + _headers_size(request.get("headers") or {})
        if service == "dynamodb" and operation in WRITES:
            planned = self._planned(operation, state.get("params") or {})
            state["writes"] = [(*p, self._replaced(p[0], p[1])) for p in planned]

    def after(self, service: str, operation: str, response: Any, parsed: dict[str, Any], state: dict[str, Any]) -> None:
        function = state.get("function")
        if function is None:
            self._leave_out("the bench's own requests")
            return
        if service == "lambda":  # the workers' sizes (scheduler.sizing): Lambda's control plane bills nothing
            self._leave_out("Lambda's configuration requests")
            return
        params = state.get("params") or {}
        ok = response.status_code < 300
        call: dict[str, Any] = {
            "service": service,
            "operation": operation,
            "function": function,
            "request_bytes": state.get("request_bytes", 0),
            "response_bytes": _response_size(response, state.get("streaming", False)),
        }
        if service == "dynamodb":
            call["resource"] = self._tables_named(params)
            if operation in WRITES:
                self._forget(state.get("writes", []))
                call["writes"] = self._writes(state.get("writes", []), parsed if ok else {}, ok)
            else:
                call["reads"] = self._reads(operation, params, parsed)
        elif service == "sqs":
            if function.startswith(POLLER) and (
                operation == "GetQueueAttributes" or (operation == "ReceiveMessage" and not parsed.get("Messages"))
            ):
                self._leave_out("the local loop's queue look-ups and empty 1 s polls")
                return
            call["resource"] = self._queue(params)
            call["payload_bytes"] = _sqs_payload(operation, params, parsed)
        elif service == "s3":
            call["resource"] = str(params.get("Bucket", "")).removeprefix(self.prefix)
        elif service in ("ses", "sesv2"):
            call["recipients"] = _recipients(params)
        call["cross_region_bytes"] = self._crossing(call, params)
        with self._lock:
            self.calls.append(Call(**call))

    def failed(self, what: str) -> None:
        with self._lock:
            self.errors.append(what)

    def _leave_out(self, why: str) -> None:
        with self._lock:
            self.left_out[why] += 1

    # -- DynamoDB

    def _schema(self, physical: str) -> TableSchema:
        return self.tables[physical.removeprefix(self.prefix)]

    def _item(self, physical: str, key: dict[str, Any]) -> dict[str, Any] | None:
        return self.lookup(physical, key)

    def _replaced(self, physical: str, key: dict[str, Any]) -> dict[str, Any] | None:
        """The item a write of ``key`` is about to replace: none when the table's keys are known and this one is not
        among them; else as the emulator holds it.  Either way the key is known from here on (whether or not the
        write lands: a later write then reads what it replaces)."""
        frozen = _frozen(key)
        with self._lock:
            known = self._keys.get(physical)
            new = known is not None and frozen not in known
            if known is not None:
                known.add(frozen)
        return None if new else self._item(physical, key)

    def _whole(self, physical: str, key: dict[str, Any]) -> dict[str, Any] | None:
        """The whole item behind a projected read (billed as whole), from the cache while no write touched it."""
        entry = (physical, _frozen(key))
        with self._lock:
            if entry in self._read_cache:
                return self._read_cache[entry]
        found = self.lookup(physical, key)
        with self._lock:
            self._read_cache[entry] = found
        return found

    def prime(self, physical: str, items: Iterable[dict[str, Any]]) -> None:
        """Items the bench wrote itself (whole, as stored): a projected read of them is sized without asking the
        emulator (ten thousand monitors' first look-ups would be ten thousand more reads of it)."""
        schema = self._schema(physical)
        with self._lock:
            for item in items:
                self._read_cache[(physical, _frozen(schema.key_of(item)))] = item

    def _forget(self, planned: list[tuple[Any, ...]]) -> None:
        with self._lock:
            for table, key, *_ in planned:
                self._read_cache.pop((table, _frozen(key)), None)

    def _tables_named(self, params: dict[str, Any]) -> str:
        names = {str(params["TableName"])} if "TableName" in params else set(params.get("RequestItems") or {})
        for entry in params.get("TransactItems") or []:
            names |= {str(body["TableName"]) for body in entry.values()}
        return "+".join(sorted(n.removeprefix(self.prefix) for n in names))

    def _planned(self, operation: str, params: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], bool, str, Any]]:
        """(physical table, key, transactional, kind, the item sent by a put) of each item a write request touches."""
        if "TableName" in params:  # PutItem, UpdateItem, DeleteItem
            table = str(params["TableName"])
            key = params.get("Key") or self._schema(table).key_of(params["Item"])
            yield table, key, False, operation.removesuffix("Item"), params.get("Item")
        for table, requests in (params.get("RequestItems") or {}).items():  # BatchWriteItem
            for request in requests:
                put = (request.get("PutRequest") or {}).get("Item")
                yield table, _request_key(self._schema(table), request), False, "Put" if put else "Delete", put
        for entry in params.get("TransactItems") or []:
            kind, body = next(iter(entry.items()))
            table = str(body["TableName"])
            yield table, body.get("Key") or self._schema(table).key_of(body["Item"]), True, kind, body.get("Item")

    def _writes(self, planned: list[tuple[Any, ...]], parsed: dict[str, Any], ok: bool) -> tuple[Write, ...]:
        """What each write changed.  A put stores the item it sent and a delete nothing; an update is read back
        from the table; a failed condition (or a condition check) pays for the item as it was."""
        unprocessed = {
            (table, _frozen(_request_key(self._schema(table), request)))
            for table, requests in (parsed.get("UnprocessedItems") or {}).items()
            for request in requests
        }
        writes = []
        for table, key, transactional, kind, sent, old in planned:
            if (table, _frozen(key)) in unprocessed:
                continue  # not written, not billed: the caller sends it again
            schema = self._schema(table)
            if not ok or kind == "ConditionCheck":
                new = old
            elif kind == "Put":
                new = sent
            elif kind == "Delete":
                new = None
            else:
                new = self._item(table, key)
            ttl_s = None
            if new and schema.ttl and "N" in new.get(schema.ttl, {}):
                ttl_s = float(new[schema.ttl]["N"]) - time.time()
            writes.append(
                Write(schema.name, item_size(old), item_size(new), transactional, index_writes(schema, old, new), ttl_s)
            )
        return tuple(writes)

    def _reads(self, operation: str, params: dict[str, Any], parsed: dict[str, Any]) -> tuple[Read, ...]:
        """What each read consumed: whole items (or index entries), whatever a projection returned of them."""
        if operation == "GetItem":
            table = str(params["TableName"])
            found = parsed.get("Item") if not _projected(params) else self._whole(table, params["Key"])
            return (Read(self._schema(table).name, None, item_size(found), bool(params.get("ConsistentRead"))),)
        if operation == "BatchGetItem":
            reads = []
            for table, request in (params.get("RequestItems") or {}).items():
                schema = self._schema(table)
                left = {_frozen(k) for k in (parsed.get("UnprocessedKeys") or {}).get(table, {}).get("Keys", [])}
                projected, consistent = _projected(request), bool(request.get("ConsistentRead"))
                items = [] if projected else (parsed.get("Responses") or {}).get(table, [])
                returned = {_frozen(schema.key_of(i)): i for i in items}
                for key in request["Keys"]:
                    if _frozen(key) in left:
                        continue  # not read, not billed: the caller asks again
                    found = self._whole(table, key) if projected else returned.get(_frozen(key))
                    reads.append(Read(schema.name, None, item_size(found), consistent))
            return tuple(reads)
        if operation in ("Query", "Scan"):
            return (self._page(params, parsed),)
        if operation == "TransactGetItems":
            reads = []
            for entry in params.get("TransactItems") or []:
                body = entry["Get"]
                table = str(body["TableName"])
                size = item_size(self._item(table, body["Key"]))
                reads.append(Read(self._schema(table).name, None, size, True, transactional=True))
            return tuple(reads)
        return ()

    def _page(self, params: dict[str, Any], parsed: dict[str, Any]) -> Read:
        """A Query or Scan page: the size of every item (or index entry) it read, whatever it returned of them.
        Items a filter dropped were read too: their share is taken as the returned items' average.  (Only a
        projection without the table's keys is sized from what it returned, short of the whole items.)"""
        table = str(params["TableName"])
        schema = self._schema(table)
        index = next((i for i in schema.indexes if i.name == params.get("IndexName")), None)
        projected = _projected(params)
        size = 0
        for returned in parsed.get("Items") or []:
            if not projected:  # the whole item, or the whole index entry
                size += item_size(returned)
                continue
            # A projection that leaves out the table's keys cannot be looked up: what it returned is all we know.
            has_keys = all(k in returned for k in schema.keys)
            full = (self._whole(table, schema.key_of(returned)) if has_keys else None) or returned
            size += item_size(schema.index_entry(full, index) if index else full)
        count, scanned = int(parsed.get("Count", 0)), int(parsed.get("ScannedCount", 0))
        if count and scanned > count:
            size = round(size * scanned / count)
        return Read(schema.name, index.name if index else None, size, bool(params.get("ConsistentRead")))

    # -- SQS and regions

    def _queue(self, params: dict[str, Any]) -> str:
        name = str(params.get("QueueName") or str(params.get("QueueUrl", "")).rsplit("/", 1)[-1])
        name = name.removeprefix(self.prefix)
        for region in self.check_regions:
            if name.endswith("-" + region):
                return name[: -len(region)] + "*"
        return name

    def _queue_region(self, params: dict[str, Any]) -> str:
        name = str(params.get("QueueName") or str(params.get("QueueUrl", "")).rsplit("/", 1)[-1])
        return next((r for r in self.check_regions if name.endswith("-" + r)), self.home_region)

    def _crossing(self, call: dict[str, Any], params: dict[str, Any]) -> float:
        """Bytes that would cross regions when deployed.  The scheduler (home region) sends to each region's
        queue: exact, by the queue's region.  Each region's worker reads monitors from and writes results to the
        home region's tables: the local stack runs the three workers' pools as one, so their requests are taken
        as made from every check region alike (modelled)."""
        size = call["request_bytes"] + call["response_bytes"]
        function = call["function"]
        if call["service"] == "sqs" and function == "scheduler":
            return float(size) if self._queue_region(params) != self.home_region else 0.0
        if call["service"] == "dynamodb" and (function == CHECKER or function.startswith(CHECKER + "-")):
            away = sum(1 for r in self.check_regions if r != self.home_region)
            return size * away / len(self.check_regions)
        return 0.0


def _problem(text: str) -> tuple[str, str] | None:
    """A log line's (level, message) when it is a warning or an error."""
    if '"level":"WARNING"' not in text and '"level":"ERROR"' not in text:
        return None
    try:
        line = json.loads(text)
    except ValueError:
        return None
    return str(line.get("level")), str(line.get("message"))[:120]


class _Sink(io.TextIOBase):
    """Counts what each function writes (its log lines, its metrics), and writes nothing."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter

    def write(self, text: str) -> int:
        function = who()
        if function is None:
            return len(text)
        problem = _problem(text)
        with self.meter._lock:
            if _active is self.meter:
                self.meter.log_bytes[function] += len(text.encode())
                if problem:
                    self.meter.problems[(function, *problem)] += 1
            elif problem:  # not billed, but a failure before or after the window still tells what went wrong
                self.meter.unmetered_problems[(function, *problem)] += 1
        return len(text)

    def owns(self) -> bool:
        return who() is not None


class _Tee(io.TextIOBase):
    """``sys.stdout`` while metered: a function's prints are counted (the metrics it flushes), the bench's pass."""

    def __init__(self, sink: _Sink, console: Any) -> None:
        self.sink, self.console = sink, console

    def write(self, text: str) -> int:
        if self.sink.owns():
            return self.sink.write(text)
        return int(self.console.write(text))

    def flush(self) -> None:
        self.console.flush()


class _NotLocalStack:
    """A log filter: the local event loop's lines are the local stack's, not a function's."""

    def filter(self, record: Any) -> bool:
        return "/chalicelib/local/" not in str(getattr(record, "pathname", ""))


# ---------------------------------------------------------------------------------------------- botocore hooks


def _on_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    if _active is not None:
        context[STATE] = {"params": params}


def _on_before(model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    meter, state = _active, context.get(STATE)
    if meter is None or state is None:
        return
    started = time.perf_counter()
    try:
        state["streaming"] = bool(model.has_streaming_output)
        meter.before(model.service_model.service_id.hyphenize(), model.name, params, state)
        state["own_s"] = time.perf_counter() - started
    except Exception as exc:
        meter.failed(f"{model.name} before: {type(exc).__name__}: {exc}")
        context.pop(STATE, None)


def _on_after(http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    meter, state = _active, context.pop(STATE, None)
    if meter is None or state is None or "function" not in state:
        return
    started = time.perf_counter()
    try:
        meter.after(model.service_model.service_id.hyphenize(), model.name, http_response, parsed, state)
        with meter._lock:
            meter.own_time_s[str(state["function"])] += state.get("own_s", 0.0) + time.perf_counter() - started
    except Exception as exc:
        meter.failed(f"{model.name} after: {type(exc).__name__}: {exc}")


HOOKS = [
    ("before-parameter-build", _on_params),
    ("before-call", _on_before),
    ("after-call", _on_after),
]


# ---------------------------------------------------------------------------------------------- sizes


def _projected(params: dict[str, Any]) -> bool:
    """Whether a read asks for some attributes only (it is still billed for whole items)."""
    return bool(params.get("ProjectionExpression") or params.get("AttributesToGet")) or params.get("Select") in (
        "SPECIFIC_ATTRIBUTES",
        "COUNT",
    )


def _request_key(schema: TableSchema, request: dict[str, Any]) -> dict[str, Any]:
    """The key of one BatchWriteItem request (a put or a delete)."""
    if "PutRequest" in request:
        return schema.key_of(request["PutRequest"]["Item"])
    return dict(request["DeleteRequest"]["Key"])


def _frozen(key: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((name, repr(value)) for name, value in key.items()))


def _body_size(body: Any) -> int:
    if isinstance(body, bytes | bytearray):
        return len(body)
    if isinstance(body, str):
        return len(body.encode())
    if isinstance(body, dict):  # a query-protocol body not yet encoded
        return sum(len(str(k)) + len(str(v)) + 2 for k, v in body.items())
    return 0


def _headers_size(headers: Any) -> int:
    return sum(len(str(k)) + len(str(v)) + 4 for k, v in dict(headers).items())


def _response_size(response: Any, streaming: bool) -> int:
    headers = dict(response.headers or {})
    length = headers.get("content-length") or headers.get("Content-Length")
    if length is not None:
        body = int(length)
    elif streaming:
        body = 0
    else:
        body = len(response.content or b"")
    return body + _headers_size(headers)


def _message_size(body: Any, attributes: dict[str, Any] | None) -> int:
    size = len(str(body or "").encode())
    for name, value in (attributes or {}).items():
        size += len(name) + len(str(value.get("DataType", "")))
        size += len(str(value.get("StringValue", ""))) + len(value.get("BinaryValue", b"") or b"")
    return size


def _sqs_payload(operation: str, params: dict[str, Any], parsed: dict[str, Any]) -> int:
    if operation == "SendMessage":
        return _message_size(params.get("MessageBody"), params.get("MessageAttributes"))
    if operation == "SendMessageBatch":
        return sum(_message_size(e.get("MessageBody"), e.get("MessageAttributes")) for e in params.get("Entries", []))
    if operation == "ReceiveMessage":
        return sum(_message_size(m.get("Body"), m.get("MessageAttributes")) for m in parsed.get("Messages", []))
    return 0


def _recipients(params: dict[str, Any]) -> int:
    if "Destinations" in params:
        return len(params["Destinations"])
    destination = params.get("Destination") or {}
    found = sum(len(destination.get(k, [])) for k in ("ToAddresses", "CcAddresses", "BccAddresses"))
    return found or 1
