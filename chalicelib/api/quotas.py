"""Request quotas, counted per minute in fixed windows before a handler runs.

- An API key: its team's plan's ``api_requests_per_minute`` (free 60, pro 600, enterprise 3,000), and all of a
  team's keys together :data:`TEAM_FACTOR` times that, so one exhausted key leaves the team's other keys (and
  every other team) untouched while many keys stay bounded.
- A signed-in user (access token): ``USER_REQUESTS_PER_MINUTE`` (1,200), so a runaway frontend cannot starve
  the tables.
- A route that declares ``ip_limit``: that many requests a minute per client address (sign-up, password reset,
  invitations, the Stripe webhook, the public status page and badges).

Each count is one conditional ``UpdateItem ADD`` (:func:`chalicelib.ratelimit.service.admit`), never a read
first.  Responses to keys and users carry ``RateLimit-Policy`` and ``RateLimit`` (draft-ietf-httpapi-ratelimit-
headers, as RFC 9651 structured-field lists); a refusal is a 429 with the same fields and ``Retry-After`` no
earlier than the window's end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from chalicelib import errors
from chalicelib.billing import limits
from chalicelib.principal import Principal
from chalicelib.ratelimit import service as ratelimit
from chalicelib.settings import get_settings

WINDOW_SECONDS = 60
TEAM_FACTOR = 3


@dataclass(frozen=True)
class Count:
    policy: str  # "default" (the caller's own), "team" (all of a team's keys)
    quota: int
    remaining: int
    resets_in: int


def fields(counts: list[Count]) -> dict[str, str]:
    """``RateLimit-Policy`` and ``RateLimit`` for the counts, as structured-field lists."""
    return {
        "RateLimit-Policy": ", ".join(f'"{c.policy}";q={c.quota};w={WINDOW_SECONDS}' for c in counts),
        "RateLimit": ", ".join(f'"{c.policy}";r={c.remaining};t={c.resets_in}' for c in counts),
    }


def _count(policy: str, name: str, quota: int, now: datetime) -> Count | None:
    window = ratelimit.admit(name, quota, WINDOW_SECONDS, now)
    if window is None:
        return None
    return Count(policy, quota, max(0, quota - window.count), window.resets_in)


def _refused(counts: list[Count], policy: str, quota: int, now: datetime, detail: str) -> errors.TooManyRequests:
    wait = ratelimit.resets_in(WINDOW_SECONDS, now)
    err = errors.TooManyRequests(wait, detail)
    err.headers.update(fields([*counts, Count(policy, quota, 0, wait)]))
    return err


def admit_caller(principal: Principal, now: datetime) -> dict[str, str]:
    """Count a signed-in request; the headers to send with its response, or a 429."""
    if principal.kind == "api_key":
        quota = limits.plan_of(principal.team_id).limits.api_requests_per_minute
        own = _count("default", f"api-key#{principal.key_id}", quota, now)
        if own is None:
            raise _refused([], "default", quota, now, f"This API key may make {quota} requests a minute.")
        team_quota = quota * TEAM_FACTOR
        team = _count("team", f"api-team#{principal.team_id}", team_quota, now)
        if team is None:  # the key's own count is given back: a refused request counts nothing
            ratelimit.refund(f"api-key#{principal.key_id}", WINDOW_SECONDS, now)
            own = Count(own.policy, own.quota, own.remaining + 1, own.resets_in)
            raise _refused(
                [own], "team", team_quota, now, f"This team's API keys may make {team_quota} requests a minute."
            )
        return fields([own, team])
    quota = get_settings().user_requests_per_minute
    own = _count("default", f"api-user#{principal.user_id}", quota, now)
    if own is None:
        raise _refused([], "default", quota, now, f"A user may make {quota} requests a minute.")
    return fields([own])


def admit_address(route_name: str, quota: int, client_ip: str, now: datetime) -> None:
    """Count a request from ``client_ip`` to a route limited per address; a 429 over ``quota`` a minute."""
    if _count("default", f"ip#{route_name}#{client_ip}", quota, now) is None:
        raise _refused(
            [], "default", quota, now, f"Too many requests to this route from your address ({quota} a minute)."
        )
