"""The domain's one error family: what went wrong, in words a person can act on.

Each error names what happened (`NotFound`, `InvalidState`, ...) and carries the contract's error
`code`; it knows nothing of HTTP. The API maps each class to its status in one table
(`tunelab.entrypoints.api.errors.STATUS`); workflows and event handlers read the class name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class ErrorDetail(BaseModel):
    """One problem with one field (or one dataset row and column)."""

    model_config = ConfigDict(frozen=True)

    message: str
    field: str | None = None
    row: int | None = None
    column: str | None = None

    def as_body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class TunelabError(Exception):
    """Base of every error a user can cause or see; `code` is the contract's error code."""

    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, details: Iterable[ErrorDetail] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[ErrorDetail] = list(details)

    def __str__(self) -> str:
        if not self.details:
            return self.message
        parts = "; ".join(
            f"{d.field + ': ' if d.field else ''}{'row ' + str(d.row) + ': ' if d.row else ''}{d.message}"
            for d in self.details
        )
        return f"{self.message} ({parts})"


class ValidationFailed(TunelabError):  # noqa: N818  # named for what happened, like the API's codes
    """Bad input: a missing or bad field, a value out of range, a broken rule."""

    code = "validation_error"

    @classmethod
    def of(cls, field: str | None, message: str, summary: str | None = None) -> ValidationFailed:
        """One problem with one field; the summary defaults to the field's message."""
        return cls(summary or message, [ErrorDetail(field=field, message=message)])


class Unauthorized(TunelabError):  # noqa: N818  # named for what happened, like the API's codes
    code = "unauthorized"


class Forbidden(TunelabError):  # noqa: N818  # named for what happened, like the API's codes
    code = "forbidden"


class NotFound(TunelabError):  # noqa: N818  # named for what happened, like the API's codes
    code = "not_found"


class Conflict(TunelabError):  # noqa: N818  # named for what happened, like the API's codes
    """A lost race or a clash with what exists; subclasses carry the contract's 409 codes."""

    code = "conflict"


class NameTaken(Conflict):
    code = "name_taken"


class InvalidState(Conflict):
    code = "invalid_state"


class InUse(Conflict):
    code = "in_use"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class PayloadTooLarge(TunelabError):  # noqa: N818  # named for what happened, like the API's codes
    code = "payload_too_large"


class Throttled(TunelabError):  # noqa: N818  # named for what happened, like the API's codes
    code = "throttled"


class ProviderError(TunelabError):
    """A provider refused or failed in a way the user should hear about (e.g. a quota)."""

    code = "provider_error"


class ProviderTransientError(TunelabError):
    """A passing provider fault (throttling, a 5xx, a dropped connection): the workflow retries the step."""

    code = "provider_unavailable"


class ProviderPermissionDenied(Forbidden):
    """A role (the platform's or the customer's) lacks a permission a step needs; the message names it."""


class TrainingCancelled(TunelabError):  # noqa: N818  # the fine-tuning ASL catches it by this name
    """The model stopped being trained before the job started (a stop request, or it is gone)."""

    code = "training_cancelled"


class DeploymentCancelled(TunelabError):  # noqa: N818  # the deployment ASL catches it by this name
    """The model was undeployed (or deleted) before the deployment started."""

    code = "deployment_cancelled"
