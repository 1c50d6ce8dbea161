"""Alerts end to end on moto and a loopback receiver: events stream → planning → the alerts queue → delivery.

Time moves with time-machine; moto's SQS honours DelaySeconds on that clock, so a retry or a group's send
becomes visible exactly when it is due.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sns.models import sns_backends
from standardwebhooks.webhooks import Webhook

from chalicelib.alerts.models import DeliveryModel
from chalicelib.aws import names
from chalicelib.aws.clients import client
from chalicelib.clock import utcnow
from chalicelib.incidents import service as incidents
from chalicelib.incidents.models import EventModel
from chalicelib.incidents.tracker import Result, apply_results
from chalicelib.settings import get_settings
from chalicelib.users.models import UserModel
from tests.events import sqs_records, stream_records
from tests.factories import create_channel, create_heartbeat, create_monitor
from tests.support import join_team, make_test_settings, on_plan, open_incident, register, run_alerts_queue, sign_up
from tests.support import recover as recover_everywhere


@pytest.fixture
def settings(httpserver):
    return make_test_settings(ALLOW_PRIVATE_TARGETS="true", PAGERDUTY_EVENTS_URL=httpserver.url_for("/pagerduty"))


@pytest.fixture
def clock() -> Iterator[Any]:
    # Forward to 5 s into the next minute (never back: tokens already issued must not be from the future).
    start = utcnow().replace(second=5, microsecond=0) + timedelta(minutes=1)
    with time_machine.travel(start, tick=True) as traveller:
        yield traveller


# ----------------------------------------------------------------------------------------------- helpers


def planned(events: list[EventModel], times: int = 1) -> None:
    """Hand the events to the alert handler as the events stream would (``times`` deliveries of the batch)."""
    from chalicelib.events.alerts import plan_records

    records = stream_records(events)
    for _ in range(times):
        assert plan_records(records) == {"batchItemFailures": []}


def pump() -> int:
    """Run every message now visible on the alerts queue (as Lambda would); returns how many ran."""
    return run_alerts_queue()


def settle(clock: Any, rounds: int = 6) -> None:
    """Pump, letting the few seconds pass that a later notification waits for an earlier one of its incident."""
    for _ in range(rounds):
        pump()
        clock.shift(timedelta(seconds=6))


@contextmanager
def new_events(subject: str) -> Iterator[list[EventModel]]:
    """The events the block adds to ``subject``'s timeline (in the list once the block is over)."""
    before = {e.key for e in EventModel.query(subject)}
    added: list[EventModel] = []
    yield added
    added.extend(e for e in EventModel.query(subject) if e.key not in before)


def outage(monitor: dict[str, Any], at: datetime) -> str:
    """Two failed minutes everywhere, ending at ``at``; the opening's events (all the new incident has) go to the
    alert handler."""
    first = at - timedelta(minutes=1)
    incident_id = open_incident(monitor["team_id"], monitor["id"], first, status_code=503, error="status_mismatch")
    planned(list(EventModel.query(incident_id)))
    return incident_id


def recover(monitor: dict[str, Any], incident_id: str, at: datetime) -> None:
    with new_events(incident_id) as resolution:
        recover_everywhere(monitor["team_id"], monitor["id"], at)
    planned(resolution)


def deliveries(channel_id: str) -> list[DeliveryModel]:
    return list(DeliveryModel.query(channel_id))


def received(httpserver, path: str = "/hook") -> list[Any]:
    return [request for request, _ in httpserver.log if request.path == path]


def alerts_to(outbox: Any, address: str) -> list[dict[str, Any]]:
    return [m for m in outbox.to(address) if m["subject"].startswith("[Vigil]")]


def verify(person: dict[str, Any], **prefs: Any) -> dict[str, Any]:
    """``person`` verified their email address and chose these notification preferences."""
    user = UserModel.get(person["user"]["id"])
    actions = [UserModel.email_verified_at.set(utcnow())]
    actions += [getattr(UserModel, name).set(value) for name, value in prefs.items()]
    user.update(actions=actions)
    return person


# ------------------------------------------------------------------------------------------------ webhooks


def test_a_signed_webhook_per_transition_verified_by_the_reference_library(api, alice, httpserver, clock):
    httpserver.expect_request("/hook", method="POST").respond_with_data("thanks, token=abcdef123456 ok")
    hook = create_channel(
        api,
        type="webhook",
        config={"url": httpserver.url_for("/hook"), "headers": {"X-Team": "ops", "Authorization": "Bearer hook-key"}},
    )
    secret = hook["secret"]
    assert secret.startswith("whsec_")
    monitor = create_monitor(
        api,
        url="https://shop.example.invalid/health?token=monitor-token",
        headers={"Authorization": "Bearer monitor-secret"},
        channel_ids=[hook["id"]],
    )
    incident_id = outage(monitor, utcnow())
    assert pump() == 1

    (request,) = received(httpserver)
    body = request.get_data()
    payload = Webhook(secret).verify(body, dict(request.headers))  # raises unless the signature holds
    assert payload["type"] == "incident.opened"
    assert payload["data"]["incident"]["id"] == incident_id
    assert payload["data"]["incident"]["cause"] == "HTTP 503"
    assert payload["data"]["monitor"]["id"] == monitor["id"]
    assert "headers" not in payload["data"]["monitor"]
    for secret_text in (b"monitor-secret", b"monitor-token", b"hook-key"):
        assert secret_text not in body
    assert request.headers["X-Team"] == "ops"
    assert request.headers["Authorization"] == "Bearer hook-key"
    (delivery,) = deliveries(hook["id"])
    assert request.headers["webhook-id"] == delivery.delivery_id

    listed = api.get(f"/v1/alert-channels/{hook['id']}/deliveries").json["data"]
    assert [(d["event"], d["status"], d["attempts"], d["response_status"]) for d in listed] == [
        ("incident.opened", "delivered", 1, 200)
    ]
    assert "abcdef123456" not in json.dumps(listed)  # the response excerpt is redacted
    assert "[redacted]" in listed[0]["log"][0]["excerpt"]

    recover(monitor, incident_id, utcnow() + timedelta(minutes=1))
    assert pump() == 1
    second = received(httpserver)[-1]
    assert Webhook(secret).verify(second.get_data(), dict(second.headers))["type"] == "incident.resolved"


