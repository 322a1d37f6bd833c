"""`POST /v1/cost-estimates` (the predicted cost of a fine-tuning request) and `POST /v1/resource-estimates`
(VRAM, storage and instance advice for a SageMaker job)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from tunelab.application import fine_tuned_models
from tunelab.composition.wiring import Services
from tunelab.domain.identity import Identity
from tunelab.domain.resources import estimate_resources
from tunelab.entrypoints.api.contracts import (
    CostEstimateIn,
    CostEstimateOut,
    ResourceEstimateIn,
    ResourceEstimateOut,
)
from tunelab.entrypoints.api.deps import current_identity, services
from tunelab.entrypoints.api.routes.common import responses

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
    ctx: Annotated[Services, Depends(services)],
) -> ResourceEstimateOut:
    return estimate_resources(body, ctx.catalog)


@router.post(
    "/v1/cost-estimates",
    summary="The predicted cost of a fine-tuning request, before anything starts",
    description="Takes the body of `POST /v1/fine-tuned-models` (the acknowledgement is not needed) and "
    "checks it the same way; nothing is started or stored.",
    tags=["estimates"],
    responses=responses(forbidden=True),
    operation_id="createCostEstimate",
)
def create_cost_estimate(
    body: CostEstimateIn,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
) -> CostEstimateOut:
    return fine_tuned_models.estimate(ctx, identity, body)
