"""No request, however malformed, gets a 500: a sweep of hostile requests over every declared route.

The routes come from the same declarations the app registers (dev routes and
the catch-all included), so a route added later is swept without touching this
file.  Each route is driven anonymously and, when it needs a caller, with a
fresh session of one user registered for the whole module.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import pytest
from moto import mock_aws
from pydantic import TypeAdapter, ValidationError

from chalicelib.api.framework import JSON, MAX_BODY_BYTES, METHODS, Route
from chalicelib.api.routes import routers
from chalicelib.clock import utcnow
from chalicelib.local import stack
from chalicelib.local.loop import EventLoop
from tests.factories import (
    create_api_key,
    create_channel,
    create_heartbeat,
    create_invitation,
    create_monitor,
    create_status_page,
    create_window,
)
from tests.support import (
    PASSWORD,
    TEST_ENV,
    ApiClient,
    Result,
    join_team,
    make_test_settings,
    on_plan,
    open_incident,
    register,
    start_aws,
)

HEARTBEAT_ONLY = ("/rotate-ping-token", "/pings")  # routes of a heartbeat's own (another monitor is a 409)
JUNK_IDS = ["x", "../../etc", "%00", "i" * 300, "ünïcødé-☃-😀"]
PATH_PARAM = re.compile(r"{([^}]+)}")
ROUTES: list[Route] = [route for router in routers(make_test_settings()) for route in router.routes]
# Values of every JSON type, in the order tried: the first one a field refuses is its "wrong type".
WRONG_VALUES: list[Any] = [12345, "not-the-right-type", True, ["a", "list"], {"an": "object"}, 1.5]
INVALID_JSON = {
    "malformed JSON": b'{"a": 1,,}',
    "truncated JSON": b'{"email": "alice@example.com", "passw',
    "NaN": b'{"value": NaN}',
    "-Infinity": b"[-Infinity]",
    "100000 levels of [": b"[" * 100_000 + b"]" * 100_000,
    "invalid UTF-8": b'{"name": "\xff\xfe\xfd"}',
}
NOT_AN_OBJECT = {"JSON array": b'[{"a": 1}]', "JSON string": b'"hello"', "null": b"null", "number": b"42"}
HOSTILE_QUERIES = {
    "limit=-1": "limit=-1",
    "limit=abc": "limit=abc",
    "cursor garbage": "cursor=%00%FF%2F..%2F%7B%7D" + "A" * 500,
    "repeated params": "limit=1&limit=2&cursor=a&cursor=b",
}


@dataclass
class Case:
    name: str
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    status: set[int] | None = None  # None: any answer but a 5xx
    code: str | None = None
    field_named: str | None = None  # a 422 must name this field
    reroutes: bool = False  # the path no longer names this route (a junk id with a "/"): any route may answer
    real_ids: bool = False  # the path names live objects of the caller's team: a 404 means the case never got in
    template: str = ""  # the path with its ids as {names} again (to name other objects of the same kinds)


@dataclass
class Sweep:
    api: ApiClient
    email: str
    ids: dict[str, str]  # real ids of the user's own objects, so body cases reach the body checks
    owner: ApiClient  # the client acting as that user

    def fresh_token(self) -> str:
        forget_counts()
        r = self.api.post("/v1/auth/login", {"email": self.email, "password": PASSWORD})
        assert r.status == 200, r.body
        return str(r.json["access_token"])

    def fresh_ids(self, route: Route) -> dict[str, str]:
        """Objects of the route's own for every id in its path (a case of another route may have deleted the
        shared ones): the team's id, then a new member, monitor, page, ... as the path names them."""
        wanted = set(PATH_PARAM.findall(route.path))
        ids = {"team_id": self.ids["team_id"]}
        if wanted & {"monitor_id", "incident_id", "window_id", "page_id", "slug", "badge"}:
            # found by a fresh-eyes review of issue 21: an HTTP monitor took rotate-ping-token to its 409 only
            if route.path.endswith(HEARTBEAT_ONLY):
                monitor = create_heartbeat(self.owner, name="sweep")
            else:
                monitor = create_monitor(self.owner, name="sweep", url="http://127.0.0.1:9/")
            ids["monitor_id"], ids["badge"] = monitor["id"], f"{monitor['id']}.svg"
        if "incident_id" in wanted:
            ids["incident_id"] = open_incident(ids["team_id"], ids["monitor_id"], utcnow(), error="timeout")
        if "window_id" in wanted:
            ids["window_id"] = create_window(self.owner, [ids["monitor_id"]])["id"]
        if wanted & {"page_id", "slug", "badge"}:  # a monitor has a public badge while a published page shows it
            slug = f"sweep-{uuid.uuid4().hex[:8]}"
            page = create_status_page(
                self.owner, name="sweep", slug=slug, components=[{"monitor_id": ids["monitor_id"]}]
            )
            ids["page_id"], ids["slug"] = page["id"], page["slug"]
        if "channel_id" in wanted:
            ids["channel_id"] = create_channel(self.owner, name="sweep")["id"]
        if "invitation_id" in wanted:
            ids["invitation_id"] = create_invitation(self.owner, ids["team_id"])["id"]
        if "user_id" in wanted:
            member = register(self.api, f"member-{uuid.uuid4().hex[:12]}@example.com")
            join_team(self.api, ids["team_id"], member, "member")
            ids["user_id"] = member["user"]["id"]
        if "key_id" in wanted:
            ids["key_id"] = create_api_key(self.owner)["id"]
        if "token" in wanted:
            ids["token"] = create_heartbeat(self.owner)["ping_url"].rsplit("/", 1)[1]
        assert wanted <= set(ids), f"no fresh object for {wanted - set(ids)}: add it here"
        return ids


