"""The domain's error hierarchy.

Services raise these; the API layer renders them as RFC 9457 problem details in
exactly one place (``chalicelib.api.framework``).  Domain code never builds an
HTTP response itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class VigilError(Exception):
    status = 500
    code = "internal_error"
    title = "Internal error"

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = headers or {}


class BadRequest(VigilError):
    status = 400
    code = "bad_request"
    title = "Bad request"


class InvalidJSON(BadRequest):
    code = "invalid_json"
    title = "Malformed JSON"


class BodyRequired(BadRequest):
    code = "body_required"
    title = "A body is required"


class InvalidToken(BadRequest):
    code = "invalid_token"
    title = "Invalid or expired token"


class InvalidCursor(BadRequest):
    code = "invalid_cursor"
    title = "Invalid cursor"


class ApiKeyInQuery(BadRequest):
    code = "api_key_in_query"
    title = "API key in the URL"


class Unauthorized(VigilError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="vigil"'})


class TokenInvalid(Unauthorized):
    code = "token_invalid"
    title = "Invalid token"


class TokenExpired(Unauthorized):
    code = "token_expired"
    title = "Token expired"


class SessionRevoked(Unauthorized):
    code = "session_revoked"
    title = "Session ended"


class RefreshTokenReused(Unauthorized):
    code = "refresh_token_reused"
    title = "Refresh token already used"


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    title = "Invalid email or password"


class Forbidden(VigilError):
    status = 403
    code = "forbidden"
    title = "Not allowed"


class NotAMember(Forbidden):
    code = "not_a_member"
    title = "Not a member of this team"


class WrongPassword(Forbidden):
    """A signed-in caller's password, asked again to confirm a change, is wrong: a 403 (a 401 would tell a client
    its session ended)."""

    code = "invalid_credentials"
    title = "Wrong password"


class ApiKeyNotAllowed(Forbidden):
    code = "api_key_not_allowed"
    title = "Not for API keys"


class InsufficientScope(Forbidden):
    code = "insufficient_scope"
    title = "The API key lacks a scope"


class NotFound(VigilError):
    status = 404
    code = "not_found"
    title = "Not found"


class MethodNotAllowed(VigilError):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"


class Conflict(VigilError):
    status = 409
    code = "conflict"
    title = "Conflict"


class EmailTaken(Conflict):
    code = "email_taken"
    title = "Email already registered"


class AccountDeleting(Conflict):
    """The account's deletion began and has not finished: nothing new may join it.  ``user_id`` says whose, for
    the edges that finish it (a sign-in with its password, a sign-up with its address)."""

    code = "account_deleting"
    title = "Account being deleted"

    def __init__(self, user_id: str, detail: str | None = None) -> None:
        super().__init__(detail or "This account is being deleted.")
        self.user_id = user_id


class AccountReclaiming(Conflict):
    """A reset took an account never verified away from whoever signed up with the address, and what they made is
    not all gone yet: the sign-in edge finishes it (``lifecycle.finish_reclaim``), then signs in."""

    code = "account_reclaiming"
    title = "Account being cleared"

    def __init__(self, user_id: str) -> None:
        super().__init__("This account is being cleared after its password reset; sign in again.")
        self.user_id = user_id


class SlugTaken(Conflict):
    code = "slug_taken"
    title = "Slug already taken"


class LastTeam(Conflict):
    code = "last_team"
    title = "Your only team"


class LastOwner(Conflict):
    code = "last_owner"
    title = "The team needs its owner"


class AlreadyOwner(Conflict):
    code = "already_owner"
    title = "Already the owner"


class AlreadyMember(Conflict):
    code = "already_member"
    title = "Already a member"


class LimitReached(Conflict):
    """A bound of the service itself, the same on every plan (an upgrade lifts nothing): which one, and its value."""

    code = "limit_reached"
    title = "Limit reached"

    def __init__(self, detail: str, *, limit: str, allowed: int) -> None:
        super().__init__(detail)
        self.extensions = {"limit": limit, "allowed": allowed}


class InvitationEmailMismatch(Forbidden):
    code = "invitation_email_mismatch"
    title = "The invitation is for another address"


class PaymentRequired(VigilError):
    status = 402
    code = "plan_limit_exceeded"
    title = "Plan limit exceeded"

    def __init__(
        self, detail: str | None = None, *, limit: str, plan: str, allowed: int, used: int | None = None
    ) -> None:
        super().__init__(detail)
        # Problem details' extension members: which limit, on which plan, and the current use.
        self.extensions = {"limit": limit, "plan": plan, "allowed": allowed, "used": used}


class EmailNotVerified(Forbidden):
    code = "email_not_verified"
    title = "Email address not verified"


class PayloadTooLarge(VigilError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"


class UnsupportedMediaType(VigilError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class ValidationFailed(VigilError):
    status = 422
    code = "validation_error"
    title = "Validation failed"

    def __init__(self, errors: list[FieldError], detail: str | None = None, *, code: str | None = None) -> None:
        super().__init__(detail or "; ".join(f"{e.field}: {e.message}" for e in errors) or self.title)
        self.errors = errors
        if code:
            self.code = code

    @classmethod
    def single(cls, field: str, message: str, *, code: str | None = None) -> ValidationFailed:
        return cls([FieldError(field, message)], code=code)


class DestinationNotAllowed(ValidationFailed):
    code = "destination_not_allowed"
    title = "Destination not allowed"

    def __init__(self, field: str, message: str) -> None:
        super().__init__([FieldError(field, message)])


class TooManyRequests(VigilError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, int(retry_after)))})
        self.retry_after = max(1, int(retry_after))


class BadGateway(VigilError):
    status = 502
    code = "bad_gateway"
    title = "Bad gateway"


class ServiceUnavailable(VigilError):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"


def problem_document(err: VigilError, app_url: str, instance: str = "") -> dict[str, Any]:
    """``err`` as an ``application/problem+json`` body (RFC 9457): the app's answers and the local gateway's own."""
    body: dict[str, Any] = {
        "type": f"{app_url}/docs#problem-{err.code}",
        "title": err.title,
        "status": err.status,
        "detail": err.detail,
        "code": err.code,
    }
    if instance:
        body["instance"] = instance
    if isinstance(err, ValidationFailed):
        body["errors"] = [{"field": e.field, "message": e.message} for e in err.errors]
    body.update(getattr(err, "extensions", {}))
    return body
