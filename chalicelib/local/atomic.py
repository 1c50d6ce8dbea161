"""The embedded emulator (moto) made to behave, and answer, like DynamoDB where the code relies on it.

Atomicity.  DynamoDB applies each request to an item atomically: of two conditional writes racing for one item,
exactly one wins.  moto applies requests without a lock, so two threads (the local stack's parallel deliveries,
the tests' concurrent handlers) can both pass a condition — a race production never has.  One lock around moto's
DynamoDB actions gives the emulator the guarantee the code relies on.

Speed. moto answers a Query on a table by sorting every item of the table and keeping those of the asked partition
(a pass over ten thousand monitors' period items for each monitor's query: minutes for the aggregator's pass at
10,000 monitors); :func:`make_dynamodb_fast` hands it only the asked partition's items, which it then filters and
sorts exactly as before. A query on an index is left alone. moto 5.2 also writes every JSON answer by walking the
operation's output shape value by value (~1 ms per monitor item: 70 % of a scheduler tick's 10 s at 10,000
monitors). DynamoDB and its streams answer in plain JSON, and moto's results for them are already plain JSON values,
so :func:`make_dynamodb_fast` writes those with ``json.dumps``. Anything that is not plain JSON (bytes, a datetime,
a null, an error, a paged result, a handler that reshapes its answer) still goes through moto's serializer, so an
answer either is byte-for-byte what ``json.dumps`` makes of moto's result or is moto's own. And a
TransactWriteItems deep-copies every table it touches before it starts, to roll back to if it fails: a copy of
every item (20 µs each), which grows with the table — a status page's history of 27 incidents spent half its
20 s in those copies. :func:`make_dynamodb_fast` has it copy only the items the transaction names (the only ones
it can change) and share the rest, which no write of the transaction touches; a failed one rolls back exactly as
before.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import threading
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

_lock = threading.RLock()
FAST_SERVICES = ("dynamodb", "dynamodbstreams")


def make_dynamodb_atomic() -> None:
    """Idempotent."""
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler.call_action, "_atomic", False):
        return
    original = DynamoHandler.call_action

    @functools.wraps(original)
    def call_action(self: Any) -> Any:
        with _lock:
            return original(self)

    call_action._atomic = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def _not_json(value: Any) -> Any:
    raise TypeError(f"not plain JSON: {type(value).__name__}")


def plain_json(result: Any) -> str | None:
    """``result`` as DynamoDB's JSON, or None when moto's serializer must write it."""
    if not isinstance(result, dict):
        return None
    # moto's serializer leaves out null members: a null takes its path.  Looked for in the values, not the text: an
    # item's string that merely reads "null" (an event's JSON data) is a string, and sent a page of events the slow
    # way.  Consumed capacity (which PynamoDB asks for on every request) is doubles: moto's ints, which its
    # serializer writes as floats, are written as floats here too; any other member named for capacity (a table's
    # description) takes moto's path.
    capacity = result.get("ConsumedCapacity")
    if capacity is not None:
        result = {**result, "ConsumedCapacity": _doubles(capacity)}
    if "ConsumedCapacityUnits" in result:  # moto's PutItem answer has it; no shape does: its serializer drops it
        result = {name: value for name, value in result.items() if name != "ConsumedCapacityUnits"}
    if _needs_moto(result):
        return None
    try:
        return json.dumps(result, separators=(",", ":"), default=_not_json, allow_nan=False)
    except (TypeError, ValueError):
        return None


def _doubles(value: Any) -> Any:
    """``value`` with every number a float (a bool stays a bool)."""
    if isinstance(value, dict):
        return {name: _doubles(v) for name, v in value.items()}
    if isinstance(value, list):
        return [_doubles(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _needs_moto(result: dict[str, Any]) -> bool:
    """A None anywhere in ``result``, or a member whose name speaks of capacity outside the consumed capacity."""
    pending: list[tuple[Any, bool]] = [(v, name == "ConsumedCapacity") for name, v in result.items()]
    if any("Capacity" in name for name in result if name != "ConsumedCapacity"):
        return True
    while pending:
        value, consumed = pending.pop()
        if value is None:
            return True
        if isinstance(value, dict):
            if not consumed and any("Capacity" in name for name in value):
                return True
            pending.extend((v, consumed) for v in value.values())
        elif isinstance(value, list):
            pending.extend((v, consumed) for v in value)
    return False


def _query_one_partition() -> None:
    from moto.dynamodb.models.table import Table

    if getattr(Table.query, "_fast", False):
        return
    original = Table.query
    signature = inspect.signature(original)

    @functools.wraps(original)
    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = signature.bind(self, hash_key, *args, **kwargs).arguments.get("index_name")
        if index_name is not None or hash_key is None or "all_items" in vars(self):
            return original(self, hash_key, *args, **kwargs)

        def partition() -> list[Any]:
            found = self.items.get(hash_key)
            if found is None:
                return []
            return list(found.values()) if self.range_key_attr else [found]

        self.all_items = partition  # the base-table branch keeps all_items()'s items of hash_key: these
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    query._fast = True  # type: ignore[attr-defined]
    Table.query = query  # type: ignore[method-assign]


_transaction = threading.local()  # .keys: the items the transaction this thread runs names, by table


def _named_items(backend: Any, transact_items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]] | None:
    """Each table's keys a transaction names (a Put's from its item), or None for one moto will refuse anyway (an
    unknown table, a key or item without the table's key attributes): moto's own deep copy then, and its error."""
    named: dict[str, list[dict[str, Any]]] = {}
    try:
        for entry in transact_items:
            (kind, op), *_ = entry.items()
            table = backend.get_table(op["TableName"])
            attrs = [a for a in (table.hash_key_attr, table.range_key_attr) if a is not None]
            # a key that lacks one of the table's (moto refuses it with a ValidationException) has no item to copy
            key = {a: (op["Item"] if kind == "Put" else op["Key"])[a] for a in attrs}
            named.setdefault(op["TableName"], []).append(key)
    except Exception:  # noqa: BLE001 - moto's own pass says what is wrong with it
        return None
    return named


def _rollback_copy(table: Any, keys: list[dict[str, Any]]) -> Any:
    """What moto's deep copy of ``table`` is to a transaction naming ``keys``: the same table, with its own copy of
    those items (an Update changes an item in place) and of its stream's record list; every other item shared.
    A Put or Delete replaces or removes an item in the table's dicts, which are copied, never the item itself."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    rolled = copy.copy(table)
    if table.range_key_attr:
        rolled.items = defaultdict(dict, {h: dict(ranges) for h, ranges in table.items.items()})
    else:
        rolled.items = defaultdict(dict, table.items)
    for key in keys:
        hash_value = DynamoType(key[table.hash_key_attr])
        range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        item = table.get_item(hash_value, range_value)
        if item is None:
            continue
        if range_value is None:
            rolled.items[hash_value] = copy.deepcopy(item)
        else:
            rolled.items[hash_value][range_value] = copy.deepcopy(item)
    if table.stream_shard is not None:
        rolled.stream_shard = copy.copy(table.stream_shard)
        rolled.stream_shard.items = list(table.stream_shard.items)
        rolled.stream_shard.table = rolled
    return rolled


def _deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """moto's DynamoDB models' ``copy.deepcopy``: a table a transaction is about to change gets its rollback copy."""
    from moto.dynamodb.models.table import Table

    named = getattr(_transaction, "keys", None)
    if isinstance(value, Table) and named is not None:
        return _rollback_copy(value, named.get(value.name, []))
    return copy.deepcopy(value, memo)


def _transactions_copy_what_they_name() -> None:
    from moto.dynamodb import models

    if getattr(models.DynamoDBBackend.transact_write_items, "_fast", False):
        return
    original = models.DynamoDBBackend.transact_write_items

    @functools.wraps(original)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        _transaction.keys = _named_items(self, transact_items)
        try:
            return original(self, transact_items)
        finally:
            _transaction.keys = None

    transact_write_items._fast = True  # type: ignore[attr-defined]
    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    models.copy = SimpleNamespace(deepcopy=_deepcopy)  # type: ignore[assignment]  # the module's only copy use


def make_dynamodb_fast() -> None:
    """Idempotent."""
    from moto.core import responses
    from moto.dynamodb.responses import DynamoResult

    _query_one_partition()
    _transactions_copy_what_they_name()
    if getattr(responses.ActionResult.execute_result, "_fast", False):
        return
    original = responses.ActionResult.execute_result
    plain_results = (responses.ActionResult, DynamoResult)

    @functools.wraps(original)
    def execute_result(self: Any, context: Any) -> Any:
        service = context.service_model
        if (
            type(self) in plain_results
            and service.service_name in FAST_SERVICES
            and service.protocol == "json"
            and not getattr(context.response, "RESPONSE_KEY_PATH_TO_TRANSFORMER", None)
            and (body := plain_json(self.result)) is not None
        ):
            content_type = f"application/x-amz-json-{service.metadata.get('jsonVersion', '1.0')}"
            return 200, {"Content-Type": content_type}, body
        return original(self, context)

    execute_result._fast = True  # type: ignore[attr-defined]
    responses.ActionResult.execute_result = execute_result  # type: ignore[method-assign]
