"""`POST /v1/resource-estimates`: VRAM, storage and instance advice for a SageMaker job."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from tunelab.api.deps import catalog, current_identity
from tunelab.api.routes.common import responses
from tunelab.catalog import Catalog
from tunelab.contracts import ResourceEstimateIn, ResourceEstimateOut
from tunelab.identity import Identity
from tunelab.resources import estimate_resources

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


@router.post(
    "/v1/resource-estimates",
    summary="VRAM, storage and instances a SageMaker fine-tuning job needs",
    tags=["estimates"],
    responses=responses(),
    operation_id="createResourceEstimate",
)
def create_resource_estimate(
    body: ResourceEstimateIn,
    identity: Annotated[Identity, Depends(current_identity)],
    models: Annotated[Catalog, Depends(catalog)],
) -> ResourceEstimateOut:
    return estimate_resources(body, models)
