"""Secrets at rest are sealed under the stage's KMS key (``chalicelib.sealing``), bound to their team and record,
and opened only where something is sent: test notifications and deliveries, test checks and the scheduler's jobs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from standardwebhooks.webhooks import Webhook

from chalicelib.alerts import attempts, deliveries
from chalicelib.alerts.channels import opened_config
from chalicelib.alerts.models import ChannelModel, DeliveryModel
from chalicelib.aws import names
from chalicelib.aws.clients import client
from chalicelib.checks.jobs import Job, decode_message
from chalicelib.clock import utcnow
from chalicelib.ids import new_id
from chalicelib.monitors.models import MonitorModel
from chalicelib.scheduler.service import run_tick
from chalicelib.sealing import service as sealing
from chalicelib.sealing.models import DataKeyModel
from chalicelib.settings import Settings, get_settings
from tests.factories import create_channel, create_monitor
from tests.support import aws_error, before_aws_call, make_test_settings, stored_channel_config, stored_headers

ROUTING_KEY = "R0UTINGKEY0123456789abcd"


@pytest.fixture
def settings() -> Settings:
    return make_test_settings(ALLOW_PRIVATE_TARGETS="true")


def raw(table: str) -> str:
    """Every item of a table as DynamoDB holds it, as one text to search."""
    items = client("dynamodb").scan(TableName=f"{get_settings().table_prefix}{table}")["Items"]
    return json.dumps(items, default=str)


def kms() -> Any:
    """The KMS client sealing calls (the fast one: a tick cannot wait long for one monitor)."""
    return client("kms", get_settings().home_region, fast=True)


def kms_calls(operation: str, action: Any = lambda: None) -> Any:
    """The KMS ``operation`` calls made while the block runs, counted at botocore's edge (each runs ``action``)."""
    return before_aws_call([kms()], f"kms.{operation}", action, times=10**6)


def jobs(settings: Settings, region: str = "us-east-1") -> list[Job]:
    """What the scheduler sent the region's worker (the queue is emptied)."""
    sqs = client("sqs")
    url = sqs.get_queue_url(QueueName=names.check_queue(settings, region))["QueueUrl"]
    found: list[Job] = []
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in got:
            found += [Job.from_json(job) for job in decode_message(message["Body"])]
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def test_it_stores_no_channel_or_monitor_secret_in_the_clear(api, alice):
    hook = create_channel(
        api,
        type="webhook",
        config={"url": "https://hooks.example.invalid/in?token=supersecret123", "headers": {"X-Api-Key": "hdr-42xyz"}},
    )
    create_channel(api, type="slack", config={"webhook_url": "https://hooks.slack.com/services/T000/B000/XXXXSECRET"})
    create_channel(api, type="pagerduty", config={"routing_key": ROUTING_KEY})
    create_monitor(api, headers={"Authorization": "Bearer mon-secret-77", "Accept": "text/html"})

    stored = raw("alert_channels") + raw("monitors")
    for secret in (hook["secret"], hook["secret"].removeprefix("whsec_"), "supersecret123", "hdr-42xyz"):
        assert secret not in stored
    for secret in ("XXXXSECRET", "T000/B000", ROUTING_KEY, "mon-secret-77"):
        assert secret not in stored
    # What readers see, and what is no secret, stay as they were.
    assert "R0UT********" in stored
    assert "text/html" in stored
    assert "hooks.slack.com/services/********" in stored


def test_a_webhooks_path_token_is_sealed_too_and_its_managers_still_read_the_url(api, alice, bob):
    # found by a fresh-eyes review of issue 19: the masked config stored beside the sealed one kept the URL's path
    url = "https://hooks.example.invalid/hooks/T0KEN-path-0042/more?v=1"
    hook = create_channel(api, type="webhook", config={"url": url})

    assert "T0KEN-path-0042" not in raw("alert_channels")
    assert "hooks.example.invalid/hooks/********" in raw("alert_channels")
    assert api.get(f"/v1/alert-channels/{hook['id']}").json["config"]["url"] == url  # opened for who manages it
    assert "T0KEN-path-0042" not in api.acting_as(bob).get(f"/v1/alert-channels/{hook['id']}").text
    assert stored_channel_config(alice["team"]["id"], hook["id"])["url"] == url  # as the deliverer opens it


