"""Typed settings, read once from the environment.

Nothing else in Vigil reads ``os.environ``: everything comes from the frozen
:class:`Settings` object that :func:`get_settings` returns.  In the ``local``
stage a ``.env`` file in the working directory is merged in (the process
environment wins).  A deployed stage that lacks a required secret refuses to
start and names the variable.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

STAGES = ("local", "test", "dev", "prod")
LOCAL_STAGES = ("local", "test")
DEFAULT_REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class SettingsError(RuntimeError):
    """The environment does not describe a runnable Vigil."""


@dataclass(frozen=True)
class Settings:
    stage: str = "local"
    version: str = "0.1.0"
    secret_key: str = field(default="", repr=False)
    app_url: str = "http://127.0.0.1:8000"
    aws_region: str = "us-east-1"
    home_region: str = "us-east-1"  # where the tables live; check workers in other regions reach them there
    check_region: str | None = None  # the region a check worker labels its results with (CHECK_REGION)
    result_retention_days: int = 30
    results_stream_arn: str | None = None
    aws_endpoint_url: str | None = None
    table_prefix: str = "vigil-local-"
    email_from: str = "Vigil <no-reply@vigil.local>"
    check_regions: tuple[str, ...] = DEFAULT_REGIONS
    allow_private_targets_requested: bool = False
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    verify_email_ttl_seconds: int = 24 * 3600
    reset_password_ttl_seconds: int = 3600
    bcrypt_rounds: int = 12
    login_failures_per_account: int = 5
    login_failures_per_ip: int = 30
    login_failure_window_seconds: int = 900
    port: int = 8000
    log_level: str = "INFO"
    cors_allow_origin: str | None = None
    pagerduty_events_url: str = PAGERDUTY_EVENTS_URL
    status_base_url: str = "http://127.0.0.1:8000/status"

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
    stage = env.get("VIGIL_STAGE", "" if in_lambda else "local").strip()
    if stage not in STAGES:
        raise SettingsError(f"VIGIL_STAGE must be one of {', '.join(STAGES)}, not {stage!r}")
    if in_lambda and stage in LOCAL_STAGES:
        raise SettingsError("VIGIL_STAGE is a local stage but the code runs in AWS Lambda")
    if stage == "local":
        # Precedence: the process environment, then .env, then the caller's defaults (make dev's).
        env = {**(defaults or {}), **_read_dotenv(dotenv or Path.cwd() / ".env"), **env}

    def get(name: str, default: str = "") -> str:
        return env.get(name, default).strip()

    deployed = stage not in LOCAL_STAGES
    secret_key = get("SECRET_KEY")
    if deployed:
        missing = [n for n in ("SECRET_KEY", "APP_URL", "EMAIL_FROM") if not get(n)]
        if missing:
            raise SettingsError(f"missing required setting(s) for stage {stage}: {', '.join(missing)}")
    if not secret_key:
        # A throwaway key: tokens die with the process, which is right for a laptop.
        secret_key = secrets.token_urlsafe(48)
    if len(secret_key) < 32:
        raise SettingsError("SECRET_KEY must be at least 32 characters")

    regions = tuple(r.strip() for r in get("CHECK_REGIONS", ",".join(DEFAULT_REGIONS)).split(",") if r.strip())
    if not regions:
        raise SettingsError("CHECK_REGIONS must name at least one region")

    bcrypt_rounds = _int("BCRYPT_ROUNDS", get("BCRYPT_ROUNDS", "12"), 4, 16)
    if deployed and bcrypt_rounds < 12:
        raise SettingsError("BCRYPT_ROUNDS must be at least 12 in a deployed stage")
    access_ttl = _int("ACCESS_TOKEN_TTL_SECONDS", get("ACCESS_TOKEN_TTL_SECONDS", "900"), 60, 900)
    log_level = get("LOG_LEVEL", "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {log_level!r}")
    app_url = get("APP_URL", "http://127.0.0.1:8000").rstrip("/")
    if not app_url.startswith(("http://", "https://")):
        raise SettingsError("APP_URL must be an http(s) URL")
    if deployed and not app_url.startswith("https://"):
        raise SettingsError("APP_URL must be https in a deployed stage")

    return Settings(
        stage=stage,
        version=get("VIGIL_VERSION", "0.1.0"),
        secret_key=secret_key,
        app_url=app_url,
        aws_region=get("AWS_REGION", get("AWS_DEFAULT_REGION", "us-east-1")),
        home_region=get("HOME_REGION", get("AWS_REGION", get("AWS_DEFAULT_REGION", "us-east-1"))),
        check_region=get("CHECK_REGION") or None,
        results_stream_arn=get("RESULTS_STREAM_ARN") or None,
        result_retention_days=_int("RESULT_RETENTION_DAYS", get("RESULT_RETENTION_DAYS", "30"), 1, 400),
        aws_endpoint_url=get("AWS_ENDPOINT_URL") or None,
        table_prefix=get("TABLE_PREFIX", f"vigil-{stage}-"),
        email_from=get("EMAIL_FROM", "Vigil <no-reply@vigil.local>"),
        check_regions=regions,
        allow_private_targets_requested=_bool("ALLOW_PRIVATE_TARGETS", get("ALLOW_PRIVATE_TARGETS", "false")),
        access_token_ttl_seconds=access_ttl,
        refresh_token_ttl_seconds=_int(
            "REFRESH_TOKEN_TTL_SECONDS", get("REFRESH_TOKEN_TTL_SECONDS", str(30 * 24 * 3600)), 3600, 90 * 24 * 3600
        ),
        bcrypt_rounds=bcrypt_rounds,
        login_failures_per_account=_int("LOGIN_FAILURES_PER_ACCOUNT", get("LOGIN_FAILURES_PER_ACCOUNT", "5"), 1, 1000),
        login_failures_per_ip=_int("LOGIN_FAILURES_PER_IP", get("LOGIN_FAILURES_PER_IP", "30"), 1, 100000),
        login_failure_window_seconds=_int(
            "LOGIN_FAILURE_WINDOW_SECONDS", get("LOGIN_FAILURE_WINDOW_SECONDS", "900"), 10, 86400
        ),
        port=_int("PORT", get("PORT", "8000"), 1, 65535),
        log_level=log_level,
        cors_allow_origin=get("CORS_ALLOW_ORIGIN") or None,
        pagerduty_events_url=get("PAGERDUTY_EVENTS_URL", PAGERDUTY_EVENTS_URL),
        status_base_url=get("STATUS_BASE_URL", f"{app_url.rstrip('/')}/status"),
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
