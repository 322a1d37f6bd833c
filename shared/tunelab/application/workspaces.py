"""Workspaces: the tenant of every request, created on first sight and following its plan claim."""

from __future__ import annotations

from tunelab.application.ports import Context
from tunelab.domain.identity import Identity
from tunelab.domain.records import WorkspaceRecord


def enter(ctx: Context, identity: Identity) -> WorkspaceRecord:
    """The caller's workspace, created on first sight; a plan the caller's token claims becomes the
    workspace's plan (see `domain.identity`)."""
    return ctx.workspaces.ensure(identity.workspace, plan=identity.plan, default_plan=ctx.config.default_plan)


def get(ctx: Context, identity: Identity) -> WorkspaceRecord:
    return ctx.workspaces.get(identity.workspace)