def test_the_same_stream_record_three_times_is_one_delivery_per_channel(api, alice, httpserver, clock):
    httpserver.expect_request("/hook").respond_with_data("ok")
    httpserver.expect_request("/pagerduty").respond_with_json({"status": "success"}, status=202)
    hook = create_channel(api, type="webhook", config={"url": httpserver.url_for("/hook")})
    pager = create_channel(api, type="pagerduty", config={"routing_key": "R0UTINGKEY0123456789abcd"})
    monitor = create_monitor(api, url="https://shop.example.invalid/", channel_ids=[hook["id"], pager["id"]])
    incident_id = outage(monitor, utcnow())
    planned(list(EventModel.query(incident_id)), times=3)  # the same records twice more, and again
    pump()
    assert len(received(httpserver)) == 1
    assert len(received(httpserver, "/pagerduty")) == 1
    assert [len(deliveries(c["id"])) for c in (hook, pager)] == [1, 1]


def test_500_then_200_is_retried_on_schedule_then_delivered(api, alice, httpserver, clock):
    httpserver.expect_ordered_request("/hook").respond_with_data("busy", status=500)
    httpserver.expect_ordered_request("/hook").respond_with_data("ok")
    hook = create_channel(api, type="webhook", config={"url": httpserver.url_for("/hook")})
    monitor = create_monitor(api, url="https://shop.example.invalid/", channel_ids=[hook["id"]])
    incident_id = outage(monitor, utcnow())
    first_at = utcnow()
    assert pump() == 1
    (delivery,) = deliveries(hook["id"])
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("retrying", 1, 500)
    r = api.get(f"/v1/alert-channels/{hook['id']}/deliveries")
    assert [(d["status"], d["attempts"]) for d in r.json["data"]] == [("retrying", 1)]
    incidents.acknowledge(monitor["team_id"], incident_id, alice["user"]["id"], utcnow())  # between the attempts
    wait = (delivery.next_attempt_at - first_at).total_seconds()
    assert 14 <= wait <= 31  # the first backoff step: 30 s with jitter over its second half
    assert pump() == 0  # not yet
    clock.move_to(delivery.next_attempt_at + timedelta(seconds=1))
    assert pump() == 1
    (delivery,) = deliveries(hook["id"])
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("delivered", 2, 200)
    assert [entry["outcome"] for entry in delivery.log] == ["retrying", "delivered"]
    requests = received(httpserver)
    assert [r.headers["webhook-id"] for r in requests] == [delivery.delivery_id] * 2  # the same id on a retry
    # … carrying the same message: what the incident was when first sent, not what it became since
    assert requests[0].get_data() == requests[1].get_data()
    assert json.loads(requests[1].get_data())["data"]["incident"]["status"] == "open"


def test_429_with_retry_after_is_not_retried_before_it(api, httpserver, clock):
    sign_up(api, "una@example.com", verified=False)  # no email of her own: only the webhook's sends are counted
    httpserver.expect_ordered_request("/hook").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "120"}
    )
    httpserver.expect_ordered_request("/hook").respond_with_data("ok")
    hook = create_channel(api, type="webhook", config={"url": httpserver.url_for("/hook")})
    monitor = create_monitor(api, url="https://shop.example.invalid/", channel_ids=[hook["id"]])
    outage(monitor, utcnow())
    start = utcnow()
    pump()
    (delivery,) = deliveries(hook["id"])
    assert delivery.next_attempt_at >= start + timedelta(seconds=120)
    clock.move_to(start + timedelta(seconds=110))
    assert pump() == 0
    assert len(received(httpserver)) == 1
    clock.move_to(delivery.next_attempt_at + timedelta(seconds=1))
    assert pump() == 1
    assert deliveries(hook["id"])[0].status == "delivered"


def test_410_disables_the_channel_and_tells_the_admins(api, alice, httpserver, outbox, clock):
    httpserver.expect_request("/hook").respond_with_data("gone", status=410)
    hook = create_channel(api, type="webhook", config={"url": httpserver.url_for("/hook")})
    monitor = create_monitor(api, url="https://shop.example.invalid/", channel_ids=[hook["id"]])
    incident_id = outage(monitor, utcnow())
    pump()
    (delivery,) = deliveries(hook["id"])
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("failed", 1, 410)
    shown = api.get(f"/v1/alert-channels/{hook['id']}").json
    assert shown["enabled"] is False
    assert "410" in shown["disabled_reason"]
    (mail,) = [m for m in outbox.to("alice@example.com") if "turned off" in m["subject"]]
    assert "Ops" in mail["subject"]
    recover(monitor, incident_id, utcnow() + timedelta(minutes=1))  # a disabled channel is not sent to
    pump()
    assert len(received(httpserver)) == 1


