"""Lambda entry point of FinishDeployment (deployment workflow): check, then record or remove."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tunelab.application import deployments
from tunelab.application.workflows import FinishDeploymentEvent, as_payload
from tunelab.composition.wiring import get_services

logger = Logger(service="tunelab-workflows")
tracer = Tracer(service="tunelab-workflows")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = FinishDeploymentEvent.model_validate(event)
    logger.set_correlation_id(request.state.correlation_id)
    logger.append_keys(
        model=request.state.model_name,
        workspace=request.state.workspace_id,
        uid=request.state.uid,
        mode=request.mode,
    )
    return as_payload(deployments.finish_deployment(get_services(), request))
