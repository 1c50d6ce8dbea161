"""Accounts and sign-in: registration, sessions, token rotation, email and password flows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pynamodb.exceptions import TransactWriteError, UpdateError

from chalicelib import emails, errors
from chalicelib.auth import apikeys, passwords, tokens
from chalicelib.auth.models import OneTimeTokenModel, SessionModel
from chalicelib.aws.mail import deliver
from chalicelib.ids import new_id
from chalicelib.observability import logger
from chalicelib.principal import Principal
from chalicelib.ratelimit import backoff
from chalicelib.ratelimit import service as ratelimit
from chalicelib.settings import Settings, get_settings
from chalicelib.storage.base import condition_failed, condition_failed_at, transaction
from chalicelib.teams import service as teams
from chalicelib.users import service as users
from chalicelib.users.models import UserEmailModel, UserModel

VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"
CHANGE_EMAIL = "change_email"
RESEND_LIMIT_PER_HOUR = 5
FORGOT_LIMIT_PER_HOUR = 5
CHANGE_EMAIL_LIMIT_PER_HOUR = 5
CHANGE_EMAIL_MAILS_PER_DAY = 3  # to one address, whoever asks


@dataclass(frozen=True)
class SignIn:
    user: users.User
    team: teams.Team
    access_token: str
    refresh_token: str
    expires_in: int


def normalize_email(raw: str, field: str = "email") -> str:
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise errors.ValidationFailed.single(field, str(exc)) from None


# --- sessions and tokens -------------------------------------------------------------------------


def _issue(settings: Settings, session: SessionModel, now: datetime) -> tuple[str, str]:
    def claims(kind: str) -> tokens.TokenClaims:
        return tokens.TokenClaims(
            user_id=session.user_id,
            session_id=session.session_id,
            team_id=session.team_id,
            kind=kind,
            generation=int(session.generation),
            expires_at=0,
        )

    return tokens.encode(settings, claims(tokens.ACCESS), now), tokens.encode(settings, claims(tokens.REFRESH), now)


def _sign_in(settings: Settings, session: SessionModel, now: datetime) -> SignIn:
    access, refresh = _issue(settings, session, now)
    return SignIn(
        user=users.get_user(session.user_id),
        team=teams.get_team(session.team_id),
        access_token=access,
        refresh_token=refresh,
        expires_in=settings.access_token_ttl_seconds,
    )


def _new_session(settings: Settings, user_id: str, team_id: str, now: datetime) -> SessionModel:
    session = SessionModel(
        new_id("ses"),
        user_id=user_id,
        team_id=team_id,
        generation=0,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.refresh_token_ttl_seconds),
    )
    session.save()
    return session


def _revoke(session: SessionModel, reason: str, now: datetime) -> None:
    if session.revoked_at is not None:
        return
    try:
        session.update(
            actions=[SessionModel.revoked_at.set(now), SessionModel.revoked_reason.set(reason)],
            condition=SessionModel.revoked_at.does_not_exist(),
        )
    except UpdateError as exc:
        if not condition_failed(exc):  # already revoked by someone else: the outcome we wanted
            raise


def revoke_user_sessions(user_id: str, reason: str, now: datetime, *, keep: str | None = None) -> int:
    """Revoke every live session of a user (except ``keep``).  Returns how many were revoked."""
    revoked = 0
    for session in SessionModel.by_user.query(user_id):
        if session.session_id != keep and session.revoked_at is None:
            _revoke(session, reason, now)
            revoked += 1
    return revoked


def _live_session(session_id: str, user_id: str, now: datetime) -> SessionModel:
    try:
        session = SessionModel.get(session_id, consistent_read=True)
    except SessionModel.DoesNotExist:
        raise errors.SessionRevoked("The session has ended.") from None
    if session.user_id != user_id or session.revoked_at is not None or session.expires_at <= now:
        raise errors.SessionRevoked("The session has ended.")
    return session


def identify(headers: dict[str, str], client_ip: str, now: datetime) -> Principal:
    """Who calls, from ``Authorization: Bearer <access token | API key>`` (401 otherwise): an access token whose
    session is still live, or a live API key (:mod:`chalicelib.auth.apikeys`).  Nothing here says what the caller
    may do: :func:`authorize` does, once the request has been counted."""
    header = headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthorized("Send Authorization: Bearer <token>.")
    token = token.strip()
    if apikeys.looks_like_key(token):
        return apikeys.identify(token, client_ip, now)
    claims = tokens.decode(get_settings(), token, tokens.ACCESS, now)
    session = _live_session(claims.session_id, claims.user_id, now)
    return Principal(user_id=claims.user_id, team_id=claims.team_id or session.team_id, session_id=session.session_id)


def authorize(
    principal: Principal, mode: str, permission: str | None, scope: str | None, params: dict[str, str]
) -> Principal:
    """The caller on this route (403 when it may not): on a team route, its role in the team must grant the route's
    permission (:func:`chalicelib.teams.authz.authorize`); an API key reaches only team routes that declare a
    ``scope`` it holds, within its creator's current role."""
    if principal.kind == "api_key":
        return apikeys.authorize(principal, permission if mode == "team" else None, scope)
    if mode == "team" and permission is not None:
        from chalicelib.teams.authz import authorize as authorize_role

        return authorize_role(principal, permission, params.get("team_id"))
    return principal


