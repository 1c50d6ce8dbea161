"""The suite copies the emulator's state after creating Vigil's resources once per key: the key holds every setting
``create_resources`` reads, or two tests with different settings would share the wrong resources."""

from __future__ import annotations

from typing import Any

from moto import mock_aws

from chalicelib.local.resources import create_resources
from chalicelib.wiring import configure
from tests.support import _what_resources_depend_on, make_test_settings


class Reading:
    """The settings, noting each attribute read."""

    def __init__(self, settings: Any) -> None:
        self._settings = settings
        self.read: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.read.add(name)
        return getattr(self._settings, name)


def test_the_copy_key_holds_every_setting_the_resources_are_made_from():
    settings = make_test_settings()
    made, keyed = Reading(settings), Reading(settings)
    with mock_aws():
        configure(settings)
        create_resources(made)  # type: ignore[arg-type]
    _what_resources_depend_on(keyed)  # type: ignore[arg-type]

    assert made.read, "nothing was read: the proxy saw nothing"
    assert made.read <= keyed.read, f"read to make the resources but not in the key: {made.read - keyed.read}"


def test_settings_that_name_nothing_share_a_key_and_those_that_do_not():
    base = make_test_settings()

    assert _what_resources_depend_on(make_test_settings(BCRYPT_ROUNDS="5")) == _what_resources_depend_on(base)
    assert _what_resources_depend_on(make_test_settings(TABLE_PREFIX="other-")) != _what_resources_depend_on(base)
