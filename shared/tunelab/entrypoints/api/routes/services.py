"""Dependencies the resource routes share beyond `tunelab.entrypoints.api.deps`: the whole `Services`
container (the use cases work on it) and the request's correlation id."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.request import Request

from tunelab.composition import wiring
from tunelab.composition.wiring import Services


def services() -> Services:
    """The process's services (`tunelab.composition.wiring`); tests install their own."""
    return wiring.get_services()


def correlation_id(request: Request) -> str:
    """API Gateway's request id: it follows the request into workflows, domain events and logs."""
    context = request.resolved_event.raw_event.get("requestContext") or {}
    return str(context.get("requestId") or "unknown")
