"""Test helpers: settings for tests, a JSON API client, the email outbox, people and incidents."""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from chalice.config import Config
from chalice.test import Client

from chalicelib.clock import utcnow
from chalicelib.local.gateway import VigilGateway
from chalicelib.local.resources import create_resources
from chalicelib.settings import Settings, load_settings
from chalicelib.wiring import configure

PASSWORD = "correct horse battery staple 9"

TEST_ENV = {
    "VIGIL_STAGE": "test",
    "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
    "APP_URL": "https://app.vigil.test",
    "TABLE_PREFIX": "test-",
    "BCRYPT_ROUNDS": "4",
    "AWS_REGION": "us-east-1",
    "EMAIL_FROM": "Vigil <no-reply@vigil.test>",
    "STRIPE_SECRET_KEY": "sk_test_vigil_tests",
    "STRIPE_WEBHOOK_SECRET": "whsec_vigil_tests_webhook_secret",
}


@contextmanager
def dynamodb_calls(*models: Any) -> Iterator[list[str]]:
    """The DynamoDB operations (``GetItem``, ``UpdateItem``, …) sent while the block runs, on ``models``' tables
    (every table when none is named): counted at botocore's edge, below PynamoDB."""
    from chalicelib.models import ALL_MODELS

    calls: list[str] = []
    watched = {m.Meta.table_name for m in models}

    def seen(params: Any, model: Any, **_: Any) -> None:
        tables = _tables_of(params) if isinstance(params, dict) else set()
        if not watched or tables & watched or not tables:
            calls.append(model.name)

    clients = {id(c): c for c in (m._get_connection().connection.client for m in ALL_MODELS)}.values()
    for client in clients:
        client.meta.events.register("provide-client-params.dynamodb", seen)
    try:
        yield calls
    finally:
        for client in clients:
            client.meta.events.unregister("provide-client-params.dynamodb", seen)


def _tables_of(params: dict[str, Any]) -> set[str]:
    """The tables a DynamoDB request names: its own, a batch's, or a transaction's items'."""
    if "TableName" in params:
        return {params["TableName"]}
    found = set(params.get("RequestItems") or {})
    for item in params.get("TransactItems") or []:
        found |= {action["TableName"] for action in item.values() if "TableName" in action}
    return found


@contextmanager
def _at_botocores_edge(record: Callable[[Any, str, dict[str, Any]], None]) -> Iterator[None]:
    """``record(client, operation, parameters)`` for each AWS request made while the block runs, by any client,
    region or thread, below the code under test."""
    import botocore.client

    original = botocore.client.BaseClient._make_api_call

    def call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        record(client, operation, params)
        return original(client, operation, params)

    botocore.client.BaseClient._make_api_call = call  # type: ignore[method-assign]
    try:
        yield
    finally:
        botocore.client.BaseClient._make_api_call = original  # type: ignore[method-assign]


@contextmanager
def aws_requests(service: str | None = None) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """The AWS requests made while the block runs, as ``(operation, parameters)`` (``service``'s only, when named):
    taken at botocore's edge for every client, region and thread, below the code under test — what was sent, not
    what the code says it sent."""
    seen: list[tuple[str, dict[str, Any]]] = []

    def record(client: Any, operation: str, params: dict[str, Any]) -> None:
        if service is None or client.meta.service_model.service_name == service:
            seen.append((operation, params))

    with _at_botocores_edge(record):
        yield seen


def dynamodb_clients(*models: Any) -> list[Any]:
    """The DynamoDB clients of ``models`` (every model's when none is named) and of Vigil's transactions (at most a
    few distinct ones).  Name the models when you can: a model's client not built yet costs botocore's service
    model to build (a fraction of a second each, seconds for them all on a busy machine)."""
    from chalicelib.models import ALL_MODELS
    from chalicelib.storage.base import transaction

    found = [m._get_connection().connection.client for m in models or ALL_MODELS] + [transaction()._connection.client]
    return list({id(c): c for c in found}.values())


