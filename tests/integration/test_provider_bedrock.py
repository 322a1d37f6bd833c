"""The Bedrock provider under moto (customization jobs) and botocore's Stubber (what moto lacks).

Every request goes through botocore, which validates it against Bedrock's service model; names are
also checked against the model's patterns, which botocore does not enforce client-side.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from tunelab.adapters.providers import parse_event as parse_any_event
from tunelab.adapters.providers.bedrock import (
    BedrockConfig,
    BedrockProvider,
    arn_region,
    client_token,
    custom_model_name,
    deployment_name,
    job_name,
    parse_event,
    training_state,
)
from tunelab.adapters.s3 import S3Objects
from tunelab.application.ports import TrainingProvider
from tunelab.domain.catalog import BaseModelSpec, load_catalog
from tunelab.domain.errors import (
    NotFound,
    ProviderPermissionDenied,
    ProviderTransientError,
    ValidationFailed,
)
from tunelab.domain.hyperparameters import ResolvedEarlyStopping, ResolvedHyperparameters
from tunelab.domain.providers import (
    DeploymentRef,
    DeployRequest,
    InvokeParams,
    ModelIdentity,
    ParentModel,
    ProviderEvent,
    TrainedModel,
    TrainedOutput,
    TrainingJobRef,
    TrainingRequest,
    TrainingState,
    UnhandledEventError,
)

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/tunelab-bedrock-service"
BUCKET = "tunelab-platform-artifacts"
CUSTOM_MODEL_ARN = (
    "arn:aws:bedrock:us-east-1:123456789012:custom-model/amazon.nova-micro-v1:0:128k/abcdef123456"
)
EVENTS = Path(__file__).resolve().parents[1] / "fixtures" / "events"
SERVICE = botocore.session.get_session().get_service_model("bedrock")


def _pattern(shape: str, member: str) -> str:
    input_shape = SERVICE.operation_model(shape).input_shape
    assert input_shape is not None
    return str(input_shape.members[member].metadata["pattern"])


def _model(predicate: Any) -> BaseModelSpec:
    return next(m for m in load_catalog().models if m.provider == "bedrock" and predicate(m))


ON_DEMAND = _model(lambda m: m.deployment.method == "on_demand")
PROVISIONED = _model(lambda m: m.deployment.method == "provisioned_throughput")
IDENTITY = ModelIdentity(
    workspace_id="ws-acme", model_name="support-bot-v1", created_at=datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


@pytest.fixture
def provider(aws: None) -> BedrockProvider:
    config = BedrockConfig(region=REGION, service_role_arn=ROLE, output_bucket=BUCKET)
    session = boto3.Session(region_name=REGION)
    # The platform's artifacts bucket: training data and the jobs' output live there.
    session.client("s3").create_bucket(Bucket=BUCKET)
    return BedrockProvider(config, session=session)


def _request(**changes: Any) -> TrainingRequest:
    fields: dict[str, Any] = {
        "identity": IDENTITY,
        "base_model": ON_DEMAND,
        "training_data_uri": f"s3://{BUCKET}/data/ws-acme/support-bot-v1/train.jsonl",
        "validation_data_uri": f"s3://{BUCKET}/data/ws-acme/support-bot-v1/validation.jsonl",
        "hyperparameters": {"epochCount": "3", "learningRate": "0.0001", "learningRateWarmupSteps": "10"},
        "tags": {"team": "support"},
    }
    fields.update(changes)
    return TrainingRequest(**fields)


def _deploy_request(spec: BaseModelSpec, **changes: Any) -> DeployRequest:
    fields: dict[str, Any] = {
        "identity": IDENTITY,
        "requested_at": datetime(2026, 11, 29, 9, 0, tzinfo=UTC),
        "base_model": spec,
        "model_ref": CUSTOM_MODEL_ARN,
    }
    fields.update(changes)
    return DeployRequest(**fields)


def test_the_provider_meets_the_protocol(provider: BedrockProvider) -> None:
    port: TrainingProvider = provider  # mypy checks every member's signature
    members = {n for n in vars(TrainingProvider) if not n.startswith("_")}
    members |= set(TrainingProvider.__annotations__)
    assert {"storage", "training_data_folder", "trained_output", "speaks_for"} <= members
    assert [m for m in sorted(members) if not hasattr(port, m)] == []
    assert port.name == "bedrock"


def test_bedrock_keeps_no_checkpoints_to_list_or_download(provider: BedrockProvider) -> None:
    ref = TrainingJobRef(provider="bedrock", job_id="arn:aws:bedrock:job/abc", job_name="abc")
    found = provider.checkpoints(ref)
    assert found.items == ()
    assert found.message is not None
    assert "Bedrock keeps no checkpoints" in found.message
    with pytest.raises(ValidationFailed, match="Bedrock keeps no checkpoints"):
        provider.checkpoint_download(ref, "checkpoint-4")


def test_the_workflow_waits_a_week_for_a_bedrock_job(provider: BedrockProvider) -> None:
    # Bedrock states no limit on a customization job.
    assert provider.training_timeout_s == 7 * 24 * 3600


# --- training -------------------------------------------------------------------------------------


def test_start_training_sends_the_job_bedrock_expects(provider: BedrockProvider) -> None:
    ref = provider.start_training(_request())

    job = provider.bedrock.get_model_customization_job(jobIdentifier=ref.job_name)
    assert job["jobArn"] == ref.job_id
    assert job["jobName"] == job_name(IDENTITY)
    assert job["roleArn"] == ROLE
    assert job["clientRequestToken"] == client_token(IDENTITY, "train")
    assert job["hyperParameters"] == {
        "epochCount": "3",
        "learningRate": "0.0001",
        "learningRateWarmupSteps": "10",
    }
    assert job["trainingDataConfig"] == {"s3Uri": f"s3://{BUCKET}/data/ws-acme/support-bot-v1/train.jsonl"}
    assert job["validationDataConfig"] == {
        "validators": [{"s3Uri": f"s3://{BUCKET}/data/ws-acme/support-bot-v1/validation.jsonl"}]
    }
    assert job["outputDataConfig"]["s3Uri"].startswith(
        f"s3://{BUCKET}/bedrock-output/ws-acme/support-bot-v1/"
    )
    assert ref.output_uri == job["outputDataConfig"]["s3Uri"]
    tags = provider.bedrock.list_tags_for_resource(resourceARN=ref.job_id)["tags"]
    assert {"key": "tunelab-workspace", "value": "ws-acme"} in tags
    assert {"key": "tunelab-model", "value": "support-bot-v1"} in tags
    assert {"key": "team", "value": "support"} in tags


def test_names_and_tokens_fit_bedrocks_rules() -> None:
    long_name = "a" + "-b" * 31  # 63 characters with single hyphens
    for name in ("support-bot-v1", long_name, "x", "a--b"):
        identity = IDENTITY.model_copy(update={"model_name": name})
        job = job_name(identity)
        model = custom_model_name(identity)
        token = client_token(identity, "train")
        assert len(job) <= 63
        assert re.fullmatch(_pattern("CreateModelCustomizationJob", "jobName"), job)
        assert len(model) <= 63
        assert re.fullmatch(_pattern("CreateModelCustomizationJob", "customModelName"), model)
        assert re.fullmatch(_pattern("CreateModelCustomizationJob", "clientRequestToken"), token)
        deploy = deployment_name(_deploy_request(ON_DEMAND, identity=identity))
        assert len(deploy) <= 63
        assert re.fullmatch(_pattern("CreateCustomModelDeployment", "modelDeploymentName"), deploy)
        assert re.fullmatch(_pattern("CreateProvisionedModelThroughput", "provisionedModelName"), deploy)


def test_names_differ_between_workspaces_and_recreated_models() -> None:
    other_workspace = IDENTITY.model_copy(update={"workspace_id": "ws-other"})
    recreated = IDENTITY.model_copy(update={"created_at": datetime(2026, 12, 1, tzinfo=UTC)})
    names = {job_name(IDENTITY), job_name(other_workspace), job_name(recreated)}
    assert len(names) == 3
    # The same record always gets the same name, whatever the time zone it is read in.
    same_moment = IDENTITY.model_copy(update={"created_at": datetime(2026, 11, 28, 12, 0)})
    assert job_name(same_moment) == job_name(IDENTITY)


def test_a_retried_start_finds_the_same_job(provider: BedrockProvider) -> None:
    first = provider.start_training(_request())
    again = provider.start_training(_request())
    assert again == first
    assert len(provider.bedrock.list_model_customization_jobs()["modelCustomizationJobSummaries"]) == 1


def test_evalpercentage_travels_as_a_hyperparameter_without_validation_data(
    provider: BedrockProvider,
) -> None:
    cohere = _model(lambda m: "eval_percentage" in m.hyperparameters.provider_names)
    ref = provider.start_training(
        _request(
            base_model=cohere,
            validation_data_uri=None,
            hyperparameters={"epochCount": "2", "evalPercentage": "20"},
        )
    )
    job = provider.bedrock.get_model_customization_job(jobIdentifier=ref.job_name)
    assert job["hyperParameters"]["evalPercentage"] == "20"
    assert "validationDataConfig" not in job


def test_continuing_from_a_fine_tuned_model_uses_it_as_the_base(provider: BedrockProvider) -> None:
    parent = CUSTOM_MODEL_ARN
    stub = Stubber(provider.bedrock)
    stub.add_response(
        "create_model_customization_job",
        {"jobArn": "arn:aws:bedrock:us-east-1:123456789012:model-customization-job/x"},
        {
            "jobName": job_name(IDENTITY),
            "customModelName": custom_model_name(IDENTITY),
            "roleArn": ROLE,
            "clientRequestToken": client_token(IDENTITY, "train"),
            "baseModelIdentifier": parent,
            "customizationType": "FINE_TUNING",
            "trainingDataConfig": ANY,
            "validationDataConfig": ANY,
            "outputDataConfig": ANY,
            "hyperParameters": ANY,
            "jobTags": ANY,
            "customModelTags": ANY,
        },
    )
    with stub:
        provider.start_training(_request(parent=ParentModel(model_ref=parent)))
    stub.assert_no_pending_responses()


def test_a_sagemaker_model_is_refused(provider: BedrockProvider) -> None:
    sagemaker_model = next(m for m in load_catalog().models if m.provider == "sagemaker")
    with pytest.raises(ValidationFailed):
        provider.start_training(_request(base_model=sagemaker_model))


def test_training_data_goes_to_the_platforms_artifacts_bucket(provider: BedrockProvider) -> None:
    folder = provider.training_data_folder(IDENTITY, "01JABCDEF", ON_DEMAND)
    assert folder == f"s3://{BUCKET}/training-data/ws-acme/support-bot-v1/01JABCDEF/"
    # The provider's storage writes there with the platform's own credentials.
    assert isinstance(provider.storage, S3Objects)
    provider.storage.put(f"{folder}train.jsonl", b'{"prompt": "a", "completion": "b"}\n', content_type="x")
    platform = boto3.client("s3", region_name=REGION)
    key = "training-data/ws-acme/support-bot-v1/01JABCDEF/train.jsonl"
    assert platform.get_object(Bucket=BUCKET, Key=key)["Body"].read().startswith(b'{"prompt"')
    provider.storage.delete_folder(folder)
    assert platform.list_objects_v2(Bucket=BUCKET, Prefix="training-data/").get("KeyCount", 0) == 0


def test_a_new_job_needs_no_check(provider: BedrockProvider) -> None:
    # Job names carry a digest of the model record: no other model's job can hold the name.
    with Stubber(provider.bedrock) as stub:  # any call would fail: nothing is stubbed
        provider.check_new_job(IDENTITY)
        stub.assert_no_pending_responses()


def test_hyperparameters_travel_in_bedrocks_names() -> None:
    provider = BedrockProvider(
        BedrockConfig(region=REGION, service_role_arn=ROLE, output_bucket=BUCKET),
        session=boto3.Session(region_name=REGION),
    )
    resolved = ResolvedHyperparameters(epochs=3, learning_rate=0.0001, warmup_steps=10)
    assert provider.training_hyperparameters(ON_DEMAND, resolved, None, provider_split_percent=None) == {
        "epochCount": "3",
        "learningRate": "0.0001",
        "learningRateWarmupSteps": "10",
    }
    cohere = _model(lambda m: "eval_percentage" in m.hyperparameters.provider_names)
    with_split = ResolvedHyperparameters(
        epochs=2,
        learning_rate=0.00001,
        batch_size=8,
        early_stopping=ResolvedEarlyStopping(patience=3, threshold=0.01),
    )
    assert provider.training_hyperparameters(cohere, with_split, None, provider_split_percent=20) == {
        "epochCount": "2",
        "learningRate": "0.00001",
        "batchSize": "8",
        "earlyStoppingPatience": "3",
        "earlyStoppingThreshold": "0.01",
        "evalPercentage": "20",
    }


def test_describe_and_stop_follow_the_job(provider: BedrockProvider) -> None:
    ref = provider.start_training(_request())

    running = provider.describe_training(ref)
    assert running.status == "in_progress"
    assert running.job_id == ref.job_id
    assert running.failure_reason is None
    assert running.model_ref is None

    provider.stop_training(ref)
    stopped = provider.describe_training(ref)
    assert stopped.status == "stopped"


def test_describe_reads_metrics_failure_and_the_custom_model() -> None:
    base = {
        "jobArn": "arn:aws:bedrock:us-east-1:123456789012:model-customization-job/abc",
        "jobName": "abc",
        "outputModelArn": "arn:aws:bedrock:us-east-1:123456789012:custom-model/x/abcdef123456",
        "outputDataConfig": {"s3Uri": "s3://b/out/"},
        "trainingMetrics": {"trainingLoss": 0.42},
        "validationMetrics": [{"validationLoss": 0.61}],
        "failureMessage": "Data validation failed.",
        "endTime": datetime(2026, 11, 28, 14, 0, tzinfo=UTC),
    }
    done = training_state({**base, "status": "Completed"})
    assert done.status == "completed"
    assert done.model_ref == base["outputModelArn"]
    assert done.metrics is not None
    assert (done.metrics.train_loss, done.metrics.eval_loss) == (0.42, 0.61)
    assert done.artifacts_uri == "s3://b/out/"
    assert done.failure_reason is None
    assert done.ended_at == base["endTime"]

    failed = training_state({**base, "status": "Failed"})
    assert failed.status == "failed"
    assert failed.failure_reason == "Data validation failed."
    assert failed.model_ref is None


def _described_job(ref: TrainingJobRef, status: str, **fields: Any) -> dict[str, Any]:
    """A GetModelCustomizationJob answer for `ref`'s job."""
    return {
        "jobArn": ref.job_id,
        "jobName": ref.job_name,
        "outputModelName": "m",
        "roleArn": ROLE,
        "status": status,
        "creationTime": datetime(2026, 11, 28, tzinfo=UTC),
        "baseModelArn": "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0",
        "hyperParameters": {},
        "trainingDataConfig": {"s3Uri": "s3://b/t"},
        "validationDataConfig": {"validators": []},
        "outputDataConfig": {"s3Uri": "s3://b/o"},
        **fields,
    }


