"""Lambda entry point of FinishTraining (fine-tuning workflow): writes the training's final status."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tunelab.application import fine_tuned_models
from tunelab.application.workflows import FinishTrainingEvent, as_payload
from tunelab.composition.wiring import get_services

logger = Logger(service="tunelab-workflows")
tracer = Tracer(service="tunelab-workflows")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = FinishTrainingEvent.model_validate(event)
    logger.set_correlation_id(request.correlation_id)
    logger.append_keys(model=request.model_name, workspace=request.workspace_id, uid=request.uid)
    return as_payload(fine_tuned_models.finish_training(get_services(), request))
