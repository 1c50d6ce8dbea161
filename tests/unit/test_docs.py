"""The docs name real code: every module path docs/architecture.md and docs/faq.md mention exists, and the FAQ's
defaults are the code's."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATH = re.compile(r"`((?:chalicelib|functions|infra)/[\w/.*-]+)`|((?:chalicelib|functions)/[\w/]+\.py)")


def mentioned(doc: str) -> set[str]:
    text = (ROOT / "docs" / doc).read_text()
    return {a or b for a, b in PATH.findall(text)}


def test_every_module_the_architecture_page_names_exists():
    paths = mentioned("architecture.md")
    assert len(paths) >= 15
    for path in paths:
        if "*" in path:
            assert list(ROOT.glob(path)), path
        else:
            assert (ROOT / path).exists(), path


def test_the_faq_states_the_codes_defaults():
    from chalicelib.checks.http import USER_AGENT

    faq = (ROOT / "docs" / "faq.md").read_text()
    assert USER_AGENT in faq
    for topic in (
        "Why was I alerted",
        "not* alerted",
        "quorum",
        "maintenance window",
        "destination_not_allowed",
        "IP addresses",
        "verify a webhook",
        "API key",
        "downgrade",
    ):
        assert topic in faq, topic
