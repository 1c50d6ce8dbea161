"""/v1/me: the signed-in user's own settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import ConfigDict, Field, model_validator

from chalicelib import lifecycle
from chalicelib.api.framework import Call, Out, Reply, Router
from chalicelib.api.schemas import NotificationPreferences, UserOut, user_out
from chalicelib.auth import service as auth
from chalicelib.auth.passwords import NewPassword
from chalicelib.clock import utcnow
from chalicelib.schema import EmailAddress, Line, Schema
from chalicelib.teams import authz
from chalicelib.users import service as users

router = Router("me")


class MePatch(Schema):
    """Strict: a value of the wrong JSON type is a 422 naming the field, never coerced (``"true"`` is no boolean)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    NOT_NULL = ("timezone", "notification_preferences")  # null clears only the name, and quiet hours inside

    name: Line | None = Field(default=None, min_length=1, max_length=100)
    timezone: str | None = Field(default=None, max_length=64, description="IANA time zone, e.g. Europe/Paris")
    notification_preferences: NotificationPreferences | None = None

    @model_validator(mode="after")
    def _timezone_known(self) -> MePatch:
        if self.timezone is not None:
            users.check_timezone(self.timezone)
        return self


@router.route("GET", "/v1/me", summary="Your account", response=UserOut)
def get_me(call: Call) -> UserOut:
    return user_out(users.get_user(call.user.user_id), call.user.team_id)


@router.route(
    "PATCH", "/v1/me", summary="Change your name, time zone or notification preferences", body=MePatch, response=UserOut
)
def patch_me(call: Call) -> UserOut:
    body: MePatch = call.body
    changes: dict[str, object] = {}
    given = body.model_fields_set
    if "name" in given:
        changes["name"] = body.name
    if "timezone" in given and body.timezone is not None:
        changes["timezone"] = body.timezone
    prefs = body.notification_preferences
    if "notification_preferences" in given and prefs is not None:
        # Only what was sent changes: {"critical_only": true} keeps the quiet hours.
        if "critical_only" in prefs.model_fields_set:
            changes["critical_only"] = prefs.critical_only
        if "quiet_hours" in prefs.model_fields_set:
            quiet = prefs.quiet_hours
            changes["quiet_hours"] = users.QuietHours(quiet.start, quiet.end) if quiet else None
    user = users.update_settings(call.user.user_id, utcnow(), **changes)  # type: ignore[arg-type]
    return user_out(user, call.user.team_id)


class PasswordChange(Schema):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: NewPassword = Field(min_length=1, max_length=1024)


@router.route(
    "POST",
    "/v1/me/password",
    summary="Change your password",
    body=PasswordChange,
    status=204,
    errors=(403, 409, 422, 429),
)
def change_password(call: Call) -> Reply:
    """The current password proves it is you (403 ``invalid_credentials`` when wrong; the account's wrong
    confirmations are counted, 429 over the limit); the new one follows the sign-up rules.  Every other session
    of yours is signed out; this one goes on, and reset links mailed before are spent."""
    auth.change_password(
        call.user, call.body.current_password, call.body.new_password, utcnow(), client_ip=call.client_ip
    )
    return Reply(status=204)


class EmailChange(Schema):
    new_email: EmailAddress = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


@router.route(
    "POST",
    "/v1/me/email",
    summary="Change your email address",
    body=EmailChange,
    status=202,
    errors=(403, 422, 429),
    ip_limit=10,
)
def change_email(call: Call) -> Reply:
    """Your password confirms it (403 ``invalid_credentials`` when wrong; wrong ones counted, 429 over the limit).  A
    link goes to the new address; following it (``POST /v1/auth/verify-email``) makes the change, and until then
    your old address keeps working.  Then the new address is verified, the old one is told, and every session but
    this one ends.  Only your latest request's link works, while this session lasts; changing or resetting your
    password cancels it (``pending_email`` in ``GET /v1/me`` shows it).  Five requests an hour.  An address another
    account holds is answered the same and never changes hands."""
    auth.request_email_change(call.user, call.body.new_email, call.body.password, utcnow())
    return Reply(status=202)


class AccountDeletion(Schema):
    password: str = Field(min_length=1, max_length=1024)


@router.route(
    "DELETE",
    "/v1/me",
    summary="Delete your account",
    body=AccountDeletion,
    status=204,
    errors=(403, 409, 422, 429),
)
def delete_me(call: Call) -> Reply:
    """Your password confirms it (403 ``invalid_credentials`` when wrong; wrong ones counted, 429 over the limit).
    If you own a team that others belong to, transfer it first; a team of yours alone whose subscription renews is
    cancelled in billing first (409 naming them).  Teams you are alone in are deleted with
    everything in them (their monitors stop at once, their pages go offline); you leave the others, and the API keys
    you made there are revoked and your pending invitations withdrawn.  Then your sessions, your account and your
    address go: it is free for a new sign-up."""
    lifecycle.delete_account(call.user.user_id, call.body.password, utcnow())
    return Reply(status=204)


if TYPE_CHECKING:
    StepKey = str
else:
    StepKey = Literal[lifecycle.ONBOARDING_STEPS]


class StepOut(Out):
    key: StepKey
    done: bool


class OnboardingOut(Out):
    steps: list[StepOut]
    completed: bool


@router.route(
    "GET", "/v1/me/onboarding", summary="Your first steps", auth="team", permission=authz.READ, response=OnboardingOut
)
def get_onboarding(call: Call) -> OnboardingOut:
    """Verify your email, create a monitor, add an alert channel, publish a status page, invite a teammate: each
    ``done`` from what exists now in your current team."""
    steps = lifecycle.onboarding(call.user.user_id, call.user.team_id, utcnow())
    return OnboardingOut(
        steps=[StepOut(key=key, done=done) for key, done in steps], completed=all(done for _, done in steps)
    )
