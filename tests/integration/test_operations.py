"""Stop, undeploy and delete: what the API and tunelab's own handlers do to a model, under moto.

The provider is a recording double (what it was asked is checked); DynamoDB, S3, EventBridge,
Scheduler and SES are moto's.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest

from tests.integration.conftest import REGION, Aws
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
from tunelab.adapters.dynamodb import Repository
from tunelab.application import operations
from tunelab.composition.wiring import Services, reset_services
from tunelab.domain.errors import InUse, InvalidState, NotFound
from tunelab.domain.providers import (
    DeploymentRef,
    ProviderPermissionDenied,
    ProviderTransientError,
    TrainingJobRef,
)
from tunelab.domain.records import TrainingState
from tunelab.domain.status import ModelStatus

ADA = "ada@example.com"
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
    aws: Aws, repo: Repository, bus: BusSpy, bedrock: RecordingProvider, sagemaker: RecordingProvider
) -> Iterator[Services]:
    yield build_services(repo, bedrock, sagemaker)
    reset_services()


def _history(repo: Repository, name: str) -> list[tuple[str, str | None, str | None]]:
    items = repo.list_events(WS, name, limit=100).items
    return [(e.type, e.status.value if e.status else None, e.message) for e in items]


# --- stop ------------------------------------------------------------------------------------------------


def test_stop_asks_the_provider_and_the_model_is_stopping(
    services: Services, repo: Repository, bedrock: RecordingProvider, bus: BusSpy
) -> None:
    model = create_model(repo)

    stopped = operations.stop_training(services, WS, model.name, by=ADA)

    assert stopped.status == ModelStatus.STOPPING_TRAINING
    [ref] = bedrock.called("stop_training")
    assert ref == TrainingJobRef.model_validate(model.provider_data["training_job"])
    assert _history(repo, model.name)[-1] == (
        "status_changed",
        "stopping_training",
        f"Stop requested by {ADA}.",
    )
    [published] = bus.published()
    assert published["detail-type"] == "Fine-tuned Model Status Changed"
    assert published["detail"]["data"]["status"] == "stopping_training"
    assert published["detail"]["data"]["previous_status"] == "training"


def test_stop_is_refused_unless_training(
    services: Services, repo: Repository, bedrock: RecordingProvider
) -> None:
    model = create_model(repo, status=ModelStatus.NOT_DEPLOYED)

    with pytest.raises(InvalidState, match="Not deployed"):
        operations.stop_training(services, WS, model.name, by=ADA)

    assert bedrock.calls == []


def test_a_stop_the_provider_refuses_leaves_the_model_training(
    services: Services, repo: Repository, bedrock: RecordingProvider
) -> None:
    model = create_model(repo)
    bedrock.fail_with = ProviderPermissionDenied(
        "Stopping was refused: the role lacks bedrock:StopModelCustomizationJob."
    )

    with pytest.raises(ProviderPermissionDenied):
        operations.stop_training(services, WS, model.name, by=ADA)

    assert repo.get_model(WS, model.name).status == ModelStatus.TRAINING


def test_a_stop_before_the_job_started_waits_for_the_job(
    services: Services, repo: Repository, bedrock: RecordingProvider
) -> None:
    model = create_model(repo, training=TrainingState(), provider_data={})

    stopped = operations.stop_training(services, WS, model.name, by=ADA)

    assert stopped.status == ModelStatus.STOPPING_TRAINING
    assert bedrock.calls == []
    assert "as soon as it has started" in str(_history(repo, model.name)[-1][2])


# --- undeploy --------------------------------------------------------------------------------------------


def test_undeploy_removes_the_endpoint_and_the_schedules_and_tells_the_creator(
    services: Services, repo: Repository, sagemaker: RecordingProvider, bus: BusSpy
) -> None:
    model = create_deployed_model(services, repo, requested_at=REQUESTED)
    assert len(schedules()) == 2  # the undeploy schedule and its reminder

    undeployed = operations.undeploy_model(services, WS, model.name, by=ADA)

    assert undeployed.status == ModelStatus.NOT_DEPLOYED
    assert undeployed.deployment is None
    assert "deployment" not in undeployed.provider_data
    assert sagemaker.called("undeploy") == [DeploymentRef.model_validate(model.provider_data["deployment"])]
    assert schedules() == []
    [email] = emails()
    assert email.destinations["ToAddresses"] == [model.created_by.email]
    assert email.subject == f"[tunelab] {model.name} was undeployed"
    [published] = bus.published()
    assert published["detail"]["data"]["status"] == "not_deployed"
    assert published["detail"]["data"]["previous_status"] == "deployed"
    # The endpoint no longer leads to the model: later events of that endpoint find nothing.
    assert repo.find_model_by_endpoint(str(model.deployment.endpoint if model.deployment else "")) is None


def test_undeploy_while_deploying_is_allowed(
    services: Services, repo: Repository, sagemaker: RecordingProvider
) -> None:
    model = create_model(repo, provider="sagemaker", status=ModelStatus.DEPLOYING)

    undeployed = operations.undeploy_model(services, WS, model.name, by=ADA)

    assert undeployed.status == ModelStatus.NOT_DEPLOYED
    assert sagemaker.called("undeploy") == []  # nothing was created yet


def test_undeploy_is_refused_when_not_deployed(services: Services, repo: Repository) -> None:
    model = create_model(repo, status=ModelStatus.NOT_DEPLOYED)

    with pytest.raises(InvalidState, match="it is not deployed"):
        operations.undeploy_model(services, WS, model.name, by=ADA)


def test_an_undeploy_that_failed_midway_completes_on_retry(
    services: Services, repo: Repository, sagemaker: RecordingProvider
) -> None:
    model = create_deployed_model(services, repo, requested_at=REQUESTED)
    sagemaker.fail_with = ProviderTransientError("SageMaker is busy; try again shortly.")

    with pytest.raises(ProviderTransientError):
        operations.undeploy_model(services, WS, model.name, by=ADA)
    assert repo.get_model(WS, model.name).status == ModelStatus.DEPLOYED

    sagemaker.fail_with = None
    assert operations.undeploy_model(services, WS, model.name, by=ADA).status == ModelStatus.NOT_DEPLOYED
    assert schedules() == []


# --- delete ----------------------------------------------------------------------------------------------


def test_delete_leaves_nothing_behind(
    services: Services, repo: Repository, bedrock: RecordingProvider, bus: BusSpy
) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=ARTIFACTS_BUCKET)
    model = create_model(repo, status=ModelStatus.NOT_DEPLOYED)
    data = f"training-data/{WS}/{model.name}/{model.uid}"
    output = f"bedrock-output/{WS}/{model.name}/0a1b2c3d4e"
    other = f"training-data/{WS}/another-model/{model.uid}/train.jsonl"
    for key in (
        f"{data}/train.jsonl",
        f"{data}/validation.jsonl",
        f"{output}/training_artifacts/metrics.csv",
        other,
    ):
        s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=b"{}")
    training = model.training.model_copy(
        update={
            "data_uri": f"s3://{ARTIFACTS_BUCKET}/{data}/train.jsonl",
            "output_uri": f"s3://{ARTIFACTS_BUCKET}/{output}/",
        }
    )
    model = repo.update_model(
        WS,
        model.name,
        {"training": training, "provider_data": {**model.provider_data, "model_ref": "arn:aws:bedrock:m"}},
    )

    operations.delete_model(services, WS, model.name, by=ADA)

    [trained] = bedrock.called("delete_model")
    assert trained.identity.model_name == model.name
    assert trained.job == TrainingJobRef.model_validate(model.provider_data["training_job"])
    assert trained.model_ref == "arn:aws:bedrock:m"
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=ARTIFACTS_BUCKET).get("Contents", [])]
    assert left == [other]
    with pytest.raises(NotFound):
        repo.get_model(WS, model.name)
    assert repo.get_task_token(WS, model.name, "training") is None
    # The dataset is no longer in use: it can be deleted.
    repo.delete_dataset(WS, model.dataset.id)
    # Subscribers on tunelab's bus hear of it.
    [published] = bus.published()
    assert published["detail-type"] == "Fine-tuned Model Deleted"
    assert published["detail"]["workspace"] == WS
    assert published["detail"]["data"] == {
        "model_name": model.name,
        "model_uid": model.uid,
        "last_status": "not_deployed",
        "provider": "bedrock",
        "base_model_id": model.base_model_id,
        "deleted_by": ADA,
    }


def test_delete_is_refused_while_a_model_continuing_from_it_trains(
    services: Services, repo: Repository, bedrock: RecordingProvider, bus: BusSpy
) -> None:
    parent = create_model(repo, "support-bot-v1", status=ModelStatus.NOT_DEPLOYED)
    child = create_model(repo, "support-bot-v2", base_fine_tuned_model=parent.name)
    create_model(repo, "unrelated-bot", status=ModelStatus.TRAINING)

    with pytest.raises(InUse, match="'support-bot-v2' is training from it") as refused:
        operations.delete_model(services, WS, parent.name, by=ADA)

    assert refused.value.code == "in_use"
    assert bedrock.called("delete_model") == []
    assert repo.get_model(WS, parent.name).status == ModelStatus.NOT_DEPLOYED
    assert bus.published() == []

    # Once the continuing model has trained, the parent can go.
    repo.transition(WS, child.name, {ModelStatus.TRAINING}, ModelStatus.NOT_DEPLOYED)
    operations.delete_model(services, WS, parent.name, by=ADA)
    with pytest.raises(NotFound):
        repo.get_model(WS, parent.name)


def test_delete_is_refused_while_deployed(
    services: Services, repo: Repository, sagemaker: RecordingProvider
) -> None:
    model = create_deployed_model(services, repo, requested_at=REQUESTED)

    with pytest.raises(InvalidState, match="undeploy it first"):
        operations.delete_model(services, WS, model.name, by=ADA)

    assert sagemaker.called("delete_model") == []
    assert repo.get_model(WS, model.name).status == ModelStatus.DEPLOYED


def test_a_provider_refusal_keeps_the_record(
    services: Services, repo: Repository, bedrock: RecordingProvider
) -> None:
    model = create_model(repo, status=ModelStatus.TRAINING_FAILED)
    bedrock.fail_with = ProviderPermissionDenied(
        "Deleting was refused: the role lacks bedrock:DeleteCustomModel."
    )

    with pytest.raises(ProviderPermissionDenied):
        operations.delete_model(services, WS, model.name, by=ADA)

    assert repo.get_model(WS, model.name).status == ModelStatus.TRAINING_FAILED
