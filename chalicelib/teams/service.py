"""Teams and memberships: the team record, who belongs, with which role."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from chalicelib.errors import NotFound
from chalicelib.teams.models import MembershipModel, TeamModel

ROLES = ("owner", "admin", "member", "viewer")


@dataclass(frozen=True)
class Team:
    id: str
    name: str
    personal: bool
    plan: str
    created_at: datetime


def to_team(item: TeamModel) -> Team:
    return Team(
        id=item.team_id, name=item.name, personal=bool(item.personal), plan=item.plan, created_at=item.created_at
    )


def get_team(team_id: str) -> Team:
    try:
        return to_team(TeamModel.get(team_id))
    except TeamModel.DoesNotExist:
        raise NotFound("No such team.") from None


def role_of(team_id: str, user_id: str) -> str | None:
    """The user's role in the team, read fresh (roles are never trusted from a token)."""
    try:
        return str(MembershipModel.get(team_id, user_id, consistent_read=True).role)
    except MembershipModel.DoesNotExist:
        return None


def new_personal_team(team_id: str, user_id: str, name: str, now: datetime) -> tuple[TeamModel, MembershipModel]:
    team = TeamModel(team_id, name=name, personal=True, plan="free", created_by=user_id, created_at=now, updated_at=now)
    membership = MembershipModel(team_id, user_id, role="owner", joined_at=now)
    return team, membership
