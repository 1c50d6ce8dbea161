"""A monitor's credential headers at rest: each value sealed (``chalicelib.sealing``), bound to its team, monitor
and header name; the other headers, which readers see, stay as they are.

A value sent back masked keeps the stored (sealed) value as it is, so a change opens nothing; only what sends a check
opens them: the scheduler (into the job, which travels to the region's worker in an encrypted queue) and the API's
one-off test check.  A header stored before sealing is read as it is, and sealed at the monitor's next change.
"""

from __future__ import annotations

from chalicelib.masking import is_sensitive_header
from chalicelib.sealing.service import MONITOR_HEADERS, is_sealed, seal, unseal


def _record(monitor_id: str, name: str) -> str:
    return f"{monitor_id}/{name}"


def sealed(team_id: str, monitor_id: str, headers: dict[str, str], stored: dict[str, str]) -> dict[str, str]:
    """``headers`` to store: each credential sealed, unless it is the stored sealed value (sent back masked).  A
    value that merely looks sealed is sealed too: every stored value that looks sealed is one."""
    out = {}
    for name, value in headers.items():
        kept = is_sealed(value) and stored.get(name) == value
        if kept or not (is_sensitive_header(name) or is_sealed(value)):
            out[name] = value
        else:
            out[name] = seal(MONITOR_HEADERS, value, team_id=team_id, record=_record(monitor_id, name))
    return out


def opened(team_id: str, monitor_id: str, headers: dict[str, str]) -> dict[str, str]:
    """The headers a check sends: each sealed value opened (``sealing.Unreadable`` when one does not open here)."""
    return {
        name: unseal(MONITOR_HEADERS, value, team_id=team_id, record=_record(monitor_id, name))
        if is_sealed(value)
        else value
        for name, value in headers.items()
    }


def in_the_clear(headers: dict[str, str]) -> list[str]:
    """The credential headers stored as they were sent (before sealing): what ``infra/seal.py`` seals."""
    return [name for name, value in headers.items() if is_sensitive_header(name) and not is_sealed(value)]
