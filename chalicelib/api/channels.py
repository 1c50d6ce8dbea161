"""/v1/alert-channels/*: where alerts go (email, SMS, signed webhooks, Slack, Discord, Teams, PagerDuty)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Field, field_validator

from chalicelib import errors, lifecycle
from chalicelib.alerts import attempts, channels, suppressions
from chalicelib.alerts.deliveries import Delivery
from chalicelib.alerts.kinds import KINDS
from chalicelib.alerts.notification import NOTIFY_ON_CHOICES
from chalicelib.api.framework import Call, Out, Reply, Router
from chalicelib.api.schemas import ListQuery
from chalicelib.billing import abuse, limits
from chalicelib.clock import isoz, utcnow
from chalicelib.schema import DocumentedAs, Line, Schema
from chalicelib.teams import authz

router = Router("alert channels")

if TYPE_CHECKING:
    ChannelType = str
    NotifyOn = str
else:  # what pydantic accepts and OpenAPI lists, read from the registries: nothing here to keep in step
    ChannelType = Literal[tuple(KINDS)]
    NotifyOn = Literal[NOTIFY_ON_CHOICES]
# Published as any kind's config model; the model of the channel's own type validates it (alerts.channels).
Config = Annotated[dict[str, Any], DocumentedAs(Union[tuple(kind.config_model for kind in KINDS.values())])]  # noqa: UP007
CONFIG_HELP = (
    'email: {"addresses": [...]}; sms: {"phone_numbers": ["+E.164"]}; webhook: {"url", "headers"}; '
    'slack | discord | teams: {"webhook_url"}; pagerduty: {"routing_key"}'
)


class ChannelFields(Schema):
    NOT_NULL = ("type", "name", "config", "enabled", "notify_on", "cooldown_seconds")

    type: ChannelType | None = None
    name: Line | None = Field(default=None, min_length=1, max_length=100)
    config: Config | None = Field(default=None, description=CONFIG_HELP)
    enabled: bool | None = None
    notify_on: list[NotifyOn] | None = Field(default=None, min_length=1, max_length=5)
    cooldown_seconds: int | None = Field(default=None, ge=0, le=86400)

    @field_validator("notify_on")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        return list(dict.fromkeys(value)) if value is not None else None

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class ChannelIn(ChannelFields):
    type: ChannelType  # type: ignore[assignment]
    name: Line = Field(min_length=1, max_length=100)  # type: ignore[assignment]
    config: Config = Field(description=CONFIG_HELP)  # type: ignore[assignment]


class ChannelPatch(ChannelFields):
    """Only the fields sent change; ``config`` is replaced whole (masked values sent back keep the secret)."""


class SuppressedOut(Out):
    address: str
    reason: Literal["bounce", "complaint"]
    detail: str | None = Field(description="the bounce's kind and the receiving server's words, when known")
    since: str


class ChannelOut(Out):
    id: str
    team_id: str
    type: ChannelType
    name: str
    config: dict[str, Any] = Field(
        description="secrets masked as ********: a webhook's header values and credential-like URL query values, a"
        " chat URL past its first path segment, a PagerDuty key past its first 4 characters; for whoever cannot"
        " change the channel, a webhook's URL past its first path segment too.  Sent back masked, a value keeps"
        " the stored one"
    )
    enabled: bool
    disabled_reason: str | None
    notify_on: list[NotifyOn]
    cooldown_seconds: int
    created_at: str
    updated_at: str
    suppressed_addresses: list[SuppressedOut] = Field(
        default_factory=list,
        description="an email channel's addresses that alerts no longer go to: the receiving server said the"
        " address does not exist (a permanent bounce) or its owner marked an alert as spam (a complaint)",
    )


class CreatedChannelOut(ChannelOut):
    secret: str | None = Field(
        description="a webhook's signing secret (whsec_…): shown in this response only, never again"
    )


class ChannelList(Out):
    data: list[ChannelOut]
    next_cursor: str | None


class AttemptOut(Out):
    attempt: int
    at: str
    outcome: str
    response_status: int | None
    latency_ms: float | None
    error: str | None
    excerpt: str | None = Field(description="at most 1 KB of the response, with credentials redacted")


class DeliveryOut(Out):
    id: str
    at: str
    event: str
    status: Literal["retrying", "delivered", "failed", "suppressed"] = Field(
        description="retrying: not final yet (queued, being sent, or waiting for its next attempt — see attempts "
        "and next_attempt_at)"
    )
    attempts: int
    response_status: int | None
    error: str | None
    next_attempt_at: str | None
    incident_ids: list[str]
    log: list[AttemptOut]


class DeliveryList(Out):
    data: list[DeliveryOut]
    next_cursor: str | None


def _held(found: list[channels.Channel]) -> dict[str, suppressions.Suppression]:
    """The suppressed addresses of these channels' email addresses (one read for all)."""
    addresses = [a for c in found if c.type == "email" for a in c.config.get("addresses", [])]
    return suppressions.of(addresses)


