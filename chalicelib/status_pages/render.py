"""The public document → an HTML page, an Atom feed, an SVG badge.  Pure functions of the document.

The page needs no JavaScript and loads nothing from elsewhere: CSS and icons are inline, fonts are the
visitor's own.  Every colour comes with text (a status is always written out), colours meet WCAG AA contrast,
landmarks and headings give the structure, and the layout is one readable column on a phone.
"""

from __future__ import annotations

from datetime import date
from html import escape as html_escape
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from chalicelib.status_pages.document import LABELS, OVERALL_TEXT
from chalicelib.text import NOT_TEXT


def escape(value: str, quote: bool = True) -> str:
    """HTML-escaped, without the characters text may not carry (any stored before the API refused them)."""
    return html_escape(NOT_TEXT.sub("", value), quote)


# Text-on-colour pairs with a contrast of at least 4.5:1 (white on each).
COLOURS = {
    "operational": "#067647",
    "degraded": "#93370D",
    "partial_outage": "#B42318",
    "major_outage": "#B42318",
    "maintenance": "#175CD3",
}
BAR = {"up": "#079455", "some": "#DC6803", "down": "#D92D20", "none": "#98A2B3"}
ICONS = {  # decorative: the status is always written beside them
    "operational": '<path d="M6 10.5l2.5 2.5L14 7.5" fill="none" stroke="#fff" stroke-width="2"/>',
    "degraded": '<path d="M10 5.5v5.5M10 13.5v1" stroke="#fff" stroke-width="2"/>',
    "partial_outage": '<path d="M7 7l6 6M13 7l-6 6" stroke="#fff" stroke-width="2"/>',
    "major_outage": '<path d="M7 7l6 6M13 7l-6 6" stroke="#fff" stroke-width="2"/>',
    "maintenance": '<path d="M6.5 10h7" stroke="#fff" stroke-width="2"/>',
}

CSS = """
:root{color-scheme:light;--text:#101828;--muted:#475467;--line:#D0D5DD;--bg:#FFFFFF;--panel:#F9FAFB}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
a{color:#175CD3}
.wrap{max-width:56rem;margin:0 auto;padding:1.5rem 1rem 3rem}
header h1{font-size:1.75rem;margin:0 0 .25rem}
header p{margin:0;color:var(--muted)}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#fff;padding:.5rem}
.banner{display:flex;align-items:center;gap:.75rem;margin:1.5rem 0;padding:1rem 1.25rem;border-radius:.5rem;color:#fff;
font-weight:600;font-size:1.125rem}
.icon{flex:none;width:1.25rem;height:1.25rem;border-radius:50%}
section{margin:2rem 0}
h2{font-size:1.25rem;margin:0 0 .75rem}
h3{font-size:1rem;margin:1rem 0 .5rem;color:var(--muted)}
.list{list-style:none;margin:0;padding:0;border:1px solid var(--line);border-radius:.5rem}
.list>li{padding:1rem;border-top:1px solid var(--line)}
.list>li:first-child{border-top:0}
.row{display:flex;flex-wrap:wrap;justify-content:space-between;gap:.25rem 1rem;align-items:baseline}
.name{font-weight:600}
.status{display:inline-flex;align-items:center;gap:.375rem;font-weight:600}
.dot{width:.75rem;height:.75rem;border-radius:50%;display:inline-block}
.bars{display:block;width:100%;height:2.25rem;margin:.5rem 0 .25rem}
.meta{display:flex;justify-content:space-between;color:var(--muted);font-size:.875rem}
.incident{background:var(--panel)}
.incident h3{margin:0 0 .25rem;color:var(--text)}
.incident p{margin:.25rem 0}
.incident ol{margin:.5rem 0 0;padding-left:1.25rem}
.muted{color:var(--muted)}
footer{margin-top:3rem;color:var(--muted);font-size:.875rem}
@media (max-width:30rem){header h1{font-size:1.4rem}.banner{font-size:1rem}}
"""


def _icon(status: str) -> str:
    colour = COLOURS.get(status, COLOURS["operational"])
    return (
        f'<svg class="icon" viewBox="0 0 20 20" aria-hidden="true" focusable="false" style="background:{colour}">'
        f"{ICONS.get(status, '')}</svg>"
    )