def test_stopping_a_finished_job_is_not_an_error(provider: BedrockProvider) -> None:
    ref = provider.start_training(_request())
    stub = Stubber(provider.bedrock)
    stub.add_client_error(
        "stop_model_customization_job", "ValidationException", "Job is not in progress", 400
    )
    stub.add_response(
        "get_model_customization_job", _described_job(ref, "Completed"), {"jobIdentifier": ref.job_name}
    )
    with stub:
        provider.stop_training(ref)
    stub.assert_no_pending_responses()


# --- what a completed job left --------------------------------------------------------------------------

JOB_REF = TrainingJobRef(
    provider="bedrock",
    job_id="arn:aws:bedrock:us-east-1:123456789012:model-customization-job/abcdef123456",
    job_name=job_name(IDENTITY),
    output_uri=f"s3://{BUCKET}/bedrock-output/ws-acme/support-bot-v1/abc/",
)


def test_trained_output_reads_the_custom_model_the_outcome_lacked(provider: BedrockProvider) -> None:
    stub = Stubber(provider.bedrock)
    stub.add_response(
        "get_model_customization_job",
        _described_job(
            JOB_REF,
            "Completed",
            outputModelArn=CUSTOM_MODEL_ARN,
            outputDataConfig={"s3Uri": JOB_REF.output_uri},
        ),
        {"jobIdentifier": JOB_REF.job_name},
    )
    with stub:
        output = provider.trained_output(JOB_REF, artifacts_uri=None, model_ref=None, merged=True)
    stub.assert_no_pending_responses()
    # Bedrock keeps the weights: nothing to list, and no adapter merged by tunelab.
    assert output == TrainedOutput(model_ref=CUSTOM_MODEL_ARN, artifacts_uri=JOB_REF.output_uri)
    assert (output.size_bytes, output.files, output.merged) == (None, [], False)


