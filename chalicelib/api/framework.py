"""The HTTP edge: declared routes, one dispatcher, one error renderer.

Each API module declares its routes on a :class:`Router` with their request and
response models.  The router registers every path with Chalice once, for every
method, and sends each request through :func:`_dispatch`, which

1. refuses bodies over 1 MiB, or the route's own limit (413), and answers OPTIONS and unknown methods (405);
2. refuses an API key sent in the query string (400), counts requests per address on routes that declare an
   ``ip_limit``, authenticates the caller as the route requires (401), and counts the caller's requests
   (:mod:`chalicelib.api.quotas`: 429, and the ``RateLimit`` fields on every answer to a signed-in caller);
3. parses the JSON body (400 ``invalid_json``) and validates body and query with
   pydantic (422 ``validation_error``, one entry per bad field);
4. calls the handler, then renders its result as JSON;
5. renders any :class:`~chalicelib.errors.VigilError` — or any other exception,
   as a logged 500 — as RFC 9457 problem+json.

Chalice's own ``{"Code", "Message"}`` error body can therefore never reach a
client.  The same declarations feed the OpenAPI document (``openapi.py``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from chalice import Blueprint, Response
from pydantic import BaseModel, ConfigDict, ValidationError

from chalicelib import errors
from chalicelib.api import quotas
from chalicelib.auth.apikeys import PREFIX, SCOPES, lookup_of
from chalicelib.auth.service import authorize, identify
from chalicelib.clock import utcnow
from chalicelib.observability import bind, logger, metrics, tracer, unbind_all
from chalicelib.principal import Principal
from chalicelib.settings import get_settings
from chalicelib.storage.base import as_domain_error

MAX_BODY_BYTES = 1024 * 1024
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"

AuthMode = Literal["none", "user", "team"]
KEY_IN_TEXT = re.compile(r"(?i:vgl_)([0-9A-Za-z]{50})(?![0-9A-Za-z])")
KEY_SHAPED = re.compile(r"(?i:vgl_)[0-9A-Za-z]{20,}")


class Out(BaseModel):
    """Base of response models."""

    model_config = ConfigDict(extra="ignore")


@dataclass
class Reply:
    """A handler's answer when it needs more than ``200 + JSON body``."""

    body: Any = None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None


