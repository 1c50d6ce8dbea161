"""The incident API: list with filters and cursors, read with the timeline, acknowledge, notes, resolve, postmortem
— each change on the timeline and emitted as an event; roles and teams as the contract says."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chalicelib.clock import isoz, utcnow
from chalicelib.incidents import events
from chalicelib.incidents import service as incidents
from chalicelib.incidents.models import EventModel, IncidentModel, MaintenanceWindowModel, MonitorStateModel
from chalicelib.monitors.models import MonitorModel
from tests import iam
from tests.factories import create_monitor
from tests.support import before_aws_call, dynamodb_clients, open_incident
from tests.support import recover as recover_everywhere

URL = "https://shop.example.invalid/"


def outage(monitor: dict[str, Any], minutes: int = 5, cause: str = "timeout") -> str:
    """Two failed minutes everywhere (from ``minutes`` ago), applied as the incident handler applies them."""
    return open_incident(monitor["team_id"], monitor["id"], utcnow() - timedelta(minutes=minutes), error=cause)


def recover(monitor: dict[str, Any], minutes_ago: int = 0) -> None:
    recover_everywhere(monitor["team_id"], monitor["id"], utcnow() - timedelta(minutes=minutes_ago))


def emitted(incident_id: str) -> list[tuple[str, str | None]]:
    return [(e.type, e.by) for e in EventModel.query(incident_id)]


def test_acknowledge_note_postmortem_resolve_each_go_on_the_timeline_and_are_emitted(api, alice):
    monitor = create_monitor(api, url=URL)
    incident_id = outage(monitor)
    me = alice["user"]["id"]

    r = api.post(f"/v1/incidents/{incident_id}/acknowledge")
    assert r.status == 200, r.body
    assert (r.json["status"], r.json["acknowledged_by"]) == ("acknowledged", me)
    assert r.json["acknowledged_at"] is not None
    assert api.post(f"/v1/incidents/{incident_id}/acknowledge").status == 200  # again: nothing new

    r = api.post(f"/v1/incidents/{incident_id}/notes", {"text": "Rolling back the 14:02 deploy"})
    assert r.status == 201, r.body
    assert (r.json["type"], r.json["by"], r.json["text"]) == ("note", me, "Rolling back the 14:02 deploy")

    postmortem = {"cause": "A bad deploy", "resolution": "Reverted", "impact": "Checkout down 9 min"}
    r = api.put(f"/v1/incidents/{incident_id}/postmortem", postmortem)
    assert r.status == 200, r.body
    assert r.json["postmortem"] == {**postmortem, "action_items": []}

    r = api.post(f"/v1/incidents/{incident_id}/resolve")
    assert r.status == 200, r.body
    assert (r.json["status"], r.json["resolved_by"]) == ("resolved", me)
    assert api.post(f"/v1/incidents/{incident_id}/resolve").status == 200  # again: nothing new

    body = api.get(f"/v1/incidents/{incident_id}").json
    kinds = [(e["type"], e["by"]) for e in body["timeline"]]
    assert kinds[-4:] == [("acknowledged", me), ("note", me), ("postmortem_updated", me), ("resolved", me)]
    assert [k for k, _ in kinds[:4]] == ["region_down", "region_down", "region_down", "opened"]
    assert body["timeline"][-3]["text"] == "Rolling back the 14:02 deploy"
    assert body["cause"] == "timeout"
    assert set(body) >= {"id", "monitor_id", "team_id", "status", "cause", "started_at", "acknowledged_at"}
    # The same entries are the events the alert handler reads, once each.
    assert [e for e in emitted(incident_id) if e[1] is not None] == [
        ("incident.acknowledged", me),
        ("incident.note", me),
        ("incident.postmortem_updated", me),
        ("incident.resolved", me),
    ]


def test_a_resolved_incident_cannot_be_acknowledged_but_takes_notes_and_a_postmortem(api, alice):
    monitor = create_monitor(api, url=URL)
    incident_id = outage(monitor, minutes=10)
    recover(monitor)
    assert api.get(f"/v1/incidents/{incident_id}").json["resolved_by"] is None  # Vigil resolved it
    r = api.post(f"/v1/incidents/{incident_id}/acknowledge")
    assert r.status == 409
    assert r.json["code"] == "conflict"
    assert api.post(f"/v1/incidents/{incident_id}/notes", {"text": "Caused by the CDN"}).status == 201
    r = api.put(f"/v1/incidents/{incident_id}/postmortem", {"cause": "CDN", "resolution": "Failover"})
    assert r.status == 200


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("notes", {"text": ""}, "text"),
        ("notes", {"text": "x" * 5001}, "text"),
        ("notes", {}, "text"),
        ("postmortem", {"cause": "x"}, "resolution"),
        ("postmortem", {"cause": "x", "resolution": "y", "action_items": "do it"}, "action_items"),
        ("postmortem", {"cause": "x", "resolution": "y", "action_items": ["a" * 1001]}, "action_items.0"),
        ("postmortem", {"cause": "x", "resolution": "y", "action_items": ["two\nlines"]}, "action_items.0"),
        ("notes", {"text": "bell\x07"}, "text"),
        # valid part by part, but over what an incident's item can hold in all (non-ASCII is stored escaped)
        ("postmortem", {"cause": "x", "resolution": "y", "action_items": ["é" * 1000] * 50}, "body"),
    ],
)
def test_bad_bodies_are_422_naming_the_field(api, alice, path, body, field):
    incident_id = outage(create_monitor(api, url=URL))
    method = api.put if path == "postmortem" else api.post
    r = method(f"/v1/incidents/{incident_id}/{path}", body)
    assert r.status == 422, r.body
    assert [e["field"] for e in r.json["errors"]] == [field]


def notes_of(incident_id: str) -> list[str]:
    return [e.text for e in EventModel.query(incident_id) if e.type == events.NOTE]


def with_notes(team_id: str, incident_id: str, user_id: str, count: int) -> None:
    """The incident as ``count`` notes through the API would leave it: its entries, and its count of them."""
    item = IncidentModel.get(team_id, incident_id)
    start = utcnow() - timedelta(minutes=1)
    with EventModel.batch_write() as batch:
        for n in range(count):
            at = start + timedelta(milliseconds=n)
            batch.save(events.incident_event(item, events.NOTE, at, discriminator=f"evt_{n}", by=user_id, text=f"#{n}"))
    item.update(actions=[IncidentModel.notes_count.set(count)])


def test_an_incident_takes_a_bounded_number_of_notes_then_409_naming_the_limit(api, alice):
    team_id, me = alice["team"]["id"], alice["user"]["id"]
    incident_id = outage(create_monitor(api, url=URL))
    with_notes(team_id, incident_id, me, events.MAX_NOTES - 1)
    assert api.post(f"/v1/incidents/{incident_id}/notes", {"text": "The last one"}).status == 201

    r = api.post(f"/v1/incidents/{incident_id}/notes", {"text": "One too many"})
    assert r.status == 409, r.body
    assert r.headers["content-type"] == "application/problem+json"
    assert (r.json["code"], r.json["limit"], r.json["allowed"]) == ("limit_reached", "notes_per_incident", 100)
    assert r.json["detail"] == "An incident holds at most 100 notes; this one has them all."
    assert len(notes_of(incident_id)) == events.MAX_NOTES
    assert "One too many" not in notes_of(incident_id)  # not stored, so never emitted to the team either
    assert IncidentModel.get(team_id, incident_id).notes_count == events.MAX_NOTES

    # An incident from before notes were counted: its notes are counted from its timeline.
    IncidentModel.get(team_id, incident_id).update(actions=[IncidentModel.notes_count.remove()])
    assert api.post(f"/v1/incidents/{incident_id}/notes", {"text": "Still too many"}).status == 409
    assert api.get(f"/v1/incidents/{incident_id}").json["timeline"][-1]["text"] == "The last one"


def test_two_notes_racing_for_the_last_place_are_one_note_and_one_409(api, alice):
    team_id, me = alice["team"]["id"], alice["user"]["id"]
    incident_id = outage(create_monitor(api, url=URL))
    with_notes(team_id, incident_id, me, events.MAX_NOTES - 1)

    def bobs_note_lands_first() -> None:
        with iam.outside():
            incidents.add_note(team_id, incident_id, me, "Bob's, first", utcnow())

    with before_aws_call(dynamodb_clients(), "dynamodb.TransactWriteItems", bobs_note_lands_first) as fired:
        r = api.post(f"/v1/incidents/{incident_id}/notes", {"text": "Alice's, second"})
    assert fired
    assert (r.status, r.json["code"]) == (409, "limit_reached")  # her write lost the race, and her retry the place
    assert len(notes_of(incident_id)) == events.MAX_NOTES
    assert notes_of(incident_id)[-1] == "Bob's, first"


def test_a_postmortem_rewritten_again_and_again_keeps_its_first_and_latest_updates_on_the_timeline(api, alice):
    """Its updates repeat without end: the first and the latest stay, the ones between are deleted and counted."""
    team_id, me = alice["team"]["id"], alice["user"]["id"]
    incident_id = outage(create_monitor(api, url=URL))  # three region_down entries: repeating entries too
    rewrites = events.FIRST_REPEATS + events.LATEST_REPEATS + 2
    for n in range(rewrites - 1):
        incidents.set_postmortem(team_id, incident_id, me, {"cause": f"Draft {n}", "resolution": "Reverted"}, utcnow())
    r = api.put(f"/v1/incidents/{incident_id}/postmortem", {"cause": "Final", "resolution": "Reverted"})
    assert r.status == 200, r.body

    body = r.json
    dropped = 3 + rewrites - events.FIRST_REPEATS - events.LATEST_REPEATS
    assert body["timeline_dropped"] == dropped == 5
    updates = [e for e in body["timeline"] if e["type"] == "postmortem_updated"]
    assert len(updates) == events.FIRST_REPEATS - 3 + events.LATEST_REPEATS
    assert updates[0]["text"] == "Postmortem written"
    assert [e["type"] for e in body["timeline"][:4]] == ["region_down"] * 3 + ["opened"]
    assert body["postmortem"]["cause"] == "Final"
    stored = sorted(e.key for e in EventModel.query(incident_id))
    assert stored == sorted(e["id"] for e in body["timeline"])  # deleted, not hidden


def test_list_filters_by_status_and_monitor_newest_first_with_signed_cursors(api, alice):
    shop = create_monitor(api, url=URL)
    blog = create_monitor(api, url="https://blog.example.invalid/")
    first = outage(shop, minutes=30)
    recover(shop, minutes_ago=20)
    second = outage(shop, minutes=10)
    third = outage(blog, minutes=8)

    def ids(query: str = "") -> list[str]:
        r = api.get(f"/v1/incidents{query}")
        assert r.status == 200, r.body
        return [i["id"] for i in r.json["data"]]

    assert ids() == [third, second, first]
    assert ids("?status=open") == [third, second]
    assert ids("?status=resolved") == [first]
    assert ids(f"?monitor_id={shop['id']}") == [second, first]
    assert ids(f"?monitor_id={shop['id']}&status=open") == [second]
    assert ids("?monitor_id=mon_unknown") == []
    assert "timeline" not in api.get("/v1/incidents").json["data"][0]

    page = api.get("/v1/incidents?status=open&limit=1").json
    assert [i["id"] for i in page["data"]] == [third]
    rest = api.get(f"/v1/incidents?status=open&limit=1&cursor={page['next_cursor']}").json
    assert ([i["id"] for i in rest["data"]], rest["next_cursor"]) == ([second], None)
    # a cursor is bound to its filter, and tamper-proof
    assert api.get(f"/v1/incidents?status=resolved&cursor={page['next_cursor']}").status == 400
    assert api.get(f"/v1/incidents?status=open&cursor={page['next_cursor'][:-2]}xx").status == 400
    assert api.get("/v1/incidents?status=closed").status == 422


def test_another_team_sees_nothing_and_a_viewer_reads_but_does_not_change(api, alice, charlie, teammate):
    incident_id = outage(create_monitor(api, url=URL))
    owner_token = api.token
    other = api.acting_as(charlie)
    assert other.get(f"/v1/incidents/{incident_id}").status == 404
    assert other.post(f"/v1/incidents/{incident_id}/acknowledge").status == 404
    assert other.get("/v1/incidents").json["data"] == []

    viewer = api.acting_as(teammate("bob@example.com", role="viewer"))
    assert viewer.get(f"/v1/incidents/{incident_id}").status == 200
    assert viewer.post(f"/v1/incidents/{incident_id}/acknowledge").status == 403
    assert viewer.post(f"/v1/incidents/{incident_id}/notes", {"text": "hi"}).status == 403
    api.token = owner_token
    assert [e for e in emitted(incident_id) if e[1] is not None] == []  # nothing was changed


def test_deleting_a_team_deletes_its_incidents_timelines_state_and_windows(api, alice):
    team_id = api.post("/v1/teams", {"name": "Shop"}).json["id"]
    api.token = api.post("/v1/auth/switch-team", {"team_id": team_id}).json["access_token"]
    monitor = create_monitor(api, url=URL)
    incident_id = outage(monitor)
    now = utcnow()
    r = api.post(
        "/v1/maintenance-windows",
        {
            "title": "w",
            "monitor_ids": [monitor["id"]],
            "starts_at": isoz(now),
            "ends_at": isoz(now + timedelta(hours=1)),
        },
    )
    assert r.status == 201, r.body
    assert api.delete(f"/v1/teams/{team_id}").status == 204
    assert list(IncidentModel.query(team_id)) == []
    assert list(EventModel.query(incident_id)) == []
    assert list(MonitorStateModel.query(monitor["id"])) == []
    assert list(MaintenanceWindowModel.query(team_id)) == []
    assert list(MonitorModel.query(team_id)) == []


def test_maintenance_entries_on_an_open_incident_are_bounded_like_the_other_repeating_entries(api, alice):
    # found by a fresh-eyes review of issue 19
    """A window made running and deleted at once enters and leaves maintenance at once (lifecycle._sync_maintenance),
    and each crossing writes maintenance_started / maintenance_ended on the open incident.  Those types are not in
    events.REPEATING: any member can grow the timeline (read whole by GET /v1/incidents/{id} and by every status
    page render) without bound, two entries per two requests."""
    monitor = create_monitor(api, url=URL)
    incident_id = open_incident(monitor["team_id"], monitor["id"], utcnow() - timedelta(minutes=2), error="timeout")
    pairs = 60
    for _ in range(pairs):
        now = utcnow()
        body = {
            "title": "Flip",
            "monitor_ids": [monitor["id"]],
            "starts_at": isoz(now - timedelta(minutes=1)),
            "ends_at": isoz(now + timedelta(hours=1)),
        }
        r = api.post("/v1/maintenance-windows", body)
        assert r.status == 201, r.body
        assert api.delete(f"/v1/maintenance-windows/{r.json['id']}").status == 204

    r = api.get(f"/v1/incidents/{incident_id}")
    assert r.status == 200
    assert r.json["status"] != "resolved"
    kinds = [e["type"] for e in r.json["timeline"]]
    maintenance = [k for k in kinds if k.startswith("maintenance_")]
    assert len(maintenance) <= events.FIRST_REPEATS + events.LATEST_REPEATS, (
        f"{len(maintenance)} maintenance entries on one incident ({len(kinds)} entries in all), "
        f"timeline_dropped={r.json['timeline_dropped']}"
    )


def test_the_largest_incident_there_can_be_fits_in_one_lambda_response(api, alice):
    # found by a fresh-eyes review of issue 19: 100 notes of 5,000 emoji answered 6 MB and more; Lambda refuses a
    # response over 6 MB (its envelope, JSON again, counted)
    import json

    from chalicelib.incidents.service import POSTMORTEM_MAX_BYTES

    team_id, me = alice["team"]["id"], alice["user"]["id"]
    incident_id = outage(create_monitor(api, url=URL))
    widest = "😀"  # 12 bytes as JSON escapes it, 14 once escaped again
    longest_note = widest * 2000
    assert api.post(f"/v1/incidents/{incident_id}/notes", {"text": longest_note + "x"}).status == 422
    assert api.post(f"/v1/incidents/{incident_id}/notes", {"text": longest_note}).status == 201
    for _ in range(events.MAX_NOTES - 1):
        incidents.add_note(team_id, incident_id, me, longest_note, utcnow())
    side = widest * (POSTMORTEM_MAX_BYTES // 40)  # as much as the postmortem's stored-size bound lets through
    r = api.put(f"/v1/incidents/{incident_id}/postmortem", {"cause": side, "resolution": side, "impact": side})
    assert r.status in (200, 413, 422), r.body

    r = api.get(f"/v1/incidents/{incident_id}")

    assert r.status == 200
    assert sum(1 for e in r.json["timeline"] if e["type"] == "note") == events.MAX_NOTES
    envelope = json.dumps({"statusCode": 200, "headers": r.headers, "body": r.text, "isBase64Encoded": False})
    assert len(envelope.encode()) < 6 * 1024 * 1024 - 1024, f"{len(envelope.encode()):,} bytes"
