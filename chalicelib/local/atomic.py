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
answer either is byte-for-byte what ``json.dumps`` makes of moto's result or is moto's own.
"""

from __future__ import annotations

import functools
import inspect
import json
import threading
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
    try:
        body = json.dumps(result, separators=(",", ":"), default=_not_json, allow_nan=False)
    except (TypeError, ValueError):
        return None
    # moto's serializer leaves out null members; a null (or a string that merely looks like one) takes its path,
    # as does consumed capacity (its doubles: moto's ints, which its serializer writes as floats).
    return None if "null" in body or "Capacity" in body else body


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


def make_dynamodb_fast() -> None:
    """Idempotent."""
    from moto.core import responses
    from moto.dynamodb.responses import DynamoResult

    _query_one_partition()
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
