"""Password policy and hashing.

bcrypt reads at most 72 bytes and bcrypt 5 refuses longer input, so every
password is first reduced to a fixed 44-byte value (base64 of its SHA-256):
long passphrases keep all their entropy and nothing is silently truncated.
The stored form names its scheme, ``bcrypt-sha256$<bcrypt hash>``, so the
scheme can change later without guessing.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from typing import Annotated

import bcrypt
from zxcvbn import zxcvbn

from chalicelib.errors import ValidationFailed
from chalicelib.schema import published

SCHEME = "bcrypt-sha256$"
MIN_LENGTH = 8
MAX_LENGTH = 1024  # bounds the work a single request can ask of the server
MIN_GUESSES = 10**6  # zxcvbn's estimate: below this, the password is in the common lists or close to it

# A new password in a request: check_policy refuses it, the API's schema publishes the lengths it checks.
NewPassword = Annotated[str, published(minLength=MIN_LENGTH, maxLength=MAX_LENGTH)]


def check_policy(password: str, *, field: str = "password", user_inputs: tuple[str, ...] = ()) -> None:
    """Refuse short, overlong and very common passwords, naming the field."""
    if len(password) < MIN_LENGTH:
        raise ValidationFailed.single(field, f"must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise ValidationFailed.single(field, f"must be at most {MAX_LENGTH} characters")
    # zxcvbn's cost grows with length; a long password is never "very common".
    if len(password) <= 64 and zxcvbn(password, user_inputs=list(user_inputs))["guesses"] < MIN_GUESSES:
        raise ValidationFailed.single(field, "is too common or too easy to guess; choose a longer, less common one")


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password: str, rounds: int) -> str:
    hashed = bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds=rounds))
    return SCHEME + hashed.decode("ascii")


def verify_password(password: str, stored: str) -> bool:
    if not stored.startswith(SCHEME) or len(password) > MAX_LENGTH:
        return False
    return bcrypt.checkpw(_prehash(password), stored[len(SCHEME) :].encode("ascii"))


@lru_cache(maxsize=4)
def _dummy_hash(rounds: int) -> str:
    return hash_password("vigil-dummy-password-for-timing", rounds)


def burn_equal_time(password: str, rounds: int) -> None:
    """Spend what a real verification costs, so an unknown email answers in the same time as a wrong password."""
    verify_password(password, _dummy_hash(rounds))


def cost_of(stored: str) -> int:
    return int(stored[len(SCHEME) :].split("$")[2])
