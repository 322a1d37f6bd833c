"""`GET /v1/base-models` and `GET /v1/base-models/{id}`."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from tunelab.composition.wiring import Services
from tunelab.domain.identity import Identity
from tunelab.entrypoints.api.contracts import BaseModelOut, Page
from tunelab.entrypoints.api.deps import current_identity, services
from tunelab.entrypoints.api.routes.common import responses

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


@router.get(
    "/v1/base-models",
    summary="Base models that can be fine-tuned",
    tags=["base models"],
    responses=responses(),
    operation_id="listBaseModels",
)
def list_base_models(
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
) -> Page[BaseModelOut]:
    config = ctx.settings
    items = [
        BaseModelOut.from_spec(
            m, runtime=config.runtime, region=config.aws_region, regions=config.provider_regions
        )
        for m in ctx.catalog.models
    ]
    # Available models first; then by provider and name, as a person scans the list.
    items.sort(key=lambda m: (not m.available, m.provider, m.name))
    return Page[BaseModelOut](items=items, next_token=None)


@router.get(
    "/v1/base-models/<model_id>",
    summary="One base model",
    tags=["base models"],
    responses=responses(),
    operation_id="getBaseModel",
)
def get_base_model(
    model_id: str,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
) -> BaseModelOut:
    # Ids hold ':' and '.'; a client may send ':' percent-encoded.
    spec = ctx.catalog.model(unquote(model_id))
    config = ctx.settings
    return BaseModelOut.from_spec(
        spec, runtime=config.runtime, region=config.aws_region, regions=config.provider_regions
    )