@pytest.fixture(scope="module")
def sweep() -> Iterator[Sweep]:
    """One AWS, one app and one registered user for every case in this module; Stripe's calls go to the stand-in."""
    from chalicelib.local.stripe_standin import StripeStandIn

    standin = StripeStandIn(
        secret_key=TEST_ENV["STRIPE_SECRET_KEY"],
        webhook_secret=TEST_ENV["STRIPE_WEBHOOK_SECRET"],
        prices={},
        deliver=lambda body, signature: None,
    ).start()
    # Its monitor targets a closed loopback port; its team's billing portal is the stand-in's.
    settings = make_test_settings(ALLOW_PRIVATE_TARGETS="true", STRIPE_API_BASE=standin.url)
    with mock_aws():
        start_aws(settings)
        import app as app_module

        loop = EventLoop(settings.aws_region)
        loop.add_schedule("scheduler", 1, lambda event, context: None)
        stack.register(loop)  # POST /dev/tick answers as it does under `make dev`
        try:
            api = ApiClient(app_module.app)
            email = f"sweep-{uuid.uuid4().hex[:12]}@example.com"
            user = register(api, email)
            team_id, user_id = user["team"]["id"], user["user"]["id"]
            on_plan(api, team_id, "enterprise")  # every case makes its own objects, never the plan's limit
            owner = api.acting_as(user)
            invited = create_invitation(owner, team_id)
            monitor = create_monitor(owner, name="sweep", url="http://127.0.0.1:9/")
            incident_id = open_incident(team_id, monitor["id"], utcnow(), error="timeout")
            window = create_window(owner, [monitor["id"]])
            alert_channel = create_channel(owner, name="sweep")
            status_page = create_status_page(
                owner, name="sweep", slug=f"sweep-{uuid.uuid4().hex[:8]}", components=[{"monitor_id": monitor["id"]}]
            )
            ids = {
                "team_id": team_id,
                "user_id": user_id,
                "invitation_id": invited["id"],
                "monitor_id": monitor["id"],
                "incident_id": incident_id,
                "window_id": window["id"],
                "channel_id": alert_channel["id"],
                "page_id": status_page["id"],
                "slug": status_page["slug"],
                "badge": monitor["id"] + ".svg",
            }
            yield Sweep(api, email, ids, owner)
        finally:
            stack.register(None)
            standin.stop()


