"""Every team-owned route, every role, {own team, another team}, generated from the route declarations.

Allowed by the role matrix → 2xx (a valid request on the team's own objects succeeds: the factories below make
them); role too low → 403; any object of another team → 404, including ids smuggled in request bodies.  A new
team route with a path parameter or a body the factories below do not know fails
``test_every_team_route_is_covered`` until it is added here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.alerts import suppressions
from chalicelib.api.framework import Route, all_routes
from chalicelib.api.routes import routers
from chalicelib.auth import apikeys
from chalicelib.clock import isoz, utcnow
from chalicelib.teams import authz
from chalicelib.teams.models import MembershipModel
from tests.factories import create_channel, create_heartbeat, create_monitor, create_status_page
from tests.support import built_once, join_team, make_test_settings, on_plan, open_incident, register

TARGET = "http://127.0.0.1:9/"  # nothing listens on the discard port: a test check fails fast, on loopback
ROLES = ("owner", "admin", "member", "viewer")
TEAM_ROUTES = [r for r in all_routes(routers(make_test_settings())) if r.auth == "team"]
SCOPES = list(apikeys.SCOPES)


@pytest.fixture
def settings(stripe_standin):
    """Private targets (the test check fails fast on loopback) and Stripe's stand-in (an owner's checkout)."""
    return make_test_settings(ALLOW_PRIVATE_TARGETS="true", STRIPE_API_BASE=stripe_standin.url)


@dataclass
class World:
    """Team A (ours: one user per role) and team B (another team, with its own members)."""

    api: Any
    teams: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    bounced: list[str] = field(default_factory=list)

    def user(self, email: str) -> dict[str, Any]:
        return register(self.api, email)

    def join(self, team: str, user_id: str, role: str) -> None:
        MembershipModel(self.teams[team], user_id, role=role, joined_at=utcnow()).save()

    def member(self, team: str, role: str = "viewer") -> str:
        """A fresh member of the team: the target of member routes."""
        user = self.user(f"target-{len(self.tokens)}-{team}-{utcnow().timestamp()}@example.com")
        self.join(team, user["user"]["id"], role)
        self.tokens[f"target-{user['user']['id']}"] = user["access_token"]
        return str(user["user"]["id"])

    def owner(self, team: str) -> Any:
        """The client, acting as the team's owner."""
        return self.api.acting_as(self.tokens[f"owner-{team}"])

    def invitation(self, team: str) -> str:
        r = self.api.post(
            f"/v1/teams/{self.teams[team]}/invitations",
            {"email": f"invited-{utcnow().timestamp()}@example.com", "role": "member"},
            token=self.tokens[f"owner-{team}"],
        )
        assert r.status == 201, r.body
        return str(r.json["id"])


def shared(api: Any, key: str, build: Callable[[], tuple[World, Any]]) -> tuple[World, Any]:
    """``build()``'s world and extras, built once per worker and copied back for each test (tests/support.py
    ``built_once``): each test still starts from the same untouched world."""

    def built() -> tuple[dict[str, Any], Any]:
        world, extra = build()
        return {name: getattr(world, name) for name in ("teams", "tokens", "owners", "bounced")}, extra

    fields, extra = built_once(key, built)
    return World(api, **fields), extra


def build_world(api: Any) -> World:
    return shared(api, "role matrix", lambda: (_build_world(api), None))[0]


def _build_world(api: Any) -> World:
    world = World(api)
    for team in ("A", "B"):
        owner = world.user(f"owner-{team.lower()}@example.com")
        team_id = api.post("/v1/teams", {"name": f"Team {team}"}, token=owner["access_token"]).json["id"]
        world.teams[team] = team_id
        world.owners[team] = owner["user"]["id"]
        world.tokens[f"owner-{team}"] = owner["access_token"]
        on_plan(api, team_id, "enterprise")  # room for every role's call's new objects (a page each)
    # every caller acts in its team, as a frontend would after switching to it: the others join team A and switch
    for role in ROLES[1:]:
        user = world.user(f"{role}-a@example.com")
        world.tokens[f"{role}-A"] = join_team(api, world.teams["A"], user, role)["access_token"]
    for key, team in [("owner-A", "A"), ("owner-B", "B")]:
        r = api.post("/v1/auth/switch-team", {"team_id": world.teams[team]}, token=world.tokens[key])
        assert r.status == 200, r.body
        world.tokens[key] = r.json["access_token"]
    return world


