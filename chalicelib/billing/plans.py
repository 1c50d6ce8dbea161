"""The plans: one table, in code (``GET /v1/plans`` serves it; the limits are enforced where they bite,
``billing.limits``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FREE, PRO, ENTERPRISE = "free", "pro", "enterprise"


@dataclass(frozen=True)
class Limits:
    monitors: int  # active (not paused) monitors
    min_interval_seconds: int
    regions: int | None  # per monitor; None: every configured region
    status_pages: int
    alert_channels: int
    members: int  # members and pending invitations
    api_requests_per_minute: int
    result_retention_days: int

    def resolved(self, configured_regions: int) -> dict[str, Any]:
        """As the API shows them: ``regions`` as a number (every configured one, for the plans that allow all)."""
        out = asdict(self)
        out["regions"] = configured_regions if self.regions is None else min(self.regions, configured_regions)
        return out


@dataclass(frozen=True)
class Plan:
    id: str
    name: str
    price_monthly_usd: int
    limits: Limits


PLANS: dict[str, Plan] = {
    FREE: Plan(FREE, "Free", 0, Limits(10, 60, 3, 1, 3, 3, 60, 7)),
    PRO: Plan(PRO, "Pro", 29, Limits(100, 30, None, 5, 20, 20, 600, 30)),
    ENTERPRISE: Plan(ENTERPRISE, "Enterprise", 199, Limits(1000, 30, None, 50, 200, 200, 3000, 90)),
}
PAID = (PRO, ENTERPRISE)
RANK = {FREE: 0, PRO: 1, ENTERPRISE: 2}


def plan(plan_id: str | None) -> Plan:
    """A team's plan (an unknown or absent id is free: what a team without a subscription has)."""
    return PLANS.get(plan_id or FREE, PLANS[FREE])