# --- registration and sign-in --------------------------------------------------------------------


def register(email: str, password: str, name: str | None, timezone: str | None, now: datetime) -> SignIn:
    """Create the user, their personal team (owned) and a session; send the verification email.

    1. Check the password policy and hash it.
    2. In one transaction: claim the email (conditional put), put the user, the team and the owner membership.
       A concurrent registration with the same email loses the condition → 409 ``email_taken``.
    3. Open a session, then send the verification email (a mail failure is logged, not fatal: resend exists).
    """
    settings = get_settings()
    email = normalize_email(email)
    if timezone is not None:
        users.check_timezone(timezone)
    passwords.check_policy(password, user_inputs=(email, email.split("@")[0], name or ""))
    password_hash = passwords.hash_password(password, settings.bcrypt_rounds)
    user_id, team_id = new_id("usr"), new_id("team")
    user = UserModel(
        user_id,
        email=email,
        password_hash=password_hash,
        name=name,
        timezone=timezone or "UTC",
        current_team_id=team_id,
        created_at=now,
        updated_at=now,
    )
    team_name = f"{name}'s team" if name else "Personal team"
    team, membership = teams.new_personal_team(team_id, user_id, team_name, now)
    try:
        with transaction() as tx:
            tx.save(UserEmailModel(email, user_id=user_id), condition=UserEmailModel.email.does_not_exist())
            tx.save(user, condition=UserModel.user_id.does_not_exist())
            tx.save(team, condition=type(team).team_id.does_not_exist())
            tx.save(membership)
    except TransactWriteError as exc:
        if condition_failed(exc):
            holder = _find_by_email(email)
            if holder is not None and holder.deleting_at is not None:
                raise errors.AccountDeleting(holder.user_id) from None  # the edge finishes it, then registers
            raise errors.EmailTaken("An account with this email already exists.") from None
        raise
    session = _new_session(settings, user_id, team_id, now)
    _send_verification(settings, user_id, email, now)
    logger.info("user registered", extra={"user_id": user_id, "team_id": team_id})
    return _sign_in(settings, session, now)


KNOWN_ADDRESS_DAYS = 30  # an address an account signed in from (or reset from) is spared its ceiling this long
BACKOFF_MEMORY_SECONDS = 86400  # an address's failures on an account are forgotten after a day of quiet


def _backoff(settings: Settings) -> backoff.Policy:
    return backoff.Policy(
        free=settings.login_failures_before_backoff,
        cap=settings.login_backoff_max_seconds,
        memory=BACKOFF_MEMORY_SECONDS,
    )


@dataclass(frozen=True)
class _Attempt:
    """The counts one sign-in attempt holds: ``counted`` the fixed windows it added to (given back on a success)."""

    pair: str  # the backoff of this address on this account
    known: str  # the mark of an address this account signed in from
    counted: tuple[str, ...]


def _known_key(email: str, client_ip: str, user: UserModel | None) -> str:
    """The mark of an address the account signed in from with its current password: a new password (a change, a
    reset, a reclaimed account) forgets every address the old one was used from, a squatter's among them."""
    changed = user.password_changed_at if user is not None else None
    return f"login-known:{email}|{client_ip}|{changed.isoformat() if changed else '-'}"