def may_manage(call: Call) -> bool:
    """Whether the caller could change the team's channels (an admin or the owner; an API key with
    ``alert_channels:write``): a channel's config is shown with more masked to others."""
    return authz.holds(call.user, authz.MANAGE, "alert_channels:write")


def channel_out(
    channel: channels.Channel, held: dict[str, suppressions.Suppression] | None = None, *, manager: bool
) -> dict[str, Any]:
    held = _held([channel]) if held is None else held
    addresses = channel.config.get("addresses", []) if channel.type == "email" else []
    return {
        "suppressed_addresses": [
            SuppressedOut(
                address=s.address,
                reason=s.reason,  # type: ignore[arg-type]
                detail=s.detail,
                since=isoz(s.at) or "",
            )
            for a in addresses
            if (s := held.get(a.lower())) is not None
        ],
        "id": channel.id,
        "team_id": channel.team_id,
        "type": channel.type,
        "name": channel.name,
        "config": channel.public_config(manager=manager),
        "enabled": channel.enabled,
        "disabled_reason": channel.disabled_reason,
        "notify_on": list(channel.notify_on),
        "cooldown_seconds": channel.cooldown_seconds,
        "created_at": isoz(channel.created_at) or "",
        "updated_at": isoz(channel.updated_at) or "",
    }


def delivery_out(delivery: Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        at=isoz(delivery.created_at) or "",
        event=delivery.event,
        status=delivery.status,  # type: ignore[arg-type]
        attempts=delivery.attempts,
        response_status=delivery.response_status,
        error=delivery.error,
        next_attempt_at=isoz(delivery.next_attempt_at),
        incident_ids=list(delivery.incident_ids),
        log=[AttemptOut.model_validate(entry) for entry in delivery.log],
    )


@router.route(
    "POST",
    "/v1/alert-channels",
    summary="Create an alert channel",
    auth="team",
    permission=authz.MANAGE,
    scope="alert_channels:write",
    body=ChannelIn,
    response=CreatedChannelOut,
    status=201,
    errors=(402, 503),  # 503: the key service did not answer (sealing)
)
def create_channel(call: Call) -> CreatedChannelOut:
    """URLs must pass the same destination rules as monitors; Slack accepts only ``https://hooks.slack.com/…``.
    A webhook's signing secret is generated and returned here, once."""
    fields = call.body.changes()
    abuse.check_recipients(call.user.user_id, fields["type"], fields["config"])
    team_id, now = call.user.team_id, utcnow()
    channel, once = limits.admit(
        team_id,
        "alert_channels",
        lambda: channels.count(team_id),
        lambda c: channels.create(team_id, fields, now, counter=c),
    )
    return CreatedChannelOut(**channel_out(channel, manager=True), secret=once.get("secret"))


@router.route(
    "GET",
    "/v1/alert-channels",
    summary="List alert channels",
    auth="team",
    permission=authz.READ,
    scope="alert_channels:read",
    query=ListQuery,
    response=ChannelList,
    errors=(400,),
)
def list_channels(call: Call) -> ChannelList:
    found, next_cursor = channels.list_channels(call.user.team_id, limit=call.query.limit, after=call.query.cursor)
    held, manager = _held(found), may_manage(call)
    data = [ChannelOut(**channel_out(c, held, manager=manager)) for c in found]
    return ChannelList(data=data, next_cursor=next_cursor)


