"""Where Lambda resumes a DynamoDB stream batch when part of its work failed: a handler groups records by a key
(a monitor, a team), and a failed key's first record is reported, so that it and every record after it come again
(the handlers' work is idempotent: what was done already changes nothing the second time)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any


class RetryFrom:
    """The first record of each key seen, and the failed keys: the batch's partial response."""

    def __init__(self) -> None:
        self._first: dict[Hashable, tuple[int, str]] = {}
        self._failed: list[tuple[int, str]] = []

    def saw(self, key: Hashable, index: int, record: dict[str, Any]) -> None:
        sequence = str((record.get("dynamodb") or {}).get("SequenceNumber", ""))
        self._first.setdefault(key, (index, sequence))

    def failed(self, key: Hashable) -> None:
        self._failed.append(self._first[key])

    def response(self) -> dict[str, Any]:
        """``{"batchItemFailures": [...]}``: the earliest failed key's first record, or nothing."""
        if not self._failed:
            return {"batchItemFailures": []}
        return {"batchItemFailures": [{"itemIdentifier": min(self._failed)[1]}]}
