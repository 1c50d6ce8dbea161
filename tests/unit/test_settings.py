"""Settings: parsed once, frozen, strict in deployed stages, friendly on a laptop."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from chalicelib.settings import Settings, SettingsError, load_settings

SECRET = "a-deployed-secret-key-that-is-long-enough-42"
DEPLOYED = {
    "SECRET_KEY": SECRET,
    "APP_URL": "https://app.example.com",
    "EMAIL_FROM": "Vigil <no-reply@example.com>",
    "SUPPORT_EMAIL": "support@example.com",
    "STRIPE_SECRET_KEY": "sk_live_deployed",
    "STRIPE_WEBHOOK_SECRET": "whsec_deployed",
}


def deployed(stage: str, **overrides: str) -> dict[str, str]:
    return {"VIGIL_STAGE": stage, **DEPLOYED, **overrides}


def local(tmp_path: Path, environ: dict[str, str], dotenv: str = "") -> Settings:
    """Load a local stage against a .env in tmp_path (never the developer's own .env)."""
    path = tmp_path / ".env"
    path.write_text(dotenv)
    return load_settings({"VIGIL_STAGE": "local", **environ}, dotenv=path)


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_a_deployed_stage_with_its_secrets_loads(stage: str) -> None:
    settings = load_settings(deployed(stage))

    assert settings.stage == stage
    assert not settings.is_local
    assert settings.secret_key == SECRET
    assert settings.table_prefix == f"vigil-{stage}-"


@pytest.mark.parametrize("stage", ["dev", "prod"])
@pytest.mark.parametrize("missing", ["SECRET_KEY", "APP_URL", "EMAIL_FROM", "SUPPORT_EMAIL"])
def test_a_deployed_stage_without_a_required_setting_refuses_to_start(stage: str, missing: str) -> None:
    env = deployed(stage)
    del env[missing]

    with pytest.raises(SettingsError, match=missing):
        load_settings(env)


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_a_blank_required_setting_counts_as_missing(stage: str) -> None:
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        load_settings(deployed(stage, SECRET_KEY="   "))


def test_every_missing_setting_is_named_at_once() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"VIGIL_STAGE": "prod"})

    message = str(raised.value)
    assert all(name in message for name in ("SECRET_KEY", "APP_URL", "EMAIL_FROM", "SUPPORT_EMAIL"))


def test_a_short_secret_key_is_refused() -> None:
    with pytest.raises(SettingsError, match="SECRET_KEY must be at least 32"):
        load_settings(deployed("prod", SECRET_KEY="x" * 31))


def test_the_error_never_quotes_the_secret() -> None:
    short = "s3cr3t-but-far-too-short"
    with pytest.raises(SettingsError) as raised:
        load_settings(deployed("prod", SECRET_KEY=short))

    assert short not in str(raised.value)


def test_a_deployed_stage_requires_an_https_app_url() -> None:
    with pytest.raises(SettingsError, match="APP_URL must be https"):
        load_settings(deployed("prod", APP_URL="http://app.example.com"))


@pytest.mark.parametrize("stage", ["dev", "prod"])
@pytest.mark.parametrize("rounds", ["4", "11"])
def test_bcrypt_below_cost_12_is_refused_in_deployed_stages(stage: str, rounds: str) -> None:
    with pytest.raises(SettingsError, match="BCRYPT_ROUNDS"):
        load_settings(deployed(stage, BCRYPT_ROUNDS=rounds))


def test_bcrypt_cost_12_and_up_is_accepted_in_deployed_stages() -> None:
    assert load_settings(deployed("prod")).bcrypt_rounds == 12
    assert load_settings(deployed("prod", BCRYPT_ROUNDS="13")).bcrypt_rounds == 13


def test_the_test_stage_may_use_a_cheap_bcrypt_cost() -> None:
    assert load_settings({"VIGIL_STAGE": "test", "BCRYPT_ROUNDS": "4"}).bcrypt_rounds == 4