def test_trained_output_asks_bedrock_nothing_when_the_outcome_said_it_all(
    provider: BedrockProvider,
) -> None:
    with Stubber(provider.bedrock) as stub:  # any call would fail: nothing is stubbed
        output = provider.trained_output(
            JOB_REF, artifacts_uri=JOB_REF.output_uri, model_ref=CUSTOM_MODEL_ARN, merged=False
        )
        stub.assert_no_pending_responses()
    assert (output.model_ref, output.artifacts_uri) == (CUSTOM_MODEL_ARN, JOB_REF.output_uri)


def test_trained_output_refuses_a_job_that_left_no_custom_model(provider: BedrockProvider) -> None:
    stub = Stubber(provider.bedrock)
    stub.add_response(
        "get_model_customization_job",
        _described_job(JOB_REF, "Completed"),  # no outputModelArn
        {"jobIdentifier": JOB_REF.job_name},
    )
    with stub, pytest.raises(ValidationFailed, match="no custom model"):
        provider.trained_output(JOB_REF, artifacts_uri=None, model_ref=None, merged=False)
    stub.assert_no_pending_responses()
    with pytest.raises(ValidationFailed, match="no custom model"):
        provider.trained_output(None, artifacts_uri=JOB_REF.output_uri, model_ref=None, merged=False)


