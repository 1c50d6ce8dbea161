"""Forged and misused tokens → 401 problem+json."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from tests.support import register


@pytest.fixture
def tokens(api):
    """Alice's sign-in; the client itself sends no token unless told to."""
    return register(api, "alice@example.com")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _assert_401(api, token: str) -> None:
    r = api.get("/v1/me", token=token)
    assert r.status == 401, r.body
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json["status"] == 401
    assert "www-authenticate" in r.headers


def test_alg_none_is_refused(api, tokens):
    forged = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(_claims(tokens["access_token"])) + "."
    _assert_401(api, forged)


def test_tampered_claims_are_refused(api, tokens):
    header, _, signature = tokens["access_token"].split(".")
    claims = _claims(tokens["access_token"])
    claims["sub"] = "usr_someone_else"
    _assert_401(api, f"{header}.{_b64(claims)}.{signature}")


def test_a_token_signed_with_another_key_is_refused(api, tokens):
    claims = _claims(tokens["access_token"])
    _assert_401(api, jwt.encode(claims, "another-key-that-is-long-enough-for-hs256!", algorithm="HS256"))


def test_hs256_signed_with_the_public_nothing_or_other_algorithms_is_refused(api, tokens):
    claims = _claims(tokens["access_token"])
    _assert_401(api, jwt.encode(claims, "another-key-that-is-long-enough-for-hs512!" * 2, algorithm="HS512"))


def test_expired_token_is_refused(api, tokens, settings):
    claims = _claims(tokens["access_token"])
    claims["exp"] = claims["iat"] - 1
    _assert_401(api, jwt.encode(claims, settings.signing_key("jwt"), algorithm="HS256"))


def test_refresh_token_as_access_is_refused(api, tokens):
    _assert_401(api, tokens["refresh_token"])


def test_garbage_and_missing_headers_are_refused(api, tokens):
    for token in ("", "x", "a.b.c", "vgl_notakey", "Bearer"):
        _assert_401(api, token)
    r = api.get("/v1/me", headers={"authorization": "Basic YWxpY2U6cGFzcw=="})
    assert r.status == 401
    r = api.get("/v1/me")
    assert r.status == 401


def test_a_validly_signed_token_for_an_unknown_session_is_refused(api, tokens, settings):
    claims = _claims(tokens["access_token"])
    claims["sid"] = "ses_forged"
    _assert_401(api, jwt.encode(claims, settings.signing_key("jwt"), algorithm="HS256"))