@pytest.fixture(autouse=True)
def _counts_forgotten(request: pytest.FixtureRequest) -> None:
    if "sweep" in request.fixturenames:
        request.getfixturevalue("sweep")
        forget_counts()


def wrong_value(route: Route, name: str) -> Any:
    """A value of the wrong JSON type for one field of the route's body model."""
    info = route.body.model_fields[name]  # type: ignore[union-attr]
    annotation = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    for value in WRONG_VALUES:
        try:
            adapter.validate_python(value)
        except ValidationError:
            return value
    return None


def body_cases(route: Route, path: str) -> list[Case]:
    takes_body = route.body is not None
    cases = [
        Case(name, route.method, path, raw, status={400} if takes_body else None, code="invalid_json")
        for name, raw in INVALID_JSON.items()
    ]
    cases += [
        Case(name, route.method, path, raw, status={422} if takes_body else None) for name, raw in NOT_AN_OBJECT.items()
    ]
    unknown = json.dumps({"unknown_field": {"nested": {"deeper": [1, {"x": None}]}}}).encode()
    cases.append(
        Case(
            "unknown field with an object value",
            route.method,
            path,
            unknown,
            status={422} if takes_body else None,
            field_named="unknown_field" if takes_body else None,
        )
    )
    cases.append(
        Case(
            "form-encoded body",
            route.method,
            path,
            b"email=alice%40example.com&password=x",
            headers={"content-type": "application/x-www-form-urlencoded"},
            status={415} if takes_body else None,
        )
    )
    cases.append(Case("empty body", route.method, path))
    if route.body is not None:
        for name, info in route.body.model_fields.items():
            alias = info.alias or name
            value = wrong_value(route, name)
            if value is not None:
                raw = json.dumps({alias: value}).encode()
                cases.append(Case(f"wrong type for {alias}", route.method, path, raw, status={422}, field_named=alias))
    return cases


def query_cases(route: Route, path: str) -> list[Case]:
    has_limit = route.query is not None and "limit" in route.query.model_fields
    return [
        Case(
            f"query {name}",
            route.method,
            f"{path}?{query}",
            status={422} if has_limit and name.startswith("limit") else None,
        )
        for name, query in HOSTILE_QUERIES.items()
    ]


def route_cases(route: Route, ids: dict[str, str] | None = None) -> list[Case]:
    path = PATH_PARAM.sub(lambda m: (ids or {}).get(m.group(0)[1:-1], "x"), route.path)
    cases = body_cases(route, path) + query_cases(route, path)
    for case in cases:
        case.real_ids = ids is not None
        case.template = case.path
        for name, value in sorted((ids or {}).items(), key=lambda item: -len(item[1])):  # a badge holds an id
            case.template = case.template.replace(value, "{" + name + "}")
    if PATH_PARAM.search(route.path):
        for junk in JUNK_IDS:
            junk_path = PATH_PARAM.sub(lambda _, j=junk: j, route.path)
            cases.append(Case(f"path id {junk[:20]!r}", route.method, junk_path, reroutes="/" in junk))
    declared = {r.method for r in ROUTES if r.path == route.path} | {"OPTIONS"}
    if "GET" in declared:
        declared.add("HEAD")
    undeclared = next(m for m in METHODS if m not in declared)
    cases.append(Case(f"undeclared method {undeclared}", undeclared, path, status={405}, code="method_not_allowed"))
    over = 2 * route.max_body_bytes  # the route's own limit (a heartbeat's ping takes a job's whole output)
    cases.append(Case("body over the limit", route.method, path, b'{"pad": "' + b"x" * over + b'"}', status={413}))
    if route.path == STRIPE_WEBHOOK:
        # found by a fresh-eyes review of issue 21: unsigned, every case stopped at the signature check
        for case in cases:
            case.headers.setdefault("stripe-signature", stripe_signature(case.body))
    return cases


STRIPE_WEBHOOK = "/v1/webhooks/stripe"


def stripe_signature(body: bytes) -> str:
    """Stripe's signature of ``body`` with the test webhook secret (bytes that are not UTF-8 signed as Latin-1:
    the route must still refuse them as a 400)."""
    import stripe

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("latin-1")
    return str(stripe.WebhookSignature.generate_signature_header(text, TEST_ENV["STRIPE_WEBHOOK_SECRET"]))


