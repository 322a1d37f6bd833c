"""`GET /v1/health`: no token needed."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from tunelab.entrypoints.api.contracts import HealthOut
from tunelab.entrypoints.api.deps import services

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


@router.get(
    "/v1/health",
    summary="Whether the backend can serve",
    tags=["system"],
    security=[],
    operation_id="getHealth",
)
def health() -> HealthOut:
    # Configuration and catalog load once per container; a broken deployment fails here, visibly.
    ctx = services()
    _ = (ctx.settings, ctx.catalog)
    return HealthOut()
