"""Shared fixtures: a moto-backed AWS per test, the app, a test client, and the product's people.

Patch only at the network or clock seam: AWS is moto (in-process), HTTP
targets are real loopback servers, time is time-machine.

People: ``alice`` owns her team and the client acts as her; ``bob`` is in Alice's team with a lower role
(``teammate`` makes him, or anyone else, with another); ``charlie`` is of another team.  To act as someone
else, pass ``token=person["access_token"]`` or use ``api.acting_as(person)``.
"""

from __future__ import annotations

import os

# The test process must never reach a real AWS account, whatever the developer's shell holds.
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
    os.environ.pop(_name, None)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "VIGIL_STAGE": "test",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOGGER_LOG_EVENT": "false",
        # botocore 1.44 addresses DynamoDB Streams by account endpoint, which moto's in-process mock does not know.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    }
)

import dataclasses  # noqa: E402
import io  # noqa: E402
import ipaddress  # noqa: E402
import socket  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from moto import mock_aws  # noqa: E402

from chalicelib.settings import Settings, load_settings  # noqa: E402
from tests import iam  # noqa: E402
from tests.support import (  # noqa: E402
    ApiClient,
    Outbox,
    join_team,
    make_test_settings,
    register,
    sign_up,
    start_aws,
)


def _loopback(host: str) -> bool:
    """A loopback address (``127.0.0.1``, ``::1``, ``::ffff:127.0.0.1``) or exactly ``localhost``: never a name
    that merely starts like one (``127.x.example.com``), which connect would resolve through DNS."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def _guarded(original):
    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(host):
            raise ConnectionRefusedError(f"tests may only reach loopback addresses, not {host}")
        return original(sock, address)

    return connect


@pytest.fixture(autouse=True)
def _no_address_refused_by_an_earlier_test() -> None:
    """The API keys' refusal of an address that guessed too many keys is kept in the process (no storage read for
    the next guesses): each test starts without one, as each starts with an empty AWS."""
    from chalicelib.auth import apikeys

    apikeys._refused_addresses.clear()


@pytest.fixture(autouse=True)
def _no_data_key_held_from_an_earlier_test() -> None:
    """Sealing keeps data keys in the process (``chalicelib.sealing``): each test starts without one, as each starts
    with an empty AWS, whose KMS key made none of them."""
    from chalicelib.sealing.service import forget_keys

    forget_keys()


@pytest.fixture(autouse=True, scope="session")
def _atomic_dynamodb() -> None:
    """moto, like DynamoDB, applies one request at a time (chalicelib.local.atomic): concurrent threads race
    as they would in production, not through the emulator's missing lock.  And it answers as the local stack's
    emulator does (plain JSON written at once), so the whole suite runs on what `make dev` and the benches run."""
    from chalicelib.local.atomic import make_dynamodb_atomic, make_dynamodb_fast

    make_dynamodb_atomic()
    make_dynamodb_fast()


def _numeric(name: str) -> bool:
    """An address, in any spelling the resolver reads without asking a server (``127.1``, ``0x7f000001``, ``::1``)."""
    try:
        socket.inet_aton(name)
        return True
    except OSError:
        pass
    try:
        socket.inet_pton(socket.AF_INET6, name.split("%", 1)[0])
        return True
    except OSError:
        return False


def _local_names(original):
    """getaddrinfo for what needs no DNS server — addresses in any spelling, and this machine's names (the hosts
    file) — and "no such name" for every other name, answered here: no test sends a DNS query off the machine."""

    def getaddrinfo(host, port, *args, **kwargs):
        if host is None or not isinstance(host, str | bytes):
            return original(host, port, *args, **kwargs)
        name = host.decode() if isinstance(host, bytes) else host
        if name.rstrip(".").lower() == "localhost" or name.rstrip(".").lower().endswith(".localhost"):
            # Answered from the hosts file's own entry: ``localhost.`` or ``app.localhost`` would go to DNS here.
            return original("localhost", port, *args, **kwargs)
        if _numeric(name):
            return original(host, port, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, f"tests resolve no names off this machine ({name})")

    return getaddrinfo


def _by_name_guard(original):
    """The older lookups, guarded as getaddrinfo is: addresses and localhost only."""

    def lookup(name):
        if _numeric(name) or name.rstrip(".").lower() == "localhost":
            return original(name if _numeric(name) else "localhost")
        raise socket.gaierror(socket.EAI_NONAME, f"tests resolve no names off this machine ({name})")

    return lookup


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    """The network seam: a test that would reach anything but loopback fails instead of sending a packet, and a
    name that would need a DNS server does not resolve."""
    originals = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo
    by_name = socket.gethostbyname, socket.gethostbyname_ex
    socket.socket.connect = _guarded(originals[0])  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded(originals[1])  # type: ignore[method-assign]
    socket.getaddrinfo = _local_names(originals[2])
    socket.gethostbyname, socket.gethostbyname_ex = (_by_name_guard(f) for f in by_name)
    yield
    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = originals  # type: ignore[method-assign]
    socket.gethostbyname, socket.gethostbyname_ex = by_name


@pytest.fixture
def settings() -> Settings:
    return make_test_settings()


@pytest.fixture
def aws(settings: Settings, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """A fresh, empty AWS (moto) with every table, queue and identity Vigil needs; every call a function's code makes
    is held against that function's IAM policy from the template (tests/iam.py), and one it would be refused fails
    the test."""
    with mock_aws():
        start_aws(settings)
        if "load" in request.node.path.parts:
            # The benchmarks time the functions in this process: the check's stack walk on every AWS call would be
            # billed as their work.
            yield settings
            return
        with iam.enforced(settings) as watch:
            yield settings
        assert not sorted(set(watch.violations)), "calls the deployed IAM policies refuse:\n" + "\n".join(
            sorted(set(watch.violations))
        )


@pytest.fixture
def app(aws: Settings):
    import app as app_module

    return app_module.app


@pytest.fixture
def api(app, aws: Settings) -> ApiClient:
    return ApiClient(app)


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Every JSON log line the app writes during the test, formatted exactly as in production."""
    import logging

    from chalicelib.observability import logger

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    yield buffer
    logger.removeHandler(handler)


