"""``python -m infra.package STAGE`` (``make package STAGE=dev|prod``): build the deployable template.

1. Refuse a stale ``infra/resources.json`` or ``infra/checker.json`` (run ``make infra`` first).
2. Run ``chalice package`` for the stage with ``infra/resources.json`` merged in, into ``out/STAGE``, and fold
   each API path's seven identical operations into one ``ANY`` method (the template shrinks from ~700 KB to
   ~145 KB; the app answers every method itself).
3. Build the check worker's own package, ``checker.zip``: ``functions/checker``, the ``chalicelib`` modules
   it imports and the distributions of ``functions/checker/requirements.txt``, resolved by pip for the
   worker's own Lambda platform (``build.CHECKER_ARCHITECTURE``, arm64), and ``checker.json``
   (``infra/checker.json`` pointing at it).
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
import ast
import contextlib
import csv
import io
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Collection, Iterable, Mapping
from email.parser import Parser
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from chalicelib.settings import DEFAULT_REGIONS
from infra import build

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".chalice" / "config.json"
PACKAGE_TIMEOUT_SECONDS = 600  # a cold pip cache may have to fetch every wheel
LINT_TIMEOUT_SECONDS = 300

CHECKER_REQUIREMENTS = ROOT / "functions" / "checker" / "requirements.txt"
CHECKER_ENTRY = build.CHECKER_HANDLER.rpartition(".")[0]  # functions.checker.handler
VIGIL_PACKAGES = ("chalicelib", "functions")
# Modules the checker's code imports that its package leaves out, and why.
NOT_SHIPPED = {
    "boto3": "the Lambda runtime provides it (requirements.txt leaves it out for the API too)",
    "dotenv": "only a local stage reads a .env (chalicelib.settings)",
}
# Per Lambda architecture: pip's platform tag, Python's platform.machine() and the ELF e_machine of its native
# code.  manylinux2014 (glibc 2.17): the python3.11 runtime runs on Amazon Linux 2 (glibc 2.26), so a wheel
# built for a newer glibc would import there only to fail.
LAMBDA_PLATFORMS = {
    "arm64": ("manylinux2014_aarch64", "aarch64", 183),  # EM_AARCH64
    "x86_64": ("manylinux2014_x86_64", "x86_64", 62),  # EM_X86_64
}
CHECKER_PYTHON = build.CHECKER_RUNTIME.removeprefix("python")  # 3.11
# Wheels pip downloaded for the checker's platform, kept beside Chalice's own build cache: once they are
# there, packaging is offline (pip installs from them with --no-index).
CHECKER_WHEELHOUSE = ROOT / ".chalice" / "deployments" / f"checker-{build.CHECKER_ARCHITECTURE}-py{CHECKER_PYTHON}"
PIP_TIMEOUT_SECONDS = 600
# The runtime the checker's wheels are for, to evaluate their dependencies' environment markers.
LAMBDA_MARKERS = {
    "python_version": build.CHECKER_RUNTIME.removeprefix("python"),
    "python_full_version": build.CHECKER_RUNTIME.removeprefix("python") + ".0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": LAMBDA_PLATFORMS[build.CHECKER_ARCHITECTURE][1],
}


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


def stage_target(stage: str, region: str | None) -> tuple[str, str]:
    """The table prefix of ``stage`` and the region to act in (``region``, else the session's: $AWS_REGION), for
    the operator's commands (``make redrive``, ``make seal``); PackageError saying what is missing."""
    import boto3

    region = region or boto3.session.Session().region_name
    if not region:
        raise PackageError("no region: pass --region or set AWS_REGION")
    return stage_environment(stage)["TABLE_PREFIX"], region


def packaging_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # chalice package needs a region, not credentials
    env.pop("AWS_LAMBDA_FUNCTION_NAME", None)
    env.update(
        {
            "SECRET_KEY": secrets.token_urlsafe(48),
            "APP_URL": "https://packaging.invalid",
            "EMAIL_FROM": "packaging@packaging.invalid",
            "SUPPORT_EMAIL": "packaging@packaging.invalid",
            "STRIPE_SECRET_KEY": "sk_packaging_invalid",
            "STRIPE_WEBHOOK_SECRET": "whsec_packaging_invalid",
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
    template = out / "sam.json"
    packaged = json.loads(template.read_text())
    any_methods(packaged["Resources"][build.CHALICE_API]["Properties"]["DefinitionBody"])
    template.write_text(json.dumps(packaged, separators=(",", ":")) + "\n")
    return template


ANY_METHOD = "x-amazon-apigateway-any-method"
GATEWAY_METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}  # what API Gateway's ANY stands for


def any_methods(body: dict[str, Any]) -> None:
    """Fold each path whose seven operations are the same, in full, into one ``ANY`` method, in place.

    The app routes every method of every path itself (``chalicelib.api.framework``: 405 with ``Allow``, OPTIONS,
    HEAD as GET), so Chalice writes seven identical operations per path, which are most of the template.  With
    ``ANY`` API Gateway hands the function the same event (the path's resource template and the method asked
    for).  A path whose operations differ in anything (an integration, a parameter, an authorizer, a key
    requirement) is left as Chalice wrote it.
    """
    for path, operations in body["paths"].items():
        if set(operations) != GATEWAY_METHODS:
            continue
        if len({json.dumps(op, sort_keys=True) for op in operations.values()}) != 1:
            continue
        body["paths"][path] = {ANY_METHOD: operations["get"]}


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


def pinned(requirements: Path) -> dict[str, str]:
    """A requirements file's distributions and versions; every line must pin one with ``==``."""
    pins: dict[str, str] = {}
    for line in requirements.read_text().splitlines():
        text = line.partition("#")[0].strip()
        if not text:
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            raise PackageError(f"{requirements.name}: cannot read {text!r}") from None
        specs = list(requirement.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or requirement.marker:
            raise PackageError(f"{requirements.name}: {text!r} must pin one version with ==")
        pins[canonicalize_name(requirement.name)] = specs[0].version
    return pins


def _module_source(name: str) -> str | None:
    base = Path(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if (ROOT / candidate).is_file():
            return candidate.as_posix()
    return None


def _imported_names(source: str, package: str) -> Iterable[str]:
    """Every name an import statement of ``source`` may load (``from a import b`` may load ``a.b``)."""
    for node in ast.walk(ast.parse((ROOT / source).read_text(), source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def vigil_imports(entry: str = CHECKER_ENTRY) -> tuple[list[str], set[str]]:
    """The source files of Vigil's modules ``entry`` imports, directly or not, and the names their imports of
    other (third-party) modules may load; the standard library is left out.

    Read from the source, not by importing it: a module a function imports only when it runs must ship too.
    """
    found: dict[str, str] = {}
    others: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        source = _module_source(name) if name else None
        if name in found or source is None:
            continue
        found[name] = source
        parent = name.rpartition(".")[0]
        todo.append(parent)  # a package's __init__ runs before its modules
        for imported in _imported_names(source, name if source.endswith("__init__.py") else parent):
            top = imported.partition(".")[0]
            if top in VIGIL_PACKAGES:
                todo.append(imported)
            elif top not in sys.stdlib_module_names:
                others.add(imported)
    if entry not in found:
        raise PackageError(f"{entry} has no source under {ROOT}: {build.CHECKER_HANDLER} cannot be packaged")
    return sorted(found.values()), others


def dist_infos(names: Iterable[str]) -> set[str]:
    """The ``*.dist-info`` folders among a site's file names."""
    return {name.split("/", 1)[0] for name in names if name.split("/", 1)[0].endswith(".dist-info")}


def distribution_files(folders: Collection[str], read: Callable[[str], str], pins: Mapping[str, str]) -> list[str]:
    """The files of the ``pins`` distributions and of everything they require on Lambda, by their ``RECORD``.

    ``folders`` are the ``*.dist-info`` folders of a site (Chalice's ``deployment.zip``, or a virtualenv) and
    ``read`` reads one of its files.  A pinned distribution must be there at its pinned version.
    """
    installed: dict[str, tuple[str, str]] = {}
    for folder in folders:
        name, _, version = folder.removesuffix(".dist-info").rpartition("-")
        installed[canonicalize_name(name)] = (folder, version)
    for name, version in pins.items():
        if installed.get(name, ("", ""))[1] != version:
            raise PackageError(f"{name}=={version} is not among the built distributions ({installed.get(name)})")
    todo = [(name, "") for name in pins]
    done: set[tuple[str, str]] = set()
    files: set[str] = set()
    while todo:
        name, extra = todo.pop()
        if (name, extra) in done:
            continue
        done.add((name, extra))
        if name not in installed:
            raise PackageError(f"{name} is required but not among the built distributions")
        folder = installed[name][0]
        metadata = Parser().parsestr(read(f"{folder}/METADATA"))
        for text in metadata.get_all("Requires-Dist") or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({**LAMBDA_MARKERS, "extra": extra}):
                needed = canonicalize_name(requirement.name)
                todo += [(needed, ""), *((needed, e) for e in requirement.extras)]
        for row in csv.reader(io.StringIO(read(f"{folder}/RECORD"))):
            path = row[0] if row else ""
            if path and not path.startswith(("../", "/")) and "__pycache__" not in path.split("/"):
                files.add(path)
    return sorted(files)


def top_level(path: str) -> str:
    """The importable name (or dist-info folder) a site file belongs to: ``six.py`` → ``six``, ``a/b.py`` → ``a``."""
    first = path.split("/", 1)[0]
    return first if "/" in path else first.split(".", 1)[0]


def checker_files(folders: Collection[str], read: Callable[[str], str]) -> tuple[list[str], list[str]]:
    """The check worker's package: Vigil's source files it imports, and its requirements' files from the site.

    Every third-party module Vigil's files import must come with a requirement (or be in ``NOT_SHIPPED``): a
    missing one would stop checking in every region.
    """
    sources, imported = vigil_imports()
    third_party = distribution_files(folders, read, pinned(CHECKER_REQUIREMENTS))
    needed = {name.partition(".")[0] for name in imported}
    missing = sorted(needed - {top_level(path) for path in third_party} - NOT_SHIPPED.keys())
    if missing:
        raise PackageError(
            f"the checker imports {', '.join(missing)}: add {'it' if len(missing) == 1 else 'them'} to"
            f" {CHECKER_REQUIREMENTS.relative_to(ROOT)} (pinned as in requirements.txt)"
        )
    return sources, third_party


def _entry(name: str, mode: int) -> zipfile.ZipInfo:
    # Fixed timestamps, as Chalice's own entries have: the same code gives the same zip, so
    # `aws cloudformation package` (which names the upload by its hash) updates no function needlessly.
    entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    entry.external_attr = mode << 16
    entry.compress_type = zipfile.ZIP_DEFLATED
    return entry


def pip_platform(architecture: str = build.CHECKER_ARCHITECTURE, python: str = CHECKER_PYTHON) -> list[str]:
    """pip's options selecting wheels for a Lambda runtime, whatever machine and Python run pip.

    Binary wheels only: pip cannot build an sdist for another machine, and a wheel built for this one would
    carry the wrong native code.
    """
    return [
        "--platform",
        LAMBDA_PLATFORMS[architecture][0],
        "--implementation",
        "cp",
        "--python-version",
        python,
        "--abi",
        "cp" + python.replace(".", ""),
        "--only-binary=:all:",
    ]


def pip_commands(requirements: Path, wheelhouse: Path, site: Path) -> tuple[list[str], list[str]]:
    """Download ``requirements`` (and what they require) into ``wheelhouse``; install them from it into ``site``.

    The install reads nothing but the wheelhouse (``--no-index``, and ``--isolated`` from pip's configuration
    and environment), so what is packaged is what the wheelhouse holds; the download uses pip's configuration
    (index, certificates, proxy) as any install here does.
    """
    pip = [sys.executable, "-m", "pip"]
    quiet = ["--quiet", "--disable-pip-version-check"]
    download = [*pip, "download", *quiet, "--dest", str(wheelhouse), *pip_platform(), "-r", str(requirements)]
    install = [
        *pip,
        "--isolated",
        "install",
        *quiet,
        "--no-index",
        "--find-links",
        str(wheelhouse),
        "--target",
        str(site),
        "--no-compile",
        *pip_platform(),
        "-r",
        str(requirements),
    ]
    return download, install


def install_checker_requirements(site: Path, wheelhouse: Path = CHECKER_WHEELHOUSE) -> None:
    """Install the checker's requirements, built for its Lambda platform, into the empty folder ``site``.

    From the wheelhouse alone when it holds them all (offline); otherwise pip downloads what is missing first.
    """
    download, install = pip_commands(CHECKER_REQUIREMENTS, wheelhouse, site)
    if wheelhouse.is_dir() and _run(install, PIP_TIMEOUT_SECONDS).returncode == 0:
        return
    for partial in site.iterdir():  # what a failed install left
        if partial.is_dir():
            shutil.rmtree(partial)
        else:
            partial.unlink()
    wheelhouse.mkdir(parents=True, exist_ok=True)
    fetched = _run(download, PIP_TIMEOUT_SECONDS)
    if fetched.returncode != 0:
        raise PackageError(f"pip could not download the checker's wheels:\n{fetched.stdout}{fetched.stderr}")
    installed = _run(install, PIP_TIMEOUT_SECONDS)
    if installed.returncode != 0:
        raise PackageError(f"pip could not install the checker's wheels:\n{installed.stdout}{installed.stderr}")


def elf_machine(data: bytes) -> int | None:
    """The ``e_machine`` of an ELF file's header (little-endian, as on both Lambda machines), or None if not ELF."""
    if len(data) < 20 or not data.startswith(b"\x7fELF"):
        return None
    return int.from_bytes(data[18:20], "little")


def foreign_native_code(files: Mapping[str, bytes], architecture: str = build.CHECKER_ARCHITECTURE) -> list[str]:
    """The files that are native code for another machine than the Lambda architecture's."""
    wanted = LAMBDA_PLATFORMS[architecture][2]
    return sorted(name for name, data in files.items() if elf_machine(data) not in (None, wanted))


def write_checker_zip(site: Path, archive: Path, architecture: str = build.CHECKER_ARCHITECTURE) -> list[str]:
    """Write ``archive`` from Vigil's sources and the checker's distributions in ``site``; returns its names.

    Refuses native code built for another machine: the worker would fail to import it in every region.
    """
    sources, third_party = checker_files(dist_infos(p.name for p in site.iterdir()), lambda n: (site / n).read_text())
    missing = [name for name in third_party if not (site / name).is_file()]
    if missing:
        raise PackageError(f"{site} lacks {missing[0]}, which its distribution's RECORD lists")
    contents = {name: (ROOT / name).read_bytes() for name in sources}
    contents |= {name: (site / name).read_bytes() for name in third_party}
    foreign = foreign_native_code(contents, architecture)
    if foreign:
        raise PackageError(f"native code for another machine than {architecture}: {', '.join(foreign)}")
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in contents.items():
            executable = name in third_party and (site / name).stat().st_mode & 0o111
            zf.writestr(_entry(name, 0o100755 if executable else 0o100644), data)
    return list(contents)


def package_checker(out: Path) -> Path:
    """Build the check worker's own package beside Chalice's; returns its template's path.

    Its dependencies are resolved on their own, for the worker's architecture (arm64, where Chalice's
    ``deployment.zip`` carries x86_64 wheels).  Nothing else of the API's package goes in (no ``app.py``, API,
    accounts, alerts or Chalice).
    """
    out.mkdir(parents=True, exist_ok=True)
    archive = out / build.CHECKER_CODE_URI
    with tempfile.TemporaryDirectory(prefix="checker-site-") as site:
        install_checker_requirements(Path(site))
        write_checker_zip(Path(site), archive)
    template = json.loads(build.CHECKER_OUTPUT.read_text())
    # Relative to the template's directory, which is how `aws cloudformation package` resolves it.
    template["Resources"][build.CHECKER_FUNCTION]["Properties"]["CodeUri"] = archive.name
    checker = out / "checker.json"
    checker.write_text(json.dumps(template, indent=2) + "\n")
    return checker


def lint(template: Path) -> str:
    """cfn-lint the template; returns its report, raises on any finding (errors, warnings and informational
    findings alike: a stateful resource's deletion policy, a queue's retention, stated rather than defaulted)."""
    result = _run([_tool("cfn-lint"), "--include-checks", "I", "--", str(template)], LINT_TIMEOUT_SECONDS)
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
        'SupportEmail="$SUPPORT_EMAIL"',
        'AlarmEmail="${ALARM_EMAIL:-}"',
        'SmsSpendAlarmUsd="$SMS_SPEND_ALARM_USD"',
        'StripePricePro="$STRIPE_PRICE_PRO"',
        'StripePriceEnterprise="$STRIPE_PRICE_ENTERPRISE"',
        f"LogLevel={shlex.quote(env.get('LOG_LEVEL', 'INFO'))}",
    ]
    return [
        f'aws cloudformation package --region "$HOME_REGION" --template-file {template}/sam.json'
        f' --s3-bucket "$ARTIFACT_BUCKET" --output-template-file {template}/packaged.json',
        f'aws cloudformation deploy --region "$HOME_REGION" --template-file {template}/packaged.json'
        ' --s3-bucket "$ARTIFACT_BUCKET"'  # the packaged template is over the 51,200 bytes sent inline
        f" --stack-name {prefix.rstrip('-')}"
        " --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND"
        f" --parameter-overrides {' '.join(overrides)}"
        f" --tags {stack_tags(stage, 'main')}",
    ]


def bootstrap_commands(stage: str) -> list[str]:
    """Once per region, before the first deploy: the artifacts bucket of the home region (``$ARTIFACT_BUCKET``) and
    of each check region (``$ARTIFACT_BUCKET-<region>``), from ``infra/bootstrap.json``."""
    template = build.BOOTSTRAP_OUTPUT.relative_to(ROOT)
    prefix = stage_environment(stage)["TABLE_PREFIX"]
    home = (
        f'aws cloudformation deploy --region "$HOME_REGION" --template-file {template}'
        f' --stack-name {prefix}artifacts --parameter-overrides BucketName="$ARTIFACT_BUCKET"'
        f" --tags {stack_tags(stage, 'artifacts')}"
    )
    return [home] + [
        f"aws cloudformation deploy --region {shlex.quote(region)} --template-file {template}"
        f' --stack-name {prefix}artifacts-{region} --parameter-overrides BucketName="$ARTIFACT_BUCKET-{region}"'
        f" --tags {stack_tags(stage, 'artifacts')}"
        for region in check_regions(stage)
    ]


def stack_tags(stage: str, part: str) -> str:
    """The tags a stack gives every resource it makes that takes tags: whose it is, which stage, which part (costs
    and ownership read by tag in Cost Explorer and the console)."""
    return f"app=vigil stage={shlex.quote(stage)} part={part}"


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
            f' --s3-bucket "$ARTIFACT_BUCKET-{region}"'
            f" --stack-name {prefix}checker"
            " --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND"
            f" --parameter-overrides {' '.join(overrides)}"
            f" --tags {stack_tags(stage, 'checker')}",
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
        "\nTo deploy (see docs/deploy.md; HOME_REGION, APP_URL, EMAIL_FROM, SUPPORT_EMAIL, ARTIFACT_BUCKET,"
        " SMS_SPEND_ALARM_USD, STRIPE_PRICE_PRO, STRIPE_PRICE_ENTERPRISE and optionally ALARM_EMAIL set):"
    )
    print("\n0. Once per region: the artifacts buckets (skip those that exist):\n")
    for command in bootstrap_commands(args.stage):
        print(f"  {command}\n")
    print("\n1. The check worker, one stack per check region (each needs its bucket, $ARTIFACT_BUCKET-<region>):\n")
    for command in checker_deploy_commands(args.stage, out):
        print(f"  {command}\n")
    print("2. The main stack, in the home region:\n")
    for command in deploy_commands(args.stage, out):
        print(f"  {command}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
