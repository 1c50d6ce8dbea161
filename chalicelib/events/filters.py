"""Which stream records each stream handler acts on.

The handlers skip every other record, and the deployed event source mappings drop them before Lambda is invoked
(``infra/build.py`` writes these as ``FilterCriteria``): a record no handler wants — a check result's TTL expiry,
say, one for every check — costs no invocation.  One definition serves both, so they cannot drift apart.
"""

from __future__ import annotations

import json
from typing import Any

STREAM_EVENTS: dict[str, tuple[str, ...]] = {
    "rollups": ("INSERT",),  # a new result counts once: a redelivered job's rewrite (MODIFY) and TTL expiry do not
    "incidents": ("INSERT", "MODIFY"),  # a rewrite is applied again, harmlessly; TTL expiry (REMOVE) never
    "alerts": ("INSERT",),  # an event is planned once; REMOVEs are team deletions
    "status_pages": ("INSERT",),
}


def wanted(handler: str, event_name: str | None) -> bool:
    """Whether ``handler`` acts on a stream record of this ``eventName``."""
    return event_name in STREAM_EVENTS[handler]


def filter_criteria(handler: str) -> dict[str, Any]:
    """The event source mapping's ``FilterCriteria``: only the records ``handler`` acts on invoke it."""
    return {"Filters": [{"Pattern": json.dumps({"eventName": list(STREAM_EVENTS[handler])})}]}