def _admit_attempt(settings: Settings, email: str, client_ip: str, user: UserModel | None, now: datetime) -> _Attempt:
    """Count a sign-in attempt as failed before its password is checked, or refuse it (429 with ``Retry-After``,
    nothing counted).

    1. Per client IP, across accounts: ``LOGIN_FAILURES_PER_IP`` a window.
    2. Per account, from every IP: ``LOGIN_FAILURES_PER_ACCOUNT`` a window, the ceiling on a distributed guessing;
       an IP the account signed in from in the last :data:`KNOWN_ADDRESS_DAYS` days is not held to it, so that
       its owner keeps signing in while strangers exhaust it.
    3. Per (account, IP): progressive backoff (:mod:`chalicelib.ratelimit.backoff`): a guesser waits for
       themselves only, and no one else.
    Each is a conditional write (the backoff's a compare-and-set on the count it read): however many attempts
    arrive at once, no more than each limit allows get a bcrypt check.  A refusal gives back what the earlier
    steps counted."""
    window = settings.login_failure_window_seconds
    pair, known = f"login-backoff:{email}|{client_ip}", _known_key(email, client_ip, user)
    counted: list[str] = []

    def refuse(wait: int) -> errors.TooManyRequests:
        for key in counted:
            ratelimit.refund(key, window, now)
        return errors.TooManyRequests(wait, "Too many failed sign-in attempts; try again later.")

    by_ip, by_account = f"login-fail:ip:{client_ip}", f"login-fail:acct:{email}"
    if ratelimit.admit(by_ip, settings.login_failures_per_ip, window, now) is None:
        raise refuse(ratelimit.resets_in(window, now))
    counted.append(by_ip)
    if ratelimit.admit(by_account, settings.login_failures_per_account, window, now) is not None:
        counted.append(by_account)
    elif not ratelimit.remembers(known, now):
        logger.warning("an account's sign-in ceiling is reached", extra={"client_ip": client_ip})
        raise refuse(ratelimit.resets_in(window, now))
    wait = backoff.reserve(pair, _backoff(settings), now)
    if wait:
        raise refuse(wait)
    return _Attempt(pair=pair, known=known, counted=tuple(counted))


def login(email: str, password: str, client_ip: str, now: datetime) -> SignIn:
    """Check the password; unknown email and wrong password answer alike, in the same time.

    Every attempt is counted as failed before its password is checked (:func:`_admit_attempt`: 429 with
    ``Retry-After`` over a limit, before any password is checked); a success takes its counts back, clears the
    backoff of its address on the account and remembers the address.
    """
    settings = get_settings()
    try:
        email = normalize_email(email)
    except errors.ValidationFailed:
        passwords.burn_equal_time(password, settings.bcrypt_rounds)
        raise errors.InvalidCredentials("The email or password is wrong.") from None
    user = _find_by_email(email)
    attempt = _admit_attempt(settings, email, client_ip, user, now)
    if user is None:
        passwords.burn_equal_time(password, settings.bcrypt_rounds)
        ok = False
    else:
        ok = passwords.verify_password(password, user.password_hash)
    if not ok:
        logger.info("sign-in failed", extra={"known_account": user is not None})
        raise errors.InvalidCredentials("The email or password is wrong.")
    assert user is not None
    backoff.forget(attempt.pair)
    for key in attempt.counted:
        ratelimit.refund(key, settings.login_failure_window_seconds, now)
    ratelimit.remember(attempt.known, KNOWN_ADDRESS_DAYS * 86400, now)
    if user.deleting_at is not None:
        raise errors.AccountDeleting(user.user_id)  # its deletion did not finish: the edge finishes it
    if user.reclaiming_team_id is not None:
        raise errors.AccountReclaiming(user.user_id)  # the edge takes a last look at what to clear, then signs in
    team_id = _usable_team(user)
    session = _new_session(settings, user.user_id, team_id, now)
    _unless_reset_meanwhile(user, session, now)
    return _sign_in(settings, session, now)


def _unless_reset_meanwhile(user: UserModel, session: SessionModel, now: datetime) -> None:
    """A reset (or a reclaim) that landed while the password was checked must not leave this sign-in a session: a
    reset writes the new password, then revokes the sessions it finds.  So the user is read again *after* the
    session exists: a reset that wrote before this read is seen here (the session is revoked, the sign-in
    refused); one that writes after it finds the session and revokes it."""
    try:
        fresh = UserModel.get(user.user_id, consistent_read=True)
    except UserModel.DoesNotExist:
        fresh = None
    if fresh is not None and fresh.password_hash == user.password_hash and fresh.reclaiming_team_id is None:
        return
    _revoke(session, "password_reset", now)
    raise errors.InvalidCredentials("The email or password is wrong.")


def _find_by_email(email: str) -> UserModel | None:
    user_id = users.id_by_email(email)
    if user_id is None:
        return None
    try:
        return UserModel.get(user_id, consistent_read=True)
    except UserModel.DoesNotExist:
        return None


