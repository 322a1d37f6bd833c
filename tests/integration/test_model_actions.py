"""Stop, undeploy and delete (`fine_tuned_models.stop` / `.delete`, `deployments.undeploy`): what the
API and tunelab's own handlers do to a model, under moto.

The provider is a recording double (what it was asked is checked); DynamoDB, S3, EventBridge,
Scheduler and SES are moto's.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest

from tests.integration.conftest import ACCOUNT, REGION, Aws
from tests.integration.handler_support import (
    WS,
    BusSpy,
    RecordingProvider,
    build_services,
    create_deployed_model,
    create_model,
    emails,
    schedules,
)
from tunelab.adapters.providers.bedrock import BedrockConfig, BedrockProvider
from tunelab.application import deployments, fine_tuned_models
from tunelab.composition.wiring import Services, reset_services
from tunelab.domain.errors import (
    InUse,
    InvalidState,
    NotFound,
    ProviderPermissionDenied,
    ProviderTransientError,
)
from tunelab.domain.identity import Identity
from tunelab.domain.providers import TrainingJobRef
from tunelab.domain.records import ModelChanges, ProviderRefs, TrainingState
from tunelab.domain.status import ModelStatus

ADA = "ada@example.com"
IDENTITY = Identity(sub="7d8ca528-4931-4254-9273-ea5ee853f271", email=ADA, workspace=WS)
# The API Gateway request id of the request that asked (the events it causes carry it).
CORRELATION = "c0ffee00-1111-4222-8333-444455556666"
REQUESTED = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
ARTIFACTS_BUCKET = "tunelab-test-artifacts"


@pytest.fixture
def bedrock() -> RecordingProvider:
    return RecordingProvider("bedrock")


@pytest.fixture
def sagemaker() -> RecordingProvider:
    return RecordingProvider("sagemaker")


@pytest.fixture
def bus(aws: Aws) -> BusSpy:
    return BusSpy("tunelab-test")


@pytest.fixture
def services(
    aws: Aws, repo: Services, bus: BusSpy, bedrock: RecordingProvider, sagemaker: RecordingProvider
) -> Iterator[Services]:
    # The platform's artifacts bucket (training data, Bedrock's job output) exists with the stack.
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=ARTIFACTS_BUCKET)
    yield build_services(repo, bedrock, sagemaker)
    reset_services()


def _history(repo: Services, name: str) -> list[tuple[str, str | None, str | None]]:
    items = repo.models.list_events(WS, name, limit=100).items
    return [(e.type, e.status.value if e.status else None, e.message) for e in items]


# --- stop ------------------------------------------------------------------------------------------------


def test_stop_asks_the_provider_and_the_model_is_stopping(
    services: Services, repo: Services, bedrock: RecordingProvider, bus: BusSpy
) -> None:
    model = create_model(repo)

    stopped = fine_tuned_models.stop(services, IDENTITY, model.name, correlation_id=CORRELATION)

    assert stopped.status == ModelStatus.STOPPING_TRAINING
    [ref] = bedrock.called("stop_training")
    assert ref == model.refs.training_job
    assert _history(repo, model.name)[-1] == (
        "status_changed",
        "stopping_training",
        f"Stop requested by {ADA}.",
    )
    [published] = bus.published()
    assert published["detail-type"] == "Fine-tuned Model Status Changed"
    assert published["detail"]["data"]["status"] == "stopping_training"
    assert published["detail"]["data"]["previous_status"] == "training"
    assert published["detail"]["correlation_id"] == CORRELATION


def test_stop_is_refused_unless_training(
    services: Services, repo: Services, bedrock: RecordingProvider
) -> None:
    model = create_model(repo, status=ModelStatus.NOT_DEPLOYED)

    with pytest.raises(InvalidState, match="Not deployed"):
        fine_tuned_models.stop(services, IDENTITY, model.name, correlation_id=CORRELATION)

    assert bedrock.calls == []


def test_a_stop_the_provider_refuses_leaves_the_model_training(
    services: Services, repo: Services, bedrock: RecordingProvider
) -> None:
    model = create_model(repo)
    bedrock.fail_with = ProviderPermissionDenied(
        "Stopping was refused: the role lacks bedrock:StopModelCustomizationJob."
    )

    with pytest.raises(ProviderPermissionDenied):
        fine_tuned_models.stop(services, IDENTITY, model.name, correlation_id=CORRELATION)

    assert repo.models.get(WS, model.name).status == ModelStatus.TRAINING


def test_a_stop_before_the_job_started_waits_for_the_job(
    services: Services, repo: Services, bedrock: RecordingProvider
) -> None:
    model = create_model(repo, training=TrainingState(), refs=ProviderRefs())

    stopped = fine_tuned_models.stop(services, IDENTITY, model.name, correlation_id=CORRELATION)

    assert stopped.status == ModelStatus.STOPPING_TRAINING
    assert bedrock.calls == []
    assert "as soon as it has started" in str(_history(repo, model.name)[-1][2])


# --- undeploy --------------------------------------------------------------------------------------------


def test_undeploy_removes_the_endpoint_and_the_schedules_and_tells_the_creator(
    services: Services, repo: Services, sagemaker: RecordingProvider, bus: BusSpy
) -> None:
    model = create_deployed_model(services, repo, requested_at=REQUESTED)
    assert len(schedules()) == 2  # the undeploy schedule and its reminder

    assert model.deployment is not None
    endpoint = str(model.deployment.endpoint)
    assert repo.models.find_by_endpoint("sagemaker", endpoint) is not None

    undeployed = deployments.undeploy(services, WS, model.name, by=ADA, correlation_id=CORRELATION)

    assert undeployed.status == ModelStatus.NOT_DEPLOYED
    assert undeployed.deployment is None
    assert undeployed.refs.deployment is None
    assert sagemaker.called("undeploy") == [model.refs.deployment]
    assert schedules() == []
    [email] = emails()
    assert email.destinations["ToAddresses"] == [model.created_by.email]
    assert email.subject == f"[tunelab] {model.name} was undeployed"
    [published] = bus.published()
    assert published["detail"]["data"]["status"] == "not_deployed"
    assert published["detail"]["data"]["previous_status"] == "deployed"
    assert published["detail"]["correlation_id"] == CORRELATION
    # The endpoint no longer leads to the model: later events of that endpoint find nothing.
    assert repo.models.find_by_endpoint("sagemaker", endpoint) is None


def test_undeploy_while_deploying_is_allowed(
    services: Services, repo: Services, sagemaker: RecordingProvider
) -> None:
    model = create_model(repo, provider="sagemaker", status=ModelStatus.DEPLOYING)

    undeployed = deployments.undeploy(services, WS, model.name, by=ADA, correlation_id=CORRELATION)

    assert undeployed.status == ModelStatus.NOT_DEPLOYED
    assert sagemaker.called("undeploy") == []  # nothing was created yet


def test_undeploy_is_refused_when_not_deployed(services: Services, repo: Services) -> None:
    model = create_model(repo, status=ModelStatus.NOT_DEPLOYED)

    with pytest.raises(InvalidState, match="it is not deployed"):
        deployments.undeploy(services, WS, model.name, by=ADA, correlation_id=CORRELATION)


def test_an_undeploy_that_failed_midway_completes_on_retry(
    services: Services, repo: Services, sagemaker: RecordingProvider
) -> None:
    model = create_deployed_model(services, repo, requested_at=REQUESTED)
    sagemaker.fail_with = ProviderTransientError("SageMaker is busy; try again shortly.")

    with pytest.raises(ProviderTransientError):
        deployments.undeploy(services, WS, model.name, by=ADA, correlation_id=CORRELATION)
    assert repo.models.get(WS, model.name).status == ModelStatus.DEPLOYED

    sagemaker.fail_with = None
    retried = deployments.undeploy(services, WS, model.name, by=ADA, correlation_id=CORRELATION)
    assert retried.status == ModelStatus.NOT_DEPLOYED
    assert schedules() == []


# --- delete ----------------------------------------------------------------------------------------------


def test_delete_leaves_nothing_behind(
    services: Services, repo: Services, bedrock: RecordingProvider, bus: BusSpy
) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    model = create_model(repo, status=ModelStatus.NOT_DEPLOYED)
    # The prepared training data of this model's life (where the provider's job read it).
    data = bedrock.training_data_folder(
        model.identity, model.uid, services.catalog.model(model.base_model_id)
    ).removeprefix(f"s3://{ARTIFACTS_BUCKET}/")
    other = f"training-data/{WS}/another-model/{model.uid}/train.jsonl"
    for key in (f"{data}train.jsonl", f"{data}validation.jsonl", other):
        s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=b"{}")
    training = model.training.model_copy(update={"data_uri": f"s3://{ARTIFACTS_BUCKET}/{data}train.jsonl"})
    model = repo.models.update(
        WS,
        model.name,
        ModelChanges(
            training=training, refs=model.refs.model_copy(update={"model_ref": "arn:aws:bedrock:m"})
        ),
    )

    fine_tuned_models.delete(services, IDENTITY, model.name, correlation_id=CORRELATION)

    # The provider removes what it holds of the model (the job's output folder too: see
    # test_deleting_a_bedrock_model_leaves_nothing_in_the_artifacts_bucket).
    [trained] = bedrock.called("delete_model")
    assert trained.identity.model_name == model.name
    assert trained.job == model.refs.training_job
    assert trained.model_ref == "arn:aws:bedrock:m"
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=ARTIFACTS_BUCKET).get("Contents", [])]
    assert left == [other]
    with pytest.raises(NotFound):
        repo.models.get(WS, model.name)
    assert repo.task_tokens.get(WS, model.name, "training") is None
    # The dataset is no longer in use: it can be deleted.
    repo.datasets.delete(WS, model.dataset.id)
    # Subscribers on tunelab's bus hear of it.
    [published] = bus.published()
    assert published["detail-type"] == "Fine-tuned Model Deleted"
    assert published["detail"]["workspace"] == WS
    assert published["detail"]["correlation_id"] == CORRELATION
    assert published["detail"]["data"] == {
        "model_name": model.name,
        "model_uid": model.uid,
        "last_status": "not_deployed",
        "provider": "bedrock",
        "base_model_id": model.base_model_id,
        "deleted_by": ADA,
    }


@pytest.mark.parametrize("region_dropped", [False, True], ids=["reached", "region-dropped-since"])
def test_deleting_a_bedrock_model_leaves_nothing_in_the_bucket_of_the_region_it_trained_in(
    services: Services, repo: Services, region_dropped: bool
) -> None:
    """A Llama model trained in us-west-2 (the platform is in us-east-1): its prepared data and the job's
    output are in the regional data bucket, and deleting the model empties its folders there — where
    they were recorded, so also after the operator dropped the region from the deployment."""
    regional = "tunelab-bedrock-123456789012-us-west-2"
    west = boto3.client("s3", region_name="us-west-2")
    west.create_bucket(Bucket=regional, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    home = boto3.client("s3", region_name=REGION)
    config = BedrockConfig(
        region=REGION,
        service_role_arn=f"arn:aws:iam::{ACCOUNT}:role/tunelab-bedrock",
        output_bucket=ARTIFACTS_BUCKET,
        regional_buckets={"us-west-2": regional},
    )
    provider = BedrockProvider(config, session=boto3.Session(region_name=REGION))
    llama = services.catalog.model("meta.llama3-1-8b-instruct-v1:0:128k")
    job_arn = f"arn:aws:bedrock:us-west-2:{ACCOUNT}:model-customization-job/support-bot-v1"
    model = create_model(repo, status=ModelStatus.NOT_DEPLOYED, base_model_id=llama.id)
    data = provider.training_data_folder(model.identity, model.uid, llama)
    output = provider.output_uri(model.identity, "us-west-2")
    assert data.startswith(f"s3://{regional}/")
    assert output.startswith(f"s3://{regional}/")
    model = repo.models.update(
        WS,
        model.name,
        ModelChanges(
            training=TrainingState(job_id=job_arn, data_uri=f"{data}train.jsonl", output_uri=output),
            refs=ProviderRefs(
                training_job=TrainingJobRef(
                    provider="bedrock", job_id=job_arn, job_name="support-bot-v1-job", output_uri=output
                ),
                model_ref=f"arn:aws:bedrock:us-west-2:{ACCOUNT}:custom-model/support-bot-v1",
            ),
        ),
    )
    other = f"training-data/{WS}/another-model/{model.uid}/train.jsonl"
    for key in (
        f"{data.removeprefix(f's3://{regional}/')}train.jsonl",
        f"{data.removeprefix(f's3://{regional}/')}validation.jsonl",
        f"{output.removeprefix(f's3://{regional}/')}training_artifacts/metrics.csv",
        other,
    ):
        west.put_object(Bucket=regional, Key=key, Body=b"{}")
    home.put_object(Bucket=ARTIFACTS_BUCKET, Key=other, Body=b"{}")
    if region_dropped:
        provider = BedrockProvider(
            config.model_copy(update={"regional_buckets": {}}), session=boto3.Session(region_name=REGION)
        )
    services.providers.set("bedrock", provider)

    fine_tuned_models.delete(services, IDENTITY, model.name, correlation_id=CORRELATION)

    left = [o["Key"] for o in west.list_objects_v2(Bucket=regional).get("Contents", [])]
    assert left == [other]
    assert [o["Key"] for o in home.list_objects_v2(Bucket=ARTIFACTS_BUCKET).get("Contents", [])] == [other]
    with pytest.raises(NotFound):
        repo.models.get(WS, model.name)


def test_delete_is_refused_while_a_model_continuing_from_it_trains(
    services: Services, repo: Services, bedrock: RecordingProvider, bus: BusSpy
) -> None:
    parent = create_model(repo, "support-bot-v1", status=ModelStatus.NOT_DEPLOYED)
    child = create_model(repo, "support-bot-v2", base_fine_tuned_model=parent.name)
    create_model(repo, "unrelated-bot", status=ModelStatus.TRAINING)

    with pytest.raises(InUse, match="'support-bot-v2' is training from it") as refused:
        fine_tuned_models.delete(services, IDENTITY, parent.name, correlation_id=CORRELATION)

    assert refused.value.code == "in_use"
    assert bedrock.called("delete_model") == []
    assert repo.models.get(WS, parent.name).status == ModelStatus.NOT_DEPLOYED
    assert bus.published() == []

    # Once the continuing model has trained, the parent can go.
    repo.models.transition(WS, child.name, {ModelStatus.TRAINING}, ModelStatus.NOT_DEPLOYED)
    fine_tuned_models.delete(services, IDENTITY, parent.name, correlation_id=CORRELATION)
    with pytest.raises(NotFound):
        repo.models.get(WS, parent.name)


def test_delete_is_refused_while_deployed(
    services: Services, repo: Services, sagemaker: RecordingProvider
) -> None:
    model = create_deployed_model(services, repo, requested_at=REQUESTED)

    with pytest.raises(InvalidState, match="undeploy it first"):
        fine_tuned_models.delete(services, IDENTITY, model.name, correlation_id=CORRELATION)

    assert sagemaker.called("delete_model") == []
    assert repo.models.get(WS, model.name).status == ModelStatus.DEPLOYED


def test_a_provider_refusal_keeps_the_record(
    services: Services, repo: Services, bedrock: RecordingProvider
) -> None:
    model = create_model(repo, status=ModelStatus.TRAINING_FAILED)
    bedrock.fail_with = ProviderPermissionDenied(
        "Deleting was refused: the role lacks bedrock:DeleteCustomModel."
    )

    with pytest.raises(ProviderPermissionDenied):
        fine_tuned_models.delete(services, IDENTITY, model.name, correlation_id=CORRELATION)

    assert repo.models.get(WS, model.name).status == ModelStatus.TRAINING_FAILED
