"""Who is calling: the caller's identity from the API Gateway authorizer's claims, and workspace plans.

On AWS, API Gateway's Cognito authorizer verifies the JWT and passes its claims to the function in
`requestContext.authorizer.claims`; the local runtime's HTTP front verifies its own tokens and
passes the same claims. The claims used:

* `sub` — the user's stable id;
* `email` — shown as the creator of datasets and models, and where notifications go;
* `custom:workspace` — the tenant. A request never names its workspace: it is always this one.

A workspace's plan is the workspace's own attribute: a workspace seen for the first time gets the
deployment's `DEFAULT_PLAN`, and only an operator changes it (`tunelab-admin plan set`, or
`tunelab local token --plan P` in the local runtime). A token's claims never do: one user's claim
must not rewrite the plan of everyone in the workspace, so a `custom:plan` claim is ignored.

Trust: `custom:workspace` must be an attribute users cannot write themselves (the Cognito app
client's write attributes exclude it); otherwise a user could enter another tenant.
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


def byok_allowed(plan: str) -> bool:
    """Whether a workspace on `plan` may connect its own provider account (BYOK)."""
    return plan in BYOK_PLANS
