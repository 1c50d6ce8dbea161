"""User tables: the account itself and the email → user uniqueness index."""

from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)

from chalicelib.storage.base import BaseModel


class UserModel(BaseModel):
    logical_name = "users"

    class Meta:
        pass

    user_id = UnicodeAttribute(hash_key=True)
    email = UnicodeAttribute()
    password_hash = UnicodeAttribute()
    name = UnicodeAttribute(null=True)
    timezone = UnicodeAttribute(default="UTC")
    email_verified_at = UTCDateTimeAttribute(null=True)
    welcomed_at = UTCDateTimeAttribute(null=True)  # the welcome email, sent once: when an address is first verified
    pending_email = UnicodeAttribute(null=True)  # asked for by POST /v1/me/email
    pending_email_token = UnicodeAttribute(null=True)  # the hash of its link: only the latest request's works
    email_changed_at = UTCDateTimeAttribute(null=True)  # a reset link made before it is spent
    deleting_at = UTCDateTimeAttribute(null=True)  # DELETE /v1/me began: nothing joins it; it finishes on retry
    password_changed_at = UTCDateTimeAttribute(null=True)  # a reset link made before it is spent
    critical_only = BooleanAttribute(default=False)
    quiet_hours_start = UnicodeAttribute(null=True)
    quiet_hours_end = UnicodeAttribute(null=True)
    current_team_id = UnicodeAttribute(null=True)
    # Teams this person created or was handed: each claims the next number, so two at once are counted one by one.
    teams_created = NumberAttribute(null=True)
    # The teams it last created or was handed (at most three): counted even before the memberships' index shows them.
    teams_recent = ListAttribute(of=UnicodeAttribute, null=True)
    # A reset proved the address of an account never verified: whoever signed up with it before goes with all they
    # made, and this fresh personal team is the account's (``lifecycle.finish_reclaim``; cleared by the next sign-in).
    reclaiming_team_id = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    version = VersionAttribute()


class UserEmailModel(BaseModel):
    """One item per address in use: a conditional put makes emails unique."""

    logical_name = "user_emails"

    class Meta:
        pass

    email = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute()
