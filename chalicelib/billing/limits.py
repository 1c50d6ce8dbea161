"""The plan's limits where they bite: 402 ``plan_limit_exceeded`` naming the limit, the plan and the current use.

Counted limits (active monitors, …) are kept in one counter a team and resource (``usage``), moved in the same
transaction as the write that adds or removes one: the counter's step is conditional on the limit, so 20 parallel
creates against a limit of 10 make 10 (a transaction either lands whole or not at all).  A counter is made on first
use from a count of what exists (teams older than the limits, a counter lost), under a condition: two first uses
agree.  Shape limits (the shortest interval, regions per monitor) are checked against the plan as read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from chalicelib import errors
from chalicelib.billing import plans
from chalicelib.billing.models import UsageModel
from chalicelib.settings import get_settings
from chalicelib.storage.base import condition_failed
from chalicelib.teams.models import TeamModel

T = TypeVar("T")
WHAT = {
    "monitors": "active monitors",
    "status_pages": "status pages",
    "alert_channels": "alert channels",
    "members": "members and pending invitations",
}


def plan_of(team_id: str) -> plans.Plan:
    try:
        return plans.plan(TeamModel.get(team_id, consistent_read=True, attributes_to_get=["plan"]).plan)
    except TeamModel.DoesNotExist:
        return plans.plan(None)


def result_retention(team_id: str) -> timedelta:
    """How long the team's results are kept and shown: its plan's, at most ``RESULT_RETENTION_DAYS``."""
    days = min(plan_of(team_id).limits.result_retention_days, get_settings().result_retention_days)
    return timedelta(days=days)


def exceeded(
    plan: plans.Plan, limit: str, allowed: int, used: int | None = None, detail: str = ""
) -> errors.VigilError:
    """The 402: which limit, on which plan, and how much is used."""
    use = f" ({used} in use)" if used is not None else ""
    text = detail or f"The {plan.name} plan allows {allowed} {WHAT.get(limit, limit)}{use}."
    return errors.PaymentRequired(
        f"{text} Upgrade the plan to go further.", limit=limit, plan=plan.id, allowed=allowed, used=used
    )


def check_interval(plan: plans.Plan, interval_seconds: int) -> None:
    if interval_seconds < plan.limits.min_interval_seconds:
        minimum = plan.limits.min_interval_seconds
        raise exceeded(
            plan,
            "min_interval_seconds",
            minimum,
            detail=f"The {plan.name} plan checks at most every {minimum} s; {interval_seconds} s asked.",
        )


def check_regions(plan: plans.Plan, regions: int) -> None:
    allowed = plan.limits.regions
    if allowed is not None and regions > allowed:
        raise exceeded(
            plan,
            "regions",
            allowed,
            regions,
            detail=f"The {plan.name} plan checks from at most {allowed} regions a monitor; {regions} asked.",
        )


def default_regions(plan: plans.Plan, configured: tuple[str, ...]) -> tuple[str, ...]:
    """The regions a monitor gets when it names none: every configured one, as many as the plan allows."""
    allowed = plan.limits.regions
    return configured if allowed is None else configured[:allowed]


@dataclass
class Counter:
    """One step of a transaction: a team's counter of ``resource`` moves by ``delta`` (an increase only within the
    plan's limit).  Give it to the write that adds or removes one; :meth:`check` turns its refusal into the 402."""

    team_id: str
    resource: str
    delta: int
    plan: plans.Plan

    @property
    def limit(self) -> int:
        return int(getattr(self.plan.limits, self.resource))

    def add_to(self, t: Any) -> None:
        """Its step in the transaction; a refusal returns the counter as it was, which :meth:`check` recognises
        (no other item of these transactions has a ``used``)."""
        # A removal is never refused (a delete must not fail on a count); an addition only within the limit.
        condition = UsageModel.used <= self.limit - self.delta if self.delta > 0 else None
        t.update(
            UsageModel(self.team_id, self.resource),
            actions=[UsageModel.used.add(self.delta)],
            condition=condition,
            return_values="ALL_OLD",
        )

    def check(self, exc: Exception) -> None:
        """Raise the 402 if the transaction failed on this counter's limit (a removal's floor of zero is no
        refusal: a counter behind what exists is put right by :func:`admit`)."""
        for reason in getattr(exc, "cancellation_reasons", None) or []:
            old = (reason.raw_item or {}) if reason is not None else {}
            if self.delta > 0 and "used" in old and old.get("resource") == {"S": self.resource}:
                raise exceeded(self.plan, self.resource, self.limit, int(old["used"]["N"])) from None


def counter(team_id: str, resource: str, delta: int, count_now: Callable[[], int]) -> Counter:
    """The team's counter of ``resource``, made from ``count_now()`` if it has none yet, as a step of ``delta``."""
    with contextlib.suppress(UsageModel.DoesNotExist):
        UsageModel.get(team_id, resource, consistent_read=True, attributes_to_get=["used"])
        return Counter(team_id, resource, delta, plan_of(team_id))
    try:
        UsageModel(team_id, resource, used=count_now()).save(condition=UsageModel.team_id.does_not_exist())
    except Exception as exc:
        if not condition_failed(exc):  # made meanwhile by another first use: the same count
            raise
    return Counter(team_id, resource, delta, plan_of(team_id))


def forget_team(team_id: str) -> None:
    """A deleted team's counters."""
    for item in UsageModel.query(team_id):
        item.delete()


def admit(
    team_id: str,
    resource: str,
    count_now: Callable[[], int],
    write: Callable[[Counter], T],
    *,
    repair: Callable[[], bool] | None = None,
) -> T:
    """``write(counter)`` of one more ``resource`` (402 past the plan's limit).  Refused, the counter is put right
    — by ``repair()`` when given (what it counted out: invitations that expired while pending), else against a
    consistent count of what exists — and, if it ran ahead, tried once more: a counter can stop a team early only
    until its next refusal, and a repair never lowers it below what exists."""
    try:
        return write(counter(team_id, resource, 1, count_now))
    except errors.PaymentRequired:
        repaired = repair() if repair is not None else _repaired(team_id, resource, count_now())
        if not repaired:
            raise
        return write(counter(team_id, resource, 1, count_now))


def uncount(team_id: str, resource: str, count_now: Callable[[], int]) -> Counter:
    """The step of one ``resource`` fewer (a delete, a revocation)."""
    return counter(team_id, resource, -1, count_now)


def _repaired(team_id: str, resource: str, actual: int) -> bool:
    try:
        item = UsageModel.get(team_id, resource, consistent_read=True)
    except UsageModel.DoesNotExist:
        return True
    if actual >= int(item.used):
        return False
    try:
        item.update(actions=[UsageModel.used.set(actual)], condition=UsageModel.used == item.used)
    except Exception as exc:
        if not condition_failed(exc):
            raise
    return True
