"""The API's resolver: routes from `routes/`, request validation, and the contract's error mapping.

`handle(event, context)` is what the Lambda entry point calls. Before routing it refuses bodies
over the limit (413) and requests without valid claims (401) on every path but the public ones,
so an anonymous caller learns nothing about routes or bodies, then bodies no route could read (400:
not UTF-8, JSON nested deeper than MAX_JSON_DEPTH). Then the Powertools resolver validates the
request against the routes' pydantic models and calls the route; a known path asked with another
method answers 405 with `Allow`.

CORS follows settings `ALLOWED_ORIGINS`, read at the first request (not at import): a request whose
`Origin` is one of them gets the CORS headers, any other origin (and every origin when the setting is
empty) none; a browser's preflight `OPTIONS` (no credentials) is answered 204 when origins are set.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import re
from functools import cache, lru_cache
from typing import Any, NoReturn

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tunelab import __version__
from tunelab.application import redaction
from tunelab.composition.wiring import get_services
from tunelab.domain.errors import (
    NotFound,
    PayloadTooLarge,
    TunelabError,
    Unauthorized,
    ValidationFailed,
)
from tunelab.entrypoints.api.auth import identity_from_event
from tunelab.entrypoints.api.errors import (
    MethodNotAllowed,
    code_for_status,
    error_response,
    proxy_error,
    status_of,
    validation_failed,
)
from tunelab.entrypoints.api.routes import (
    base_models,
    datasets,
    estimates,
    fine_tuned_models,
    instance_types,
    providers,
    system,
    workspace,
)

logger = Logger(service="tunelab-api")
tracer = Tracer(service="tunelab-api")

# The contract's limit for a request body (a dataset upload's CSV included).
MAX_BODY_BYTES = 5 * 1024 * 1024
# How deeply a JSON body may nest objects and arrays (the API's deepest body nests 4 levels); checked
# before parsing, without recursion, so no body can exhaust the parser's stack.
MAX_JSON_DEPTH = 64
OPENAPI_PATH = "/v1/openapi.json"
PUBLIC_PATHS = frozenset({"/v1/health", OPENAPI_PATH})

# Each module holds one `router`; a new resource adds its module here.
ROUTERS = (
    system,
    base_models,
    instance_types,
    workspace,
    estimates,
    datasets,
    fine_tuned_models,
    providers,
)

# Headers a browser may send beyond the CORS-safe ones Powertools always allows, and may read.
CORS_ALLOW_HEADERS = ["Idempotency-Key"]
CORS_EXPOSE_HEADERS = ["Retry-After"]
CORS_MAX_AGE_S = 600
# Routes register with CORS on (Powertools decides that per route at registration); until the first
# request sets the configuration from settings, this one allows no origin.
_NO_ORIGIN = CORSConfig(allow_origin="")


def _not_json(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:20]} is out of range")
    return number


def strict_json(text: str) -> Any:
    """`json.loads` for request bodies: what RFC 8259 does not allow (NaN, Infinity), numbers out of a
    float's range and integers Python will not convert (over 4,300 digits) are invalid JSON too."""
    try:
        return json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as error:
        raise json.JSONDecodeError(str(error), text, 0) from None


app = APIGatewayRestResolver(enable_validation=True, cors=_NO_ORIGIN, json_body_deserializer=strict_json)
for _module in ROUTERS:
    app.include_router(_module.router)


# --- errors -------------------------------------------------------------------------------------


def _domain_error(error: TunelabError) -> Response[str]:
    status = status_of(error)
    if status >= 500:
        logger.exception("Request failed", code=error.code)
    else:
        logger.info("Request refused", code=error.code, status=status, error_message=error.message)
    headers = {"Retry-After": "5"} if status in (429, 503) else None
    return error_response(_for_tenant(error), headers)


def _for_tenant(error: TunelabError) -> TunelabError:
    """The error as a tenant may read it: AWS's words name the platform's account, roles and buckets,
    and sometimes server paths; those are hidden (the log above has the full text)."""
    settings = get_services().settings
    public = redaction.for_platform(
        [settings.platform_account_id], [settings.datasets_bucket, settings.artifacts_bucket]
    )
    message = public(error.message)
    details = [d.model_copy(update={"message": public(d.message)}) for d in error.details]
    if message == error.message and details == error.details:
        return error
    shown = copy.copy(error)
    shown.message, shown.details = message, details
    return shown


