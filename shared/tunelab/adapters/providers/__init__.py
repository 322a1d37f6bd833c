"""Where models train and serve: one protocol (`base.TrainingProvider`), one module per provider.

Importing this package imports no boto3; `get_provider` loads the provider's module on demand.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from tunelab.domain.providers import (
    DeploymentState,
    ProviderName,
    TrainingProvider,
    TrainingState,
    UnhandledEventError,
)

# Each module defines `build_provider(config, **options) -> TrainingProvider`.
PROVIDER_MODULES: dict[str, str] = {
    "bedrock": "tunelab.adapters.providers.bedrock",
    "sagemaker": "tunelab.adapters.providers.sagemaker",
    "local": "tunelab.adapters.providers.local",
}
# EventBridge `source` of each provider's events.
EVENT_SOURCES: dict[str, str] = {
    "aws.bedrock": "bedrock",
    "aws.sagemaker": "sagemaker",
    "tunelab.local": "local",
}


def get_provider(name: ProviderName, config: Any, **options: Any) -> TrainingProvider:
    """The provider `name`, built from its config (`BedrockConfig`, `SageMakerConfig`, the local one).

    `options` go to the module's `build_provider` (e.g. `session=` a boto3 session).
    """
    try:
        module = importlib.import_module(PROVIDER_MODULES[name])
    except KeyError:
        raise ValueError(f"unknown provider {name!r}") from None
    provider: TrainingProvider = module.build_provider(config, **options)
    return provider


def parse_event(source: str, detail_type: str, detail: Mapping[str, Any]) -> TrainingState | DeploymentState:
    """A provider's EventBridge event as a state; `UnhandledEventError` for what no provider handles.

    Needs no credentials: the handler parses first, then finds the record by the state's id.
    """
    name = EVENT_SOURCES.get(source)
    if name is None:
        raise UnhandledEventError(f"events from {source!r} are not handled")
    module = importlib.import_module(PROVIDER_MODULES[name])
    state: TrainingState | DeploymentState = module.parse_event(detail_type, detail)
    return state


__all__ = ["EVENT_SOURCES", "PROVIDER_MODULES", "get_provider", "parse_event"]
