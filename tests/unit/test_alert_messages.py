"""The alerts queue's messages: the exact bytes on the wire (messages already queued must still decode), and
malformed bodies refused with an error that says what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.alerts.queue import (
    Deliver,
    Flush,
    MalformedMessage,
    PasswordReset,
    UnknownOp,
    decode_message,
    encode_message,
)

MINUTE = datetime(2026, 11, 30, 14, 2, tzinfo=UTC)

# Bodies exactly as the alerts queue has carried them (compact JSON, keys in this order).
WIRE = [
    (
        Deliver("ch_1", "dlv_1", 1),
        '{"op":"deliver","target":"ch_1","delivery_id":"dlv_1","attempt":1}',
    ),
    (
        Deliver("member:usr_1", "dlv_2", 3, datetime(2026, 11, 30, 14, 9, 30, 250000, tzinfo=UTC)),
        '{"op":"deliver","target":"member:usr_1","delivery_id":"dlv_2","attempt":3,'
        '"not_before":"2026-11-30T14:09:30.250000+00:00"}',
    ),
    (
        Flush("group#ch_1#incident.opened#2026-11-30T14:02", "ch_1", "team_1", "incident.opened", MINUTE),
        '{"op":"flush","key":"group#ch_1#incident.opened#2026-11-30T14:02","target":"ch_1","team_id":"team_1",'
        '"event":"incident.opened","at":"2026-11-30T14:02:00+00:00"}',
    ),
    (
        PasswordReset("alice@example.com", datetime(2026, 11, 30, 14, 2, 5, 500000, tzinfo=UTC)),
        '{"op":"password_reset","email":"alice@example.com","at":"2026-11-30T14:02:05.500000+00:00"}',
    ),
]


@pytest.mark.parametrize(("message", "body"), WIRE)
def test_it_encodes_the_body_queued_today(message, body):
    assert encode_message(message) == body


@pytest.mark.parametrize(("message", "body"), WIRE)
def test_it_decodes_the_body_queued_today(message, body):
    assert decode_message(body) == message


def test_it_sends_not_before_in_utc():
    local = datetime.fromisoformat("2026-11-30T15:09:30+01:00")
    body = encode_message(Deliver("ch_1", "dlv_1", 2, local))
    assert body.endswith(',"not_before":"2026-11-30T14:09:30+00:00"}')
    assert decode_message(body).not_before == local


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("", "not JSON"),
        ("{", "not JSON"),
        ('["deliver"]', "not a JSON object: list"),
        ('{"op":"deliver","delivery_id":"dlv_1","attempt":1}', "target must be a non-empty string, not None"),
        ('{"op":"deliver","target":"","delivery_id":"dlv_1","attempt":1}', "target must be a non-empty string"),
        ('{"op":"deliver","target":"ch_1","delivery_id":7,"attempt":1}', "delivery_id must be a non-empty string"),
        ('{"op":"deliver","target":"ch_1","delivery_id":"dlv_1"}', "attempt must be an integer, not None"),
        ('{"op":"deliver","target":"ch_1","delivery_id":"dlv_1","attempt":"1"}', "attempt must be an integer"),
        ('{"op":"deliver","target":"ch_1","delivery_id":"dlv_1","attempt":true}', "attempt must be an integer"),
        (
            '{"op":"deliver","target":"ch_1","delivery_id":"dlv_1","attempt":1,"not_before":"tomorrow"}',
            "not_before is not an ISO time: 'tomorrow'",
        ),
        ('{"op":"flush","key":"k","target":"ch_1","team_id":"team_1","event":"incident.opened"}', "at must be"),
        ('{"op":"flush","target":"ch_1","team_id":"t","event":"e","at":"2026-11-30T14:02:00+00:00"}', "key must"),
    ],
)
def test_it_refuses_a_malformed_body_saying_why(body, problem):
    with pytest.raises(MalformedMessage, match="alert message") as caught:
        decode_message(body)
    assert problem in str(caught.value)
    assert not isinstance(caught.value, UnknownOp)


@pytest.mark.parametrize(("body", "op"), [('{"op":"resend"}', "resend"), ("{}", None), ('{"op":[1]}', [1])])
def test_it_names_an_op_it_does_not_know(body, op):
    with pytest.raises(UnknownOp) as caught:
        decode_message(body)
    assert caught.value.op == op
