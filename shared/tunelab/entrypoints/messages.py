"""The messages tunelab's event-driven functions receive (EventBridge events through SQS), parsed once
into typed models and handed to the use cases:

* provider events (Bedrock, SageMaker, the local runtime's jobs) → `application.provider_events`;
* S3 "Object Created" under `uploads/` → `application.datasets.validate_upload`.

A message that is not what its queue carries is a `BadMessageError` (retrying cannot help; after the
queue's receive limit it rests in the DLQ); `RetryLater` asks for the message again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from tunelab.application import datasets, provider_events
from tunelab.application.ports import Context
from tunelab.application.provider_events import EventResult, IncomingEvent, RetryLater


class BadMessageError(ValueError):
    """A message that is not what its queue carries (not JSON, not an EventBridge event).

    Retrying cannot help; it is reported as a batch item failure so that, after the queue's
    receive limit, it rests in the dead-letter queue where a person can read it.
    """


class EventEnvelope(BaseModel):
    """An EventBridge event as an SQS message body carries it (the rule's target is the queue)."""

    # Built on first use: the API and the reconciler import this module without parsing envelopes.
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore", defer_build=True)

    version: str = "0"
    id: str
    source: str
    # EventBridge always sets it (the source account: a customer's, for forwarded SageMaker events);
    # moto's EventBridge leaves it out of what it delivers to SQS.
    account: str | None = None
    # AWS services write RFC 3339; some documented samples use epoch milliseconds: both parse.
    time: AwareDatetime
    region: str
    resources: list[str] = Field(default_factory=list)
    detail_type: str = Field(alias="detail-type")
    detail: dict[str, Any]


def parse_envelope(body: str | bytes | Mapping[str, Any]) -> EventEnvelope:
    """The EventBridge event of an SQS message body; `BadMessageError` when the body is not one."""
    try:
        data = json.loads(body) if isinstance(body, str | bytes) else dict(body)
    except ValueError as error:
        raise BadMessageError(f"the message body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadMessageError("the message body is not a JSON object")
    try:
        return EventEnvelope.model_validate(data)
    except ValidationError as error:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in error.errors())
        raise BadMessageError(
            f"the message body is not an EventBridge event (bad or missing: {fields})"
        ) from None


# --- S3 "Object Created" ------------------------------------------------------------------------------

OBJECT_CREATED = "Object Created"


# Built on first use (`defer_build`): only the upload handler parses them.
class _Bucket(BaseModel):
    model_config = ConfigDict(defer_build=True)

    name: str


class _Object(BaseModel):
    model_config = ConfigDict(populate_by_name=True, defer_build=True)

    key: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = Field(default=None, alias="version-id")


class ObjectCreated(BaseModel):
    """The `detail` of S3's EventBridge "Object Created" event (the fields tunelab reads)."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    bucket: _Bucket
    object: _Object
    reason: str | None = None


def handle_upload(ctx: Context, event: EventEnvelope) -> datasets.UploadResult:
    """Validate the dataset an "Object Created" event names (`application.datasets.validate_upload`)."""
    if event.source != "aws.s3" or event.detail_type != OBJECT_CREATED:
        return datasets.UploadResult(
            action="ignored", reason=f"not an S3 Object Created event ({event.source}, {event.detail_type})"
        )
    try:
        detail = ObjectCreated.model_validate(event.detail)
    except ValidationError as error:
        raise BadMessageError(
            f"the event's detail is not S3's Object Created: {error.error_count()} problem(s)"
        ) from None
    return datasets.validate_upload(
        ctx,
        bucket=detail.bucket.name,
        key=detail.object.key,
        etag=detail.object.etag,
        correlation_id=event.id,
    )


def handle_provider_event(ctx: Context, event: EventEnvelope, *, now: datetime | None = None) -> EventResult:
    """Apply one provider event (`application.provider_events.handle`); `RetryLater` when it is too soon."""
    return provider_events.handle(
        ctx,
        IncomingEvent(
            id=event.id,
            source=event.source,
            detail_type=event.detail_type,
            detail=event.detail,
            time=event.time,
            account=event.account,
        ),
        now=now,
    )


__all__ = [
    "BadMessageError",
    "EventEnvelope",
    "ObjectCreated",
    "RetryLater",
    "handle_provider_event",
    "handle_upload",
    "parse_envelope",
]
