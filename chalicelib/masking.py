"""What a reader is shown instead of a secret, and how a secret sent back masked keeps its stored value.

Monitors mask credential-like request headers, URL query values and values of a JSON or form body; alert channels
mask webhook headers, URL tokens and keys.  Both read and write the same mask, so a client may send back what it
read and keep what is stored.  Which names are credential-like is decided here, once.
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

MASK = "********"
SENSITIVE_HEADER_WORDS = ("auth", "token", "secret", "key", "cookie", "password", "session", "signature")
# Query, form and JSON names short enough to be missed by the words above, each a credential whole.
SENSITIVE_NAMES = frozenset(("sig", "code", "pass", "pwd", "passwd", "jwt", "hmac", "otp", "pin"))
# A JSON string, and the scalar values a credential can be (a string or a number, as a PIN).
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_SCALAR = re.compile(r'"(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*')
_JSON_COLON = re.compile(r"[ \t\r\n]*:[ \t\r\n]*")
_FORM_NAME = re.compile(r"^[A-Za-z0-9_.~%+\[\]-]+$")


class MaskedWithoutValue(ValueError):
    """A value was sent masked where there is no stored value for it to keep."""


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port: a stored credential is kept only for the receiver it was given for."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def is_sensitive_header(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SENSITIVE_HEADER_WORDS)


def is_sensitive_name(name: str) -> bool:
    """A query parameter, form field or JSON key whose value is a credential by its name."""
    return is_sensitive_header(name) or name.lower() in SENSITIVE_NAMES


def masked_headers(headers: dict[str, str], *, every_value: bool = False) -> dict[str, str]:
    return {k: (MASK if every_value or is_sensitive_header(k) else v) for k, v in headers.items()}


def restore_masked(sent: dict[str, str], stored: dict[str, str]) -> dict[str, str]:
    """``sent`` with each value sent back as the mask replaced by the stored value of the same header; a masked
    value with no stored value to keep raises :class:`MaskedWithoutValue` (the mask is never stored)."""
    restored = {k: (stored.get(k, v) if v == MASK else v) for k, v in sent.items()}
    if any(v == MASK for v in restored.values()):
        raise MaskedWithoutValue("a masked value can only keep an existing one")
    return restored


def masked_query(query: str, *, every_value: bool = False) -> str:
    """``token=abc&page=2`` → ``token=********&page=2``: credential-like values (or, with ``every_value``, every
    value and every bare word) masked, the rest kept as written."""
    out = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if every_value and part and not eq:
            part = MASK  # a bare word can be a token whole (``?s3cr3t``)
        elif value and (every_value or is_sensitive_name(unquote_plus(name))):
            part = f"{name}={MASK}"
        out.append(part)
    return "&".join(out)


def restore_query(sent: str, stored: str) -> str:
    """``sent`` with each value sent as the mask replaced by the stored value of the same parameter (the n-th
    ``token=`` keeps the n-th stored one); :class:`MaskedWithoutValue` when there is none."""
    kept: dict[str, list[str]] = {}
    for part in stored.split("&"):
        name, eq, value = part.partition("=")
        if eq:
            kept.setdefault(name, []).append(value)
    seen: Counter[str] = Counter()
    out = []
    for part in sent.split("&"):
        name, eq, value = part.partition("=")
        index = seen[name]
        seen[name] += 1
        if eq and value == MASK:
            values = kept.get(name, [])
            if index >= len(values):
                raise MaskedWithoutValue(f"no stored value of {name} to keep")
            part = f"{name}={values[index]}"
        out.append(part)
    return "&".join(out)


def masked_url(url: str, *, every_value: bool = False) -> str:
    """The URL with its credential-like query values (or every query value) masked."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    return urlunsplit(parts._replace(query=masked_query(parts.query, every_value=every_value)))


def restore_url(sent: str, stored: str) -> str:
    """``sent`` with each query value sent as the mask replaced by ``stored``'s value of that parameter (pass
    ``""`` when nothing stored may be kept: another receiver)."""
    parts = urlsplit(sent)
    if MASK not in parts.query:
        return sent
    query = restore_query(parts.query, urlsplit(stored).query if stored else "")
    return urlunsplit(parts._replace(query=query))


