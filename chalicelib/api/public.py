"""Public, unauthenticated, cacheable views of published status pages: JSON, HTML, Atom, SVG badges.

The page views are the objects published to the status bucket — what CloudFront serves — so a request costs
three small reads, not a rendering; locally the API is how they are seen.  Unpublished or unknown → 404.
"""

from __future__ import annotations

import hashlib
from typing import Any

from chalicelib import errors
from chalicelib.api.framework import Call, Reply, Router
from chalicelib.clock import utcnow
from chalicelib.status_pages import document, render, service
from chalicelib.status_pages.publish import CACHE_CONTROL, OBJECTS, publish_quietly, published, rendered
from chalicelib.status_pages.store import Page

router = Router("public")
NOT_FOUND = "No such status page."


def _page(slug: str) -> Page:
    page = service.by_slug(slug)
    if page is None or not page.published:
        raise errors.NotFound(NOT_FOUND)
    return page


def _reply(call: Call, body: str, content_type: str) -> Reply:
    """Cacheable by browsers and CDNs; an ETag lets a revalidation answer 304 without a body."""
    tag = '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
    headers = {"Cache-Control": CACHE_CONTROL, "ETag": tag, "X-Content-Type-Options": "nosniff"}
    if call.headers.get("if-none-match") == tag:
        return Reply(body="", status=304, headers=headers, content_type=content_type)
    return Reply(body=body, headers=headers, content_type=content_type)


def _view(call: Call, slug: str, name: str) -> Reply:
    """What was published (what CloudFront serves); rendered now only if it is missing (then published)."""
    page = _page(slug)
    body = published(page.slug, name)
    if body is None:
        publish_quietly(page)
        body = rendered(page, utcnow())[name]
    return _reply(call, body, OBJECTS[name])


@router.route(
    "GET",
    "/v1/public/status-pages/{slug}",
    summary="A published status page, as JSON",
    auth="none",
    response=dict[str, Any],
    errors=(404,),
    ip_limit=1200,
)
def status_json(call: Call, slug: str) -> Reply:
    """``{name, description, overall_status, components, active_incidents, recent_incidents, maintenance,
    updated_at}`` — never a monitor's URL, headers, body, internal name, error text or address."""
    return _view(call, slug, "index.json")


@router.route(
    "GET",
    "/status/{slug}",
    summary="A published status page, as HTML",
    auth="none",
    content_type="text/html",
    errors=(404,),
    ip_limit=1200,
)
def status_html(call: Call, slug: str) -> Reply:
    return _view(call, slug, "index.html")


@router.route(
    "GET",
    "/status/{slug}/feed.atom",
    summary="A published status page's incidents, as Atom",
    auth="none",
    content_type="application/atom+xml",
    errors=(404,),
    ip_limit=1200,
)
def status_feed(call: Call, slug: str) -> Reply:
    return _view(call, slug, "feed.atom")


@router.route(
    "GET",
    "/v1/public/badges/{badge}",
    summary="A status badge: /v1/public/badges/{monitor_id}.svg",
    auth="none",
    content_type="image/svg+xml",
    errors=(404,),
    ip_limit=1200,
)
def status_badge(call: Call, badge: str) -> Reply:
    """Only for a monitor shown on a published page; labelled with its public display name."""
    missing = errors.NotFound("No such badge.")
    if not badge.endswith(".svg") or len(badge) > 120:
        raise missing
    monitor_id = badge.removesuffix(".svg")
    if not monitor_id:
        raise missing
    shown = document.badge(monitor_id)
    if shown is None:
        raise missing
    return _reply(call, render.badge(*shown), "image/svg+xml")
