"""API keys (issue 16): shown once, stored hashed, refused offline when malformed, scoped, never more than their
creator's current role, stopped at once by a revocation, and never a way into accounts, teams, keys or billing."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

import pytest
import time_machine

from chalicelib.auth import apikeys
from chalicelib.auth.models import ApiKeyModel
from chalicelib.clock import isoz, utcnow
from chalicelib.ratelimit.models import CounterModel
from tests.factories import create_monitor
from tests.support import all_at_once, dynamodb_calls, register

ALL = list(apikeys.SCOPES)
KEY = re.compile(r"^vgl_[0-9A-Za-z]{50}$")


def make_key(api, scopes=("monitors:read",), *, token=None, **fields):
    r = api.post("/v1/api-keys", {"name": "CI", "scopes": list(scopes), **fields}, token=token)
    assert r.status == 201, r.body
    return r.json


def test_a_key_is_shown_once_stored_hashed_and_listed_without_its_secret(api, alice, logs):
    created = make_key(api, ["monitors:read", "monitors:write"])
    key = created["key"]
    assert KEY.match(key)
    assert created["prefix"] == key[:12]
    assert created["scopes"] == ["monitors:read", "monitors:write"]
    assert created["created_by"] == alice["user"]["id"]
    assert created["last_used_at"] is None

    (item,) = ApiKeyModel.scan()
    assert item.secret_hash == hashlib.sha256(key.encode()).hexdigest()
    stored = str(item.attribute_values)
    assert key not in stored
    assert key[12:] not in stored

    listed = api.get("/v1/api-keys").json["data"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0]
    assert key not in str(listed)
    assert key not in logs.getvalue()

    assert api.get("/v1/monitors", token=key).status == 200
    (listed,) = api.get("/v1/api-keys").json["data"]
    assert listed["last_used_at"] is not None
    assert key not in logs.getvalue()
    assert key[12:] not in logs.getvalue()


def test_the_key_format_carries_a_checksum_that_is_checked_offline(api, alice):
    key = make_key(api)["key"]
    body, check = key[4:-6], key[-6:]
    assert check == apikeys.checksum(body)
    typo = key[:20] + ("a" if key[20] != "a" else "b") + key[21:]
    forged = "vgl_" + "A" * 50
    for bad in (typo, forged, key[:-1], key + "x", "vgl_", "vgl_" + body + "!!!!!!"):
        with dynamodb_calls() as calls:
            r = api.get("/v1/monitors", token=bad)
        assert (r.status, r.json["code"]) == (401, "token_invalid"), bad
        assert calls == [], "a malformed key is refused without a storage read"


def test_a_real_lookup_id_with_a_wrong_secret_is_refused(api, alice):
    key = make_key(api)["key"]
    lookup = key[4:16]
    secret = "Z" * 32
    guess = "vgl_" + lookup + secret + apikeys.checksum(lookup + secret)
    r = api.get("/v1/monitors", token=guess)
    assert (r.status, r.json["code"]) == (401, "token_invalid")
    assert api.get("/v1/monitors", token=key).status == 200


@pytest.mark.parametrize("name", ["api_key", "key", "token", "access_token"])
def test_a_key_in_the_query_string_is_a_400_and_is_not_logged(api, alice, logs, name):
    key = make_key(api)["key"]
    r = api.get(f"/v1/monitors?{name}={key}", token="")
    assert (r.status, r.json["code"]) == (400, "api_key_in_query")
    assert key not in r.text
    assert key not in logs.getvalue()
    # Even with a valid header, and on routes that need no sign-in.
    assert api.get(f"/v1/monitors?{name}={key}", token=key).status == 400
    assert api.get(f"/v1/plans?{name}={key}", token="").status == 400


def test_a_revoked_key_is_refused_on_its_very_next_request(api, alice, teammate):
    bob = teammate(role="admin")
    created = make_key(api)
    key = created["key"]
    assert api.get("/v1/monitors", token=key).status == 200
    assert api.delete(f"/v1/api-keys/{created['id']}", token=bob["access_token"]).status == 204  # admins manage
    r = api.get("/v1/monitors", token=key)
    assert (r.status, r.json["code"]) == (401, "token_invalid")
    assert "revoked" in r.json["detail"]
    assert api.get("/v1/api-keys").json["data"] == []
    assert api.delete(f"/v1/api-keys/{created['id']}").status == 404


def test_an_expired_key_is_refused_and_an_expiry_must_be_in_the_future(api, alice):
    soon = utcnow() + timedelta(hours=1)
    key = make_key(api, expires_at=isoz(soon))["key"]
    assert api.get("/v1/monitors", token=key).status == 200
    with time_machine.travel(soon - timedelta(seconds=1)):
        assert api.get("/v1/monitors", token=key).status == 200  # a second before its expiry
    with time_machine.travel(soon + timedelta(seconds=1)):
        r = api.get("/v1/monitors", token=key)
    assert (r.status, r.json["code"]) == (401, "token_expired")
    r = api.post("/v1/api-keys", {"name": "x", "scopes": ALL, "expires_at": isoz(utcnow() - timedelta(minutes=1))})
    assert (r.status, r.json["errors"][0]["field"]) == (422, "expires_at")


def test_scopes_are_the_ten_documented_and_an_unknown_one_is_a_422(api, alice):
    assert len(apikeys.SCOPES) == 10
    assert make_key(api, ALL)["scopes"] == ALL
    for bad in (["monitors:admin"], [], ["billing:read"], "monitors:read"):
        r = api.post("/v1/api-keys", {"name": "x", "scopes": bad})
        assert r.status == 422, bad
        assert r.json["errors"][0]["field"].startswith("scopes")
    assert len(api.get("/v1/api-keys").json["data"]) == 1


def test_only_owners_and_admins_manage_keys(api, alice, teammate):
    member = teammate("bob@example.com", role="member")
    viewer = teammate("carol@example.com", role="viewer")
    created = make_key(api)
    for person in (member, viewer):
        token = person["access_token"]
        for r in (
            api.post("/v1/api-keys", {"name": "x", "scopes": ALL}, token=token),
            api.get("/v1/api-keys", token=token),
            api.delete(f"/v1/api-keys/{created['id']}", token=token),
        ):
            assert r.status == 403, r.body
            assert r.json["code"] == "forbidden"
    assert [k["id"] for k in api.get("/v1/api-keys").json["data"]] == [created["id"]]
    admin = teammate("dana@example.com", role="admin")["access_token"]  # an admin does all three
    made = api.post("/v1/api-keys", {"name": "admin's", "scopes": ALL}, token=admin)
    assert made.status == 201, made.body
    assert len(api.get("/v1/api-keys", token=admin).json["data"]) == 2
    assert api.delete(f"/v1/api-keys/{created['id']}", token=admin).status == 204
    assert [k["id"] for k in api.get("/v1/api-keys").json["data"]] == [made.json["id"]]


def test_another_teams_key_is_not_found_and_a_key_acts_in_its_own_team_only(api, alice):
    charlie = register(api, "charlie@example.com")
    mine = make_key(api, ALL)
    theirs = make_key(api, ALL, token=charlie["access_token"])
    assert api.delete(f"/v1/api-keys/{theirs['id']}").status == 404
    assert [k["id"] for k in api.get("/v1/api-keys").json["data"]] == [mine["id"]]
    monitor = create_monitor(api)
    assert api.get(f"/v1/monitors/{monitor['id']}", token=mine["key"]).status == 200
    assert api.get(f"/v1/monitors/{monitor['id']}", token=theirs["key"]).status == 404
    assert api.get("/v1/monitors", token=theirs["key"]).json["data"] == []


def test_keys_never_reach_accounts_teams_members_invitations_keys_or_billing(api, alice):
    key = make_key(api, ALL)["key"]
    team = alice["team"]["id"]
    refused = [
        ("GET", "/v1/me", None),
        ("PATCH", "/v1/me", {"name": "Mallory"}),
        ("POST", "/v1/me/password", {"current_password": "x", "new_password": "y"}),
        ("POST", "/v1/me/email", {"new_email": "mallory@example.com", "password": "x"}),
        ("DELETE", "/v1/me", {"password": "x"}),
        ("GET", "/v1/teams", None),
        ("POST", "/v1/teams", {"name": "Shadow"}),
        ("GET", f"/v1/teams/{team}", None),
        ("GET", f"/v1/teams/{team}/members", None),
        ("POST", f"/v1/teams/{team}/invitations", {"email": "mallory@example.com", "role": "admin"}),
        ("DELETE", f"/v1/teams/{team}", None),
        ("POST", "/v1/auth/switch-team", {"team_id": team}),
        ("POST", "/v1/auth/logout", None),
        ("POST", "/v1/api-keys", {"name": "more", "scopes": ALL}),
        ("GET", "/v1/api-keys", None),
        ("GET", "/v1/billing", None),
        ("POST", "/v1/billing/checkout", {"plan": "pro"}),
        ("POST", "/v1/billing/portal", None),
    ]
    for method, path, body in refused:
        r = api.request(method, path, body, token=key)
        assert (r.status, r.json["code"]) == (403, "api_key_not_allowed"), (method, path, r.body)
    assert len(api.get("/v1/api-keys").json["data"]) == 1
    assert api.get(f"/v1/teams/{team}").status == 200


def test_a_demotion_shrinks_a_key_at_once_and_a_removal_disables_it(api, alice, teammate):
    bob = teammate(role="admin")
    key = make_key(api, ALL, token=bob["access_token"])["key"]
    monitor = create_monitor(api)
    assert api.post(f"/v1/monitors/{monitor['id']}/pause", token=key).status == 200
    team = alice["team"]["id"]
    assert api.patch(f"/v1/teams/{team}/members/{bob['user']['id']}", {"role": "viewer"}).status == 200
    r = api.post(f"/v1/monitors/{monitor['id']}/resume", token=key)
    assert (r.status, r.json["code"]) == (403, "forbidden")
    assert "viewer" in r.json["detail"]
    assert api.get(f"/v1/monitors/{monitor['id']}", token=key).status == 200  # reading is still within a viewer's
    assert api.delete(f"/v1/teams/{team}/members/{bob['user']['id']}").status == 204
    r = api.get(f"/v1/monitors/{monitor['id']}", token=key)
    assert (r.status, r.json["code"]) == (401, "token_invalid")
    assert "left" in r.json["detail"]


def test_a_creator_who_rejoins_does_not_bring_an_old_key_back(api, alice, teammate):
    from chalicelib.teams.models import MembershipModel

    bob = teammate(role="admin")
    key = make_key(api, ALL, token=bob["access_token"])["key"]
    team = alice["team"]["id"]
    assert api.delete(f"/v1/teams/{team}/members/{bob['user']['id']}").status == 204
    with time_machine.travel(utcnow() + timedelta(minutes=5)):
        MembershipModel(team, bob["user"]["id"], role="admin", joined_at=utcnow()).save()  # invited back
        assert api.get("/v1/monitors", token=key).status == 401


def test_a_key_without_the_scope_is_403_naming_it(api, alice):
    key = make_key(api, ["incidents:read"])["key"]
    r = api.get("/v1/monitors", token=key)
    assert (r.status, r.json["code"]) == (403, "insufficient_scope")
    assert "monitors:read" in r.json["detail"]
    assert api.get("/v1/incidents", token=key).status == 200
    r = api.post("/v1/monitors", {"name": "x", "url": "https://1.1.1.1/"}, token=key)
    assert (r.status, r.json["code"]) == (403, "insufficient_scope")
    assert api.get("/v1/monitors").json["data"] == []


def test_a_deleted_teams_keys_are_gone(api, alice):
    team = api.post("/v1/teams", {"name": "Side"}).json["id"]
    switched = api.post("/v1/auth/switch-team", {"team_id": team}).json["access_token"]
    key = make_key(api, ALL, token=switched)["key"]
    assert api.get("/v1/monitors", token=key).status == 200
    assert api.delete(f"/v1/teams/{team}", token=switched).status == 204
    assert api.get("/v1/monitors", token=key).status == 401
    assert [item for item in ApiKeyModel.scan() if item.team_id == team] == []


def test_a_team_holds_at_most_fifty_live_keys(api, alice):
    ids = [make_key(api)["id"] for _ in range(apikeys.MAX_KEYS_PER_TEAM)]
    r = api.post("/v1/api-keys", {"name": "one more", "scopes": ALL})
    assert (r.status, r.json["code"]) == (409, "conflict")
    assert api.delete(f"/v1/api-keys/{ids[0]}").status == 204
    make_key(api)


def test_last_used_is_written_at_most_once_a_minute(api, alice):
    key = make_key(api)["key"]
    start = utcnow().replace(microsecond=0) + timedelta(minutes=1)
    with time_machine.travel(start, tick=False):
        with dynamodb_calls(ApiKeyModel) as calls:
            for _ in range(5):
                assert api.get("/v1/monitors", token=key).status == 200
        assert [c for c in calls if c == "UpdateItem"] == ["UpdateItem"]
    (listed,) = api.get("/v1/api-keys").json["data"]
    assert listed["last_used_at"] == isoz(start)
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        assert api.get("/v1/monitors", token=key).status == 200
    (listed,) = api.get("/v1/api-keys").json["data"]
    assert listed["last_used_at"] == isoz(start + timedelta(seconds=61))


def test_the_reference_page_shows_how_to_create_and_use_a_key_with_curl(api):
    page = api.get("/docs").text
    assert 'id="api-keys"' in page
    assert "curl -X POST https://app.vigil.test/v1/api-keys" in page
    assert "Authorization: Bearer $VIGIL_API_KEY" in page
    assert "RateLimit-Policy" in page
    assert "or an API key with the monitors:write scope" in page  # on POST /v1/monitors
    assert "(API keys are refused here)" in page  # on the account and team routes
    for scope in apikeys.SCOPES:
        assert f"<code>{scope}</code>" in page


# --- from the review of 50821d2 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59Z", "2040-01-01T00:00:00Z"])
def test_an_expiry_more_than_ten_years_ahead_is_a_422(api, alice, when):
    r = api.post("/v1/api-keys", {"name": "x", "scopes": ALL, "expires_at": when})
    assert (r.status, r.json["errors"][0]["field"]) == (422, "expires_at")
    assert list(ApiKeyModel.scan()) == []


def test_a_key_shaped_token_with_other_characters_is_a_401_without_a_read(api, alice):
    key = make_key(api)["key"]
    for bad in (key[:-6] + "\u00e9" * 6, key[:10] + "\u00e9" + key[11:], key[:-1] + " "):
        with dynamodb_calls() as calls:
            r = api.get("/v1/monitors", token=bad)
        assert (r.status, r.json["code"]) == (401, "token_invalid")
        assert calls == []
    assert apikeys.lookup_of("vgl_" + "A" * 44 + "\u00e9" * 6) is None


@pytest.mark.parametrize(
    "query",
    [
        "api_key={key}",
        "authorization=Bearer%20{key}",
        "{key}",
        "{key}={key}",
        "x=VGL_{tail}",
        "limit=5&cursor={key}",
    ],
)
@pytest.mark.parametrize("path", ["/v1/monitors", "/v1/monitors/{monitor}", "/v1/no/such/path"])
def test_a_key_anywhere_in_the_query_string_is_a_400_that_repeats_none_of_it(api, alice, logs, query, path):
    key = make_key(api)["key"]
    monitor = create_monitor(api)["id"]
    url = path.format(monitor=monitor) + "?" + query.format(key=key, tail=key[4:])
    for token in ("", key):
        r = api.get(url, token=token)
        assert (r.status, r.json["code"]) == (400, "api_key_in_query"), (url, r.body)
        assert key[4:16] not in r.text
        assert key[16:-6][:8] not in r.text
    assert key[4:] not in logs.getvalue()


def test_a_use_racing_the_keys_removal_leaves_no_item_behind(api, alice):
    """A request reads the key, its team is deleted (its keys purged), then the request records the key's use: the
    write must not bring back an item of only ``lookup`` and ``last_used_at``, which would answer 500s for good."""
    key = make_key(api)["key"]
    item = ApiKeyModel.get(apikeys.lookup_of(key), consistent_read=True)
    item.delete()
    apikeys._touch(item, utcnow() + timedelta(minutes=5))
    assert list(ApiKeyModel.scan()) == []
    ApiKeyModel(item.lookup).update(actions=[ApiKeyModel.last_used_at.set(utcnow())])  # as the old code left it
    r = api.get("/v1/monitors", token=key)
    assert (r.status, r.json["code"]) == (401, "token_invalid")


def test_parallel_creates_never_pass_fifty_live_keys(api, alice):
    from concurrent.futures import ThreadPoolExecutor

    for _ in range(45):
        make_key(api)
    saved = all_at_once(ApiKeyModel, "dynamodb.TransactWriteItems", 10)  # ten at once, then the rest
    with saved as met, ThreadPoolExecutor(max_workers=10) as pool:
        statuses = sorted(pool.map(lambda _: api.post("/v1/api-keys", {"name": "p", "scopes": ALL}).status, range(30)))
    assert met == [True] * 10
    assert statuses == [201] * 5 + [409] * 25
    assert sum(1 for k in ApiKeyModel.scan() if k.revoked_at is None) == 50


def test_expired_keys_make_room_for_new_ones(api, alice):
    soon = utcnow() + timedelta(minutes=5)
    for _ in range(apikeys.MAX_KEYS_PER_TEAM):
        make_key(api, expires_at=isoz(soon))
    assert api.post("/v1/api-keys", {"name": "one more", "scopes": ALL}).status == 409
    with time_machine.travel(soon + timedelta(seconds=1)):
        assert api.post("/v1/api-keys", {"name": "one more", "scopes": ALL}).status == 201
        assert [k["name"] for k in api.get("/v1/api-keys").json["data"]] == ["one more"]


def forged() -> str:
    """A well-formed key (its checksum holds) that matches nothing: made offline, for free."""
    body = "".join(secrets.choice(apikeys.BASE62) for _ in range(44))
    return "vgl_" + body + apikeys.checksum(body)


def test_an_address_guessing_keys_gets_429s_for_them_and_its_valid_keys_still_work(api, alice, minute):
    """Behind one address (a NAT, a CI provider) a guesser must not lock out the others: only bad keys are refused,
    and once refused, the address's further bad keys write no counter."""
    bob = register(api, "bob@example.com")
    bobs = make_key(api, token=bob["access_token"])["key"]
    with time_machine.travel(minute, tick=False):
        with dynamodb_calls() as calls:
            statuses = [api.get("/v1/monitors", token=forged()).status for _ in range(30)]
        assert statuses == [401] * 20 + [429] * 10
        assert calls.count("GetItem") == 30  # each key is read: a valid one is never refused unread
        assert calls.count("UpdateItem") == 21  # the 21st refuses the address; the last 9 write nothing
        r = api.get("/v1/monitors", token=forged())
        assert (r.status, int(r.headers["retry-after"])) == (429, 60)
        assert api.get("/v1/monitors", token=bobs).status == 200
    with time_machine.travel(minute + timedelta(seconds=60), tick=False):
        assert api.get("/v1/monitors", token=forged()).status == 401


