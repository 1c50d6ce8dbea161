"""The OpenAPI 3.1 document, generated from the routes' own declarations.

Nothing here is written by hand per route: paths, parameters, bodies and
responses all come from :class:`~chalicelib.api.framework.Route` and its
pydantic models, so the document cannot drift from the code that serves it.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from pydantic import TypeAdapter

from chalicelib import errors
from chalicelib.api.framework import JSON, PROBLEM_JSON, Route
from chalicelib.settings import Settings

REF = "#/components/schemas/{model}"
PATH_PARAM = re.compile(r"{([^}+]+)}")

DESCRIPTION = """\
Vigil watches your HTTP endpoints from several regions, opens incidents when they fail, \
alerts your team and publishes status pages.

Send JSON (`Content-Type: application/json`, UTF-8) and read JSON. Times are ISO 8601 in UTC with a `Z` suffix; \
a time sent is RFC 3339 (`2026-11-30T18:00:00Z`, or with an offset), never a number or a date alone. \
Lists take `limit` (1-100, default 50) and an opaque `cursor`, and answer `{"data": [...], "next_cursor": ...}`.

Authenticate with `Authorization: Bearer <token>`, where the token is an access token from `/v1/auth/*` \
or an API key (`vgl_...`). A token acts in one team: an access token in the user's current team, \
an API key in the team that created it. An API key reaches only the operations that name its scope \
(`x-vigil-scope`, and the `apiKey` security requirement), never beyond its creator's current role; \
it is refused (403) on accounts, teams, members, invitations, API keys and billing, and it is accepted only \
in the `Authorization` header (a key in the query string is a 400).

Requests are counted per minute: per API key (the team's plan's `api_requests_per_minute`), per team's keys \
together (three times that), per signed-in user, and per address on routes that need no sign-in. Answers to a \
key or a user carry `RateLimit-Policy: "default";q=<limit>;w=60` and `RateLimit: "default";r=<remaining>;t=<seconds>` \
(RFC 9651 structured fields); over a limit is a 429 with `Retry-After`.

Every error is an RFC 9457 problem (`application/problem+json`) with a stable `code`; \
its `type` links to the code's explanation in the reference page. An unknown path answers 404, \
a method a path does not have answers 405 with `Allow`, and a body over 1 MiB answers 413."""


@dataclass(frozen=True)
class ProblemCode:
    code: str
    status: int
    title: str


def problem_codes() -> list[ProblemCode]:
    """Every ``code`` the error classes of :mod:`chalicelib.errors` give a problem, by status then code."""
    found: dict[str, ProblemCode] = {}
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, errors.VigilError) and cls.__module__ == errors.__name__:
            found.setdefault(cls.code, ProblemCode(cls.code, cls.status, cls.title))
    return sorted(found.values(), key=lambda p: (p.status, p.code))


def _problem_schemas() -> dict[str, Any]:
    return {
        "Problem": {
            "type": "object",
            "description": "An RFC 9457 problem detail.",
            "required": ["type", "title", "status", "detail", "code"],
            "properties": {
                "type": {
                    "type": "string",
                    "format": "uri",
                    "description": "Links to this code's explanation in the API reference.",
                },
                "title": {"type": "string", "description": "A short summary of the kind of problem."},
                "status": {"type": "integer", "description": "The HTTP status code.", "minimum": 400, "maximum": 599},
                "detail": {"type": "string", "description": "What went wrong with this request."},
                "code": {"type": "string", "description": "A stable, machine-readable slug.", "pattern": "^[a-z_]+$"},
                "instance": {"type": "string", "description": "The request path."},
                "errors": {
                    "type": "array",
                    "description": "One entry per invalid field (422 only).",
                    "items": {"$ref": REF.format(model="ProblemFieldError")},
                },
            },
        },
        "ProblemFieldError": {
            "type": "object",
            "required": ["field", "message"],
            "properties": {
                "field": {"type": "string", "description": "Dotted path of the field, e.g. `quiet_hours.start`."},
                "message": {"type": "string"},
            },
        },
    }