def _when(value: str | None) -> str:
    """``2026-11-30T14:02:00Z`` → ``30 Nov 2026, 14:02 UTC`` inside a machine-readable <time>."""
    if not value:
        return ""
    text = f"{date.fromisoformat(value[:10]):%d %b %Y}, {value[11:16]} UTC"
    return f'<time datetime="{escape(value)}">{escape(text)}</time>'


def _bars(days: list[dict[str, Any]], name: str, uptime: float | None) -> str:
    """90 daily bars as one image with a written summary; each bar names its day and uptime on hover."""
    width, gap = 3, 1
    rects = []
    for i, day in enumerate(days):
        pct = day["uptime_pct"]
        kind = "none" if pct is None else "up" if pct >= 99.9 else "some" if pct >= 95 else "down"
        label = f"{day['date']}: {'no data' if pct is None else f'{pct:g}% uptime'}"
        rects.append(
            f'<rect x="{i * (width + gap)}" y="0" width="{width}" height="34" rx="1" fill="{BAR[kind]}">'
            f"<title>{escape(label)}</title></rect>"
        )
    summary = f"{name}: {'no data yet' if uptime is None else f'{uptime:g}% uptime'} over the last 90 days"
    total = len(days) * (width + gap) - gap
    return (
        f'<svg class="bars" viewBox="0 0 {total} 34" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(summary)}">{"".join(rects)}</svg>'
    )


def _status(status: str) -> str:
    return (
        f'<span class="status"><span class="dot" style="background:{COLOURS[status]}" aria-hidden="true"></span>'
        f"{escape(LABELS[status])}</span>"
    )


def _component(c: dict[str, Any]) -> str:
    uptime = "no data yet" if c["uptime_90d"] is None else f"{c['uptime_90d']:g}% uptime"
    return (
        f'<li><div class="row"><span class="name">{escape(c["name"])}</span>{_status(c["status"])}</div>'
        f"{_bars(c['days'], c['name'], c['uptime_90d'])}"
        f'<div class="meta" aria-hidden="true"><span>90 days ago</span><span>{escape(uptime)}</span>'
        "<span>Today</span></div></li>"
    )


def _incident(i: dict[str, Any]) -> str:
    updates = "".join(
        f"<li>{_when(u['at'])} — <strong>{escape(u['status'].capitalize())}</strong>: {escape(u['text'])}</li>"
        for u in i["updates"]
    )
    return (
        f'<li class="incident"><h3>{escape(i["title"])}</h3>'
        f'<p class="muted">Started {_when(i["started_at"])}'
        f"{' · resolved ' + _when(i['resolved_at']) if i['resolved_at'] else ''}</p>"
        f"<ol>{updates}</ol></li>"
    )


def _maintenance(m: dict[str, Any]) -> str:
    state = "In progress" if m["status"] == "in_progress" else "Scheduled"
    description = f"<p>{escape(m['description'])}</p>" if m.get("description") else ""
    affected = ", ".join(m["components"])
    return (
        f'<li class="incident"><h3>{escape(m["title"])}</h3>'
        f"<p><strong>{state}</strong>: {_when(m['starts_at'])} to {_when(m['ends_at'])}</p>"
        f'{description}<p class="muted">Affects: {escape(affected)}</p></li>'
    )


