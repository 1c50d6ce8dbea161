"""Which stream records each stream handler acts on.

The handlers skip every other record, and the deployed event source mappings drop them before Lambda is invoked
(``infra/build.py`` writes these as ``FilterCriteria``): a record no handler wants — a check result's TTL expiry,
say, one for every pack, or a pack of up results that cannot change an incident — costs no invocation.  One definition
serves both, so they cannot drift apart: :func:`wanted` evaluates the very pattern the mapping is given.
"""

from __future__ import annotations

import json
from typing import Any

# Lambda's filter syntax (a subset of EventBridge patterns): each key names a field of the stream record, a list
# holds the values it may have, a dict goes one level down.
STREAM_FILTERS: dict[str, dict[str, Any]] = {
    # Packs holding a result the worker marked as able to change something (``checks.marking``); a rewrite is
    # applied again, harmlessly; TTL expiry (REMOVE) never.
    "incidents": {"eventName": ["INSERT", "MODIFY"], "dynamodb": {"NewImage": {"marked": {"BOOL": [True]}}}},
    # Packs written after their period was taken (``monitors.aggregate.retake``): most packs never invoke it.
    "retake": {"eventName": ["INSERT", "MODIFY"], "dynamodb": {"NewImage": {"late": {"BOOL": [True]}}}},
    "alerts": {"eventName": ["INSERT"]},  # an event is planned once; REMOVEs are team deletions
    "status_pages": {"eventName": ["INSERT"]},
}
STREAM_EVENTS: dict[str, tuple[str, ...]] = {name: tuple(p["eventName"]) for name, p in STREAM_FILTERS.items()}


def _matches(pattern: dict[str, Any], value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    for key, expected in pattern.items():
        if key not in value:
            return False
        if isinstance(expected, dict):
            if not _matches(expected, value[key]):
                return False
        elif value[key] not in expected or isinstance(value[key], bool) != any(isinstance(e, bool) for e in expected):
            return False
    return True


def wanted(handler: str, record: dict[str, Any]) -> bool:
    """Whether ``handler`` acts on this stream record (as Lambda's ``eventName``/``dynamodb`` dict)."""
    return _matches(STREAM_FILTERS[handler], record)


def filter_criteria(handler: str) -> dict[str, Any]:
    """The event source mapping's ``FilterCriteria``: only the records ``handler`` acts on invoke it."""
    return {"Filters": [{"Pattern": json.dumps(STREAM_FILTERS[handler])}]}