RESPONSE_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "The scheme to authenticate with.", "schema": {"type": "string"}}},
    405: {"Allow": {"description": "The methods this path accepts.", "schema": {"type": "string"}}},
    429: {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


def _response_name(status: int) -> str:
    return "".join(word for word in HTTPStatus(status).phrase.split() if word.isalnum())


def _problem_response(status: int) -> dict[str, Any]:
    codes = [p.code for p in problem_codes() if p.status == status]
    description = HTTPStatus(status).phrase
    if codes:
        description += " (" + ", ".join(f"`{code}`" for code in codes) + ")"
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": REF.format(model="Problem")}}},
    }
    if status in RESPONSE_HEADERS:
        response["headers"] = RESPONSE_HEADERS[status]
    return response


def _error_statuses(route: Route) -> list[int]:
    """The declared error statuses plus those the framework itself can answer for this route."""
    statuses = set(route.errors)
    statuses.add(400)  # an API key in the query string, on any route
    if route.auth != "none":
        statuses.update((401, 403, 429))  # 403: a role too low, or an API key on a route it may not reach
    if route.ip_limit is not None:
        statuses.add(429)
    if route.body is not None:
        statuses.update((400, 413, 415, 422))
    if route.query is not None:
        statuses.add(422)
    if PATH_PARAM.search(route.path):
        statuses.add(404)  # absent, or another team's: never a 403 that would leak existence
    return sorted(statuses)


def _operation_ids(routes: list[Route]) -> dict[int, str]:
    """The handler's name, qualified by tag (then method) only where it would collide."""
    names = Counter(route.handler.__name__ for route in routes)
    ids: dict[int, str] = {}
    taken: set[str] = set()
    for route in routes:
        name = route.handler.__name__
        if names[name] > 1:
            name = f"{route.tag}_{name}"
        if name in taken:
            name = f"{name}_{route.method.lower()}"
        suffix = 2
        base = name
        while name in taken:
            name, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(name)
        ids[id(route)] = name
    return ids


class _Schemas:
    """Collects every model's JSON schema in one pass, so shared models land once in components."""

    def __init__(self, routes: list[Route]) -> None:
        inputs: list[tuple[Any, Any, TypeAdapter[Any]]] = []
        for route in routes:
            for kind, model, mode in (
                ("body", route.body, "validation"),
                ("query", route.query, "validation"),
                ("response", route.response, "serialization"),
            ):
                if model is not None:
                    inputs.append(((id(route), kind), mode, TypeAdapter(model)))
        self.by_route: dict[tuple[int, str], dict[str, Any]] = {}
        self.components: dict[str, Any] = {}
        if inputs:
            found, defs = TypeAdapter.json_schemas(inputs, ref_template=REF)
            self.by_route = {key: schema for (key, _mode), schema in found.items()}
            self.components = dict(defs.get("$defs", {}))

    def get(self, route: Route, kind: str) -> dict[str, Any] | None:
        return self.by_route.get((id(route), kind))

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            return self.components[ref.rsplit("/", 1)[1]]
        return schema


def _parameters(route: Route, schemas: _Schemas) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in PATH_PARAM.findall(route.path)
    ]
    params += [
        {"name": name, "in": "header", "required": True, "schema": {"type": "string"}, "description": description}
        for name, description in route.headers
    ]
    query = schemas.get(route, "query")
    if query is not None:
        model = schemas.resolve(query)
        required = set(model.get("required", []))
        for name, prop in model.get("properties", {}).items():
            param: dict[str, Any] = {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": {k: v for k, v in prop.items() if k not in ("title", "description")},
            }
            if prop.get("description"):
                param["description"] = prop["description"]
            params.append(param)
    return params