def monitor(world: World, team: str) -> str:
    return str(create_monitor(world.owner(team), name="m", url=TARGET)["id"])


def heartbeat(world: World, team: str) -> str:
    return str(create_heartbeat(world.owner(team), name="cron")["id"])


def incident(world: World, team: str) -> str:
    """An incident opened the way the incident handler opens one: two failed minutes in every region."""
    return open_incident(world.teams[team], monitor(world, team), utcnow(), status_code=503, error="timeout")


def window(world: World, team: str) -> str:
    r = world.api.post(
        "/v1/maintenance-windows", window_body(monitor(world, team)), token=world.tokens[f"owner-{team}"]
    )
    assert r.status == 201, r.body
    return str(r.json["id"])


def window_body(monitor_id: str) -> dict[str, Any]:
    now = utcnow()
    return {
        "title": "Upgrade",
        "monitor_ids": [monitor_id],
        "starts_at": isoz(now + timedelta(hours=1)),
        "ends_at": isoz(now + timedelta(hours=2)),
    }


def channel(world: World, team: str) -> str:
    return str(create_channel(world.owner(team))["id"])


def bounced_channel(world: World, team: str) -> str:
    """An email channel whose address bounced: what unsuppress takes back.  A fresh address each time, as a lift
    is allowed once a day per address (its body names ``world.bounced[-1]``)."""
    address = f"gone-{len(world.bounced)}-{team.lower()}@example.com"
    channel_id = str(create_channel(world.owner(team), config={"addresses": [address]})["id"])
    suppressions.suppress(address, suppressions.BOUNCE, "General", utcnow())
    world.bounced.append(address)
    return channel_id


def status_page(world: World, team: str) -> str:
    slug = f"page-{team.lower()}-{int(utcnow().timestamp() * 1000)}"
    return str(create_status_page(world.owner(team), name="Status", slug=slug)["id"])


def api_key(world: World, team: str) -> str:
    r = world.api.post("/v1/api-keys", {"name": "k", "scopes": ["monitors:read"]}, token=world.tokens[f"owner-{team}"])
    assert r.status == 201, r.body
    return str(r.json["id"])


def on_page(world: World, team: str) -> str:
    """A monitor already shown on the team's page (the component route removes it)."""
    monitor_id = monitor(world, team)
    pages = world.api.get("/v1/status-pages", token=world.tokens[f"owner-{team}"]).json["data"]
    r = world.api.post(
        f"/v1/status-pages/{pages[-1]['id']}/components",
        {"monitor_id": monitor_id},
        token=world.tokens[f"owner-{team}"],
    )
    assert r.status == 201, r.body
    return monitor_id


# How to make an object of a team for each path parameter.
FACTORIES: dict[str, Callable[[World, str], str]] = {
    "team_id": lambda world, team: world.teams[team],
    "user_id": lambda world, team: world.member(team),
    "invitation_id": lambda world, team: world.invitation(team),
    "monitor_id": monitor,
    "incident_id": incident,
    "window_id": window,
    "channel_id": channel,
    "page_id": status_page,
    "key_id": api_key,
}

# Where one route needs its object made differently (the monitor removed from a page must be on it).
ROUTE_FACTORIES: dict[tuple[str, str], dict[str, Callable[[World, str], str]]] = {
    ("DELETE", "/v1/status-pages/{page_id}/components/{monitor_id}"): {"monitor_id": on_page},
    ("POST", "/v1/monitors/{monitor_id}/rotate-ping-token"): {"monitor_id": heartbeat},
    ("GET", "/v1/monitors/{monitor_id}/pings"): {"monitor_id": heartbeat},
    ("POST", "/v1/alert-channels/{channel_id}/unsuppress"): {"channel_id": bounced_channel},
}

# Where an allowed call succeeds only with its team in another state, and why.
PREPARED: dict[tuple[str, str], Callable[[World], None]] = {
    # Team A pays for the enterprise plan (room for every call's objects), and a paying team changes plan in the
    # portal (409): its subscription has lapsed (its customer kept), so a checkout starts a new one.
    ("POST", "/v1/billing/checkout"): lambda world: on_plan(world.api, world.teams["A"], "enterprise", "canceled"),
}

