"""Team tables: teams and memberships (team_id + user_id, GSI by user)."""

from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection

from chalicelib.storage.base import BaseModel


class TeamModel(BaseModel):
    logical_name = "teams"

    class Meta:
        pass

    team_id = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    personal = BooleanAttribute(default=False)
    plan = UnicodeAttribute(default="free")
    # Billing (``billing``): the Stripe subscription's status, customer and subscription ids, its period's end and
    # whether it cancels then; ``billing_event_at``: the ``created`` of the newest Stripe event applied (an older
    # one never overwrites it).
    billing_status = UnicodeAttribute(null=True)
    stripe_customer_id = UnicodeAttribute(null=True)
    stripe_subscription_id = UnicodeAttribute(null=True)
    current_period_end = UTCDateTimeAttribute(null=True)
    cancel_at_period_end = BooleanAttribute(null=True)
    billing_event_at = NumberAttribute(null=True)  # of subscription events
    invoice_event_at = NumberAttribute(null=True)  # the newest invoice event applied
    created_by = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    version = VersionAttribute()


class MembershipsByUser(GlobalSecondaryIndex["MembershipModel"]):
    class Meta:
        index_name = "user_id-index"
        projection = AllProjection()

    user_id = UnicodeAttribute(hash_key=True)
    team_id = UnicodeAttribute(range_key=True)


class MembershipModel(BaseModel):
    logical_name = "memberships"

    class Meta:
        pass

    team_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)
    role = UnicodeAttribute()
    joined_at = UTCDateTimeAttribute()
    by_user = MembershipsByUser()


class InvitationsByTeam(GlobalSecondaryIndex["InvitationModel"]):
    class Meta:
        index_name = "team_id-index"
        projection = AllProjection()

    team_id = UnicodeAttribute(hash_key=True)
    invitation_id = UnicodeAttribute(range_key=True)


class InvitationsByEmail(GlobalSecondaryIndex["InvitationModel"]):
    """The invitations to an address (keys only): a deleted account's are withdrawn with it."""

    class Meta:
        index_name = "email-index"
        projection = KeysOnlyProjection()

    email = UnicodeAttribute(hash_key=True)
    invitation_id = UnicodeAttribute(range_key=True)


class InvitationModel(BaseModel):
    """An invitation by email.  The link's token is ``<invitation_id>.<secret>``; only SHA-256(secret) is stored."""

    logical_name = "invitations"

    class Meta:
        pass

    invitation_id = UnicodeAttribute(hash_key=True)
    team_id = UnicodeAttribute()
    email = UnicodeAttribute()
    role = UnicodeAttribute()
    secret_hash = UnicodeAttribute()
    invited_by = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    valid_until = UTCDateTimeAttribute()
    accepted_at = UTCDateTimeAttribute(null=True)
    released_at = UTCDateTimeAttribute(null=True)  # expired unanswered, and counted out of the plan's members
    accepted_by = UnicodeAttribute(null=True)
    revoked_at = UTCDateTimeAttribute(null=True)
    expires_at = TTLAttribute()
    by_team = InvitationsByTeam()
    by_email = InvitationsByEmail()
