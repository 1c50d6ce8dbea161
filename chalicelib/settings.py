"""Typed settings, read once from the environment.

Nothing else in Vigil reads ``os.environ``: everything comes from the frozen
:class:`Settings` object that :func:`get_settings` returns.  In the ``local``
stage a ``.env`` file in the working directory is merged in (the process
environment wins).  A deployed stage that lacks a required secret refuses to
start and names the variable.

Every variable is written once, in :data:`VARIABLES`: its default, and what
the README's Configuration table says of it (:func:`configuration_table`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

STAGES = ("local", "test", "dev", "prod")
LOCAL_STAGES = ("local", "test")
FUNCTIONS = ("api", "events", "checker")  # VIGIL_FUNCTION: which deployed function a process is
DEFAULT_REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class SettingsError(RuntimeError):
    """The environment does not describe a runnable Vigil."""


@dataclass(frozen=True)
class Variable:
    """One environment variable Vigil reads: a row of :data:`VARIABLES` (and of the README's Configuration table)."""

    name: str
    attribute: str  # the Settings field it fills
    default: str | None  # the text used when the variable is unset; None: unset; "{NAME}" stands for NAME's value
    meaning: str  # the README's "meaning" column
    shown: str | None = None  # the README's "default" column, when not the default itself; "{default}" stands for it
    fallbacks: tuple[str, ...] = ()  # variables read, in order, when this one is unset, before the default
    required_deployed: bool = False  # a deployed stage refuses to start without it
    worker_exempt: bool = False  # ... but a check worker (CHECK_REGION set), which never uses it
    api_only: bool = False  # ... but by the API function alone: the others (VIGIL_FUNCTION) never hold it
    dev_default: str | None = None  # what make dev (and .env.example) sets instead of the default


# Every setting, written once: load_settings takes its defaults from here, and the README's Configuration table is
# rendered from here (tests/unit/test_settings_table.py checks README.md and .env.example against it).
VARIABLES: tuple[Variable, ...] = (
    Variable(
        "VIGIL_STAGE",
        "stage",
        default="local",
        shown="{default} (outside Lambda)",
        meaning="`local`, `test`, `dev` or `prod`; `dev`/`prod` are deployed stages",
    ),
    Variable(
        "SECRET_KEY",
        "secret_key",
        default=None,
        shown="random per run locally",
        required_deployed=True,
        api_only=True,
        meaning="≥ 32 chars; JWT and cursor keys are derived from it",
    ),
    Variable(
        "APP_URL",
        "app_url",
        default="http://127.0.0.1:8000",
        required_deployed=True,
        meaning="base of every link in email; https in deployed stages",
    ),
    Variable(
        "EMAIL_FROM",
        "email_from",
        default="Vigil <no-reply@vigil.local>",
        required_deployed=True,
        meaning="sender; a verified SES identity",
    ),
    Variable(
        "SUPPORT_EMAIL",
        "support_email",
        default="support@vigil.local",
        required_deployed=True,
        worker_exempt=True,
        meaning="an address people read (not a no-reply), named in account emails as where to ask for help",
    ),
    Variable("CHECK_REGIONS", "check_regions", default=",".join(DEFAULT_REGIONS), meaning="regions that run checks"),
    Variable(
        "ALLOW_PRIVATE_TARGETS",
        "allow_private_targets_requested",
        default="false",
        dev_default="true",
        meaning="allow private/loopback targets; ignored in deployed stages",
    ),
    Variable(
        "TABLE_PREFIX",
        "table_prefix",
        default="vigil-{VIGIL_STAGE}-",
        shown="`vigil-<stage>-`",
        meaning="prefix of table, queue and bucket names",
    ),
    Variable(
        "AWS_REGION",
        "aws_region",
        default="us-east-1",
        fallbacks=("AWS_DEFAULT_REGION",),
        meaning="region of the queues and SES (Lambda sets it to the function's region)",
    ),
    Variable(
        "HOME_REGION",
        "home_region",
        default="{AWS_REGION}",
        shown="`AWS_REGION`",
        meaning="region of the tables; regional check workers write there",
    ),
    Variable(
        "VIGIL_FUNCTION",
        "function",
        default="api",
        meaning="which deployed function this is (the templates set it): `api`, `events` (the event handlers) or"
        " `checker`; only `api` holds `SECRET_KEY` and Stripe's secrets",
    ),
    Variable(
        "CHECK_REGION",
        "check_region",
        default=None,
        shown="the function's region",
        meaning="the region label a check worker puts on its results",
    ),
    Variable(
        "RESULT_RETENTION_DAYS",
        "result_retention_days",
        default="90",
        meaning="the most days any team's results are kept (TTL); each plan keeps its own: 7, 30 or 90",
    ),
    Variable(
        "RESULTS_STREAM_ARN",
        "results_stream_arn",
        default=None,
        shown="derived locally",
        meaning="the result packs' stream the aggregator and the incident handler read (the stack wires it)",
    ),
    Variable(
        "AWS_ENDPOINT_URL",
        "aws_endpoint_url",
        default=None,
        meaning="send every AWS call to an emulator (LocalStack, DynamoDB Local) or another endpoint",
    ),
    Variable("PORT", "port", default="8000", meaning="port of the local API"),
    Variable(
        "ACCESS_TOKEN_TTL_SECONDS",
        "access_token_ttl_seconds",
        default="900",
        meaning="access token lifetime, 60–900",  # noqa: RUF001 (the README writes ranges with an en dash)
    ),
    Variable(
        "REFRESH_TOKEN_TTL_SECONDS",
        "refresh_token_ttl_seconds",
        default="2592000",
        meaning="refresh token (session) lifetime",
    ),
    Variable("BCRYPT_ROUNDS", "bcrypt_rounds", default="12", meaning="bcrypt cost; ≥ 12 in deployed stages"),
    Variable(
        "LOGIN_FAILURES_BEFORE_BACKOFF",
        "login_failures_before_backoff",
        default="5",
        meaning="failed sign-ins per account from one client IP before each next one waits (1 s, doubling; 429)",
    ),
    Variable(
        "LOGIN_BACKOFF_MAX_SECONDS",
        "login_backoff_max_seconds",
        default="900",
        meaning="the longest such wait",
    ),
    Variable(
        "LOGIN_FAILURES_PER_ACCOUNT",
        "login_failures_per_account",
        default="20",
        meaning="failed sign-ins per account per window from all IPs (but those it signed in from) before 429",
    ),
    Variable(
        "LOGIN_FAILURES_PER_IP",
        "login_failures_per_ip",
        default="30",
        meaning="failed sign-ins per client IP per window before 429",
    ),
    Variable(
        "USER_REQUESTS_PER_MINUTE",
        "user_requests_per_minute",
        default="1200",
        meaning="API requests a minute per signed-in user (access tokens; API keys follow their team's plan)",
    ),
    Variable(
        "LOGIN_FAILURE_WINDOW_SECONDS",
        "login_failure_window_seconds",
        default="900",
        meaning="the window in which failed sign-ins are counted",
    ),
    Variable("CORS_ALLOW_ORIGIN", "cors_allow_origin", default=None, meaning="the frontend's origin, for CORS"),
    Variable(
        "STATUS_BASE_URL",
        "status_base_url",
        default="{APP_URL}/status",
        shown="`APP_URL` + `/status`",
        meaning="where status pages are public (the CloudFront or custom domain); links in pages and feeds",
    ),
    Variable(
        "PAGERDUTY_EVENTS_URL",
        "pagerduty_events_url",
        default=PAGERDUTY_EVENTS_URL,
        shown="PagerDuty's Events API v2",
        meaning="where PagerDuty channels send (tests point it at a loopback receiver)",
    ),
    Variable(
        "STRIPE_SECRET_KEY",
        "stripe_secret_key",
        default=None,
        required_deployed=True,
        api_only=True,
        dev_default="sk_test_vigil_local",
        meaning="Stripe API key (deployed: from Secrets Manager); billing answers 503 without it",
    ),
    Variable(
        "STRIPE_WEBHOOK_SECRET",
        "stripe_webhook_secret",
        default=None,
        required_deployed=True,
        api_only=True,
        dev_default="whsec_vigil_local_stand_in_secret",
        meaning="verifies `Stripe-Signature` on `/v1/webhooks/stripe` (deployed: from Secrets Manager)",
    ),
    Variable(
        "STRIPE_PRICE_PRO",
        "stripe_price_pro",
        default="price_vigil_pro",
        meaning="the Stripe price id of the pro plan (the local stand-in's by default)",
    ),
    Variable(
        "STRIPE_PRICE_ENTERPRISE",
        "stripe_price_enterprise",
        default="price_vigil_enterprise",
        meaning="the Stripe price id of the enterprise plan",
    ),
    Variable(
        "STRIPE_API_BASE",
        "stripe_api_base",
        default=None,
        shown="unset: Stripe",
        dev_default="http://127.0.0.1:8010",
        meaning="where the Stripe library sends its calls (`make dev`'s stand-in)",
    ),
    Variable("LOG_LEVEL", "log_level", default="INFO", meaning="`DEBUG`, `INFO`, `WARNING`, `ERROR`"),
    Variable(
        "VIGIL_DEMO_PORT",
        "demo_port",
        default="8020",
        meaning="`make demo`: the loopback port of the demo service and its webhook receiver",
    ),
    Variable(
        "VIGIL_DEMO_STEP_SECONDS",
        "demo_step_seconds",
        default="60",
        meaning="`make demo`: how long one step of the demo service's five-step script lasts (1 to 3600)",
    ),
    Variable(
        "VIGIL_VERSION",
        "version",
        default="0.1.0",
        meaning="the version `GET /health` and the OpenAPI document report",
    ),
)
VARIABLES_BY_NAME = {variable.name: variable for variable in VARIABLES}


def configuration_table() -> str:
    """The README's Configuration table (markdown), rendered from :data:`VARIABLES`."""

    def default(variable: Variable) -> str:
        own = "unset" if variable.default is None else f"`{variable.default}`"
        text = own if variable.shown is None else variable.shown.replace("{default}", own)
        if variable.fallbacks:
            text = f"{', '.join(f'`{name}`' for name in variable.fallbacks)} if set, else {text}"
        if variable.dev_default is not None:
            text += f" (`make dev` sets `{variable.dev_default}`)"
        if variable.required_deployed:
            text += "; **required** deployed" + (" (API)" if variable.api_only else "")
        return text

    rows = [f"| `{v.name}` | {default(v)} | {v.meaning} |" for v in VARIABLES]
    return "\n".join(["| variable | default | meaning |", "|---|---|---|", *rows]) + "\n"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What Vigil runs with.  Only :func:`load_settings` builds one: the defaults are in :data:`VARIABLES`."""

    stage: str
    version: str
    secret_key: str | None = field(repr=False)  # None only in a deployed function other than the API (it signs nothing)
    app_url: str
    aws_region: str
    home_region: str  # where the tables live; check workers in other regions reach them there
    check_region: str | None  # the region a check worker labels its results with (CHECK_REGION)
    function: str  # which deployed function this process is (VIGIL_FUNCTION): api, events or checker
    result_retention_days: int
    results_stream_arn: str | None
    aws_endpoint_url: str | None
    table_prefix: str
    email_from: str
    support_email: str
    check_regions: tuple[str, ...]
    allow_private_targets_requested: bool
    access_token_ttl_seconds: int
    refresh_token_ttl_seconds: int
    verify_email_ttl_seconds: int = 24 * 3600  # not a setting: no variable changes it
    reset_password_ttl_seconds: int = 3600  # not a setting: no variable changes it
    bcrypt_rounds: int
    login_failures_before_backoff: int
    login_backoff_max_seconds: int
    login_failures_per_account: int
    login_failures_per_ip: int
    login_failure_window_seconds: int
    user_requests_per_minute: int
    port: int
    log_level: str
    cors_allow_origin: str | None
    pagerduty_events_url: str
    status_base_url: str
    stripe_secret_key: str | None = field(default=None, repr=False)
    stripe_webhook_secret: str | None = field(default=None, repr=False)
    stripe_price_pro: str = "price_vigil_pro"
    stripe_price_enterprise: str = "price_vigil_enterprise"
    stripe_api_base: str | None = None
    demo_port: int = 8020
    demo_step_seconds: int = 60

    @property
    def is_local(self) -> bool:
        return self.stage in LOCAL_STAGES

    @property
    def allow_private_targets(self) -> bool:
        """Private targets are only ever allowed on a developer's machine."""
        return self.is_local and self.allow_private_targets_requested

    def signing_key(self, purpose: str) -> bytes:
        """A key derived from SECRET_KEY for one purpose (jwt, cursor, …)."""
        import hashlib
        import hmac

        if self.secret_key is None:
            raise SettingsError(f"SECRET_KEY is not set in this function, which cannot derive a {purpose} key")

        return hmac.new(self.secret_key.encode(), purpose.encode(), hashlib.sha256).digest()


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def _int(name: str, raw: str, minimum: int, maximum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, not {raw!r}") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{name} must be between {minimum} and {maximum}, not {value}")
    return value


def _default(name: str, **values: str) -> str:
    """The table's default for ``name`` ("" when unset), with the other settings it names filled in from ``values``."""
    default = VARIABLES_BY_NAME[name].default
    return "" if default is None else default.format(**values)


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values  # dev-only dependency, used by the local stage only

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def load_settings(
    environ: Mapping[str, str] | None = None,
    dotenv: Path | None = None,
    defaults: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings from an environment mapping (``os.environ`` by default).

    1. Decide the stage (``VIGIL_STAGE``; ``local`` when unset outside Lambda).
    2. In a local stage, merge ``.env`` under the environment, and ``defaults`` under both.
    3. Parse every value, naming the variable in any error.
    4. In a deployed stage, require the secrets and refuse local-only shortcuts.
    """
    env = dict(os.environ if environ is None else environ)
    in_lambda = bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))
    stage = env.get("VIGIL_STAGE", "" if in_lambda else _default("VIGIL_STAGE")).strip()
    if stage not in STAGES:
        raise SettingsError(f"VIGIL_STAGE must be one of {', '.join(STAGES)}, not {stage!r}")
    if in_lambda and stage in LOCAL_STAGES:
        raise SettingsError("VIGIL_STAGE is a local stage but the code runs in AWS Lambda")
    if stage == "local":
        # Precedence: the process environment, then .env, then the caller's defaults (make dev's).
        env = {**(defaults or {}), **_read_dotenv(dotenv or Path.cwd() / ".env"), **env}

    def get(name: str, **values: str) -> str:
        """The variable as set (or its first fallback that is), else its default, filled in from ``values``."""
        variable = VARIABLES_BY_NAME[name]
        for source in (name, *variable.fallbacks):
            if source in env:
                return env[source].strip()
        return _default(name, **values)

    deployed = stage not in LOCAL_STAGES
    secret_key: str | None = get("SECRET_KEY")
    worker = bool(env.get("CHECK_REGION", "").strip())
    named = get("VIGIL_FUNCTION").lower()
    if named not in FUNCTIONS:
        raise SettingsError(f"VIGIL_FUNCTION must be one of {', '.join(FUNCTIONS)}, not {named!r}")
    if deployed and "VIGIL_FUNCTION" in env and (named == "checker") != worker:
        # A check worker is the function with CHECK_REGION: the two must agree (the templates set both).
        raise SettingsError("VIGIL_FUNCTION=checker goes with CHECK_REGION, and only with it")
    function = "checker" if worker else named
    api = function == "api"
    if deployed:
        missing = [
            v.name
            for v in VARIABLES
            if v.required_deployed
            and not (worker and v.worker_exempt)
            and not (v.api_only and not api)
            and not env.get(v.name, "").strip()
        ]
        if missing:
            raise SettingsError(f"missing required setting(s) for stage {stage}: {', '.join(missing)}")
    if not secret_key and deployed and not api:
        secret_key = None  # only the API signs (tokens, cursors): no other function's environment holds the secret
    elif not secret_key:
        # A throwaway key: tokens die with the process, which is right for a laptop.
        secret_key = secrets.token_urlsafe(48)
    if secret_key is not None and len(secret_key) < 32:
        raise SettingsError("SECRET_KEY must be at least 32 characters")

    regions = tuple(r.strip() for r in get("CHECK_REGIONS").split(",") if r.strip())
    if not regions:
        raise SettingsError("CHECK_REGIONS must name at least one region")

    bcrypt_rounds = _int("BCRYPT_ROUNDS", get("BCRYPT_ROUNDS"), 4, 16)
    if deployed and bcrypt_rounds < 12:
        raise SettingsError("BCRYPT_ROUNDS must be at least 12 in a deployed stage")
    access_ttl = _int("ACCESS_TOKEN_TTL_SECONDS", get("ACCESS_TOKEN_TTL_SECONDS"), 60, 900)
    log_level = get("LOG_LEVEL").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {log_level!r}")
    app_url = get("APP_URL").rstrip("/")
    if not app_url.startswith(("http://", "https://")):
        raise SettingsError("APP_URL must be an http(s) URL")
    if deployed and not app_url.startswith("https://"):
        raise SettingsError("APP_URL must be https in a deployed stage")
    aws_region = get("AWS_REGION")

    return Settings(
        stage=stage,
        version=get("VIGIL_VERSION"),
        secret_key=secret_key,
        app_url=app_url,
        aws_region=aws_region,
        home_region=get("HOME_REGION", AWS_REGION=aws_region),
        check_region=get("CHECK_REGION") or None,
        function=function,
        results_stream_arn=get("RESULTS_STREAM_ARN") or None,
        result_retention_days=_int("RESULT_RETENTION_DAYS", get("RESULT_RETENTION_DAYS"), 1, 400),
        aws_endpoint_url=get("AWS_ENDPOINT_URL") or None,
        table_prefix=get("TABLE_PREFIX", VIGIL_STAGE=stage),
        email_from=get("EMAIL_FROM"),
        support_email=get("SUPPORT_EMAIL"),
        check_regions=regions,
        allow_private_targets_requested=_bool("ALLOW_PRIVATE_TARGETS", get("ALLOW_PRIVATE_TARGETS")),
        access_token_ttl_seconds=access_ttl,
        refresh_token_ttl_seconds=_int(
            "REFRESH_TOKEN_TTL_SECONDS", get("REFRESH_TOKEN_TTL_SECONDS"), 3600, 90 * 24 * 3600
        ),
        bcrypt_rounds=bcrypt_rounds,
        login_failures_before_backoff=_int(
            "LOGIN_FAILURES_BEFORE_BACKOFF", get("LOGIN_FAILURES_BEFORE_BACKOFF"), 1, 100
        ),
        login_backoff_max_seconds=_int("LOGIN_BACKOFF_MAX_SECONDS", get("LOGIN_BACKOFF_MAX_SECONDS"), 1, 86400),
        login_failures_per_account=_int("LOGIN_FAILURES_PER_ACCOUNT", get("LOGIN_FAILURES_PER_ACCOUNT"), 1, 100000),
        login_failures_per_ip=_int("LOGIN_FAILURES_PER_IP", get("LOGIN_FAILURES_PER_IP"), 1, 100000),
        login_failure_window_seconds=_int(
            "LOGIN_FAILURE_WINDOW_SECONDS", get("LOGIN_FAILURE_WINDOW_SECONDS"), 10, 86400
        ),
        user_requests_per_minute=_int("USER_REQUESTS_PER_MINUTE", get("USER_REQUESTS_PER_MINUTE"), 1, 1_000_000),
        port=_int("PORT", get("PORT"), 1, 65535),
        log_level=log_level,
        cors_allow_origin=get("CORS_ALLOW_ORIGIN") or None,
        pagerduty_events_url=get("PAGERDUTY_EVENTS_URL"),
        status_base_url=get("STATUS_BASE_URL", APP_URL=app_url),
        stripe_secret_key=get("STRIPE_SECRET_KEY") or None,
        stripe_webhook_secret=get("STRIPE_WEBHOOK_SECRET") or None,
        stripe_price_pro=get("STRIPE_PRICE_PRO"),
        stripe_price_enterprise=get("STRIPE_PRICE_ENTERPRISE"),
        stripe_api_base=(get("STRIPE_API_BASE") or "").rstrip("/") or None,
        demo_port=_int("VIGIL_DEMO_PORT", get("VIGIL_DEMO_PORT"), 1, 65535),
        demo_step_seconds=_int("VIGIL_DEMO_STEP_SECONDS", get("VIGIL_DEMO_STEP_SECONDS"), 1, 3600),
    )


_current: list[Settings] = []


def get_settings() -> Settings:
    """The process-wide settings, loaded from the environment on first use."""
    if not _current:
        _current.append(load_settings())
    return _current[0]


def use_settings(settings: Settings) -> Settings:
    """Replace the process-wide settings (the local stack and tests do this)."""
    _current[:] = [settings]
    return settings
