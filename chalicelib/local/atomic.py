"""DynamoDB's atomicity for the embedded emulator.

DynamoDB applies each request to an item atomically: of two conditional writes racing for one item, exactly one
wins.  moto applies requests without a lock, so two threads (the local stack's parallel deliveries, the tests'
concurrent handlers) can both pass a condition — a race production never has.  One lock around moto's DynamoDB
actions gives the emulator the guarantee the code relies on (it costs nothing measurable: moto is in-process).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_lock = threading.RLock()


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