def test_a_test_notification_signs_with_the_sealed_secret_and_sends_the_sealed_headers(api, alice, httpserver):
    httpserver.expect_request("/hook").respond_with_data("ok")
    hook = create_channel(
        api, type="webhook", config={"url": httpserver.url_for("/hook"), "headers": {"X-Api-Key": "hdr-42xyz"}}
    )

    r = api.post(f"/v1/alert-channels/{hook['id']}/test")

    assert (r.status, r.json["status"]) == (200, "delivered"), r.body
    ((request, _),) = httpserver.log
    assert Webhook(hook["secret"]).verify(request.get_data(), dict(request.headers))["type"] == "test"
    assert request.headers["X-Api-Key"] == "hdr-42xyz"


def _moved(source: ChannelModel, into: ChannelModel) -> None:
    """``source``'s sealed config written into another channel's item, as someone with the table could."""
    into.update(
        actions=[ChannelModel.sealed_config.set(source.sealed_config), ChannelModel.config.set(source.config)],
        add_version_condition=False,
    )


def test_a_channel_config_copied_into_another_teams_channel_opens_nowhere_and_sends_nothing(
    api, alice, charlie, httpserver
):
    mine = create_channel(api, type="webhook", config={"url": httpserver.url_for("/alice")})
    theirs = api.acting_as(charlie)
    other = create_channel(theirs, type="webhook", config={"url": httpserver.url_for("/charlie")})
    _moved(ChannelModel.get(alice["team"]["id"], mine["id"]), ChannelModel.get(charlie["team"]["id"], other["id"]))

    r = theirs.post(f"/v1/alert-channels/{other['id']}/test")
    assert r.status == 200, r.body
    assert (r.json["status"], r.json["error"]) == ("failed", attempts.SECRETS_UNREADABLE)
    # The deliverer does the same with a delivery of its own, and does not try it again.
    delivery_id = new_id("dlv")
    deliveries.create(
        other["id"], delivery_id, team_id=charlie["team"]["id"], event="test", critical=False, source={"test": True},
        now=utcnow(),
    )  # fmt: skip
    attempts.attempt(other["id"], delivery_id, 1, utcnow())
    found = DeliveryModel.get(other["id"], delivery_id)
    assert (found.status, found.error, found.next_attempt_at) == ("failed", attempts.SECRETS_UNREADABLE, None)
    assert httpserver.log == []  # neither receiver heard anything
    assert theirs.get(f"/v1/alert-channels/{other['id']}").status == 200  # reading opens nothing
    r = theirs.patch(f"/v1/alert-channels/{other['id']}", {"config": {"url": httpserver.url_for("/charlie")}})
    assert (r.status, r.json["code"]) == (409, "conflict")


def test_monitor_credentials_copied_into_another_teams_monitor_are_never_sent(
    api, alice, charlie, settings, httpserver
):
    httpserver.expect_request("/charlie").respond_with_data("ok")
    create_monitor(api, url=httpserver.url_for("/alice"), regions=["us-east-1"], headers={"Authorization": "A-77x"})
    theirs = api.acting_as(charlie)
    other = create_monitor(
        theirs, url=httpserver.url_for("/charlie"), regions=["us-east-1"], headers={"Authorization": "C-88y"}
    )
    (alices,) = MonitorModel.query(alice["team"]["id"])
    MonitorModel.get(charlie["team"]["id"], other["id"]).update(
        actions=[MonitorModel.headers.set(alices.headers.as_dict())], add_version_condition=False
    )

    r = theirs.post(f"/v1/monitors/{other['id']}/test")
    assert (r.status, r.json["code"]) == (409, "conflict"), r.body
    report = run_tick(utcnow(), force=True)
    assert report.unopened == 1
    (job,) = jobs(settings)
    assert (job.monitor_id, dict(job.spec.headers)) == (alices.monitor_id, {"Authorization": "A-77x"})
    assert httpserver.log == []


