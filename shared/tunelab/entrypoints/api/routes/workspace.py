"""`GET /v1/workspace` and `GET /v1/providers`."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from tunelab.adapters.dynamodb import Repository
from tunelab.composition.settings import Settings
from tunelab.domain.identity import Identity
from tunelab.entrypoints.api.contracts import Page, ProviderOut, WorkspaceOut
from tunelab.entrypoints.api.deps import current_identity, repository, settings
from tunelab.entrypoints.api.routes.common import responses

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
    repo: Annotated[Repository, Depends(repository)],
) -> WorkspaceOut:
    return repo.get_workspace(identity.workspace).to_out()


@router.get(
    "/v1/providers",
    summary="Where fine-tuning can run for this workspace",
    tags=["providers"],
    responses=responses(),
    operation_id="listProviders",
)
def list_providers(
    identity: Annotated[Identity, Depends(current_identity)],
    repo: Annotated[Repository, Depends(repository)],
    config: Annotated[Settings, Depends(settings)],
) -> Page[ProviderOut]:
    items: list[ProviderOut] = []
    if config.runtime == "local":
        items.append(ProviderOut(provider="local", status="connected"))
        items.append(
            ProviderOut(
                provider="bedrock",
                status="not_connected",
                message="Bedrock is not available in the local runtime; deploy tunelab to AWS to use it.",
            )
        )
    else:
        # Served by the platform in its own account: always there.
        items.append(ProviderOut(provider="bedrock", status="connected", region=config.aws_region))
    connection = repo.find_provider_connection(identity.workspace, "sagemaker")
    if connection is not None:
        items.append(connection.to_out())
    else:
        items.append(
            ProviderOut(
                provider="sagemaker",
                status="not_connected",
                message="Connect your AWS account with PUT /v1/providers/sagemaker (plans with BYOK).",
            )
        )
    return Page[ProviderOut](items=items, next_token=None)
