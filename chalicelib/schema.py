"""The shared request types: the base of every request model and the field types that carry a rule.

Any layer may use them (the API's request models, the alert kinds' config models): they depend on pydantic and
on :mod:`chalicelib.text`, nothing else.  Each rule is published in the models' JSON Schema (so in the OpenAPI
document) from the same definition that enforces it: a client or a fuzzer that follows the schema is not refused
for a rule the schema did not say.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue, WithJsonSchema
from pydantic_core import CoreSchema

from chalicelib.text import LINE_BREAKS, NOT_A_LINE, NOT_TEXT, UNSEEN


@dataclass(frozen=True)
class Published:
    """JSON Schema keywords that say what a type's validator enforces, added to the type's own schema."""

    keywords: tuple[tuple[str, Any], ...]  # hashable, as an annotation's metadata must be: lists as tuples

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: Any) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update((key, list(value) if isinstance(value, tuple) else value) for key, value in self.keywords)
        return dict(schema)


def published(**keywords: Any) -> Published:
    return Published(tuple((key, tuple(v) if isinstance(v, list) else v) for key, v in keywords.items()))


@dataclass(frozen=True)
class DocumentedAs:
    """Publish a field as another type's schema when its own validation happens later, in the model that owns the
    rule (an alert channel's ``config``, checked by its kind's config model): the document shows those models."""

    shown: Any

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: Any) -> JsonSchemaValue:
        return dict(handler(TypeAdapter(self.shown).core_schema))


def _not_nullable(schema: dict[str, Any]) -> None:
    """``schema`` without its ``null`` alternative (and without a ``null`` default)."""
    options = schema.get("anyOf")
    if options is not None:
        kept = [option for option in options if option != {"type": "null"}]
        del schema["anyOf"]
        if len(kept) == 1:
            schema.update(kept[0])
        else:
            schema["anyOf"] = kept
    if "default" in schema and schema["default"] is None:
        del schema["default"]


class Schema(BaseModel):
    """Base of request models: unknown fields are refused, not silently dropped.  ``NOT_NULL`` names the fields
    a PATCH may leave out but not set to null: each one sent as null is its own 422 error."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)
    NOT_NULL: ClassVar[tuple[str, ...]] = ()

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name in cls.NOT_NULL:
            raise ValueError("cannot be null")
        return value

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: Any) -> JsonSchemaValue:
        """The model's schema says which fields may be left out but not sent as null (``NOT_NULL``)."""
        schema = handler(core_schema)
        own = handler.resolve_ref_schema(schema)
        for name, info in cls.model_fields.items():
            prop = own.get("properties", {}).get(info.alias or name)
            if name in cls.NOT_NULL and prop is not None:
                _not_nullable(prop)
        return schema


def _line(value: str) -> str:
    if NOT_A_LINE.search(value):
        raise ValueError("must be one line of text, without control characters")
    return value


def _text(value: str) -> str:
    if NOT_TEXT.search(value):
        raise ValueError("must be text, without control characters")
    return value


# Names and titles people read (in pages, feeds, badges, emails, chat): one line, no control characters; and
# longer text (descriptions), where tabs and line breaks are fine.
Line = Annotated[str, AfterValidator(_line), published(pattern=f"^[^{UNSEEN}{LINE_BREAKS}]*$")]
Text = Annotated[str, AfterValidator(_text), published(pattern=f"^[^{UNSEEN}]*$")]


def _in_utc(value: datetime) -> datetime:
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 moved across midnight
        raise ValueError("is out of range") from None


def _zoned(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("needs a time zone (Z or an offset)")
    return value


# An email address, as email-validator takes it where the address is normalised (internationalised ones too).
EmailAddress = Annotated[str, published(format="idn-email")]

# A time as RFC 3339 writes it (ISO 8601's date, "T", time to the second, fraction, zone): pydantic alone would
# also read a number of seconds since 1970 ("0.5"), a date alone, or a time without seconds.
DATE_TIME = "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?"
ZONE = "(Z|[+-][0-9]{2}:[0-9]{2})"


def _written(pattern: str) -> BeforeValidator:
    shape = re.compile(pattern)

    def check(value: Any) -> Any:
        if isinstance(value, datetime):
            return value
        if not isinstance(value, str) or not shape.fullmatch(value):
            raise ValueError("must be a time like 2026-01-31T09:30:00Z (RFC 3339)")
        return value

    return BeforeValidator(check)


def _time_schema(pattern: str, description: str, **keywords: Any) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "pattern": f"^{pattern}$", "description": description, **keywords})


# Times in requests, as UTC: ``UtcTime`` reads a time without a zone as UTC; ``ZonedTime`` requires one.
UtcTime = Annotated[
    datetime,
    _written(f"{DATE_TIME}{ZONE}?"),
    AfterValidator(_in_utc),
    _time_schema(f"{DATE_TIME}{ZONE}?", "ISO 8601; UTC unless it has an offset"),
]
ZonedTime = Annotated[
    datetime,
    _written(f"{DATE_TIME}{ZONE}"),
    AfterValidator(_zoned),
    AfterValidator(_in_utc),
    _time_schema(f"{DATE_TIME}{ZONE}", "ISO 8601 with a time zone (Z or an offset)", format="date-time"),
]
