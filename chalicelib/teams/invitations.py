"""Invitations: a single-use link by email, bound to the invited address and the team.

The link carries ``<invitation_id>.<secret>``: the id finds the item with a
strongly consistent read, the secret (256 random bits) is compared with the
stored SHA-256 in constant time.  Accepting is a transaction: the invitation is
marked accepted (on condition that it is still pending) and the membership is
created (on condition that it does not exist), so a link works exactly once.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import TransactWriteError

from chalicelib import errors
from chalicelib.aws.mail import deliver
from chalicelib.emails import invitation_email
from chalicelib.ids import new_id
from chalicelib.settings import get_settings
from chalicelib.storage.base import Counter, condition_failed, condition_failed_at, counted_transaction, transaction
from chalicelib.teams.models import InvitationModel, MembershipModel
from chalicelib.teams.service import Team, get_team, role_of
from chalicelib.users import service as users

VALID_DAYS = 7
INVITABLE_ROLES = ("admin", "member", "viewer")


@dataclass(frozen=True)
class Invitation:
    id: str
    team_id: str
    email: str
    role: str
    invited_by: str
    created_at: datetime
    expires_at: datetime


def _to_invitation(item: InvitationModel) -> Invitation:
    return Invitation(
        id=item.invitation_id,
        team_id=item.team_id,
        email=item.email,
        role=item.role,
        invited_by=item.invited_by,
        created_at=item.created_at,
        expires_at=item.valid_until,
    )


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _pending(item: InvitationModel, now: datetime) -> bool:
    return item.accepted_at is None and item.revoked_at is None and item.valid_until > now


def invite(
    team_id: str,
    inviter_id: str,
    email: str,
    role: str,
    now: datetime,
    *,
    counter: Counter | None = None,
    uncounter: Counter | None = None,
) -> Invitation:
    """Invite an address; a pending invitation to the same address is replaced (its link stops working).
    ``counter`` (+1) moves with the new invitation, ``uncounter`` (-1) with a replaced one's revocation."""
    if role not in INVITABLE_ROLES:
        raise errors.ValidationFailed.single("role", f"must be one of {', '.join(INVITABLE_ROLES)}")
    if _member_with_email(team_id, email):
        raise errors.AlreadyMember("This address already belongs to a member of the team.")
    for old in InvitationModel.by_team.query(team_id, filter_condition=InvitationModel.email == email):
        if _pending(old, now):
            revoke(team_id, old.invitation_id, now, counter=uncounter)
    secret = secrets.token_urlsafe(32)
    item = InvitationModel(
        new_id("inv"),
        team_id=team_id,
        email=email,
        role=role,
        secret_hash=_hash(secret),
        invited_by=inviter_id,
        created_at=now,
        valid_until=now + timedelta(days=VALID_DAYS),
        expires_at=now + timedelta(days=VALID_DAYS + 30),
    )
    counted_transaction(counter, lambda t: t.save(item, condition=InvitationModel.invitation_id.does_not_exist()))
    _send(item, f"{item.invitation_id}.{secret}", inviter_id)
    return _to_invitation(item)


def _member_with_email(team_id: str, email: str) -> bool:
    user_id = users.id_by_email(email)
    return user_id is not None and role_of(team_id, user_id) is not None


def _send(item: InvitationModel, token: str, inviter_id: str) -> None:
    settings = get_settings()
    team = get_team(item.team_id)
    inviter = users.find(inviter_id)
    inviter_name = (inviter.name or inviter.email) if inviter is not None else "A teammate"
    message = invitation_email(settings.app_url, token, team.name, inviter_name, item.role, VALID_DAYS)
    deliver(item.email, message, invitation_id=item.invitation_id)


def _release(item: InvitationModel, now: datetime, t: Any) -> None:
    """Mark an expired invitation released, unless it was answered or released meanwhile."""
    condition = (
        InvitationModel.accepted_at.does_not_exist()
        & InvitationModel.revoked_at.does_not_exist()
        & InvitationModel.released_at.does_not_exist()
    )
    t.update(item, actions=[InvitationModel.released_at.set(now)], condition=condition)


def release_expired(team_id: str, now: datetime, uncounter: Callable[[], Counter]) -> int:
    """Count out of the plan's members each invitation that expired unanswered (once each: marked released in the
    same transaction as its ``uncounter()`` step); how many.  The index read may miss an invitation just made,
    never one old enough to have expired."""
    released = 0
    for item in InvitationModel.by_team.query(team_id):
        if item.accepted_at or item.revoked_at or item.released_at or item.valid_until > now:
            continue
        try:
            counted_transaction(uncounter(), functools.partial(_release, item, now))
            released += 1
        except Exception as exc:
            if not condition_failed(exc):  # released (or answered) meanwhile
                raise
    return released


def list_pending(team_id: str, now: datetime) -> list[Invitation]:
    items = [i for i in InvitationModel.by_team.query(team_id) if _pending(i, now)]
    return [_to_invitation(i) for i in sorted(items, key=lambda i: i.created_at, reverse=True)]


def pending_to(email: str, now: datetime) -> list[Invitation]:
    """The pending invitations to an address, in any team."""
    found = [_load(key.invitation_id) for key in InvitationModel.by_email.query(email)]
    return [_to_invitation(i) for i in found if i is not None and _pending(i, now)]


def revoke(team_id: str, invitation_id: str, now: datetime, *, counter: Counter | None = None) -> None:
    item = _load(invitation_id)
    if item is None or item.team_id != team_id or not _pending(item, now):
        raise errors.NotFound("No such pending invitation.")
    condition = InvitationModel.accepted_at.does_not_exist() & InvitationModel.revoked_at.does_not_exist()
    counted_transaction(
        counter, lambda t: t.update(item, actions=[InvitationModel.revoked_at.set(now)], condition=condition)
    )


def _load(invitation_id: str) -> InvitationModel | None:
    try:
        return InvitationModel.get(invitation_id, consistent_read=True)
    except InvitationModel.DoesNotExist:
        return None


def accept(token: str, user_id: str, now: datetime) -> tuple[Team, str]:
    """Join the team of an invitation.  The caller's verified email must be the invited address."""
    invalid = errors.InvalidToken("This invitation is invalid, expired, revoked or already used.")
    invitation_id, _, secret = token.partition(".")
    item = _load(invitation_id) if invitation_id and secret and len(token) <= 200 else None
    if item is None or not hmac.compare_digest(item.secret_hash, _hash(secret)) or not _pending(item, now):
        raise invalid
    user = users.get_user(user_id)
    if not user.email_verified:
        raise errors.EmailNotVerified("Verify your email address before accepting an invitation.")
    if user.email != item.email:
        raise errors.InvitationEmailMismatch("This invitation was sent to another email address.")
    if role_of(item.team_id, user_id) is not None:
        raise errors.AlreadyMember("You are already a member of this team.")
    try:
        with transaction() as tx:
            users.check_joinable(tx, user_id)
            tx.update(
                item,
                actions=[InvitationModel.accepted_at.set(now), InvitationModel.accepted_by.set(user_id)],
                condition=InvitationModel.accepted_at.does_not_exist() & InvitationModel.revoked_at.does_not_exist(),
            )
            tx.save(
                MembershipModel(item.team_id, user_id, role=item.role, joined_at=now),
                condition=MembershipModel.user_id.does_not_exist(),
            )
    except TransactWriteError as exc:
        if condition_failed_at(exc, 0):  # users.check_joinable's check, the first item
            raise errors.AccountDeleting(user_id) from None
        if condition_failed(exc):
            raise invalid from None
        raise
    return get_team(item.team_id), item.role