@router.route(
    "GET",
    "/v1/alert-channels/{channel_id}",
    summary="An alert channel",
    auth="team",
    permission=authz.READ,
    scope="alert_channels:read",
    response=ChannelOut,
)
def get_channel(call: Call, channel_id: str) -> ChannelOut:
    return ChannelOut(**channel_out(channels.get(call.user.team_id, channel_id), manager=may_manage(call)))


@router.route(
    "PATCH",
    "/v1/alert-channels/{channel_id}",
    summary="Change an alert channel",
    auth="team",
    permission=authz.MANAGE,
    scope="alert_channels:write",
    body=ChannelPatch,
    response=ChannelOut,
    errors=(409, 503),
)
def patch_channel(call: Call, channel_id: str) -> ChannelOut:
    changes = call.body.changes()
    if changes.get("config") is not None:
        current = channels.get(call.user.team_id, channel_id)
        abuse.check_recipients(call.user.user_id, current.type, changes["config"])
    return ChannelOut(**channel_out(channels.update(call.user.team_id, channel_id, changes, utcnow()), manager=True))


@router.route(
    "DELETE",
    "/v1/alert-channels/{channel_id}",
    summary="Delete an alert channel",
    auth="team",
    permission=authz.MANAGE,
    scope="alert_channels:write",
    status=204,
)
def delete_channel(call: Call, channel_id: str) -> Reply:
    """Monitors that named it stop naming it."""
    lifecycle.delete_channel(call.user.team_id, channel_id)
    return Reply(status=204)


class AddressIn(Schema):
    address: str = Field(min_length=3, max_length=320)


@router.route(
    "POST",
    "/v1/alert-channels/{channel_id}/unsuppress",
    summary="Send to a bounced address again",
    auth="team",
    permission=authz.MANAGE,
    scope="alert_channels:write",
    body=AddressIn,
    response=ChannelOut,
    errors=(404, 409, 422, 429),
)
def unsuppress(call: Call, channel_id: str) -> ChannelOut:
    """For an address of this email channel whose server said it did not exist (a bounce): alerts go to it again.
    Once a day per address (429); an address that complained (marked an alert as spam) is a 409: only Vigil's
    support lifts that."""
    channel = channels.get(call.user.team_id, channel_id)
    address = call.body.address.strip().lower()
    if channel.type != "email" or address not in [a.lower() for a in channel.config.get("addresses", [])]:
        raise errors.ValidationFailed.single("address", "is not an address of this email channel")
    suppressions.lift(address, utcnow())
    return ChannelOut(**channel_out(channel, manager=True))


@router.route(
    "POST",
    "/v1/alert-channels/{channel_id}/test",
    summary="Send a test notification",
    auth="team",
    permission=authz.MANAGE,
    scope="alert_channels:write",
    response=DeliveryOut,
    errors=(429, 503),
)
def test_channel(call: Call, channel_id: str) -> DeliveryOut:
    """Sent now, once (no retries); the answer is its delivery record."""
    channels.get(call.user.team_id, channel_id)  # 404 before anything is counted
    abuse.require_verified(call.user.user_id, "sending test notifications")
    abuse.may_send(call.user.team_id, "channel_tests", utcnow())
    delivery = attempts.send_test(call.user.team_id, channel_id, utcnow())
    abuse.sent(call.user.team_id, "channel_tests", utcnow())
    return delivery_out(delivery)


@router.route(
    "GET",
    "/v1/alert-channels/{channel_id}/deliveries",
    summary="A channel's deliveries, newest first (kept 30 days)",
    auth="team",
    permission=authz.READ,
    scope="alert_channels:read",
    query=ListQuery,
    response=DeliveryList,
    errors=(400,),
)
def list_deliveries(call: Call, channel_id: str) -> DeliveryList:
    found, next_cursor = channels.list_deliveries(
        call.user.team_id, channel_id, limit=call.query.limit, after=call.query.cursor
    )
    return DeliveryList(data=[delivery_out(d) for d in found], next_cursor=next_cursor)
