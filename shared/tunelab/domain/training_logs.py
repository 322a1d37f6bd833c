"""A fine-tuned model's training log: what the trainer printed, line by line with its time, paged
oldest first.

Each provider keeps it its own way (SageMaker in CloudWatch Logs in the customer's account, the local
runtime in the job's `trainer.log`; Bedrock keeps none) and pages it with its own position, a string
only it reads (`TrainingLogPage.position`). The API's `next_token` wraps that position with the model
it belongs to (`wrap_token`), so a token of another model, or one made up, is refused (400 on
`next_token`) before any provider is asked.
"""

from __future__ import annotations

import base64
import binascii
import json

from pydantic import AwareDatetime, BaseModel, ConfigDict

from tunelab.domain.errors import ValidationFailed

_LIST = "training-log"  # which list a next_token belongs to


class TrainingLogLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    at: AwareDatetime
    message: str


class TrainingLogPage(BaseModel):
    """One page of a job's log. `position` is where the next page starts (the provider's own, opaque
    to everyone else); None when this provider keeps no log, or the log has no lines to read yet and no
    place to read them from. `message` says why a page is empty where that is worth saying."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lines: tuple[TrainingLogLine, ...] = ()
    position: str | None = None
    message: str | None = None


def bad_log_token() -> ValidationFailed:
    return ValidationFailed.of(
        "next_token", "This next_token was not returned by this model's log; start again without it."
    )


def wrap_token(model_uid: str, position: str) -> str:
    """The API's `next_token` for a provider's `position` in the log of the model `model_uid`."""
    plain = {"v": 1, "l": _LIST, "m": model_uid, "p": position}
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def unwrap_token(model_uid: str, token: str | None) -> str | None:
    """The provider's position from a `next_token` this model's log returned; `ValidationFailed` on
    `next_token` for anything else."""
    if token is None or token == "":
        return None
    try:
        plain = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_log_token() from None
    if not (
        isinstance(plain, dict)
        and plain.get("v") == 1
        and plain.get("l") == _LIST
        and plain.get("m") == model_uid
        and isinstance(plain.get("p"), str)
    ):
        raise bad_log_token()
    position: str = plain["p"]
    return position


def encode_position(data: object) -> str:
    """A provider's position as a compact string (JSON)."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def decode_position(position: str) -> object:
    """A position `encode_position` made; `ValidationFailed` on `next_token` for anything else."""
    try:
        return json.loads(position)
    except ValueError:
        raise bad_log_token() from None
