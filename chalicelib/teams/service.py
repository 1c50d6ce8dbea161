"""Teams and memberships: the team record, who belongs, with which role."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pynamodb.exceptions import TransactWriteError

from chalicelib.errors import (
    AccountDeleting,
    AlreadyOwner,
    Conflict,
    Forbidden,
    LastOwner,
    LastTeam,
    NotFound,
    PaymentRequired,
)
from chalicelib.ids import new_id
from chalicelib.storage.base import (
    Counter,
    condition_failed,
    condition_failed_at,
    counted_transaction,
    lost_race,
    retry_lost_races,
    transaction,
)
from chalicelib.teams.models import InvitationModel, MembershipModel, TeamModel
from chalicelib.users import service as users

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


def create_personal_team(team_id: str, user_id: str, name: str, now: datetime) -> None:
    """The user's personal team ``team_id``, owned by them, unless an earlier run made it already."""
    team, membership = new_personal_team(team_id, user_id, name, now)
    try:
        with transaction() as tx:
            users.check_joinable(tx, user_id)
            tx.save(team, condition=TeamModel.team_id.does_not_exist())
            tx.save(membership)
    except TransactWriteError as exc:
        if condition_failed_at(exc, 0):
            raise AccountDeleting(user_id) from None
        if not condition_failed(exc):
            raise


# --- teams ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    user_id: str
    email: str
    name: str | None
    role: str
    joined_at: datetime


# Teams on the free plan one person may own, their personal team included: each is a free plan's monitors, and
# every team a worker's share of DNS lookups (chalicelib.checks.ssrf), so free teams without end would be both.
FREE_TEAMS_OWNED = 3
CREATION_RACES = 8  # creations by one person at once that this one may lose to before it is told to retry


def create_team(user_id: str, name: str, now: datetime) -> Team:
    """A new team on the free plan, owned by ``user_id``: 402 when they own :data:`FREE_TEAMS_OWNED` free teams
    already.  The count and the creation are claimed together on the user (``users.claim_team_creation``), so
    parallel creations are counted one after another (a loser reads and counts again)."""

    def attempt() -> Team:
        seen, recent = _creations(user_id)
        _within_free_teams(
            user_id,
            recent,
            "You own {owned} teams on the free plan, the most one person may; upgrade or delete one of them to create"
            " another.",
        )
        team = TeamModel(
            new_id("team"), name=name, personal=False, plan="free", created_by=user_id, created_at=now, updated_at=now
        )
        with transaction() as tx:
            users.claim_team_creation(tx, user_id, seen, team.team_id, recent)
            tx.save(team, condition=TeamModel.team_id.does_not_exist())
            tx.save(MembershipModel(team.team_id, user_id, role="owner", joined_at=now))
        return to_team(team)

    try:
        return retry_lost_races(attempt, attempts=CREATION_RACES)
    except TransactWriteError as exc:
        if lost_race(exc):  # (an account being deleted is found by the next attempt's read: AccountDeleting)
            raise Conflict("Other teams were being created at the same time; try again.") from None
        raise


def _within_free_teams(user_id: str, recent: list[str], detail: str) -> None:
    """402 when ``user_id`` owns :data:`FREE_TEAMS_OWNED` free teams (``detail`` told the count as ``{owned}``)."""
    owned = free_teams_owned(user_id, recent)
    if owned >= FREE_TEAMS_OWNED:
        raise PaymentRequired(
            detail.format(owned=owned), limit="free_teams_owned", plan="free", allowed=FREE_TEAMS_OWNED, used=owned
        )


