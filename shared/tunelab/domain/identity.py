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

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

Plan = Literal["subscription", "enterprise_usage_credit", "internal", "trial", "pay_as_you_go"]
PLANS: tuple[str, ...] = get_args(Plan)
# Plans that include bring-your-own-key providers (SageMaker in the customer's account).
BYOK_PLANS: frozenset[str] = frozenset({"subscription", "enterprise_usage_credit", "internal"})

# Workspace ids become part of DynamoDB keys (joined with '#') and of resource names: keep them plain.
WORKSPACE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


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
