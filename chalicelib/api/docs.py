"""GET /openapi.json and GET /docs: the API's own description of itself (no auth).

Both are built from the declared routes on first use and cached per settings.
The reference page is rendered on the server from the OpenAPI document, with
inline CSS and no script or external asset, so it works offline and cannot be
made to run anything a schema string contains (every string is escaped).
"""

from __future__ import annotations

import functools
import json
import re
from html import escape
from typing import Any

from chalicelib.api.framework import PROBLEM_JSON, Call, Reply, Router, all_routes
from chalicelib.api.openapi import build_openapi, problem_codes
from chalicelib.settings import Settings, get_settings

router = Router("docs")

CODE_SPAN = re.compile(r"`([^`]+)`")
CACHE = {"Cache-Control": "public, max-age=300"}
AUTH_LABELS = {
    "none": "None.",
    "user": "Bearer token: an access token (API keys are refused here).",
    "team": "Bearer token: an access token, acting in the user's current team (API keys are refused here).",
}
CONSTRAINTS = [
    ("minLength", "min length {}"),
    ("maxLength", "max length {}"),
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minItems", "at least {} items"),
    ("maxItems", "at most {} items"),
    ("pattern", "matches {}"),
    ("format", "format {}"),
]
STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#fff}
header,main,nav{max-width:60rem;margin:0 auto;padding:0 1.25rem}
header{padding-top:1.5rem}
h1{margin-bottom:.25rem}h2{border-bottom:2px solid #dde3ee;padding-bottom:.25rem;margin-top:2.5rem}
h3{margin:.25rem 0}h4{margin:1rem 0 .25rem;font-size:.95rem}
code{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f2f4f8;padding:0 .2rem;
border-radius:3px}
pre{background:#f2f4f8;padding:.75rem;overflow-x:auto;border-radius:4px}
pre code{padding:0;background:none}
nav>ul{columns:2;padding-left:1.25rem}nav li{break-inside:avoid}
.op{border:1px solid #dde3ee;border-radius:6px;padding:.75rem 1rem;margin:1rem 0}
.method{display:inline-block;min-width:4.2rem;text-align:center;font:700 12px/1.9 ui-monospace,monospace;
color:#fff;border-radius:3px;margin-right:.5rem}
.get{background:#1f6feb}.post{background:#1a7f37}.patch{background:#9a6700}.put{background:#8250df}
.delete{background:#cf222e}
.auth{color:#57606a;font-size:.9rem}
table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.25rem 0}
th,td{text-align:left;vertical-align:top;border-bottom:1px solid #e6e9ef;padding:.3rem .5rem}
th{background:#f6f8fa}
:target{outline:2px solid #f0b400;outline-offset:2px}
"""


@router.route("GET", "/openapi.json", summary="The OpenAPI 3.1 document", auth="none", response=dict[str, Any])
def openapi_document(call: Call) -> Reply:
    """Generated from the routes' declarations; validated by the test suite."""
    return Reply(body=_document(get_settings()), headers=dict(CACHE))


@router.route("GET", "/docs", summary="This API reference, as HTML", auth="none", content_type="text/html")
def docs_page(call: Call) -> Reply:
    """A self-contained page rendered from the OpenAPI document; it works offline."""
    return Reply(body=_page(get_settings()), headers=dict(CACHE), content_type="text/html; charset=utf-8")


@functools.lru_cache(maxsize=4)
def _document(settings: Settings) -> dict[str, Any]:
    from chalicelib.api.routes import routers  # which lists this module: import it when first needed

    return build_openapi(all_routes(routers(settings)), settings)


@functools.lru_cache(maxsize=4)
def _page(settings: Settings) -> str:
    return render_page(_document(settings))


# ---------------------------------------------------------------- rendering


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _text(value: Any) -> str:
    """Escaped prose, with the document's `code spans` shown as code."""
    return CODE_SPAN.sub(r"<code>\1</code>", _e(value))


def _ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[1] if isinstance(ref, str) else None


class _Renderer:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.schemas: dict[str, Any] = doc.get("components", {}).get("schemas", {})
        self.responses: dict[str, Any] = doc.get("components", {}).get("responses", {})

    def type_of(self, schema: dict[str, Any]) -> str:
        """A short, linked, escaped description of a schema's type."""
        name = _ref_name(schema)
        if name is not None:
            return f'<a href="#schema-{_e(name)}">{_e(name)}</a>'
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return " or ".join(self.type_of(s) for s in schema[key])
        if "const" in schema:
            return f"<code>{_e(json.dumps(schema['const']))}</code>"
        if "enum" in schema:
            return "one of " + ", ".join(f"<code>{_e(json.dumps(v))}</code>" for v in schema["enum"])
        kind = schema.get("type", "any")
        if isinstance(kind, list):
            return " or ".join(_e(k) for k in kind)
        if kind == "array":
            return "array of " + self.type_of(schema.get("items", {}))
        if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
            return "object of " + self.type_of(schema["additionalProperties"])
        return _e(kind)

    def constraints(self, schema: dict[str, Any]) -> str:
        parts: list[str] = []
        for sub in [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]:
            for key, label in CONSTRAINTS:
                if key in sub:
                    parts.append(_e(label.format(sub[key])))
        if "default" in schema:
            parts.append(f"default <code>{_e(json.dumps(schema['default']))}</code>")
        return "; ".join(parts)

    def fields_table(self, schema: dict[str, Any]) -> str:
        model = self.schemas.get(_ref_name(schema) or "", schema)
        properties: dict[str, Any] = model.get("properties", {})
        if not properties:
            members = model.get("oneOf") or model.get("anyOf")
            if members and model is not schema:  # a named union (a monitor of each type): each member's fields
                return f"<p>One of: {self.type_of(model)}</p>" + "".join(
                    f"<h5>{self.type_of(member)}</h5>{self.fields_table(member)}" for member in members
                )
            return f"<p>{self.type_of(schema)}</p>"
        required = set(model.get("required", []))
        rows = "".join(
            f"<tr><td><code>{_e(name)}</code></td><td>{self.type_of(prop)}</td>"
            f"<td>{'yes' if name in required else 'no'}</td><td>{self.constraints(prop)}</td>"
            f"<td>{_text(prop.get('description', ''))}</td></tr>"
            for name, prop in properties.items()
        )
        extra = "" if model.get("additionalProperties") is not False else "<p>Unknown fields are refused (422).</p>"
        return (
            "<table><tr><th>Field</th><th>Type</th><th>Required</th><th>Constraints</th><th>Description</th></tr>"
            f"{rows}</table>{extra}"
        )

    def parameters(self, params: list[dict[str, Any]]) -> str:
        if not params:
            return ""
        rows = "".join(
            f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}</td><td>{self.type_of(p['schema'])}</td>"
            f"<td>{'yes' if p.get('required') else 'no'}</td><td>{self.constraints(p['schema'])}</td>"
            f"<td>{_text(p.get('description', ''))}</td></tr>"
            for p in params
        )
        return (
            "<h4>Parameters</h4><table><tr><th>Name</th><th>In</th><th>Type</th><th>Required</th>"
            f"<th>Constraints</th><th>Description</th></tr>{rows}</table>"
        )

    def request_body(self, body: dict[str, Any] | None) -> str:
        if not body:
            return ""
        out = ["<h4>Request body</h4>"]
        for media, content in body.get("content", {}).items():
            schema = content.get("schema", {})
            out.append(f"<p><code>{_e(media)}</code>: {self.type_of(schema)}</p>{self.fields_table(schema)}")
        return "".join(out)

    def responses_table(self, responses: dict[str, Any]) -> str:
        rows = []
        for status, response in responses.items():
            resolved = self.responses.get(_ref_name(response) or "", response)
            content = resolved.get("content", {})
            kinds = "<br>".join(
                f"<code>{_e(media)}</code> {self.type_of(c.get('schema', {}))}" for media, c in content.items()
            )
            meaning = _text(resolved.get("description", ""))
            rows.append(f"<tr><td>{_e(status)}</td><td>{meaning}</td><td>{kinds or '—'}</td></tr>")
        return (
            "<h4>Responses</h4><table><tr><th>Status</th><th>Meaning</th><th>Body</th></tr>"
            + "".join(rows)
            + "</table>"
        )

    def operation(self, path: str, method: str, op: dict[str, Any]) -> str:
        auth = AUTH_LABELS.get(op.get("x-vigil-auth", ""), "Bearer token." if op.get("security") else "None.")
        if op.get("x-vigil-scope"):
            auth = (
                "Bearer token: an access token acting in the user's current team, "
                f"or an API key with the {op['x-vigil-scope']} scope."
            )
        description = f"<p>{_text(op['description'])}</p>" if op.get("description") else ""
        return (
            f'<article class="op" id="op-{_e(op["operationId"])}">'
            f'<h3><span class="method {_e(method)}">{_e(method.upper())}</span><code>{_e(path)}</code></h3>'
            f"<p><strong>{_e(op.get('summary', ''))}</strong></p>{description}"
            f'<p class="auth">Authentication: {_e(auth)}</p>'
            f"{self.parameters(op.get('parameters', []))}{self.request_body(op.get('requestBody'))}"
            f"{self.responses_table(op.get('responses', {}))}</article>"
        )

    def operations_by_tag(self) -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
        grouped: dict[str, list[tuple[str, str, dict[str, Any]]]] = {t["name"]: [] for t in self.doc.get("tags", [])}
        for path, methods in self.doc.get("paths", {}).items():
            for method, op in methods.items():
                for tag in op.get("tags", ["other"]):
                    grouped.setdefault(tag, []).append((path, method, op))
        return grouped

    def api_keys(self) -> str:
        """How to make a key and use it, with curl."""
        server = self.doc.get("servers", [{}])[0].get("url", "")
        scopes = sorted(
            {
                op["x-vigil-scope"]
                for m in self.doc.get("paths", {}).values()
                for op in m.values()
                if op.get("x-vigil-scope")
            }
        )
        create = (
            f"curl -X POST {server}/v1/api-keys \\\n"
            '  -H "Authorization: Bearer $ACCESS_TOKEN" -H "Content-Type: application/json" \\\n'
            """  -d '{"name": "CI deploys", "scopes": ["monitors:read", "monitors:write"]}'"""
        )
        use = (
            f'curl -i {server}/v1/monitors -H "Authorization: Bearer $VIGIL_API_KEY"\n\n'
            "HTTP/1.1 200 OK\n"
            'RateLimit-Policy: "default";q=60;w=60, "team";q=180;w=60\n'
            'RateLimit: "default";r=59;t=42, "team";r=179;t=42'
        )
        return (
            '<section id="api-keys"><h2>API keys</h2>'
            "<p>Scripts, CI jobs and Terraform use an API key instead of a person's sign-in. An owner or admin "
            "creates one for the current team (<code>POST /v1/api-keys</code>); the <code>key</code> in the answer "
            "is shown this once, so store it as a secret at once.</p>"
            f"<pre><code>{_e(create)}</code></pre>"
            "<p>Send it in the <code>Authorization</code> header, never in a URL (a key in the query string is "
            "refused with a 400: revoke it). A key acts in its team, reaches only the operations that name one of "
            "its scopes, and never does more than its creator's role allows now; it stops working when its "
            "creator leaves the team or when it is revoked (<code>DELETE /v1/api-keys/{id}</code>).</p>"
            f"<pre><code>{_e(use)}</code></pre>"
            "<p>Every answer to a key says how many requests remain in the current minute: the key's own "
            "(<code>default</code>, the team's plan's <code>api_requests_per_minute</code>) and all the team's "
            "keys together (<code>team</code>, three times that). Over either, the answer is a 429 with "
            "<code>Retry-After</code> in seconds.</p>"
            "<p>Scopes: " + ", ".join(f"<code>{_e(scope)}</code>" for scope in scopes) + ".</p></section>"
        )

    def problems(self) -> str:
        rows = "".join(
            f'<tr id="problem-{_e(p.code)}"><td><code>{_e(p.code)}</code></td><td>{p.status}</td>'
            f"<td>{_e(p.title)}</td></tr>"
            for p in problem_codes()
        )
        example = {
            "type": f"{self.doc['servers'][0]['url']}/docs#problem-validation_error",
            "title": "Validation failed",
            "status": 422,
            "detail": "email: Field required",
            "code": "validation_error",
            "instance": "/v1/auth/register",
            "errors": [{"field": "email", "message": "Field required"}],
        }
        return (
            '<section id="problems"><h2>Errors</h2>'
            f"<p>Every error is an RFC 9457 problem detail sent as <code>{_e(PROBLEM_JSON)}</code>. "
            "<code>status</code> repeats the HTTP status, <code>code</code> is a stable slug to branch on, "
            "<code>detail</code> explains this occurrence, and <code>type</code> links to the code below. "
            "A 422 lists one entry per invalid field in <code>errors</code>.</p>"
            f"<pre><code>{_e(json.dumps(example, indent=2))}</code></pre>"
            "<table><tr><th>Code</th><th>Status</th><th>Title</th></tr>"
            f"{rows}</table></section>"
        )

    def schemas_section(self) -> str:
        parts = ['<section id="schemas"><h2>Schemas</h2>']
        for name, schema in self.schemas.items():
            description = f"<p>{_text(schema['description'])}</p>" if schema.get("description") else ""
            parts.append(
                f'<article id="schema-{_e(name)}"><h3>{_e(name)}</h3>{description}'
                f"{self.fields_table({'$ref': f'#/components/schemas/{name}'})}</article>"
            )
        parts.append("</section>")
        return "".join(parts)

    def page(self) -> str:
        info = self.doc.get("info", {})
        tags = {t["name"]: t.get("description", "") for t in self.doc.get("tags", [])}
        grouped = self.operations_by_tag()
        intro = "".join(f"<p>{_text(p)}</p>" for p in info.get("description", "").split("\n\n") if p)
        toc = (
            "".join(
                f'<li><a href="#tag-{_e(tag)}">{_e(tag)}</a><ul>'
                + "".join(
                    f'<li><a href="#op-{_e(op["operationId"])}">{_e(method.upper())} {_e(path)}</a></li>'
                    for path, method, op in ops
                )
                + "</ul></li>"
                for tag, ops in grouped.items()
                if ops
            )
            + '<li><a href="#api-keys">API keys</a></li><li><a href="#schemas">Schemas</a></li>'
            + '<li><a href="#problems">Errors</a></li>'
        )
        sections = "".join(
            f'<section id="tag-{_e(tag)}"><h2>{_e(tag)}</h2>'
            + (f"<p>{_text(tags[tag])}</p>" if tags.get(tag) else "")
            + "".join(self.operation(path, method, op) for path, method, op in ops)
            + "</section>"
            for tag, ops in grouped.items()
            if ops
        )
        server = self.doc.get("servers", [{}])[0].get("url", "")
        # The link to openapi.json is relative so it still works under an API Gateway stage prefix.
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(info.get('title', 'API'))} reference</title><style>{STYLE}</style></head><body>"
            f"<header><h1>{_e(info.get('title', 'API'))}</h1><p>Version {_e(info.get('version', ''))} · "
            f'base URL <code>{_e(server)}</code> · machine-readable: <a href="openapi.json">openapi.json</a></p>'
            f"{intro}</header>"
            f'<nav aria-label="Contents"><h2>Contents</h2><ul>{toc}</ul></nav>'
            f"<main>{self.api_keys()}{sections}{self.schemas_section()}{self.problems()}</main></body></html>"
        )


def render_page(doc: dict[str, Any]) -> str:
    """The HTML reference for an OpenAPI document; every string from the document is escaped."""
    return _Renderer(doc).page()
