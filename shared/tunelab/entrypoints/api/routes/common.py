"""What every route module shares: the error responses documented in OpenAPI, and list parameters."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Query

from tunelab.domain.listing import SortOrder
from tunelab.entrypoints.api.contracts import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, ErrorBody


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"model": ErrorBody}}}


# Error responses every authenticated route may give; routes use `responses(...)`.
ERRORS: dict[int, Any] = {
    400: _error(
        "Invalid request: malformed JSON, a missing or bad field, a broken rule (`validation_error`)."
    ),
    401: _error("No token, or a bad one (`unauthorized`)."),
    404: _error("No such resource in this workspace (`not_found`)."),
    429: _error("Rate limit (`throttled`)."),
    500: _error("Unexpected error; the message gives the request id (`internal_error`)."),
}
CONFLICT = _error("`name_taken`, `invalid_state`, `in_use` or `idempotency_conflict`.")
FORBIDDEN = _error("Not allowed for anyone in this workspace, e.g. BYOK on a plan without it (`forbidden`).")
PAYLOAD_TOO_LARGE = _error("The body is over 5 MiB (`payload_too_large`).")


def responses(
    status: int = 200,
    description: str = "Success",
    *,
    conflict: bool = False,
    forbidden: bool = False,
    payload: bool = False,
) -> dict[int, Any]:
    """A route's OpenAPI responses: its success (schema from the return type) and its errors."""
    documented: dict[int, Any] = {status: {"description": description}, **ERRORS}
    if conflict:
        documented[409] = CONFLICT
    if forbidden:
        documented[403] = FORBIDDEN
    if payload:
        documented[413] = PAYLOAD_TOO_LARGE
    return dict(sorted(documented.items()))


Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Items per page, 1–{MAX_PAGE_SIZE}.")]
NextToken = Annotated[str | None, Query(max_length=2048, description="`next_token` of the previous page.")]
DEFAULT_LIMIT = DEFAULT_PAGE_SIZE

# Filters and order every list of records shares (the rules: `domain.listing`).
CreatedAfter = Annotated[
    str | None,
    Query(max_length=64, description="Only those created at or after this ISO 8601 time (UTC if no zone)."),
]
CreatedBefore = Annotated[
    str | None,
    Query(max_length=64, description="Only those created before this ISO 8601 time (UTC if no zone)."),
]
NamePrefix = Annotated[
    str | None, Query(max_length=100, description="Only those whose name begins with this (any case).")
]
Order = Annotated[SortOrder, Query(description="`asc` (the default) or `desc`.")]
