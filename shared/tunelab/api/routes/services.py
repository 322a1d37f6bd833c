"""Dependencies the resource routes share beyond `tunelab.api.deps`: the whole `Services` container
(the application service in `tunelab.service` works on it) and the request's correlation id."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.request import Request

from tunelab import wiring
from tunelab.wiring import Services


def services() -> Services:
    """The process's services (`tunelab.wiring`); tests install their own with `wiring.set_services`."""
    return wiring.get_services()


def correlation_id(request: Request) -> str:
    """API Gateway's request id: it follows the request into workflows, domain events and logs."""
    context = request.resolved_event.raw_event.get("requestContext") or {}
    return str(context.get("requestId") or "unknown")
