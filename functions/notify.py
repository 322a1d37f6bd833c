"""Lambda entry point of the Notify task of both workflows: emails the model's creator."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tunelab.application import announce
from tunelab.application.workflows import NotifyEvent, as_payload
from tunelab.composition.wiring import get_services

logger = Logger(service="tunelab-workflows")
tracer = Tracer(service="tunelab-workflows")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = NotifyEvent.model_validate(event)
    logger.append_keys(model=request.model_name, workspace=request.workspace_id, uid=request.uid)
    return as_payload(announce.notify(get_services(), request))
