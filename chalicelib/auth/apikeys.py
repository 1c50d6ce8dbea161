"""API keys: a team's machine clients, scoped, never stored in clear, never more than their creator's role.

A key is ``vgl_`` + a 12-character lookup id + 32 secret characters (190 bits) + a 6-character CRC32 of the two,
all base62.  The checksum lets a secret scanner, or :func:`authenticate`, refuse a mistyped or made-up key without
reading storage.  A real lookup id finds the key's item (a consistent read: a revoked key fails on the very next
request), whose SHA-256 of the whole key is compared in constant time.

A key acts in the team that created it, with the intersection of its scopes and its creator's role read fresh
on every request: a demotion shrinks it at once, and a creator who leaves or is removed (even one who rejoins
later) disables it.  Keys reach only the routes that declare a scope (monitors, incidents, status pages, alert
channels, maintenance windows); accounts, teams, members, invitations, API keys and billing are refused (403).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pynamodb.exceptions import TransactWriteError, UpdateError

from chalicelib import errors
from chalicelib.auth.models import ApiKeyModel
from chalicelib.ids import new_id
from chalicelib.observability import logger
from chalicelib.principal import Principal
from chalicelib.ratelimit import service as ratelimit
from chalicelib.ratelimit.models import CounterModel
from chalicelib.storage import cursor
from chalicelib.storage.base import condition_failed, transaction
from chalicelib.teams import authz
from chalicelib.teams.models import MembershipModel

PREFIX = "vgl_"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
LOOKUP_CHARS = 12
SECRET_CHARS = 32  # 62^32 ≈ 2^190.5
CHECK_CHARS = 6  # 62^6 > 2^32: a CRC32, zero-padded
KEY_LENGTH = len(PREFIX) + LOOKUP_CHARS + SECRET_CHARS + CHECK_CHARS
SHOWN_PREFIX = len(PREFIX) + 8  # what lists show of a key: vgl_ and the start of its lookup id, never the secret

SCOPES = (
    "monitors:read",
    "monitors:write",
    "incidents:read",
    "incidents:write",
    "status_pages:read",
    "status_pages:write",
    "alert_channels:read",
    "alert_channels:write",
    "maintenance:read",
    "maintenance:write",
)
MAX_KEYS_PER_TEAM = 50  # live keys: counted in the transaction that makes or revokes one
MAX_LIFETIME = timedelta(days=3660)  # an expiry at most about ten years ahead
BAD_KEYS_PER_MINUTE = 20  # well-formed keys that match nothing, per client address, before 429s
LAST_USED_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key
KEPT_AFTER_END = timedelta(days=30)  # a revoked or expired key's item, then removed by TTL


@dataclass(frozen=True)
class ApiKey:
    id: str
    team_id: str
    name: str
    scopes: tuple[str, ...]
    prefix: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


def _base62(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        out.append(BASE62[digit])
    return "".join(reversed(out))


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), CHECK_CHARS)


def _random(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def mint() -> tuple[str, str]:
    """A new key and its lookup id."""
    lookup = _random(LOOKUP_CHARS)
    body = lookup + _random(SECRET_CHARS)
    return PREFIX + body + checksum(body), lookup


def lookup_of(key: str) -> str | None:
    """The lookup id of a well-formed key whose checksum holds, else None (decided offline)."""
    if len(key) != KEY_LENGTH or not key.startswith(PREFIX):
        return None
    rest = key[len(PREFIX) :]
    if any(c not in BASE62 for c in rest):
        return None
    body, check = rest[:-CHECK_CHARS], rest[-CHECK_CHARS:]
    if not hmac.compare_digest(checksum(body), check):
        return None
    return body[:LOOKUP_CHARS]


def looks_like_key(value: str) -> bool:
    return value.strip().startswith(PREFIX)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def to_key(item: ApiKeyModel) -> ApiKey:
    return ApiKey(
        id=item.key_id,
        team_id=item.team_id,
        name=item.name,
        scopes=tuple(s for s in SCOPES if s in (item.scopes or set())),
        prefix=PREFIX + item.lookup[: SHOWN_PREFIX - len(PREFIX)],
        created_by=item.created_by,
        created_at=item.created_at,
        expires_at=item.expires_at,
        last_used_at=item.last_used_at,
    )


# --- management (owner and admin) ----------------------------------------------------------------


def _live(team_id: str) -> Iterable[ApiKeyModel]:
    return (item for item in ApiKeyModel.by_team.query(team_id) if item.revoked_at is None)


def create(
    team_id: str, user_id: str, name: str, scopes: Iterable[str], expires_at: datetime | None, now: datetime
) -> tuple[ApiKey, str]:
    """A new key; returns it with its secret text, which is never stored or shown again.

    Scopes outside :data:`SCOPES`, an expiry not in the future or more than :data:`MAX_LIFETIME` ahead are a 422;
    a team holding :data:`MAX_KEYS_PER_TEAM` live keys is a 409 — counted in the same
    transaction as the key's put, so parallel creates cannot pass it; keys that expired are revoked to make room."""
    chosen = set(scopes)
    unknown = sorted(chosen - set(SCOPES))
    if unknown:
        raise errors.ValidationFailed.single("scopes", f"unknown scope(s): {', '.join(unknown)}")
    if not chosen:
        raise errors.ValidationFailed.single("scopes", "name at least one scope")
    if expires_at is not None and expires_at <= now:
        raise errors.ValidationFailed.single("expires_at", "must be in the future")
    if expires_at is not None and expires_at > now + MAX_LIFETIME:
        raise errors.ValidationFailed.single("expires_at", "must be at most ten years ahead; or leave it out")
    key, lookup = mint()
    item = ApiKeyModel(
        lookup,
        key_id=new_id("key"),
        team_id=team_id,
        created_by=user_id,
        name=name,
        scopes=chosen,
        secret_hash=_digest(key),
        created_at=now,
        expires_at=expires_at,
        purge_at=expires_at + KEPT_AFTER_END if expires_at else None,
    )
    full = errors.Conflict(f"A team may hold {MAX_KEYS_PER_TEAM} API keys; revoke one first.")
    try:
        _put_counted(item)
    except _Full:
        freed = _revoke_expired(team_id, now)
        if not (_repaired(team_id) or freed):
            raise full from None
        try:
            _put_counted(item)
        except _Full:
            raise full from None
    logger.info("api key created", extra={"key_id": item.key_id, "team_id": team_id, "scopes": sorted(chosen)})
    return to_key(item), key