@pytest.fixture
def alice(api: ApiClient) -> dict:
    """Alice, registered and signed in: the client's requests are hers.  She owns her (personal) team."""
    return sign_up(api, "alice@example.com")


@pytest.fixture
def teammate(api: ApiClient, alice: dict) -> Callable[..., dict[str, Any]]:
    """Makes someone of Alice's team: ``teammate("carol@example.com", role="viewer")``.  They register (so they
    have a personal team too), join Alice's team with ``role`` and act in it: the returned sign-in (tokens, user,
    team) is for her team.  The client still acts as Alice."""

    def make(email: str = "bob@example.com", role: str = "member", **registration: Any) -> dict[str, Any]:
        return join_team(api, alice["team"]["id"], register(api, email, **registration), role)

    return make


@pytest.fixture
def bob(teammate: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Bob, a member of Alice's team, acting in it (for another role: ``teammate(role=...)``)."""
    return teammate("bob@example.com", role="member")


@pytest.fixture
def charlie(api: ApiClient) -> dict[str, Any]:
    """Charlie, of another team (his own): registered; the client still acts as whoever it did."""
    return register(api, "charlie@example.com")


@pytest.fixture
def stripe_standin() -> Iterator[Any]:
    """The local stand-in for Stripe's API (``chalicelib.local.stripe_standin``) on a loopback port, with the test
    settings' keys; its events go nowhere until a test sets ``deliver``.  Point settings at it with
    ``STRIPE_API_BASE=stripe_standin.url``."""
    from chalicelib.local.stripe_standin import StripeStandIn
    from tests.support import TEST_ENV

    server = StripeStandIn(
        secret_key=TEST_ENV["STRIPE_SECRET_KEY"],
        webhook_secret=TEST_ENV["STRIPE_WEBHOOK_SECRET"],
        prices={"price_vigil_pro": "Pro", "price_vigil_enterprise": "Enterprise"},
        deliver=lambda body, signature: None,
    ).start()
    yield server
    server.stop()


@pytest.fixture
def outbox(aws: Settings) -> Outbox:
    return Outbox()


@pytest.fixture
def as_a_team() -> Iterator[None]:
    """The test's DNS lookups count against a team's slots, as the worker's, the API's and the alerts' do: for
    tests that run the probe library (``checks``) directly.  Outside any team, a lookup is a programming error."""
    from chalicelib.checks import ssrf

    with ssrf.lookups_for("team-tests"):
        yield


__all__ = ["dataclasses", "load_settings"]


# The suite's longest tests (each 10-45 s on two cores, `--durations`), started first: begun last, one would run on
# alone while the other workers had nothing left, the whole suite waiting on it.
LONGEST_FIRST = (
    "tests/integration/test_contract_fuzz.py",
    "tests/integration/test_make_demo.py",
    "tests/unit/test_infra.py::test_the_packaged_stack_merges_cleanly_passes_cfn_lint_and_holds_no_secret",
    "tests/integration/test_status_page_browser.py",
    "tests/integration/test_make_dev.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((i for i, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix)), len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: every other test keeps its place
