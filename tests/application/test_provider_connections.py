"""The SageMaker (BYOK) connection on the fakes: the connector's parameters tunelab makes for a
workspace, verified before it is stored, never moved under the models that run in it."""

from __future__ import annotations

import re

import pytest

from tests.application.conftest import ADA, SAGEMAKER_MODEL, create_request, ready_dataset
from tests.fakes import FakeContext
from tunelab.application import fine_tuned_models, provider_connections
from tunelab.application.commands import PutSageMakerProviderIn
from tunelab.domain.errors import Forbidden, InUse, ValidationFailed
from tunelab.domain.providers import ConnectionCheck, ConnectionCheckItem
from tunelab.domain.records import ModelChanges
from tunelab.domain.status import ModelStatus as S

REQUEST = PutSageMakerProviderIn(
    role_arn="arn:aws:iam::210987654321:role/tunelab-connector",
    region="us-west-2",
    artifact_bucket="customer-artifacts",
)


def test_tunelab_makes_the_external_id_and_the_connectors_parameters(ctx: FakeContext) -> None:
    ctx.workspaces.set_plan("ws-globex", "internal", default_plan="trial")
    setup = provider_connections.connector(ctx, ADA)
    again = provider_connections.connector(ctx, ADA)
    other = provider_connections.connector(ctx, ADA.model_copy(update={"workspace": "ws-globex"}))

    assert re.fullmatch(r"tunelab-[0-9a-f]{32}", setup.external_id)
    assert again.external_id == setup.external_id  # made once, then always the same
    assert other.external_id != setup.external_id  # one per workspace
    assert setup.role_session_name == "tunelab-ws-acme"
    assert setup.parameters == {
        "WorkspaceId": "ws-acme",
        "ExternalId": setup.external_id,
        "PlatformRoleArns": "arn:aws:iam::123456789012:role/tunelab-api",
        "PlatformEventBusArn": "arn:aws:events:us-east-1:123456789012:event-bus/tunelab",
    }
    assert f"ExternalId={setup.external_id}" in setup.deploy_command
    assert "--stack-name tunelab-connector-ws-acme " in setup.deploy_command  # one stack per workspace
    assert setup.message is None


def test_a_connection_uses_the_workspaces_external_id_and_refuses_another(ctx: FakeContext) -> None:
    chosen = REQUEST.model_copy(update={"external_id": "customer-chosen-id"})
    with pytest.raises(ValidationFailed) as refused:
        provider_connections.connect_sagemaker(ctx, ADA, chosen)
    assert refused.value.details[0].field == "external_id"
    assert ctx.connections.find(ADA.workspace, "sagemaker") is None

    made = provider_connections.connector(ctx, ADA).external_id
    stored = provider_connections.connect_sagemaker(ctx, ADA, REQUEST)  # left out: the workspace's
    again = provider_connections.connect_sagemaker(ctx, ADA, REQUEST.model_copy(update={"external_id": made}))
    assert stored.external_id == again.external_id == made


def test_one_role_cannot_serve_two_workspaces(ctx: FakeContext) -> None:
    provider_connections.connect_sagemaker(ctx, ADA, REQUEST)
    globex = ADA.model_copy(update={"workspace": "ws-globex"})
    ctx.workspaces.set_plan("ws-globex", "subscription", default_plan="trial")

    with pytest.raises(InUse, match="another tunelab workspace"):
        provider_connections.connect_sagemaker(ctx, globex, REQUEST)
    assert ctx.connections.find("ws-globex", "sagemaker") is None


def test_workspace_ids_too_long_for_a_session_name_cannot_use_byok(ctx: FakeContext) -> None:
    long_id = ADA.model_copy(update={"workspace": "w" * 57})
    ctx.workspaces.set_plan(long_id.workspace, "subscription", default_plan="trial")
    with pytest.raises(Forbidden, match="longer than 56 characters"):
        provider_connections.connector(ctx, long_id)


def test_a_verified_connection_is_stored_and_listed(ctx: FakeContext) -> None:
    stored = provider_connections.connect_sagemaker(ctx, ADA, REQUEST)

    assert (stored.status, stored.region, stored.account) == ("connected", "us-west-2", "210987654321")
    listed = {p.provider: p for p in provider_connections.list_providers(ctx, ADA)}
    assert listed["sagemaker"].connection == stored
    assert listed["bedrock"].status == "connected"
    # The platform is in us-east-1; its regional stack reaches us-west-2 (FakeConfig, as deployed).
    assert listed["bedrock"].region == "us-east-1"
    assert listed["bedrock"].message == (
        "This deployment reaches Bedrock in us-east-1 and us-west-2; each model trains in its "
        "`training_region` (GET /v1/base-models)."
    )
    assert ctx.providers.forgotten == [("sagemaker", ADA.workspace)]


def test_a_failed_check_stores_nothing_and_names_the_field(ctx: FakeContext) -> None:
    problem = "The role cannot read the artifact bucket customer-artifacts."
    ctx.providers.check = ConnectionCheck(
        ok=False,
        message=problem,
        checks=[ConnectionCheckItem(name="s3:ListBucket", ok=False, message=problem)],
    )

    with pytest.raises(ValidationFailed) as refused:
        provider_connections.connect_sagemaker(ctx, ADA, REQUEST)

    assert refused.value.details[0].field == "artifact_bucket"
    assert ctx.connections.find(ADA.workspace, "sagemaker") is None


def test_a_plan_without_byok_cannot_connect(ctx: FakeContext) -> None:
    ctx.workspaces.set_plan(ADA.workspace, "pay_as_you_go", default_plan="trial")
    with pytest.raises(Forbidden, match="pay as you go plan"):
        provider_connections.connect_sagemaker(ctx, ADA, REQUEST)
    with pytest.raises(Forbidden, match="pay as you go plan"):
        provider_connections.connector(ctx, ADA)


def test_the_connection_cannot_move_or_go_while_its_models_train(ctx: FakeContext) -> None:
    provider_connections.connect_sagemaker(ctx, ADA, REQUEST)
    dataset = ready_dataset(ctx)
    request = create_request(
        dataset,
        base_model_id=SAGEMAKER_MODEL,
        resources={"instance_type": "ml.g6e.2xlarge", "instance_count": 1, "volume_size_gb": 50},
    )
    model = fine_tuned_models.create(ctx, ADA, request, correlation_id="r")
    moved = REQUEST.model_copy(update={"role_arn": "arn:aws:iam::999999999999:role/tunelab-connector"})

    with pytest.raises(InUse, match="'support-bot' \\(Training\\)"):
        provider_connections.connect_sagemaker(ctx, ADA, moved)
    with pytest.raises(InUse):
        provider_connections.disconnect_sagemaker(ctx, ADA)
    # Re-verifying the same account is fine; once the model has ended, the connection may go.
    provider_connections.connect_sagemaker(ctx, ADA, REQUEST)
    ctx.models.transition(ADA.workspace, model.name, {S.TRAINING}, S.TRAINING_FAILED, ModelChanges())
    provider_connections.disconnect_sagemaker(ctx, ADA)
    assert ctx.connections.find(ADA.workspace, "sagemaker") is None
