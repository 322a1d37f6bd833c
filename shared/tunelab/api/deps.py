"""What routes depend on: the settings, the repository, the catalog and the caller's identity.

They come from the process's `tunelab.wiring.Services` (built lazily, shared with every other
handler; tests and the local runtime install their own with `wiring.set_services`). Routes take
them as parameters (`Annotated[Identity, Depends(current_identity)]`); a test may also replace
one with `app.dependency_overrides[catalog] = ...`.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler.request import Request

from tunelab import wiring
from tunelab.api.idempotency import reset_idempotency
from tunelab.catalog import Catalog
from tunelab.identity import Identity, identity_from_event
from tunelab.repository import Repository
from tunelab.settings import Settings

# Workspaces (with the plan their token claimed) this container has already ensured exist.
_seen: set[tuple[str, str | None]] = set()


def settings() -> Settings:
    return wiring.get_services().settings


def repository() -> Repository:
    return wiring.get_services().repository


def catalog() -> Catalog:
    return wiring.get_services().catalog


def current_identity(request: Request) -> Identity:
    """The caller (`Unauthorized` without valid claims); their workspace record exists afterwards,
    created on first sight and following the token's plan claim (see `tunelab.identity`)."""
    identity = identity_from_event(request.resolved_event.raw_event)
    key = (identity.workspace, identity.plan)
    if key not in _seen:
        repository().ensure_workspace(
            identity.workspace, plan=identity.plan, default_plan=settings().default_plan
        )
        _seen.add(key)
    return identity


def reset_services() -> None:
    """Forget the services, the workspaces seen and the idempotency store (tests, the local runtime
    after changing the environment)."""
    wiring.reset_services()
    _seen.clear()
    reset_idempotency()
