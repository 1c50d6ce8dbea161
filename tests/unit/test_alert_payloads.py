"""Each channel kind's exact output for a fixed incident; the Standard Webhooks signature; quiet hours; backoff."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from chalicelib.alerts.kinds.chat import discord_message, slack_message, teams_message
from chalicelib.alerts.kinds.email import render as email
from chalicelib.alerts.kinds.pagerduty import pagerduty_event
from chalicelib.alerts.kinds.sms import render as sms
from chalicelib.alerts.kinds.webhook import body_of, signature
from chalicelib.alerts.notification import Item, Notification, public_url
from chalicelib.alerts.quiet_hours import quiet_until
from chalicelib.alerts.retry import backoff_seconds, retry_after_seconds
from chalicelib.users.service import QuietHours

AT = datetime(2026, 11, 30, 14, 2, tzinfo=UTC)
MONITOR = {
    "id": "mon_1",
    "name": "Checkout API",
    "url": "https://shop.example.com/health?token=********",
    "method": "GET",
    "regions": ["us-east-1", "eu-west-1", "ap-southeast-1"],
    "status": "down",
    "tags": ["prod"],
}
INCIDENT = {
    "id": "inc_1",
    "status": "open",
    "cause": "HTTP 503",
    "started_at": "2026-11-30T14:02:00Z",
    "acknowledged_at": None,
    "resolved_at": None,
    "affected_regions": ["us-east-1", "eu-west-1"],
    "url": "https://app.vigil.test/incidents/inc_1",
}
OPENED = Notification("incident.opened", AT, (Item(MONITOR, INCIDENT),), "https://app.vigil.test")
LINK = "https://app.vigil.test/incidents/inc_1"
DETAIL = "HTTP 503 · us-east-1, eu-west-1"


def test_webhook_body():
    assert json.loads(body_of(OPENED)) == {
        "type": "incident.opened",
        "timestamp": "2026-11-30T14:02:00Z",
        "data": {"incident": INCIDENT, "monitor": MONITOR},
    }
    assert body_of(OPENED).startswith(b'{"type":"incident.opened","timestamp":"2026-11-30T14:02:00Z","data":{')


def test_slack_block_kit():
    assert slack_message(OPENED) == {
        "text": "Checkout API is down: HTTP 503",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Checkout API is down: HTTP 503", "emoji": True}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*Checkout API*\n{DETAIL}"}]},
            {
                "type": "actions",
                "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open in Vigil"}, "url": LINK}],
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "Vigil · incident.opened"}]},
        ],
    }


def test_slack_escapes_what_slack_would_read_as_markup():
    tricky = replace(OPENED, items=(Item({**MONITOR, "name": "<!channel> & co"}, INCIDENT),))
    assert slack_message(tricky)["blocks"][1]["fields"][0]["text"].startswith("*&lt;!channel&gt; &amp; co*")


def test_discord_embed():
    assert discord_message(OPENED) == {
        "username": "Vigil",
        "embeds": [
            {
                "title": "Checkout API is down: HTTP 503",
                "url": LINK,
                "color": 0xD92D20,
                "fields": [{"name": "Checkout API", "value": DETAIL, "inline": False}],
                "timestamp": "2026-11-30T14:02:00Z",
                "footer": {"text": "Vigil"},
            }
        ],
        "allowed_mentions": {"parse": []},
    }


def test_teams_adaptive_card():
    assert teams_message(OPENED) == {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {
                            "type": "TextBlock",
                            "size": "Large",
                            "weight": "Bolder",
                            "wrap": True,
                            "text": "Checkout API is down: HTTP 503",
                        },
                        {"type": "FactSet", "facts": [{"title": "Checkout API", "value": DETAIL}]},
                    ],
                    "actions": [{"type": "Action.OpenUrl", "title": "Open in Vigil", "url": LINK}],
                },
            }
        ],
    }


def test_pagerduty_trigger_acknowledge_resolve_share_the_incident_as_dedup_key():
    key = "R0UTINGKEY0123456789abcd"
    assert pagerduty_event(OPENED, key) == {
        "routing_key": key,
        "event_action": "trigger",
        "dedup_key": "inc_1",
        "payload": {
            "summary": "Checkout API is down: HTTP 503",
            "source": "https://shop.example.com/health?token=********",
            "severity": "critical",
            "timestamp": "2026-11-30T14:02:00Z",
            "component": "Checkout API",
            "class": "HTTP 503",
            "custom_details": {
                "monitor_id": "mon_1",
                "incident_id": "inc_1",
                "affected_regions": ["us-east-1", "eu-west-1"],
                "started_at": "2026-11-30T14:02:00Z",
            },
        },
        "links": [{"href": LINK, "text": "Open in Vigil"}],
        "client": "Vigil",
        "client_url": LINK,
    }
    for kind, action in (("incident.acknowledged", "acknowledge"), ("incident.resolved", "resolve")):
        assert pagerduty_event(replace(OPENED, type=kind), key) == {
            "routing_key": key,
            "event_action": action,
            "dedup_key": "inc_1",
        }


def test_email_text_and_html():
    message = email(OPENED)
    assert message.subject == "[Vigil] Checkout API is down: HTTP 503"
    assert message.text == (
        "Checkout API is down: HTTP 503\n\n"
        f"- Checkout API: {DETAIL}\n\n"
        f"Open in Vigil: {LINK}\n\n"
        "You receive this because of your team's alert settings.\n"
    )
    assert message.html == (
        '<!doctype html><html lang="en"><body style="font-family:system-ui,sans-serif;color:#111">'
        '<h1 style="font-size:18px">Checkout API is down: HTTP 503</h1>'
        f"<ul><li><strong>Checkout API</strong>: {DETAIL}</li></ul>"
        f'<p><a href="{LINK}">Open in Vigil</a></p>'
        '<p style="color:#555;font-size:12px">You receive this because of your team\'s alert settings.</p>'
        "</body></html>"
    )
    hostile = replace(OPENED, items=(Item({**MONITOR, "name": "<script>x</script>"}, INCIDENT),))
    assert "<script>" not in email(hostile).html


def test_sms_is_one_short_text():
    assert sms(OPENED) == "Vigil: Checkout API is down: HTTP 503"
    many = replace(OPENED, items=tuple(Item({**MONITOR, "name": f"Service number {i}"}, INCIDENT) for i in range(20)))
    text = sms(many)
    assert text.startswith("Vigil: 20 monitors are down: Service number 0, Service number 1")
    assert len(text) <= 160


def test_a_grouped_notification_lists_every_monitor():
    items = tuple(
        Item({**MONITOR, "id": f"mon_{i}", "name": f"API {i}"}, {**INCIDENT, "id": f"inc_{i}"}) for i in range(3)
    )
    grouped = replace(OPENED, items=items)
    assert grouped.headline() == "3 monitors are down: API 0, API 1, API 2"
    assert [f["text"].split("\n")[0] for f in slack_message(grouped)["blocks"][1]["fields"]] == [
        "*API 0*",
        "*API 1*",
        "*API 2*",
    ]
    assert email(grouped).text.count("\n- API ") == 3
    assert grouped.link() == "https://app.vigil.test/incidents"


def test_recovered_and_updated_headlines():
    resolved = {**INCIDENT, "status": "resolved", "resolved_at": "2026-11-30T14:11:00Z"}
    assert replace(OPENED, type="incident.resolved", items=(Item(MONITOR, resolved),)).headline() == (
        "Checkout API recovered after 9 min"
    )
    note = replace(OPENED, type="incident.updated", update={"kind": "note", "text": "Rolling back", "by": "Ada"})
    assert note.headline() == "Checkout API: note from Ada"
    assert json.loads(body_of(note))["data"]["update"] == {"kind": "note", "text": "Rolling back", "by": "Ada"}


def test_the_standard_webhooks_test_vector():
    assert (
        signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_a_monitor_url_shows_no_credential_query_values():
    assert public_url("https://x.example/a?token=abc&page=2&api_key=k&sig=s") == (
        "https://x.example/a?token=********&page=2&api_key=********&sig=********"
    )
    assert public_url("https://x.example/a") == "https://x.example/a"


def member(tz: str, start: str | None = "22:00", end: str | None = "07:00") -> SimpleNamespace:
    return SimpleNamespace(timezone=tz, quiet_hours=QuietHours(start, end) if start and end else None)


@pytest.mark.parametrize(
    ("tz", "now", "until"),
    [
        # 13:30 UTC is 22:30 in Tokyo (the next day there, too): quiet until 07:00 Tokyo = 22:00 UTC
        ("Asia/Tokyo", datetime(2026, 12, 1, 13, 30, tzinfo=UTC), datetime(2026, 12, 1, 22, 0, tzinfo=UTC)),
        # 23:30 UTC is 08:30 in Tokyo: not quiet
        ("Asia/Tokyo", datetime(2026, 12, 1, 23, 30, tzinfo=UTC), None),
        # after midnight local: quiet until 07:00 the same local day
        ("America/New_York", datetime(2026, 12, 1, 8, 0, tzinfo=UTC), datetime(2026, 12, 1, 12, 0, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 12, 1, 12, 0, tzinfo=UTC), None),  # 07:00 sharp: over
        # the night the clocks go forward in New York: 07:00 EDT is 11:00 UTC
        ("America/New_York", datetime(2027, 3, 14, 4, 0, tzinfo=UTC), datetime(2027, 3, 14, 11, 0, tzinfo=UTC)),
    ],
)
def test_quiet_hours_end_in_the_members_own_time_zone(tz, now, until):
    assert quiet_until(member(tz), now) == until  # type: ignore[arg-type]


def test_no_quiet_hours_means_never_quiet():
    assert quiet_until(member("UTC", None, None), datetime(2026, 12, 1, 23, 0, tzinfo=UTC)) is None  # type: ignore[arg-type]
    day = member("UTC", "09:00", "17:00")
    assert quiet_until(day, datetime(2026, 12, 1, 12, 0, tzinfo=UTC)) == datetime(2026, 12, 1, 17, 0, tzinfo=UTC)  # type: ignore[arg-type]


def test_backoff_doubles_with_jitter_and_retry_after_is_read_both_ways():
    rng = random.Random(7)
    for attempt, (low, high) in enumerate([(15, 30), (30, 60), (60, 120), (120, 240), (240, 480)], start=1):
        for _ in range(50):
            assert low <= backoff_seconds(attempt, rng) <= high
    now = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds("Mon, 30 Nov 2026 14:02:00 GMT", now) == 120
    assert retry_after_seconds("soon", now) == 0
    assert retry_after_seconds(None, now + timedelta(0)) == 0


def test_a_secret_in_a_response_is_redacted_however_it_comes_back() -> None:
    from chalicelib.alerts.http import redact
    from chalicelib.alerts.kinds import KINDS

    token = "tok0123456789abcdefghij"
    cut = redact("x" * 991 + " unknown subscription " + token[:12], [token])  # the 1 KB excerpt cut it
    assert "tok0" not in cut
    assert cut.endswith("[redacted]")
    slack = KINDS["slack"].secrets(
        {"webhook_url": "https://hooks.slack.com/services/T0001ABC/B0001ABC/XXXXXXXXXXXXXXXXXXXXXXXX"}
    )
    echoed = '{"path":"\\/services\\/T0001ABC\\/B0001ABC\\/XXXXXXXXXXXXXXXXXXXXXXXX"}'  # slashes JSON-escaped
    assert "XXXXXXXX" not in redact(echoed, slack)
    assert "XXXXXXXX" not in redact("token XXXXXXXXXXXXXXXXXXXXXXXX is revoked", slack)  # the token alone
    teams = KINDS["teams"].secrets(
        {
            "webhook_url": "https://prod-00.westus.logic.azure.com/workflows/0a1b2c3d/triggers/manual/paths/invoke?sig=s3cr3tsig123"
        }
    )
    assert "s3cr3tsig123" not in redact("bad sig s3cr3tsig123", teams)
    assert "%2Fservices%2F" not in redact("echo %2Fservices%2FT0001ABC%2FB0001ABC%2FXXXXXXXXXXXXXXXXXXXXXXXX", slack)