def _json_values(body: str) -> list[tuple[str, int, int]] | None:
    """The scalar values of credential-like keys in a JSON body, as (key, start, end) spans of the text, in order;
    None when the body is not a JSON object or array.  The text is never re-serialized: what is not masked is sent
    byte for byte as written."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict | list):
        return None
    spans = []
    # In valid JSON a quote outside a string opens one, so scanning strings from the start finds every string.
    for token in _JSON_STRING.finditer(body):
        colon = _JSON_COLON.match(body, token.end())
        if colon is None or not is_sensitive_name(json.loads(token.group())):
            continue  # a value, or the key of something else
        value = _JSON_SCALAR.match(body, colon.end())
        if value is not None and value.group() != '""':
            spans.append((json.loads(token.group()), value.start(), value.end()))
    return spans


def _is_form(body: str) -> bool:
    """``a=1&b=2``: every part a name and ``=``, nothing else (a plain text body is not one)."""
    if any(c.isspace() for c in body.strip()):
        return False
    return all("=" in p and _FORM_NAME.match(p.partition("=")[0]) for p in body.split("&"))


def masked_body(body: str | None) -> str | None:
    """A request body with the values of credential-like keys of a JSON body or fields of a form body masked;
    another body (plain text, XML, …) as it is."""
    if not body:
        return body
    spans = _json_values(body)
    if spans is not None:
        return _splice(body, [(start, end, json.dumps(MASK)) for _, start, end in spans])
    return masked_query(body) if _is_form(body) else body


def restore_body(sent: str | None, stored: str | None) -> str | None:
    """``sent`` with what was sent masked replaced by ``stored``'s: the whole body sent as the mask (as those who
    cannot edit read it) keeps the stored body; a JSON key's or a form field's masked value keeps the stored value
    of that key (its n-th occurrence keeps the n-th); :class:`MaskedWithoutValue` when there is none (pass
    ``None`` when nothing stored may be kept: another receiver)."""
    if sent is None or MASK not in sent:
        return sent
    if sent == MASK:
        if not stored:
            raise MaskedWithoutValue("no stored body to keep")
        return stored
    spans = _json_values(sent)
    if spans is None:
        return restore_query(sent, stored or "") if _is_form(sent) else sent
    kept: dict[str, list[str]] = {}
    for key, start, end in _json_values(stored or "") or []:
        kept.setdefault(key, []).append((stored or "")[start:end])
    seen: Counter[str] = Counter()
    restored = []
    for key, start, end in spans:
        index = seen[key]
        seen[key] += 1
        if sent[start:end] != json.dumps(MASK):
            continue
        if index >= len(kept.get(key, [])):
            raise MaskedWithoutValue(f"no stored value of {key} to keep")
        restored.append((start, end, kept[key][index]))
    return _splice(sent, restored)


def _splice(text: str, spans: list[tuple[int, int, str]]) -> str:
    """``text`` with each (start, end) span, in order and apart, replaced by its string."""
    pieces, at = [], 0
    for start, end, value in spans:
        pieces += [text[at:start], value]
        at = end
    return "".join([*pieces, text[at:]])


REDACTED = "[redacted]"


def without_secrets(text: str, secrets: list[str]) -> str:
    """``text`` with each of ``secrets`` (6 characters or more) replaced — as sent, JSON-escaped or percent-encoded —
    and a secret's beginning at the very end of it (the rest cut off) too: a target or a receiver that echoes what
    it was sent shows no one the credential it was sent with."""
    forms = {f for s in secrets if s and len(s) >= 6 for f in (s, s.replace("/", "\\/"), quote(s, safe=""), quote(s))}
    ordered = sorted(forms, key=len, reverse=True)
    for form in ordered:
        text = text.replace(form, REDACTED)
    for form in ordered:
        cut = next((k for k in range(len(form) - 1, 3, -1) if text.endswith(form[:k])), 0)
        if cut:
            text = text[:-cut] + REDACTED
        if ELLIPSIS in text:  # found by a fresh-eyes review of issue 19: a value quoted cut short, "…" after it
            for k in range(len(form) - 1, 3, -1):
                text = text.replace(form[:k] + ELLIPSIS, REDACTED + ELLIPSIS)
    return text


ELLIPSIS = "…"  # where a quoted value is cut short (``checks.assertions``)


def request_secrets(url: str, headers: tuple[tuple[str, str], ...], body: str | None) -> list[str]:
    """The credentials a request carries, as :func:`without_secrets` takes them: the values of credential-like
    headers (a scheme's token too, and a Basic one's user and password decoded), URL query values and JSON or form
    body values (what those who may change a monitor read masked)."""
    found: list[str] = []
    for name, value in headers:
        if not is_sensitive_header(name):
            continue
        found += [value, value.split()[-1] if value.split() else ""]
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if not token:
            continue
        found.append(token)
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(token, validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                continue
            found += [decoded, decoded.partition(":")[2]]
    for part in urlsplit(url).query.split("&"):
        name, eq, value = part.partition("=")
        if eq and value and is_sensitive_name(unquote_plus(name)):
            found += [value, unquote_plus(value)]
    if body:
        spans = _json_values(body)
        if spans is not None:
            for _, start, end in spans:
                value = json.loads(body[start:end])
                found.append(value if isinstance(value, str) else body[start:end])
        elif _is_form(body):
            found += request_secrets("?" + body, (), None)
    return [value for value in dict.fromkeys(found) if value]