def test_a_3xx_is_a_failure_and_is_not_followed(api, alice, httpserver, clock):
    httpserver.expect_request("/hook").respond_with_data("", status=301, headers={"Location": "/elsewhere"})
    hook = create_channel(api, type="webhook", config={"url": httpserver.url_for("/hook")})
    r = api.post(f"/v1/alert-channels/{hook['id']}/test")
    assert r.status == 200, r.body
    assert (r.json["status"], r.json["response_status"], r.json["attempts"]) == ("failed", 301, 1)
    assert [req.path for req in received(httpserver, "/elsewhere")] == []


# --------------------------------------------------------------------------------------------- grouping


def test_twenty_monitors_down_in_the_same_minute_make_one_message_per_channel(api, alice, httpserver, outbox, clock):
    httpserver.expect_request("/hook").respond_with_data("ok")
    verify(alice)
    mail = create_channel(api, type="email", config={"addresses": ["oncall@example.com"]})
    text = create_channel(api, type="sms", config={"phone_numbers": ["+14155550123"]})
    hook = create_channel(api, type="webhook", config={"url": httpserver.url_for("/hook")})
    ids = [mail["id"], text["id"], hook["id"]]
    on_plan(api, alice["team"]["id"])  # twenty monitors
    monitors = [
        create_monitor(api, url=f"https://s{i}.example.invalid/", name=f"Service {i:02}", channel_ids=ids)
        for i in range(20)
    ]
    clock.move_to(utcnow().replace(second=20))  # the fixture starts at second 5: still this minute
    at = utcnow()
    for monitor in monitors:
        outage(monitor, at)
    pump()
    assert len(received(httpserver)) == 20  # machines get one signed event per incident, at once
    assert outbox.to("oncall@example.com") == []  # people get the group, after its minute
    clock.move_to(at.replace(second=0) + timedelta(seconds=75))
    pump()
    (grouped,) = outbox.to("oncall@example.com")
    assert grouped["subject"].startswith("[Vigil] 20 monitors are down: Service 00, Service 01")
    for i in range(20):
        assert f"Service {i:02}" in grouped["text"]
    sms = list(sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sms_messages.values())
    assert [(number, message[:29]) for number, message in sms] == [("+14155550123", "Vigil: 20 monitors are down: ")]
    (member_mail,) = alerts_to(outbox, "alice@example.com")  # the team's members: one email too
    assert "20 monitors are down" in member_mail["subject"]
    assert [len(deliveries(c)) for c in ids] == [1, 1, 20]


def test_a_down_after_its_group_went_out_goes_on_its_own(api, alice, outbox, clock):
    mail = create_channel(api, type="email", config={"addresses": ["oncall@example.com"]})
    first = create_monitor(api, url="https://a.example.invalid/", name="A", channel_ids=[mail["id"]])
    late = create_monitor(api, url="https://b.example.invalid/", name="B", channel_ids=[mail["id"]])
    clock.move_to(utcnow().replace(second=10))
    at = utcnow()
    outage(first, at)
    clock.move_to(at + timedelta(seconds=70))
    pump()
    outage(late, at)  # checked in the same minute, but its records arrive after the group was sent
    pump()
    assert [m["subject"] for m in outbox.to("oncall@example.com")] == [
        "[Vigil] B is down: HTTP 503",
        "[Vigil] A is down: HTTP 503",
    ]


# ------------------------------------------------------------------------------------- cooldown, filters


def test_a_flapping_monitor_is_told_once_per_cooldown_and_only_recoveries_of_what_was_told(
    api, alice, httpserver, clock
):
    httpserver.expect_request("/hook").respond_with_data("ok")
    hook = create_channel(api, type="webhook", config={"url": httpserver.url_for("/hook")}, cooldown_seconds=600)
    monitor = create_monitor(api, url="https://shop.example.invalid/", channel_ids=[hook["id"]])
    start = utcnow()
    first = outage(monitor, start)
    recover(monitor, first, start + timedelta(minutes=1))
    second = outage(monitor, start + timedelta(minutes=3))
    recover(monitor, second, start + timedelta(minutes=4))
    settle(clock)
    sent = [json.loads(r.get_data())["type"] for r in received(httpserver)]
    assert sent == ["incident.opened", "incident.resolved"]
    listed = api.get(f"/v1/alert-channels/{hook['id']}/deliveries").json["data"]
    assert sorted((d["status"], d["error"]) for d in listed) == [
        ("delivered", None),
        ("delivered", None),
        ("suppressed", "cooldown (600 s)"),
        ("suppressed", "cooldown (600 s)"),
    ]