def test_the_local_stage_reads_dotenv_and_the_environment_wins(tmp_path: Path) -> None:
    settings = local(
        tmp_path,
        {"PORT": "9002"},
        dotenv="PORT=9001\nLOG_LEVEL=debug\nTABLE_PREFIX=mine-\n# a comment\nEMAIL_FROM='Me <me@example.com>'\n",
    )

    assert settings.port == 9002
    assert settings.log_level == "DEBUG"
    assert settings.table_prefix == "mine-"
    assert settings.email_from == "Me <me@example.com>"


def test_only_the_local_stage_reads_dotenv(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("PORT=9001\n")

    assert load_settings({"VIGIL_STAGE": "test"}, dotenv=path).port == 8000
    assert load_settings(deployed("prod"), dotenv=path).port == 8000


def test_the_local_stage_runs_without_a_dotenv_or_a_secret(tmp_path: Path) -> None:
    missing = tmp_path / "absent.env"

    first = load_settings({"VIGIL_STAGE": "local"}, dotenv=missing)
    second = load_settings({"VIGIL_STAGE": "local"}, dotenv=missing)

    assert first.is_local
    assert len(first.secret_key) >= 32
    assert first.secret_key != second.secret_key  # a throwaway key per process, never a fixed default


def test_no_stage_outside_lambda_means_local(tmp_path: Path) -> None:
    assert load_settings({}, dotenv=tmp_path / "absent.env").stage == "local"


@pytest.mark.parametrize("stage", ["local", "test"])
def test_a_local_stage_inside_lambda_is_refused(stage: str) -> None:
    with pytest.raises(SettingsError, match="Lambda"):
        load_settings({"VIGIL_STAGE": stage, "AWS_LAMBDA_FUNCTION_NAME": "vigil-prod-APIHandler"})


def test_lambda_without_a_stage_is_refused_rather_than_taken_for_local() -> None:
    with pytest.raises(SettingsError, match="VIGIL_STAGE"):
        load_settings({"AWS_LAMBDA_FUNCTION_NAME": "vigil-prod-APIHandler", **DEPLOYED})


def test_an_unknown_stage_is_refused() -> None:
    with pytest.raises(SettingsError, match="VIGIL_STAGE"):
        load_settings(deployed("staging"))


def test_private_targets_are_never_allowed_in_prod() -> None:
    settings = load_settings(deployed("prod", ALLOW_PRIVATE_TARGETS="true"))

    assert settings.allow_private_targets is False


def test_private_targets_are_allowed_locally_only_when_asked(tmp_path: Path) -> None:
    assert local(tmp_path, {"ALLOW_PRIVATE_TARGETS": "true"}).allow_private_targets is True
    assert local(tmp_path, {}).allow_private_targets is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("BCRYPT_ROUNDS", "12.5"),
        ("ACCESS_TOKEN_TTL_SECONDS", "3600"),
        ("REFRESH_TOKEN_TTL_SECONDS", "-1"),
        ("LOGIN_FAILURES_PER_ACCOUNT", "0"),
        ("LOGIN_FAILURE_WINDOW_SECONDS", "x"),
        ("ALLOW_PRIVATE_TARGETS", "maybe"),
        ("LOG_LEVEL", "LOUD"),
        ("APP_URL", "ftp://app.example.com"),
    ],
)
def test_an_invalid_value_names_its_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        local(tmp_path, {name: value})


def test_booleans_accept_the_usual_spellings(tmp_path: Path) -> None:
    for raw in ("1", "true", "TRUE", "yes", "on"):
        assert local(tmp_path, {"ALLOW_PRIVATE_TARGETS": raw}).allow_private_targets_requested is True
    for raw in ("0", "false", "no", "off", ""):
        assert local(tmp_path, {"ALLOW_PRIVATE_TARGETS": raw}).allow_private_targets_requested is False


def test_check_regions_are_a_trimmed_list(tmp_path: Path) -> None:
    settings = local(tmp_path, {"CHECK_REGIONS": " us-east-1 , eu-west-1 ,"})

    assert settings.check_regions == ("us-east-1", "eu-west-1")
    with pytest.raises(SettingsError, match="CHECK_REGIONS"):
        local(tmp_path, {"CHECK_REGIONS": " , "})


