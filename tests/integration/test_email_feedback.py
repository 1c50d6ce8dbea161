"""Issue 18: SES's bounce and complaint events, published to the email events topic as SES would, reach the email
feedback handler through the local stack's queue; the addresses are suppressed for alert email and shown on the
channel."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from chalicelib.alerts import suppressions
from chalicelib.alerts.kinds.base import SUPPRESSED
from chalicelib.alerts.kinds.email import Email, EmailContent
from chalicelib.alerts.models import SuppressionModel
from chalicelib.aws import names
from chalicelib.aws.clients import client
from chalicelib.clock import utcnow
from chalicelib.local import stack
from chalicelib.local.loop import EventLoop
from tests.factories import create_channel


@pytest.fixture
def loop(app, aws) -> Iterator[EventLoop]:
    event_loop = EventLoop(aws.aws_region, retry_seconds=0.1, wall_clock=False)
    event_loop.add_chalice_app(app, aws, new_tables=[])
    stack.register(event_loop)
    event_loop.start()
    yield event_loop
    stack.register(None)
    event_loop.stop()


def publish(settings, event: dict) -> None:
    """What SES's event publishing sends to the configuration set's SNS destination."""
    sns = client("sns")
    topic = next(
        t["TopicArn"]
        for t in sns.list_topics()["Topics"]
        if t["TopicArn"].endswith(":" + names.email_events_topic(settings))
    )
    sns.publish(TopicArn=topic, Message=json.dumps(event))


def bounce(address: str, kind: str = "Permanent") -> dict:
    return {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": kind,
            "bounceSubType": "General" if kind == "Permanent" else "MailboxFull",
            "bouncedRecipients": [{"emailAddress": address, "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
            "timestamp": "2026-12-06T22:00:00.000Z",
        },
        "mail": {"destination": [address], "messageId": "0100-abc"},
    }


def complaint(address: str) -> dict:
    return {
        "eventType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": address}], "complaintFeedbackType": "abuse"},
        "mail": {"destination": [address], "messageId": "0100-def"},
    }


def test_a_hard_bounce_and_a_complaint_suppress_their_addresses_and_show_on_the_channel(api, alice, loop, aws):
    channel = create_channel(
        api, config={"addresses": ["ops@example.com", "Gone@Example.com", "angry@example.com", "full@example.com"]}
    )

    publish(aws, bounce("gone@example.com"))
    publish(aws, complaint("angry@example.com"))
    publish(aws, bounce("full@example.com", kind="Transient"))  # a full mailbox: tried again next time
    assert loop.drain(10)

    shown = api.get(f"/v1/alert-channels/{channel['id']}").json["suppressed_addresses"]
    assert [(s["address"], s["reason"]) for s in shown] == [
        ("gone@example.com", "bounce"),
        ("angry@example.com", "complaint"),
    ]
    assert "550 5.1.1" in shown[0]["detail"]
    listed = api.get("/v1/alert-channels").json["data"][0]["suppressed_addresses"]
    assert [s["address"] for s in listed] == ["gone@example.com", "angry@example.com"]
    assert not any(True for _ in SuppressionModel.query("full@example.com"))


def test_alert_email_leaves_suppressed_addresses_out_and_is_not_retried_when_none_is_left(aws, outbox):
    suppressions.suppress("gone@example.com", suppressions.BOUNCE, "General", utcnow())
    message = EmailContent("[Vigil] Homepage is down", "down\n", "<p>down</p>")

    sent = Email().send(message, {"addresses": ["ops@example.com", "gone@example.com"]}, "dlv_1", utcnow())

    assert (sent.ok, sent.reached) == (True, ("ops@example.com",))
    assert outbox.to("gone@example.com") == []
    alone = Email().send(message, {"addresses": ["gone@example.com"]}, "dlv_2", utcnow())
    assert (alone.ok, alone.error, alone.retryable) == (False, SUPPRESSED, False)
    assert outbox.to("gone@example.com") == []


def test_a_complaint_is_not_turned_back_into_a_bounce_and_bad_messages_are_dropped(api, alice, loop, aws):
    publish(aws, complaint("angry@example.com"))
    publish(aws, bounce("angry@example.com"))
    sqs = client("sqs")
    url = sqs.get_queue_url(QueueName=names.email_events_queue(aws))["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="not json")
    sqs.send_message(
        QueueUrl=url, MessageBody=json.dumps({"Type": "Notification", "Message": json.dumps(bounce("x@example.com"))})
    )
    assert loop.drain(10)

    assert SuppressionModel.get("angry@example.com").reason == "complaint"
    assert SuppressionModel.get("x@example.com").reason == "bounce"  # an SNS envelope (not raw) is read too
    dlq = sqs.get_queue_url(QueueName=names.dead_letter_queue(names.email_events_queue(aws)))["QueueUrl"]
    assert "Messages" not in sqs.receive_message(QueueUrl=dlq)


def test_a_delivery_whose_every_address_is_suppressed_is_recorded_suppressed_not_failed(api, alice):
    from chalicelib.alerts import attempts

    channel = create_channel(api, config={"addresses": ["gone@example.com"]})
    suppressions.suppress("gone@example.com", suppressions.BOUNCE, "General", utcnow())

    delivery = attempts.send_test(alice["team"]["id"], channel["id"], utcnow())

    assert delivery.status == "suppressed"


def test_a_recipient_named_with_a_display_name_is_suppressed_by_its_address(aws):
    complained = {"complainedRecipients": [{"emailAddress": "Gone Person <Gone@Example.com>"}]}
    assert suppressions.apply_event({"eventType": "Complaint", "complaint": complained}, utcnow()) == [
        "gone@example.com"
    ]
    assert suppressions.of(["gone@example.com"])


def test_a_bounced_address_can_be_sent_to_again_once_a_day_and_a_complaint_only_by_support(api, alice):
    channel = create_channel(api, config={"addresses": ["gone@example.com", "angry@example.com", "ok@example.com"]})
    suppressions.suppress("gone@example.com", suppressions.BOUNCE, "General", utcnow())
    suppressions.suppress("angry@example.com", suppressions.COMPLAINT, "abuse", utcnow())
    path = f"/v1/alert-channels/{channel['id']}/unsuppress"

    r = api.post(path, {"address": "Gone@Example.com"})
    assert r.status == 200
    assert [s["address"] for s in r.json["suppressed_addresses"]] == ["angry@example.com"]
    assert not any(True for _ in SuppressionModel.query("gone@example.com"))

    suppressions.suppress("gone@example.com", suppressions.BOUNCE, "General", utcnow())  # it bounced again
    again = api.post(path, {"address": "gone@example.com"})
    assert (again.status, again.json["code"]) == (429, "rate_limited")
    assert 0 < int(again.headers["retry-after"]) <= 86400
    assert SuppressionModel.get("gone@example.com").reason == "bounce"  # still suppressed
    complained = api.post(path, {"address": "angry@example.com"})
    assert (complained.status, complained.json["code"]) == (409, "conflict")
    assert SuppressionModel.get("angry@example.com").reason == "complaint"
    for address in ("ok@example.com", "stranger@example.com"):  # not suppressed; not this channel's
        assert api.post(path, {"address": address}).status == 422


def test_another_teams_channel_or_a_viewer_cannot_lift_a_suppression(api, alice, charlie, teammate):
    channel = create_channel(api, config={"addresses": ["gone@example.com"]})
    suppressions.suppress("gone@example.com", suppressions.BOUNCE, "General", utcnow())
    viewer = teammate("vera@example.com", role="viewer")
    path = f"/v1/alert-channels/{channel['id']}/unsuppress"

    assert api.post(path, {"address": "gone@example.com"}, token=charlie["access_token"]).status == 404
    r = api.post(path, {"address": "gone@example.com"}, token=viewer["access_token"])
    assert (r.status, r.json["code"]) == (403, "forbidden")
    assert SuppressionModel.get("gone@example.com").reason == "bounce"
    assert api.post(path, {"address": "gone@example.com"}).status == 200  # as its owner, the same request lifts it
    assert not any(True for _ in SuppressionModel.query("gone@example.com"))
