"""Status pages, the admin side: create, read, change, delete, components.

A slug is unique across the service: the page and its slug item are written in one transaction whose slug put is
conditional, so of two concurrent creates one gets 409.  Components may only name the team's own monitors (404).
Every change republishes the page (``publish``).
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from pynamodb.exceptions import TransactWriteError

from chalicelib import errors
from chalicelib.ids import new_id
from chalicelib.monitors.service import require_team_monitors
from chalicelib.status_pages import publish
from chalicelib.status_pages.models import SlugModel, StatusPageModel
from chalicelib.status_pages.store import LISTED, Component, Page, as_json, components_of, pages_showing, to_page
from chalicelib.storage import cursor
from chalicelib.storage.base import (
    Counter,
    condition_failed,
    condition_failed_at,
    counted_transaction,
    load_team_item,
    retry_lost_races,
    transaction,
)

MAX_COMPONENTS = 50
RESERVED_SLUGS = frozenset({"api", "app", "admin", "assets", "docs", "status", "static", "vigil", "www", "help"})


def _components(raw: list[dict[str, Any]], team_id: str, existing: tuple[Component, ...] = ()) -> list[Component]:
    """Validated components; one without a display name gets a neutral one (a monitor's own name is internal):
    "Service N", the first N no other component of the page is called."""
    seen: set[str] = set()
    names = {c.display_name for c in existing} | {str(c["display_name"]) for c in raw if c.get("display_name")}
    numbers = (f"Service {n}" for n in itertools.count(1))
    out = []
    for index, c in enumerate(raw):
        monitor_id = c["monitor_id"]
        if monitor_id in seen:
            raise errors.ValidationFailed.single(f"components.{index}.monitor_id", "this monitor is already listed")
        seen.add(monitor_id)
        name = c.get("display_name") or next(n for n in numbers if n not in names)
        out.append(Component(monitor_id, name, c.get("group") or None))
    if len(out) + len(existing) > MAX_COMPONENTS:
        raise errors.ValidationFailed.single("components", f"a page shows at most {MAX_COMPONENTS} components")
    require_team_monitors(team_id, [c.monitor_id for c in out])
    return out


def _save_new_slug(
    item: StatusPageModel, old_slug: str | None, *, creating: bool, counter: Counter | None = None
) -> None:
    try:
        with transaction() as t:
            if counter is not None:
                counter.add_to(t)  # an update: PynamoDB sends it after the puts, so the slug's index holds
            t.save(
                SlugModel(item.slug, team_id=item.team_id, page_id=item.page_id),
                condition=SlugModel.slug.does_not_exist(),
            )
            if old_slug is not None:
                t.delete(SlugModel(old_slug), condition=SlugModel.page_id == item.page_id)
            if creating:
                t.save(item, condition=StatusPageModel.page_id.does_not_exist())
            else:
                t.save(item)
    except TransactWriteError as exc:
        if counter is not None:
            counter.check(exc)  # the plan's limit: 402
        # PynamoDB sends a transaction's deletes before its puts: the slug's put follows the old slug's delete.
        if condition_failed_at(exc, 0 if old_slug is None else 1):
            raise errors.SlugTaken(f"The slug {item.slug!r} is taken; choose another.") from None
        if condition_failed(exc):
            raise errors.Conflict("The page was changed by another request; reload it and try again.") from None
        raise


def _free_of_reserved(slug: str) -> str:
    if slug in RESERVED_SLUGS:
        raise errors.SlugTaken(f"The slug {slug!r} is reserved; choose another.")
    return slug


def create(team_id: str, fields: dict[str, Any], now: datetime, *, counter: Counter | None = None) -> Page:
    slug = _free_of_reserved(fields["slug"])
    components = _components(fields.get("components") or [], team_id)
    item = StatusPageModel(
        team_id,
        new_id("sp"),
        name=fields["name"],
        slug=slug,
        description=fields.get("description"),
        published=fields.get("published", True),
        components=as_json(components),
        custom_domain=fields.get("custom_domain"),
        created_at=now,
        updated_at=now,
    )
    item.listed = LISTED if item.published else None
    _save_new_slug(item, None, creating=True, counter=counter)
    return _changed(item, None)


def _load(team_id: str, page_id: str) -> StatusPageModel:
    return load_team_item(StatusPageModel, team_id, page_id, "status page")


def get(team_id: str, page_id: str) -> Page:
    return to_page(_load(team_id, page_id))


def by_slug(slug: str) -> Page | None:
    """The page behind a public slug (None when unknown)."""
    if not slug or len(slug) > 63:
        return None
    try:
        claim = SlugModel.get(slug)
    except SlugModel.DoesNotExist:
        return None
    try:
        return to_page(StatusPageModel.get(claim.team_id, claim.page_id))
    except StatusPageModel.DoesNotExist:
        return None


def update(team_id: str, page_id: str, changes: dict[str, Any], now: datetime) -> Page:
    item = _load(team_id, page_id)
    old_slug = item.slug
    for name in ("name", "description", "published", "custom_domain"):
        if name in changes:
            setattr(item, name, changes[name])
    if "components" in changes:
        item.components = as_json(_components(changes["components"], team_id))
    item.listed = LISTED if item.published else None
    item.updated_at = now
    if "slug" in changes and changes["slug"] != old_slug:
        item.slug = _free_of_reserved(changes["slug"])
        _save_new_slug(item, old_slug, creating=False)
        return _changed(item, old_slug)
    item.save()
    return _changed(item, None)


def add_component(team_id: str, page_id: str, component: dict[str, Any], now: datetime) -> Page:
    item = _load(team_id, page_id)
    current = components_of(item)
    if any(c.monitor_id == component["monitor_id"] for c in current):
        raise errors.ValidationFailed.single("monitor_id", "this monitor is already on the page")
    (added,) = _components([component], team_id, existing=tuple(current))
    item.components = as_json([*current, added])
    item.updated_at = now
    item.save()
    return _changed(item, None)


def remove_component(team_id: str, page_id: str, monitor_id: str, now: datetime) -> None:
    item = _load(team_id, page_id)
    current = components_of(item)
    if not any(c.monitor_id == monitor_id for c in current):
        raise errors.NotFound("That monitor is not on this page.")
    item.components = as_json([c for c in current if c.monitor_id != monitor_id])
    item.updated_at = now
    item.save()
    _changed(item, None)


def delete(team_id: str, page_id: str, *, counter: Counter | None = None) -> None:
    item = _load(team_id, page_id)

    def steps(t: Any) -> None:
        t.delete(item, add_version_condition=False)
        t.delete(SlugModel(item.slug), condition=SlugModel.page_id == item.page_id)

    counted_transaction(counter, steps)
    publish.unpublish_quietly(to_page(item))


def count(team_id: str) -> int:
    return sum(
        1 for _ in StatusPageModel.query(team_id, attributes_to_get=["team_id", "page_id"], consistent_read=True)
    )


def list_pages(team_id: str, *, limit: int, after: str | None) -> tuple[list[Page], str | None]:
    page, next_cursor = cursor.paginate(
        lambda start: StatusPageModel.query(team_id, last_evaluated_key=start, page_size=cursor.page_size(limit)),
        team_id=team_id,
        scope="status-pages",
        limit=limit,
        after=after,
        key=("team_id", "page_id"),
    )
    return [to_page(item) for item in page], next_cursor


def forget_monitor(team_id: str, monitor_id: str, now: datetime) -> None:
    """A deleted monitor leaves every page that showed it (under the page's version: a concurrent edit of the
    page reloads it, so neither change is lost)."""
    for found in pages_showing(team_id, {monitor_id}):

        def attempt(page_id: str = found.id) -> StatusPageModel:
            page = _load(team_id, page_id)
            page.components = as_json([c for c in components_of(page) if c.monitor_id != monitor_id])
            page.updated_at = now
            page.save()
            return page

        _changed(retry_lost_races(attempt), None)


def purge_team(team_id: str) -> None:
    for page in StatusPageModel.query(team_id):
        SlugModel(page.slug).delete(condition=SlugModel.page_id == page.page_id)
        page.delete(add_version_condition=False)
        publish.unpublish_quietly(to_page(page))


def _changed(item: StatusPageModel, old_slug: str | None) -> Page:
    """The page as saved, published (best effort)."""
    page = to_page(item)
    publish.publish_quietly(page, old_slug)
    return page