# A valid body per route; ``ids(team)`` makes objects of the team that body ids should name.
BODIES: dict[tuple[str, str], Callable[[World, Callable[[str], str]], dict[str, Any]]] = {
    ("PATCH", "/v1/teams/{team_id}"): lambda world, _: {"name": "Renamed"},
    ("POST", "/v1/billing/checkout"): lambda world, _: {"plan": "pro"},
    ("POST", "/v1/api-keys"): lambda world, _: {"name": "CI", "scopes": ["monitors:read"]},
    ("PATCH", "/v1/teams/{team_id}/members/{user_id}"): lambda world, _: {"role": "member"},
    ("POST", "/v1/teams/{team_id}/transfer-ownership"): lambda world, ids: {"user_id": ids("user_id")},
    ("POST", "/v1/teams/{team_id}/invitations"): lambda world, _: {"email": "new@example.com", "role": "viewer"},
    ("POST", "/v1/monitors"): lambda world, ids: {"name": "New", "url": TARGET, "channel_ids": [ids("channel_id")]},
    ("PATCH", "/v1/monitors/{monitor_id}"): lambda world, _: {"name": "Renamed"},
    ("POST", "/v1/incidents/{incident_id}/notes"): lambda world, _: {"text": "Rolling back the deploy"},
    ("PUT", "/v1/incidents/{incident_id}/postmortem"): lambda world, _: {
        "cause": "A bad deploy",
        "resolution": "Reverted",
    },
    ("POST", "/v1/maintenance-windows"): lambda world, ids: window_body(ids("monitor_id")),
    ("PATCH", "/v1/maintenance-windows/{window_id}"): lambda world, ids: {"monitor_ids": [ids("monitor_id")]},
    ("POST", "/v1/alert-channels"): lambda world, _: {
        "name": "Pager",
        "type": "sms",
        "config": {"phone_numbers": ["+14155550123"]},
    },
    ("PATCH", "/v1/alert-channels/{channel_id}"): lambda world, _: {"name": "Renamed"},
    ("POST", "/v1/alert-channels/{channel_id}/unsuppress"): lambda world, _: {"address": world.bounced[-1]},
    ("POST", "/v1/status-pages"): lambda world, ids: {
        "name": "Status",
        "slug": f"new-{int(utcnow().timestamp() * 1000)}",
        "components": [{"monitor_id": ids("monitor_id")}],
    },
    ("PATCH", "/v1/status-pages/{page_id}"): lambda world, ids: {"components": [{"monitor_id": ids("monitor_id")}]},
    ("POST", "/v1/status-pages/{page_id}/components"): lambda world, ids: {"monitor_id": ids("monitor_id")},
}
BODY_IDS = {
    ("POST", "/v1/teams/{team_id}/transfer-ownership"),
    ("POST", "/v1/maintenance-windows"),
    ("PATCH", "/v1/maintenance-windows/{window_id}"),
    ("POST", "/v1/monitors"),
    ("POST", "/v1/status-pages"),
    ("PATCH", "/v1/status-pages/{page_id}"),
    ("POST", "/v1/status-pages/{page_id}/components"),
}  # bodies that name another object

# Routes whose rule depends on the target: removing someone else needs MEMBERS (leaving needs only READ).
PERMISSION_OVERRIDES = {("DELETE", "/v1/teams/{team_id}/members/{user_id}"): authz.MEMBERS}


def _params(route: Route) -> list[str]:
    return [part[1:-1] for part in route.path.split("/") if part.startswith("{")]


def test_every_team_route_is_covered():
    for route in TEAM_ROUTES:
        for name in _params(route):
            assert name in FACTORIES, f"{route.method} {route.path}: no factory for {{{name}}}"
        if route.body is not None:
            assert (route.method, route.path) in BODIES, f"{route.method} {route.path}: no sample body"
    assert len(TEAM_ROUTES) >= 10


# Within one route, the calls that may change the world (an owner deleting the team, transferring it) come last.
CALLS = [(role, where) for role in reversed(ROLES) for where in ("other", "smuggled", "own")]