def test_keys_removed_by_ttl_after_expiring_unrevoked_are_counted_out(api, alice):
    """An expired key nobody revokes is removed by TTL 30 days on, without counting it out: a full team's count is
    put right from the keys that exist."""
    from tests.support import PASSWORD

    soon = utcnow() + timedelta(minutes=5)
    for _ in range(apikeys.MAX_KEYS_PER_TEAM):
        make_key(api, expires_at=isoz(soon))
    with time_machine.travel(soon + apikeys.KEPT_AFTER_END + timedelta(days=1)):
        for item in ApiKeyModel.scan():  # what DynamoDB's TTL does (moto does not run it)
            item.delete()
        login = api.post("/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}, token="")
        api.token = login.json["access_token"]
        assert api.post("/v1/api-keys", {"name": "after the purge", "scopes": ALL}).status == 201
        (counter,) = [c for c in CounterModel.scan() if c.key.startswith("api-keys#")]
        assert counter.hits == 1


def test_a_tag_or_a_cursor_that_merely_contains_vgl_is_not_taken_for_a_key(api, alice):
    for tag in ("vgl_eu", "svgl_db"):
        create_monitor(api, name=f"m {tag}", tags=[tag])
        r = api.get(f"/v1/monitors?tag={tag}")
        assert r.status == 200, r.body
        assert [m["name"] for m in r.json["data"]] == [f"m {tag}"]
    # 50 characters after vgl_ that are no key (their checksum fails): a cursor's random text, say
    r = api.get("/v1/monitors?cursor=abcvgl_" + "A" * 50 + ".x")
    assert (r.status, r.json["code"]) == (400, "invalid_cursor")


def test_a_key_pasted_into_the_path_is_not_repeated_back(api, alice):
    key = make_key(api)["key"]
    r = api.get(f"/v1/{key}")
    assert r.status == 404
    assert key[4:] not in r.text
    assert key[4:16] not in r.text


@pytest.fixture
def minute():
    return utcnow().replace(second=0, microsecond=0) + timedelta(minutes=1)