# --- deployment --------------------------------------------------------------------------------------


def test_an_on_demand_model_gets_a_custom_model_deployment(provider: BedrockProvider) -> None:
    request = _deploy_request(ON_DEMAND)
    arn = "arn:aws:bedrock:us-east-1:123456789012:custom-model-deployment/abcdef123456"
    stub = Stubber(provider.bedrock)
    stub.add_response(
        "create_custom_model_deployment",
        {"customModelDeploymentArn": arn},
        {
            "modelDeploymentName": deployment_name(request),
            "modelArn": request.model_ref,
            "description": "tunelab model support-bot-v1",
            "tags": ANY,
            "clientRequestToken": client_token(IDENTITY, "deploy", request.deploy_digest()),
        },
    )
    stub.add_response(
        "get_custom_model_deployment",
        {
            "customModelDeploymentArn": arn,
            "modelDeploymentName": deployment_name(request),
            "modelArn": request.model_ref or "",
            "createdAt": datetime(2026, 11, 29, tzinfo=UTC),
            "status": "Creating",
        },
        {"customModelDeploymentIdentifier": arn},
    )
    stub.add_response(
        "get_custom_model_deployment",
        {
            "customModelDeploymentArn": arn,
            "modelDeploymentName": deployment_name(request),
            "modelArn": request.model_ref or "",
            "createdAt": datetime(2026, 11, 29, tzinfo=UTC),
            "status": "Active",
        },
        {"customModelDeploymentIdentifier": arn},
    )
    stub.add_response("delete_custom_model_deployment", {}, {"customModelDeploymentIdentifier": arn})
    stub.add_client_error("delete_custom_model_deployment", "ResourceNotFoundException", "gone", 404)
    stub.add_client_error("get_custom_model_deployment", "ResourceNotFoundException", "gone", 404)
    with stub:
        ref = provider.deploy(request)
        assert (ref.kind, ref.deployment_id) == ("custom_model_deployment", arn)
        assert provider.describe_deployment(ref).status == "creating"
        assert provider.describe_deployment(ref).status == "in_service"
        provider.undeploy(ref)
        provider.undeploy(ref)  # a retry after the deployment is gone completes
        assert provider.describe_deployment(ref).status == "gone"
    stub.assert_no_pending_responses()