def test_notify_on_filters_what_a_channel_receives(api, alice, httpserver, clock):
    """Three channels of one monitor, told of one outage and its recovery, each by its own ``notify_on``."""
    httpserver.expect_request(re.compile("/(up|down|both)")).respond_with_data("ok")
    hooks = [
        create_channel(api, type="webhook", config={"url": httpserver.url_for(f"/{name}")}, notify_on=notify_on)
        for name, notify_on in (("up", ["up"]), ("down", ["down"]), ("both", ["down", "up"]))
    ]
    monitor = create_monitor(api, url="https://shop.example.invalid/", channel_ids=[h["id"] for h in hooks])
    incident_id = outage(monitor, utcnow())
    recover(monitor, incident_id, utcnow() + timedelta(minutes=1))
    settle(clock)

    def told(path: str) -> list[str]:
        return [json.loads(r.get_data())["type"] for r in received(httpserver, path)]

    assert told("/both") == ["incident.opened", "incident.resolved"]  # both were sent …
    assert told("/down") == ["incident.opened"]  # … each channel got what it asked for …
    # … and "up" only: the recovery of an outage the channel was not told of is not news to it
    assert told("/up") == []


def test_pagerduty_triggers_acknowledges_and_resolves_one_incident(api, alice, httpserver, clock):
    httpserver.expect_request("/pagerduty").respond_with_json({"status": "success"}, status=202)
    pager = create_channel(
        api,
        type="pagerduty",
        config={"routing_key": "R0UTINGKEY0123456789abcd"},
        notify_on=["down", "up", "incident_updated"],
    )
    monitor = create_monitor(api, url="https://shop.example.invalid/", channel_ids=[pager["id"]])
    incident_id = outage(monitor, utcnow())
    with new_events(incident_id) as updates:
        incidents.acknowledge(monitor["team_id"], incident_id, alice["user"]["id"], utcnow())
        incidents.add_note(monitor["team_id"], incident_id, alice["user"]["id"], "looking", utcnow())
    planned(updates)
    recover(monitor, incident_id, utcnow() + timedelta(minutes=1))
    settle(clock)
    sent = [json.loads(r.get_data()) for r in received(httpserver, "/pagerduty")]
    assert [(e["event_action"], e["dedup_key"]) for e in sent] == [
        ("trigger", incident_id),
        ("acknowledge", incident_id),
        ("resolve", incident_id),
    ]  # a note has no PagerDuty action: not sent


# ------------------------------------------------------------------------------------- team members


def test_members_by_preference_quiet_hours_and_critical_only_across_time_zones(api, alice, bob, teammate, outbox):
    verify(bob, timezone="Asia/Tokyo", quiet_hours_start="22:00", quiet_hours_end="07:00")
    verify(teammate("carol@example.com"), critical_only=True)
    verify(alice)
    monitor = create_monitor(api, url="https://shop.example.invalid/")  # no channels: members only
    # 13:30 UTC is 22:30 on the next day in Tokyo: Bob's quiet hours
    with time_machine.travel(datetime.fromisoformat("2026-12-01T13:30:05+00:00"), tick=True) as clock:
        incident_id = outage(monitor, utcnow())
        clock.move_to(datetime.fromisoformat("2026-12-01T13:31:15+00:00"))
        pump()
        for address in ("alice@example.com", "bob@example.com", "carol@example.com"):
            assert [m["subject"] for m in alerts_to(outbox, address)] == ["[Vigil] Homepage is down: HTTP 503"]

        with new_events(incident_id) as note:
            incidents.add_note(monitor["team_id"], incident_id, alice["user"]["id"], "Rolling back", utcnow())
        planned(note)
        pump()
        assert len(alerts_to(outbox, "alice@example.com")) == 2  # not quiet
        assert len(alerts_to(outbox, "carol@example.com")) == 1  # critical only: no note
        assert len(alerts_to(outbox, "bob@example.com")) == 1  # held back
        (held,) = [d for d in DeliveryModel.query(f"member:{bob['user']['id']}") if d.event == "incident.updated"]
        assert held.next_attempt_at == datetime.fromisoformat("2026-12-01T22:00:00+00:00")  # 07:00 in Tokyo

        clock.move_to(datetime.fromisoformat("2026-12-01T21:50:00+00:00"))
        assert pump() >= 1  # the hold hops through the queue (SQS delays at most 15 minutes)
        assert len(alerts_to(outbox, "bob@example.com")) == 1
        clock.move_to(datetime.fromisoformat("2026-12-01T22:00:30+00:00"))
        pump()
        notes = alerts_to(outbox, "bob@example.com")
        assert len(notes) == 2
        assert notes[0]["subject"] == "[Vigil] Homepage: note from alice@example.com"
        assert "Rolling back" in notes[0]["text"]


def test_unverified_members_get_no_email(api, outbox, clock):
    una = sign_up(api, "una@example.com", verified=False)
    join_team(api, una["team"]["id"], register(api, "vic@example.com"), "member")  # verified, of her team
    monitor = create_monitor(api, url="https://shop.example.invalid/")
    outage(monitor, utcnow())
    clock.move_to(utcnow() + timedelta(minutes=2))
    pump()
    assert [m["subject"] for m in alerts_to(outbox, "vic@example.com")] == ["[Vigil] Homepage is down: HTTP 503"]
    assert alerts_to(outbox, "una@example.com") == []


# ------------------------------------------------------------------------------------------ the API