def _applies(route: Route, where: str) -> bool:
    return (where != "smuggled" or (route.method, route.path) in BODY_IDS) and (
        where != "other" or bool(_params(route))
    )


@pytest.mark.parametrize("route", TEAM_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_the_role_matrix_holds(api, route):
    """Every role by {own team, another team, another team's ids in the body}, in one world per route: each call is
    made on objects of its own."""
    world = build_world(api)
    PREPARED.get((route.method, route.path), lambda world: None)(world)
    failures = [
        f"as {role} on {where}: {failure}"
        for role, where in CALLS
        if _applies(route, where)
        for failure in _role_call(world, route, role, where)
    ]
    assert not failures, "\n".join(failures)


def _role_call(world: World, route: Route, role: str, where: str) -> list[str]:
    api = world.api
    path_team = "B" if where == "other" else "A"
    body_team = "A" if where == "own" else "B"
    path = route.path
    factories = {**FACTORIES, **ROUTE_FACTORIES.get((route.method, route.path), {})}
    for name in _params(route):
        path = path.replace("{" + name + "}", factories[name](world, path_team))
    body = None
    if route.body is not None:
        body = BODIES[(route.method, route.path)](world, lambda name: FACTORIES[name](world, body_team))

    r = api.request(route.method, path, body, token=world.tokens[f"{role}-A"])

    permission = PERMISSION_OVERRIDES.get((route.method, route.path), route.permission or "")
    seen = f"{r.status} {r.body[:300]!r}"
    if where == "other" and (authz.allowed(role, permission) or "{team_id}" in route.path):
        return [] if r.status == 404 else [f"expected 404, got {seen}"]
    if where == "other":
        # The caller's role in its own team is too low: 403 whatever the id names, so nothing leaks.
        if r.status != 403:
            return [f"expected 403, got {seen}"]
        missing = route.path
        for name in _params(route):
            missing = missing.replace("{" + name + "}", "does_not_exist")
        status = api.request(route.method, missing, body, token=world.tokens[f"{role}-A"]).status
        return [] if status == 403 else [f"expected 403 for a missing id, got {status}"]
    if not authz.allowed(role, permission):
        ok = r.status == 403 and r.json["code"] == "forbidden"
        return [] if ok else [f"expected 403 forbidden, got {seen}"]
    if where == "smuggled":
        return [] if r.status == 404 else [f"expected 404, got {seen}"]
    return [] if succeeded(r.status) else [f"expected 2xx, got {seen}"]


def test_a_demotion_takes_effect_on_the_very_next_request(api):
    world = build_world(api)
    admin_token = world.tokens["admin-A"]
    team = world.teams["A"]
    assert api.get(f"/v1/teams/{team}/invitations", token=admin_token).status == 200
    members = api.get(f"/v1/teams/{team}/members", token=world.tokens["owner-A"]).json["data"]
    admin_id = next(m["user_id"] for m in members if m["role"] == "admin")
    r = api.patch(f"/v1/teams/{team}/members/{admin_id}", {"role": "viewer"}, token=world.tokens["owner-A"])
    assert r.status == 200, r.body
    r = api.get(f"/v1/teams/{team}/invitations", token=admin_token)  # same, unexpired token
    assert r.status == 403
    assert api.get(f"/v1/teams/{team}", token=admin_token).json["role"] == "viewer"


def test_a_removal_takes_effect_on_the_very_next_request(api):
    world = build_world(api)
    team = world.teams["A"]
    members = api.get(f"/v1/teams/{team}/members", token=world.tokens["owner-A"]).json["data"]
    member_id = next(m["user_id"] for m in members if m["role"] == "member")
    assert api.get(f"/v1/teams/{team}", token=world.tokens["member-A"]).status == 200
    assert api.delete(f"/v1/teams/{team}/members/{member_id}", token=world.tokens["owner-A"]).status == 204
    assert api.get(f"/v1/teams/{team}", token=world.tokens["member-A"]).status == 404


# --- API keys: every team route, by the key's scopes (exactly the route's, its sibling, every other one), ---
# its creator's current role, and own team / another team (the path's object, and ids smuggled in the body).


def sibling(scope: str) -> str:
    """The same resource's other scope (``monitors:read`` ↔ ``monitors:write``): the likeliest mix-up."""
    resource, _, access = scope.partition(":")
    return f"{resource}:{'write' if access == 'read' else 'read'}"


def key_world(api: Any, scope: str | None) -> tuple[World, dict[str, str]]:
    return shared(api, f"scope matrix {scope}", lambda: _key_world(api, scope))


def _key_world(api: Any, scope: str | None) -> tuple[World, dict[str, str]]:
    """Teams A (pro) and B with their owners, and team A's keys for a route needing ``scope``: ``exact`` (only it),
    ``sibling``, ``others`` (every scope but it), and ``demoted`` (every scope, made by an admin who is then made
    a viewer); for a route keys may not reach, ``all`` (every scope)."""
    world = World(api)
    for team in ("A", "B"):
        owner = register(api, f"owner-{team.lower()}@example.com")
        world.teams[team] = owner["team"]["id"]
        world.owners[team] = owner["user"]["id"]
        world.tokens[f"owner-{team}"] = owner["access_token"]
    on_plan(api, world.teams["A"])
    owner = world.tokens["owner-A"]

    def key(scopes: list[str], token: str = owner) -> str:
        r = api.post("/v1/api-keys", {"name": "matrix", "scopes": scopes}, token=token)
        assert r.status == 201, r.body
        return str(r.json["key"])

    if scope is None:
        return world, {"all": key(SCOPES)}
    keys = {
        "exact": key([scope]),
        "sibling": key([sibling(scope)]),
        "others": key([s for s in SCOPES if s != scope]),
    }
    kim = join_team(api, world.teams["A"], register(api, "kim@example.com", verified=False), "admin")
    keys["demoted"] = key(SCOPES, kim["access_token"])
    r = api.patch(f"/v1/teams/{world.teams['A']}/members/{kim['user']['id']}", {"role": "viewer"}, token=owner)
    assert r.status == 200, r.body
    return world, keys


def succeeded(status: int) -> bool:
    """An allowed caller's valid request on its own team's objects: done, not merely "not refused" (a 409 or 422
    there would mean the matrix never saw the permission let anything through)."""
    return 200 <= status < 300


def test_every_scope_is_some_routes_and_has_a_sibling():
    declared = {route.scope for route in TEAM_ROUTES if route.scope}
    assert declared == set(SCOPES)
    assert all(sibling(scope) in SCOPES for scope in SCOPES)


@pytest.mark.parametrize("route", TEAM_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_the_scope_matrix_holds(api, route):
    world, keys = key_world(api, route.scope)
    factories = {**FACTORIES, **ROUTE_FACTORIES.get((route.method, route.path), {})}

    def path_of(team: str) -> str:
        path = route.path
        for name in _params(route):
            path = path.replace("{" + name + "}", factories[name](world, team))
        return path

    def body_of(team: str) -> Any:
        if route.body is None:
            return None
        return BODIES[(route.method, route.path)](world, lambda name: FACTORIES[name](world, team))

    own_path, own_body = path_of("A"), body_of("A")  # refused calls change nothing: they share one object

    def call(token: str, path: str = own_path, body: Any = own_body) -> Any:
        return api.request(route.method, path, body, token=token)

    if route.scope is None:  # accounts, teams, members, invitations, API keys, billing: no key reaches them
        r = call(keys["all"])
        assert (r.status, r.json["code"]) == (403, "api_key_not_allowed"), r.body
        return
    for name in ("sibling", "others"):
        r = call(keys[name])
        assert (r.status, r.json["code"]) == (403, "insufficient_scope"), (name, r.body)
    if _params(route):
        r = call(keys["exact"], path=path_of("B"))
        assert r.status == 404, r.body
    if (route.method, route.path) in BODY_IDS:
        r = call(keys["exact"], body=body_of("B"))
        assert r.status == 404, r.body
    r = call(keys["demoted"])  # every scope, but its creator is a viewer now: the role decides
    if authz.allowed("viewer", route.permission or ""):
        assert succeeded(r.status), r.body
        own_path, own_body = path_of("A"), body_of("A")  # the viewer's call may have used the object
    else:
        assert (r.status, r.json["code"]) == (403, "forbidden"), r.body
    r = call(keys["exact"], own_path, own_body)
    assert succeeded(r.status), r.body
