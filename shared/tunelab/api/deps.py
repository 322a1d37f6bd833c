"""What routes depend on: the settings, the repository, the catalog and the caller's identity.

Built lazily on first use and kept for the life of the Lambda container. Routes take them as
parameters (`Annotated[Identity, Depends(current_identity)]`); tests replace a dependency with
`app.dependency_overrides[catalog] = ...` or start afresh with `reset_services()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from aws_lambda_powertools.event_handler.request import Request

from tunelab.api.idempotency import reset_idempotency
from tunelab.catalog import Catalog, load_catalog
from tunelab.identity import Identity, identity_from_event
from tunelab.repository import Repository
from tunelab.settings import Settings, get_settings


@dataclass
class _Seen:
    """Workspaces (with the plan their token claimed) already ensured by this container."""

    keys: set[tuple[str, str | None]]


@cache
def _seen() -> _Seen:
    return _Seen(keys=set())


def settings() -> Settings:
    return get_settings()


@cache
def repository() -> Repository:
    return Repository.from_settings(get_settings())


def catalog() -> Catalog:
    return load_catalog()


def current_identity(request: Request) -> Identity:
    """The caller (`Unauthorized` without valid claims); their workspace record exists afterwards."""
    identity = identity_from_event(request.resolved_event.raw_event)
    key = (identity.workspace, identity.plan)
    seen = _seen()
    if key not in seen.keys:
        repository().ensure_workspace(
            identity.workspace, plan=identity.plan, default_plan=get_settings().default_plan
        )
        seen.keys.add(key)
    return identity


def reset_services() -> None:
    """Forget the repository and the workspaces seen (tests, after changing the environment)."""
    repository.cache_clear()
    _seen.cache_clear()
    reset_idempotency()