class _Full(Exception):
    """The team holds as many live keys as it may."""


def _count_step(t: object, team_id: str, delta: int) -> None:
    """The team's count of live keys moves by ``delta`` in transaction ``t`` (an increase only below the cap): a
    counter item of its own, kept as long as the team (the team item's version must not move with it)."""
    condition = None
    if delta > 0:
        condition = CounterModel.hits.does_not_exist() | (CounterModel.hits < MAX_KEYS_PER_TEAM)
    t.update(  # type: ignore[attr-defined]
        CounterModel(_count_key(team_id)), actions=[CounterModel.hits.add(delta)], condition=condition
    )


def _count_key(team_id: str) -> str:
    return f"api-keys#{team_id}"


def _put_counted(item: ApiKeyModel) -> None:
    try:
        with transaction() as t:
            _count_step(t, item.team_id, +1)
            t.save(item, condition=ApiKeyModel.lookup.does_not_exist())
    except TransactWriteError as exc:
        if condition_failed(exc):  # the cap (a clash of 12-character lookup ids would be as good as never)
            raise _Full() from None
        raise


def _repaired(team_id: str) -> bool:
    """Put the team's count right when it is above the keys that exist (an expired key's item, left unrevoked, is
    removed by TTL 30 days on without counting it out); True if it was lowered.  Only ever called with the count
    at the cap, so an index read that misses a key just made cannot let the team past it."""
    actual = sum(1 for _ in _live(team_id))
    try:
        counted = int(CounterModel.get(_count_key(team_id), consistent_read=True).hits)
    except CounterModel.DoesNotExist:
        return False
    if actual >= counted:
        return False
    try:
        CounterModel(_count_key(team_id)).update(
            actions=[CounterModel.hits.set(actual)], condition=CounterModel.hits == counted
        )
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
    return True


def _revoke_expired(team_id: str, now: datetime) -> bool:
    """Revoke the team's keys that have expired (they count as live until then); True if any was."""
    revoked = False
    for item in _live(team_id):
        if item.expires_at is not None and item.expires_at <= now:
            revoked = _revoke_item(item, now) or revoked
    return revoked


def list_keys(team_id: str, *, limit: int, after: str | None) -> tuple[list[ApiKey], str | None]:
    """The team's keys (not revoked), newest first, without secrets."""
    page, next_cursor = cursor.paginate(
        lambda start: (
            item
            for item in ApiKeyModel.by_team.query(
                team_id, scan_index_forward=False, last_evaluated_key=start, page_size=cursor.page_size(limit)
            )
            if item.revoked_at is None
        ),
        team_id=team_id,
        scope="api-keys",
        limit=limit,
        after=after,
        key=("lookup", "team_id", "key_id"),
    )
    return [to_key(item) for item in page], next_cursor


def _find(team_id: str, key_id: str) -> ApiKeyModel:
    for item in ApiKeyModel.by_team.query(team_id, ApiKeyModel.key_id == key_id):
        if item.revoked_at is None:
            return item
    raise errors.NotFound("No such API key.")


def revoke(team_id: str, key_id: str, now: datetime) -> None:
    """The key stops working at once (its item is read consistently on every use)."""
    if not _revoke_item(_find(team_id, key_id), now):
        raise errors.NotFound("No such API key.")
    logger.info("api key revoked", extra={"key_id": key_id, "team_id": team_id})


