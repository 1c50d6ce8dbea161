"""Publishing: render a page's three objects into the status bucket that CloudFront serves (``status/{slug}/…``).

Called on every change that alters a page — its own edits, maintenance windows, and (from the events stream)
incidents opening, being acknowledged or resolving, and monitors changing status.  An unpublished or deleted
page's objects are removed.  Every write is checked against the page's record read after it (:func:`settle`), so
the bucket ends on the latest state however publishes and unpublishes race.  Publishing is best effort at the edge
of a request: a failure is logged, and the next change publishes the page again.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from chalicelib.aws import names
from chalicelib.aws.clients import client
from chalicelib.clock import utcnow
from chalicelib.observability import logger
from chalicelib.settings import get_settings
from chalicelib.status_pages import document, render
from chalicelib.status_pages.store import Page, pages_showing, published_pages, showing

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
        "index.json": _as_json(doc),
        "feed.atom": render.atom_feed(doc, document.feed_entries(page, now), url, feed),
    }


def _as_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


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


class PublishRaced(Exception):
    """A slug's page kept changing while it was being published: its objects may not show the latest state yet
    (the writers of those changes publish it after them)."""


# Each round means the page changed again while the last was written: a person's edits never come this fast.
ROUNDS = 5


def publish(page: Page, old_slug: str | None = None) -> None:
    """The bucket shows the page as stored now, and nothing under a slug it left.  ``page`` is the caller's
    reading, possibly stale already (the refresh's, an event's): :func:`settle` corrects it."""
    try:
        if old_slug and old_slug != page.slug:
            settle(old_slug, None)
    finally:  # found by a fresh-eyes review of issue 19: the old slug's failure (raised after) kept the new one dark
        settle(page.slug, page if page.published else None)


def unpublish(slug: str) -> None:
    settle(slug, None)


def settle(slug: str, page: Page | None) -> None:
    """The slug's objects become those of the page that publishes it now, however writers interleave.

    Writers race: the hourly refresh reads a page as published and renders it while its owner unpublishes it, and
    the refresh's puts land after the owner's delete (or a rename's, or another team's page takes the freed slug).
    So each writer checks, after it writes, what it wrote against the stored state:

    1. Write ``page``'s three objects, or delete them when ``page`` is None (no page publishes the slug).
    2. Read back, strongly consistent, the page that publishes the slug now (:func:`showing`), and what it shows
       now (its public document, built again at the same instant).
    3. The same page at the same version showing the same (or none, as written): done.  Otherwise that page is
       ``page``; go to 1.

    Every change of a page or of what it shows (a monitor's status, an incident) is followed by its writer's own
    publish, and every write by its writer's read-back: so the last write to land is checked against a state read
    after it, and ends only if it wrote that state.  A writer that read a monitor "up" before another wrote it "down"
    and lands last sees the difference and writes "down".
    """
    now = utcnow()
    for _ in range(ROUNDS):
        wrote = _write(slug, page, now)
        current = showing(slug)
        if _state(current) == _state(page) and (current is None or _as_json(document.build(current, now)) == wrote):
            return
        page = current
    raise PublishRaced(f"the page at {slug!r} changed {ROUNDS} times while it was being published")


def _state(page: Page | None) -> tuple[str, int] | None:
    return (page.id, page.version) if page is not None else None


class UnpublishFailed(Exception):
    """S3 kept some of a slug's objects it was asked to delete: the page may still be public."""


def _write(slug: str, page: Page | None, now: datetime) -> str | None:
    """The slug's objects become ``page``'s rendered at ``now`` (its document's JSON is returned), or are deleted."""
    s3 = client("s3")
    bucket = names.status_bucket(get_settings())
    if page is None:
        _delete(bucket, [_key(slug, name) for name in OBJECTS])
        return None
    views = rendered(page, now)
    for name, body in views.items():
        s3.put_object(
            Bucket=bucket,
            Key=_key(slug, name),
            Body=body.encode("utf-8"),
            ContentType=OBJECTS[name],
            CacheControl=CACHE_CONTROL,
        )
    logger.info("status page published", extra={"page_id": page.id, "slug": slug, "version": page.version})
    return views["index.json"]


def _delete(bucket: str, keys: list[str]) -> None:
    """DeleteObjects answers 200 even when it kept some keys (each listed under ``Errors``): those fail it here."""
    answer = client("s3").delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True}
    )
    kept = answer.get("Errors") or []
    if kept:
        raise UnpublishFailed(
            "S3 kept "
            + ", ".join(f"{e.get('Key')} ({e.get('Code')})" for e in kept[:5])
            + (" …" if len(kept) > 5 else "")
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
    """Republish every published page (hourly: the 90-day bars and uptime move with time, not only with events),
    and remove what the bucket holds under any other slug (an unpublish or a delete whose S3 call failed left it
    public).  One page failing does not stop the others.  Returns (published, failed)."""
    done = failed = 0
    try:
        publish_not_found()
    except Exception:  # noqa: BLE001 - logged; the pages go on
        logger.exception("status page 404 publishing failed")
    pages = published_pages()
    for page in pages:
        try:
            publish(page)
            done += 1
        except Exception:  # noqa: BLE001 - logged; the next hour tries again
            logger.exception("status page refresh failed", extra={"page_id": page.id})
            failed += 1
    try:
        left = sorted(slugs_in_bucket() - {page.slug for page in pages})
    except Exception:  # noqa: BLE001 - logged; the next hour lists again
        logger.exception("status page listing failed")
        return done, failed + 1
    for slug in left:
        try:
            settle(slug, showing(slug))  # a page published since the listing is written, not removed
            logger.warning("a slug's objects outlived its page: settled", extra={"slug": slug})
        except Exception:  # noqa: BLE001 - logged; the next hour tries again
            logger.exception("status page removal failed", extra={"slug": slug})
            failed += 1
    return done, failed


def slugs_in_bucket() -> set[str]:
    """Every slug with objects in the bucket (``status/{slug}/…``)."""
    pages = (
        client("s3")
        .get_paginator("list_objects_v2")
        .paginate(Bucket=names.status_bucket(get_settings()), Prefix="status/", Delimiter="/")
    )
    return {p["Prefix"][len("status/") : -1] for answer in pages for p in answer.get("CommonPrefixes", [])}


def republish_for(team_id: str, monitor_ids: set[str]) -> int:
    """Publish every page of the team that shows one of these monitors; returns how many."""
    pages = pages_showing(team_id, monitor_ids)
    for page in pages:
        publish(page)
    return len(pages)
