"""Baseline of `bench_lambda_imports.py`: a bare Powertools REST handler, as small as one gets.

What every Lambda of this kind pays at cold start whatever it does: Powertools' REST resolver with
validation (pydantic, OpenAPI models), Logger, Tracer (the X-Ray SDK, patching botocore), boto3,
and one route validated by a pydantic model. tunelab's entry modules are measured against it.
"""

from __future__ import annotations

from typing import Any

import boto3  # noqa: F401  # every handler of this kind talks to AWS
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

logger = Logger(service="baseline")
tracer = Tracer(service="baseline")
app = APIGatewayRestResolver(enable_validation=True)


class Todo(BaseModel):
    title: str = Field(min_length=1, max_length=100, description="What to do.")
    done: bool = False


@app.post("/todos")
@tracer.capture_method
def create_todo(todo: Todo) -> Todo:
    return todo


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
