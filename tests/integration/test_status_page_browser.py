"""The status page in a real headless browser (Debian's Chromium driven by Playwright): it renders with no
JavaScript and nothing from elsewhere, reads on a phone, and axe-core finds no serious accessibility issue.

Screenshots and the axe report are saved in ``test-artifacts/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib.clock import isoz, utcnow
from chalicelib.monitors.models import RollupModel
from chalicelib.status_pages import service as pages
from chalicelib.status_pages.publish import rendered
from chalicelib.status_pages.render import not_found_page
from tests.factories import create_monitor
from tests.support import open_incident, recover

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs it (`make browser`)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


def _page_html(api: Any) -> str:
    """A page with everything on it: groups, an outage, maintenance, a past incident, 90 days of bars."""
    shop = create_monitor(api, url="https://shop.example.invalid/")
    api_monitor = create_monitor(api, url="https://api.example.invalid/")
    blog = create_monitor(api, url="https://blog.example.invalid/")
    today = utcnow().date()
    for monitor in (shop, api_monitor, blog):
        for days_ago in range(0, 60):
            failures = 30 if days_ago in (3, 17) else 0
            day = today - timedelta(days=days_ago)
            expires = utcnow() + timedelta(days=400)
            RollupModel(
                monitor["id"],
                f"D#{day}",
                team_id=monitor["team_id"],
                checks=1440,
                failures=failures,
                expires_at=expires,
            ).save()
    open_incident(blog["team_id"], blog["id"], utcnow() - timedelta(minutes=90), status_code=503)
    recover(blog["team_id"], blog["id"], utcnow() - timedelta(minutes=60))
    open_incident(api_monitor["team_id"], api_monitor["id"], utcnow() - timedelta(minutes=5), status_code=503)
    now = utcnow()
    window = {"title": "Database upgrade", "description": "Writes may pause for a minute.", "monitor_ids": [shop["id"]]}
    window |= {"starts_at": isoz(now + timedelta(days=1)), "ends_at": isoz(now + timedelta(days=1, hours=1))}
    assert api.post("/v1/maintenance-windows", window).status == 201
    components = [
        {"monitor_id": shop["id"], "display_name": "Storefront", "group": "Shopping"},
        {"monitor_id": api_monitor["id"], "display_name": "Public API", "group": "Shopping"},
        {"monitor_id": blog["id"], "display_name": "Blog", "group": "Content"},
    ]
    page = pages.create(
        shop["team_id"],
        {"name": "Acme", "slug": "acme", "description": "Acme's services", "components": components},
        utcnow(),
    )
    return rendered(page, utcnow())["index.html"]


def test_the_status_page_renders_without_javascript_is_accessible_and_reads_on_a_phone(api, alice, httpserver, browser):
    html = _page_html(api)
    httpserver.expect_request("/status/acme").respond_with_data(html, content_type="text/html; charset=utf-8")
    url = httpserver.url_for("/status/acme")
    ARTIFACTS.mkdir(exist_ok=True)

    # 1. No JavaScript: it all renders, and nothing is fetched from anywhere but the page's own server.
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    requested: list[str] = []
    tab.on("request", lambda request: requested.append(request.url))
    tab.goto(url)
    assert tab.title().startswith("Acme status: ")
    assert tab.locator("h1").inner_text() == "Acme status"
    assert tab.locator("main [role=status]").inner_text() == "Some systems are down"
    assert tab.locator("meta[name=description]").get_attribute("content") == "Acme's services"
    assert tab.get_by_role("heading", name="Active incidents").is_visible()
    assert tab.get_by_text("Public API is down").is_visible()
    assert tab.get_by_text("Database upgrade").is_visible()
    assert requested == [url]
    tab.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)
    context.close()

    # 2. On a phone: one column, no sideways scrolling.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    tab = phone.new_page()
    tab.goto(url)
    assert tab.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    tab.screenshot(path=str(ARTIFACTS / "status-page-phone.png"), full_page=True)

    # 3. axe-core (bundled by axe-playwright-python): no serious or critical violation.
    assert _serious_violations(tab, "status-page-axe.json") == []

    # 4. The page CloudFront shows for a missing one: as accessible, and as self-contained.
    httpserver.expect_request("/status/nope").respond_with_data(
        not_found_page(), status=404, content_type="text/html; charset=utf-8"
    )
    requested.clear()
    tab.on("request", lambda request: requested.append(request.url))
    tab.goto(httpserver.url_for("/status/nope"))
    assert tab.locator("h1").inner_text() == "Status page not found"
    assert requested == [httpserver.url_for("/status/nope")]
    assert _serious_violations(tab, "status-page-404-axe.json") == []
    phone.close()


def _serious_violations(tab: Any, report: str) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(tab)
    (ARTIFACTS / report).write_text(json.dumps(results.response, indent=2))
    assert results.response["passes"], "axe ran no checks"
    return [
        f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes)"
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]
