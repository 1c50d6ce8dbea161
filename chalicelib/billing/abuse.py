"""What any plan may send to strangers (issue 15, "Abuse controls"): SES's and SNS's reputation and cost are shared
by every customer, so an account whose email is not verified mails no one else, and a team's invitations and
channel tests are rate-limited."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib import errors
from chalicelib.ratelimit import service as ratelimit
from chalicelib.users import service as users

SENDS_PER_HOUR = 10  # per team, each of: invitations, channel tests
WINDOW_SECONDS = 3600


def require_verified(user_id: str, what: str) -> None:
    """403 ``email_not_verified`` unless the caller's address is verified."""
    user = users.find(user_id)
    if user is None or not user.email_verified:
        raise errors.EmailNotVerified(f"Verify your email address before {what}.")


def check_recipients(user_id: str, kind: str, config: dict[str, Any]) -> None:
    """An email channel to anyone but the caller, or any SMS channel, needs a verified address."""
    if kind == "email":
        user = users.find(user_id)
        own = user.email.lower() if user is not None else ""
        if any(str(a).lower() != own for a in config.get("addresses") or []):
            require_verified(user_id, "alerting other email addresses")
    elif kind == "sms" and config.get("phone_numbers"):
        require_verified(user_id, "alerting phone numbers")


def may_send(team_id: str, kind: str, now: datetime) -> None:
    """429 when the team sent its hour's ``kind`` (``invitations``, ``channel_tests``) already; read, not counted:
    only what is sent counts (:func:`sent`), so a refused attempt (409, 402, 403) spends nothing."""
    window = ratelimit.peek(f"sends#{kind}#{team_id}", WINDOW_SECONDS, now)
    if window.count >= SENDS_PER_HOUR:
        raise errors.TooManyRequests(
            window.resets_in, f"At most {SENDS_PER_HOUR} {kind.replace('_', ' ')} an hour for a team; try again later."
        )


def sent(team_id: str, kind: str, now: datetime) -> None:
    ratelimit.hit(f"sends#{kind}#{team_id}", WINDOW_SECONDS, now)
