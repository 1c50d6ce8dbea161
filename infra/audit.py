"""``make lint``'s dependency audit: no pinned dependency with a known vulnerability, or each one waived with a reason.

1. Read the pins (``name==version``) of ``requirements.txt`` (the functions' packages) and ``requirements-dev.txt``
   (the tools and tests), every package installed with them (what they pull in: ``botocore``, ``cryptography``,
   ... are no one's pin but ship all the same), and the waivers of ``audit-waivers.txt`` (``ID reason``, a reason
   required).
2. Run ``pip-audit`` on the pins, against its default service: the package index's JSON API, release by release.
3. The index this project's machines and CI reach answers that API for a project, not for one of its releases: pip-audit
   then skips every pin ("not found").  Each skipped pin is looked up as a project instead, whose answer carries the
   advisories of its latest release:

   - a pin of the latest release: those advisories are the pin's own, and each one fails the audit;
   - an older pin: an advisory the latest release still has (nothing fixes it) is assumed to be the pin's too and
     fails the audit; one fixed before the latest release cannot be seen from here, so the pin is listed as
     checked only against the latest release's advisories (bump it to have it audited whole).

4. Fail on any finding not waived, and on a waiver that names no finding (a stale waiver hides the next one).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import urllib3

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")
WAIVERS = ROOT / "audit-waivers.txt"
JSON_API = "https://pypi.org/pypi"  # the service pip-audit itself asks
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)")


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    ids: tuple[str, ...]  # the advisory's id first, then its aliases (CVE, GHSA, PYSEC)
    fixed_in: tuple[str, ...]

    def line(self) -> str:
        fix = f", fixed in {', '.join(self.fixed_in)}" if self.fixed_in else ", no fix yet"
        return f"{self.package}=={self.version}: {' / '.join(self.ids)}{fix}"


def canonical(name: str) -> str:
    """A project's name as the index compares them (PEP 503): ``PyJWT``, ``typing_extensions`` → ``pyjwt``, ..."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(root: Path = ROOT) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in REQUIREMENTS:
        for line in (root / name).read_text().splitlines():
            match = PIN.match(line.strip())
            if match:
                found[canonical(match.group(1))] = match.group(2)
    return found


def installed() -> dict[str, str]:
    """Every package of the environment this runs in (``make lint`` runs it in ``.venv``): the pins and all they
    pulled in."""
    from importlib.metadata import distributions

    return {canonical(d.metadata["Name"]): d.version for d in distributions() if d.metadata["Name"]}


def waivers(path: Path = WAIVERS) -> dict[str, str]:
    """Advisory id → why it is waived, from ``ID reason`` lines (``#`` starts a comment)."""
    found: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1) if path.exists() else ():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        advisory, _, reason = text.partition(" ")
        if not reason.strip():
            raise SystemExit(f"{path.name}:{number}: {advisory} is waived without a reason")
        found[advisory] = reason.strip()
    return found


def pip_audit(pinned: dict[str, str]) -> tuple[list[Finding], list[str]]:
    """pip-audit's findings, and the packages it skipped."""
    requirements = "".join(f"{name}=={version}\n" for name, version in sorted(pinned.items()))
    command = [sys.executable, "-m", "pip_audit", "--requirement", "/dev/stdin", "--no-deps", "--disable-pip"]
    command += ["--format", "json", "--progress-spinner", "off"]
    done = subprocess.run(  # noqa: S603 - our own interpreter and fixed arguments
        command, input=requirements, capture_output=True, text=True, timeout=300, check=False, cwd=ROOT
    )
    if done.returncode not in (0, 1):  # 1: it found something
        raise SystemExit(f"pip-audit failed ({done.returncode}):\n{done.stderr}")
    findings, skipped = [], []
    for dependency in json.loads(done.stdout)["dependencies"]:
        name = canonical(dependency["name"])
        if "skip_reason" in dependency:
            skipped.append(name)
        for vuln in dependency.get("vulns", []):
            ids = (vuln["id"], *vuln.get("aliases", []))
            findings.append(Finding(name, dependency["version"], ids, tuple(vuln.get("fix_versions", []))))
    return findings, skipped


def latest_release(http: urllib3.PoolManager, api: str, name: str) -> tuple[str, list[dict]]:
    """The project's latest release and that release's advisories (withdrawn ones left out)."""
    response = http.request("GET", f"{api}/{name}/json", timeout=15, retries=2)
    if response.status != 200:
        raise SystemExit(f"cannot audit {name}: the package index answered {response.status}")
    project = json.loads(response.data)
    if not isinstance(project.get("vulnerabilities"), list):  # an index that strips advisories says nothing is wrong
        raise SystemExit(f"cannot audit {name}: the package index gives no advisories for it")
    return project["info"]["version"], [v for v in project["vulnerabilities"] if not v.get("withdrawn")]


def by_project(pinned: dict[str, str], skipped: list[str], api: str = JSON_API) -> tuple[list[Finding], list[str]]:
    """Findings for the pins pip-audit skipped, and the older pins checked only against their latest release."""
    http = urllib3.PoolManager(maxsize=8)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = dict(zip(skipped, pool.map(lambda name: latest_release(http, api, name), skipped), strict=True))
    findings, partial = [], []
    for name in skipped:
        version = pinned[name]
        latest, advisories = answers[name]
        if version != latest:
            partial.append(f"{name}=={version} (latest {latest})")
            advisories = [a for a in advisories if not a.get("fixed_in")]
        for advisory in advisories:
            ids = (advisory["id"], *advisory.get("aliases", []))
            findings.append(Finding(name, version, ids, tuple(advisory.get("fixed_in") or ())))
    return findings, partial


def distinct(findings: list[Finding]) -> list[Finding]:
    """One finding per advisory: an index lists one under each of its ids (PYSEC-…, then GHSA-… aliasing it)."""
    seen: dict[str, set[str]] = {}
    kept = []
    for finding in findings:
        known = seen.setdefault(finding.package, set())
        if not known & set(finding.ids):
            kept.append(finding)
        known.update(finding.ids)
    return kept


def main() -> int:
    pinned, waived = {**installed(), **pins()}, waivers()
    findings, skipped = pip_audit(pinned)
    more, partial = by_project(pinned, skipped)
    findings = distinct(findings + more)
    open_ = [f for f in findings if not waived.keys() & set(f.ids)]
    stale = [w for w in waived if not any(w in f.ids for f in findings)]
    print(f"audited {len(pinned)} packages: {len(pinned) - len(skipped)} by release, {len(skipped)} by project")
    if partial:
        print("checked only against the latest release's advisories (older pins): " + ", ".join(partial))
    for finding in findings:
        reason = next((waived[i] for i in finding.ids if i in waived), None)
        print(("waived: " if reason else "VULNERABLE: ") + finding.line() + (f" — {reason}" if reason else ""))
    for advisory in stale:
        print(f"STALE WAIVER: {advisory} names no finding; remove it from {WAIVERS.name}")
    return 1 if open_ or stale else 0


if __name__ == "__main__":
    sys.exit(main())
