"""Workspaces: the tenant of every request, created on first sight; its plan set by an operator; the
requests it may send.

Decisions a user will notice: a workspace (all its users together) may send
`workspace_requests_per_minute` API requests a minute; more answer 429 `throttled` until the minute
is over, so one tenant cannot use up the capacity every tenant shares. A user's token never changes
the plan; an operator does (`set_plan`).
"""

from __future__ import annotations

import re
from typing import cast

from aws_lambda_powertools import Logger

from tunelab.application.ports import Context, WorkspaceStore
from tunelab.domain.errors import Throttled, ValidationFailed
from tunelab.domain.identity import PLANS, WORKSPACE_ID_PATTERN, Identity, Plan
from tunelab.domain.records import WorkspaceRecord

logger = Logger(child=True)

# The window the per-workspace request count is kept over.
BUDGET_WINDOW_S = 60
_WORKSPACE_RE = re.compile(WORKSPACE_ID_PATTERN)


def enter(ctx: Context, identity: Identity) -> WorkspaceRecord:
    """The caller's workspace, created on first sight with the deployment's default plan; `Throttled`
    when the workspace has sent its requests for this minute."""
    workspace = ctx.workspaces.ensure(identity.workspace, default_plan=ctx.config.default_plan)
    limit = ctx.config.workspace_requests_per_minute
    if not ctx.request_budget.spend(identity.workspace, limit=limit, window_s=BUDGET_WINDOW_S):
        logger.warning("Workspace over its request budget", extra={"workspace_id": identity.workspace})
        raise Throttled(
            f"This workspace has sent {limit} requests in the last minute, its limit: wait a moment and "
            "retry."
        )
    return workspace


def get(ctx: Context, identity: Identity) -> WorkspaceRecord:
    return ctx.workspaces.get(identity.workspace)


def set_plan(workspaces: WorkspaceStore, workspace: str, plan: str, *, default_plan: Plan) -> WorkspaceRecord:
    """An operator gives `workspace` the plan `plan` (the workspace is created when new): the only way
    a plan changes. `ValidationFailed` for an unknown plan or a workspace id that is not one."""
    if not _WORKSPACE_RE.fullmatch(workspace):
        raise ValidationFailed.of(
            "workspace", f"'{workspace}' is not a workspace id ({WORKSPACE_ID_PATTERN})."
        )
    if plan not in PLANS:
        raise ValidationFailed.of("plan", f"'{plan}' is not a plan; plans: {', '.join(PLANS)}.")
    record = workspaces.set_plan(workspace, cast("Plan", plan), default_plan=default_plan)
    logger.info("Workspace plan set", extra={"workspace_id": workspace, "plan": plan})
    return record
