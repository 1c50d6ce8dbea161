"""GET /openapi.json and GET /docs: generated from the declared routes, valid, complete, offline."""

from __future__ import annotations

import html
import re
import typing
from typing import Any

from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from pydantic import BaseModel, Field, RootModel

from chalicelib.api.docs import render_page
from chalicelib.api.framework import Call, Out, Router, all_routes
from chalicelib.api.openapi import build_openapi, problem_codes
from chalicelib.api.routes import routers
from chalicelib.schema import Schema

EXTERNAL_ASSET = re.compile(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def declared(settings) -> list[Any]:
    return all_routes(routers(settings))


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        section, name = node["$ref"].split("/")[-2:]
        node = doc["components"][section][name]
    return node


def test_the_document_validates_as_openapi_3_1(api):
    r = api.get("/openapi.json")

    assert r.status == 200, r.body
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "public, max-age=300"
    doc = r.json
    assert doc["openapi"] == "3.1.0"
    validate(doc, cls=OpenAPIV31SpecValidator)
    assert doc["info"]["title"] == "Vigil API"
    assert doc["info"]["version"] == "0.1.0"
    assert doc["servers"] == [{"url": "https://app.vigil.test"}]
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearerAuth"]["description"],
    }
    assert schemes["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "vgl_ API key",
        "description": schemes["apiKey"]["description"],
    }
    assert "Authorization header only" in schemes["apiKey"]["description"]


def test_it_lists_every_declared_route_and_no_dev_route(api, settings):
    doc = api.get("/openapi.json").json

    listed = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert listed == {(route.method, route.path) for route in declared(settings)}
    assert ("POST", "/v1/auth/register") in listed
    assert not [path for path in doc["paths"] if path.startswith("/dev")]
    operation_ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))


def union_members(model: type[BaseModel]) -> list[type[BaseModel]]:
    """The models of a ``RootModel`` over a union, in order (none for any other model)."""
    if not issubclass(model, RootModel):
        return []
    members = typing.get_args(model.model_fields["root"].annotation)  # the union's, each Annotated[Model, Tag]
    return [typing.get_args(member)[0] for member in members]


def test_every_auth_route_has_security_and_every_body_route_a_request_body(api, settings):
    doc = api.get("/openapi.json").json

    for route in declared(settings):
        op = doc["paths"][route.path][route.method.lower()]
        if route.auth == "none":
            assert "security" not in op, route.path
        else:
            # An operation an API key may call names the key's scope: the alternative to a signed-in user's token.
            keys = [{"apiKey": [route.scope]}] if route.scope else []
            assert op["security"] == [{"bearerAuth": []}, *keys], route.path
            assert op.get("x-vigil-scope") == route.scope, route.path
            assert {"401", "403", "429"} <= set(op["responses"]), route.path
        if route.body is not None:
            body = op["requestBody"]
            assert body["required"] is True
            schema = resolve(doc, body["content"]["application/json"]["schema"])
            models = union_members(route.body)  # a union discriminated by "type": each member's own fields
            schemas = [resolve(doc, s) for s in schema["oneOf"]] if models else [schema]
            assert len(schemas) == len(models or [route.body]), route.path
            for one, model in zip(schemas, models or [route.body], strict=True):
                assert set(one["properties"]) == {f.alias or name for name, f in model.model_fields.items()}
            assert {"400", "413", "422"} <= set(op["responses"]), route.path
        else:
            assert "requestBody" not in op, route.path
        assert str(route.status) in op["responses"], route.path


