"""Secrets at rest, sealed: envelope encryption under the stage's KMS key (``alias/<TablePrefix>secrets``).

A secret is stored as a *sealed* value, ``vgs1.<wrapped data key>.<nonce>.<ciphertext>``: AES-256-GCM under a data
key KMS made (``GenerateDataKey``) and wrapped for one *purpose* — the KMS encryption context ``{"purpose": …}``,
by which IAM grants each function the decryption it needs and no other — with the purpose, the team, the record and
the field as associated data: a value copied into another team's item, another record or another field does not
open (:class:`Unreadable`), and nothing is sent with it.

KMS is asked about keys, never about items (each call costs, and the scheduler opens every monitor's credentials
every minute):

1. Sealing uses its purpose's current data key: one for the whole stage, kept wrapped in the ``data_keys`` table and
   replaced after :data:`ROTATE_AFTER` by the first writer to find it old (a conditional write: one wins, the others
   take its key).  A process keeps it :data:`CURRENT_FOR_S`.
2. Opening unwraps a value's data key with one KMS ``Decrypt`` and keeps it :data:`OPENED_FOR_S`: a process asks
   KMS once a quarter hour for each data key in use — one a month of writes — however many values it opens.
3. When KMS does not answer (throttled, down, out of reach), it is not asked again for :data:`KMS_PAUSE_S`, and a
   key kept past its time (up to :data:`BRIDGE_S`) bridges the gap: the scheduler's checks go on through a KMS
   outage.  A key KMS refuses (turned off, its use denied) is never bridged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chalicelib import errors
from chalicelib.aws import names
from chalicelib.aws.clients import client
from chalicelib.clock import utcnow
from chalicelib.ids import new_id
from chalicelib.observability import logger
from chalicelib.sealing.models import DataKeyModel
from chalicelib.settings import get_settings
from chalicelib.storage.base import condition_failed

ALERT_CHANNEL = "alert-channel"  # a channel's config: webhook secrets and headers, chat URLs, PagerDuty keys
MONITOR_HEADERS = "monitor-headers"  # a monitor's credential headers
PURPOSES = (ALERT_CHANNEL, MONITOR_HEADERS)
PREFIX = "vgs1."
ROTATE_AFTER = timedelta(days=30)  # AES-GCM's random nonces allow 2**32 values a key: a month's writes are far fewer
CURRENT_FOR_S = 300.0
OPENED_FOR_S = 900.0
MAX_OPENED = 256  # data keys kept open in a process (there is one a month of writes per purpose)
NONCE_BYTES = 12
KMS_PAUSE_S = 60.0  # KMS is left alone this long after it failed to answer
BRIDGE_S = 3600.0  # meanwhile, a key kept is used up to this long past its time
# What KMS answers for a wrapped key that is not its own, or not for this purpose: the value cannot open, ever.
NOT_OURS = ("InvalidCiphertextException", "IncorrectKeyException")
# What it answers when the key was turned off, or its use is not granted: nothing kept stands in for it.
REFUSED = ("AccessDeniedException", "DisabledException", "KMSInvalidStateException", "NotFoundException")


class Unreadable(Exception):
    """A sealed value that does not open here: copied from another team, record, field or purpose, or damaged."""


class KmsUnavailable(errors.ServiceUnavailable):
    """KMS did not answer (now or a moment ago), and no key kept can stand in: try again later (an API caller gets a
    503 with ``Retry-After``, not a 500)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": str(int(KMS_PAUSE_S))})


@dataclass(frozen=True)
class _Key:
    key_id: str
    wrapped: bytes
    plaintext: bytes = field(repr=False)


_lock = threading.Lock()
_current: dict[str, tuple[_Key, float]] = {}  # purpose → its current key, until (time.time: the clock tests travel)
_opened: dict[bytes, tuple[bytes, float]] = {}  # digest of (purpose, wrapped key) → the data key, until
_paused_until = [0.0]  # KMS is not asked before then (it did not answer)


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def seal(purpose: str, value: str, *, team_id: str, record: str) -> str:
    """``value`` sealed for ``purpose``, bound to the team and the record (``<id>`` or ``<id>/<field>``)."""
    key = _current_key(purpose)
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key.plaintext).encrypt(nonce, value.encode(), _bound_to(purpose, team_id, record))
    return PREFIX + ".".join(_b64(part) for part in (key.wrapped, nonce, sealed))


def unseal(purpose: str, value: str, *, team_id: str, record: str) -> str:
    """The secret a sealed value holds, if it was sealed for this purpose, team and record; else
    :class:`Unreadable`.  KMS refusing the key, or out of reach with no key kept to bridge it (:class:`KmsUnavailable`),
    is raised as it is: nothing here says the value is bad."""
    try:
        wrapped, nonce, sealed = (_unb64(part) for part in value.removeprefix(PREFIX).split("."))
    except (ValueError, binascii.Error):
        raise Unreadable("not a sealed value") from None
    key = _unwrap(purpose, wrapped)
    try:
        return AESGCM(key).decrypt(nonce, sealed, _bound_to(purpose, team_id, record)).decode()
    except (InvalidTag, ValueError):
        raise Unreadable("sealed for another team, record or field") from None