@contextmanager
def before_aws_call(
    clients: list[Any],
    operation: str,
    action: Callable[[], Any],
    *,
    match: Callable[[Any], bool] = lambda params: True,
    times: int = 1,
) -> Iterator[list[bool]]:
    """Runs ``action()`` just before each of the next ``times`` calls of ``operation`` (``"dynamodb.PutItem"``,
    ``"sqs.SendMessageBatch"``) on ``clients`` whose parameters ``match``: at botocore's edge, below the code under
    test.  ``action`` may raise (:func:`aws_error`) to fail the call as the network would.  Yields the firings."""
    fired: list[bool] = []

    def hook(params: Any, **_: Any) -> None:
        if len(fired) < times and match(params):
            fired.append(True)
            action()

    event = f"before-parameter-build.{operation}"
    for c in clients:
        c.meta.events.register_first(event, hook)
    try:
        yield fired
    finally:
        for c in clients:
            c.meta.events.unregister(event, hook)


@contextmanager
def all_at_once(
    model: Any, operation: str, parties: int, where: Callable[[Any], bool] = lambda params: True
) -> Iterator[list[bool]]:
    """Holds the first call of ``operation`` (``"dynamodb.TransactWriteItems"``) on ``model``'s table that each of
    ``parties`` threads makes until every one of them is making it: whatever each read before, none has written
    yet — the race forced, not hoped for.  A thread's later calls (its retries) go through.  Yields the firings
    (``parties`` once all met); a thread that never comes breaks the barrier after half a minute (generous for a
    busy machine running the suite in parallel), failing the calls held.  ``where``: only calls whose parameters
    it accepts (one item of the table) count."""
    barrier = threading.Barrier(parties, timeout=30)
    arrived: set[int] = set()
    lock = threading.Lock()
    on_its_table = on_table(model)

    def first_of_its_thread(params: Any) -> bool:
        if not on_its_table(params) or not where(params):
            return False
        with lock:
            if threading.get_ident() in arrived:
                return False
            arrived.add(threading.get_ident())
            return True

    clients = dynamodb_clients(model)
    with before_aws_call(clients, operation, barrier.wait, match=first_of_its_thread, times=parties) as fired:
        yield fired


def on_table(model: Any) -> Callable[[Any], bool]:
    """A ``match`` for :func:`before_aws_call`: a call on ``model``'s table (a transaction: one of its items)."""

    def match(params: Any) -> bool:
        if not isinstance(params, dict):
            return False
        items = [next(iter(i.values()), {}) for i in params.get("TransactItems", [])]
        tables = {params.get("TableName")} | {item.get("TableName") for item in items}
        return model.Meta.table_name in tables

    return match


def elsewhere(action: Callable[[], Any]) -> Callable[[], None]:
    """``action`` as another invocation runs it (an ``action`` for :func:`before_aws_call`): on a thread of its
    own, so that tests/iam.py holds its calls against its own function's policy, and done before the call it was
    slipped in front of goes on; its failure is raised there."""

    def run() -> None:
        failures: list[BaseException] = []

        def target() -> None:
            try:
                action()
            except BaseException as exc:  # raised in the caller's thread below
                failures.append(exc)

        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
        if failures:
            raise failures[0]

    return run


def aws_error(code: str, operation: str) -> Callable[[], None]:
    """An ``action`` for :func:`before_aws_call` that fails the call with AWS's error ``code``."""
    from botocore.exceptions import ClientError

    def fail() -> None:
        raise ClientError({"Error": {"Code": code, "Message": code}}, operation)

    return fail


@contextmanager
def aws_calls() -> Iterator[list[tuple[str, str, str]]]:
    """Every AWS call made while the block runs, by any client, as ``(service, operation, table or queue)``: counted
    at botocore's edge, below the code under test."""
    calls: list[tuple[str, str, str]] = []

    def record(client: Any, operation: str, params: dict[str, Any]) -> None:
        target = params.get("TableName") or str(params.get("QueueUrl", "")).rpartition("/")[2]
        calls.append((client.meta.service_model.service_name, operation, target))

    with _at_botocores_edge(record):
        yield calls


def run_alerts_queue() -> int:
    """Run every message now visible on the alerts queue, as Lambda would (alert deliveries, password reset
    links: ``POST /v1/auth/forgot-password`` mails off the request); returns how many ran."""
    from chalicelib.aws import names
    from chalicelib.aws.clients import client
    from chalicelib.events.alerts import handle_messages
    from chalicelib.settings import get_settings
    from tests.events import sqs_records

    sqs = client("sqs")
    url = sqs.get_queue_url(QueueName=names.alert_queue(get_settings()))["QueueUrl"]
    ran = 0
    for _ in range(100):
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return ran
        assert handle_messages(sqs_records(messages, url)) == {"batchItemFailures": []}
        for m in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        ran += len(messages)
    raise AssertionError("the alerts queue never emptied")


