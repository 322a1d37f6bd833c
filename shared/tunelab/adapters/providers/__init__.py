"""Where models train and serve, one adapter per provider behind the provider port
(`application.ports.TrainingProvider`): Bedrock and SageMaker here; the local runtime's own provider
lives with the runtime (`tunelab.local.provider`), which registers it with the composition root.

Importing this package imports no boto3: a provider's module loads when its events are parsed or
the provider is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from tunelab.domain.catalog import Provider
from tunelab.domain.providers import DeploymentState, ProviderEvent, TrainingState, UnhandledEventError

# Each module defines `parse_event(detail_type, detail)`: a provider's events, as states.
PROVIDER_MODULES: dict[Provider, str] = {
    "bedrock": "tunelab.adapters.providers.bedrock",
    "sagemaker": "tunelab.adapters.providers.sagemaker",
    "local": "tunelab.adapters.providers.local",
}
# EventBridge `source` of each provider's events.
EVENT_SOURCES: dict[str, Provider] = {
    "aws.bedrock": "bedrock",
    "aws.sagemaker": "sagemaker",
    "tunelab.local": "local",
}


def parse_event(
    source: str, detail_type: str, detail: Mapping[str, Any], account: str | None = None
) -> ProviderEvent:
    """A provider's EventBridge event: whose it is and what it says; `UnhandledEventError` for what no
    provider handles. Needs no credentials: the handler parses first, then finds the record."""
    provider = EVENT_SOURCES.get(source)
    if provider is None:
        raise UnhandledEventError(f"events from {source!r} are not handled")
    module = importlib.import_module(PROVIDER_MODULES[provider])
    state: TrainingState | DeploymentState = module.parse_event(detail_type, detail)
    return ProviderEvent(provider=provider, account=account, state=state)


__all__ = ["EVENT_SOURCES", "PROVIDER_MODULES", "parse_event"]
