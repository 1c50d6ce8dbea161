"""Opaque, tamper-proof list cursors.

A cursor is ``base64url(json) + "." + base64url(HMAC-SHA256)[:22]`` over where
to resume — the DynamoDB key of a one-query list (:func:`paginate`), or a position
in a list read from several (:func:`decode_position`) — the team it was issued to
and the list it belongs to.  Decoding checks all three, so an edited cursor, or one
issued for another team or list, is a 400 ``invalid_cursor`` — never a read of
someone else's data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from chalicelib.errors import InvalidCursor
from chalicelib.settings import get_settings

MAX_CURSOR_LENGTH = 2048

T = TypeVar("T")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(body: str) -> str:
    key = get_settings().signing_key("cursor")
    return _b64(hmac.new(key, body.encode("ascii"), hashlib.sha256).digest())[:22]


def encode(key: dict[str, Any], *, team_id: str, scope: str) -> str:
    body = _b64(json.dumps({"k": key, "t": team_id, "s": scope}, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_sign(body)}"


def _invalid() -> InvalidCursor:
    return InvalidCursor("The cursor is invalid; start again from the first page.")


def decode(cursor: str, *, team_id: str, scope: str) -> dict[str, Any]:
    invalid = _invalid()
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH or cursor.count(".") != 1 or not cursor.isascii():
        raise invalid
    body, signature = cursor.split(".")
    if not hmac.compare_digest(_sign(body), signature):
        raise invalid
    try:
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError):
        raise invalid from None
    if not isinstance(payload, dict) or payload.get("t") != team_id or payload.get("s") != scope:
        raise invalid
    key = payload.get("k")
    if not isinstance(key, dict):
        raise invalid
    return key


def decode_position(cursor: str, *, team_id: str, scope: str, fields: dict[str, type]) -> dict[str, Any]:
    """A position :func:`encode` wrote (a dict of plain values): exactly ``fields``, each of its type, or a 400."""
    position = decode(cursor, team_id=team_id, scope=scope)
    if set(position) != set(fields) or any(type(position[name]) is not kind for name, kind in fields.items()):
        raise _invalid()
    return position


def page_size(limit: int) -> int:
    """What to ask DynamoDB for: the page and one more item (to know whether there is a next page)."""
    return min(100, limit + 1)


def paginate(
    run: Callable[[dict[str, Any] | None], Iterable[T]],
    *,
    team_id: str,
    scope: str,
    limit: int,
    after: str | None,
    key: tuple[str, ...],
) -> tuple[list[T], str | None]:
    """One page of a list.  ``run(start)`` runs the query from the decoded cursor's key (None: the beginning);
    ``key`` names the (string) attributes DynamoDB needs to resume after an item: the table's keys, and the
    index's when the query reads one.  Returns the page and the next page's cursor (None on the last page)."""
    start = decode(after, team_id=team_id, scope=scope) if after else None
    page, more = take(run(start), limit)
    if not (more and page):
        return page, None
    last = page[-1]
    return page, encode({name: {"S": str(getattr(last, name))} for name in key}, team_id=team_id, scope=scope)


def take(items: Iterable[T], limit: int) -> tuple[list[T], bool]:
    """Up to ``limit`` items, and whether there is at least one more (read lazily: one item past the page)."""
    page: list[T] = []
    for item in items:
        if len(page) == limit:
            return page, True
        page.append(item)
    return page, False
