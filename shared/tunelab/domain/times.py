"""Times as tunelab shows them: RFC 3339 in UTC (`2026-11-28T12:00:00Z`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, PlainSerializer


def utcnow() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """`2026-11-28T12:00:00Z` (milliseconds only when there are any)."""
    value = value.astimezone(UTC)
    millis = f".{value.microsecond // 1000:03d}" if value.microsecond // 1000 else ""
    return value.strftime("%Y-%m-%dT%H:%M:%S") + millis + "Z"


Timestamp = Annotated[
    AwareDatetime,
    AfterValidator(_utc),
    PlainSerializer(rfc3339, return_type=str, when_used="json"),
    Field(
        description="RFC 3339 time in UTC, e.g. `2026-11-28T12:00:00Z`.", examples=["2026-11-28T12:00:00Z"]
    ),
]