def free_teams_owned(user_id: str, recent: list[str]) -> int:
    """The free teams the user owns: those the memberships' index shows, and the ``recent`` ones it created or was
    handed (``users.claim_team_creation``) that the index may not show yet, read consistently."""
    owned = {m.team_id for m in MembershipModel.by_user.query(user_id) if m.role == "owner"}
    for team_id in set(recent) - owned:
        try:
            if MembershipModel.get(team_id, user_id, consistent_read=True).role == "owner":
                owned.add(team_id)
        except MembershipModel.DoesNotExist:
            continue  # deleted since, or left
    # consistent too: a team created a moment ago may be missing from an eventually consistent read of the table
    # (found by a fresh-eyes review of issue 19)
    teams = TeamModel.batch_get(list(owned), consistent_read=True) if owned else []
    return sum(1 for team in teams if team.plan == "free")


def _creations(user_id: str) -> tuple[int, list[str]]:
    """The teams the user created or was handed so far (their claim's number) and the latest of them; 409 once the
    account is going or gone."""
    try:
        user = users.load(user_id)
    except NotFound:
        raise AccountDeleting(user_id) from None
    if user.deleting_at is not None:
        raise AccountDeleting(user_id)
    return int(user.teams_created or 0), list(user.teams_recent or [])


def list_teams(user_id: str) -> list[tuple[Team, str]]:
    """The user's teams with their role in each, oldest membership first."""
    memberships = {m.team_id: m for m in MembershipModel.by_user.query(user_id)}
    if not memberships:
        return []
    found = {t.team_id: t for t in TeamModel.batch_get(list(memberships))}
    rows = [(to_team(found[tid]), m.role, m.joined_at) for tid, m in memberships.items() if tid in found]
    return [(team, role) for team, role, _ in sorted(rows, key=lambda r: (r[2], r[0].id))]


def rename_team(team_id: str, name: str, now: datetime) -> Team:
    item = _load_team(team_id)
    item.update(actions=[TeamModel.name.set(name), TeamModel.updated_at.set(now)])
    return to_team(item)


def require_another_team(user_id: str) -> None:
    """A user's last team cannot go: everyone keeps a team to act in (409 ``last_team``)."""
    if len(list(MembershipModel.by_user.query(user_id, limit=2))) < 2:
        raise LastTeam("This is your only team; create or join another before deleting it.")


def delete_team(team_id: str) -> None:
    """The team, its members and its invitations (``lifecycle.delete_team`` deletes what other areas keep first)."""
    for invitation in InvitationModel.by_team.query(team_id):
        invitation.delete()
    for membership in MembershipModel.query(team_id):
        membership.delete()
    _load_team(team_id).delete()


def _load_team(team_id: str) -> TeamModel:
    try:
        return TeamModel.get(team_id, consistent_read=True)
    except TeamModel.DoesNotExist:
        raise NotFound("No such team.") from None


# --- members -------------------------------------------------------------------------------------


def any_team_of(user_id: str) -> str | None:
    """One team the user belongs to, or None."""
    for membership in MembershipModel.by_user.query(user_id, limit=1):
        return str(membership.team_id)
    return None


def member_ids(team_id: str, *, consistent: bool = False) -> list[str]:
    """The ids of the team's members (read consistently when ``consistent``: a join a moment ago counts)."""
    return [m.user_id for m in MembershipModel.query(team_id, consistent_read=consistent)]


def list_members(team_id: str) -> list[Member]:
    memberships = list(MembershipModel.query(team_id))
    found = {u.id: u for u in users.get_many([m.user_id for m in memberships])}
    members = [
        Member(m.user_id, found[m.user_id].email, found[m.user_id].name, m.role, m.joined_at)
        for m in memberships
        if m.user_id in found
    ]
    return sorted(members, key=lambda m: (ROLES.index(m.role), m.joined_at))


def _membership(team_id: str, user_id: str) -> MembershipModel:
    try:
        return MembershipModel.get(team_id, user_id, consistent_read=True)
    except MembershipModel.DoesNotExist:
        raise NotFound("No such member.") from None


