"""What is masked of a URL and of a request body, and how what was sent back masked gets its stored value again."""

from __future__ import annotations

import base64

import pytest

from chalicelib.masking import (
    MaskedWithoutValue,
    masked_body,
    masked_url,
    request_secrets,
    restore_body,
    restore_url,
    without_secrets,
)


@pytest.mark.parametrize(
    ("url", "masked", "every_value"),
    [
        ("https://x.example/a", "https://x.example/a", "https://x.example/a"),
        (
            "https://x.example/a?token=abc&page=2&Api-Key=k&sig=s&code=c",
            "https://x.example/a?token=********&page=2&Api-Key=********&sig=********&code=********",
            "https://x.example/a?token=********&page=********&Api-Key=********&sig=********&code=********",
        ),
        # kept as written (no re-encoding), empty values left empty, a bare word a value for those who see none
        (
            "https://x.example/?client%5Fsecret=a%20b&q=x+y&empty=&s3cr3t",
            "https://x.example/?client%5Fsecret=********&q=x+y&empty=&s3cr3t",
            "https://x.example/?client%5Fsecret=********&q=********&empty=&********",
        ),
    ],
)
def test_it_masks_credential_like_query_values_or_every_one(url, masked, every_value):
    assert masked_url(url) == masked
    assert masked_url(url, every_value=True) == every_value


def test_a_masked_query_value_sent_back_keeps_the_stored_value_of_that_parameter():
    stored = "https://x.example/a?token=one&page=2&token=two"
    assert restore_url(masked_url(stored), stored) == stored
    sent = "https://x.example/b?page=3&token=********&token=********&token=new"
    assert restore_url(sent, stored) == "https://x.example/b?page=3&token=one&token=two&token=new"
    for nothing_to_keep in ("https://x.example/?key=********", "https://x.example/?token=a&token=b&token=********"):
        with pytest.raises(MaskedWithoutValue):
            restore_url(nothing_to_keep, stored)
    with pytest.raises(MaskedWithoutValue):
        restore_url(masked_url(stored), "")  # another receiver: nothing stored is kept


@pytest.mark.parametrize(
    ("body", "masked"),
    [
        (None, None),
        ("", ""),
        ("plain text with password=hunter2 in it", "plain text with password=hunter2 in it"),
        ("<login><password>x</password></login>", "<login><password>x</password></login>"),
        ('"a JSON string"', '"a JSON string"'),
        ("user=probe&password=hunter%202&pin=1234", "user=probe&password=********&pin=********"),
        (
            '{"user": "probe", "Password" :\n "hu\\"nt:er2", "n": {"apiKey": 1234, "list": [{"token":"t"}]}}',
            '{"user": "probe", "Password" :\n "********", "n": {"apiKey": "********", "list": [{"token":"********"}]}}',
        ),
        # a key's name inside a value is not a key; an empty, null, boolean or object value is not a secret
        (
            '{"note": "token: x", "secret": "", "auth": null, "sig": true, "session": {"id": "s"}}',
            '{"note": "token: x", "secret": "", "auth": null, "sig": true, "session": {"id": "s"}}',
        ),
    ],
)
def test_it_masks_the_values_of_credential_like_keys_of_a_json_or_form_body_only(body, masked):
    assert masked_body(body) == masked
    assert restore_body(masked, body) == body


def test_a_masked_body_or_field_sent_back_keeps_the_stored_one():
    stored = '{"user": "probe", "password": "hunter2", "pin": 1234}'
    assert restore_body("********", stored) == stored
    sent = '{"password":"********","user":"other","pin":"********","otp":"new"}'
    assert restore_body(sent, stored) == '{"password":"hunter2","user":"other","pin":1234,"otp":"new"}'
    assert restore_body("a=1&password=********", "password=p%20w&a=0") == "a=1&password=p%20w"
    for nothing_to_keep in ('{"password": "********", "otp": "********"}', "password=********"):
        with pytest.raises(MaskedWithoutValue):
            restore_body(nothing_to_keep, stored)
    with pytest.raises(MaskedWithoutValue):
        restore_body("********", None)


# found by a fresh-eyes review of issue 19: what a check's target echoes was redacted of its headers' values only


def test_a_requests_credentials_are_its_secret_headers_query_and_body_values_in_every_form_sent():
    basic = "Basic " + base64.b64encode(b"probe:basic-pass-77").decode()
    secrets = request_secrets(
        "https://x.example/a?api%5Fkey=url%2Bsecret&page=2",
        (("Authorization", basic), ("X-Tenant", "tenant-0004")),
        "user=probe&password=form-secret-9&n=3",
    )
    assert set(secrets) == {
        basic,
        basic.split()[1],
        "probe:basic-pass-77",
        "basic-pass-77",
        "url%2Bsecret",
        "url+secret",
        "form-secret-9",
    }
    assert request_secrets("https://x.example/", (), '{"user": "u", "pin": 123456, "token": "a\\/b"}') == [
        "123456",
        "a/b",
    ]


def test_a_secret_quoted_cut_short_is_redacted_where_it_is_cut():
    token = "0123456789abcdef" * 5
    assert without_secrets(f"(got '{token[:40]}…') and '{token[:9]}…'", [token]) == (
        "(got '[redacted]…') and '[redacted]…'"
    )
    assert without_secrets("an ellipsis… alone", [token]) == "an ellipsis… alone"