def is_problem(r: Result, method: str) -> list[str]:
    """What is wrong with a response, as a list of complaints (empty when it is fine)."""
    if r.status >= 500:
        return [f"a {r.status}"]
    if b'"Code"' in r.body or b'"Message"' in r.body:
        return ["Chalice's own error body"]
    if r.status < 400:
        return []
    complaints = []
    if r.headers.get("content-type") != "application/problem+json":
        complaints.append(f"content-type {r.headers.get('content-type')}")
    if method == "HEAD":
        return complaints + ([f"a HEAD body {r.body[:50]!r}"] if r.body else [])
    problem = r.json if isinstance(r.json, dict) else {}
    missing = {"type", "title", "status", "detail", "code"} - set(problem)
    if missing:
        complaints.append(f"missing {sorted(missing)}")
    if problem.get("status") != r.status:
        complaints.append(f"status {problem.get('status')} in the body")
    if r.status == 422:
        entries = problem.get("errors")
        if not entries or not all(isinstance(e.get("field"), str) and e.get("message") for e in entries):
            complaints.append(f"errors {entries!r}")
    return complaints


def check(r: Result, case: Case, expect_401: bool, signed_in: bool = False) -> list[str]:
    complaints = is_problem(r, case.method)
    status, code, field_named = case.status, case.code, case.field_named
    if expect_401 and status not in ({413}, {405}) and not case.reroutes:
        status, code, field_named = {401}, None, None  # the caller is checked before the body is read
    if status is not None and r.status not in status:
        complaints.append(f"status {r.status}, expected {sorted(status)}")
    elif case.real_ids and r.status == 404 and not expect_401:
        complaints.append("404 on the ids of live objects: the case never reached the route's own checks")
    elif signed_in and r.status == 401:  # found by a fresh-eyes review of issue 21 (a logout ended the session)
        complaints.append("401 for a signed-in caller: the case never reached the route's own checks")
    problem = r.json if isinstance(r.json, dict) else {}
    if code is not None and status is not None and problem.get("code") != code:
        complaints.append(f"code {problem.get('code')}, expected {code}")
    if field_named is not None and r.status == 422:
        fields = [e.get("field", "") for e in problem.get("errors", [])]
        if not any(f == field_named or f.startswith(field_named + ".") for f in fields):
            complaints.append(f"no error for {field_named} in {fields}")
    return [f"{case.method} {case.path[:60]} [{case.name}]: {c} — {r.body[:200]!r}" for c in complaints]


def forget_counts() -> None:
    """Each case is sent as if first in its minute: the sweep sends more from one address, user and team than the
    per-address, per-user and per-team sending limits allow (those limits have their own tests:
    tests/integration/test_rate_limits.py, test_abuse_controls.py)."""
    from chalicelib.ratelimit.models import CounterModel

    for counter in CounterModel.scan():
        if counter.key.startswith(("ip#", "api-user#", "sends#")):
            counter.delete()


def run(
    api: ApiClient,
    cases: list[Case],
    token: str | None,
    expect_401: bool,
    renew: Callable[[], dict[str, str]] | None = None,
    sign_in: Callable[[], str] | None = None,
) -> list[str]:
    """Each case in turn; after one that removed its objects (a 2xx DELETE), the rest name ``renew()``'s, and
    after one that ended the caller's session (a 2xx logout), the rest are sent with ``sign_in()``'s token."""
    failures: list[str] = []
    for n, case in enumerate(cases):
        forget_counts()
        headers = dict(case.headers)
        if token:
            headers["authorization"] = f"Bearer {token}"
        r = api.request(case.method, case.path, body=case.body, headers=headers)
        failures += check(r, case, expect_401, signed_in=sign_in is not None)
        if sign_in is not None and case.path.startswith("/v1/auth/logout") and 200 <= r.status < 300:
            token = sign_in()
        if renew is not None and case.real_ids and case.method == "DELETE" and 200 <= r.status < 300:
            renamed = renew()
            for later in cases[n + 1 :]:
                if later.real_ids:
                    later.path = PATH_PARAM.sub(lambda m, ids=renamed: ids[m.group(1)], later.template)
    return failures