def test_other_models_get_no_commitment_provisioned_throughput(provider: BedrockProvider) -> None:
    request = _deploy_request(
        PROVISIONED,
        model_ref="arn:aws:bedrock:us-east-1:123456789012:custom-model/amazon.titan-text-express-v1:0:8k/abcdef123456",
    )
    arn = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abcdef123456"
    stub = Stubber(provider.bedrock)
    # Exactly these parameters: modelUnits 1 and no commitmentDuration (hourly, deletable any time).
    stub.add_response(
        "create_provisioned_model_throughput",
        {"provisionedModelArn": arn},
        {
            "modelUnits": 1,
            "provisionedModelName": deployment_name(request),
            "modelId": request.model_ref,
            "tags": ANY,
            "clientRequestToken": ANY,
        },
    )
    stub.add_response(
        "get_provisioned_model_throughput",
        {
            "modelUnits": 1,
            "desiredModelUnits": 1,
            "provisionedModelName": deployment_name(request),
            "provisionedModelArn": arn,
            "modelArn": request.model_ref or "",
            "desiredModelArn": request.model_ref or "",
            "foundationModelArn": "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1",
            "status": "Failed",
            "failureMessage": "Insufficient capacity.",
            "creationTime": datetime(2026, 11, 29, tzinfo=UTC),
            "lastModifiedTime": datetime(2026, 11, 29, tzinfo=UTC),
        },
        {"provisionedModelId": arn},
    )
    stub.add_response("delete_provisioned_model_throughput", {}, {"provisionedModelId": arn})
    with stub:
        ref = provider.deploy(request)
        assert ref.kind == "provisioned_throughput"
        state = provider.describe_deployment(ref)
        assert (state.status, state.reason) == ("failed", "Insufficient capacity.")
        provider.undeploy(ref)
    stub.assert_no_pending_responses()


