"""What routes depend on: the settings, the repository, the catalog and the caller's identity.

They come from the process's `tunelab.composition.wiring.Services` (built lazily, shared with every other
handler; tests and the local runtime install their own with `wiring.set_services`). Routes take
them as parameters (`Annotated[Identity, Depends(current_identity)]`); a test may also replace
one with `app.dependency_overrides[catalog] = ...`.
"""

from __future__ import annotations

import time

from aws_lambda_powertools.event_handler.request import Request

from tunelab.adapters.dynamodb import Repository
from tunelab.composition import wiring
from tunelab.composition.settings import Settings
from tunelab.domain.catalog import Catalog
from tunelab.domain.identity import Identity, Plan, identity_from_event
from tunelab.entrypoints.api.idempotency import reset_idempotency

# Workspace -> (the plan its record had, monotonic time) for workspaces this container has ensured
# exist. A claim naming another plan always goes to the repository (so trial -> subscription -> trial
# lands); entries expire so a change another container wrote is not hidden for long.
_seen: dict[str, tuple[Plan, float]] = {}
SEEN_TTL_S = 300.0


def settings() -> Settings:
    return wiring.get_services().settings


def repository() -> Repository:
    return wiring.get_services().repository


def catalog() -> Catalog:
    return wiring.get_services().catalog


def current_identity(request: Request) -> Identity:
    """The caller (`Unauthorized` without valid claims); their workspace record exists afterwards,
    created on first sight and following the token's plan claim (see `tunelab.domain.identity`)."""
    identity = identity_from_event(request.resolved_event.raw_event)
    now = time.monotonic()
    known = _seen.get(identity.workspace)
    if known is None or now - known[1] >= SEEN_TTL_S or identity.plan not in (None, known[0]):
        record = repository().ensure_workspace(
            identity.workspace, plan=identity.plan, default_plan=settings().default_plan
        )
        _seen[identity.workspace] = (record.plan, now)
    return identity


def reset_services() -> None:
    """Forget the services, the workspaces seen and the idempotency store (tests, the local runtime
    after changing the environment)."""
    wiring.reset_services()
    _seen.clear()
    reset_idempotency()
