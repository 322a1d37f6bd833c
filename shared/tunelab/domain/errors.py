"""The domain's one error type family; the API maps each to the contract's status and body."""

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
    """Base of every error a user can cause or see; carries the API code and HTTP status."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500

    def __init__(self, message: str, details: Iterable[ErrorDetail] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[ErrorDetail] = list(details)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = [d.as_body() for d in self.details]
        return {"error": error}

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
    status = 400

    @classmethod
    def of(cls, field: str | None, message: str, summary: str | None = None) -> ValidationFailed:
        """One problem with one field; the summary defaults to the field's message."""
        return cls(summary or message, [ErrorDetail(field=field, message=message)])


class Unauthorized(TunelabError):  # noqa: N818  # named for what happened, like the API's codes
    code = "unauthorized"
    status = 401


class Forbidden(TunelabError):  # noqa: N818  # named for what happened, like the API's codes
    code = "forbidden"
    status = 403


class NotFound(TunelabError):  # noqa: N818  # named for what happened, like the API's codes
    code = "not_found"
    status = 404


class Conflict(TunelabError):  # noqa: N818  # named for what happened, like the API's codes
    """A lost race or a clash with what exists; subclasses carry the contract's 409 codes."""

    code = "conflict"
    status = 409


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
    status = 413


class Throttled(TunelabError):  # noqa: N818  # named for what happened, like the API's codes
    code = "throttled"
    status = 429


class ProviderError(TunelabError):
    """A provider refused or failed in a way the user should hear about (e.g. a quota)."""

    code = "provider_error"
    status = 502
