"""/v1/auth/*: register, sign in, rotate, sign out, verify email, reset password, switch team."""

from __future__ import annotations

from pydantic import Field

from chalicelib import errors, lifecycle
from chalicelib.api.framework import Call, Out, Reply, Router
from chalicelib.api.schemas import TokensOut, UserOut, tokens_out, user_out
from chalicelib.auth import service
from chalicelib.auth.passwords import NewPassword
from chalicelib.clock import utcnow
from chalicelib.observability import logger
from chalicelib.schema import EmailAddress, Line, Schema

router = Router("auth")

Password = Field(min_length=1, max_length=1024)


class RegisterIn(Schema):
    email: EmailAddress = Field(max_length=320)
    password: NewPassword = Password
    name: Line | None = Field(default=None, min_length=1, max_length=100)
    timezone: str | None = Field(default=None, max_length=64, description="IANA time zone, e.g. Europe/Paris")


class LoginIn(Schema):
    email: str = Field(max_length=320)
    password: str = Password


class RefreshIn(Schema):
    refresh_token: str = Field(min_length=1, max_length=4096)


class TokenIn(Schema):
    token: str = Field(min_length=1, max_length=200)


class EmailIn(Schema):
    email: str = Field(max_length=320)


class ResetIn(Schema):
    token: str = Field(min_length=1, max_length=200)
    password: NewPassword = Password


class SwitchTeamIn(Schema):
    team_id: str = Field(min_length=1, max_length=100)


class VerifiedOut(Out):
    user: UserOut


@router.route(
    "POST",
    "/v1/auth/register",
    summary="Create an account",
    auth="none",
    body=RegisterIn,
    response=TokensOut,
    status=201,
    errors=(409,),
    ip_limit=20,
)
def register(call: Call) -> TokensOut:
    """Creates the user and a personal team they own, signs them in and emails a verification link."""
    body = call.body
    try:
        return tokens_out(service.register(body.email, body.password, body.name, body.timezone, utcnow()))
    except errors.AccountDeleting as unfinished:  # the address's account was being deleted: finish, then sign up
        _finish_deletion(unfinished.user_id, errors.EmailTaken("An account with this email already exists."))
        return tokens_out(service.register(body.email, body.password, body.name, body.timezone, utcnow()))


def _finish_deletion(user_id: str, otherwise: errors.VigilError) -> None:
    """Finish a deletion that stopped half-way; if it cannot finish (a team handed to the user meanwhile), the
    caller gets ``otherwise`` and the failure is logged for support, not explained to whoever asked."""
    try:
        lifecycle.finish_deletion(user_id, utcnow())
    except errors.Conflict:
        logger.exception("a deletion could not be finished", extra={"user_id": user_id})
        raise otherwise from None


@router.route(
    "POST",
    "/v1/auth/login",
    summary="Sign in",
    auth="none",
    body=LoginIn,
    response=TokensOut,
    errors=(401, 429),
    ip_limit=60,
)
def login(call: Call) -> TokensOut:
    """Unknown email and wrong password give the same 401; repeated failures give 429."""
    try:
        return tokens_out(service.login(call.body.email, call.body.password, call.client_ip, utcnow()))
    except errors.AccountDeleting as unfinished:  # its owner deleted it and the deletion stopped half-way
        deleted = errors.InvalidCredentials("This account was deleted.")
        _finish_deletion(unfinished.user_id, deleted)
        raise deleted from None
    except errors.AccountReclaiming as reclaimed:  # its first sign-in since a reset took it back
        lifecycle.finish_reclaim(reclaimed.user_id, utcnow())
        return tokens_out(service.login(call.body.email, call.body.password, call.client_ip, utcnow()))


@router.route(
    "POST",
    "/v1/auth/refresh",
    summary="Rotate tokens",
    auth="none",
    body=RefreshIn,
    response=TokensOut,
    errors=(401,),
    ip_limit=120,
)
def refresh(call: Call) -> TokensOut:
    """Each refresh token works once; reusing a spent one revokes the whole session."""
    return tokens_out(service.refresh(call.body.refresh_token, utcnow()))


@router.route("POST", "/v1/auth/logout", summary="Sign out", status=204)
def logout(call: Call) -> Reply:
    """Ends the session: its access and refresh tokens stop working at once."""
    service.logout(call.user, utcnow())
    return Reply(status=204)


@router.route(
    "POST",
    "/v1/auth/verify-email",
    summary="Confirm an email address",
    auth="none",
    body=TokenIn,
    response=VerifiedOut,
    errors=(400, 409),
    ip_limit=30,
)
def verify_email(call: Call) -> VerifiedOut:
    """Single-use token from the verification email, or from the email that confirms a new address
    (``POST /v1/me/email``), valid 24 hours.  The latter moves the account to the new address: 409 ``email_taken``
    if another account took it meanwhile."""
    return VerifiedOut(user=user_out(lifecycle.follow_email_link(call.body.token, utcnow())))


@router.route(
    "POST",
    "/v1/auth/resend-verification",
    summary="Send the verification email again",
    status=202,
    errors=(429,),
    ip_limit=10,
)
def resend_verification(call: Call) -> Reply:
    service.resend_verification(call.user, utcnow())
    return Reply(status=202)


@router.route(
    "POST",
    "/v1/auth/forgot-password",
    summary="Email a password reset link",
    auth="none",
    body=EmailIn,
    status=202,
    ip_limit=10,
)
def forgot_password(call: Call) -> Reply:
    """Always 202, in the same time, whether or not the address has an account: the link is mailed a moment
    later."""
    lifecycle.forgot_password(call.body.email, utcnow())
    return Reply(status=202)


@router.route(
    "POST",
    "/v1/auth/reset-password",
    summary="Set a new password from a reset link",
    auth="none",
    body=ResetIn,
    status=204,
    errors=(400,),
    ip_limit=30,
)
def reset_password(call: Call) -> Reply:
    """Single-use, valid one hour; every session of the user is revoked.  An account whose address was never
    verified starts afresh: whoever signed up with the address before keeps nothing (its teams, with their members,
    invitations, API keys and content, give way to a new personal team; its name and preferences are reset)."""
    lifecycle.reset_password(call.body.token, call.body.password, call.client_ip, utcnow())
    return Reply(status=204)


@router.route(
    "POST",
    "/v1/auth/switch-team",
    summary="Act in another of your teams",
    body=SwitchTeamIn,
    response=TokensOut,
    errors=(404,),
)
def switch_team(call: Call) -> TokensOut:
    return tokens_out(service.switch_team(call.user, call.body.team_id, utcnow()))