def test_settings_are_frozen() -> None:
    settings = load_settings(deployed("prod"))

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.secret_key = "changed"  # type: ignore[misc]


def test_the_secret_key_stays_out_of_the_repr() -> None:
    settings = load_settings(deployed("prod"))

    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)


def test_signing_keys_differ_per_purpose_and_hide_the_secret() -> None:
    settings = load_settings(deployed("prod"))

    jwt, cursor = settings.signing_key("jwt"), settings.signing_key("cursor")
    assert jwt != cursor
    assert SECRET.encode() not in jwt
    assert jwt == load_settings(deployed("prod")).signing_key("jwt")


def test_callers_defaults_rank_below_dotenv_and_the_environment(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("ALLOW_PRIVATE_TARGETS=false\n")
    defaults = {"ALLOW_PRIVATE_TARGETS": "true", "PORT": "9001"}
    from_dotenv = load_settings({"VIGIL_STAGE": "local"}, dotenv=dotenv, defaults=defaults)
    assert from_dotenv.allow_private_targets is False
    assert from_dotenv.port == 9001
    from_env = load_settings({"VIGIL_STAGE": "local", "PORT": "9002"}, dotenv=dotenv, defaults=defaults)
    assert from_env.port == 9002
    no_dotenv = load_settings({"VIGIL_STAGE": "local"}, dotenv=tmp_path / "missing", defaults=defaults)
    assert no_dotenv.allow_private_targets is True


def test_a_deployed_stage_needs_the_stripe_secrets_but_a_check_worker_does_not() -> None:
    without = {k: v for k, v in deployed("prod").items() if not k.startswith("STRIPE_")}
    with pytest.raises(SettingsError, match="STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET"):
        load_settings(without)
    worker = load_settings({**without, "CHECK_REGION": "eu-west-1"})
    assert worker.stripe_secret_key is None


def test_only_the_api_function_needs_the_secrets_and_the_function_is_named_consistently() -> None:
    without = {k: v for k, v in deployed("prod").items() if k not in ("SECRET_KEY", "STRIPE_SECRET_KEY")}
    events = load_settings({**without, "VIGIL_FUNCTION": " Events "})
    assert (events.function, events.secret_key, events.stripe_secret_key) == ("events", None, None)
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        load_settings({**without, "VIGIL_FUNCTION": "api"})
    for wrong in ("bogus", ""):
        with pytest.raises(SettingsError, match="VIGIL_FUNCTION must be one of api, events, checker"):
            load_settings({**without, "VIGIL_FUNCTION": wrong})
    with pytest.raises(SettingsError, match="goes with CHECK_REGION"):
        load_settings({**without, "VIGIL_FUNCTION": "checker"})
    with pytest.raises(SettingsError, match="goes with CHECK_REGION"):
        load_settings({**without, "VIGIL_FUNCTION": "api", "CHECK_REGION": "eu-west-1"})
    worker = load_settings({**without, "VIGIL_FUNCTION": "checker", "CHECK_REGION": "eu-west-1"})
    assert worker.function == "checker"


def test_a_check_worker_runs_without_the_secret_key_and_cannot_sign_with_none() -> None:
    without = {k: v for k, v in deployed("prod").items() if k != "SECRET_KEY"}
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        load_settings(without)  # any other function of a deployed stage still refuses to start
    worker = load_settings({**without, "CHECK_REGION": "eu-west-1"})
    assert worker.secret_key is None
    with pytest.raises(SettingsError, match="cannot derive a cursor key"):
        worker.signing_key("cursor")  # never a throwaway key that would sign what no other function can read
    with pytest.raises(SettingsError, match="at least 32"):
        load_settings({**without, "CHECK_REGION": "eu-west-1", "SECRET_KEY": "short"})
    assert "sk_live" not in repr(load_settings(deployed("prod")))