def _success(route: Route, schemas: _Schemas) -> dict[str, Any]:
    response: dict[str, Any] = {"description": HTTPStatus(route.status).phrase}
    if route.status == 204:
        return response
    schema = schemas.get(route, "response")
    if schema is None and route.content_type != JSON:
        schema = {"type": "string"}
    if schema is not None:
        response["content"] = {route.content_type: {"schema": schema}}
    return response


def _responses(route: Route, schemas: _Schemas) -> dict[str, Any]:
    responses = {str(route.status): _success(route, schemas)}
    model = schemas.get(route, "response")
    for status in _error_statuses(route):
        if status in route.own_body_errors and model is not None and route.content_type == JSON:
            # A route may answer an error with its own body (health's 503 names the failing check).
            responses[str(status)] = {
                "description": HTTPStatus(status).phrase,
                "content": {
                    route.content_type: {"schema": model},
                    PROBLEM_JSON: {"schema": {"$ref": REF.format(model="Problem")}},
                },
            }
        else:
            responses[str(status)] = {"$ref": f"#/components/responses/{_response_name(status)}"}
    return responses


def _operation(route: Route, schemas: _Schemas, operation_id: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": [route.tag],
        "summary": route.summary,
        "operationId": operation_id,
    }
    if route.description:
        operation["description"] = route.description
    parameters = _parameters(route, schemas)
    if parameters:
        operation["parameters"] = parameters
    body = schemas.get(route, "body")
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    operation["responses"] = _responses(route, schemas)
    if route.auth != "none":
        operation["security"] = [{"bearerAuth": []}]
        if route.scope is not None:
            operation["security"].append({"apiKey": [route.scope]})
    # Which principal the route needs: "user" (any signed-in caller) or "team" (acting in a team).
    operation["x-vigil-auth"] = route.auth
    if route.permission is not None:
        operation["x-vigil-permission"] = route.permission
    if route.scope is not None:
        operation["x-vigil-scope"] = route.scope
    if route.ip_limit is not None:
        operation["x-vigil-requests-per-minute-per-address"] = route.ip_limit
    return operation


def _tags(routes: list[Route]) -> list[dict[str, str]]:
    tags: dict[str, str] = {}
    for route in routes:
        if route.tag not in tags:
            module = sys.modules.get(route.handler.__module__)
            doc = inspect.getdoc(module) if module is not None and module.__doc__ else ""
            tags[route.tag] = (doc or "").split("\n\n")[0].replace("\n", " ")
    return [{"name": name, "description": doc} if doc else {"name": name} for name, doc in tags.items()]


def build_openapi(routes: list[Route], settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1.0 document for ``routes`` (hidden routers already left out by the caller)."""
    schemas = _Schemas(routes)
    clash = set(schemas.components) & set(_problem_schemas())
    if clash:
        raise ValueError(f"model name(s) {sorted(clash)} clash with the problem schemas")
    operation_ids = _operation_ids(routes)
    paths: dict[str, dict[str, Any]] = {}
    error_statuses: set[int] = set()
    for route in routes:
        operation = _operation(route, schemas, operation_ids[id(route)])
        paths.setdefault(route.path, {})[route.method.lower()] = operation
        error_statuses.update(_error_statuses(route))
    return {
        "openapi": "3.1.0",
        "info": {"title": "Vigil API", "version": settings.version, "description": DESCRIPTION},
        "servers": [{"url": settings.app_url}],
        "tags": _tags(routes),
        "paths": paths,
        "components": {
            "schemas": {**dict(sorted(schemas.components.items())), **_problem_schemas()},
            "responses": {_response_name(s): _problem_response(s) for s in sorted(error_statuses)},
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token from /v1/auth/login (15 minutes), acting in the user's current "
                    "team with their role.",
                },
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "vgl_ API key",
                    "description": "A team's API key (vgl_...), from POST /v1/api-keys, in the Authorization header "
                    "only. An operation lists the scope it needs; the key also needs its creator's current role to "
                    "allow the operation.",
                },
            },
        },
    }
