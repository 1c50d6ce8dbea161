"""The role matrix, and the one place it is enforced.

Every team-owned route names a permission; :func:`authorize` turns the caller
into a principal acting in one team with a role read fresh from the
memberships table on every request — a role change or a removal takes effect
on the caller's very next request, whatever their token says.
"""

from __future__ import annotations

import dataclasses

from chalicelib import errors
from chalicelib.principal import Principal
from chalicelib.teams.service import role_of

READ = "read"  # monitors, results, incidents, status pages, maintenance, channels (secrets masked), members
WRITE = "write"  # create/edit/pause/test monitors; incidents; maintenance; status pages
MANAGE = "manage"  # delete monitors; alert channels; API keys
MEMBERS = "members"  # invite, remove, change roles; rename the team
OWNER = "owner"  # billing, delete the team, transfer ownership

MATRIX: dict[str, frozenset[str]] = {
    READ: frozenset({"owner", "admin", "member", "viewer"}),
    WRITE: frozenset({"owner", "admin", "member"}),
    MANAGE: frozenset({"owner", "admin"}),
    MEMBERS: frozenset({"owner", "admin"}),
    OWNER: frozenset({"owner"}),
}


def allowed(role: str, permission: str) -> bool:
    return role in MATRIX[permission]


def holds(principal: Principal, permission: str, scope: str) -> bool:
    """Whether an authorized caller could also do what ``permission`` allows (with an API key: within ``scope``):
    a route that needs less shows such a caller more (secrets are masked for those who could not change them)."""
    if not allowed(principal.role or "", permission):
        return False
    return principal.kind != "api_key" or scope in principal.scopes


def authorize(principal: Principal, permission: str, path_team_id: str | None) -> Principal:
    """Resolve the team the request acts in and check the caller's role there.

    1. The team is the one named in the path (``/v1/teams/{team_id}/…``), else the token's current team.
    2. The role is read from the memberships table now.  Not a member of a team named in the
       path → 404 (no existence leak); no longer a member of the token's team → 403.
    3. The role must grant the route's permission, else 403.
    """
    if permission not in MATRIX:
        raise ValueError(f"unknown permission {permission!r}")
    team_id = path_team_id or principal.team_id
    role = role_of(team_id, principal.user_id)
    if role is None:
        if path_team_id:
            raise errors.NotFound("No such team.")
        raise errors.NotAMember("You are no longer a member of this team; switch to another team.")
    if not allowed(role, permission):
        raise errors.Forbidden(f"Your role ({role}) does not allow this; it needs {needed(permission)}.")
    return dataclasses.replace(principal, team_id=team_id, role=role)


def needed(permission: str) -> str:
    roles = [r for r in ("owner", "admin", "member", "viewer") if r in MATRIX[permission]]
    return " or ".join(roles)