def _invalid_request(error: RequestValidationError) -> Response[str]:
    failed = validation_failed(list(error.errors()), _json_body_or_none())
    logger.info("Invalid request", details=[d.as_body() for d in failed.details])
    return error_response(failed)


def _unsupported_content_type(error: RequestUnsupportedContentType) -> Response[str]:
    return error_response(
        ValidationFailed.of(
            "Content-Type",
            "This route takes JSON: send 'Content-Type: application/json'.",
        )
    )


def _no_route(error: NotFoundError) -> Response[str]:
    event = app.current_event
    allowed = allowed_methods(event.path)
    if allowed:
        return error_response(
            MethodNotAllowed(
                f"{event.path} does not take {event.http_method}; it takes {', '.join(allowed)}."
            ),
            headers={"Allow": ", ".join(allowed)},
        )
    return error_response(
        NotFound(f"There is no route {event.http_method} {event.path}; see {OPENAPI_PATH}.")
    )


def allowed_methods(path: str) -> list[str]:
    """The methods the routes take at `path` (none: no route has this path)."""
    routes = app._static_routes + app._dynamic_routes  # Powertools keeps its routes there
    return sorted({route.method for route in routes if route.rule.match(path)})


def _service_error(error: ServiceError) -> Response[str]:
    status = int(error.status_code)
    body = {"error": {"code": code_for_status(status), "message": str(error.msg)}}
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


def _unexpected(error: Exception) -> Response[str]:
    logger.exception("Unexpected error")
    request_id = _request_id()
    unexpected = TunelabError(
        "Something went wrong on our side; try again, and if it keeps failing, report request id "
        f"{request_id}."
    )
    return error_response(unexpected)


# Registered by call: Powertools' decorators are untyped.
app.exception_handler(TunelabError)(_domain_error)
app.exception_handler(RequestValidationError)(_invalid_request)
app.exception_handler(RequestUnsupportedContentType)(_unsupported_content_type)
app.exception_handler(ServiceError)(_service_error)
app.exception_handler(Exception)(_unexpected)
app.not_found(_no_route)


def _json_body_or_none() -> Any:
    try:
        return app.current_event.json_body
    except (ValueError, TypeError):
        return None


def _request_id() -> str:
    context = app.current_event.raw_event.get("requestContext") or {}
    return str(context.get("requestId") or "unknown")


# --- OpenAPI ------------------------------------------------------------------------------------


# Kept for the container's life: the document depends only on the code, and building it takes
# a warm container's request a second it need not spend again.
@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document, generated from the routes' pydantic models.

    Powertools documents its own 422 validation response; this API answers 400 with the
    contract's error body instead, so the 422 entries and their schemas are removed.
    """
    schema = app.get_openapi_schema(
        title="tunelab API",
        version=__version__,
        description="Fine-tune LLMs and run the whole life of a fine-tuned model. Contract v1.",
        security_schemes={"bearer": HTTPBearer(scheme="bearer", bearerFormat="JWT")},
        security=[{"bearer": []}],
    )
    document: dict[str, Any] = json.loads(schema.model_dump_json(by_alias=True, exclude_none=True))
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            operation.get("responses", {}).pop("422", None)
            # "No Content" has no body (Powertools documents `null` for a `Response[None]`).
            operation.get("responses", {}).get("204", {}).pop("content", None)
            if path in PUBLIC_PATHS:
                operation["security"] = []
    # Routes that read their body themselves (several content types) document it in their module.
    for module in ROUTERS:
        for (method, path), request_body in getattr(module, "OPENAPI_REQUEST_BODIES", {}).items():
            document["paths"][path][method]["requestBody"] = request_body
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(unused, None)
    return document


@app.get(OPENAPI_PATH, include_in_schema=False)
def get_openapi() -> Response[str]:
    return Response(
        status_code=200, content_type=content_types.APPLICATION_JSON, body=json.dumps(openapi_document())
    )


# --- entry --------------------------------------------------------------------------------------


def body_size(event: dict[str, Any]) -> int:
    """Bytes of the request body as the client sent it."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        padding = body.count("=", -2)
        return len(body) * 3 // 4 - padding
    return len(body.encode("utf-8", "surrogatepass"))