def _as_written_before_sealing(team_id: str, channel_id: str, monitor_id: str) -> None:
    """The channel and the monitor as the version before sealing wrote them: secrets in the clear."""
    channel = ChannelModel.get(team_id, channel_id)
    channel.update(
        actions=[ChannelModel.config.set(opened_config(channel)), ChannelModel.sealed_config.remove()],
        add_version_condition=False,
    )
    MonitorModel.get(team_id, monitor_id).update(
        actions=[MonitorModel.headers.set(stored_headers(team_id, monitor_id))], add_version_condition=False
    )


def test_secrets_stored_in_the_clear_before_sealing_still_work_and_are_sealed_at_the_next_change(
    api, alice, settings, httpserver
):
    httpserver.expect_request("/hook").respond_with_data("ok")
    team = alice["team"]["id"]
    hook = create_channel(
        api, type="webhook", config={"url": httpserver.url_for("/hook"), "headers": {"X-Api-Key": "hdr-42xyz"}}
    )
    monitor = create_monitor(api, regions=["us-east-1"], headers={"Authorization": "Bearer mon-secret-77"})
    _as_written_before_sealing(team, hook["id"], monitor["id"])
    assert "hdr-42xyz" in raw("alert_channels")
    assert "mon-secret-77" in raw("monitors")

    shown = api.get(f"/v1/alert-channels/{hook['id']}").json["config"]
    assert shown["headers"] == {"X-Api-Key": "********"}
    assert api.post(f"/v1/alert-channels/{hook['id']}/test").json["status"] == "delivered"
    run_tick(utcnow(), force=True)
    assert dict(jobs(settings)[0].spec.headers) == {"Authorization": "Bearer mon-secret-77"}

    assert api.patch(f"/v1/alert-channels/{hook['id']}", {"config": shown}).status == 200
    assert api.patch(f"/v1/monitors/{monitor['id']}", {"headers": {"Authorization": "********"}}).status == 200
    assert "hdr-42xyz" not in raw("alert_channels")
    assert "mon-secret-77" not in raw("monitors")
    assert api.post(f"/v1/alert-channels/{hook['id']}/test").json["status"] == "delivered"
    for request, _ in httpserver.log:
        assert Webhook(hook["secret"]).verify(request.get_data(), dict(request.headers))["type"] == "test"
        assert request.headers["X-Api-Key"] == "hdr-42xyz"
    run_tick(utcnow(), force=True)
    assert dict(jobs(settings)[0].spec.headers) == {"Authorization": "Bearer mon-secret-77"}


def test_the_migration_seals_every_secret_stored_before_sealing_and_only_once(api, alice, settings):
    from infra.seal import Report, seal_stage

    team = alice["team"]["id"]
    hook = create_channel(
        api, type="webhook", config={"url": "https://hooks.example.invalid/in", "headers": {"X-Api-Key": "hdr-42xyz"}}
    )
    create_channel(api)  # an email channel: nothing secret
    monitor = create_monitor(api, headers={"Authorization": "Bearer mon-secret-77", "Accept": "text/html"})
    create_monitor(api, name="No credentials", headers={"Accept": "text/html"})
    _as_written_before_sealing(team, hook["id"], monitor["id"])
    config = stored_channel_config(team, hook["id"])

    assert seal_stage(settings, dry_run=True) == Report(channels=1, monitors=1)
    assert "hdr-42xyz" in raw("alert_channels")
    assert seal_stage(settings) == Report(channels=1, monitors=1)

    assert "hdr-42xyz" not in raw("alert_channels")
    assert "mon-secret-77" not in raw("monitors")
    assert stored_channel_config(team, hook["id"]) == config
    assert stored_headers(team, monitor["id"]) == {"Authorization": "Bearer mon-secret-77", "Accept": "text/html"}
    assert seal_stage(settings) == Report()


