"""Status pages, the stored side that every part of the area reads: a page as a :class:`Page`, its components,
which pages to publish (all published pages; the team's pages that show some monitors), and which page a slug
publishes now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib.status_pages.models import SlugModel, StatusPageModel

LISTED = "published"


@dataclass(frozen=True)
class Component:
    monitor_id: str
    display_name: str
    group: str | None


@dataclass(frozen=True)
class Page:
    id: str
    team_id: str
    name: str
    slug: str
    description: str | None
    published: bool
    components: tuple[Component, ...]
    custom_domain: str | None
    created_at: datetime
    updated_at: datetime
    version: int  # the record's: one page read at one version renders the same (publishing settles on it)


def to_page(item: StatusPageModel) -> Page:
    return Page(
        id=item.page_id,
        team_id=item.team_id,
        name=item.name,
        slug=item.slug,
        description=item.description,
        published=bool(item.published),
        components=tuple(components_of(item)),
        custom_domain=item.custom_domain,
        created_at=item.created_at,
        updated_at=item.updated_at,
        version=int(item.version or 0),
    )


def components_of(item: StatusPageModel) -> list[Component]:
    return [Component(str(c["monitor_id"]), str(c["display_name"]), c.get("group")) for c in item.components or ()]


def as_json(components: list[Component]) -> list[dict[str, Any]]:
    return [{"monitor_id": c.monitor_id, "display_name": c.display_name, "group": c.group} for c in components]


def published_pages() -> list[Page]:
    """Every published page, of every team (the hourly refresh: its bars and uptime move with the days)."""
    keys = [(k.team_id, k.page_id) for k in StatusPageModel.by_listed.query(LISTED)]
    return [to_page(item) for item in StatusPageModel.batch_get(keys)] if keys else []


def pages_showing(team_id: str, monitor_ids: set[str]) -> list[Page]:
    """The team's pages that show any of these monitors (a team has a handful of pages)."""
    pages = [to_page(item) for item in StatusPageModel.query(team_id)]
    return [p for p in pages if any(c.monitor_id in monitor_ids for c in p.components)]


def showing(slug: str) -> Page | None:
    """The page the slug publishes now, or None: its claim, then that page if published under this slug.  Read
    strongly consistent, after a write to the bucket, to check that the write showed the latest state."""
    try:
        claim = SlugModel.get(slug, consistent_read=True)
        item = StatusPageModel.get(claim.team_id, claim.page_id, consistent_read=True)
    except (SlugModel.DoesNotExist, StatusPageModel.DoesNotExist):
        return None
    return to_page(item) if item.published and item.slug == slug else None
