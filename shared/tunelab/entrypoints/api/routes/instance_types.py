"""`GET /v1/instance-types`: the catalog's SageMaker instance types, for choosing `resources`."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from tunelab.composition.wiring import Services
from tunelab.domain.identity import Identity
from tunelab.entrypoints.api.contracts import InstanceTypeOut, Page
from tunelab.entrypoints.api.deps import current_identity, services
from tunelab.entrypoints.api.routes.common import responses

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


@router.get(
    "/v1/instance-types",
    summary="SageMaker instance types for training: GPUs, GPU memory, storage, CPUs, memory, price",
    description="The whole catalog in one page (`next_token` is always null), by GPU memory then "
    "price; each price and hardware figure with the page and date it was read.",
    tags=["base models"],
    responses=responses(),
    operation_id="listInstanceTypes",
)
def list_instance_types(
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
    min_vram_gb: Annotated[
        float | None,
        Query(ge=0, le=100_000, description="Only instances with at least this much GPU memory in all."),
    ] = None,
) -> Page[InstanceTypeOut]:
    catalog = ctx.catalog
    instances = [i for i in catalog.instances if min_vram_gb is None or i.vram_gb >= min_vram_gb]
    instances.sort(key=lambda i: (i.vram_gb, i.price_per_hour_usd, i.name))
    items = [InstanceTypeOut.from_instance(i, region=catalog.instances_region) for i in instances]
    return Page[InstanceTypeOut](items=items, next_token=None)
