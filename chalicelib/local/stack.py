"""The local stack (``make dev``): an AWS emulator, Vigil's resources, the event loop and the API.

1. Load the settings (a local stage only) and, unless ``AWS_ENDPOINT_URL``
   names another emulator or account, start moto's server on a free loopback port.
2. Point Vigil at it and create every table, queue, bucket and SES identity.
3. Start the event loop with every handler of ``app.py``.
4. Serve the API on ``127.0.0.1:PORT`` until SIGINT or SIGTERM, then stop the
   server, the loop and the emulator, in that order.

The module also holds what is running, for the local-only ``/dev`` routes; it
imports nothing heavy at import time, since the API imports it.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from chalicelib.settings import VARIABLES, Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from chalicelib.local.loop import EventLoop

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "vigil-local", "AWS_SECRET_ACCESS_KEY": "vigil-local"}


@dataclasses.dataclass
class Running:
    loop: EventLoop | None = None
    emulator_url: str | None = None


_running = Running()


def register(loop: EventLoop | None, emulator_url: str | None = None) -> None:
    _running.loop, _running.emulator_url = loop, emulator_url


def current_loop() -> EventLoop | None:
    return _running.loop


def outbox_available(settings: Settings) -> bool:
    """The outbox reads moto's in-process state: there under ``mock_aws`` (tests) or the embedded emulator."""
    return settings.aws_endpoint_url is None or settings.aws_endpoint_url == _running.emulator_url


# ---------------------------------------------------------------- start and stop


def add_check_workers(loop: EventLoop, settings: Settings) -> None:
    """One check worker per configured region, each fed by its region's queue, as the per-region stacks are."""
    from chalicelib.aws import names
    from chalicelib.aws.clients import client
    from chalicelib.checks.sizing import ARM64_CPU_FACTOR
    from functions.checker.handler import make_handler
    from functions.checker.worker import EVENT_BATCH_SIZE, LAMBDA_TIMEOUT_S, MAX_CONCURRENT_INVOCATIONS

    sqs = client("sqs")
    for region in settings.check_regions:
        url = sqs.get_queue_url(QueueName=names.check_queue(settings, region))["QueueUrl"]
        # As deployed: the worker holds a message's starts for up to a minute, then checks, one message an
        # invocation, many invocations at once (a message never waits for another's minute).
        loop.add_sqs(
            f"checker-{region}",
            url,
            # On this machine's cores: it reports the CPU the deployed arm64 worker would spend (assumed factor).
            make_handler(region, cpu_scale=ARM64_CPU_FACTOR),
            batch_size=EVENT_BATCH_SIZE,
            timeout_ms=LAMBDA_TIMEOUT_S * 1000,
            concurrency=MAX_CONCURRENT_INVOCATIONS,
        )


def _prepare_environment() -> None:
    # The process environment configures the libraries, not Vigil (Vigil reads its Settings):
    # Powertools would print a metrics blob per request and look for an X-Ray daemon.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")


# make dev's defaults, from the settings table (a laptop may target local services): below .env and the shell,
# so ALLOW_PRIVATE_TARGETS=false in either turns it off.
DEV_DEFAULTS = {v.name: v.dev_default for v in VARIABLES if v.dev_default is not None}


def _point_botocore_at(settings: Settings, embedded: bool) -> None:
    """Configure botocore for the emulator, so even a client Vigil does not build (Powertools') goes there.

    Real credentials have no business being sent to an emulator: the embedded one
    always gets fake ones.  Another endpoint (LocalStack, a real account) keeps
    the developer's credentials and gets fake ones only when there are none.
    """
    import boto3

    os.environ.setdefault("AWS_DEFAULT_REGION", settings.aws_region)
    if embedded:
        os.environ["AWS_ENDPOINT_URL"] = str(settings.aws_endpoint_url)
        os.environ.pop("AWS_PROFILE", None)
        os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ.update(FAKE_CREDENTIALS)
    elif boto3.session.Session().get_credentials() is None:
        os.environ.update(FAKE_CREDENTIALS)


def _start_emulator() -> tuple[Any, str]:
    import logging

    from moto.server import ThreadedMotoServer

    from chalicelib.local.atomic import make_dynamodb_atomic, make_dynamodb_fast

    make_dynamodb_atomic()
    make_dynamodb_fast()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per emulated AWS call otherwise
    emulator = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    emulator.start()
    host, port = emulator.get_host_and_port()
    return emulator, f"http://{host}:{port}"


def _start_api(app: Any, settings: Settings) -> tuple[Any, threading.Thread]:
    from chalice.config import Config
    from chalice.local import LocalDevServer

    from chalicelib.local.gateway import VigilRequestHandler

    server = LocalDevServer(
        app, Config(chalice_stage="local"), "127.0.0.1", settings.port, handler_cls=VigilRequestHandler
    )
    thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    return server, thread


