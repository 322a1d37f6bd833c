"""The `Idempotency-Key` header on POSTs that create something, with Powertools idempotency.

The same key with the same body within 24 h returns the first response and creates nothing new;
the same key with a different body is 409 `idempotency_conflict`; a retry while the first request
is still running is 409 too (the first one's response is not known yet). Keys are scoped to the
workspace and the route, so two workspaces (or two routes) never share one.

A create route wraps its work:

    key = idempotency_key(router.current_event.headers)
    out = idempotent(identity, "POST /v1/fine-tuned-models", key, body.model_dump(mode="json"),
                     lambda: create(...).model_dump(mode="json"), context=router.lambda_context)
    return Response(202, content_types.APPLICATION_JSON, out)   # or `return out, 202`

`fn` must return JSON-serializable data: that is what is stored and returned again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from tunelab.composition.wiring import get_services
from tunelab.domain.errors import IdempotencyConflict, ValidationFailed
from tunelab.domain.identity import Identity

HEADER = "Idempotency-Key"
EXPIRES_AFTER_SECONDS = 24 * 60 * 60
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")

J = TypeVar("J")


def idempotency_key(headers: Mapping[str, str] | None) -> str | None:
    """The request's `Idempotency-Key` (header names are case-insensitive), or None; 400 if unusable."""
    for name, value in (headers or {}).items():
        if name.lower() == HEADER.lower():
            if not _KEY_RE.fullmatch(value):
                raise ValidationFailed.of(
                    HEADER, "Idempotency-Key must be 1–255 visible ASCII characters, e.g. a UUID."
                )
            return value
    return None


def _persistence() -> DynamoDBPersistenceLayer:
    # One per container (the services hold it): it keeps its DynamoDB client.
    services = get_services()
    return services.shared(
        "idempotency",
        lambda: DynamoDBPersistenceLayer(table_name=services.settings.idempotency_table_name),
    )


def idempotent(
    identity: Identity,
    route: str,
    key: str | None,
    body: Any,
    fn: Callable[[], J],
    *,
    context: LambdaContext | None = None,
) -> J:
    """`fn()` once per (workspace, route, key): a repeat with the same body returns the first result;
    another body raises `IdempotencyConflict`. Without a key, simply `fn()`.

    `context` (the Lambda context) bounds how long an unfinished first attempt blocks its retries:
    if the function dies mid-way, a retry after its timeout runs again.
    """
    if key is None:
        return fn()
    config = IdempotencyConfig(
        event_key_jmespath="key",
        payload_validation_jmespath="body",
        expires_after_seconds=EXPIRES_AFTER_SECONDS,
        use_local_cache=False,
    )
    if context is not None:
        config.register_lambda_context(context)

    def once(request: dict[str, Any]) -> Any:
        return fn()

    # Powertools keys the record by this function's qualified name plus the hashed `request["key"]`.
    once = idempotent_function(
        data_keyword_argument="request", persistence_store=_persistence(), config=config
    )(once)
    try:
        result: J = once(request={"key": f"{identity.workspace}#{route}#{key}", "body": body})
    except IdempotencyValidationError:
        raise IdempotencyConflict(
            f"The Idempotency-Key '{key}' was already used with a different body; "
            "use a new key for a new request."
        ) from None
    except IdempotencyAlreadyInProgressError:
        raise IdempotencyConflict(
            f"A request with the Idempotency-Key '{key}' is still being processed; retry in a few seconds."
        ) from None
    return result
