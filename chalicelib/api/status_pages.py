"""/v1/status-pages/*: the admin side of public status pages."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from chalicelib.api.framework import Call, Out, Reply, Router
from chalicelib.api.schemas import ListQuery
from chalicelib.billing import limits
from chalicelib.clock import isoz, utcnow
from chalicelib.schema import Line, Schema, Text
from chalicelib.status_pages import service as pages
from chalicelib.status_pages.publish import page_url
from chalicelib.status_pages.store import Page
from chalicelib.teams import authz

router = Router("status pages")

Slug = Annotated[
    str,
    Field(
        min_length=3,
        max_length=63,
        pattern=r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$",
        description="lower-case letters, digits and hyphens; unique across Vigil",
    ),
]
Domain = Annotated[
    str, Field(min_length=4, max_length=253, pattern=r"^([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
]


class ComponentIn(Schema):
    monitor_id: str = Field(min_length=1, max_length=100)
    display_name: Line | None = Field(
        default=None, min_length=1, max_length=100, description="shown to the public (the monitor's name is not)"
    )
    group: Line | None = Field(default=None, min_length=1, max_length=100)


class PageFields(Schema):
    NOT_NULL = ("name", "slug", "published", "components")

    name: Line | None = Field(default=None, min_length=1, max_length=100)
    slug: Slug | None = None
    description: Text | None = Field(default=None, max_length=1000)
    published: bool | None = None
    components: list[ComponentIn] | None = Field(default=None, max_length=pages.MAX_COMPONENTS)
    custom_domain: Domain | None = None

    def changes(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if name == "components":
                value = [c.model_dump() for c in value]
            out[name] = value
        return out


class PageIn(PageFields):
    name: Line = Field(min_length=1, max_length=100)  # type: ignore[assignment]
    slug: Slug  # type: ignore[assignment]


class PagePatch(PageFields):
    """Only the fields sent change; ``components`` replaces the whole list."""


class ComponentOut(Out):
    monitor_id: str
    display_name: str
    group: str | None


class PageOut(Out):
    id: str
    team_id: str
    name: str
    slug: str
    description: str | None
    published: bool
    components: list[ComponentOut]
    custom_domain: str | None
    url: str = Field(description="where the public page is")
    created_at: str
    updated_at: str


class PageList(Out):
    data: list[PageOut]
    next_cursor: str | None


def page_out(page: Page) -> PageOut:
    return PageOut(
        id=page.id,
        team_id=page.team_id,
        name=page.name,
        slug=page.slug,
        description=page.description,
        published=page.published,
        components=[ComponentOut(**vars(c)) for c in page.components],
        custom_domain=page.custom_domain,
        url=f"https://{page.custom_domain}/" if page.custom_domain else page_url(page.slug),
        created_at=isoz(page.created_at) or "",
        updated_at=isoz(page.updated_at) or "",
    )


@router.route(
    "POST",
    "/v1/status-pages",
    summary="Create a status page",
    auth="team",
    permission=authz.WRITE,
    scope="status_pages:write",
    body=PageIn,
    response=PageOut,
    status=201,
    errors=(402, 404, 409),
)
def create_page(call: Call) -> PageOut:
    """The slug is unique across Vigil (409 ``slug_taken``); components name the team's own monitors (404)."""
    team_id, fields, now = call.user.team_id, call.body.changes(), utcnow()
    created = limits.admit(
        team_id, "status_pages", lambda: pages.count(team_id), lambda c: pages.create(team_id, fields, now, counter=c)
    )
    return page_out(created)


@router.route(
    "GET",
    "/v1/status-pages",
    summary="List status pages",
    auth="team",
    permission=authz.READ,
    scope="status_pages:read",
    query=ListQuery,
    response=PageList,
    errors=(400,),
)
def list_pages(call: Call) -> PageList:
    found, next_cursor = pages.list_pages(call.user.team_id, limit=call.query.limit, after=call.query.cursor)
    return PageList(data=[page_out(p) for p in found], next_cursor=next_cursor)


@router.route(
    "GET",
    "/v1/status-pages/{page_id}",
    summary="A status page",
    auth="team",
    permission=authz.READ,
    scope="status_pages:read",
    response=PageOut,
)
def get_page(call: Call, page_id: str) -> PageOut:
    return page_out(pages.get(call.user.team_id, page_id))


@router.route(
    "PATCH",
    "/v1/status-pages/{page_id}",
    summary="Change a status page",
    auth="team",
    permission=authz.WRITE,
    scope="status_pages:write",
    body=PagePatch,
    response=PageOut,
    errors=(404, 409),
)
def patch_page(call: Call, page_id: str) -> PageOut:
    return page_out(pages.update(call.user.team_id, page_id, call.body.changes(), utcnow()))


@router.route(
    "DELETE",
    "/v1/status-pages/{page_id}",
    summary="Delete a status page",
    auth="team",
    permission=authz.WRITE,
    scope="status_pages:write",
    status=204,
)
def delete_page(call: Call, page_id: str) -> Reply:
    """Its public views are gone at once; the slug is free again."""
    team_id = call.user.team_id
    pages.delete(team_id, page_id, counter=limits.uncount(team_id, "status_pages", lambda: pages.count(team_id)))
    return Reply(status=204)


@router.route(
    "POST",
    "/v1/status-pages/{page_id}/components",
    summary="Add a component",
    auth="team",
    permission=authz.WRITE,
    scope="status_pages:write",
    body=ComponentIn,
    response=PageOut,
    status=201,
    errors=(404,),
)
def add_component(call: Call, page_id: str) -> PageOut:
    return page_out(pages.add_component(call.user.team_id, page_id, call.body.model_dump(), utcnow()))


@router.route(
    "DELETE",
    "/v1/status-pages/{page_id}/components/{monitor_id}",
    summary="Remove a component",
    auth="team",
    permission=authz.WRITE,
    scope="status_pages:write",
    status=204,
)
def remove_component(call: Call, page_id: str, monitor_id: str) -> Reply:
    pages.remove_component(call.user.team_id, page_id, monitor_id, utcnow())
    return Reply(status=204)
