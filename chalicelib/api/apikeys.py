"""/v1/api-keys: a team's keys for machine clients (owners and admins manage them; keys cannot).

A key is shown once, when it is made.  Send it as ``Authorization: Bearer vgl_…``; it acts in its team with its
scopes, never more than its creator's current role allows, and is counted against the team's plan's
``api_requests_per_minute`` (every answer carries ``RateLimit-Policy`` and ``RateLimit``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from chalicelib.api.framework import Call, Out, Reply, Router
from chalicelib.api.schemas import ListQuery
from chalicelib.auth import apikeys
from chalicelib.clock import isoz, utcnow
from chalicelib.schema import Line, Schema, ZonedTime
from chalicelib.teams import authz

router = Router("api keys")

if TYPE_CHECKING:
    Scope = str
else:
    Scope = Literal[apikeys.SCOPES]


class ApiKeyIn(Schema):
    name: Line = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(min_length=1, max_length=len(apikeys.SCOPES))
    expires_at: ZonedTime | None = Field(default=None, description="none: the key lasts until it is revoked")

    @field_validator("scopes")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class ApiKeyOut(Out):
    id: str
    name: str
    scopes: list[Scope]
    prefix: str = Field(description="the key's first characters, to recognise it; never the secret")
    created_by: str
    created_at: str
    expires_at: str | None
    last_used_at: str | None = Field(description="to the minute: written at most once a minute")


class CreatedApiKeyOut(ApiKeyOut):
    key: str = Field(description="the key (vgl_…): shown in this response only, never again")


class ApiKeyList(Out):
    data: list[ApiKeyOut]
    next_cursor: str | None


def key_out(key: apikeys.ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        scopes=list(key.scopes),
        prefix=key.prefix,
        created_by=key.created_by,
        created_at=isoz(key.created_at) or "",
        expires_at=isoz(key.expires_at),
        last_used_at=isoz(key.last_used_at),
    )


@router.route(
    "POST",
    "/v1/api-keys",
    summary="Create an API key",
    auth="team",
    permission=authz.MANAGE,
    body=ApiKeyIn,
    response=CreatedApiKeyOut,
    status=201,
    errors=(409,),
)
def create_key(call: Call) -> CreatedApiKeyOut:
    """The key acts in the current team with ``scopes``, and never beyond the role its creator holds at the time
    of each request; it stops working if its creator leaves the team.  ``key`` is in this response only."""
    body = call.body
    key, secret = apikeys.create(
        call.user.team_id, call.user.user_id, body.name, body.scopes, body.expires_at, utcnow()
    )
    return CreatedApiKeyOut(**key_out(key).model_dump(), key=secret)


@router.route(
    "GET",
    "/v1/api-keys",
    summary="List API keys",
    auth="team",
    permission=authz.MANAGE,
    query=ListQuery,
    response=ApiKeyList,
    errors=(400,),
)
def list_keys(call: Call) -> ApiKeyList:
    """The team's live keys, newest first, without their secrets."""
    found, next_cursor = apikeys.list_keys(call.user.team_id, limit=call.query.limit, after=call.query.cursor)
    return ApiKeyList(data=[key_out(k) for k in found], next_cursor=next_cursor)


@router.route(
    "DELETE",
    "/v1/api-keys/{key_id}",
    summary="Revoke an API key",
    auth="team",
    permission=authz.MANAGE,
    status=204,
)
def revoke_key(call: Call, key_id: str) -> Reply:
    """The key stops working at once: its very next request is a 401."""
    apikeys.revoke(call.user.team_id, key_id, utcnow())
    return Reply(status=204)
