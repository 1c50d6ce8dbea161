"""The regional check worker loads only what checking needs: a heavy import or a typo in the API cannot stop it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import TEST_ENV

ROOT = Path(__file__).resolve().parents[2]
HANDLER = "functions.checker.handler"
# The API, its framework and accounts, the alerts, sealing, and the composition root that imports them all.
NOT_FOR_CHECKING = (
    "chalice",
    "chalicelib.api",
    "chalicelib.auth",
    "chalicelib.alerts",
    "chalicelib.sealing",  # the worker holds no KMS grant: its jobs' headers come opened
    "chalicelib.wiring",
    "bcrypt",
    "zxcvbn",
)


def printed_by(code: str) -> Any:
    """The JSON that ``code`` prints last, run in a fresh interpreter (configured as the tests are)."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **TEST_ENV},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def loaded_by_importing(module: str) -> list[str]:
    """Every module a fresh interpreter holds after importing ``module``."""
    return list(printed_by(f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"))


def test_importing_the_checker_loads_no_api_auth_alerts_or_chalice() -> None:
    loaded = loaded_by_importing(HANDLER)

    found = [name for name in loaded if any(name == top or name.startswith(top + ".") for top in NOT_FOR_CHECKING)]
    assert found == []
    # Not vacuous: the probes, the job contract and the tables it needs are there.
    assert {"chalicelib.checks.http", "chalicelib.checks.jobs", "chalicelib.monitors.models"} <= set(loaded)


def test_loading_the_checker_builds_its_tables_clients_before_any_check_runs() -> None:
    """Built on a first request instead, a client loads botocore's DynamoDB model in the middle of the worker's
    minute (its first pack write comes 15 s in): a second or more of a small Lambda's CPU, which every check then
    running measures as its target's slowness (docs/decisions.md)."""
    code = (
        f"import json; import {HANDLER}; from functions.checker.worker import TABLES; "
        "print(json.dumps({m.__name__: m._connection is not None and m._connection.connection._client is not None"
        " for m in TABLES}))"
    )
    built = printed_by(code)

    assert set(built) == {"ChangeModel", "MonitorModel", "PackModel", "ProgressModel"}
    assert all(built.values()), built
