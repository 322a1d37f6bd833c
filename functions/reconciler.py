"""Lambda entry point: the scheduled sweep over jobs whose provider events may have been lost."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tunelab.application.reconcile import reconcile
from tunelab.composition.wiring import get_services

logger = Logger(service="tunelab-reconciler")
tracer = Tracer(service="tunelab-reconciler")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    """The schedule's sweep; `{"recover": true}` (the local runtime at each start) looks at every model
    in a transient status (`tunelab.application.reconcile`)."""
    recover = isinstance(event, dict) and event.get("recover") is True
    return reconcile(get_services(), recover=recover).model_dump()
