"""``python -m infra.package STAGE`` (``make package STAGE=dev|prod``): build the deployable template.

1. Refuse a stale ``infra/resources.json`` (run ``make infra`` first).
2. Run ``chalice package`` for the stage with ``infra/resources.json`` merged in, into ``out/STAGE``.
3. Lint the result (``sam.json``) with cfn-lint.
4. Print the ``aws cloudformation package`` / ``deploy`` commands.  Nothing is deployed from here.

Chalice imports ``app.py`` to discover the routes, and a deployed stage's settings refuse to load without
their secrets; the packaging process gets throwaway values for those.  They never reach the template:
Chalice writes the function's environment from ``.chalice/config.json`` only, and the merged template
wires in the real ones (stack parameters and the Secrets Manager reference).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from chalicelib.settings import DEFAULT_REGIONS
from infra import build

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".chalice" / "config.json"
PACKAGE_TIMEOUT_SECONDS = 600  # a cold pip cache may have to fetch every wheel
LINT_TIMEOUT_SECONDS = 300


class PackageError(RuntimeError):
    """Packaging or linting failed; the message says what to do."""


def chalice_config() -> dict[str, Any]:
    return dict(json.loads(CONFIG.read_text()))


def stages() -> list[str]:
    return sorted(chalice_config()["stages"])


def stage_environment(stage: str) -> dict[str, str]:
    """The function environment config.json gives ``stage`` (top-level values, then the stage's own)."""
    config = chalice_config()
    if stage not in config["stages"]:
        raise PackageError(f"unknown stage {stage!r}: .chalice/config.json has {', '.join(stages())}")
    return {**config.get("environment_variables", {}), **config["stages"][stage].get("environment_variables", {})}


def packaging_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # chalice package needs a region, not credentials
    env.pop("AWS_LAMBDA_FUNCTION_NAME", None)
    env.update(
        {
            "SECRET_KEY": secrets.token_urlsafe(48),
            "APP_URL": "https://packaging.invalid",
            "EMAIL_FROM": "packaging@packaging.invalid",
        }
    )
    return env


def _tool(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if not found:
        raise PackageError(f"{name} is not installed: run `make dev` or `pip install -r requirements-dev.txt`")
    return found


def _run(command: list[str], timeout: int, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(  # noqa: S603 - a fixed command line built from our own arguments
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise PackageError(f"{Path(command[0]).name} did not finish within {timeout} s") from None


def package(stage: str, out: Path) -> Path:
    """Run ``chalice package`` for ``stage`` into ``out``; returns the SAM template's path."""
    stage_environment(stage)  # an unknown stage fails here, with the known ones named
    if out.exists():
        shutil.rmtree(out)
    command = [
        _tool("chalice"),
        "package",
        "--stage",
        stage,
        "--pkg-format",
        "cloudformation",
        "--merge-template",
        str(build.OUTPUT),
        str(out),
    ]
    result = _run(command, PACKAGE_TIMEOUT_SECONDS, packaging_environment())
    if result.returncode != 0:
        raise PackageError(f"chalice package failed:\n{result.stdout}{result.stderr}")
    _prune_build_cache()
    return out / "sam.json"


def _prune_build_cache() -> None:
    """Drop Chalice's older cached builds: it writes a new ~25 MB zip for every change to the code.

    The newest stays, and so does anything from the last ten minutes, which another packaging run
    (``make test`` beside ``make package``) may still be reading.
    """
    with contextlib.suppress(OSError):  # best effort: a cache left behind costs disk, never correctness
        cached = sorted((ROOT / ".chalice" / "deployments").glob("*.zip"), key=lambda p: p.stat().st_mtime)
        cutoff = time.time() - 600
        for stale in cached[:-1]:
            if stale.stat().st_mtime < cutoff:
                stale.unlink(missing_ok=True)


def lint(template: Path) -> str:
    """cfn-lint the template; returns its report, raises on any finding (errors and warnings alike)."""
    result = _run([_tool("cfn-lint"), "--", str(template)], LINT_TIMEOUT_SECONDS)
    if result.returncode != 0:
        raise PackageError(f"cfn-lint found problems in {template}:\n{result.stdout}{result.stderr}")
    return result.stdout


def deploy_commands(stage: str, out: Path) -> list[str]:
    """The commands a deployer runs next, with the stage's parameters; deployer-specific values stay shell variables."""
    env = stage_environment(stage)
    prefix = env["TABLE_PREFIX"]
    template = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    overrides = [
        f"Stage={shlex.quote(stage)}",
        f"TablePrefix={shlex.quote(prefix)}",
        f"CheckRegions={shlex.quote(env.get('CHECK_REGIONS', ','.join(DEFAULT_REGIONS)))}",
        'AppUrl="$APP_URL"',
        'EmailFrom="$EMAIL_FROM"',
        'AlarmEmail="${ALARM_EMAIL:-}"',
    ]
    return [
        f"aws cloudformation package --template-file {template}/sam.json"
        f' --s3-bucket "$ARTIFACT_BUCKET" --output-template-file {template}/packaged.json',
        f"aws cloudformation deploy --template-file {template}/packaged.json --stack-name {prefix.rstrip('-')}"
        " --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND"
        f" --parameter-overrides {' '.join(overrides)}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.package", description=__doc__.splitlines()[0])
    parser.add_argument("stage", nargs="?", help="a stage of .chalice/config.json (dev or prod)")
    parser.add_argument("--out", type=Path, help="output directory (default: out/STAGE)")
    args = parser.parse_args(argv)
    if not args.stage:
        print(f"usage: make package STAGE=<{'|'.join(stages())}>", file=sys.stderr)
        return 2
    out = (args.out or ROOT / "out" / args.stage).resolve()
    try:
        if build.main(["--check"]) != 0:
            return 1
        template = package(args.stage, out)
        print(f"packaged {args.stage} into {out}")
        lint(template)
        print(f"cfn-lint: {template.name} is clean")
    except PackageError as exc:
        print(exc, file=sys.stderr)
        return 1
    print("\nTo deploy (see docs/deploy.md; APP_URL, EMAIL_FROM, ARTIFACT_BUCKET and optionally ALARM_EMAIL set):\n")
    for command in deploy_commands(args.stage, out):
        print(f"  {command}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
