"""``python -m infra.package STAGE`` (``make package STAGE=dev|prod``): build the deployable template.

1. Refuse a stale ``infra/resources.json`` or ``infra/checker.json`` (run ``make infra`` first).
2. Run ``chalice package`` for the stage with ``infra/resources.json`` merged in, into ``out/STAGE``.
3. Build the check worker's package: Chalice's ``deployment.zip`` plus the ``functions/`` tree, as
   ``checker.zip``, and ``checker.json`` (``infra/checker.json`` pointing at it) beside it.
4. Lint both templates (``sam.json``, ``checker.json``) with cfn-lint.
5. Print the ``aws cloudformation package`` / ``deploy`` commands: the main stack in the home region, and a
   checker stack in every check region.  Nothing is deployed from here.

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
import zipfile
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


def package_checker(out: Path) -> Path:
    """Build the check worker's package beside Chalice's; returns its template's path.

    ``deployment.zip`` already holds ``app.py``, ``chalicelib`` and the vendored dependencies the worker
    imports; only ``functions/`` is missing.  A copy gets it, so the API's package stays as Chalice made it.
    """
    deployment = out / "deployment.zip"
    if not deployment.is_file():
        raise PackageError(f"{deployment} is missing: `chalice package` did not write it")
    archive = out / build.CHECKER_CODE_URI
    shutil.copyfile(deployment, archive)
    sources = sorted(
        path
        for path in (ROOT / "functions").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )
    if not any(path.name == "handler.py" for path in sources):
        raise PackageError(f"functions/ has no handler.py: {build.CHECKER_HANDLER} cannot be packaged")
    with zipfile.ZipFile(archive, "a") as zf:
        present = set(zf.namelist())
        for path in sources:
            name = path.relative_to(ROOT).as_posix()
            if name in present:
                raise PackageError(f"{deployment.name} already holds {name}; refusing to shadow it")
            # Fixed timestamps and modes, as Chalice's own entries have: the same code gives the same zip,
            # so `aws cloudformation package` (which names the upload by its hash) updates no function needlessly.
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o100644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, path.read_bytes())
    template = json.loads(build.CHECKER_OUTPUT.read_text())
    # Relative to the template's directory, which is how `aws cloudformation package` resolves it.
    template["Resources"][build.CHECKER_FUNCTION]["Properties"]["CodeUri"] = archive.name
    checker = out / "checker.json"
    checker.write_text(json.dumps(template, indent=2) + "\n")
    return checker


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
        f'aws cloudformation package --region "$HOME_REGION" --template-file {template}/sam.json'
        f' --s3-bucket "$ARTIFACT_BUCKET" --output-template-file {template}/packaged.json',
        f'aws cloudformation deploy --region "$HOME_REGION" --template-file {template}/packaged.json'
        f" --stack-name {prefix.rstrip('-')}"
        " --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND"
        f" --parameter-overrides {' '.join(overrides)}",
    ]


def check_regions(stage: str) -> list[str]:
    env = stage_environment(stage)
    return [r.strip() for r in env.get("CHECK_REGIONS", ",".join(DEFAULT_REGIONS)).split(",") if r.strip()]


def checker_deploy_commands(stage: str, out: Path) -> list[str]:
    """Package and deploy the checker stack in each check region of the stage's config (home region included).

    Lambda reads code only from a bucket in its own region, so each region is packaged into its own artifact
    bucket, ``$ARTIFACT_BUCKET-<region>``.
    """
    env = stage_environment(stage)
    prefix = env["TABLE_PREFIX"]
    template = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    overrides = [
        f"Stage={shlex.quote(stage)}",
        f"TablePrefix={shlex.quote(prefix)}",
        'HomeRegion="$HOME_REGION"',
        'AppUrl="$APP_URL"',
        'EmailFrom="$EMAIL_FROM"',
        'AlarmEmail="${ALARM_EMAIL:-}"',
        f"LogLevel={shlex.quote(env.get('LOG_LEVEL', 'INFO'))}",
    ]
    commands = []
    for region in check_regions(stage):
        packaged = f"{template}/checker-{region}.json"
        commands += [
            f"aws cloudformation package --region {shlex.quote(region)} --template-file {template}/checker.json"
            f' --s3-bucket "$ARTIFACT_BUCKET-{region}" --output-template-file {packaged}',
            f"aws cloudformation deploy --region {shlex.quote(region)} --template-file {packaged}"
            f" --stack-name {prefix}checker"
            " --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND"
            f" --parameter-overrides {' '.join(overrides)}",
        ]
    return commands


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
        checker = package_checker(out)
        print(f"packaged {args.stage} into {out}")
        for linted in (template, checker):
            lint(linted)
            print(f"cfn-lint: {linted.name} is clean")
    except PackageError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(
        "\nTo deploy (see docs/deploy.md; HOME_REGION, APP_URL, EMAIL_FROM, ARTIFACT_BUCKET and optionally"
        " ALARM_EMAIL set):"
    )
    print("\n1. The check worker, one stack per check region (each needs the secret and $ARTIFACT_BUCKET-<region>):\n")
    for command in checker_deploy_commands(args.stage, out):
        print(f"  {command}\n")
    print("2. The main stack, in the home region:\n")
    for command in deploy_commands(args.stage, out):
        print(f"  {command}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
