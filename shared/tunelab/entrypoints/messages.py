"""What every event handler shares: the EventBridge envelope and the two ways a message can fail."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError


class BadMessageError(ValueError):
    """A message that is not what its queue carries (not JSON, not an EventBridge event).

    Retrying cannot help; it is reported as a batch item failure so that, after the queue's
    receive limit, it rests in the dead-letter queue where a person can read it.
    """


class RetryLater(Exception):  # noqa: N818  # a signal, not an error
    """The message cannot be applied yet (e.g. the job's id is not recorded yet): receive it again."""


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

    def age(self, now: datetime) -> timedelta:
        return now - self.time


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