def test_a_test_notification_is_sent_now_and_recorded(api, alice, httpserver):
    httpserver.expect_request("/hook").respond_with_data("ok")
    hook = create_channel(api, type="webhook", config={"url": httpserver.url_for("/hook")})
    r = api.post(f"/v1/alert-channels/{hook['id']}/test")
    assert r.status == 200, r.body
    assert (r.json["event"], r.json["status"], r.json["response_status"]) == ("test", "delivered", 200)
    (request,) = received(httpserver)
    assert Webhook(hook["secret"]).verify(request.get_data(), dict(request.headers))["type"] == "test"
    assert api.get(f"/v1/alert-channels/{hook['id']}/deliveries").json["data"][0]["id"] == r.json["id"]


def test_a_recovery_never_overtakes_its_outage(api, alice, httpserver, clock):
    """PagerDuty drops a resolve for an incident it never saw triggered: the resolve waits for the trigger."""
    httpserver.expect_ordered_request("/pagerduty").respond_with_data("busy", status=503)
    httpserver.expect_request("/pagerduty").respond_with_json({"status": "success"}, status=202)
    pager = create_channel(api, type="pagerduty", config={"routing_key": "R0UTINGKEY0123456789abcd"})
    monitor = create_monitor(api, url="https://shop.example.invalid/", channel_ids=[pager["id"]])
    incident_id = outage(monitor, utcnow())
    pump()
    recover(monitor, incident_id, utcnow() + timedelta(minutes=1))
    settle(clock, rounds=2)
    assert [json.loads(r.get_data())["event_action"] for r in received(httpserver, "/pagerduty")] == ["trigger"]
    trigger = next(d for d in deliveries(pager["id"]) if d.event == "incident.opened")
    clock.move_to(trigger.next_attempt_at + timedelta(seconds=1))
    settle(clock)
    actions = [json.loads(r.get_data())["event_action"] for r in received(httpserver, "/pagerduty")]
    assert actions == ["trigger", "trigger", "resolve"]


CHAT_HOOKS = {
    "slack": "https://hooks.slack.com:{port}/services/T0001/B0001/XXXXXXXXXXXXXXXXXXXXXXXX",
    "discord": "https://discord.com:{port}/api/webhooks/123456789/abcdefghijklmnop",
    "teams": "https://prod-00.westus.logic.azure.com:{port}/workflows/0a1b2c/triggers/manual/paths/invoke?sig=s3cr3tsig",
}


