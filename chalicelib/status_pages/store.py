"""Status pages, the stored side that every part of the area reads: a page's components, and which pages to
publish (all published pages; the team's pages that show some monitors)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.status_pages.models import StatusPageModel

LISTED = "published"


@dataclass(frozen=True)
class Component:
    monitor_id: str
    display_name: str
    group: str | None


def components_of(item: StatusPageModel) -> list[Component]:
    return [Component(str(c["monitor_id"]), str(c["display_name"]), c.get("group")) for c in item.components or ()]


def as_json(components: list[Component]) -> list[dict[str, Any]]:
    return [{"monitor_id": c.monitor_id, "display_name": c.display_name, "group": c.group} for c in components]


def published_pages() -> list[StatusPageModel]:
    """Every published page, of every team (the hourly refresh: its bars and uptime move with the days)."""
    keys = [(k.team_id, k.page_id) for k in StatusPageModel.by_listed.query(LISTED)]
    return list(StatusPageModel.batch_get(keys)) if keys else []


def pages_showing(team_id: str, monitor_ids: set[str]) -> list[StatusPageModel]:
    """The team's pages that show any of these monitors (a team has a handful of pages)."""
    return [p for p in StatusPageModel.query(team_id) if any(c.monitor_id in monitor_ids for c in components_of(p))]