@dataclass
class Call:
    """What a handler gets: the validated request and who made it."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    query: Any
    body: Any
    raw_body: bytes
    principal: Principal | None
    client_ip: str
    request_id: str

    @property
    def user(self) -> Principal:
        if self.principal is None:  # a route declared auth="none" asked for its caller
            raise errors.Unauthorized()
        return self.principal


@dataclass
class Route:
    method: str
    path: str
    handler: Callable[..., Any]
    summary: str
    tag: str
    auth: AuthMode
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: Any
    status: int
    content_type: str
    errors: tuple[int, ...]
    description: str = ""
    permission: str | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    scope: str | None = None  # the API key scope the route needs; None: keys cannot reach it
    ip_limit: int | None = None  # requests a minute per client address
    headers: tuple[tuple[str, str], ...] = ()  # request headers the route requires: (name, what it carries)
    own_body_errors: tuple[int, ...] = ()  # error statuses answered with the route's own body (health's 503)


class Router:
    """A Chalice blueprint whose routes are declared with their models."""

    def __init__(self, tag: str, *, hidden: bool = False) -> None:
        self.tag = tag
        self.hidden = hidden
        self.blueprint = Blueprint(f"chalicelib.api.{tag}")
        self.routes: list[Route] = []
        self._by_path: dict[str, dict[str, Route]] = {}

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        auth: AuthMode = "user",
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: Any = None,
        status: int = 200,
        content_type: str = JSON,
        errors: tuple[int, ...] = (),
        description: str = "",
        permission: str | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        scope: str | None = None,
        ip_limit: int | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        own_body_errors: tuple[int, ...] = (),
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        if (auth == "team") != (permission is not None):
            raise ValueError(f"{method} {path}: a team route names its permission, and only a team route does")
        if scope is not None and (auth != "team" or scope not in SCOPES):
            raise ValueError(f"{method} {path}: a scope is one of {SCOPES}, on a team route")

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            route = Route(
                method=method,
                path=path,
                handler=handler,
                summary=summary,
                tag=self.tag,
                auth=auth,
                body=body,
                query=query,
                response=response,
                status=status,
                content_type=content_type,
                errors=errors,
                description=description or (handler.__doc__ or "").strip(),
                permission=permission,
                max_body_bytes=max_body_bytes,
                scope=scope,
                ip_limit=ip_limit,
                headers=headers,
                own_body_errors=own_body_errors,
            )
            methods = self._by_path.get(path)
            if methods is None:
                methods = self._by_path[path] = {}
                self._register_path(path, methods)
            if method in methods:
                raise ValueError(f"{method} {path} declared twice")
            methods[method] = route
            self.routes.append(route)
            return handler

        return register

    def _register_path(self, path: str, methods: dict[str, Route]) -> None:
        blueprint = self.blueprint

        def view(**params: str) -> Response:
            return _dispatch(blueprint.current_request, path, methods, params)

        view.__name__ = "route_" + "".join(c if c.isalnum() else "_" for c in path)
        blueprint.route(path, methods=METHODS, content_types=["*/*"])(view)


def problem(err: errors.VigilError, instance: str = "") -> Response:
    body = errors.problem_document(err, get_settings().app_url, redact_keys(instance) if instance else "")
    headers: dict[str, str | list[str]] = {"Content-Type": PROBLEM_JSON, **err.headers}
    return Response(body=json.dumps(body), status_code=err.status, headers=headers)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise errors.InvalidJSON("The request body is not valid UTF-8.") from None
    except RecursionError:
        raise errors.InvalidJSON("The request body is nested too deeply.") from None
    except ValueError as exc:
        raise errors.InvalidJSON(f"The request body is not valid JSON: {exc}") from None


def _field_errors(exc: ValidationError, prefix: str = "", *, tagged: bool = False) -> list[errors.FieldError]:
    """One error per problem, named by its field.  ``tagged``: the model is a union discriminated by ``type`` (a
    ``RootModel`` that says ``TYPE_UNION``), whose errors pydantic places under the tag (``tcp.port``): they are
    named as sent (``port``), and a tag that matches no member is the ``type`` field's error."""
    out = []
    for item in exc.errors(include_url=False, include_input=False):
        loc = [str(p) for p in item.get("loc", ())]
        if tagged and item.get("type") == "invalid_type":
            loc = ["type"]
        elif tagged and loc:
            loc = loc[1:]
        name = ".".join(loc) if loc else (prefix or "body")
        if item.get("type") == "extra_forbidden":
            message = "unknown field"
        else:
            message = str(item.get("msg", "invalid value"))
            if message.startswith("Value error, "):
                message = message[len("Value error, ") :]
        out.append(errors.FieldError(field=name, message=message))
    return out


