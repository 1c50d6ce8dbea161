"""Auth tables: sign-in sessions, single-use tokens and API keys (all stored hashed)."""

from __future__ import annotations

from pynamodb.attributes import (
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex

from chalicelib.storage.base import BaseModel


class SessionsByUser(GlobalSecondaryIndex["SessionModel"]):
    class Meta:
        index_name = "user_id-index"
        projection = AllProjection()

    user_id = UnicodeAttribute(hash_key=True)


class SessionModel(BaseModel):
    """A sign-in: one refresh-token family.  ``generation`` counts rotations."""

    logical_name = "sessions"

    class Meta:
        pass

    session_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute()
    team_id = UnicodeAttribute()
    generation = NumberAttribute(default=0)
    created_at = UTCDateTimeAttribute()
    refreshed_at = UTCDateTimeAttribute(null=True)
    revoked_at = UTCDateTimeAttribute(null=True)
    revoked_reason = UnicodeAttribute(null=True)
    expires_at = TTLAttribute()
    by_user = SessionsByUser()


class OneTimeTokenModel(BaseModel):
    """Email verification, address change and password reset tokens.  Only a SHA-256 of the token is stored;
    ``email`` is the address it was mailed to, and ``session_id`` the session that asked for an address change
    (the one that outlives it)."""

    logical_name = "auth_tokens"

    class Meta:
        pass

    token_hash = UnicodeAttribute(hash_key=True)
    purpose = UnicodeAttribute()
    user_id = UnicodeAttribute()
    email = UnicodeAttribute()
    session_id = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    valid_until = UTCDateTimeAttribute()
    used_at = UTCDateTimeAttribute(null=True)
    expires_at = TTLAttribute()


class ApiKeysByTeam(GlobalSecondaryIndex["ApiKeyModel"]):
    class Meta:
        index_name = "team_id-index"
        projection = AllProjection()

    team_id = UnicodeAttribute(hash_key=True)
    key_id = UnicodeAttribute(range_key=True)


class ApiKeyModel(BaseModel):
    """A team's API key, found by the short ``lookup`` id the key itself carries (``vgl_<lookup><secret><crc>``).

    Only a SHA-256 of the whole key is stored.  ``key_id`` (time-sorted) is the id the API shows; the team index
    lists a team's keys newest first.  A revoked key is kept (its next use is a 401 that says so) until
    ``purge_at``."""

    logical_name = "api_keys"

    class Meta:
        pass

    lookup = UnicodeAttribute(hash_key=True)
    key_id = UnicodeAttribute()
    team_id = UnicodeAttribute()
    created_by = UnicodeAttribute()
    name = UnicodeAttribute()
    scopes = UnicodeSetAttribute()
    secret_hash = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    expires_at = UTCDateTimeAttribute(null=True)
    last_used_at = UTCDateTimeAttribute(null=True)
    revoked_at = UTCDateTimeAttribute(null=True)
    purge_at = TTLAttribute(null=True)
    by_team = ApiKeysByTeam()
