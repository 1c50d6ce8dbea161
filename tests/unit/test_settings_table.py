"""The settings table (chalicelib.settings.VARIABLES) is the one source of every default: the loader, README.md's
Configuration table and .env.example all agree with it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from dotenv import dotenv_values

from chalicelib.local.stack import DEV_DEFAULTS
from chalicelib.settings import (
    VARIABLES,
    VARIABLES_BY_NAME,
    Settings,
    SettingsError,
    configuration_table,
    load_settings,
)

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
ENV_EXAMPLE = ROOT / ".env.example"

# Settings fields no variable sets: fixed lifetimes, written once as the dataclass's own defaults.
FIXED_FIELDS = {"verify_email_ttl_seconds", "reset_password_ttl_seconds"}

# What .env.example deliberately sets to something other than the table's default (besides each variable's
# dev_default, which is make dev's own default and so .env.example's too), and why.
ENV_EXAMPLE_EXCEPTIONS = {
    "SECRET_KEY": "a placeholder to replace with a real key; unset, a local stage makes a random one per run",
}


def as_text(value: object) -> str | None:
    """A Settings value written back as the environment would spell it (None: unset)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def load_local(tmp_path: Path, environ: dict[str, str] | None = None) -> Settings:
    return load_settings(environ or {}, dotenv=tmp_path / "absent.env")


def as_environment(settings: Settings) -> dict[str, str | None]:
    return {v.name: as_text(getattr(settings, v.attribute)) for v in VARIABLES}


def table_defaults(values: dict[str, str | None]) -> dict[str, str | None]:
    """The table's default of every variable, derived ones filled in from ``values`` (SECRET_KEY left out: its
    absence means a random key)."""
    return {
        v.name: None if v.default is None else v.default.format_map(values) for v in VARIABLES if v.name != "SECRET_KEY"
    }


def readme_configuration_table() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return "".join(f"{line}\n" for line in section.splitlines() if line.startswith("|"))


def env_example_names() -> list[str]:
    """Every variable .env.example assigns, set or commented out."""
    assignment = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=")
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    return [match.group(1) for line in lines if (match := assignment.match(line))]


def test_every_variable_fills_its_own_settings_field() -> None:
    names = [v.name for v in VARIABLES]
    attributes = [v.attribute for v in VARIABLES]
    fields = {f.name for f in dataclasses.fields(Settings)}

    assert len(set(names)) == len(names) == len(VARIABLES_BY_NAME)
    assert len(set(attributes)) == len(attributes)
    assert set(attributes) == fields - FIXED_FIELDS


def test_an_empty_local_environment_loads_exactly_the_tables_defaults(tmp_path: Path) -> None:
    settings = load_local(tmp_path)
    loaded = as_environment(settings)

    assert {name: loaded[name] for name in table_defaults(loaded)} == table_defaults(loaded)
    assert settings.stage == "local"
    assert len(settings.secret_key) >= 32  # unset: a random key per run


def test_derived_defaults_follow_the_settings_they_name(tmp_path: Path) -> None:
    settings = load_local(
        tmp_path,
        {"VIGIL_STAGE": "test", "APP_URL": " https://app.example.com/ ", "AWS_DEFAULT_REGION": " eu-west-1 "},
    )

    assert settings.table_prefix == "vigil-test-"
    assert settings.status_base_url == "https://app.example.com/status"
    assert settings.aws_region == settings.home_region == "eu-west-1"
    assert load_local(tmp_path, {"AWS_REGION": "ap-southeast-1", "AWS_DEFAULT_REGION": "eu-west-1"}).home_region == (
        "ap-southeast-1"
    )


def test_a_variable_set_but_blank_is_not_replaced_by_its_default(tmp_path: Path) -> None:
    assert load_local(tmp_path, {"TABLE_PREFIX": " "}).table_prefix == ""
    with pytest.raises(SettingsError, match="PORT"):
        load_local(tmp_path, {"PORT": ""})


def test_the_readme_configuration_table_is_rendered_from_the_settings_table() -> None:
    assert readme_configuration_table() == configuration_table(), (
        "README.md's Configuration table differs from chalicelib.settings.VARIABLES: paste in the output of "
        "python -c 'from chalicelib.settings import configuration_table; print(configuration_table(), end=\"\")'"
    )


def test_env_example_names_only_known_settings() -> None:
    unknown = [name for name in env_example_names() if name not in VARIABLES_BY_NAME]

    assert unknown == []


def test_env_example_names_every_setting_once() -> None:
    names = env_example_names()

    assert sorted(names) == sorted(VARIABLES_BY_NAME)


def test_env_example_writes_the_tables_defaults(tmp_path: Path) -> None:
    defaults = table_defaults(as_environment(load_local(tmp_path)))
    written = {name: value for name, value in dotenv_values(ENV_EXAMPLE).items() if name not in ENV_EXAMPLE_EXCEPTIONS}
    expected = {
        name: VARIABLES_BY_NAME[name].dev_default or defaults[name] for name in written if name in VARIABLES_BY_NAME
    }

    assert written == expected


def test_copying_env_example_changes_nothing_but_the_secret_for_make_dev(tmp_path: Path) -> None:
    plain = load_settings({}, dotenv=tmp_path / "absent.env", defaults=DEV_DEFAULTS)
    copied = load_settings({}, dotenv=ENV_EXAMPLE, defaults=DEV_DEFAULTS)

    assert dataclasses.replace(copied, secret_key=plain.secret_key) == plain


def test_make_dev_sets_what_the_table_says_it_does() -> None:
    assert {v.name: v.dev_default for v in VARIABLES if v.dev_default is not None} == DEV_DEFAULTS