@pytest.fixture
def chat_services(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Slack, Discord and Teams on loopback, under their own names and over verified TLS: DNS answers 127.0.0.1
    for their hosts and a test CA signed their certificate (the network seam; everything above it is real)."""
    import ssl

    import trustme
    from pytest_httpserver import HTTPServer

    from chalicelib.checks import ssrf, tls

    hosts = [str(url.split("/")[2].split(":")[0]) for url in CHAT_HOOKS.values()]
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*hosts).configure_cert(context)
    real = ssrf.system_resolver
    monkeypatch.setattr(
        ssrf, "system_resolver", lambda host, port: ["127.0.0.1"] if host in hosts else real(host, port)
    )
    tls.use_trust_store(ca.cert_pem.bytes().decode())
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        server.stop()
        tls.use_trust_store(None)


def test_slack_discord_and_teams_get_their_messages_at_their_own_hosts_over_tls(api, alice, chat_services, clock):
    from urllib.parse import urlsplit

    for url in CHAT_HOOKS.values():
        chat_services.expect_request(urlsplit(url).path, method="POST").respond_with_data("ok")
    made = {
        kind: create_channel(api, type=kind, config={"webhook_url": url.format(port=chat_services.port)})
        for kind, url in CHAT_HOOKS.items()
    }
    assert all("s3cr3tsig" not in json.dumps(c) and "XXXXXXXX" not in json.dumps(c) for c in made.values())
    ids = [c["id"] for c in made.values()]
    monitors = [
        create_monitor(api, url=f"https://s{i}.example.invalid/", name=f"Service {i}", channel_ids=ids) for i in (1, 2)
    ]
    clock.move_to(utcnow().replace(second=20))
    at = utcnow()
    for monitor in monitors:
        outage(monitor, at)
    clock.move_to(at.replace(second=0) + timedelta(seconds=75))  # people's channels: one message for the minute
    pump()

    sent = {urlsplit(r.url).path: (r, json.loads(r.get_data())) for r, _ in chat_services.log}
    logs = {c: [(d.status, d.event, d.log) for d in deliveries(c)] for c in ids}
    assert sorted(urlsplit(r.url).path for r, _ in chat_services.log) == sorted(sent), logs
    assert len(sent) == 3, logs
    slack_request, slack = sent[urlsplit(CHAT_HOOKS["slack"]).path]
    assert slack_request.host == f"hooks.slack.com:{chat_services.port}"  # its own name, verified by TLS
    assert slack_request.headers["Content-Type"] == "application/json"
    assert slack["text"].startswith("2 monitors are down")
    assert "Service 1" in json.dumps(slack["blocks"])
    assert "Service 2" in json.dumps(slack["blocks"])
    _, discord = sent[urlsplit(CHAT_HOOKS["discord"]).path]
    assert "2 monitors are down" in discord["embeds"][0]["title"]
    teams_request, teams = sent[urlsplit(CHAT_HOOKS["teams"]).path]
    assert teams_request.args["sig"] == "s3cr3tsig"  # the query is part of the credential: sent as stored
    assert teams["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    for channel_id in ids:
        (done,) = deliveries(channel_id)
        assert (done.status, done.response_status) == ("delivered", 200)


def test_a_retried_down_for_people_leaves_out_a_monitor_paused_since(api, alice, chat_services, clock):
    from urllib.parse import urlsplit

    path = urlsplit(CHAT_HOOKS["slack"]).path
    chat_services.expect_ordered_request(path, method="POST").respond_with_data("busy", status=500)
    chat_services.expect_ordered_request(path, method="POST").respond_with_data("ok")
    slack = create_channel(
        api, type="slack", config={"webhook_url": CHAT_HOOKS["slack"].format(port=chat_services.port)}
    )
    monitor = create_monitor(api, url="https://shop.example.invalid/", name="Checkout", channel_ids=[slack["id"]])
    clock.move_to(utcnow().replace(second=20))
    at = utcnow()
    outage(monitor, at)
    clock.move_to(at.replace(second=0) + timedelta(seconds=75))
    pump()
    (delivery,) = deliveries(slack["id"])
    assert (delivery.status, delivery.response_status) == ("retrying", 500)
    assert api.post(f"/v1/monitors/{monitor['id']}/pause").status == 200  # its outage ends: no "up" for people
    clock.move_to(delivery.next_attempt_at + timedelta(seconds=1))
    pump()
    (delivery,) = deliveries(slack["id"])
    assert (delivery.status, delivery.error) == ("suppressed", "monitor_deleted_or_paused")
    assert len(chat_services.log) == 1  # the failed first attempt only: no "down" for a paused monitor


def test_the_ssrf_guard_holds_at_every_send(api, alice, httpserver, settings):
    """A URL accepted earlier is checked again when sent to: here private targets stop being allowed."""
    from dataclasses import replace

    from chalicelib.settings import use_settings

    httpserver.expect_request("/hook").respond_with_data("ok")
    hook = create_channel(api, type="webhook", config={"url": httpserver.url_for("/hook")})
    use_settings(replace(settings, allow_private_targets_requested=False))
    try:
        r = api.post(f"/v1/alert-channels/{hook['id']}/test")
    finally:
        use_settings(settings)
    assert (r.json["status"], r.json["error"], r.json["response_status"]) == ("failed", "destination_not_allowed", None)
    assert received(httpserver) == []


def test_one_slow_receiver_does_not_delay_another(api, alice, httpserver, clock):
    import time

    from pytest_httpserver import HTTPServer
    from werkzeug import Response

    seen: dict[str, float] = {}

    def slow(request: Any) -> Any:
        time.sleep(2)
        seen["slow_done"] = time.monotonic()
        return Response("ok")

    def fast(request: Any) -> Any:
        seen["fast_arrived"] = time.monotonic()
        return Response("ok")

    slow_server = HTTPServer()  # its own server: the test server answers one request at a time
    slow_server.expect_request("/slow").respond_with_handler(slow)
    slow_server.start()
    try:
        httpserver.expect_request("/hook").respond_with_handler(fast)
        slow_channel = create_channel(api, type="webhook", config={"url": slow_server.url_for("/slow")})
        fast_channel = create_channel(api, type="webhook", config={"url": httpserver.url_for("/hook")})
        ids = [slow_channel["id"], fast_channel["id"]]
        monitor = create_monitor(api, url="https://shop.example.invalid/", channel_ids=ids)
        outage(monitor, utcnow())
        pump()
    finally:
        slow_server.stop()
    (slow_delivery,) = deliveries(slow_channel["id"])
    (fast_delivery,) = deliveries(fast_channel["id"])
    assert (slow_delivery.status, fast_delivery.status) == ("delivered", "delivered")
    assert fast_delivery.log[0]["latency_ms"] < 1000 <= slow_delivery.log[0]["latency_ms"]
    assert seen["fast_arrived"] < seen["slow_done"] - 1  # sent while the slow one was still waiting
    kept = slow_delivery.expires_at - slow_delivery.created_at  # TTL: whole seconds
    assert timedelta(days=30) - timedelta(seconds=1) < kept <= timedelta(days=30)  # kept 30 days


@pytest.mark.parametrize("end", ["delete", "pause"])
def test_a_monitor_deleted_or_paused_while_down_closes_the_outage_for_machines_and_tells_people_nothing(
    api, alice, httpserver, outbox, clock, end
):
    httpserver.expect_request("/hook").respond_with_data("ok")
    httpserver.expect_request("/quiet-hook").respond_with_data("ok")
    httpserver.expect_request("/pagerduty").respond_with_json({"status": "success"}, status=202)
    verify(alice)
    hook = create_channel(api, type="webhook", config={"url": httpserver.url_for("/hook")})
    # told of recoveries only: it never heard of this outage, so it is not told of its end either
    quiet = create_channel(api, type="webhook", config={"url": httpserver.url_for("/quiet-hook")}, notify_on=["up"])
    pager = create_channel(api, type="pagerduty", config={"routing_key": "R0UTINGKEY0123456789abcd"})
    monitor = create_monitor(
        api,
        name="Checkout API",
        url="https://shop.example.invalid/health?token=monitor-token",
        headers={"Authorization": "Bearer monitor-secret"},
        channel_ids=[hook["id"], quiet["id"], pager["id"]],
    )
    incident_id = outage(monitor, utcnow())
    with new_events(incident_id) as resolved:
        pump()
        if end == "delete":
            assert api.delete(f"/v1/monitors/{monitor['id']}").status == 204  # resolves its incident
        else:
            assert api.post(f"/v1/monitors/{monitor['id']}/pause").status == 200  # so does pausing it
    assert [e.type for e in resolved] == ["incident.resolved"]
    planned(resolved, times=3)
    settle(clock)
    clock.shift(timedelta(minutes=2))  # past the members' group's minute
    pump()

    # machines close what they opened: the receiver's resolution and PagerDuty's resolve, once each
    bodies = [json.loads(r.get_data()) for r in received(httpserver)]
    assert [(b["type"], b["data"]["incident"]["id"]) for b in bodies] == [
        ("incident.opened", incident_id),
        ("incident.resolved", incident_id),
    ]
    gone = bodies[1]["data"]["monitor"]
    assert (gone["id"], gone["name"]) == (monitor["id"], "Checkout API")
    assert gone["url"] == (None if end == "delete" else "https://shop.example.invalid/health?token=********")
    assert bodies[1]["data"]["incident"]["status"] == "resolved"
    sent = [json.loads(r.get_data()) for r in received(httpserver, "/pagerduty")]
    assert [(e["event_action"], e["dedup_key"]) for e in sent] == [("trigger", incident_id), ("resolve", incident_id)]
    assert received(httpserver, "/quiet-hook") == []
    everything = b"".join(r.get_data() for r, _ in httpserver.log)
    assert b"monitor-token" not in everything
    assert b"monitor-secret" not in everything
    # people are told nothing: the members' grouped "down" was still waiting for its minute to end, and goes
    # unsent about a deleted or paused monitor; its end is not mailed either
    assert alerts_to(outbox, "alice@example.com") == []
    member_deliveries = list(DeliveryModel.query(f"member:{alice['user']['id']}"))
    assert [(d.status, d.error) for d in member_deliveries] == [("suppressed", "monitor_deleted_or_paused")]


def test_a_deleted_tcp_monitors_resolution_says_no_http_method(api, alice, httpserver, clock):
    httpserver.expect_request("/hook").respond_with_data("ok")
    hook = create_channel(api, type="webhook", config={"url": httpserver.url_for("/hook")})
    body = {"type": "tcp", "name": "db", "host": "1.1.1.1", "port": 5432, "channel_ids": [hook["id"]]}
    r = api.post("/v1/monitors", body)
    assert r.status == 201, r.body
    incident_id = outage(r.json, utcnow())
    with new_events(incident_id) as resolved:
        pump()
        assert api.delete(f"/v1/monitors/{r.json['id']}").status == 204
    assert [e.type for e in resolved] == ["incident.resolved"]
    planned(resolved)
    settle(clock)
    pump()

    bodies = [json.loads(got.get_data()) for got in received(httpserver)]
    assert [b["type"] for b in bodies] == ["incident.opened", "incident.resolved"]
    opened, gone = bodies[0]["data"]["monitor"], bodies[1]["data"]["monitor"]
    assert (opened["url"], opened["method"]) == ("tcp://1.1.1.1:5432", None)
    assert (gone["url"], gone["method"], gone["name"]) == (None, None, "db")


def test_an_attempt_whose_lambda_died_is_taken_again_once_stale(api, alice, httpserver, clock):
    """The Lambda claimed attempt 1 and died before recording it; SQS delivers the message again."""
    from chalicelib.alerts import attempts
    from chalicelib.events.alerts import handle_messages

    httpserver.expect_request("/hook").respond_with_data("ok")
    hook = create_channel(api, type="webhook", config={"url": httpserver.url_for("/hook")})
    monitor = create_monitor(api, url="https://shop.example.invalid/", channel_ids=[hook["id"]])
    outage(monitor, utcnow())
    sqs = client("sqs")
    url = sqs.get_queue_url(QueueName=names.alert_queue(get_settings()))["QueueUrl"]
    (message,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    (stuck,) = deliveries(hook["id"])
    assert attempts._claim(stuck, 1, utcnow())  # … and then the Lambda died
    assert handle_messages(sqs_records([message], url)) == {"batchItemFailures": []}  # the redelivery: held, not lost
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert received(httpserver) == []
    clock.shift(timedelta(minutes=5, seconds=10))
    pump()
    (done,) = deliveries(hook["id"])
    assert (done.status, done.attempts) == ("delivered", 1)
    assert len(received(httpserver)) == 1


def test_an_absurd_retry_after_is_capped_at_an_hour(api, alice, httpserver, clock):
    httpserver.expect_request("/hook").respond_with_data("later", status=429, headers={"Retry-After": "99999999999999"})
    hook = create_channel(api, type="webhook", config={"url": httpserver.url_for("/hook")})
    monitor = create_monitor(api, url="https://shop.example.invalid/", channel_ids=[hook["id"]])
    outage(monitor, utcnow())
    pump()
    (waiting,) = deliveries(hook["id"])
    assert waiting.status == "retrying"
    assert timedelta(minutes=59) < waiting.next_attempt_at - utcnow() <= timedelta(hours=1)


def test_a_retry_goes_only_to_the_recipients_not_reached(api, alice, outbox, clock):
    addresses = ["first@example.com", "second@example.com"]
    mail = create_channel(api, type="email", config={"addresses": addresses}, notify_on=["incident_updated"])
    monitor = create_monitor(api, url="https://shop.example.invalid/", channel_ids=[mail["id"]])
    incident_id = outage(monitor, utcnow())
    with new_events(incident_id) as note:
        incidents.add_note(monitor["team_id"], incident_id, alice["user"]["id"], "Rolling back", utcnow())
    planned(note)
    (note,) = deliveries(mail["id"])
    # as if an earlier attempt had reached the first address, then failed on the second
    note.update(actions=[DeliveryModel.sent_to.set(["first@example.com"])])
    pump()
    assert alerts_to(outbox, "first@example.com") == []
    assert [m["subject"] for m in alerts_to(outbox, "second@example.com")] == [
        "[Vigil] Homepage: note from alice@example.com"
    ]
    assert deliveries(mail["id"])[0].status == "delivered"


def test_a_malformed_message_is_reported_and_one_of_an_unknown_kind_dropped(aws):
    from chalicelib.events.alerts import handle_messages

    records = [
        {"messageId": "m1", "body": '{"op":"deliver","target":"ch_1","delivery_id":"dlv_1"}'},
        {"messageId": "m2", "body": "not json"},
        {"messageId": "m3", "body": '{"op":"resend","target":"ch_1"}'},
        {"messageId": "m4", "body": '{"op":"deliver","target":"ch_1","delivery_id":"dlv_gone","attempt":1}'},
    ]
    assert handle_messages(records) == {"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]}


def test_a_heartbeat_outage_reaches_email_channels_and_members(api, alice, outbox, clock):
    """A heartbeat has no URL: its grouped alert must not take it for a monitor deleted while the group waited."""
    verify(alice)
    mail = create_channel(api, type="email", config={"addresses": ["oncall@example.com"]})
    m = create_heartbeat(api, name="Nightly backup", channel_ids=[mail["id"]])
    clock.move_to(utcnow().replace(second=20))
    at = utcnow()
    miss = Result(m["team_id"], m["id"], "global", at, ok=False, error="ping_missed")
    (incident_id,) = apply_results(m["team_id"], m["id"], [miss], utcnow()).opened
    planned(list(EventModel.query(incident_id)))
    pump()
    clock.move_to(at.replace(second=0) + timedelta(seconds=75))  # the minute's group goes out
    pump()
    [sent] = outbox.to("oncall@example.com")
    assert "Nightly backup" in sent["text"]
    assert "no ping in time" in sent["text"]
    assert "/v1/ping/" not in sent["text"]  # the ping URL stays in Vigil
    assert len(alerts_to(outbox, "alice@example.com")) == 1


def test_a_person_in_two_teams_gets_each_teams_down_email_in_the_same_minute(api, alice, bob, charlie, outbox, clock):
    """Grouping is per team: the two teams' outages of one minute are two groups, each sent, none recorded as
    delivered without its email."""
    join_team(api, charlie["team"]["id"], bob, "member")
    verify(alice), verify(bob), verify(charlie)
    ours = create_monitor(api, url="https://a.example.invalid/", name="Alpha")
    theirs = create_monitor(api.acting_as(charlie), url="https://c.example.invalid/", name="Cobalt")
    clock.move_to(utcnow().replace(second=20))
    at = utcnow()
    outage(ours, at)
    outage(theirs, at)
    clock.move_to(at.replace(second=0) + timedelta(seconds=75))
    pump()
    pump()

    mails = alerts_to(outbox, "bob@example.com")
    assert sorted("Alpha" in m["subject"] + m["text"] for m in mails) == [False, True]
    assert sorted("Cobalt" in m["subject"] + m["text"] for m in mails) == [False, True]
    delivered = [d for d in DeliveryModel.query(f"member:{bob['user']['id']}") if d.status == "delivered"]
    assert sorted(d.team_id for d in delivered) == sorted([alice["team"]["id"], charlie["team"]["id"]])


def test_a_note_held_for_quiet_hours_never_reaches_a_member_removed_meanwhile(api, alice, bob, outbox):
    from chalicelib import lifecycle

    verify(bob, timezone="Asia/Tokyo", quiet_hours_start="22:00", quiet_hours_end="07:00")
    verify(alice)
    monitor = create_monitor(api, url="https://shop.example.invalid/")
    with time_machine.travel(datetime.fromisoformat("2026-12-01T13:30:05+00:00"), tick=True) as clock:
        incident_id = outage(monitor, utcnow())
        clock.move_to(datetime.fromisoformat("2026-12-01T13:31:15+00:00"))
        pump()
        with new_events(incident_id) as note:
            incidents.add_note(monitor["team_id"], incident_id, alice["user"]["id"], "Rolling back", utcnow())
        planned(note)
        pump()
        assert len(alerts_to(outbox, "bob@example.com")) == 1  # the down; the note waits for 07:00 in Tokyo
        lifecycle.remove_member(alice["user"]["id"], "owner", alice["team"]["id"], bob["user"]["id"], utcnow())
        clock.move_to(datetime.fromisoformat("2026-12-01T22:00:30+00:00"))  # 07:00:30 in Tokyo
        pump()

    assert len(alerts_to(outbox, "bob@example.com")) == 1
    deliveries = {d.event: d for d in DeliveryModel.query(f"member:{bob['user']['id']}")}
    assert deliveries["incident.opened"].status == "delivered"
    (held,) = [d for event, d in deliveries.items() if event != "incident.opened"]
    assert (held.status, held.error) == ("failed", "member_gone")