def test_every_error_response_is_a_problem(api):
    doc = api.get("/openapi.json").json

    problem = doc["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    assert "errors" in problem["properties"]
    for path, ops in doc["paths"].items():
        for op in ops.values():
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    content = resolve(doc, response)["content"]
                    assert content["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}, (
                        path,
                        status,
                    )


def test_only_health_answers_an_error_with_its_own_body_and_a_kms_outage_is_a_problem_with_retry_after(api):
    doc = api.get("/openapi.json").json

    own = {
        (method.upper(), path, status)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        for status, response in op["responses"].items()
        if int(status) >= 400 and set(resolve(doc, response)["content"]) != {"application/problem+json"}
    }
    assert own == {("GET", "/health", "503")}
    sealing = resolve(doc, doc["paths"]["/v1/monitors"]["post"]["responses"]["503"])
    assert set(sealing["content"]) == {"application/problem+json"}  # not a monitor: sealing was refused
    assert "Retry-After" in sealing["headers"]


def test_a_response_model_nests_its_models_in_components(api):
    doc = api.get("/openapi.json").json

    register = doc["paths"]["/v1/auth/register"]["post"]
    created = register["responses"]["201"]["content"]["application/json"]["schema"]
    tokens = resolve(doc, created)
    assert tokens["properties"]["user"] == {"$ref": "#/components/schemas/UserOut"}
    assert "UserOut" in doc["components"]["schemas"]
    assert doc["paths"]["/v1/auth/logout"]["post"]["responses"]["204"] == {"description": "No Content"}


def test_docs_renders_a_self_contained_reference(api, settings):
    r = api.get("/docs")

    assert r.status == 200, r.body
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "public, max-age=300"
    page = r.text
    assert page.startswith("<!doctype html>")
    for route in declared(settings):
        assert f"<code>{route.path}</code>" in page, route.path
        assert html.escape(route.summary) in page
    assert "<script" not in page.lower()
    assert not EXTERNAL_ASSET.findall(page)
    assert "/dev/outbox" not in page


def test_every_problem_type_links_to_an_anchor_on_the_docs_page(api):
    page = api.get("/docs").text
    codes = {p.code for p in problem_codes()}
    assert {"invalid_json", "validation_error", "unauthorized", "not_found", "payload_too_large"} <= codes

    for code in codes:
        assert f'id="problem-{code}"' in page, code
    problem = api.get("/no/such/route").json
    base, anchor = problem["type"].split("#")
    assert base == "https://app.vigil.test/docs"
    assert f'id="{anchor}"' in page


# ---------------------------------------------------------------- the generator on a route of every shape


class ThingQuery(Schema):
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, description="From `next_cursor`.")


class NoteIn(Schema):
    text: str = Field(min_length=1, max_length=500, description="<img src=x onerror=alert(1)>")


class ThingOut(Out):
    id: str
    notes: list[str]


def make_router() -> Router:
    router = Router("things</h2><script>alert(1)</script>")

    @router.route("GET", "/v1/things", summary="List things", query=ThingQuery, response=list[ThingOut])
    def list_things(call: Call) -> list[ThingOut]:
        return []

    @router.route(
        "POST",
        "/v1/things/{thing_id}/notes",
        summary="<script>alert('summary')</script>",
        auth="team",
        permission="write",
        body=NoteIn,
        response=ThingOut,
        status=201,
        errors=(404, 409),
    )
    def add_note(call: Call, thing_id: str) -> ThingOut:
        return ThingOut(id=thing_id, notes=[])

    @router.route("DELETE", "/v1/things/{thing_id}", summary="Delete a thing", status=204)
    def delete_thing(call: Call, thing_id: str) -> None:
        return None

    return router