def _banner(settings: Settings, emulator_url: str | None, loop: EventLoop, stripe_url: str | None = None) -> str:
    api = f"http://127.0.0.1:{settings.port}"
    aws = f"{emulator_url} (embedded moto)" if emulator_url else f"{settings.aws_endpoint_url} (AWS_ENDPOINT_URL)"
    handlers = ", ".join(s.name for s in loop.sources) or "none yet"
    return "\n".join(
        [
            "",
            f"  Vigil {settings.version} — local stack (stage {settings.stage})",
            f"  API        {api}   (health: {api}/health)",
            f"  outbox     {api}/dev/outbox" if emulator_url else "  outbox     only with the embedded emulator",
            f"  tick now   curl -X POST {api}/dev/tick",
            f"  AWS        {aws}, region {settings.aws_region}",
            f"  checks in  {', '.join(settings.check_regions)}",
            f"  Stripe     {stripe_url} (stand-in: checkout pages with a Pay button)"
            if stripe_url
            else "  Stripe     not stood in (STRIPE_API_BASE)",
            f"  handlers   {handlers}",
            "  Ctrl-C stops everything.",
            "",
        ]
    )


def _wait_for_signal(server_thread: threading.Thread) -> None:
    stop = threading.Event()

    def handle(signum: int, frame: Any) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handle)
    # A timed wait lets the main thread run the signal handler promptly.
    while not stop.wait(0.5) and server_thread.is_alive():
        pass


def run(*, demo: bool = False) -> int:
    """The stack until Ctrl-C; with ``demo`` (``make demo``), seeded with a living demo (:mod:`.demo`)."""
    _prepare_environment()
    try:
        settings = load_settings(defaults=DEV_DEFAULTS)
    except SettingsError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 2
    if not settings.is_local:
        print(f"vigil: the local stack runs a local stage, not {settings.stage!r} (VIGIL_STAGE)", file=sys.stderr)
        return 2
    if demo and settings.aws_endpoint_url:
        print(
            "vigil: make demo runs on the embedded emulator only (it reads its account's verification email from it"
            " and starts from nothing): unset AWS_ENDPOINT_URL",
            file=sys.stderr,
        )
        return 2
    emulator, emulator_url = (None, None) if settings.aws_endpoint_url else _start_emulator()
    try:
        return _serve(settings, emulator_url, demo=demo)
    finally:
        if emulator is not None:
            emulator.stop()


def _serve(settings: Settings, emulator_url: str | None, *, demo: bool = False) -> int:
    from chalicelib.bootstrap import configure_core
    from chalicelib.local.loop import EventLoop
    from chalicelib.local.resources import create_resources
    from chalicelib.models import ALL_MODELS
    from chalicelib.observability import logger

    if emulator_url:
        settings = dataclasses.replace(settings, aws_endpoint_url=emulator_url)
    _point_botocore_at(settings, embedded=emulator_url is not None)
    logger.setLevel(settings.log_level)
    configure_core(settings, models=ALL_MODELS)
    created = create_resources(settings)
    from app import app  # after configure_core(): app.py configures from the settings in place

    loop = EventLoop(settings.aws_region)
    try:
        loop.add_chalice_app(app, settings, new_tables=created["tables"])
    except LookupError as exc:  # a handler names a queue or table the resources do not create
        print(f"vigil: {exc}", file=sys.stderr)
        return 1
    add_check_workers(loop, settings)
    try:
        server, server_thread = _start_api(app, settings)
    except OSError as exc:
        print(f"vigil: cannot serve on 127.0.0.1:{settings.port}: {exc.strerror} (set PORT)", file=sys.stderr)
        return 1
    standin = _start_stripe_standin(settings)
    loop.start()
    register(loop, emulator_url)
    print(_banner(settings, emulator_url, loop, standin.url if standin else None), flush=True)
    demo_service = None
    try:
        if demo:
            from chalicelib.local import demo as living_demo

            try:
                demo_service = living_demo.start(settings, f"http://127.0.0.1:{settings.port}", loop.run_tick_now)
            except living_demo.SeedFailed as exc:
                print(f"vigil: the demo could not start: {exc}", file=sys.stderr)
                return 1
            except KeyboardInterrupt:  # Ctrl-C while seeding: stop as quietly as after it
                return 130
        _wait_for_signal(server_thread)
    finally:
        print("  stopping…", flush=True)
        if demo_service is not None:
            demo_service.stop()
        server.shutdown()
        server.server.server_close()
        if standin is not None:
            standin.stop()
        register(None)
        loop.stop()
    return 0


def _start_stripe_standin(settings: Settings) -> Any:
    """The stand-in for Stripe (``local.stripe_standin``) where ``STRIPE_API_BASE`` points on this machine, sending
    its signed events to this API's webhook; None when it points elsewhere (a real Stripe test account)."""
    from urllib.parse import urlsplit

    import urllib3

    from chalicelib.local.stripe_standin import StripeStandIn

    base = urlsplit(settings.stripe_api_base or "")
    if base.hostname not in ("127.0.0.1", "localhost") or not settings.stripe_secret_key:
        return None
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2, read=20), retries=False)
    webhook = f"http://127.0.0.1:{settings.port}/v1/webhooks/stripe"

    def deliver(body: bytes, signature: str) -> None:
        http.request(
            "POST", webhook, body=body, headers={"stripe-signature": signature, "content-type": "application/json"}
        )

    try:
        return StripeStandIn(
            secret_key=settings.stripe_secret_key,
            webhook_secret=settings.stripe_webhook_secret or "",
            prices={settings.stripe_price_pro: "Pro", settings.stripe_price_enterprise: "Enterprise"},
            deliver=deliver,
            port=base.port or 8010,
        ).start()
    except OSError as exc:
        print(f"vigil: no Stripe stand-in on {settings.stripe_api_base}: {exc.strerror}", file=sys.stderr)
        return None