SWEPT = [
    pytest.param(route, signed_in, id=f"{route.method} {route.path} {'signed-in' if signed_in else 'anonymous'}")
    for route in ROUTES
    for signed_in in ([False, True] if route.auth != "none" else [False])
]


@pytest.mark.parametrize(("route", "signed_in"), SWEPT)
def test_a_hostile_request_never_gets_a_500(sweep, route, signed_in):
    token = sweep.fresh_token() if signed_in else None
    needs_caller = route.auth != "none" and not signed_in
    real = signed_in or route.auth == "none"  # the public routes get live slugs, badges and ping tokens too
    ids = sweep.fresh_ids(route) if real else None

    cases = route_cases(route, ids)
    renew = (lambda: sweep.fresh_ids(route)) if real else None
    sign_in = sweep.fresh_token if signed_in else None
    failures = run(sweep.api, cases, token, expect_401=needs_caller, renew=renew, sign_in=sign_in)

    assert not failures, "\n".join(failures)
    if real and PATH_PARAM.search(route.path):
        assert any(c.real_ids for c in cases)  # the 404 check above ran on live ids


def test_an_unknown_path_is_a_404_problem_whatever_is_sent(sweep):
    token = sweep.fresh_token()
    paths = ["/", "/v1", "/v1/me/extra", "/health/x", *(f"/no/such/{junk}" for junk in JUNK_IDS)]
    cases = [Case(f"{method} {path[:20]}", method, path, status={404}) for path in paths for method in METHODS]
    cases += [
        Case(c.name, c.method, c.path, c.body, c.headers, status={404}, code="not_found")
        for c in body_cases(ROUTES[0], "/no/such/x")
    ]
    cases.append(Case("2 MiB body", "POST", "/no/such/x", b"x" * (2 * MAX_BODY_BYTES), status={404}))

    failures = run(sweep.api, cases, None, expect_401=False) + run(sweep.api, cases, token, expect_401=False)

    assert not failures, "\n".join(failures)


def test_the_checker_itself_refuses_a_500_a_chalice_body_and_a_bare_422():
    case = Case("probe", "POST", "/probe")
    plain = {"content-type": "application/json"}
    chalice = Result(403, plain, b'{"Code": "ForbiddenError", "Message": "Forbidden"}', None)
    problem = {"type": "t", "title": "t", "status": 422, "detail": "d", "code": "validation_error"}
    bare_422 = Result(422, {"content-type": "application/problem+json"}, json.dumps(problem).encode(), problem)

    assert check(Result(500, plain, b"{}", {}), case, expect_401=False)
    assert check(Result(502, plain, b"", None), case, expect_401=False)
    assert check(chalice, case, expect_401=False)
    assert check(bare_422, case, expect_401=False)
    assert check(Result(204, {}, b"", None), case, expect_401=False) == []


def test_the_sweep_covers_every_declared_route_and_the_dev_routes():
    swept = {(route.method, route.path) for route in ROUTES}
    assert {("GET", "/dev/outbox"), ("POST", "/dev/tick"), ("GET", "/health")} <= swept
    assert {("POST", "/v1/auth/register"), ("PATCH", "/v1/me")} <= swept


def test_malformed_json_is_400_invalid_json_and_2_mib_is_413(sweep):
    r = sweep.api.request("POST", "/v1/auth/login", body=b'{"email": ')
    assert r.status == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json["code"] == "invalid_json"
    assert r.json["type"] == "https://app.vigil.test/docs#problem-invalid_json"

    r = sweep.api.request("POST", "/v1/auth/login", body=b"[" + b"1," * MAX_BODY_BYTES + b"1]")
    assert r.status == 413
    assert r.json["code"] == "payload_too_large"