def forgot_password(api: ApiClient, email: str, **options: Any) -> Result:
    """``POST /v1/auth/forgot-password`` for ``email`` (no token), then the alerts queue run: the link, if any, is
    in the outbox."""
    r = api.post("/v1/auth/forgot-password", {"email": email}, token="", **options)
    run_alerts_queue()
    return r


def make_test_settings(**overrides: str) -> Settings:
    return load_settings({**TEST_ENV, **overrides})


def stored_channel_config(team_id: str, channel_id: str) -> dict[str, Any]:
    """What a channel's item holds, its sealed secrets opened as the deliverer opens them."""
    from chalicelib.alerts.channels import opened_config
    from chalicelib.alerts.models import ChannelModel

    return opened_config(ChannelModel.get(team_id, channel_id))


def stored_headers(team_id: str, monitor_id: str) -> dict[str, str]:
    """What a monitor's item holds for its headers, its sealed credentials opened as the scheduler opens them."""
    from chalicelib.monitors.credentials import opened
    from chalicelib.monitors.models import MonitorModel

    return opened(team_id, monitor_id, dict(MonitorModel.get(team_id, monitor_id).headers.as_dict()))


def start_aws(settings: Settings) -> None:
    """Configure Vigil for ``settings`` and create its resources in the (mocked) AWS.

    Creating them through the API costs ≈ 80 calls (0.2 s, half the setup of a test); in a fresh, empty AWS the
    emulator's state right after the first creation for the same settings is copied back instead (≈ 5 ms)."""
    configure(settings)
    if settings.aws_endpoint_url or _emulator_holds_anything():  # another emulator's, or not a fresh one
        create_resources(settings)
        return
    key = _what_resources_depend_on(settings)
    if key not in _CREATED:
        create_resources(settings)
        _CREATED[key] = _emulator_state()
    _restore(_CREATED[key])


_CREATED: dict[str, list[tuple[Any, dict[str, Any]]]] = {}  # resources' names → the emulator's state once created


def _what_resources_depend_on(settings: Settings) -> str:
    """Every setting ``create_resources`` reads, through the names it gives things (a Stripe stand-in's URL or a
    bcrypt cost changes nothing there)."""
    from chalicelib.aws import names

    named = [getattr(names, name)(settings) for name in RESOURCE_NAMES]
    queues = [names.check_queue(settings, region) for region in settings.check_regions]
    return repr((settings.table_prefix, settings.aws_region, settings.home_region, settings.stage, named, queues))


RESOURCE_NAMES = [
    "status_bucket",
    "email_identity",
    "alert_queue",
    "handler_failures_queue",
    "configuration_set",
    "email_events_topic",
    "email_events_queue",
    "secrets_key",
]


def built_once(key: str, build: Callable[[], Any], *, fresh_for_seconds: float = 300) -> Any:
    """``build()``'s result, with the emulator holding what it made: built in the first test that asks for ``key``
    (per worker), then copied back (emulator state and result) in the next ones — a world many parametrized cases
    share without sharing what each case does to it.  Rebuilt after ``fresh_for_seconds``: the tokens it returns
    expire (15 minutes at most)."""
    import time

    kept = _BUILT.get(key)
    if kept is None or time.monotonic() - kept[0] > fresh_for_seconds:
        result = build()
        _BUILT[key] = (time.monotonic(), _emulator_state(), copy.deepcopy(result))
        return result
    _restore(kept[1])
    return copy.deepcopy(kept[2])


_BUILT: dict[str, tuple[float, list[tuple[Any, dict[str, Any]]], Any]] = {}


def _emulator_holds_anything() -> bool:
    from moto.core.base_backend import BackendDict

    return any(len(backends) for backends in BackendDict._instances)


@contextmanager
def _locks_copied_as_new() -> Iterator[None]:
    """moto's queues hold a Condition (and so a lock): a copy of one gets a fresh one of its own."""
    import copyreg

    fresh = {threading.Condition: threading.Condition, type(threading.RLock()): threading.RLock}
    fresh[type(threading.Lock())] = threading.Lock
    for kind, make in fresh.items():
        copyreg.dispatch_table[kind] = lambda _, make=make: (make, ())
    try:
        yield
    finally:
        for kind in fresh:
            del copyreg.dispatch_table[kind]