def check_body(event: dict[str, Any]) -> None:
    """Refuse, as `ValidationFailed`, a body no route could read: of a content type other than JSON or
    CSV, not valid base64 where API Gateway says it is, not UTF-8 text, or JSON nested deeper than
    MAX_JSON_DEPTH. CSV bodies are the datasets route's to check (an encoding problem is part of a
    dataset's validation report)."""
    body = event.get("body")
    kind = _content_type(event)
    if not body or kind in datasets.CSV_TYPES:
        return
    if kind not in ("", content_types.APPLICATION_JSON):
        # Not a form or anything else Powertools would try to parse: no route reads those.
        raise ValidationFailed.of(
            "Content-Type",
            f"This API takes JSON (Content-Type: application/json), and CSV for datasets; not '{kind}'.",
        )
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationFailed("The body is not valid base64.") from None
    else:
        raw = str(body).encode("utf-8", "surrogatepass")  # a lone surrogate fails the decoding below
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValidationFailed(
            f"The body is not valid UTF-8 (at byte {error.start}); send JSON encoded as UTF-8."
        ) from None
    # Counting brackets is cheap; only a body with enough of them can nest too deep.
    deep = text.count("[") + text.count("{") > MAX_JSON_DEPTH
    if deep and json_depth(text, stop_past=MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ValidationFailed(
            f"The JSON body nests objects or arrays more than {MAX_JSON_DEPTH} levels deep, the API's limit."
        )


# The characters that matter to nesting: quotes and backslashes (strings), brackets.
_SIGNIFICANT = re.compile(r'[\\"\[\]{}]')


def json_depth(text: str, *, stop_past: int | None = None) -> int:
    """How deeply a JSON text nests objects and arrays (0 for a scalar), found in one pass without
    parsing it and without recursion: brackets inside strings (escapes included) do not count. With
    `stop_past`, the count stops as soon as it is passed (a deep body is not read to its end).

    Linear in the text's length whatever it holds (a pattern that skipped strings by backtracking took
    minutes on an unterminated string of escaped quotes)."""
    depth = deepest = 0
    in_string = False
    escaped_at = -1  # the position of the character a backslash escapes
    for match in _SIGNIFICANT.finditer(text):
        at = match.start()
        if at == escaped_at:
            continue
        char = text[at]
        if in_string:
            if char == "\\":
                escaped_at = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_past is not None and deepest > stop_past:
                    return deepest
        elif char in "]}":
            depth -= 1
    return deepest


def _content_type(event: dict[str, Any]) -> str:
    headers = event.get("headers") or {}
    value = next((str(v) for k, v in headers.items() if k.lower() == "content-type"), "")
    return value.split(";", 1)[0].strip().lower()


# One configuration per set of origins (the settings' are fixed for a container's life).
@lru_cache(maxsize=4)
def cors_config(allowed_origins: tuple[str, ...]) -> CORSConfig:
    """The resolver's CORS configuration for these origins (none: no origin gets CORS headers)."""
    if not allowed_origins:
        return _NO_ORIGIN
    first, *more = allowed_origins
    return CORSConfig(
        allow_origin=first,
        extra_origins=more,
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        max_age=CORS_MAX_AGE_S,
    )


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Answer one API Gateway REST proxy event."""
    origins = get_services().settings.allowed_origins
    app._cors = cors_config(origins)  # Powertools reads it per response; set from settings, not at import
    if event.get("httpMethod") == "OPTIONS" and origins:
        return app.resolve(event, context)  # a preflight: Powertools answers it from the configuration
    if body_size(event) > MAX_BODY_BYTES:
        return proxy_error(
            PayloadTooLarge(
                f"The body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB; for larger datasets, "
                'POST /v1/datasets with JSON {"name": ...} and upload to the URL it returns.'
            )
        )
    if event.get("path") not in PUBLIC_PATHS:
        try:
            identity_from_event(event)
        except Unauthorized as error:
            return proxy_error(error)
    try:
        check_body(event)
    except ValidationFailed as error:
        logger.info("Unreadable body", error_message=error.message)
        return proxy_error(error)
    return app.resolve(event, context)


__all__ = [
    "MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "app",
    "check_body",
    "handle",
    "json_depth",
    "logger",
    "openapi_document",
    "strict_json",
    "tracer",
]