def test_kms_is_asked_about_data_keys_never_once_per_monitor_or_check(api, alice, settings):
    with kms_calls("GenerateDataKey") as made:
        for n in range(5):
            create_monitor(api, name=f"m{n}", regions=["us-east-1"], headers={"Authorization": f"Bearer s-{n}"})
    assert len(made) == 1  # one data key seals every monitor's credentials
    sealing.forget_keys()  # the scheduler is another process

    with kms_calls("Decrypt") as opened:
        run_tick(utcnow(), force=True)
        run_tick(utcnow(), force=True)

    assert len(opened) == 1  # one data key opened, kept for the next ticks
    assert sorted(dict(j.spec.headers)["Authorization"] for j in jobs(settings)) == [
        f"Bearer s-{n}" for n in range(5) for _ in range(2)
    ]


def test_a_data_key_a_month_old_is_replaced_and_what_it_sealed_still_opens(aws):
    first = sealing.seal(sealing.ALERT_CHANNEL, "old secret", team_id="team_1", record="ch_1")
    before = DataKeyModel.get(sealing.ALERT_CHANNEL).key_id
    with time_machine.travel(datetime.now(UTC) + sealing.ROTATE_AFTER + timedelta(days=1)):
        second = sealing.seal(sealing.ALERT_CHANNEL, "new secret", team_id="team_1", record="ch_2")

    assert DataKeyModel.get(sealing.ALERT_CHANNEL).key_id != before
    assert first.split(".")[1] != second.split(".")[1]  # another wrapped data key
    assert sealing.unseal(sealing.ALERT_CHANNEL, first, team_id="team_1", record="ch_1") == "old secret"
    assert sealing.unseal(sealing.ALERT_CHANNEL, second, team_id="team_1", record="ch_2") == "new secret"
    with pytest.raises(sealing.Unreadable):
        sealing.unseal(sealing.ALERT_CHANNEL, first, team_id="team_1", record="ch_2")


def test_checks_go_on_through_a_kms_outage_with_the_keys_kept_but_never_with_a_key_kms_refuses(api, alice, settings):
    create_monitor(api, regions=["us-east-1"], headers={"Authorization": "Bearer s-1"})
    sealing.forget_keys()  # the scheduler is another process
    run_tick(utcnow(), force=True)  # opens the data key, and keeps it
    later = datetime.now(UTC) + timedelta(seconds=sealing.OPENED_FOR_S + 60)

    with time_machine.travel(later), kms_calls("Decrypt", aws_error("ThrottlingException", "Decrypt")) as asked:
        during = [run_tick(utcnow(), force=True).unopened for _ in range(2)]
    assert len(asked) == 1  # then KMS is left alone a while
    assert during == [0, 0]
    assert [dict(j.spec.headers) for j in jobs(settings)] == [{"Authorization": "Bearer s-1"}] * 3

    after_the_pause = later + timedelta(seconds=sealing.KMS_PAUSE_S + 1)
    with time_machine.travel(after_the_pause), kms_calls("Decrypt", aws_error("DisabledException", "Decrypt")):
        assert run_tick(utcnow(), force=True).unopened == 1  # the key was turned off: nothing kept stands in
    assert jobs(settings) == []


def test_a_kms_outage_is_a_503_to_try_again_never_a_500_and_stores_nothing(api, alice):
    # found by a fresh-eyes review of issue 19
    sealing.forget_keys()
    body = {"name": "Sealed", "url": "https://shop.example.invalid/", "headers": {"Authorization": "Bearer s-1"}}

    with kms_calls("GenerateDataKey", aws_error("ThrottlingException", "GenerateDataKey")) as asked:
        r = api.post("/v1/monitors", body)

    assert asked
    assert r.status == 503, r.body
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json["code"] == "service_unavailable"
    assert int(r.headers["retry-after"]) == int(sealing.KMS_PAUSE_S)
    assert api.get("/v1/monitors").json["data"] == []  # nothing half-made
    assert api.post("/v1/monitors", body).status == 201  # once KMS answers again

    monitor = create_monitor(api, name="Opened", url="http://127.0.0.1:9/", headers={"Authorization": "Bearer s-2"})
    sealing.forget_keys()  # another process: nothing kept to bridge the outage with
    with kms_calls("Decrypt", aws_error("ThrottlingException", "Decrypt")):
        tested = api.post(f"/v1/monitors/{monitor['id']}/test")
    assert tested.status == 503, tested.body
    assert tested.json["code"] == "service_unavailable"