def change_role(actor_role: str, team_id: str, user_id: str, role: str) -> Member:
    """Change a member's role.  Ownership moves only by transfer; an admin cannot touch the owner."""
    target = _membership(team_id, user_id)
    if role == "owner":
        raise Forbidden("Ownership changes hands only through transfer-ownership.")
    if target.role == "owner":
        raise Forbidden("The owner's role changes only through transfer-ownership.")
    if actor_role not in ("owner", "admin"):
        raise Forbidden("Only owners and admins change roles.")
    target.update(actions=[MembershipModel.role.set(role)], condition=MembershipModel.role == target.role)
    return _member(target)


def remove_member(actor: str, actor_role: str, team_id: str, user_id: str, *, counter: Counter | None = None) -> None:
    """Remove a member, or leave when ``user_id`` is the caller.  The owner cannot leave nor be removed."""
    target = _membership(team_id, user_id)
    if target.role == "owner":
        if actor == user_id:
            raise LastOwner("The owner cannot leave; transfer ownership first.")
        raise Forbidden("The owner cannot be removed.")
    if actor != user_id and actor_role not in ("owner", "admin"):
        raise Forbidden("Only owners and admins remove members.")
    counted_transaction(counter, lambda t: t.delete(target, condition=MembershipModel.role == target.role))


def transfer_ownership(actor: str, team_id: str, user_id: str) -> Member:
    """The owner hands the team to another member, who becomes owner; the old owner becomes admin."""
    if user_id == actor:
        raise AlreadyOwner("You already own this team.")
    target = _membership(team_id, user_id)
    current = _membership(team_id, actor)
    if current.role != "owner":
        raise Forbidden("Only the owner transfers ownership.")
    if _load_team(team_id).plan == "free":
        _hand_free_team(current, target)
        return _member(_membership(team_id, user_id))
    try:
        with transaction() as tx:
            users.check_joinable(tx, user_id)  # never to someone whose account is being deleted
            tx.update(current, actions=[MembershipModel.role.set("admin")], condition=MembershipModel.role == "owner")
            tx.update(
                target, actions=[MembershipModel.role.set("owner")], condition=MembershipModel.role == target.role
            )
    except TransactWriteError as exc:
        if condition_failed_at(exc, 0):
            raise AccountDeleting(user_id, "This member's account is being deleted.") from None
        raise
    return _member(_membership(team_id, user_id))


def _hand_free_team(current: MembershipModel, target: MembershipModel) -> None:
    """A free team changes hands as a creation does: 402 when its new owner owns :data:`FREE_TEAMS_OWNED` free teams
    already, counted through the same claim on them as their own creations (found by a fresh-eyes review of issue
    19: teams created and handed on one by one gave a second account free teams without end)."""
    team_id, user_id = current.team_id, target.user_id

    def attempt() -> None:
        try:
            seen, recent = _creations(user_id)
        except AccountDeleting:
            raise AccountDeleting(user_id, "This member's account is being deleted.") from None
        _within_free_teams(user_id, recent, "They own {owned} teams on the free plan, the most one person may.")
        giver, taker = _membership(team_id, current.user_id), _membership(team_id, user_id)
        if giver.role != "owner":  # handed on meanwhile, by another request of theirs
            raise Forbidden("Only the owner transfers ownership.")
        with transaction() as tx:
            users.claim_team_creation(tx, user_id, seen, team_id, recent)
            tx.update(giver, actions=[MembershipModel.role.set("admin")], condition=MembershipModel.role == "owner")
            tx.update(taker, actions=[MembershipModel.role.set("owner")], condition=MembershipModel.role == taker.role)

    try:
        retry_lost_races(attempt, attempts=CREATION_RACES)
    except TransactWriteError as exc:
        if lost_race(exc):
            raise Conflict("The team or its new owner's teams changed meanwhile; try again.") from None
        raise


def _member(membership: MembershipModel) -> Member:
    user = users.get_user(membership.user_id)
    return Member(membership.user_id, user.email, user.name, membership.role, membership.joined_at)