def test_deploy_needs_the_custom_model(provider: BedrockProvider) -> None:
    with pytest.raises(ValidationFailed):
        provider.deploy(_deploy_request(ON_DEMAND, model_ref=None))


def test_the_sandbox_uses_converse_and_reports_usage(provider: BedrockProvider) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:custom-model-deployment/abcdef123456"
    stub = Stubber(provider.runtime)
    stub.add_response(
        "converse",
        {
            "output": {
                "message": {
                    "role": "assistant",
                    "content": [{"text": "Reset it from "}, {"text": "Settings."}],
                }
            },
            "stopReason": "end_turn",
            "usage": {"inputTokens": 12, "outputTokens": 30, "totalTokens": 42},
            "metrics": {"latencyMs": 400},
        },
        {
            "modelId": arn,
            "messages": [{"role": "user", "content": [{"text": "How do I reset my password?"}]}],
            "inferenceConfig": {"maxTokens": 128, "temperature": 0.2, "topP": 0.8},
        },
    )
    deployment = DeploymentRef(provider="bedrock", kind="custom_model_deployment", deployment_id=arn)
    with stub:
        result = provider.invoke(
            deployment,
            InvokeParams(prompt="How do I reset my password?", max_tokens=128, temperature=0.2, top_p=0.8),
        )
    assert result.completion == "Reset it from Settings."
    assert (result.input_tokens, result.output_tokens) == (12, 30)
    assert result.latency_ms >= 0


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "expected", "words"),
    [
        ("ThrottlingException", 429, ProviderTransientError, "try again"),
        ("ServiceUnavailableException", 503, ProviderTransientError, "try again"),
        ("AccessDeniedException", 403, ProviderPermissionDenied, "bedrock:CreateModelCustomizationJob"),
        ("ValidationException", 400, ValidationFailed, "epochCount must be at most 5"),
        ("ServiceQuotaExceededException", 400, Exception, "quota"),
    ],
)
def test_aws_errors_become_domain_errors(
    provider: BedrockProvider, code: str, status: int, expected: type[Exception], words: str
) -> None:
    stub = Stubber(provider.bedrock)
    stub.add_client_error("create_model_customization_job", code, "epochCount must be at most 5", status)
    with stub, pytest.raises(expected) as caught:
        provider.start_training(_request())
    assert words in str(caught.value)


# --- removal and download ------------------------------------------------------------------------------


def test_delete_model_removes_the_custom_model_and_tolerates_a_retry(provider: BedrockProvider) -> None:
    ref = provider.start_training(_request())
    model = TrainedModel(identity=IDENTITY, job=ref)
    assert provider.bedrock.get_custom_model(modelIdentifier=custom_model_name(IDENTITY))

    provider.delete_model(model)
    with pytest.raises(provider.bedrock.exceptions.ResourceNotFoundException):
        provider.bedrock.get_custom_model(modelIdentifier=custom_model_name(IDENTITY))
    provider.delete_model(model)


def test_delete_model_also_deletes_the_jobs_output_folder(provider: BedrockProvider) -> None:
    ref = provider.start_training(_request())
    assert ref.output_uri is not None
    output_prefix = ref.output_uri.removeprefix(f"s3://{BUCKET}/")
    other = IDENTITY.model_copy(update={"model_name": "other-model"})
    other_prefix = provider.output_uri(other).removeprefix(f"s3://{BUCKET}/")
    s3 = boto3.client("s3", region_name=REGION)
    written = [f"{output_prefix}training_artifacts/step_wise_training_metrics.csv", f"{output_prefix}m.json"]
    kept = [f"{other_prefix}m.json", "training-data/ws-acme/support-bot-v1/01JABCDEF/train.jsonl"]
    for key in written + kept:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")

    provider.delete_model(TrainedModel(identity=IDENTITY, job=ref))
    provider.delete_model(TrainedModel(identity=IDENTITY, job=ref))  # a retry completes

    left = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert left == set(kept)


def test_bedrock_models_cannot_be_downloaded(provider: BedrockProvider) -> None:
    with pytest.raises(ValidationFailed, match="cannot be downloaded"):
        provider.download("s3://b/k")


# --- events -----------------------------------------------------------------------------------------


