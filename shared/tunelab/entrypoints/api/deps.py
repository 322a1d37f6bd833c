"""What routes depend on: the application context and the caller.

Both come from the composition root (`composition.wiring.get_services()`, built lazily and shared
with every other handler; tests and the local runtime install their own with `wiring.set_services`).
Routes take them as parameters (`Annotated[Identity, Depends(current_identity)]`).
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler.request import Request

from tunelab.application import workspaces
from tunelab.composition import wiring
from tunelab.composition.settings import reset_settings
from tunelab.composition.wiring import Services
from tunelab.domain.identity import Identity
from tunelab.entrypoints.api.auth import identity_from_event


def services() -> Services:
    """The process's services: the application context the use cases work on."""
    return wiring.get_services()


def current_identity(request: Request) -> Identity:
    """The caller (`Unauthorized` without valid claims); their workspace exists afterwards, created on
    first sight and following the token's plan claim (see `domain.identity`)."""
    identity = identity_from_event(request.resolved_event.raw_event)
    workspaces.enter(services(), identity)
    return identity


def correlation_id(request: Request) -> str:
    """API Gateway's request id: it follows the request into workflows, domain events and logs."""
    context = request.resolved_event.raw_event.get("requestContext") or {}
    return str(context.get("requestId") or "unknown")


def reset() -> None:
    """Forget the settings and the services with every cache they hold (tests, the local runtime
    after changing the environment)."""
    reset_settings()
    wiring.reset_services()