def _usable_team(user: UserModel) -> str:
    """The user's current team if they still belong to it, else any team they belong to."""
    if user.current_team_id and teams.role_of(user.current_team_id, user.user_id):
        return str(user.current_team_id)
    team_id = teams.any_team_of(user.user_id)
    if team_id is None:
        raise errors.Forbidden("This account belongs to no team.")
    return team_id


def refresh(refresh_token: str, now: datetime) -> SignIn:
    """Rotate a refresh token.

    1. Verify the JWT (type ``refresh``) and load its session, which must be live.
    2. If the token's generation is not the session's current one, it was already spent:
       someone replayed it, so the whole session is revoked and the call fails (401).
    3. Otherwise bump the generation with a conditional write — of two concurrent uses of
       the same token, exactly one wins; the loser is treated as a replay — and issue a new pair.
    """
    settings = get_settings()
    claims = tokens.decode(settings, refresh_token, tokens.REFRESH, now)
    session = _live_session(claims.session_id, claims.user_id, now)
    if claims.generation != int(session.generation):
        _revoke(session, "refresh_token_reuse", now)
        logger.warning("refresh token reuse; session revoked", extra={"session_id": session.session_id})
        raise errors.RefreshTokenReused("This refresh token was already used; the session is revoked.")
    try:
        session.update(
            actions=[SessionModel.generation.set(claims.generation + 1), SessionModel.refreshed_at.set(now)],
            condition=(SessionModel.generation == claims.generation) & SessionModel.revoked_at.does_not_exist(),
        )
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
        _revoke(SessionModel.get(session.session_id, consistent_read=True), "refresh_token_reuse", now)
        raise errors.RefreshTokenReused("This refresh token was already used; the session is revoked.") from None
    return _sign_in(settings, session, now)


def logout(principal: Principal, now: datetime) -> None:
    if principal.session_id:
        _revoke(_live_session(principal.session_id, principal.user_id, now), "logout", now)


def switch_team(principal: Principal, team_id: str, now: datetime) -> SignIn:
    """Act in another team of the caller's: same session, rotated tokens (the old refresh token is spent)."""
    if not principal.session_id or teams.role_of(team_id, principal.user_id) is None:
        raise errors.NotFound("No such team.")
    session = _live_session(principal.session_id, principal.user_id, now)
    try:
        session.update(
            actions=[SessionModel.team_id.set(team_id), SessionModel.generation.add(1)],
            condition=SessionModel.revoked_at.does_not_exist(),
        )
    except UpdateError as exc:
        if condition_failed(exc):
            raise errors.SessionRevoked("The session has ended.") from None
        raise
    users.load(principal.user_id).update(actions=[UserModel.current_team_id.set(team_id)])
    return _sign_in(get_settings(), session, now)


# --- single-use tokens: verification and reset ---------------------------------------------------


def _store_token(purpose: str, user_id: str, email: str, ttl: int, now: datetime, session_id: str | None = None) -> str:
    token = tokens.new_opaque_token()
    OneTimeTokenModel(
        tokens.hash_opaque(token),
        purpose=purpose,
        user_id=user_id,
        email=email,
        session_id=session_id,
        created_at=now,
        valid_until=now + timedelta(seconds=ttl),
        expires_at=now + timedelta(seconds=ttl + 86400),
    ).save()
    return token


INVALID_LINK = "This link is invalid, expired or already used."


def _valid_token(token: str, purposes: tuple[str, ...], now: datetime) -> OneTimeTokenModel:
    """A single-use token that exists, is for one of ``purposes``, and is unexpired and unused; not spent yet."""
    if not token or len(token) > 200:
        raise errors.InvalidToken(INVALID_LINK)
    try:
        item = OneTimeTokenModel.get(tokens.hash_opaque(token), consistent_read=True)
    except OneTimeTokenModel.DoesNotExist:
        raise errors.InvalidToken(INVALID_LINK) from None
    if item.purpose not in purposes or item.used_at is not None or item.valid_until <= now:
        raise errors.InvalidToken(INVALID_LINK)
    return item


def _spend(item: OneTimeTokenModel, now: datetime) -> None:
    """Mark a token used, once (a conditional write: of two requests racing with one link, one loses here)."""
    try:
        item.update(actions=[OneTimeTokenModel.used_at.set(now)], condition=OneTimeTokenModel.used_at.does_not_exist())
    except UpdateError as exc:
        if condition_failed(exc):
            raise errors.InvalidToken(INVALID_LINK) from None
        raise


