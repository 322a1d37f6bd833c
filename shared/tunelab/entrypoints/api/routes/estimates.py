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
    QuoteOut,
    ResourceEstimateIn,
    ResourceEstimateOut,
)
from tunelab.entrypoints.api.deps import current_identity, services
from tunelab.entrypoints.api.routes.common import responses
from tunelab.entrypoints.api.views import quote_out

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
    summary="The plan and predicted cost of a fine-tuning request, and a quote to start it with",
    description="Takes the body of `POST /v1/fine-tuned-models` (the acknowledgement is not needed) and "
    "checks it the same way; nothing is started or stored. Answers the predicted cost, the whole plan the "
    "job would run with (resolved hyperparameters, resources, advice) and a `quote_id` that "
    "`POST /v1/fine-tuned-models` accepts to start exactly that plan at that price. A base model this "
    "deployment cannot run is priced too, with `runnable: false` and the reason (and no quote).",
    tags=["estimates"],
    responses=responses(forbidden=True),
    operation_id="createCostEstimate",
)
def create_cost_estimate(
    body: CostEstimateIn,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
) -> QuoteOut:
    return quote_out(fine_tuned_models.estimate(ctx, identity, body))
