"""JWT access and refresh tokens, and single-use opaque tokens.

Access and refresh tokens are HS256 JWTs signed with a key derived from
SECRET_KEY.  Decoding allows exactly one algorithm, requires ``exp``, ``iat``,
``sub``, ``sid`` and ``typ``, and checks the type, so a refresh token is never
accepted as an access token (nor ``alg: none``, nor another key).
Opaque tokens (email verification, password reset) are 256 random bits; only
their SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from chalicelib.errors import TokenExpired, TokenInvalid
from chalicelib.settings import Settings

ALGORITHM = "HS256"
ISSUER = "vigil"
ACCESS = "access"
REFRESH = "refresh"


@dataclass(frozen=True)
class TokenClaims:
    user_id: str
    session_id: str
    team_id: str
    kind: str
    generation: int
    expires_at: int


def _key(settings: Settings) -> bytes:
    return settings.signing_key("jwt")


def encode(settings: Settings, claims: TokenClaims, now: datetime) -> str:
    ttl = settings.access_token_ttl_seconds if claims.kind == ACCESS else settings.refresh_token_ttl_seconds
    payload = {
        "iss": ISSUER,
        "sub": claims.user_id,
        "sid": claims.session_id,
        "team": claims.team_id,
        "typ": claims.kind,
        "gen": claims.generation,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl)).timestamp()),
        "jti": secrets.token_urlsafe(12),
    }
    return jwt.encode(payload, _key(settings), algorithm=ALGORITHM)


def decode(settings: Settings, token: str, kind: str, now: datetime) -> TokenClaims:
    try:
        payload = jwt.decode(
            token,
            _key(settings),
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "sid", "typ", "iss"], "verify_exp": False},
        )
    except jwt.PyJWTError:
        raise TokenInvalid("The token is invalid.") from None
    # Expiry is checked against the injected clock rather than PyJWT's wall clock.
    exp = payload.get("exp")
    if not isinstance(exp, int) or exp <= int(now.timestamp()):
        raise TokenExpired("The token has expired.")
    if payload.get("typ") != kind:
        raise TokenInvalid(f"An {kind} token is required.")
    try:
        return TokenClaims(
            user_id=str(payload["sub"]),
            session_id=str(payload["sid"]),
            team_id=str(payload.get("team") or ""),
            kind=kind,
            generation=int(payload.get("gen", 0)),
            expires_at=exp,
        )
    except (TypeError, ValueError):
        raise TokenInvalid("The token is invalid.") from None


def new_opaque_token() -> str:
    return secrets.token_urlsafe(32)


def hash_opaque(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
