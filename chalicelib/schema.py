"""The shared request types: the base of every request model and the field types that carry a rule.

Any layer may use them (the API's request models, the alert kinds' config models): they depend on pydantic and
on :mod:`chalicelib.text`, nothing else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from chalicelib.text import NOT_A_LINE, NOT_TEXT


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
Line = Annotated[str, AfterValidator(_line)]
Text = Annotated[str, AfterValidator(_text)]


def _in_utc(value: datetime) -> datetime:
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 moved across midnight
        raise ValueError("is out of range") from None


def _zoned(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("needs a time zone (Z or an offset)")
    return value


# Times in requests, as UTC: ``UtcTime`` reads a time without a zone as UTC; ``ZonedTime`` requires one.
UtcTime = Annotated[datetime, AfterValidator(_in_utc), Field(description="ISO 8601; UTC unless it has an offset")]
ZonedTime = Annotated[
    datetime,
    AfterValidator(_zoned),
    AfterValidator(_in_utc),
    Field(description="ISO 8601 with a time zone (Z or an offset)"),
]