def validate(model: type[BaseModel], data: Any, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise errors.ValidationFailed.single(prefix or "body", "must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        tagged = bool(getattr(model, "TYPE_UNION", False))
        raise errors.ValidationFailed(_field_errors(exc, prefix, tagged=tagged)) from None


def _query_dict(request: Any) -> dict[str, Any]:
    params = getattr(request, "query_params", None)
    if not params:
        return {}
    # A repeated parameter arrives as a list, which a scalar field then refuses (422) rather than guessing.
    return {k: (values if len(values) > 1 else values[0]) for k in params for values in [params.getlist(k)]}


def _holds_a_key(text: str) -> bool:
    """Whether ``text`` holds an API key: ``vgl_`` (in any case) and 50 characters whose checksum holds — not a tag
    like ``vgl_eu``, nor a cursor whose random characters happen to spell ``vgl_``."""
    return any(lookup_of(PREFIX + body) is not None for body in KEY_IN_TEXT.findall(text))


def redact_keys(text: str) -> str:
    """``text`` with anything shaped like an API key cut to its prefix (a key pasted into a path is not repeated)."""
    return KEY_SHAPED.sub(PREFIX + "…", text)


def _refuse_keys_in(request: Any) -> None:
    """An API key anywhere in the query string (``?api_key=vgl_…``, as a name or in a value) is refused on every
    path, known or not, before anything reads it: URLs end up in logs, proxies and browser histories.  The answer
    never repeats any part of it."""
    params = getattr(request, "query_params", None)
    if not params:
        return
    for name in params:
        if any(_holds_a_key(text) for text in (name, *params.getlist(name)) if isinstance(text, str)):
            raise errors.ApiKeyInQuery(
                "Send API keys only in the Authorization header, never in the URL. Treat the key that was in this "
                "URL as exposed: revoke it and create another."
            )


def _render(route: Route, result: Any) -> Response:
    reply = result if isinstance(result, Reply) else Reply(body=result)
    status = reply.status or route.status
    headers: dict[str, str | list[str]] = dict(reply.headers)
    body = reply.body
    if status == 204 or body is None:
        return Response(body="", status_code=status, headers=headers)
    if isinstance(body, BaseModel):
        body = body.model_dump(mode="json")
    elif isinstance(body, list):
        body = [b.model_dump(mode="json") if isinstance(b, BaseModel) else b for b in body]
    content_type = reply.content_type or route.content_type
    headers.setdefault("Content-Type", content_type)
    if content_type == JSON:
        body = json.dumps(body)
    return Response(body=body, status_code=status, headers=headers)


def _security_headers(response: Response, request_id: str, cacheable: bool) -> None:
    response.headers.setdefault("X-Request-Id", request_id)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if not cacheable:
        response.headers.setdefault("Cache-Control", "no-store")
    origin = get_settings().cors_allow_origin
    if origin:
        response.headers.setdefault("Access-Control-Allow-Origin", origin)
        response.headers.setdefault("Vary", "Origin")


def _preflight(methods: dict[str, Route]) -> Response:
    allow = ", ".join(sorted(set(methods) | {"OPTIONS"}))
    headers: dict[str, str | list[str]] = {"Allow": allow}
    if get_settings().cors_allow_origin:
        headers.update(
            {
                "Access-Control-Allow-Methods": allow,
                "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key",
                "Access-Control-Max-Age": "600",
            }
        )
    return Response(body="", status_code=204, headers=headers)


def _request_facts(request: Any) -> tuple[str, str, dict[str, str], bytes, str, str]:
    context = getattr(request, "context", None) or {}
    request_id = str(context.get("requestId") or "")
    identity = context.get("identity") or {}
    client_ip = str(identity.get("sourceIp") or "unknown")
    headers = {str(k).lower(): str(v) for k, v in (request.headers or {}).items()}
    raw = request.raw_body or b""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    # request.path is the route pattern; the path asked for is the event's (API Gateway) or the context's (local).
    event = request.to_original_event() if hasattr(request, "to_original_event") else {}
    actual_path = str(event.get("path") or context.get("path") or request.path)
    return request.method.upper(), actual_path, headers, raw, client_ip, request_id


def _dispatch(request: Any, path: str, methods: dict[str, Route], params: dict[str, str]) -> Response:
    started = time.perf_counter()
    method, actual_path, headers, raw, client_ip, request_id = _request_facts(request)
    if not request_id:
        import uuid

        request_id = str(uuid.uuid4())
    unbind_all()
    bind(request_id=request_id, method=method, route=path)
    cacheable = False
    quota_fields: dict[str, str] = {}
    try:
        _refuse_keys_in(request)
        route = methods.get("GET" if method == "HEAD" else method)
        if method == "OPTIONS" and route is None:
            response = _preflight(methods)
        elif route is None:
            allow = ", ".join(sorted(set(methods) | {"OPTIONS"}))
            raise errors.MethodNotAllowed(f"{method} is not allowed on {path}.", headers={"Allow": allow})
        else:
            response = _run(
                route, method, actual_path, headers, raw, params, request, client_ip, request_id, quota_fields
            )
            cacheable = "Cache-Control" in response.headers
    except errors.VigilError as err:
        response = problem(err, actual_path)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: log it, answer a problem, never a bare 500
        known = as_domain_error(exc)
        if isinstance(known, errors.VigilError):
            response = problem(known, actual_path)
        else:
            logger.exception("unhandled error")
            response = problem(errors.VigilError("An unexpected error occurred; it has been logged."), actual_path)
    if method == "HEAD":
        response.body = ""
    for name, value in quota_fields.items():
        response.headers.setdefault(name, value)
    _security_headers(response, request_id, cacheable)
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    logger.info("request", extra={"status": response.status_code, "duration_ms": elapsed_ms})
    metrics.add_metric(name=f"Http{response.status_code // 100}xx", unit="Count", value=1)
    metrics.flush_metrics()
    unbind_all()
    return response


@tracer.capture_method(capture_response=False)
def _run(
    route: Route,
    method: str,
    actual_path: str,
    headers: dict[str, str],
    raw: bytes,
    params: dict[str, str],
    request: Any,
    client_ip: str,
    request_id: str,
    quota_fields: dict[str, str],
) -> Response:
    if len(raw) > route.max_body_bytes:
        raise errors.PayloadTooLarge(f"The request body is over {route.max_body_bytes} bytes.")
    query_values = _query_dict(request)
    now = utcnow()
    if route.ip_limit is not None:
        quotas.admit_address(f"{route.method} {route.path}", route.ip_limit, client_ip, now)
    principal = None
    if route.auth != "none":
        principal = identify(headers, client_ip, now)
        bind(user_id=principal.user_id, team_id=principal.team_id)
        if principal.key_id:
            bind(api_key_id=principal.key_id)
        # Counted before anything may refuse it: a 403 costs reads too, and answers with the same fields.
        quota_fields.update(quotas.admit_caller(principal, now))
        principal = authorize(principal, route.auth, route.permission, route.scope, params)
    query = validate(route.query, query_values, "query") if route.query else None
    body = None
    if route.body is not None:
        content_type = headers.get("content-type", JSON).split(";")[0].strip().lower()
        if raw.strip() and content_type not in (JSON, "") and not content_type.endswith("+json"):
            raise errors.UnsupportedMediaType("Send the body as application/json.")
        if not raw.strip() and method in ("PATCH", "PUT"):
            # A change with nothing in it is a client's mistake, not a change: say so rather than answer 200.
            raise errors.BodyRequired("Send the fields to change as a JSON object.")
        data = parse_json(raw) if raw.strip() else {}
        body = validate(route.body, data)
    call = Call(
        method=method,
        path=actual_path,
        params=params,
        headers=headers,
        query=query,
        body=body,
        raw_body=raw,
        principal=principal,
        client_ip=client_ip,
        request_id=request_id,
    )
    return _render(route, route.handler(call, **params))


def all_routes(routers: list[Router]) -> list[Route]:
    return [route for router in routers if not router.hidden for route in router.routes]


def not_found_blueprint() -> Blueprint:
    """Every path no router declares: a 404 problem, whatever the method."""
    blueprint = Blueprint("chalicelib.api.not_found")

    def unknown(**_: str) -> Response:
        request = blueprint.current_request
        method, actual_path, _h, _r, _ip, request_id = _request_facts(request)
        try:
            _refuse_keys_in(request)
            err: errors.VigilError = errors.NotFound(f"There is no route {redact_keys(actual_path)}.")
        except errors.ApiKeyInQuery as refused:
            err = refused
        response = problem(err, actual_path)
        _security_headers(response, request_id or "-", cacheable=False)
        if method == "HEAD":
            response.body = ""
        return response

    blueprint.route("/", methods=METHODS, content_types=["*/*"])(unknown)
    blueprint.route("/{proxy+}", methods=METHODS, content_types=["*/*"])(unknown)
    return blueprint
