"""The caller of an API request, from the authorizer's claims (see `domain.identity` for what each
claim means and why it can be trusted)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tunelab.domain.errors import Unauthorized
from tunelab.domain.identity import WORKSPACE_ID_PATTERN, Identity

_WORKSPACE_RE = re.compile(WORKSPACE_ID_PATTERN)
_SIGN_IN_AGAIN = "Sign in again to get a valid token."


def identity_from_claims(claims: Mapping[str, Any] | None) -> Identity:
    """The caller from the authorizer's claims; `Unauthorized` when they are missing or unusable."""
    if not claims:
        raise Unauthorized("This request needs a bearer token: send 'Authorization: Bearer <token>'.")
    sub = _text(claims, "sub")
    email = _text(claims, "email")
    workspace = _text(claims, "custom:workspace")
    if not _WORKSPACE_RE.fullmatch(workspace):
        raise Unauthorized(f"The token's workspace is not a valid workspace id. {_SIGN_IN_AGAIN}")
    if "@" not in email:
        raise Unauthorized(f"The token's email is not an email address. {_SIGN_IN_AGAIN}")
    # A `custom:plan` claim is not read: the plan is the workspace's, set by an operator.
    return Identity(sub=sub, email=email, workspace=workspace)


def identity_from_event(event: Mapping[str, Any]) -> Identity:
    """The caller of an API Gateway REST proxy event (`requestContext.authorizer.claims`)."""
    context = event.get("requestContext") or {}
    authorizer = context.get("authorizer") or {}
    claims = authorizer.get("claims") if isinstance(authorizer, Mapping) else None
    return identity_from_claims(claims if isinstance(claims, Mapping) else None)


def _text(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Unauthorized(f"The token has no '{name}' claim. {_SIGN_IN_AGAIN}")
    return value.strip()
