"""The composition root's providers follow each workspace's stored BYOK connection.

A warm container keeps a workspace's SageMaker provider; another container may replace or delete the
connection meanwhile. The provider used next must be the account's the workspace has now."""

from __future__ import annotations

import pytest

from tests.integration import factories
from tests.integration.conftest import Aws
from tunelab.adapters.providers.sagemaker import SageMakerProvider
from tunelab.composition.wiring import Services
from tunelab.domain.errors import ValidationFailed


def _account(provider: object) -> str:
    assert isinstance(provider, SageMakerProvider)
    return provider.connection.role_arn.split(":")[4]


def test_a_replaced_connection_is_used_at_once_and_a_deleted_one_refused(aws: Aws) -> None:
    services = Services()
    services.connections.put(
        factories.connection(role_arn="arn:aws:iam::111111111111:role/tunelab-connector")
    )
    first = services.providers.named("sagemaker", "ws-acme")
    assert _account(first) == "111111111111"
    assert services.providers.named("sagemaker", "ws-acme") is first  # kept while unchanged

    # Another container reconnects the workspace to another account.
    Services().connections.put(
        factories.connection(role_arn="arn:aws:iam::222222222222:role/tunelab-connector")
    )
    assert _account(services.providers.named("sagemaker", "ws-acme")) == "222222222222"

    Services().connections.delete("ws-acme", "sagemaker")
    with pytest.raises(ValidationFailed, match="no sagemaker connection"):
        services.providers.named("sagemaker", "ws-acme")
    # Providers that need no connection are unaffected.
    assert services.providers.named("bedrock", "ws-acme").name == "bedrock"
