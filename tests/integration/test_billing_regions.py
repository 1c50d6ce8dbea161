"""Regions per monitor under the plans, with four regions configured: the free plan's three by default, more is
402; a pro team has every configured region."""

from __future__ import annotations

import pytest

from tests.factories import create_monitor
from tests.integration.test_billing import deliver, event, subscription


@pytest.fixture
def settings():
    from tests.support import make_test_settings

    return make_test_settings(CHECK_REGIONS="us-east-1,eu-west-1,ap-southeast-1,sa-east-1")


def test_a_free_monitor_has_three_regions_by_default_and_more_is_402(api, alice):
    m = create_monitor(api, url="https://1.1.1.1/")
    assert m["regions"] == ["us-east-1", "eu-west-1", "ap-southeast-1"]
    four = ["us-east-1", "eu-west-1", "ap-southeast-1", "sa-east-1"]
    r = api.post("/v1/monitors", {"name": "x", "url": "https://1.1.1.1/", "regions": four})
    assert (r.status, r.json["limit"], r.json["allowed"], r.json["used"]) == (402, "regions", 3, 4)
    r = api.patch(f"/v1/monitors/{m['id']}", {"regions": four})
    assert (r.status, r.json["code"], r.json["limit"]) == (402, "plan_limit_exceeded", "regions")
    assert api.get(f"/v1/monitors/{m['id']}").json["regions"] == four[:3]  # unchanged
    deliver(api, event("customer.subscription.created", subscription(alice["team"]["id"])))
    assert api.patch(f"/v1/monitors/{m['id']}", {"regions": four}).json["regions"] == four
    assert create_monitor(api, url="https://1.1.1.2/")["regions"] == four  # pro: every configured region