def forget_keys() -> None:
    """Drop every key this process holds (each test starts with an empty AWS, and so with other keys)."""
    with _lock:
        _current.clear()
        _opened.clear()
        _paused_until[0] = 0.0


def _bound_to(purpose: str, team_id: str, record: str) -> bytes:
    return json.dumps([PREFIX, purpose, team_id, record]).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _kms() -> Any:
    return client("kms", get_settings().home_region, fast=True)  # a tick cannot wait long for one monitor


def _context(purpose: str) -> dict[str, str]:
    if purpose not in PURPOSES:
        raise ValueError(f"no such purpose: {purpose!r}")
    return {"purpose": purpose}


def _unwrap(purpose: str, wrapped: bytes) -> bytes:
    """The plaintext data key: kept, or one KMS ``Decrypt`` under the purpose's encryption context."""
    digest = _digest(purpose, wrapped)
    now = time.time()
    with _lock:
        found = _opened.get(digest)
    if found is not None and found[1] > now:
        return found[0]
    if now < _paused_until[0]:
        return _bridged(
            found,
            KmsUnavailable(
                "Secrets cannot be opened right now (the key service did not answer a moment ago); try again."
            ),
            now,
        )
    try:
        answer = _kms().decrypt(
            CiphertextBlob=wrapped, KeyId=names.secrets_key(get_settings()), EncryptionContext=_context(purpose)
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in NOT_OURS:
            raise Unreadable("its data key is not this stage's, or not for this purpose") from None
        if code in REFUSED:
            raise
        return _bridged(found, exc, now, pause=True)
    except BotoCoreError as exc:  # no answer at all: a timeout, the network
        return _bridged(found, exc, now, pause=True)
    _keep(digest, bytes(answer["Plaintext"]), now)
    return bytes(answer["Plaintext"])


def _bridged(found: tuple[bytes, float] | None, exc: Exception, now: float, *, pause: bool = False) -> bytes:
    """KMS did not answer: the key kept past its time, if not by more than :data:`BRIDGE_S`; else ``exc``."""
    if pause:
        with _lock:
            _paused_until[0] = now + KMS_PAUSE_S
    if found is None or now - found[1] > BRIDGE_S:
        if isinstance(exc, KmsUnavailable):
            raise exc
        raise KmsUnavailable("Secrets cannot be opened right now (the key service did not answer); try again.") from exc
    if pause:
        logger.warning("KMS did not answer: data keys kept are used a while longer", extra={"error": repr(exc)})
    return found[0]


def _digest(purpose: str, wrapped: bytes) -> bytes:
    return hashlib.sha256(purpose.encode() + b"\0" + wrapped).digest()


def _keep(digest: bytes, plaintext: bytes, now: float) -> None:
    with _lock:
        if len(_opened) >= MAX_OPENED:
            for stale in [d for d, (_, until) in _opened.items() if until <= now] or [min(_opened, key=_until)]:
                del _opened[stale]
        _opened[digest] = (plaintext, now + OPENED_FOR_S)


def _until(digest: bytes) -> float:
    return _opened[digest][1]


def _current_key(purpose: str) -> _Key:
    now = time.time()
    with _lock:
        found = _current.get(purpose)
    if found is not None and found[1] > now:
        return found[0]
    key = _stage_key(purpose)
    with _lock:
        _current[purpose] = (key, now + CURRENT_FOR_S)
    return key


def _stage_key(purpose: str) -> _Key:
    """The purpose's current data key, from the table; a new one when there is none or it is older than
    :data:`ROTATE_AFTER` (compare-and-set on its id: when another writer replaced it first, its key is taken)."""
    for _ in range(3):
        try:
            item: DataKeyModel | None = DataKeyModel.get(purpose, consistent_read=True)
        except DataKeyModel.DoesNotExist:
            item = None
        if item is not None and utcnow() - item.created_at < ROTATE_AFTER:
            wrapped = bytes(item.wrapped)
            return _Key(item.key_id, wrapped, _unwrap(purpose, wrapped))
        try:
            made = _kms().generate_data_key(
                KeyId=names.secrets_key(get_settings()), KeySpec="AES_256", EncryptionContext=_context(purpose)
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in REFUSED:
                raise
            raise KmsUnavailable(
                "Secrets cannot be sealed right now (the key service did not answer); try again."
            ) from exc
        except BotoCoreError as exc:  # no answer at all: a timeout, the network
            raise KmsUnavailable(
                "Secrets cannot be sealed right now (the key service did not answer); try again."
            ) from exc
        key = _Key(new_id("dk"), bytes(made["CiphertextBlob"]), bytes(made["Plaintext"]))
        fresh = DataKeyModel(purpose, key_id=key.key_id, wrapped=key.wrapped, created_at=utcnow())
        try:
            fresh.save(
                condition=DataKeyModel.purpose.does_not_exist() if item is None else DataKeyModel.key_id == item.key_id
            )
        except Exception as exc:
            if condition_failed(exc):
                continue  # another writer replaced it first: read theirs
            raise
        _keep(_digest(purpose, key.wrapped), key.plaintext, time.time())
        return key
    raise RuntimeError(f"the {purpose} data key kept changing while it was read")