def _emulator_state() -> list[tuple[Any, dict[str, Any]]]:
    from moto.core.base_backend import BackendDict

    with _locks_copied_as_new():
        return [(backends, copy.deepcopy(dict(backends))) for backends in BackendDict._instances]


def _restore(state: list[tuple[Any, dict[str, Any]]]) -> None:
    from moto.core.base_backend import BackendDict

    kept = {id(backends) for backends, _ in state}
    for backends in BackendDict._instances:
        if id(backends) not in kept:  # a service first used since: as empty as it was
            for account in backends.values():
                account.reset()
            backends.clear()
    with _locks_copied_as_new():
        for backends, accounts in state:
            backends.clear()
            backends.update(copy.deepcopy(accounts))
            if backends not in BackendDict._instances:
                BackendDict._instances.append(backends)  # reset when the mock stops, as moto's own are


@dataclass
class Result:
    status: int
    headers: dict[str, str]
    body: bytes
    json: Any = field(default=None)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class ApiClient:
    """Drives the Chalice app in-process through Vigil's local gateway."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._client = Client(app, stage_name="test")
        self._client.http._local_gateway = VigilGateway(app, Config(chalice_stage="test"))
        self.token: str | None = None

    def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        *,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
    ) -> Result:
        sent = {"content-type": "application/json"}
        if token or self.token:
            sent["authorization"] = f"Bearer {token or self.token}"
        sent.update(headers or {})
        if json_body is not None:
            body = json.dumps(json_body)
        response = self._client.http.request(method, path, headers=sent, body=body or b"")
        raw = response.body if isinstance(response.body, bytes) else (response.body or "").encode()
        out_headers = {k.lower(): v for k, v in response.headers.items()}
        parsed = None
        if raw and "json" in out_headers.get("content-type", ""):
            parsed = json.loads(raw)
        return Result(response.status_code, out_headers, raw, parsed)

    def get(self, path: str, **kw: Any) -> Result:
        return self.request("GET", path, **kw)

    def post(self, path: str, json_body: Any = None, **kw: Any) -> Result:
        return self.request("POST", path, json_body, **kw)

    def patch(self, path: str, json_body: Any = None, **kw: Any) -> Result:
        return self.request("PATCH", path, json_body, **kw)

    def put(self, path: str, json_body: Any = None, **kw: Any) -> Result:
        return self.request("PUT", path, json_body, **kw)

    def delete(self, path: str, json_body: Any = None, **kw: Any) -> Result:
        return self.request("DELETE", path, json_body, **kw)

    def from_address(self, ip: str) -> ApiClient:
        """A client of the same app, acting as whoever this one does, whose requests come from ``ip`` (API
        Gateway's ``sourceIp``); this one still sends from ``127.0.0.1``."""
        other = ApiClient(self.app)
        other._client.http._local_gateway.event_converter.LOCAL_SOURCE_IP = ip
        other.token = self.token
        return other

    def acting_as(self, person: dict[str, Any] | str | None) -> ApiClient:
        """A client of the same app whose requests are ``person``'s (a sign-in body or an access token); this
        one still acts as whoever it did."""
        other = copy.copy(self)
        other.token = person["access_token"] if isinstance(person, dict) else person
        return other


class Outbox:
    """The emails sent so far (through the same reader as ``GET /dev/outbox``)."""

    def all(self) -> list[dict[str, Any]]:
        from chalicelib.local.outbox import read_outbox

        return read_outbox()

    def to(self, address: str) -> list[dict[str, Any]]:
        return [m for m in self.all() if address in m["to"]]

    def link(self, address: str, pattern: str) -> str:
        """The first link matching ``pattern`` in the newest email to ``address``."""
        messages = self.to(address)
        assert messages, f"no email to {address}"
        found = re.search(pattern + r"[^\s\"<>]*", messages[0]["text"])
        assert found, f"no link like {pattern} in {messages[0]['text']!r}"
        return found.group(0)


def register(api: ApiClient, email: str, *, verified: bool = True, **extra: Any) -> dict[str, Any]:
    """Register ``email`` (with ``PASSWORD``) and, unless ``verified=False``, follow the verification link that
    was mailed (an account whose address is not verified mails no one else: issue 15); returns the registration
    body (tokens, user, their personal team).  The client still acts as whoever it did."""
    r = api.post("/v1/auth/register", {"email": email, "password": PASSWORD, **extra})
    assert r.status == 201, r.body
    person = dict(r.json)
    if verified:
        link = Outbox().link(email.strip().lower(), "/verify-email")  # mailed to the address as stored
        done = api.post("/v1/auth/verify-email", {"token": link.split("token=", 1)[1]}, token="")
        assert done.status == 200, done.body
        person["user"] = done.json["user"]
    return person


def sign_up(api: ApiClient, email: str, *, verified: bool = True, **extra: Any) -> dict[str, Any]:
    """Register ``email`` (verified unless ``verified=False``) and make it the client's caller; returns the
    registration body (tokens, user, team)."""
    person = register(api, email, verified=verified, **extra)
    api.token = person["access_token"]
    return person


def join_team(api: ApiClient, team_id: str, person: dict[str, Any], role: str) -> dict[str, Any]:
    """``person`` becomes a member of the team with ``role`` (the membership an accepted invitation stores) and
    switches to it; returns their sign-in for that team.  The client still acts as whoever it did."""
    from chalicelib.teams.models import MembershipModel

    MembershipModel(team_id, person["user"]["id"], role=role, joined_at=utcnow()).save()
    r = api.post("/v1/auth/switch-team", {"team_id": team_id}, token=person["access_token"])
    assert r.status == 200, r.body
    return dict(r.json)


def open_incident(team_id: str, monitor_id: str, first: datetime, **fields: Any) -> str:
    """Two failed minutes in every region from ``first``, applied as the incident handler applies results from the
    stream (``fields``: the failure, e.g. ``error="timeout"``).  Returns the incident that opened."""
    from chalicelib.incidents.tracker import Result as Check
    from chalicelib.incidents.tracker import apply_results
    from chalicelib.settings import DEFAULT_REGIONS

    failures = [
        Check(team_id, monitor_id, region, first + timedelta(minutes=m), ok=False, **fields)
        for m in (0, 1)
        for region in DEFAULT_REGIONS
    ]
    (opened,) = apply_results(team_id, monitor_id, failures, utcnow()).opened
    return opened


def recover(team_id: str, monitor_id: str, at: datetime) -> list[str]:
    """A passing check in every region at ``at``; returns the incidents that resolved."""
    from chalicelib.incidents.tracker import Result as Check
    from chalicelib.incidents.tracker import apply_results
    from chalicelib.settings import DEFAULT_REGIONS

    checks = [Check(team_id, monitor_id, region, at, ok=True) for region in DEFAULT_REGIONS]
    return apply_results(team_id, monitor_id, checks, utcnow()).resolved


def on_plan(api: ApiClient, team_id: str, plan: str = "pro", status: str = "active") -> None:
    """The team subscribes to ``plan``, as Stripe tells it: a subscription event signed with the webhook secret,
    delivered to ``POST /v1/webhooks/stripe`` (tests that need more than the free plan's limits say so).  Another
    ``status`` (``canceled``) is that subscription lapsing: the team is back on the free plan, its customer kept."""
    import json
    import time

    import stripe

    from chalicelib.settings import get_settings

    settings = get_settings()
    price = {"pro": settings.stripe_price_pro, "enterprise": settings.stripe_price_enterprise}[plan]
    subscription = {
        "id": f"sub_{team_id}",
        "object": "subscription",
        "customer": f"cus_{team_id}",
        "status": status,
        "metadata": {"team_id": team_id},
        "items": {"data": [{"price": {"id": price}}]},
    }
    event = {
        "id": f"evt_{plan}_{team_id}_{time.time_ns()}",
        "type": "customer.subscription.updated",
        "created": int(time.time()),
        "data": {"object": subscription},
    }
    body = json.dumps(event)
    signature = stripe.WebhookSignature.generate_signature_header(body, str(settings.stripe_webhook_secret))
    r = api.request("POST", "/v1/webhooks/stripe", body=body, headers={"stripe-signature": signature}, token="")
    assert (r.status, r.json["outcome"]) == (200, "applied"), r.body