def _consume_token(token: str, purposes: tuple[str, ...], now: datetime) -> OneTimeTokenModel:
    """Spend a single-use token: :func:`_valid_token`, then :func:`_spend`."""
    item = _valid_token(token, purposes, now)
    _spend(item, now)
    return item


def _send_verification(settings: Settings, user_id: str, email: str, now: datetime) -> None:
    token = _store_token(VERIFY_EMAIL, user_id, email, settings.verify_email_ttl_seconds, now)
    message = emails.verification(settings.app_url, token, settings.verify_email_ttl_seconds // 3600)
    deliver(email, message)


def _user_of(item: OneTimeTokenModel) -> UserModel:
    """The user a link was made for; a deleted account's link is as invalid as an unknown one."""
    try:
        return users.load(item.user_id)
    except errors.NotFound:
        raise errors.InvalidToken("This link is invalid or has expired.") from None


@dataclass(frozen=True)
class Verified:
    user: users.User
    left: str | None = None  # the address the account moved away from, when the link was an address change's


def verify_email(token: str, now: datetime) -> Verified:
    """Follow a link mailed to an address: the sign-up's (the address is verified) or an address change's (the
    account moves to the new address: :func:`_switch_email`)."""
    item = _valid_token(token, (VERIFY_EMAIL, CHANGE_EMAIL), now)
    user = _user_of(item)
    first, left = user.email_verified_at is None, None
    if item.purpose == CHANGE_EMAIL:
        left = user.email
        user = _switch_email(user, item, now)  # spends the link in the transaction that makes the change
    else:
        _spend(item, now)
        if user.email != item.email:
            raise errors.InvalidToken("This link is for an address the account no longer uses.")
        if first:
            user.update(actions=[UserModel.email_verified_at.set(now), UserModel.updated_at.set(now)])
    if first:
        _welcome(user, now)  # only by the request that first verified an address of the account
    return Verified(users.to_user(user), left)


def request_email_change(principal: Principal, new_email: str, password: str, now: datetime) -> None:
    """Ask to move the account to ``new_email``: the password confirms it (403 ``invalid_credentials``, counted by
    :func:`confirm_password`); nothing changes until the link mailed to the new address is followed, and the old address
    keeps working meanwhile.  Only the latest request's link works, and only while the session that asked is live
    and the password unchanged: a password change or reset, or signing out everywhere, cancels it.

    An address another account holds is answered the same, with the same writes (the caller learns nothing), and
    mailed a note that someone tried; it never changes hands.  Five requests an hour per account (429 beyond), and
    at most :data:`CHANGE_EMAIL_MAILS_PER_DAY` mails a day to one address whoever asks (the rest silently withheld),
    so this is no way to mail strangers."""
    settings = get_settings()
    new_email = normalize_email(new_email, "new_email")
    user = confirm_password(principal.user_id, password, "password", now)
    if user.deleting_at is not None:
        raise errors.AccountDeleting(user.user_id)
    if new_email == user.email:
        raise errors.ValidationFailed.single("new_email", "is already your address")
    seen = ratelimit.hit(f"change-email:{user.user_id}", 3600, now)
    if seen.count > CHANGE_EMAIL_LIMIT_PER_HOUR:
        raise errors.TooManyRequests(seen.resets_in, "Too many address changes; try again later.")
    ttl = settings.verify_email_ttl_seconds
    token = _store_token(CHANGE_EMAIL, user.user_id, new_email, ttl, now, session_id=principal.session_id)
    # The request replaces any earlier one, whose link stops working; a racing write of the user is no conflict.
    user.update(
        actions=[
            UserModel.pending_email.set(new_email),
            UserModel.pending_email_token.set(tokens.hash_opaque(token)),
            UserModel.updated_at.set(now),
        ],
        add_version_condition=False,
    )
    mails = ratelimit.hit(f"change-email-to:{new_email}", 86400, now)
    if mails.count > CHANGE_EMAIL_MAILS_PER_DAY:
        logger.info("address change email withheld: too many to one address", extra={"user_id": user.user_id})
        return
    if users.id_by_email(new_email) is not None:  # the link stored above is never mailed: it dies unused
        logger.info("address change to an address in use", extra={"user_id": user.user_id})
        deliver(new_email, emails.address_in_use(settings.app_url))
        return
    deliver(new_email, emails.address_change(settings.app_url, token, ttl // 3600, user.email), user_id=user.user_id)


def _switch_email(user: UserModel, item: OneTimeTokenModel, now: datetime) -> UserModel:
    """The account moves to the address the link was mailed to (now verified).

    1. The link must be the latest request's, made after the password last changed, by a session still live, of
       an account not being deleted.
    2. An address another account took since is final: the link is spent, the request dropped, 409
       ``email_taken`` (and no session ends).
    3. Every other session ends, before and again after the change: none opened in between survives.
    4. One transaction spends the link, swaps the address claims and moves the user: the new address cannot be
       taken in between (409 ``email_taken``), the old one is free for a sign-up at once, and a failure anywhere
       before it leaves the link to follow again.
    5. The old address, if it was ever verified (a typo'd one may be a stranger's), is told at once after the
       commit, before anything else can fail.
    """
    new, old, was_verified = item.email, user.email, user.email_verified_at is not None
    changed = user.password_changed_at
    if user.pending_email_token != item.token_hash or (changed is not None and item.created_at <= changed):
        raise errors.InvalidToken("A newer request, a password change or the change itself replaced this link.")
    if user.deleting_at is not None:
        raise errors.InvalidToken("This account is being deleted.")
    if item.session_id is not None:
        try:
            _live_session(item.session_id, user.user_id, now)
        except errors.SessionRevoked:
            raise errors.InvalidToken("The session that asked for this change has ended; ask again.") from None
    taken = errors.EmailTaken("This address is in use by another account now; nothing changed.")
    if users.id_by_email(new) is not None:
        _drop_change(user, item, now)
        raise taken
    revoke_user_sessions(user.user_id, "email_changed", now, keep=item.session_id)
    try:
        with transaction() as tx:
            tx.update(
                item,
                actions=[OneTimeTokenModel.used_at.set(now)],
                condition=OneTimeTokenModel.used_at.does_not_exist(),
            )
            tx.save(UserEmailModel(new, user_id=user.user_id), condition=UserEmailModel.email.does_not_exist())
            tx.delete(UserEmailModel(old), condition=UserEmailModel.user_id == user.user_id)
            tx.update(
                user,
                actions=[
                    UserModel.email.set(new),
                    UserModel.email_verified_at.set(now),
                    UserModel.email_changed_at.set(now),
                    UserModel.pending_email.remove(),
                    UserModel.pending_email_token.remove(),
                    UserModel.updated_at.set(now),
                ],
                condition=(UserModel.email == old)
                & (UserModel.pending_email_token == item.token_hash)
                & UserModel.deleting_at.does_not_exist(),
                add_version_condition=False,
            )
    except TransactWriteError as exc:
        if condition_failed_at(exc, 1):  # the new address's claim
            _drop_change(user, item, now)
            raise taken from None
        if condition_failed(exc):  # followed twice at once, or the account changed meanwhile
            raise errors.InvalidToken(INVALID_LINK) from None
        raise
    if was_verified:
        deliver(old, emails.address_changed(new, get_settings().support_email), user_id=user.user_id)
    logger.info("address changed", extra={"user_id": user.user_id})
    revoke_user_sessions(user.user_id, "email_changed", now, keep=item.session_id)
    user.refresh(consistent_read=True)
    return user


def _drop_change(user: UserModel, item: OneTimeTokenModel, now: datetime) -> None:
    """A change that can no longer happen: its link spent and the request gone from the user (if still it)."""
    _spend(item, now)
    try:
        user.update(
            actions=[UserModel.pending_email.remove(), UserModel.pending_email_token.remove()],
            condition=UserModel.pending_email_token == item.token_hash,
            add_version_condition=False,
        )
    except UpdateError as exc:
        if not condition_failed(exc):
            raise


def _welcome(user: UserModel, now: datetime) -> None:
    """The welcome email, at most once per account: claimed by a conditional write, so a second verification (or a
    race of two) sends nothing.  A mail failure is logged (``deliver``) and not retried: the account is verified all
    the same, and the welcome is a courtesy, not a step."""
    if user.welcomed_at is not None:
        return
    try:
        user.update(actions=[UserModel.welcomed_at.set(now)], condition=UserModel.welcomed_at.does_not_exist())
    except UpdateError as exc:
        if condition_failed(exc):
            return
        raise
    deliver(user.email, emails.welcome(get_settings().app_url), user_id=user.user_id)


def resend_verification(principal: Principal, now: datetime) -> None:
    settings = get_settings()
    user = users.load(principal.user_id)
    if user.email_verified_at is not None:
        return
    seen = ratelimit.hit(f"resend-verification:{user.user_id}", 3600, now)
    if seen.count > RESEND_LIMIT_PER_HOUR:
        raise errors.TooManyRequests(seen.resets_in, "Too many verification emails; try again later.")
    _send_verification(settings, user.user_id, user.email, now)


def send_password_reset(email: str, asked_at: datetime, now: datetime) -> None:
    """Mail a reset link, asked for at ``asked_at`` (``POST /v1/auth/forgot-password``, off the request: see
    ``lifecycle.forgot_password``), to ``email`` if an account has it and has not asked too often.  The link counts
    from when it was asked: one asked before a password change is spent on arrival, and one whose hour is over by
    now is not sent."""
    settings = get_settings()
    ttl = settings.reset_password_ttl_seconds
    if asked_at + timedelta(seconds=ttl) <= now:
        logger.warning("password reset email dropped: asked too long ago")
        return
    user = _find_by_email(email)
    if user is None:
        return
    seen = ratelimit.hit(f"forgot-password:{user.user_id}", 3600, asked_at)
    if seen.count > FORGOT_LIMIT_PER_HOUR:
        logger.info("password reset email withheld: too many requests", extra={"user_id": user.user_id})
        return
    token = _store_token(RESET_PASSWORD, user.user_id, email, ttl, asked_at)
    deliver(email, emails.password_reset(settings.app_url, token, ttl // 60))


@dataclass(frozen=True)
class Reset:
    user_id: str
    reclaiming_team_id: str | None  # the fresh team of an account a reset took back, until a sign-in ends it


def reset_password(token: str, password: str, client_ip: str, now: datetime) -> Reset:
    """Set a new password from a reset link; every session of the user is revoked, and every other outstanding
    reset link is spent (a link works only if made after the password last changed, for the current address).
    The link proves the mailbox: the account's sign-in counts start over, and the address it was followed from is
    one the account signs in from (not held to the account's ceiling, :func:`_admit_attempt`).

    An account whose address was never verified was perhaps made by someone else with it: the same write takes
    it back for the mailbox's owner, with a new current team (``reclaiming_team_id``, to be made fresh) and
    the profile back to its defaults; :func:`chalicelib.lifecycle.finish_reclaim` clears what was made before."""
    settings = get_settings()
    passwords.check_policy(password)
    item = _consume_token(token, (RESET_PASSWORD,), now)
    user = _user_of(item)
    if user.email != item.email or any(
        at is not None and item.created_at <= at for at in (user.password_changed_at, user.email_changed_at)
    ):
        # Mailed to an address the account has since left (even if it came back), or made before the password
        # last changed: spent.
        raise errors.InvalidToken(INVALID_LINK)
    actions: list[Any] = [
        UserModel.password_hash.set(passwords.hash_password(password, settings.bcrypt_rounds)),
        UserModel.password_changed_at.set(now),  # other reset links and a pending address change are spent
        UserModel.pending_email.remove(),
        UserModel.pending_email_token.remove(),
        UserModel.updated_at.set(now),
    ]
    fresh = user.reclaiming_team_id
    if user.email_verified_at is None:
        fresh = new_id("team")
        actions += [
            UserModel.email_verified_at.set(now),  # the link proved the address
            UserModel.reclaiming_team_id.set(fresh),
            UserModel.current_team_id.set(fresh),
            UserModel.name.remove(),
            UserModel.timezone.set("UTC"),
            UserModel.critical_only.set(False),
            UserModel.quiet_hours_start.remove(),
            UserModel.quiet_hours_end.remove(),
        ]
    # Not under the user's version: a profile saved meanwhile (by whoever holds a session, a squatter included)
    # must not fail the reset after its link was spent.  What the link depends on is the condition instead.
    unchanged = UserModel.email == item.email
    unchanged &= (
        UserModel.password_changed_at.does_not_exist()
        if user.password_changed_at is None
        else UserModel.password_changed_at == user.password_changed_at
    )
    try:
        user.update(actions=actions, condition=unchanged, add_version_condition=False)
    except UpdateError as exc:
        if condition_failed(exc):  # the address or the password changed meanwhile: the link is spent
            raise errors.InvalidToken(INVALID_LINK) from None
        raise
    revoke_user_sessions(user.user_id, "password_reset", now)
    for key in (f"login-fail:acct:{user.email}", _confirm_key(user.user_id)):
        ratelimit.clear(key, settings.login_failure_window_seconds, now)
    ratelimit.remember(_known_key(user.email, client_ip, user), KNOWN_ADDRESS_DAYS * 86400, now)
    return Reset(user.user_id, fresh)


def end_reclaim(user_id: str, team_id: str) -> None:
    """The account a reset took back is clear: sign-ins stop looking (if it still is that reclaim)."""
    try:
        UserModel(user_id).update(
            actions=[UserModel.reclaiming_team_id.remove()],
            condition=UserModel.reclaiming_team_id == team_id,
            add_version_condition=False,
        )
    except UpdateError as exc:
        if not condition_failed(exc):
            raise


def _confirm_key(user_id: str) -> str:
    return f"confirm-fail:{user_id}"


def confirm_password(user_id: str, password: str, field: str, now: datetime) -> UserModel:
    """The user, once ``password`` is theirs (403 ``invalid_credentials`` otherwise, its detail naming ``field``).
    Every attempt is counted before the password is checked, ``LOGIN_FAILURES_BEFORE_BACKOFF`` a window per account
    (429 over it), apart from sign-in's counts: only a session of the account can spend these, and a stranger's
    sign-in guesses never stop its owner changing the password.  The right one clears the count."""
    settings = get_settings()
    window = settings.login_failure_window_seconds
    user = users.load(user_id)
    key, limit = _confirm_key(user_id), settings.login_failures_before_backoff
    seen = ratelimit.hit(key, window, now)
    if seen.count > limit:
        raise errors.TooManyRequests(seen.resets_in, "Too many failed password attempts; try again later.")
    if not passwords.verify_password(password, user.password_hash):
        raise errors.WrongPassword(f"The {field.replace('_', ' ')} is wrong.")
    ratelimit.clear(key, window, now)
    return user


def erase_user(user_id: str) -> None:
    """The account itself: its sessions (every token stops at once), then the user and the claim on its address
    together (the address is free for a new sign-up).  Its single-use links die with it: they name a user that no
    longer exists."""
    for session in SessionModel.by_user.query(user_id):
        session.delete()
    for _ in range(5):  # an address change committing in between moves the claim: read again and retry
        try:
            user = users.load(user_id)
        except errors.NotFound:
            return  # erased meanwhile by another run of the deletion
        try:
            with transaction() as tx:
                tx.delete(UserEmailModel(user.email), condition=UserEmailModel.user_id == user_id)
                tx.delete(user, condition=UserModel.email == user.email, add_version_condition=False)
        except TransactWriteError as exc:
            if condition_failed(exc):
                continue
            raise
        logger.info("user deleted", extra={"user_id": user_id})
        return
    raise errors.Conflict("The account changed while it was being deleted; try again.")


def change_password(principal: Principal, current: str, new: str, now: datetime, *, client_ip: str) -> None:
    """Change the password knowing the current one; the user's other sessions are revoked.  The address it was
    changed from is one the account signs in from with the new password (as a reset's is, :func:`_admit_attempt`).

    Every attempt is counted before any password is checked (:func:`confirm_password`: one atomic count, so
    parallel requests cannot slip past it): a stolen access token cannot guess the password without limit (429
    with ``Retry-After`` over the limit).  The right password clears the count.
    """
    settings = get_settings()
    user = confirm_password(principal.user_id, current, "current_password", now)
    passwords.check_policy(new, field="new_password", user_inputs=(user.email,))
    try:
        # On the password confirmed, not the item's version: a settings change landing meanwhile is no conflict,
        # another change or a reset of the password is (the current password is not that one any more).
        user.update(
            actions=[
                UserModel.password_hash.set(passwords.hash_password(new, settings.bcrypt_rounds)),
                UserModel.password_changed_at.set(now),  # outstanding reset links and a pending address change spent
                UserModel.pending_email.remove(),
                UserModel.pending_email_token.remove(),
                UserModel.updated_at.set(now),
            ],
            condition=UserModel.password_hash == user.password_hash,
            add_version_condition=False,
        )
    except UpdateError as exc:
        if condition_failed(exc):
            raise errors.Conflict("The password was changed meanwhile; nothing was changed now.") from None
        raise
    revoke_user_sessions(user.user_id, "password_changed", now, keep=principal.session_id)
    # found by a fresh-eyes review of issue 19: the mark names the password's generation (``user`` holds the new
    # one now), so without this its owner was held to the account's ceiling like any stranger after a change
    ratelimit.remember(_known_key(user.email, client_ip, user), KNOWN_ADDRESS_DAYS * 86400, now)