def test_the_generator_renders_params_queries_lists_and_no_content(settings):
    doc = build_openapi(make_router().routes, settings)

    validate(doc, cls=OpenAPIV31SpecValidator)
    listing = doc["paths"]["/v1/things"]["get"]
    assert listing["parameters"] == [
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
        },
        {
            "name": "cursor",
            "in": "query",
            "required": False,
            "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            "description": "From `next_cursor`.",
        },
    ]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/ThingOut"},
    }
    assert "422" in listing["responses"]
    note = doc["paths"]["/v1/things/{thing_id}/notes"]["post"]
    assert note["parameters"] == [{"name": "thing_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    assert set(note["responses"]) == {"201", "400", "401", "403", "404", "409", "413", "415", "422", "429"}
    assert note["security"] == [{"bearerAuth": []}]
    deleted = doc["paths"]["/v1/things/{thing_id}"]["delete"]
    assert deleted["responses"]["204"] == {"description": "No Content"}
    assert set(deleted["responses"]) == {"204", "400", "401", "403", "404", "429"}


def test_the_page_escapes_everything_the_document_holds(settings):
    page = render_page(build_openapi(make_router().routes, settings))

    assert "<script" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(&#x27;summary&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<code>next_cursor</code>" in page  # code spans survive escaping as code


def test_every_declared_error_status_names_the_codes_it_can_carry(api):
    """A 402 says ``plan_limit_exceeded`` (API.md), a 429 ``rate_limited``: a status with no code is a declaration
    nothing can answer."""
    doc = api.get("/openapi.json").json
    declared = {status for path in doc["paths"].values() for op in path.values() for status in op["responses"]}
    codes = {str(p.status) for p in problem_codes()}
    assert {s for s in declared if s.startswith(("4", "5")) and s not in codes} == set()
    assert "`plan_limit_exceeded`" in doc["components"]["responses"]["PaymentRequired"]["description"]


def test_docs_show_each_monitor_type_s_fields_for_a_new_monitor(api):
    page = api.get("/docs").text
    create = page[page.index("Create a monitor") :]
    create = create[: create.index("</section>")] if "</section>" in create else create[:20000]

    assert "One of:" in create
    for member, field in (("HttpMonitorIn", "<code>url</code>"), ("TcpMonitorIn", "<code>port</code>")):
        assert f'href="#schema-{member}"' in create
        assert field in create


def test_a_rule_a_validator_enforces_is_published_with_the_field(api, alice):
    """The document says what validation refuses, from the same definitions (chalicelib.schema): a fuzzer or a
    client that follows it is not refused for a rule it was never told."""
    schemas = api.get("/openapi.json").json["components"]["schemas"]
    name = next(s for s in schemas["MePatch"]["properties"]["name"]["anyOf"] if s.get("type") == "string")
    description = next(s for s in schemas["PagePatch"]["properties"]["description"]["anyOf"] if "pattern" in s)

    for text in ["Acme", "Ünïcødé ☃", "tab\there", "line\nbreak", "nul\x00", "bell\x07", "csi\x9b", "del\x7f"]:
        refused = api.patch("/v1/me", {"name": text}).status == 422
        assert (re.fullmatch(name["pattern"], text) is None) == refused, repr(text)
    assert re.fullmatch(description["pattern"], "two\nlines\tand a tab")
    assert re.fullmatch(description["pattern"], "bell\x07") is None


def test_a_field_a_patch_may_leave_out_but_not_null_is_not_nullable(api, alice):
    me = api.get("/openapi.json").json["components"]["schemas"]["MePatch"]["properties"]

    assert me["timezone"]["type"] == "string"
    assert "default" not in me["timezone"]
    assert {"type": "null"} in me["name"]["anyOf"]  # null clears the name
    assert api.patch("/v1/me", {"timezone": None}).status == 422
    assert api.patch("/v1/me", {"name": None}).status == 200


def test_a_monitor_s_interval_is_published_as_the_intervals_it_may_take(api, alice):
    from chalicelib.monitors.service import INTERVALS

    schemas = api.get("/openapi.json").json["components"]["schemas"]

    assert schemas["HttpMonitorIn"]["properties"]["interval_seconds"]["enum"] == list(INTERVALS)
    assert schemas["MonitorPatch"]["properties"]["interval_seconds"]["enum"] == list(INTERVALS)
    r = api.post("/v1/monitors", {"name": "Shop", "url": "https://shop.example.invalid/", "interval_seconds": 45})
    assert (r.status, r.json["errors"][0]["field"]) == (422, "interval_seconds"), r.body


def test_an_alert_channel_s_config_is_published_as_the_config_models_of_its_kinds(api):
    from chalicelib.alerts.kinds import KINDS

    schemas = api.get("/openapi.json").json["components"]["schemas"]
    config = schemas["ChannelIn"]["properties"]["config"]

    shown = [resolve({"components": {"schemas": schemas}}, ref)["title"] for ref in config["anyOf"]]
    assert shown == [kind.config_model.__name__ for kind in KINDS.values()]
    assert schemas["EmailConfig"]["properties"]["addresses"]["items"]["format"] == "idn-email"
    assert schemas["InvitationIn"]["properties"]["email"]["format"] == "idn-email"
    assert schemas["RegisterIn"]["properties"]["email"]["format"] == "idn-email"
    assert "format" not in schemas["EmailIn"]["properties"]["email"]  # forgot-password answers 202 to anything


def test_a_header_a_route_requires_is_a_required_header_parameter(api):
    webhook = api.get("/openapi.json").json["paths"]["/v1/webhooks/stripe"]["post"]

    assert [(p["name"], p["in"], p["required"]) for p in webhook["parameters"]] == [
        ("Stripe-Signature", "header", True)
    ]
    r = api.post("/v1/webhooks/stripe", {"id": "evt_1", "type": "invoice.paid"}, token="")
    assert (r.status, r.json["detail"]) == (400, "The Stripe-Signature header is missing."), r.body


def test_a_new_password_is_published_with_the_lengths_the_policy_checks(api):
    from chalicelib.auth.passwords import MAX_LENGTH, MIN_LENGTH

    schemas = api.get("/openapi.json").json["components"]["schemas"]

    for model, field in (("RegisterIn", "password"), ("ResetIn", "password"), ("PasswordChange", "new_password")):
        published = schemas[model]["properties"][field]
        assert (published["minLength"], published["maxLength"]) == (MIN_LENGTH, MAX_LENGTH), model
    assert schemas["LoginIn"]["properties"]["password"]["minLength"] == 1  # a password set before any policy
    r = api.post("/v1/auth/register", {"email": "short@example.com", "password": "x" * (MIN_LENGTH - 1)})
    assert (r.status, r.json["errors"][0]["field"]) == (422, "password"), r.body