def html_page(doc: dict[str, Any], feed_url: str) -> str:
    name = doc["name"]
    overall = doc["overall_status"]
    headline = OVERALL_TEXT[overall]
    description = doc.get("description") or f"Live status and incident history of {name}."
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for c in doc["components"]:
        groups.setdefault(c["group"], []).append(c)
    component_html = ""
    for group, items in groups.items():
        heading = f"<h3>{escape(group)}</h3>" if group else ""
        component_html += f'{heading}<ul class="list">{"".join(_component(c) for c in items)}</ul>'
    if not doc["components"]:
        component_html = '<p class="muted">No components yet.</p>'
    active = doc["active_incidents"]
    active_html = (
        f'<section aria-labelledby="active"><h2 id="active">Active incidents</h2>'
        f'<ul class="list">{"".join(_incident(i) for i in active)}</ul></section>'
        if active
        else ""
    )
    maintenance = doc["maintenance"]
    maintenance_html = (
        f'<section aria-labelledby="maintenance"><h2 id="maintenance">Maintenance</h2>'
        f'<ul class="list">{"".join(_maintenance(m) for m in maintenance)}</ul></section>'
        if maintenance
        else ""
    )
    recent = doc["recent_incidents"]
    recent_html = (
        f'<ul class="list">{"".join(_incident(i) for i in recent)}</ul>'
        if recent
        else '<p class="muted">No incidents in the last 14 days.</p>'
    )
    feed_link = (
        f'<link rel="alternate" type="application/atom+xml" title="{escape(name)} incidents" href="{escape(feed_url)}">'
    )
    body = (
        f"<header><h1>{escape(name)} status</h1>"
        f"{'<p>' + escape(doc['description']) + '</p>' if doc.get('description') else ''}</header>"
        '<main id="content">'
        f'<p class="banner" role="status" style="background:{COLOURS[overall]}">{_icon(overall)}{escape(headline)}</p>'
        f"{active_html}{maintenance_html}"
        f'<section aria-labelledby="components"><h2 id="components">Components</h2>{component_html}</section>'
        f'<section aria-labelledby="history"><h2 id="history">Past incidents</h2>{recent_html}</section>'
        "</main>"
        f'<footer><p>Updated {_when(doc["updated_at"])}. <a href="{escape(feed_url)}">Subscribe to incidents (Atom)</a>'
        " · Powered by Vigil</p></footer>"
    )
    return _html(f"{name} status: {headline}", description, body, feed_link, skip="Skip to the status")


def not_found_page() -> str:
    """What the status domain answers for a page that does not exist or is not published (CloudFront's error
    page for the bucket's 403/404): it says so, and names no page."""
    body = (
        "<header><h1>Status page not found</h1></header>"
        '<main id="content"><p>There is no published status page at this address. Check the link, or ask the '
        "team that runs the service for its status page address.</p></main>"
        "<footer><p>Powered by Vigil</p></footer>"
    )
    return _html("Status page not found", "There is no published status page at this address.", body)


def _html(title: str, description: str, body: str, head: str = "", skip: str = "Skip to the content") -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        f'<meta name="description" content="{escape(description)}">'
        f"{head}<style>{CSS}</style></head>"
        f'<body><a class="skip" href="#content">{escape(skip)}</a><div class="wrap">{body}</div></body></html>\n'
    )


def atom_feed(doc: dict[str, Any], entries: list[dict[str, Any]], page_url: str, feed_url: str) -> str:
    def text(value: str) -> str:
        return xml_escape(NOT_TEXT.sub("", value), {'"': "&quot;"})

    items = []
    for i in entries:
        updated = i["resolved_at"] or (i["updates"][0]["at"] if i["updates"] else i["started_at"])
        summary = " ".join(f"{u['status'].capitalize()}: {u['text']}" for u in reversed(i["updates"]))
        items.append(
            "<entry>"
            f"<id>{text(page_url)}#{text(i['id'])}</id>"
            f"<title>{text(i['title'])}</title>"
            f"<updated>{text(updated)}</updated>"
            f"<published>{text(i['started_at'])}</published>"
            f'<link rel="alternate" href="{text(page_url)}"/>'
            f"<summary>{text(summary or i['title'])}</summary>"
            "</entry>"
        )
    newest = entries[0]["resolved_at"] or entries[0]["started_at"] if entries else doc["updated_at"]
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<id>{text(page_url)}</id>"
        f"<title>{text(doc['name'])} incidents</title>"
        f"<updated>{text(newest)}</updated>"
        f'<link rel="self" href="{text(feed_url)}"/>'
        f'<link rel="alternate" href="{text(page_url)}"/>'
        "<author><name>Vigil</name></author>"
        f"{''.join(items)}</feed>\n"
    )


BADGE_TEXT = {
    "operational": "up",
    "degraded": "degraded",
    "partial_outage": "partial outage",
    "major_outage": "down",
    "maintenance": "maintenance",
}


def _text_width(value: str) -> int:
    """About Verdana 11 px: wide enough for the text, so no font needs loading."""
    return int(sum(7.5 if ch.isupper() or ch in "mwMW" else 6.2 for ch in value)) + 10


def badge(label: str, status: str) -> str:
    value = BADGE_TEXT[status]
    left, right = _text_width(label), _text_width(value)
    width = left + right
    colour = COLOURS[status]
    title = f"{label}: {value}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<rect width="{left}" height="20" fill="#344054"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{left / 2}" y="14">{escape(label)}</text>'
        f'<text x="{left + right / 2}" y="14">{escape(value)}</text></g></svg>'
    )
