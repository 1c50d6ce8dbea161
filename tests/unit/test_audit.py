"""make lint's dependency audit (infra/audit.py) where the package index answers for projects, not releases: a
loopback index stands in for it."""

from __future__ import annotations

import pytest

from infra import audit

CRYPTO_FLAW = {"id": "PYSEC-2018-97", "aliases": ["CVE-2018-6594", "GHSA-6528-wvf6-f6qg"], "fixed_in": []}
CRYPTO_FLAW_AGAIN = {"id": "GHSA-6528-wvf6-f6qg", "aliases": ["CVE-2018-6594", "PYSEC-2018-97"], "fixed_in": []}
FIXED = {"id": "GHSA-fixd-0000-0000", "aliases": ["CVE-2026-0001"], "fixed_in": ["2.0.0"]}
WITHDRAWN = {"id": "GHSA-gone-0000-0000", "aliases": [], "fixed_in": [], "withdrawn": "2026-01-01T00:00:00Z"}


@pytest.fixture
def index(httpserver):
    def project(name: str, latest: str, *advisories: dict) -> None:
        body = {"info": {"version": latest}, "vulnerabilities": list(advisories)}
        httpserver.expect_request(f"/pypi/{name}/json").respond_with_json(body)

    project.url = httpserver.url_for("/pypi")
    return project


def test_a_pin_of_the_latest_release_fails_on_each_of_its_advisories_once(index):
    index("pycrypto", "2.6.1", CRYPTO_FLAW, CRYPTO_FLAW_AGAIN, WITHDRAWN)

    findings, partial = audit.by_project({"pycrypto": "2.6.1"}, ["pycrypto"], index.url)

    assert [f.line() for f in audit.distinct(findings)] == [
        "pycrypto==2.6.1: PYSEC-2018-97 / CVE-2018-6594 / GHSA-6528-wvf6-f6qg, no fix yet"
    ]
    assert partial == []


def test_an_older_pin_fails_on_what_nothing_fixes_and_is_said_to_be_checked_only_against_the_latest(index):
    index("oldlib", "2.1.0", CRYPTO_FLAW, FIXED)
    index("newlib", "1.0.0")

    findings, partial = audit.by_project({"oldlib": "1.0.0", "newlib": "1.0.0"}, ["oldlib", "newlib"], index.url)

    assert [f.ids[0] for f in findings] == ["PYSEC-2018-97"]  # the fixed one may not be this pin's: unknown here
    assert partial == ["oldlib==1.0.0 (latest 2.1.0)"]


def test_pins_come_from_both_requirement_files_with_extras_and_comments(tmp_path):
    (tmp_path / "requirements.txt").write_text("# runtime\nurllib3==2.8.0\nPyJWT==2.15.1  # tokens\n")
    (tmp_path / "requirements-dev.txt").write_text("-r requirements.txt\nmoto[server]==5.2.5\n")

    assert audit.pins(tmp_path) == {"urllib3": "2.8.0", "pyjwt": "2.15.1", "moto": "5.2.5"}


def test_what_the_pins_pull_in_is_audited_too():
    # found by a fresh-eyes review of issue 19: botocore, cryptography and 13 more shipped unaudited
    everything = audit.installed()

    assert {"botocore", "cryptography", "urllib3", "pyjwt", "google-re2"} <= set(everything)
    assert everything["pyjwt"] == audit.pins()["pyjwt"]  # the environment is the pins'


def test_an_index_that_gives_no_advisories_stops_the_audit(httpserver):
    # found by a fresh-eyes review of issue 19: a missing "vulnerabilities" read as "none"
    httpserver.expect_request("/pypi/quiet/json").respond_with_json({"info": {"version": "1.0.0"}})

    with pytest.raises(SystemExit, match="cannot audit quiet: the package index gives no advisories"):
        audit.by_project({"quiet": "1.0.0"}, ["quiet"], httpserver.url_for("/pypi"))


def test_a_waiver_without_a_reason_stops_the_audit(tmp_path):
    waivers = tmp_path / "audit-waivers.txt"
    waivers.write_text("# accepted\nGHSA-aaaa-bbbb-cccc  only the CLI uses it, never Vigil\nCVE-2026-0002\n")

    with pytest.raises(SystemExit, match="CVE-2026-0002 is waived without a reason"):
        audit.waivers(waivers)
    waivers.write_text("GHSA-aaaa-bbbb-cccc  only the CLI uses it, never Vigil\n")
    assert audit.waivers(waivers) == {"GHSA-aaaa-bbbb-cccc": "only the CLI uses it, never Vigil"}
