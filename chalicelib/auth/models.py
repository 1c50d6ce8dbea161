"""Auth tables: sign-in sessions and single-use tokens (stored hashed)."""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute, UTCDateTimeAttribute
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
    """Email verification and password reset tokens.  Only a SHA-256 of the token is stored."""

    logical_name = "auth_tokens"

    class Meta:
        pass

    token_hash = UnicodeAttribute(hash_key=True)
    purpose = UnicodeAttribute()
    user_id = UnicodeAttribute()
    email = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    valid_until = UTCDateTimeAttribute()
    used_at = UTCDateTimeAttribute(null=True)
    expires_at = TTLAttribute()
