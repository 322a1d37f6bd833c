"""`GET /v1/providers/sagemaker/connector` (what to deploy the connector with), `PUT
/v1/providers/sagemaker` (verify, then store) and `DELETE /v1/providers/sagemaker`.

`GET /v1/providers` lives with the workspace (`routes/workspace.py`).
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from tunelab.application import provider_connections
from tunelab.composition.wiring import Services
from tunelab.domain.identity import Identity
from tunelab.entrypoints.api.contracts import ConnectorOut, ProviderOut, PutSageMakerProviderIn
from tunelab.entrypoints.api.deps import current_identity, services
from tunelab.entrypoints.api.routes.common import responses
from tunelab.entrypoints.api.views import provider_out

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


@router.get(
    "/v1/providers/sagemaker/connector",
    summary="What to deploy the BYOK connector with in your AWS account, for this workspace",
    description="The connector stack's parameters: this workspace's id, the external id tunelab made for "
    "it (made on the first call, then always the same), tunelab's roles the connector trusts and "
    "tunelab's event bus; and an AWS CLI command that deploys the template with them. 403 when the plan "
    "does not include BYOK.",
    tags=["providers"],
    responses=responses(forbidden=True),
    operation_id="getSageMakerConnector",
)
def get_connector(
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
) -> ConnectorOut:
    setup = provider_connections.connector(ctx, identity)
    return ConnectorOut(
        workspace_id=setup.workspace_id,
        external_id=setup.external_id,
        role_session_name=setup.role_session_name,
        parameters=setup.parameters,
        deploy_command=setup.deploy_command,
        message=setup.message,
    )


@router.put(
    "/v1/providers/sagemaker",
    summary="Connect your AWS account for SageMaker (BYOK): verified, then stored",
    description="tunelab assumes the role with the workspace's external id (see the connector route) and "
    "checks each permission the jobs need "
    "(the artifact bucket, SageMaker, the hf_token secret if given). When a check fails the answer is 400 "
    "naming it, and nothing is stored. Refused (409 `in_use`) when it would move to another account or "
    "region while SageMaker models train or are deployed.",
    tags=["providers"],
    responses=responses(conflict=True, forbidden=True),
    operation_id="putSageMakerProvider",
)
def put_sagemaker(
    body: PutSageMakerProviderIn,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
) -> ProviderOut:
    return provider_out(provider_connections.connect_sagemaker(ctx, identity, body))


@router.delete(
    "/v1/providers/sagemaker",
    summary="Disconnect your AWS account (refused while SageMaker models train or are deployed)",
    tags=["providers"],
    responses=responses(204, "Disconnected (also when there was no connection)", conflict=True),
    operation_id="deleteSageMakerProvider",
)
def delete_sagemaker(
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
) -> Response[None]:
    provider_connections.disconnect_sagemaker(ctx, identity)
    return Response(status_code=204)
