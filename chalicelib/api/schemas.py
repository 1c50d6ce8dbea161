"""Response models shared by several API modules, and their renderers from domain objects."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from chalicelib.api.framework import Out
from chalicelib.auth.service import SignIn
from chalicelib.clock import isoz
from chalicelib.schema import Schema
from chalicelib.teams.service import Team
from chalicelib.users.service import User

HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class QuietHoursModel(Schema):
    model_config = ConfigDict(extra="forbid", strict=True)

    start: str = Field(pattern=HHMM, description="HH:MM in the user's timezone")
    end: str = Field(pattern=HHMM, description="HH:MM in the user's timezone")


class NotificationPreferences(Schema):
    model_config = ConfigDict(extra="forbid", strict=True)

    critical_only: bool = False
    quiet_hours: QuietHoursModel | None = None


class ListQuery(Schema):
    """A list's page: ``limit`` items from ``cursor`` (a list's own query model adds its filters)."""

    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=2048)


class UserOut(Out):
    id: str
    email: str
    name: str | None
    email_verified: bool
    timezone: str
    notification_preferences: NotificationPreferences
    current_team_id: str | None
    created_at: str
    pending_email: str | None = Field(
        default=None,
        description="the address asked for by POST /v1/me/email until its link is followed; a newer request, a"
        " password change or a reset cancels it",
    )


class TeamOut(Out):
    id: str
    name: str
    personal: bool
    plan: str
    created_at: str


class TokensOut(Out):
    user: UserOut
    team: TeamOut
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int


def user_out(user: User, current_team_id: str | None = None) -> UserOut:
    quiet = QuietHoursModel(start=user.quiet_hours.start, end=user.quiet_hours.end) if user.quiet_hours else None
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        email_verified=user.email_verified,
        timezone=user.timezone,
        notification_preferences=NotificationPreferences(critical_only=user.critical_only, quiet_hours=quiet),
        current_team_id=current_team_id or user.current_team_id,
        created_at=isoz(user.created_at) or "",
        pending_email=user.pending_email,
    )


def team_out(team: Team) -> TeamOut:
    return TeamOut(
        id=team.id, name=team.name, personal=team.personal, plan=team.plan, created_at=isoz(team.created_at) or ""
    )


def tokens_out(sign_in: SignIn) -> TokensOut:
    return TokensOut(
        user=user_out(sign_in.user, sign_in.team.id),
        team=team_out(sign_in.team),
        access_token=sign_in.access_token,
        refresh_token=sign_in.refresh_token,
        expires_in=sign_in.expires_in,
    )
