"""Who is calling: the caller's identity from the API Gateway authorizer's claims, and workspace plans.

On AWS, API Gateway's Cognito authorizer verifies the JWT and passes its claims to the function in
`requestContext.authorizer.claims`; the local runtime's HTTP front verifies its own tokens and
passes the same claims. The claims used:

* `sub` — the user's stable id;
* `email` — shown as the creator of datasets and models, and where notifications go;
* `custom:workspace` — the tenant. A request never names its workspace: it is always this one;
* `custom:plan` (optional) — the workspace's plan. When present it is the authority and the
  workspace record follows it (`tunelab local token --plan P` sets it in the local runtime); when
  absent the record keeps its plan, and a workspace seen for the first time gets the deployment's
  `DEFAULT_PLAN`.

Trust: `custom:workspace` and `custom:plan` must be attributes users cannot write themselves
(the Cognito app client's write attributes exclude them); otherwise a user could enter another
tenant or upgrade their plan.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict

from tunelab.domain.errors import Unauthorized

Plan = Literal["subscription", "enterprise_usage_credit", "internal", "trial", "pay_as_you_go"]
PLANS: tuple[str, ...] = get_args(Plan)
# Plans that include bring-your-own-key providers (SageMaker in the customer's account).
BYOK_PLANS: frozenset[str] = frozenset({"subscription", "enterprise_usage_credit", "internal"})

# Workspace ids become part of DynamoDB keys (joined with '#') and of resource names: keep them plain.
WORKSPACE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_WORKSPACE_RE = re.compile(WORKSPACE_ID_PATTERN)

_SIGN_IN_AGAIN = "Sign in again to get a valid token."


class Identity(BaseModel):
    """The authenticated caller of one request."""

    model_config = ConfigDict(frozen=True)

    sub: str
    email: str
    workspace: str
    # The plan the token asserts, if any (see the module's docstring).
    plan: Plan | None = None


def byok_allowed(plan: str) -> bool:
    """Whether a workspace on `plan` may connect its own provider account (BYOK)."""
    return plan in BYOK_PLANS


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
    plan_claim = claims.get("custom:plan")
    plan: Plan | None = None
    if plan_claim not in (None, ""):
        if plan_claim not in PLANS:
            raise Unauthorized(f"The token's plan '{plan_claim}' is not a known plan. {_SIGN_IN_AGAIN}")
        plan = plan_claim
    return Identity(sub=sub, email=email, workspace=workspace, plan=plan)


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
