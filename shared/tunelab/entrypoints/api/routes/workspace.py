"""`GET /v1/workspace` and `GET /v1/providers`."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from tunelab.application import provider_connections, workspaces
from tunelab.composition.wiring import Services
from tunelab.domain.identity import Identity
from tunelab.entrypoints.api.contracts import Page, ProviderOut, WorkspaceOut
from tunelab.entrypoints.api.deps import current_identity, services
from tunelab.entrypoints.api.routes.common import responses
from tunelab.entrypoints.api.views import provider_out, workspace_out

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


@router.get(
    "/v1/workspace",
    summary="The caller's workspace and its plan",
    tags=["workspace"],
    responses=responses(),
    operation_id="getWorkspace",
)
def get_workspace(
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
) -> WorkspaceOut:
    return workspace_out(workspaces.get(ctx, identity))


@router.get(
    "/v1/providers",
    summary="Where fine-tuning can run for this workspace",
    tags=["providers"],
    responses=responses(),
    operation_id="listProviders",
)
def list_providers(
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
) -> Page[ProviderOut]:
    items = [
        provider_out(entry.connection, status=entry.status, message=entry.message)
        if entry.connection is not None
        else ProviderOut(
            provider=entry.provider, status=entry.status, region=entry.region, message=entry.message
        )
        for entry in provider_connections.list_providers(ctx, identity)
    ]
    return Page[ProviderOut](items=items, next_token=None)