def _revoke_item(item: ApiKeyModel, now: datetime) -> bool:
    """Mark it revoked and count it out, in one transaction; False if it was revoked or removed meanwhile."""
    try:
        with transaction() as t:
            t.update(
                item,
                actions=[ApiKeyModel.revoked_at.set(now), ApiKeyModel.purge_at.set(now + KEPT_AFTER_END)],
                condition=ApiKeyModel.lookup.exists() & ApiKeyModel.revoked_at.does_not_exist(),
            )
            _count_step(t, item.team_id, -1)
    except TransactWriteError as exc:
        if condition_failed(exc):
            return False
        raise
    return True


def revoke_made_by(team_id: str, user_id: str, now: datetime) -> None:
    """The team's keys made by ``user_id`` (who is leaving it): they would fail anyway, and must not linger in the
    team's list as live."""
    for item in _live(team_id):
        if item.created_by == user_id:
            _revoke_item(item, now)


def purge_team(team_id: str) -> None:
    """A deleted team's keys (they would already fail: their creators are no longer members)."""
    for item in ApiKeyModel.by_team.query(team_id):
        item.delete()
    CounterModel(_count_key(team_id)).delete()


# --- use -----------------------------------------------------------------------------------------


_refused_addresses: dict[str, int] = {}  # address -> end of the minute its bad keys are refused until (this process)


def identify(key: str, client_ip: str, now: datetime) -> Principal:
    """The principal a key acts as, before any route's rule (:func:`authorize`).

    401 for a key that is malformed (no storage read), unknown, wrong, revoked, expired, or whose creator has left
    its team.  An address that sends :data:`BAD_KEYS_PER_MINUTE` well-formed keys that match nothing in a minute
    gets 429s for them until the minute ends (its valid keys still work)."""
    lookup = lookup_of(key)
    if lookup is None:
        raise errors.TokenInvalid("This API key is not valid.")
    try:
        item = ApiKeyModel.get(lookup, consistent_read=True)
    except ApiKeyModel.DoesNotExist:
        item = None
    if item is None or not item.secret_hash or not hmac.compare_digest(_digest(key), item.secret_hash):
        _count_bad_key(client_ip, now)
        raise errors.TokenInvalid("This API key is not valid.")
    if item.revoked_at is not None:
        raise errors.TokenInvalid("This API key has been revoked.")
    if item.expires_at is not None and item.expires_at <= now:
        raise errors.TokenExpired("This API key has expired.")
    try:
        membership = MembershipModel.get(item.team_id, item.created_by, consistent_read=True)
    except MembershipModel.DoesNotExist:
        membership = None
    if membership is None or membership.joined_at > item.created_at:
        raise errors.TokenInvalid("This API key is disabled: the member who created it has left its team.")
    _touch(item, now)
    return Principal(
        user_id=item.created_by,
        team_id=item.team_id,
        kind="api_key",
        role=str(membership.role),
        scopes=frozenset(item.scopes or ()),
        key_id=item.key_id,
    )


def _count_bad_key(client_ip: str, now: datetime) -> None:
    """A key that matched nothing, from ``client_ip``: past the minute's allowance, a 429 instead of the 401.  Only
    bad keys are refused — a valid key is never refused for what others behind the same address sent — and an
    address already refused in this process is not counted again (no write) until its minute ends."""
    until = _refused_addresses.get(client_ip)
    if until is not None and now.timestamp() < until:
        raise errors.TooManyRequests(until - int(now.timestamp()), "Too many invalid API keys from your address.")
    if ratelimit.admit(f"ip#bad-key#{client_ip}", BAD_KEYS_PER_MINUTE, 60, now) is not None:
        return
    if len(_refused_addresses) > 10_000:
        _refused_addresses.clear()
    wait = ratelimit.resets_in(60, now)
    _refused_addresses[client_ip] = int(now.timestamp()) + wait
    raise errors.TooManyRequests(wait, "Too many invalid API keys from your address.")


def authorize(principal: Principal, permission: str | None, scope: str | None) -> Principal:
    """A key's principal on a route: the route must take keys, the key hold its scope, the creator's role allow it."""
    if permission is None or scope is None:
        raise errors.ApiKeyNotAllowed(
            "API keys cannot reach this route (accounts, teams, members, invitations, API keys and billing); "
            "sign in as a user."
        )
    if scope not in principal.scopes:
        raise errors.InsufficientScope(f"This API key lacks the {scope} scope.")
    if not authz.allowed(principal.role or "", permission):
        raise errors.Forbidden(
            f"The key's creator's role ({principal.role}) does not allow this; it needs {authz.needed(permission)}."
        )
    return principal


def _touch(item: ApiKeyModel, now: datetime) -> None:
    """``last_used_at``, written at most once a minute per key (the condition keeps racing requests to one)."""
    if item.last_used_at is not None and now - item.last_used_at < LAST_USED_EVERY:
        return
    condition = ApiKeyModel.lookup.exists() & (
        ApiKeyModel.last_used_at.does_not_exist() | (ApiKeyModel.last_used_at < now - LAST_USED_EVERY)
    )
    try:
        item.update(actions=[ApiKeyModel.last_used_at.set(now)], condition=condition)
    except UpdateError as exc:
        if not condition_failed(exc):
            logger.warning("could not record an API key's use", extra={"key_id": item.key_id})
