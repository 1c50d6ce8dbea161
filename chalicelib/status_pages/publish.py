"""Publishing: render a page's three objects into the status bucket that CloudFront serves (``status/{slug}/…``).

Called on every change that alters a page — its own edits, maintenance windows, and (from the events stream)
incidents opening, being acknowledged or resolving, and monitors changing status.  An unpublished or deleted
page's objects are removed.  Publishing is best effort at the edge of a request: a failure is logged, and the
next change publishes the page again.
"""

from __future__ import annotations

import json
from datetime import datetime

from chalicelib.aws import names
from chalicelib.aws.clients import client
from chalicelib.clock import utcnow
from chalicelib.observability import logger
from chalicelib.settings import get_settings
from chalicelib.status_pages import document, render
from chalicelib.status_pages.store import Page, pages_showing, published_pages

CACHE_CONTROL = "public, max-age=30, s-maxage=60, stale-while-revalidate=300"
OBJECTS = {
    "index.html": "text/html; charset=utf-8",
    "index.json": "application/json; charset=utf-8",
    "feed.atom": "application/atom+xml; charset=utf-8",
}


def page_url(slug: str) -> str:
    return f"{get_settings().status_base_url.rstrip('/')}/{slug}"


def rendered(page: Page, now: datetime) -> dict[str, str]:
    """The three views of a page, rendered from one public document."""
    doc = document.build(page, now)
    url = page_url(page.slug)
    feed = f"{url}/feed.atom"
    return {
        "index.html": render.html_page(doc, feed),
        "index.json": json.dumps(doc, separators=(",", ":"), ensure_ascii=False),
        "feed.atom": render.atom_feed(doc, document.feed_entries(page, now), url, feed),
    }


# CloudFront's error page for a missing object (the bucket answers 403 to CloudFront for a key it lacks).
NOT_FOUND_KEY = "status/404.html"


def publish_not_found() -> None:
    """The "no such status page" page, in the bucket for CloudFront's error responses."""
    client("s3").put_object(
        Bucket=names.status_bucket(get_settings()),
        Key=NOT_FOUND_KEY,
        Body=render.not_found_page().encode("utf-8"),
        ContentType=OBJECTS["index.html"],
        CacheControl=CACHE_CONTROL,
    )


def _key(slug: str, name: str) -> str:
    return f"status/{slug}/{name}"


def publish(page: Page, old_slug: str | None = None) -> None:
    s3 = client("s3")
    bucket = names.status_bucket(get_settings())
    if old_slug and old_slug != page.slug:
        unpublish(old_slug)
    if not page.published:
        unpublish(page.slug)
        return
    for name, body in rendered(page, utcnow()).items():
        s3.put_object(
            Bucket=bucket,
            Key=_key(page.slug, name),
            Body=body.encode("utf-8"),
            ContentType=OBJECTS[name],
            CacheControl=CACHE_CONTROL,
        )
    logger.info("status page published", extra={"page_id": page.id, "slug": page.slug})


def unpublish(slug: str) -> None:
    client("s3").delete_objects(
        Bucket=names.status_bucket(get_settings()),
        Delete={"Objects": [{"Key": _key(slug, name)} for name in OBJECTS], "Quiet": True},
    )


def publish_quietly(page: Page, old_slug: str | None = None) -> None:
    """For request paths: the change stands even if S3 fails; the next change publishes again."""
    try:
        publish(page, old_slug)
    except Exception:  # noqa: BLE001 - logged; never fails the change that asked for it
        logger.exception("status page publishing failed", extra={"page_id": page.id})


def unpublish_quietly(page: Page) -> None:
    try:
        unpublish(page.slug)
    except Exception:  # noqa: BLE001 - logged; a stale page is a lesser evil than a failed delete
        logger.exception("status page unpublishing failed", extra={"page_id": page.id})


def published(slug: str, name: str) -> str | None:
    """A published object's text, or None when it is not there."""
    try:
        found = client("s3").get_object(Bucket=names.status_bucket(get_settings()), Key=_key(slug, name))
    except client("s3").exceptions.NoSuchKey:
        return None
    return str(found["Body"].read().decode("utf-8"))


def refresh_all() -> tuple[int, int]:
    """Republish every published page (hourly: the 90-day bars and uptime move with time, not only with events).
    One page failing does not stop the others.  Returns (published, failed)."""
    done = failed = 0
    try:
        publish_not_found()
    except Exception:  # noqa: BLE001 - logged; the pages go on
        logger.exception("status page 404 publishing failed")
    for page in published_pages():
        try:
            publish(page)
            done += 1
        except Exception:  # noqa: BLE001 - logged; the next hour tries again
            logger.exception("status page refresh failed", extra={"page_id": page.id})
            failed += 1
    return done, failed


def republish_for(team_id: str, monitor_ids: set[str]) -> int:
    """Publish every page of the team that shows one of these monitors; returns how many."""
    pages = pages_showing(team_id, monitor_ids)
    for page in pages:
        publish(page)
    return len(pages)