def _sample() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (EVENTS / "bedrock_model_customization_job_state_change.json").read_text()
    )
    return data


@pytest.mark.parametrize(
    ("job_status", "status"),
    [
        ("InProgress", "in_progress"),
        ("Completed", "completed"),
        ("Failed", "failed"),
        ("Stopping", "stopping"),
        ("Stopped", "stopped"),
    ],
)
def test_the_documented_event_parses_for_every_status(job_status: str, status: str) -> None:
    event = _sample()
    detail = copy.deepcopy(event["detail"])
    detail["jobStatus"] = job_status

    state = parse_event(event["detail-type"], detail)

    assert isinstance(state, TrainingState)
    assert state.status == status
    assert state.job_id == "arn:aws:bedrock:us-east-1:123456789012:model-customization-job/abcdefghwxyz"
    assert state.failure_reason == ("Failure Message here." if status == "failed" else None)
    assert state.model_ref == (detail["outputModelArn"] if status == "completed" else None)
    assert (state.ended_at is not None) == (status in ("completed", "failed", "stopped"))


def test_the_sample_event_routes_by_source() -> None:
    event = _sample()
    parsed = parse_any_event(event["source"], event["detail-type"], event["detail"], event["account"])
    assert isinstance(parsed, ProviderEvent)
    assert (parsed.provider, parsed.account) == ("bedrock", event["account"])
    assert isinstance(parsed.state, TrainingState)
    assert parsed.state.status == "failed"


def test_bedrock_speaks_for_its_models_from_the_platforms_account(provider: BedrockProvider) -> None:
    # Its events come from the platform's own account, the only one its rules hear.
    assert provider.speaks_for("123456789012")
    assert provider.speaks_for(None)


def test_other_events_are_refused() -> None:
    with pytest.raises(UnhandledEventError):
        parse_event("Batch Inference Job State Change", {"status": "Completed"})
    with pytest.raises(UnhandledEventError):
        parse_event("Model Customization Job State Change", {"jobStatus": "Exploded"})
    with pytest.raises(UnhandledEventError):
        parse_any_event("aws.s3", "Object Created", {})


def test_not_found_is_a_domain_error(provider: BedrockProvider) -> None:
    missing = TrainingJobRef(provider="bedrock", job_id="arn:x", job_name="no-such-job")
    with pytest.raises(NotFound):
        provider.describe_training(missing)


def test_a_custom_model_bedrock_refuses_to_delete_keeps_its_output_folder(provider: BedrockProvider) -> None:
    # The model's record stays when the delete fails, so its files must too: a retry deletes both.
    ref = provider.start_training(_request())
    assert ref.output_uri is not None
    output = f"{ref.output_uri.removeprefix(f's3://{BUCKET}/')}m.json"
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=BUCKET, Key=output, Body=b"x")
    stub = Stubber(provider.bedrock)
    stub.add_client_error("delete_custom_model", "AccessDeniedException", "not allowed", 403)

    with stub, pytest.raises(ProviderPermissionDenied, match="bedrock:DeleteCustomModel"):
        provider.delete_model(TrainedModel(identity=IDENTITY, job=ref))

    assert s3.get_object(Bucket=BUCKET, Key=output)["Body"].read() == b"x"
    provider.delete_model(TrainedModel(identity=IDENTITY, job=ref))
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=output)


# --- regions ----------------------------------------------------------------------------------------


def _in_region(region: str) -> list[str]:
    listed = boto3.client("bedrock", region_name=region).list_model_customization_jobs()
    return [job["jobName"] for job in listed["modelCustomizationJobSummaries"]]


