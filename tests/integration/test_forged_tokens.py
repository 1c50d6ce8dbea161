"""Forged and misused tokens → 401 problem+json.

A token re-signed here with the real key is accepted first, beside each refusal: the refusal is then for what the
test changed (the algorithm, the expiry, the session), not for a signature this file got wrong."""

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


def _raw_b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64(data: dict) -> str:
    return _raw_b64(json.dumps(data).encode())


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _signed(settings, claims: dict, algorithm: str = "HS256") -> str:
    """``claims`` signed with the key Vigil signs its own tokens with."""
    return jwt.encode(claims, settings.signing_key("jwt"), algorithm=algorithm)


def _assert_accepted(api, token: str) -> None:
    r = api.get("/v1/me", token=token)
    assert r.status == 200, r.body


def _assert_401(api, token: str, code: str | None = "token_invalid") -> None:
    r = api.get("/v1/me", token=token)
    assert r.status == 401, r.body
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json["status"] == 401
    assert code is None or r.json["code"] == code, r.body
    assert "www-authenticate" in r.headers


def test_alg_none_is_refused(api, tokens):
    _assert_accepted(api, tokens["access_token"])
    forged = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(_claims(tokens["access_token"])) + "."
    _assert_401(api, forged)
    _assert_401(api, jwt.encode(_claims(tokens["access_token"]), None, algorithm="none"))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the forger's choice of hash
@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_only_hs256_is_accepted_even_signed_with_the_real_key(api, tokens, settings, algorithm):
    """The algorithm is pinned, not read from the token's header: the same claims, the same key, another HMAC."""
    claims = _claims(tokens["access_token"])
    _assert_accepted(api, _signed(settings, claims))
    _assert_401(api, _signed(settings, claims, algorithm))


def test_tampered_claims_are_refused(api, tokens):
    """One claim changed in the signed bytes themselves (re-serialising the claims would change the bytes, and be
    refused whatever they said)."""
    token = tokens["access_token"]
    header, payload, signature = token.split(".")
    signed = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert f"{header}.{_raw_b64(signed)}.{signature}" == token
    _assert_accepted(api, token)
    tampered = signed.replace(_claims(token)["sub"].encode(), b"usr_someone_else")
    assert tampered != signed
    _assert_401(api, f"{header}.{_raw_b64(tampered)}.{signature}")


def test_a_token_signed_with_another_key_is_refused(api, tokens):
    claims = _claims(tokens["access_token"])
    _assert_401(api, jwt.encode(claims, "another-key-that-is-long-enough-for-hs256!", algorithm="HS256"))


def test_expired_token_is_refused(api, tokens, settings):
    claims = _claims(tokens["access_token"])
    _assert_accepted(api, _signed(settings, claims))
    claims["exp"] = claims["iat"] - 1
    _assert_401(api, _signed(settings, claims), "token_expired")


def test_refresh_token_as_access_is_refused(api, tokens):
    _assert_accepted(api, tokens["access_token"])
    _assert_401(api, tokens["refresh_token"])


def test_garbage_and_missing_headers_are_refused(api, tokens):
    for token in ("", "x", "a.b.c", "vgl_notakey", "Bearer"):
        _assert_401(api, token, code=None)
    r = api.get("/v1/me", headers={"authorization": "Basic YWxpY2U6cGFzcw=="})
    assert r.status == 401
    r = api.get("/v1/me")
    assert r.status == 401
    _assert_accepted(api, tokens["access_token"])


def test_a_validly_signed_token_for_an_unknown_session_is_refused(api, tokens, settings):
    claims = _claims(tokens["access_token"])
    _assert_accepted(api, _signed(settings, claims))
    claims["sid"] = "ses_forged"
    _assert_401(api, _signed(settings, claims), "session_revoked")