def test_each_wrong_field_gets_its_own_422_entry(sweep):
    r = sweep.api.post("/v1/auth/register", {"email": 1, "password": ["x"], "name": {"a": 1}, "extra": {"b": 2}})

    assert r.status == 422
    assert r.json["code"] == "validation_error"
    fields = sorted(e["field"] for e in r.json["errors"])
    assert fields == ["email", "extra", "name", "password"]
    assert {"field": "extra", "message": "unknown field"} in r.json["errors"]


@pytest.mark.parametrize(
    ("path", "id_name", "nulls"),
    [
        ("/v1/monitors/{}", "monitor_id", ["name", "url", "interval_seconds"]),
        ("/v1/maintenance-windows/{}", "window_id", ["title", "ends_at"]),
        ("/v1/status-pages/{}", "page_id", ["name", "slug", "components"]),
        ("/v1/alert-channels/{}", "channel_id", ["name", "config", "cooldown_seconds"]),
    ],
)
def test_each_field_a_patch_sets_to_null_is_named(sweep, path, id_name, nulls):
    r = sweep.api.patch(path.format(sweep.ids[id_name]), dict.fromkeys(nulls), token=sweep.fresh_token())

    assert r.status == 422, r.body
    assert sorted(e["field"] for e in r.json["errors"]) == sorted(nulls)
    assert {e["message"] for e in r.json["errors"]} == {"cannot be null"}


@pytest.mark.parametrize(
    "path",
    [
        "/v1/monitors",
        "/v1/incidents",
        "/v1/maintenance-windows",
        "/v1/status-pages",
        "/v1/alert-channels",
        "/v1/alert-channels/{channel_id}/deliveries",
    ],
)
def test_a_cursor_with_characters_no_cursor_has_is_400(sweep, path):
    token = sweep.fresh_token()
    channel = create_channel(sweep.api.acting_as(token), name="cursor")  # its own: the sweep deletes what it finds
    r = sweep.api.get(path.format(channel_id=channel["id"]) + "?cursor=%C3%A9.abc", token=token)

    assert r.status == 400, r.body
    assert r.json["code"] == "invalid_cursor"


@contextmanager
def local_gateway(app: Any) -> Iterator[http.client.HTTPConnection]:
    """A connection to ``app`` served by the local stack's own server and gateway on a free loopback port."""
    from chalice.config import Config
    from chalice.local import LocalDevServer

    from chalicelib.local.gateway import VigilRequestHandler

    server = LocalDevServer(app, Config(chalice_stage="test"), "127.0.0.1", 0, handler_cls=VigilRequestHandler)
    thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    connection = http.client.HTTPConnection("127.0.0.1", server.server.server_address[1], timeout=10)
    try:
        yield connection
    finally:
        connection.close()
        server.server.shutdown()
        server.server.server_close()


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND"])
def test_the_local_gateway_answers_a_method_it_does_not_know_with_a_405_problem(api, method):
    """http.server answers a method it has no handler for with a 501 HTML page: the local stack answers as the app
    does everywhere else."""
    with local_gateway(api.app) as connection:
        connection.request(method, "/v1/me?x=1")
        response = connection.getresponse()
        status, headers, body = response.status, dict(response.getheaders()), json.loads(response.read())
    assert (status, headers["Content-Type"]) == (405, "application/problem+json")
    assert (body["code"], body["status"]) == ("method_not_allowed", 405)
    assert body["detail"] == f"{method} is not allowed on /v1/me."
    assert "GET" in headers["Allow"]


def test_the_body_of_a_method_the_gateway_does_not_know_never_becomes_the_next_request(api):
    """The 405 is answered without reading the body: the connection closes after it, or the body left unread would
    be parsed as the start of the next request on it (schemathesis' QUERY with a body got a 400 HTML page)."""
    with local_gateway(api.app) as connection:
        connection.request("QUERY", "/v1/monitors", body=b'{"name": "x"}', headers={"Content-Type": JSON})
        refused = connection.getresponse()
        refused.read()
        connection.request("GET", "/health")
        health = connection.getresponse()
        answer = health.read()

    assert (health.status, health.getheader("Content-Type")) == (200, JSON), answer
    assert (refused.status, refused.getheader("Connection")) == (405, "close")
