"""Lambda entry point: EventBridge Scheduler's one-time auto-undeploy schedules (undeploy, remind)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tunelab.application import deployments
from tunelab.composition.wiring import get_services

logger = Logger(service="tunelab-auto-undeploy")
tracer = Tracer(service="tunelab-auto-undeploy")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    logger.append_keys(workspace_id=event.get("workspace_id"), model=event.get("model_name"))
    # The invocation's own id: the events of an undeploy it causes carry it.
    return asdict(deployments.handle_schedule(get_services(), event, correlation_id=context.aws_request_id))
