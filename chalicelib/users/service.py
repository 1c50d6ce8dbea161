"""Users: the account record, its settings and notification preferences."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pynamodb.exceptions import UpdateError

from chalicelib.errors import NotFound, ValidationFailed
from chalicelib.storage.base import condition_failed
from chalicelib.users.models import UserEmailModel, UserModel


@dataclass(frozen=True)
class QuietHours:
    start: str
    end: str


@dataclass(frozen=True)
class User:
    id: str
    email: str
    name: str | None
    email_verified: bool
    timezone: str
    critical_only: bool
    quiet_hours: QuietHours | None
    current_team_id: str | None
    created_at: datetime
    pending_email: str | None = None


def to_user(item: UserModel) -> User:
    quiet = None
    if item.quiet_hours_start and item.quiet_hours_end:
        quiet = QuietHours(item.quiet_hours_start, item.quiet_hours_end)
    return User(
        id=item.user_id,
        email=item.email,
        name=item.name,
        email_verified=item.email_verified_at is not None,
        timezone=item.timezone or "UTC",
        critical_only=bool(item.critical_only),
        quiet_hours=quiet,
        current_team_id=item.current_team_id,
        created_at=item.created_at,
        pending_email=item.pending_email,
    )


def load(user_id: str) -> UserModel:
    try:
        return UserModel.get(user_id, consistent_read=True)
    except UserModel.DoesNotExist:
        raise NotFound("No such user.") from None


def get_user(user_id: str) -> User:
    return to_user(load(user_id))


def find(user_id: str) -> User | None:
    """A user, or None once the account is gone (read as alerts read it: eventually consistent)."""
    try:
        return to_user(UserModel.get(user_id))
    except UserModel.DoesNotExist:
        return None


def id_by_email(email: str) -> str | None:
    """The id of the account holding this (normalised) address, or None."""
    try:
        return str(UserEmailModel.get(email, consistent_read=True).user_id)
    except UserEmailModel.DoesNotExist:
        return None


def get_many(user_ids: list[str]) -> list[User]:
    """These users (one BatchGetItem per 100); ids of none are left out."""
    ids = list(dict.fromkeys(user_ids))
    return [to_user(item) for item in UserModel.batch_get(ids)] if ids else []


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_timezone(name: str, field: str = "timezone") -> str:
    """An IANA time zone name (``Europe/Paris``, ``UTC``): not a folder of the database (``Europe``), nor one of its
    other trees (``posix/…``, ``right/…``)."""
    try:
        known = name in _zones() and not name.startswith(("posix/", "right/")) and name != "posixrules"
        if known:
            ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        known = False
    if not known:
        message = f"unknown time zone {name!r}; use an IANA name like Europe/Paris"
        raise ValidationFailed.single(field, message)
    return name


_UNSET = object()


def update_settings(
    user_id: str,
    now: datetime,
    *,
    name: str | object | None = _UNSET,
    timezone: str | object = _UNSET,
    critical_only: bool | object = _UNSET,
    quiet_hours: QuietHours | object | None = _UNSET,
) -> User:
    """Apply a partial update (only the arguments given), with optimistic locking."""
    item = load(user_id)
    if name is not _UNSET:
        item.name = name  # type: ignore[assignment]
    if timezone is not _UNSET:
        item.timezone = check_timezone(str(timezone))
    if critical_only is not _UNSET:
        item.critical_only = bool(critical_only)
    if quiet_hours is not _UNSET:
        hours = quiet_hours if isinstance(quiet_hours, QuietHours) else None
        item.quiet_hours_start = hours.start if hours else None
        item.quiet_hours_end = hours.end if hours else None
    item.updated_at = now
    item.save()
    return to_user(item)


UNSET = _UNSET


def probe() -> None:
    """A point read of a user that cannot exist: proves the table, the credentials and the network path, at the
    cost of one read unit (the health check)."""
    try:
        UserModel.get("usr_health_probe")
    except UserModel.DoesNotExist:
        return


def check_joinable(t: Any, user_id: str) -> None:
    """Adds to transaction ``t`` the check that the user exists and is not being deleted: a membership written
    with it cannot outlive the account (``DELETE /v1/me`` marks the user first, then sweeps)."""
    t.condition_check(UserModel, user_id, condition=UserModel.user_id.exists() & UserModel.deleting_at.does_not_exist())


RECENT_TEAMS = 3


def claim_team_creation(t: Any, user_id: str, seen: int, team_id: str, recent: list[str]) -> None:
    """:func:`check_joinable` for a team the user creates or is handed (``teams.transfer_ownership``), which also
    claims the user's next creation: it holds only if no other creation was claimed since the count ``seen`` (and
    the ``recent`` teams) were read (a condition failure: read again).  ``team_id`` joins the recent teams."""
    unchanged = UserModel.teams_created == seen if seen else UserModel.teams_created.does_not_exist()
    t.update(
        UserModel(user_id),
        actions=[
            UserModel.teams_created.set(seen + 1),
            UserModel.teams_recent.set(cast(Any, [*recent, team_id][-RECENT_TEAMS:])),  # PynamoDB types it by item
        ],
        condition=UserModel.user_id.exists() & UserModel.deleting_at.does_not_exist() & unchanged,
        add_version_condition=False,
    )


def mark_deleting(user_id: str, now: datetime) -> datetime:
    """Mark the user as being deleted (once: a second mark keeps the first time); returns the mark."""
    item = load(user_id)
    item.update(
        actions=[UserModel.deleting_at.set(UserModel.deleting_at | now)],
        condition=UserModel.user_id.exists(),
        add_version_condition=False,
    )
    return item.deleting_at or now


def unmark_deleting(user_id: str, mark: datetime) -> None:
    """Take back a mark that :func:`mark_deleting` returned (a deletion refused after all), if it is still that
    one."""
    try:
        UserModel(user_id).update(
            actions=[UserModel.deleting_at.remove()],
            condition=UserModel.deleting_at == mark,
            add_version_condition=False,
        )
    except UpdateError as exc:
        if not condition_failed(exc):  # else marked again since, or gone: not ours to take back
            raise