def test_a_platform_where_bedrock_fine_tunes_nothing_trains_each_model_in_its_region(aws: None) -> None:
    """A platform in eu-west-1 with the regional stacks of us-east-1 and us-west-2: Nova's job runs in
    us-east-1 and Llama's in us-west-2, each reading data from and writing output to that region's
    bucket; nothing is created in eu-west-1."""
    buckets = {"us-east-1": "tunelab-bedrock-east", "us-west-2": "tunelab-bedrock-west"}
    config = BedrockConfig(
        region="eu-west-1", service_role_arn=ROLE, output_bucket=BUCKET, regional_buckets=buckets
    )
    provider = BedrockProvider(config, session=boto3.Session(region_name="eu-west-1"))
    catalog = load_catalog()
    nova = catalog.model("amazon.nova-micro-v1:0:128k")
    llama = catalog.model("meta.llama3-1-8b-instruct-v1:0:128k")
    started = {}
    for spec, model_name in ((nova, "nova-bot"), (llama, "llama-bot")):
        identity = IDENTITY.model_copy(update={"model_name": model_name})
        folder = provider.training_data_folder(identity, "01JABCDEF", spec)
        started[spec.id] = provider.start_training(
            _request(
                identity=identity,
                base_model=spec,
                training_data_uri=f"{folder}train.jsonl",
                validation_data_uri=None,
            )
        )
    nova_job, llama_job = started[nova.id], started[llama.id]
    assert nova_job.job_id.split(":")[3] == "us-east-1"
    assert llama_job.job_id.split(":")[3] == "us-west-2"
    assert _in_region("us-east-1") == [nova_job.job_name]
    assert _in_region("us-west-2") == [llama_job.job_name]
    assert _in_region("eu-west-1") == []
    for ref, bucket in ((nova_job, buckets["us-east-1"]), (llama_job, buckets["us-west-2"])):
        job = provider.describe_training(ref)  # found in the region its ARN names
        assert job.status == "in_progress"
        region = ref.job_id.split(":")[3]
        described = boto3.client("bedrock", region_name=region).get_model_customization_job(
            jobIdentifier=ref.job_name
        )
        assert described["trainingDataConfig"]["s3Uri"].startswith(f"s3://{bucket}/training-data/")
        assert described["outputDataConfig"]["s3Uri"].startswith(f"s3://{bucket}/bedrock-output/")
        assert ref.output_uri == described["outputDataConfig"]["s3Uri"]
    # A stop goes to the job's region too.
    provider.stop_training(llama_job)
    assert provider.describe_training(llama_job).status in ("stopping", "stopped")


def test_a_model_in_no_region_the_platform_reaches_is_refused_saying_where_it_trains(aws: None) -> None:
    provider = BedrockProvider(
        BedrockConfig(region="us-east-1", service_role_arn=ROLE, output_bucket=BUCKET),
        session=boto3.Session(region_name="us-east-1"),
    )
    llama = load_catalog().model("meta.llama3-1-8b-instruct-v1:0:128k")
    with pytest.raises(
        ValidationFailed, match=r"cannot be fine-tuned here: Bedrock fine-tunes this model only in us-west-2"
    ):
        provider.training_data_folder(IDENTITY, "01JABCDEF", llama)
    with pytest.raises(ValidationFailed, match="us-west-2"):
        provider.start_training(_request(base_model=llama))
    assert _in_region("us-east-1") == []


def test_arn_region_reads_the_region_an_arn_names() -> None:
    assert arn_region("arn:aws:bedrock:us-west-2:123456789012:custom-model/x") == "us-west-2"
    assert arn_region("arn:aws:bedrock:::foundation-model/x") is None
    assert arn_region("support-bot-job") is None
    assert arn_region(None) is None


def test_a_continuation_runs_where_its_parent_is_and_refuses_data_kept_elsewhere(aws: None) -> None:
    """A model continued from a custom model in us-west-2 trains in us-west-2; data prepared in another
    region's bucket is refused before Bedrock is asked (it reads a job's data only in its region)."""
    buckets = {"us-west-2": "tunelab-bedrock-west"}
    provider = BedrockProvider(
        BedrockConfig(
            region="us-east-1", service_role_arn=ROLE, output_bucket=BUCKET, regional_buckets=buckets
        ),
        session=boto3.Session(region_name="us-east-1"),
    )
    llama = load_catalog().model("meta.llama3-1-8b-instruct-v1:0:128k")
    parent = ParentModel(model_ref="arn:aws:bedrock:us-west-2:123456789012:custom-model/support-bot-v0")
    folder = provider.training_data_folder(IDENTITY, "01JABCDEF", llama)

    with pytest.raises(ValidationFailed, match=r"is not in us-west-2, where this job must run"):
        provider.start_training(
            _request(base_model=llama, parent=parent, training_data_uri=f"s3://{BUCKET}/x/train.jsonl")
        )
    ref = provider.start_training(
        _request(
            base_model=llama,
            parent=parent,
            training_data_uri=f"{folder}train.jsonl",
            validation_data_uri=None,
        )
    )

    assert ref.job_id.split(":")[3] == "us-west-2"
    job = boto3.client("bedrock", region_name="us-west-2").get_model_customization_job(
        jobIdentifier=ref.job_name
    )
    assert job["baseModelArn"].endswith("support-bot-v0")
    assert _in_region("us-east-1") == []
