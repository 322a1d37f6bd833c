"""Every error the API answers, in the contract's body: `{"error": {"code", "message", "details"}}`.

One place maps what can go wrong to a status and a body: the domain's errors by the table `STATUS`
(the first of an error's classes that it names, so a subclass answers like its parent unless listed)
with their own `code`; Powertools' request validation errors (its default is 422) to 400
`validation_error` with field paths such as `hyperparameters.epochs`; unknown routes to 404 (405
`method_not_allowed` when the path is known but not the method);
anything unexpected to a logged 500 whose message gives the request id and nothing internal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

from tunelab.domain.errors import (
    Conflict,
    DeploymentCancelled,
    ErrorDetail,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ProviderError,
    ProviderTransientError,
    Throttled,
    TrainingCancelled,
    TunelabError,
    Unauthorized,
    ValidationFailed,
)

_JSON_HEADERS = {"Content-Type": content_types.APPLICATION_JSON}


class MethodNotAllowed(TunelabError):  # noqa: N818  # named for what happened, like the API's codes
    """A known path asked with a method none of its routes takes (an HTTP matter: no use case raises it)."""

    code = "method_not_allowed"


# The HTTP status of each domain error; an error answers with the status of its first class listed.
STATUS: Mapping[type[TunelabError], int] = {
    ValidationFailed: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    MethodNotAllowed: 405,
    Conflict: 409,
    TrainingCancelled: 409,
    DeploymentCancelled: 409,
    PayloadTooLarge: 413,
    Throttled: 429,
    ProviderError: 502,
    ProviderTransientError: 503,
}


def status_of(error: TunelabError) -> int:
    """The HTTP status a domain error answers with (500 for one the table does not name)."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(error: TunelabError) -> dict[str, Any]:
    """The contract's error body."""
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.details:
        body["details"] = [d.as_body() for d in error.details]
    return {"error": body}


def error_response(error: TunelabError, headers: Mapping[str, str] | None = None) -> Response[str]:
    """The resolver's response for a domain error."""
    return Response(
        status_code=status_of(error),
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(error_body(error)),
        headers=dict(headers or {}),
    )


def proxy_error(error: TunelabError) -> dict[str, Any]:
    """An API Gateway proxy response for a domain error, for answers given before the resolver runs."""
    return {
        "statusCode": status_of(error),
        "headers": dict(_JSON_HEADERS),
        "body": json.dumps(error_body(error)),
        "isBase64Encoded": False,
    }


def code_for_status(status: int) -> str:
    """The contract's code for a bare HTTP status (Powertools' own ServiceError subclasses)."""
    return {
        400: "validation_error",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        413: "payload_too_large",
        429: "throttled",
    }.get(status, "internal_error" if status >= 500 else HTTPStatus(status).phrase.lower().replace(" ", "_"))


# --- request validation -----------------------------------------------------------------------

_SOURCES = {"body", "query", "path", "header", "cookie"}


def validation_failed(errors: Sequence[Mapping[str, Any]], body: Any) -> ValidationFailed:
    """Powertools' request validation errors (pydantic's, with `loc` from the request's root) as one
    `ValidationFailed` whose details name each field by its path in the request."""
    details = [_detail(error, body) for error in errors]
    # The same field can fail several union members the same way; say each thing once.
    details = list(dict.fromkeys(details))
    if len(details) == 1:
        only = details[0]
        message = f"{only.field}: {only.message}" if only.field else only.message
    else:
        fields = ", ".join(dict.fromkeys(d.field or "body" for d in details))
        message = f"The request has {len(details)} problems ({fields}); see details."
    return ValidationFailed(message, details)


def _detail(error: Mapping[str, Any], body: Any) -> ErrorDetail:
    loc = tuple(error.get("loc", ()))
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    source, rest = (loc[0], loc[1:]) if loc and loc[0] in _SOURCES else ("body", loc)
    if kind == "json_invalid":
        return ErrorDetail(
            field=None,
            message=f"The body is not valid JSON ({ctx.get('error', 'decode error')}, at character "
            f"{rest[0] if rest else 0}).",
        )
    path = _field_path(rest, body) if source == "body" else [str(p) for p in rest]
    if kind in {"union_tag_invalid", "union_tag_not_found"} and ctx.get("discriminator"):
        path.append(str(ctx["discriminator"]).strip("'\""))
    if isinstance(ctx, Mapping) and isinstance(ctx.get("field"), str):
        path.append(ctx["field"])
    message = _message(error, kind, source, path)
    return ErrorDetail(field=".".join(path) or None, message=message)


def _field_path(loc: Sequence[Any], body: Any) -> list[str]:
    """The path of `loc` in the request body, without the union-member names pydantic inserts.

    Pydantic's location of an error inside a union names the member it tried (`validation.split.percent`,
    `auto_undeploy.AfterHoursIn.after_hours`). Walking the received body tells them apart: a member
    name is a step that is not a key of the object at that point (and not the last step).
    """
    path: list[str] = []
    node: Any = body
    for index, step in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, Mapping) and isinstance(step, str):
            if step in node:
                path.append(step)
                node = node[step]
            elif last:
                path.append(step)  # a missing field is named where it should be
            # else: a union member's name, not part of the request
            continue
        if isinstance(node, list) and isinstance(step, int):
            path.append(str(step))
            node = node[step] if 0 <= step < len(node) else None
            continue
        if isinstance(step, str) and not last and node is not None and not isinstance(node, Mapping | list):
            continue  # a member name under a scalar (e.g. `function-after[...]`)
        path.append(str(step))
        node = None
    return path


def _message(error: Mapping[str, Any], kind: str, source: str, path: list[str]) -> str:
    if kind == "missing":
        if not path and source == "body":
            return "A JSON body is required."
        return "This field is required." if source == "body" else f"The {source} parameter is required."
    if kind == "extra_forbidden":
        return "This field is not part of the API; check its spelling."
    if kind in {"model_attributes_type", "dict_type"}:
        return "Expected a JSON object."
    msg = str(error.get("msg", "Invalid value."))
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return msg if msg.endswith(".") else msg + "."
