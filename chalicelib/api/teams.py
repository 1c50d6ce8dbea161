"""/v1/teams/* and /v1/invitations/accept: teams, members, roles, invitations."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chalicelib import lifecycle
from chalicelib.api.framework import Call, Out, Reply, Router
from chalicelib.api.schemas import TeamOut, team_out
from chalicelib.billing import abuse
from chalicelib.clock import isoz, utcnow
from chalicelib.schema import EmailAddress, Line, Schema
from chalicelib.teams import authz, invitations
from chalicelib.teams import service as teams

router = Router("teams")

Role = Literal["owner", "admin", "member", "viewer"]
InvitableRole = Literal["admin", "member", "viewer"]
TeamName = Field(min_length=1, max_length=100)


class TeamIn(Schema):
    name: Line = TeamName  # it goes into email subjects (invitations): one line


class RoleIn(Schema):
    role: InvitableRole = Field(description="Ownership moves only through transfer-ownership.")


class TransferIn(Schema):
    user_id: str = Field(min_length=1, max_length=100)


class InvitationIn(Schema):
    email: EmailAddress = Field(max_length=320)
    role: InvitableRole = "member"


class AcceptIn(Schema):
    token: str = Field(min_length=1, max_length=200)


class TeamWithRole(TeamOut):
    role: Role


class TeamList(Out):
    data: list[TeamWithRole]
    next_cursor: str | None = None


class MemberOut(Out):
    user_id: str
    email: str
    name: str | None
    role: Role
    joined_at: str


class MemberList(Out):
    data: list[MemberOut]
    next_cursor: str | None = None


class InvitationOut(Out):
    id: str
    email: str
    role: InvitableRole
    invited_by: str
    created_at: str
    expires_at: str


class InvitationList(Out):
    data: list[InvitationOut]
    next_cursor: str | None = None


class AcceptedOut(Out):
    team: TeamOut
    role: Role


def _with_role(team: teams.Team, role: str) -> TeamWithRole:
    return TeamWithRole(**team_out(team).model_dump(), role=role)  # type: ignore[arg-type]


def _member(member: teams.Member) -> MemberOut:
    return MemberOut(
        user_id=member.user_id,
        email=member.email,
        name=member.name,
        role=member.role,  # type: ignore[arg-type]
        joined_at=isoz(member.joined_at) or "",
    )


def _invitation(inv: invitations.Invitation) -> InvitationOut:
    return InvitationOut(
        id=inv.id,
        email=inv.email,
        role=inv.role,  # type: ignore[arg-type]
        invited_by=inv.invited_by,
        created_at=isoz(inv.created_at) or "",
        expires_at=isoz(inv.expires_at) or "",
    )


@router.route("GET", "/v1/teams", summary="Your teams, with your role in each", response=TeamList)
def list_teams(call: Call) -> TeamList:
    return TeamList(data=[_with_role(team, role) for team, role in teams.list_teams(call.user.user_id)])


@router.route(
    "POST",
    "/v1/teams",
    summary="Create a team (you own it; at most three on the free plan)",
    body=TeamIn,
    response=TeamWithRole,
    status=201,
    errors=(402, 409),
)
def create_team(call: Call) -> TeamWithRole:
    return _with_role(teams.create_team(call.user.user_id, call.body.name, utcnow()), "owner")


@router.route("GET", "/v1/teams/{team_id}", summary="A team", auth="team", permission=authz.READ, response=TeamWithRole)
def get_team(call: Call, team_id: str) -> TeamWithRole:
    return _with_role(teams.get_team(team_id), call.user.role or "viewer")


@router.route(
    "PATCH",
    "/v1/teams/{team_id}",
    summary="Rename a team",
    auth="team",
    permission=authz.MEMBERS,
    body=TeamIn,
    response=TeamWithRole,
)
def rename_team(call: Call, team_id: str) -> TeamWithRole:
    return _with_role(teams.rename_team(team_id, call.body.name, utcnow()), call.user.role or "viewer")


@router.route(
    "DELETE",
    "/v1/teams/{team_id}",
    summary="Delete a team and all its data",
    auth="team",
    permission=authz.OWNER,
    status=204,
    errors=(409,),
)
def delete_team(call: Call, team_id: str) -> Reply:
    """Owner only.  Your only team cannot be deleted (409 ``last_team``)."""
    lifecycle.delete_team(call.user.user_id, team_id)
    return Reply(status=204)


@router.route(
    "GET",
    "/v1/teams/{team_id}/members",
    summary="Members and their roles",
    auth="team",
    permission=authz.READ,
    response=MemberList,
)
def list_members(call: Call, team_id: str) -> MemberList:
    return MemberList(data=[_member(m) for m in teams.list_members(team_id)])


@router.route(
    "PATCH",
    "/v1/teams/{team_id}/members/{user_id}",
    summary="Change a member's role",
    auth="team",
    permission=authz.MEMBERS,
    body=RoleIn,
    response=MemberOut,
)
def change_role(call: Call, team_id: str, user_id: str) -> MemberOut:
    """Never to or from owner (use transfer-ownership); an admin cannot touch the owner."""
    return _member(teams.change_role(call.user.role or "", team_id, user_id, call.body.role))


@router.route(
    "DELETE",
    "/v1/teams/{team_id}/members/{user_id}",
    summary="Remove a member, or leave",
    auth="team",
    permission=authz.READ,
    status=204,
    errors=(409,),
)
def remove_member(call: Call, team_id: str, user_id: str) -> Reply:
    """Your own id leaves the team (any role; the owner must transfer ownership first).  Removing someone
    else needs owner or admin, and the owner cannot be removed."""
    lifecycle.remove_member(call.user.user_id, call.user.role or "", team_id, user_id, utcnow())
    return Reply(status=204)


@router.route(
    "POST",
    "/v1/teams/{team_id}/transfer-ownership",
    summary="Hand the team to another member",
    auth="team",
    permission=authz.OWNER,
    body=TransferIn,
    response=MemberOut,
    errors=(402, 409),
)
def transfer_ownership(call: Call, team_id: str) -> MemberOut:
    """The member becomes owner; you become admin.  A team on the free plan is not handed to someone who owns three
    free teams already (402 ``plan_limit_exceeded``, ``free_teams_owned``), as they could not create it."""
    return _member(teams.transfer_ownership(call.user.user_id, team_id, call.body.user_id))


@router.route(
    "POST",
    "/v1/teams/{team_id}/invitations",
    summary="Invite someone by email",
    auth="team",
    permission=authz.MEMBERS,
    body=InvitationIn,
    response=InvitationOut,
    status=201,
    errors=(402, 409, 429),
)
def invite(call: Call, team_id: str) -> InvitationOut:
    """Emails a single-use link, valid 7 days, for that address only."""
    from chalicelib.auth.service import normalize_email

    email = normalize_email(call.body.email)
    abuse.require_verified(call.user.user_id, "inviting anyone")
    abuse.may_send(team_id, "invitations", utcnow())
    invitation = lifecycle.invite(team_id, call.user.user_id, email, call.body.role, utcnow())
    abuse.sent(team_id, "invitations", utcnow())
    return _invitation(invitation)


@router.route(
    "GET",
    "/v1/teams/{team_id}/invitations",
    summary="Pending invitations",
    auth="team",
    permission=authz.MEMBERS,
    response=InvitationList,
)
def list_invitations(call: Call, team_id: str) -> InvitationList:
    return InvitationList(data=[_invitation(i) for i in invitations.list_pending(team_id, utcnow())])


@router.route(
    "DELETE",
    "/v1/teams/{team_id}/invitations/{invitation_id}",
    summary="Revoke an invitation",
    auth="team",
    permission=authz.MEMBERS,
    status=204,
)
def revoke_invitation(call: Call, team_id: str, invitation_id: str) -> Reply:
    lifecycle.revoke_invitation(team_id, invitation_id, utcnow())
    return Reply(status=204)


@router.route(
    "POST",
    "/v1/invitations/accept",
    summary="Join a team from an invitation",
    body=AcceptIn,
    response=AcceptedOut,
    errors=(400, 403, 409),
    ip_limit=30,
)
def accept_invitation(call: Call) -> AcceptedOut:
    """Your verified email must be the invited address."""
    team, role = invitations.accept(call.body.token, call.user.user_id, utcnow())
    return AcceptedOut(team=team_out(team), role=role)  # type: ignore[arg-type]
