"""`PUT /v1/providers/sagemaker` (verify, then store) and `DELETE /v1/providers/sagemaker`.

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
from tunelab.entrypoints.api.contracts import ProviderOut, PutSageMakerProviderIn
from tunelab.entrypoints.api.deps import current_identity, services
from tunelab.entrypoints.api.routes.common import responses
from tunelab.entrypoints.api.views import provider_out

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


@router.put(
    "/v1/providers/sagemaker",
    summary="Connect your AWS account for SageMaker (BYOK): verified, then stored",
    description="tunelab assumes the role with the external id and checks each permission the jobs need "
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
