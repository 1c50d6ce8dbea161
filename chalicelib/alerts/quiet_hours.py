"""Members' quiet hours: a member's email that is not critical waits until their quiet hours end.

Quiet hours are wall-clock times in the member's own time zone (``HH:MM``-``HH:MM``, possibly across midnight),
so their end is found in that zone and turned back into UTC, honouring a DST change on the way.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from chalicelib.users.service import User


def quiet_until(user: User, now: datetime) -> datetime | None:
    """When the member's quiet hours end, if ``now`` is inside them (in the member's time zone)."""
    if user.quiet_hours is None:
        return None
    start, end = user.quiet_hours.start, user.quiet_hours.end
    try:
        zone = ZoneInfo(user.timezone or "UTC")
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    local = now.astimezone(zone)
    begin = local.replace(hour=int(start[:2]), minute=int(start[3:5]), second=0, microsecond=0)
    finish = local.replace(hour=int(end[:2]), minute=int(end[3:5]), second=0, microsecond=0)
    if begin == finish:
        return None
    if begin < finish:  # e.g. 01:00-06:00
        inside = begin <= local < finish
        ends = finish
    else:  # across midnight, e.g. 22:00-07:00
        inside = local >= begin or local < finish
        ends = finish if local < finish else finish + timedelta(days=1)
    # Wall-clock arithmetic: re-localise so a DST change on the way is honoured.
    return ends.replace(tzinfo=None).replace(tzinfo=zone).astimezone(UTC) if inside else None
