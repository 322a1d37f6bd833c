"""The SageMaker (BYOK) provider under moto, with botocore's Stubber where moto lacks an operation
(StopTrainingJob, DeleteTrainingJob, endpoints on GPU instance types, TGI answers).

moto keeps each AWS account apart: the customer's bucket and jobs live in the account of the role
tunelab assumes, as they would on AWS.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import re
import tarfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import botocore.session
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from moto import mock_aws

from tunelab.adapters.providers import parse_event as parse_any_event
from tunelab.adapters.providers import sagemaker as sagemaker_module
from tunelab.adapters.providers.images import llm_inference_image, training_image
from tunelab.adapters.providers.sagemaker import (
    RECORD_ENV,
    SageMakerConfig,
    SageMakerProvider,
    build_trainer_archive,
    endpoint_name,
    job_name,
    metric_definitions,
    parse_event,
    record_tag,
    session_name,
    verify_connection,
)
from tunelab.adapters.s3 import S3Objects
from tunelab.application.ports import TrainingProvider
from tunelab.domain.catalog import BaseModelSpec, load_catalog
from tunelab.domain.errors import (
    NameTaken,
    ProviderPermissionDenied,
    ProviderTransientError,
    ValidationFailed,
)
from tunelab.domain.hyperparameters import (
    ResolvedHyperparameters,
    ResolvedOptionalHyperparameters,
    resolve_optional_hyperparameters,
)
from tunelab.domain.providers import (
    DeploymentRef,
    DeploymentState,
    DeployRequest,
    InvokeParams,
    ModelIdentity,
    ParentModel,
    ProviderEvent,
    Resources,
    SageMakerConnection,
    TrainedModel,
    TrainingJobRef,
    TrainingRequest,
    TrainingState,
    UnhandledEventError,
)
from tunelab.entrypoints.api.errors import status_of

REGION = "eu-west-1"
CUSTOMER = "111122223333"
ROLE = f"arn:aws:iam::{CUSTOMER}:role/tunelab-platform-access-{REGION}"
BUCKET = "acme-tunelab-artifacts"
SECRET_NAME = "hf-token"
EVENTS = Path(__file__).resolve().parents[1] / "fixtures" / "events"
SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")


def _model(predicate: Any) -> BaseModelSpec:
    return next(m for m in load_catalog().models if m.provider == "sagemaker" and predicate(m))


OPEN = _model(lambda m: not m.gated)
GATED = _model(lambda m: m.gated)
IDENTITY = ModelIdentity(
    workspace_id="ws-acme", model_name="support-bot-v1", created_at=datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
)
# The model's training job: its name and a digest of its record, unique across workspaces.
JOB = job_name(IDENTITY)
JOB_ARN = f"arn:aws:sagemaker:{REGION}:{CUSTOMER}:training-job/{JOB}"


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
def trainer_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "trainer"
    (folder / "__pycache__").mkdir(parents=True)
    (folder / "train.py").write_text("print('training')\n")
    (folder / "requirements.txt").write_text("transformers>=5.0,<6\n")
    (folder / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    return folder


def _connection(**changes: Any) -> SageMakerConnection:
    fields: dict[str, Any] = {
        "role_arn": ROLE,
        "external_id": "ext-7f3a",
        "region": REGION,
        "artifact_bucket": BUCKET,
    }
    fields.update(changes)
    return SageMakerConnection(**fields)


def _provider(
    trainer_dir: Path, *, now: Callable[[], datetime] | None = None, **changes: Any
) -> SageMakerProvider:
    config = SageMakerConfig(
        connection=_connection(**changes), workspace_id="ws-acme", trainer_dir=trainer_dir
    )
    if now is None:
        return SageMakerProvider(config)
    return SageMakerProvider(config, now=now)


@pytest.fixture
def provider(aws: None, trainer_dir: Path) -> SageMakerProvider:
    made = _provider(trainer_dir)
    made.s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return made


def _request(**changes: Any) -> TrainingRequest:
    fields: dict[str, Any] = {
        "identity": IDENTITY,
        "base_model": OPEN,
        "training_data_uri": f"s3://{BUCKET}/tunelab/ws-acme/support-bot-v1/data/train/",
        "validation_data_uri": f"s3://{BUCKET}/tunelab/ws-acme/support-bot-v1/data/validation/",
        "hyperparameters": {"epochs": "3", "learning_rate": "0.0001", "use_lora": "true"},
        "resources": Resources(instance_type="ml.g5.2xlarge", instance_count=2, volume_size_gb=100),
        "tags": {"team": "support"},
    }
    fields.update(changes)
    return TrainingRequest(**fields)


def _record_requests(provider: SageMakerProvider, operation: str) -> list[dict[str, Any]]:
    """What the provider sends (moto rewrites some fields it stores, e.g. MetricDefinitions)."""
    sent: list[dict[str, Any]] = []

    def keep(params: dict[str, Any], **_: Any) -> None:
        sent.append(copy.deepcopy(params))

    provider.sagemaker.meta.events.register(f"before-parameter-build.sagemaker.{operation}", keep)
    return sent


def _deny(session: boto3.Session, event: str, code: str = "AccessDenied", status: int = 403) -> None:
    """Make one operation of `session`'s future clients answer with an AWS error."""

    def refuse(**_: Any) -> tuple[Any, dict[str, Any]]:
        http = type("Http", (), {"status_code": status, "headers": {}})()
        return http, {
            "Error": {"Code": code, "Message": f"not allowed ({code})"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }

    session._session.get_component("event_emitter").register(f"before-call.{event}", refuse)


def test_the_provider_meets_the_protocol(provider: SageMakerProvider) -> None:
    port: TrainingProvider = provider  # mypy checks every member's signature
    members = {n for n in vars(TrainingProvider) if not n.startswith("_")}
    members |= set(TrainingProvider.__annotations__)
    assert {"storage", "training_data_folder", "trained_output", "speaks_for"} <= members
    assert [m for m in sorted(members) if not hasattr(port, m)] == []
    assert port.name == "sagemaker"


def test_the_workflow_waits_for_the_jobs_limit_and_time_to_start(provider: SageMakerProvider) -> None:
    # The job's own default limit (48 h, its StoppingCondition) plus 2 h to queue, download and upload.
    assert provider.training_timeout_s == 48 * 3600 + 2 * 3600


# --- training -------------------------------------------------------------------------------------------


def test_start_training_sends_the_job_the_trainer_needs(provider: SageMakerProvider) -> None:
    sent = _record_requests(provider, "CreateTrainingJob")

    ref = provider.start_training(_request())

    assert JOB.startswith("support-bot-v1-")
    assert len(JOB) == len("support-bot-v1-") + 10
    # Found again by account, region and name: the ARN, lower-cased as SageMaker writes it.
    assert (ref.job_id, ref.job_name) == (JOB_ARN.lower(), JOB)
    [request] = sent
    hp = request["HyperParameters"]
    assert {k: hp[k] for k in ("epochs", "learning_rate", "use_lora")} == {
        "epochs": "3",
        "learning_rate": "0.0001",
        "use_lora": "true",
    }
    assert hp["base_model"] == OPEN.hf_id
    assert "hf_token_secret_arn" not in hp
    assert json.loads(hp["sagemaker_program"]) == "train.py"
    assert json.loads(hp["sagemaker_region"]) == REGION
    source = json.loads(hp["sagemaker_submit_directory"])
    assert source.startswith(f"s3://{BUCKET}/tunelab/ws-acme/trainer/")
    assert source.endswith("/sourcedir.tar.gz")
    spec = request["AlgorithmSpecification"]
    assert spec["TrainingImage"] == training_image(REGION)
    assert spec["TrainingInputMode"] == "File"
    assert spec["MetricDefinitions"] == metric_definitions()
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]
    }
    assert channels == {
        "training": f"s3://{BUCKET}/tunelab/ws-acme/support-bot-v1/data/train/",
        "validation": f"s3://{BUCKET}/tunelab/ws-acme/support-bot-v1/data/validation/",
    }
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.g5.2xlarge",
        "InstanceCount": 2,
        "VolumeSizeInGB": 100,
    }
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 48 * 3600}
    assert request["CheckpointConfig"] == {
        "S3Uri": f"s3://{BUCKET}/tunelab/ws-acme/support-bot-v1/checkpoints/",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert request["OutputDataConfig"] == {
        "S3OutputPath": f"s3://{BUCKET}/tunelab/ws-acme/support-bot-v1/output"
    }
    assert request["RoleArn"] == f"arn:aws:iam::{CUSTOMER}:role/tunelab-sagemaker-execution-{REGION}"
    assert request["EnableManagedSpotTraining"] is False
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags == {"tunelab-workspace": "ws-acme", "tunelab-model": "support-bot-v1", "team": "support"}
    # The job exists in the customer's account, and so does the trainer it runs.
    assert provider.sagemaker.describe_training_job(TrainingJobName=JOB)["TrainingJobArn"].startswith(
        f"arn:aws:sagemaker:{REGION}:{CUSTOMER}:training-job/"
    )
    bucket, key = source[5:].split("/", 1)
    uploaded = provider.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(uploaded)) as tar:
        assert sorted(tar.getnames()) == ["requirements.txt", "train.py"]


def test_a_job_one_gpu_cannot_hold_is_sent_sharded(provider: SageMakerProvider) -> None:
    sent = _record_requests(provider, "CreateTrainingJob")
    sharded = Resources(
        instance_type="ml.g5.12xlarge", instance_count=1, volume_size_gb=100, distribution="fsdp"
    )

    provider.start_training(_request(resources=sharded))

    [request] = sent
    # The memory model chose FSDP when the model was created: the trainer is told to shard.
    assert request["HyperParameters"]["distribution"] == "fsdp"


def test_a_job_that_fits_one_gpu_is_not_told_to_shard(provider: SageMakerProvider) -> None:
    sent = _record_requests(provider, "CreateTrainingJob")

    provider.start_training(
        _request(resources=Resources(instance_type="ml.g5.12xlarge", volume_size_gb=100, distribution="ddp"))
    )

    assert "distribution" not in sent[0]["HyperParameters"]


def test_a_job_name_that_exists_in_the_account_is_name_taken(provider: SageMakerProvider) -> None:
    provider.sagemaker.create_training_job(
        TrainingJobName=JOB,
        AlgorithmSpecification={"TrainingImage": training_image(REGION), "TrainingInputMode": "File"},
        RoleArn=f"arn:aws:iam::{CUSTOMER}:role/someone-else",
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/elsewhere"},
        ResourceConfig={"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )
    with pytest.raises(NameTaken) as caught:
        provider.start_training(_request())
    assert caught.value.code == "name_taken"
    assert status_of(caught.value) == 409
    assert "support-bot-v1" in caught.value.message


def _described_job(record: str, status: str = "InProgress") -> dict[str, Any]:
    return {
        "TrainingJobName": JOB,
        "TrainingJobArn": JOB_ARN,
        "ModelArtifacts": {"S3ModelArtifacts": "s3://x/model.tar.gz"},
        "TrainingJobStatus": status,
        "SecondaryStatus": "Starting",
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"VolumeSizeInGB": 10},
        "StoppingCondition": {},
        "CreationTime": datetime(2026, 11, 28, tzinfo=UTC),
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/tunelab/ws-acme/support-bot-v1/output"},
        "Environment": {RECORD_ENV: record},
    }


def test_a_retried_start_finds_its_own_job(provider: SageMakerProvider) -> None:
    # moto does not keep a job's Environment, where the record mark lives: the answer is stubbed.
    sent = _record_requests(provider, "CreateTrainingJob")
    first = provider.start_training(_request())
    assert len(sent) == 1
    record = sent[0]["Environment"][RECORD_ENV]
    stub = Stubber(provider.sagemaker)
    stub.add_response("describe_training_job", _described_job(record), {"TrainingJobName": JOB})
    with stub:
        again = provider.start_training(_request())
    stub.assert_no_pending_responses()
    assert again == first
    assert len(sent) == 1


def test_a_job_created_between_look_and_create_is_name_taken(provider: SageMakerProvider) -> None:
    stub = Stubber(provider.sagemaker)
    missing = ("ValidationException", "Requested resource not found.", 400)
    stub.add_client_error("describe_training_job", *missing)
    stub.add_client_error("create_training_job", "ResourceInUse", "Training job names must be unique", 400)
    stub.add_response("describe_training_job", _described_job("another-record"), {"TrainingJobName": JOB})
    with stub, pytest.raises(NameTaken):
        provider.start_training(_request())
    stub.assert_no_pending_responses()


def _someone_elses_job(provider: SageMakerProvider, name: str = JOB) -> None:
    provider.sagemaker.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": training_image(REGION), "TrainingInputMode": "File"},
        RoleArn=f"arn:aws:iam::{CUSTOMER}:role/someone-else",
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/elsewhere"},
        ResourceConfig={"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )


def test_a_new_model_whose_job_name_is_free_passes_the_check(provider: SageMakerProvider) -> None:
    provider.check_new_job(IDENTITY)
    assert provider.sagemaker.list_training_jobs()["TrainingJobSummaries"] == []  # nothing was made


def test_a_new_model_is_refused_when_another_models_job_has_its_name(provider: SageMakerProvider) -> None:
    _someone_elses_job(provider)
    with pytest.raises(NameTaken) as caught:
        provider.check_new_job(IDENTITY)
    assert "support-bot-v1" in caught.value.message
    assert REGION in caught.value.message
    # Another model name is free.
    provider.check_new_job(IDENTITY.model_copy(update={"model_name": "support-bot-v2"}))


def test_the_check_passes_for_this_models_own_job(provider: SageMakerProvider) -> None:
    # A retry (the model record made the job): moto keeps no Environment, so the answer is stubbed.
    stub = Stubber(provider.sagemaker)
    stub.add_response(
        "describe_training_job",
        _described_job(record_tag(IDENTITY)),
        {"TrainingJobName": JOB},
    )
    stub.add_response("describe_training_job", _described_job("another-record"), {"TrainingJobName": JOB})
    with stub:
        provider.check_new_job(IDENTITY)
        # The same name in a model made again later (another record) is someone else's.
        with pytest.raises(NameTaken):
            provider.check_new_job(IDENTITY)
    stub.assert_no_pending_responses()


def test_training_data_goes_to_the_customers_bucket(provider: SageMakerProvider) -> None:
    folder = provider.training_data_folder(IDENTITY, "01JABCDEF", OPEN)
    assert folder == f"s3://{BUCKET}/tunelab/ws-acme/support-bot-v1/data/01JABCDEF/"
    # The provider's storage writes there through the customer's role, in the customer's account.
    assert isinstance(provider.storage, S3Objects)
    provider.storage.put(f"{folder}train.jsonl", b'{"prompt": "a", "completion": "b"}\n', content_type="x")
    key = "tunelab/ws-acme/support-bot-v1/data/01JABCDEF/train.jsonl"
    assert provider.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().startswith(b'{"prompt"')
    platform = boto3.client("s3", region_name=REGION)
    assert BUCKET not in {b["Name"] for b in platform.list_buckets()["Buckets"]}
    provider.storage.delete_folder(folder)
    assert provider.s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount", 0) == 0


def test_hyperparameters_travel_in_the_trainers_names(provider: SageMakerProvider) -> None:
    resolved = ResolvedHyperparameters(epochs=3, learning_rate=0.0001, batch_size=4, warmup_steps=10)
    optional = resolve_optional_hyperparameters(None, OPEN, has_validation=True)
    assert isinstance(optional, ResolvedOptionalHyperparameters)

    sent = provider.training_hyperparameters(OPEN, resolved, optional, provider_split_percent=None)

    assert {k: sent[k] for k in ("epochs", "learning_rate", "batch_size", "warmup_steps")} == {
        "epochs": "3",
        "learning_rate": "0.0001",
        "batch_size": "4",
        "warmup_steps": "10",
    }
    assert sent["use_lora"] == ("true" if optional.use_lora else "false")
    assert json.loads(sent["sft_config"])["gradient_accumulation_steps"] == (
        optional.sft_config.gradient_accumulation_steps
    )
    assert all(isinstance(v, str) for v in sent.values())
    without_optional = provider.training_hyperparameters(OPEN, resolved, None, provider_split_percent=None)
    assert "use_lora" not in without_optional


def _archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_trained_output_lists_the_archive_in_the_customers_bucket(provider: SageMakerProvider) -> None:
    ref = provider.start_training(_request())  # moto completes jobs at once
    key = f"tunelab/ws-acme/support-bot-v1/output/{JOB}/output/model.tar.gz"
    archive = _archive(
        {
            "./config.json": b"{}",
            "adapter_model.safetensors": b"weights",
            "tunelab-training.json": json.dumps({"artifacts": {"merged": True}}).encode(),
        }
    )
    provider.s3.put_object(Bucket=BUCKET, Key=key, Body=archive)

    # The outcome named no archive: the provider reads it from the job.
    output = provider.trained_output(ref, artifacts_uri=None, model_ref=None, merged=False)

    assert output.artifacts_uri == f"s3://{BUCKET}/{key}"
    assert output.model_ref is None
    assert output.size_bytes == len(archive)
    assert output.files == ["adapter_model.safetensors", "config.json", "tunelab-training.json"]
    assert output.merged is True  # the trainer's summary says so
    again = provider.trained_output(None, artifacts_uri=output.artifacts_uri, model_ref=None, merged=False)
    assert again == output


def _unmerged_lora(provider: SageMakerProvider, *, merged_variant: Any = "merged/") -> str:
    """The model.tar.gz an unmerged LoRA job leaves (the adapter, the tokenizer, the trainer's summary
    naming the merged copy); its key."""
    key = f"tunelab/ws-acme/support-bot-v1/output/{JOB}/output/model.tar.gz"
    summary = {"artifacts": {"merged": False, "adapter": "adapter", "merged_variant": merged_variant}}
    archive = _archive(
        {
            "adapter_config.json": b"{}",
            "adapter_model.safetensors": b"adapter",
            "adapter/adapter_config.json": b"{}",
            "adapter/adapter_model.safetensors": b"adapter",
            "tokenizer.json": b"{}",
            "tunelab-training.json": json.dumps(summary).encode(),
        }
    )
    provider.s3.put_object(Bucket=BUCKET, Key=key, Body=archive)
    return key


MERGED_COPY = {
    "metrics.json": b"{}",
    "merged/config.json": b"{}",
    "merged/generation_config.json": b"{}",
    "merged/model.safetensors": b"\0" * 4096,
    "merged/tokenizer.json": b"{}",
}


def test_trained_output_finds_the_merged_copy_of_an_unmerged_lora_job(provider: SageMakerProvider) -> None:
    ref = provider.start_training(_request())
    _unmerged_lora(provider)
    # SageMaker uploads the job's output data folder next to model.tar.gz
    output_key = f"tunelab/ws-acme/support-bot-v1/output/{JOB}/output/output.tar.gz"
    copy = _archive(MERGED_COPY)
    provider.s3.put_object(Bucket=BUCKET, Key=output_key, Body=copy)

    output = provider.trained_output(ref, artifacts_uri=None, model_ref=None, merged=False)

    assert output.merged is False
    assert "adapter_model.safetensors" in output.files
    assert output.merged_archive is not None
    assert output.merged_archive.uri == f"s3://{BUCKET}/{output_key}"
    assert output.merged_archive.path == "merged/"
    assert output.merged_archive.size_bytes == len(copy)
    assert output.merged_archive.files == sorted(MERGED_COPY)
    # Without the job's output path (an outcome naming only the archive): the same place, next to it
    again = provider.trained_output(None, artifacts_uri=output.artifacts_uri, model_ref=None, merged=False)
    assert again == output


def test_an_unmerged_lora_job_without_its_merged_copy_records_none(provider: SageMakerProvider) -> None:
    ref = provider.start_training(_request())
    _unmerged_lora(provider)

    # The summary names a copy, but nothing was uploaded: the model is the adapter alone
    output = provider.trained_output(ref, artifacts_uri=None, model_ref=None, merged=False)

    assert output.merged is False
    assert output.merged_archive is None
    assert "adapter_model.safetensors" in output.files


@pytest.mark.parametrize("named", ["../../elsewhere/", "/opt/ml/model/", "a/b/", ""])
def test_a_merged_copy_named_outside_one_plain_folder_is_ignored(
    provider: SageMakerProvider, named: str
) -> None:
    ref = provider.start_training(_request())
    _unmerged_lora(provider, merged_variant=named)
    output_key = f"tunelab/ws-acme/support-bot-v1/output/{JOB}/output/output.tar.gz"
    provider.s3.put_object(Bucket=BUCKET, Key=output_key, Body=_archive(MERGED_COPY))

    output = provider.trained_output(ref, artifacts_uri=None, model_ref=None, merged=False)

    assert output.merged_archive is None


def test_trained_output_refuses_a_job_without_an_archive(provider: SageMakerProvider) -> None:
    with pytest.raises(ValidationFailed, match="no artifacts"):
        provider.trained_output(None, artifacts_uri=None, model_ref=None, merged=False)


def test_gated_models_need_the_hf_token_secret(aws: None, trainer_dir: Path) -> None:
    without = _provider(trainer_dir)
    with pytest.raises(ValidationFailed) as caught:
        without.start_training(_request(base_model=GATED))
    assert "hf_token_secret_arn" in str(caught.value)
    assert caught.value.details[0].field == "base_model_id"

    secret = f"arn:aws:secretsmanager:{REGION}:{CUSTOMER}:secret:hf-token-AbCdEf"
    with_secret = _provider(trainer_dir, hf_token_secret_arn=secret)
    with_secret.s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    sent = _record_requests(with_secret, "CreateTrainingJob")
    with_secret.start_training(_request(base_model=GATED))
    assert sent[0]["HyperParameters"]["hf_token_secret_arn"] == secret
    assert sent[0]["HyperParameters"]["base_model"] == GATED.hf_id


def test_resources_are_required(provider: SageMakerProvider) -> None:
    with pytest.raises(ValidationFailed) as caught:
        provider.start_training(_request(resources=None))
    assert caught.value.details[0].field == "resources"


def test_continuing_a_model_feeds_its_artifacts_as_the_model_channel(provider: SageMakerProvider) -> None:
    sent = _record_requests(provider, "CreateTrainingJob")
    parent = f"s3://{BUCKET}/tunelab/ws-acme/support-bot-v0/output/support-bot-v0/output/model.tar.gz"
    provider.start_training(_request(parent=ParentModel(artifacts_uri=parent), max_runtime_s=10 * 24 * 3600))
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in sent[0]["InputDataConfig"]
    }
    assert channels["model"] == parent
    assert sent[0]["StoppingCondition"] == {"MaxRuntimeInSeconds": 10 * 24 * 3600}


def test_starting_from_a_parents_checkpoint_feeds_its_checkpoint_folder_as_the_model_channel(
    provider: SageMakerProvider,
) -> None:
    parent_ref = provider.start_training(_request())
    sent = _record_requests(provider, "CreateTrainingJob")
    child = IDENTITY.model_copy(update={"model_name": "support-bot-v2"})
    archive = f"s3://{BUCKET}/tunelab/ws-acme/support-bot-v1/output/model.tar.gz"
    provider.start_training(
        _request(
            identity=child,
            parent=ParentModel(
                artifacts_uri=archive, checkpoint="checkpoint-4", checkpoint_job=parent_ref.job_name
            ),
        )
    )
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in sent[0]["InputDataConfig"]
    }
    assert channels["model"] == f"{provider.checkpoint_uri(IDENTITY)}checkpoint-4/"


def test_describe_reads_the_finished_job(provider: SageMakerProvider) -> None:
    ref = provider.start_training(_request())
    state = provider.describe_training(ref)
    assert state.status == "completed"  # moto completes jobs at once
    assert state.artifacts_uri == (
        f"s3://{BUCKET}/tunelab/ws-acme/support-bot-v1/output/{JOB}/output/model.tar.gz"
    )
    assert state.ended_at is not None
    assert state.job_id == ref.job_id == JOB_ARN.lower()


def test_stop_asks_sagemaker_and_a_finished_job_is_left_alone(provider: SageMakerProvider) -> None:
    ref = TrainingJobRef(provider="sagemaker", job_id=JOB_ARN.lower(), job_name=JOB)
    stub = Stubber(provider.sagemaker)
    stub.add_response("stop_training_job", {}, {"TrainingJobName": JOB})
    stub.add_client_error(
        "stop_training_job", "ValidationException", "The job status is Completed; it cannot be stopped.", 400
    )
    stub.add_response(
        "describe_training_job",
        {
            "TrainingJobName": JOB,
            "TrainingJobArn": JOB_ARN,
            "ModelArtifacts": {"S3ModelArtifacts": "s3://x/model.tar.gz"},
            "TrainingJobStatus": "Completed",
            "SecondaryStatus": "Completed",
            "AlgorithmSpecification": {"TrainingInputMode": "File"},
            "ResourceConfig": {"VolumeSizeInGB": 10},
            "StoppingCondition": {},
            "CreationTime": datetime(2026, 11, 28, tzinfo=UTC),
        },
        {"TrainingJobName": JOB},
    )
    stub.add_client_error("stop_training_job", "ThrottlingException", "Rate exceeded", 400)
    with stub:
        provider.stop_training(ref)
        provider.stop_training(ref)
        with pytest.raises(ProviderTransientError):
            provider.stop_training(ref)
    stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "expected", "words"),
    [
        ("ThrottlingException", ProviderTransientError, "try again"),
        ("AccessDeniedException", ProviderPermissionDenied, "sagemaker:CreateTrainingJob"),
        ("ValidationException", ValidationFailed, "bad instance"),
        ("ResourceLimitExceeded", Exception, "quota"),
    ],
)
def test_create_errors_become_domain_errors(
    provider: SageMakerProvider, code: str, expected: type[Exception], words: str
) -> None:
    stub = Stubber(provider.sagemaker)
    stub.add_client_error(
        "describe_training_job", "ValidationException", "Requested resource not found.", 400
    )
    stub.add_client_error("create_training_job", code, f"bad instance ({code})", 400)
    with stub, pytest.raises(expected) as caught:
        provider.start_training(_request())
    assert words in str(caught.value)


# --- deployment ------------------------------------------------------------------------------------------


def _deploy_request(**changes: Any) -> DeployRequest:
    fields: dict[str, Any] = {
        "identity": IDENTITY,
        "requested_at": datetime(2026, 11, 29, 9, 0, tzinfo=UTC),
        "base_model": OPEN,
        "artifacts_uri": f"s3://{BUCKET}/tunelab/ws-acme/support-bot-v1/output/support-bot-v1/output/model.tar.gz",
        "instance_type": "ml.g5.2xlarge",
        "gpus_per_instance": 1,
    }
    fields.update(changes)
    return DeployRequest(**fields)


def test_deploy_creates_model_config_and_endpoint_with_tgi(provider: SageMakerProvider) -> None:
    request = _deploy_request()
    name = endpoint_name(request)
    arn = f"arn:aws:sagemaker:{REGION}:{CUSTOMER}"
    stub = Stubber(provider.sagemaker)
    stub.add_response(
        "create_model",
        {"ModelArn": f"{arn}:model/{name}"},
        {
            "ModelName": name,
            "PrimaryContainer": {
                "Image": llm_inference_image(REGION),
                "ModelDataUrl": request.artifacts_uri,
                "Environment": {"HF_MODEL_ID": "/opt/ml/model", "SM_NUM_GPUS": "1"},
            },
            "ExecutionRoleArn": f"arn:aws:iam::{CUSTOMER}:role/tunelab-sagemaker-execution-{REGION}",
            "Tags": ANY,
        },
    )
    stub.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": f"{arn}:endpoint-config/{name}"},
        {
            "EndpointConfigName": name,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "InstanceType": "ml.g5.2xlarge",
                    "InitialInstanceCount": 1,
                    "ContainerStartupHealthCheckTimeoutInSeconds": 1800,
                    "ModelDataDownloadTimeoutInSeconds": 1800,
                }
            ],
            "Tags": ANY,
        },
    )
    stub.add_response(
        "create_endpoint",
        {"EndpointArn": f"{arn}:endpoint/{name}"},
        {"EndpointName": name, "EndpointConfigName": name, "Tags": ANY},
    )
    with stub:
        ref = provider.deploy(request)
    stub.assert_no_pending_responses()
    assert ref == DeploymentRef(
        provider="sagemaker",
        kind="sagemaker_endpoint",
        deployment_id=name,
        parts={"model": name, "endpoint_config": name},
    )
    pattern = SAGEMAKER.shape_for("EndpointName").metadata["pattern"]
    assert re.fullmatch(pattern, name)
    assert len(name) <= 63


def test_an_unmerged_lora_model_is_served_from_the_merged_folder_of_its_output_archive(
    provider: SageMakerProvider,
) -> None:
    output = f"s3://{BUCKET}/tunelab/ws-acme/support-bot-v1/output/{JOB}/output/output.tar.gz"
    # moto refuses GPU types for endpoint configurations: a CPU type, the model is what is checked
    request = _deploy_request(artifacts_uri=output, artifacts_path="merged/", instance_type="ml.m5.xlarge")
    sent = _record_requests(provider, "CreateModel")

    provider.deploy(request)

    [model] = sent
    container = model["PrimaryContainer"]
    assert container["ModelDataUrl"] == output
    # SageMaker unpacks the archive into /opt/ml/model: TGI reads the merged model's folder in it
    assert container["Environment"]["HF_MODEL_ID"] == "/opt/ml/model/merged"
    described = provider.sagemaker.describe_model(ModelName=endpoint_name(request))
    assert described["PrimaryContainer"]["ModelDataUrl"] == output


def test_a_retried_deploy_continues_past_what_exists(provider: SageMakerProvider) -> None:
    request = _deploy_request()
    name = endpoint_name(request)
    stub = Stubber(provider.sagemaker)
    stub.add_client_error(
        "create_model", "ValidationException", f"Cannot create already existing model {name}", 400
    )
    stub.add_client_error(
        "create_endpoint_config",
        "ValidationException",
        "Cannot create already existing endpoint configuration",
        400,
    )
    stub.add_response(
        "create_endpoint", {"EndpointArn": f"arn:aws:sagemaker:{REGION}:{CUSTOMER}:endpoint/{name}"}
    )
    with stub:
        assert provider.deploy(request).deployment_id == name
    stub.assert_no_pending_responses()


def test_deploy_uses_the_models_default_instance_type(provider: SageMakerProvider) -> None:
    sent: list[dict[str, Any]] = []
    provider.sagemaker.meta.events.register(
        "before-parameter-build.sagemaker.CreateEndpointConfig", lambda params, **_: sent.append(params)
    )
    stub = Stubber(provider.sagemaker)
    stub.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:eu-west-1:111122223333:model/m"})
    stub.add_response(
        "create_endpoint_config", {"EndpointConfigArn": "arn:aws:sagemaker:eu-west-1:1:endpoint-config/m"}
    )
    stub.add_response(
        "create_endpoint", {"EndpointArn": "arn:aws:sagemaker:eu-west-1:111122223333:endpoint/m"}
    )
    with stub:
        provider.deploy(_deploy_request(instance_type=None))
    assert sent[0]["ProductionVariants"][0]["InstanceType"] == OPEN.deployment.default_instance_type


def test_endpoint_states_and_undeploy(provider: SageMakerProvider) -> None:
    ref = DeploymentRef(
        provider="sagemaker",
        kind="sagemaker_endpoint",
        deployment_id="support-bot-v1-1a2b3c4d",
        parts={"model": "support-bot-v1-1a2b3c4d", "endpoint_config": "support-bot-v1-1a2b3c4d"},
    )
    name = ref.deployment_id
    described = {
        "EndpointName": name,
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:{CUSTOMER}:endpoint/{name}",
        "CreationTime": datetime(2026, 11, 29, tzinfo=UTC),
        "LastModifiedTime": datetime(2026, 11, 29, tzinfo=UTC),
    }
    missing = ("ValidationException", f"Could not find endpoint {name}.", 400)
    stub = Stubber(provider.sagemaker)
    stub.add_response(
        "describe_endpoint", {**described, "EndpointStatus": "Creating"}, {"EndpointName": name}
    )
    stub.add_response(
        "describe_endpoint", {**described, "EndpointStatus": "InService"}, {"EndpointName": name}
    )
    stub.add_response(
        "describe_endpoint",
        {**described, "EndpointStatus": "Failed", "FailureReason": "CUDA out of memory."},
        {"EndpointName": name},
    )
    # Undeploy after a half-finished earlier attempt: the endpoint is already gone.
    stub.add_client_error("delete_endpoint", *missing)
    stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": name})
    stub.add_response("delete_model", {}, {"ModelName": name})
    stub.add_client_error("describe_endpoint", *missing)
    with stub:
        assert provider.describe_deployment(ref).status == "creating"
        assert provider.describe_deployment(ref).status == "in_service"
        failed = provider.describe_deployment(ref)
        assert (failed.status, failed.reason) == ("failed", "CUDA out of memory.")
        provider.undeploy(ref)
        assert provider.describe_deployment(ref).status == "gone"
    stub.assert_no_pending_responses()


def _body(payload: Any) -> StreamingBody:
    raw = json.dumps(payload).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def test_the_sandbox_sends_tgi_parameters_and_reads_the_answer(provider: SageMakerProvider) -> None:
    ref = DeploymentRef(
        provider="sagemaker", kind="sagemaker_endpoint", deployment_id="support-bot-v1-1a2b3c4d"
    )
    stub = Stubber(provider.runtime)
    answer = [
        {
            "generated_text": "Open Settings, then Reset.",
            "details": {"finish_reason": "eos_token", "generated_tokens": 7, "prefill": [{"id": 1}] * 12},
        }
    ]
    stub.add_response(
        "invoke_endpoint",
        {"Body": _body(answer), "ContentType": "application/json"},
        {
            "EndpointName": "support-bot-v1-1a2b3c4d",
            "ContentType": "application/json",
            "Accept": "application/json",
            "Body": ANY,
        },
    )
    sent: list[dict[str, Any]] = []
    provider.runtime.meta.events.register(
        "before-parameter-build.sagemaker-runtime.InvokeEndpoint",
        lambda params, **_: sent.append(json.loads(params["Body"])),
    )
    with stub:
        result = provider.invoke(
            ref, InvokeParams(prompt="How do I reset?", max_tokens=64, temperature=0.7, top_p=0.9)
        )
    assert result.completion == "Open Settings, then Reset."
    assert (result.input_tokens, result.output_tokens) == (12, 7)
    assert sent[0] == {
        "inputs": "How do I reset?",
        "parameters": {
            "max_new_tokens": 64,
            "return_full_text": False,
            "details": True,
            "decoder_input_details": True,
            "do_sample": True,
            "temperature": 0.7,
            "top_p": 0.9,
        },
    }


def test_greedy_sandbox_calls_leave_out_what_tgi_refuses(provider: SageMakerProvider) -> None:
    ref = DeploymentRef(provider="sagemaker", kind="sagemaker_endpoint", deployment_id="e")
    stub = Stubber(provider.runtime)
    stub.add_response("invoke_endpoint", {"Body": _body({"generated_text": "ok"})})
    sent: list[dict[str, Any]] = []
    provider.runtime.meta.events.register(
        "before-parameter-build.sagemaker-runtime.InvokeEndpoint",
        lambda params, **_: sent.append(json.loads(params["Body"])),
    )
    with stub:
        result = provider.invoke(ref, InvokeParams(prompt="hi", temperature=0.0, top_p=1.0))
    assert result.completion == "ok"
    assert "temperature" not in sent[0]["parameters"]
    assert "top_p" not in sent[0]["parameters"]
    assert "do_sample" not in sent[0]["parameters"]


# --- artifacts -------------------------------------------------------------------------------------------


def test_download_is_a_short_lived_link_to_the_archive(provider: SageMakerProvider) -> None:
    key = "tunelab/ws-acme/support-bot-v1/output/support-bot-v1/output/model.tar.gz"
    provider.s3.put_object(Bucket=BUCKET, Key=key, Body=b"x" * 2048)
    before = datetime.now(UTC)

    link = provider.download(f"s3://{BUCKET}/{key}")

    url = urlparse(link.url)
    query = parse_qs(url.query)
    assert BUCKET in url.netloc + url.path
    assert url.path.endswith(key)
    assert query["X-Amz-Expires"] == ["900"]
    # Signed with the customer's assumed role, not the platform's own credentials.
    assumed = provider.session().get_credentials()
    assert assumed is not None
    assert query["X-Amz-Credential"][0].startswith(assumed.access_key)
    assert assumed.access_key != "testing"
    assert link.size_bytes == 2048
    assert before + timedelta(minutes=14) < link.expires_at <= datetime.now(UTC) + timedelta(minutes=15)


def test_delete_model_removes_its_artifacts_and_the_job(provider: SageMakerProvider) -> None:
    base = "tunelab/ws-acme/support-bot-v1"
    keys = [
        f"{base}/output/{JOB}/output/model.tar.gz",
        f"{base}/checkpoints/checkpoint-10/adapter_model.safetensors",
    ]
    kept = [
        f"{base}/data/train/train.jsonl",
        "tunelab/ws-acme/other-model/output/other-model/output/model.tar.gz",
    ]
    for key in keys + kept:
        provider.s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    job = TrainingJobRef(provider="sagemaker", job_id=JOB_ARN.lower(), job_name=JOB)
    stub = Stubber(provider.sagemaker)
    stub.add_response("delete_training_job", {}, {"TrainingJobName": JOB})
    stub.add_client_error("delete_training_job", "ResourceNotFound", "no such job", 400)
    with stub:
        provider.delete_model(TrainedModel(identity=IDENTITY, job=job))
        provider.delete_model(TrainedModel(identity=IDENTITY, job=job))  # a retry completes
    stub.assert_no_pending_responses()
    left = {o["Key"] for o in provider.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert left >= set(kept)
    assert not left & set(keys)


def test_delete_model_removes_every_attempts_output_and_job_of_a_resumed_model(
    provider: SageMakerProvider,
) -> None:
    base = "tunelab/ws-acme/support-bot-v1"
    jobs = [job_name(IDENTITY, attempt) for attempt in range(3)]
    assert len(set(jobs)) == 3
    keys = [f"{base}/output/{name}/output/model.tar.gz" for name in jobs]
    keys.append(f"{base}/checkpoints/checkpoint-30/trainer_state.json")
    kept = "tunelab/ws-acme/other-model/output/other-model/output/model.tar.gz"
    for key in [*keys, kept]:
        provider.s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    latest = TrainingJobRef(provider="sagemaker", job_id=f"{JOB_ARN.lower()}-2", job_name=jobs[2])
    stub = Stubber(provider.sagemaker)
    for name in jobs:
        stub.add_response("delete_training_job", {}, {"TrainingJobName": name})
    with stub:
        provider.delete_model(TrainedModel(identity=IDENTITY, job=latest, attempt=2))
    stub.assert_no_pending_responses()
    left = {o["Key"] for o in provider.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert left == {kept}


def test_a_model_without_a_recorded_job_deletes_no_job_by_its_name(provider: SageMakerProvider) -> None:
    # Another workspace's job of the model's bare name may exist in a shared account: a model whose job
    # was never recorded deletes its checkpoints and no job at all (the stub answers no SageMaker call).
    checkpoint = "tunelab/ws-acme/support-bot-v1/checkpoints/checkpoint-1/x"
    provider.s3.put_object(Bucket=BUCKET, Key=checkpoint, Body=b"x")
    _someone_elses_job(provider, name="support-bot-v1")
    stub = Stubber(provider.sagemaker)
    with stub:
        provider.delete_model(TrainedModel(identity=IDENTITY, job=None))
    stub.assert_no_pending_responses()
    assert provider.sagemaker.describe_training_job(TrainingJobName="support-bot-v1")["TrainingJobName"]
    assert "Contents" not in provider.s3.list_objects_v2(Bucket=BUCKET, Prefix=checkpoint)


def test_the_trainer_archive_is_reproducible(trainer_dir: Path) -> None:
    first = build_trainer_archive(trainer_dir)
    assert build_trainer_archive(trainer_dir) == first
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        assert sorted(tar.getnames()) == ["requirements.txt", "train.py"]
    assert gzip.decompress(first)  # a real gzip stream
    (trainer_dir / "train.py").write_text("print('changed')\n")
    assert build_trainer_archive(trainer_dir) != first


# --- credentials and the connection ------------------------------------------------------------------------


def test_credentials_are_cached_until_near_expiry(aws: None, trainer_dir: Path) -> None:
    clock = [datetime.now(UTC)]
    provider = _provider(trainer_dir, now=lambda: clock[0])
    first = provider.session()
    assert provider.session() is first
    assert provider.sagemaker is provider.sagemaker  # clients are kept with the credentials
    client = provider.sagemaker
    clock[0] += timedelta(hours=2)
    renewed = provider.session()
    assert renewed is not first
    assert provider.sagemaker is not client  # clients of the old credentials are not reused
    # Each provider (one per workspace connection) assumes the role for itself.
    assert _provider(trainer_dir).session() is not first


def test_storage_follows_renewed_credentials(aws: None, trainer_dir: Path) -> None:
    # A warm container keeps the workspace's provider for hours: the assumed role's credentials last
    # one, so the storage must not keep a client made with credentials that have expired.
    start = datetime.now(UTC)
    clock = [start]
    provider = _provider(trainer_dir, now=lambda: clock[0])
    provider.s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    first = provider.session()
    provider.storage.put(f"s3://{BUCKET}/tunelab/a.txt", b"a", content_type="text/plain")
    assert provider.storage.client is provider.s3

    clock[0] = start + timedelta(hours=2)
    renewed = provider.session()
    clock[0] = start  # the renewed credentials are fresh again
    assert provider.session() is renewed is not first

    assert provider.storage.client is provider.s3
    provider.storage.put(f"s3://{BUCKET}/tunelab/b.txt", b"b", content_type="text/plain")
    assert provider.storage.exists(f"s3://{BUCKET}/tunelab/a.txt")


def test_session_names_are_the_ones_the_connector_requires() -> None:
    # The connector's trust policy requires `tunelab-<workspace id>` exactly; workspace ids that BYOK
    # accepts (at most 56 characters of WORKSPACE_ID_PATTERN) fit STS's rules.
    for workspace in ("ws-acme", "W", "acme_corp.eu-1", "w" * 56):
        name = session_name(workspace)
        assert name == f"tunelab-{workspace}"
        assert 2 <= len(name) <= 64
        assert re.fullmatch(r"[\w+=,.@-]*", name)


@pytest.fixture
def ready_account(aws: None, trainer_dir: Path) -> tuple[SageMakerConnection, str]:
    provider = _provider(trainer_dir)
    provider.s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    secret = provider.secrets.create_secret(Name=SECRET_NAME, SecretString="hf_xxx")["ARN"]
    return _connection(hf_token_secret_arn=secret), secret


def test_verify_connection_succeeds_on_a_ready_account(
    ready_account: tuple[SageMakerConnection, str],
) -> None:
    connection, _ = ready_account
    check = verify_connection(connection, "ws-acme")
    assert check.ok, check.message
    assert check.message.startswith("Connected")
    assert [c.name for c in check.checks] == [
        "sts:AssumeRole",
        "s3:ListBucket",
        "s3:PutObject",
        "sagemaker:DescribeTrainingJob",
        "secretsmanager:DescribeSecret",
    ]


def test_verify_connection_names_a_missing_bucket_and_secret(aws: None) -> None:
    connection = _connection(
        hf_token_secret_arn=f"arn:aws:secretsmanager:{REGION}:{CUSTOMER}:secret:missing-AbCdEf",
        artifact_bucket="no-such-bucket",
    )
    check = verify_connection(connection, "ws-acme")
    assert not check.ok
    assert "no-such-bucket does not exist" in check.message
    messages = {c.name: c.message for c in check.checks if not c.ok}
    assert "does not exist" in messages["secretsmanager:DescribeSecret"]


@pytest.mark.parametrize(
    ("event", "check", "words"),
    [
        ("sts.AssumeRole", "sts:AssumeRole", "could not assume the role"),
        ("s3.ListObjectsV2", "s3:ListBucket", "s3:ListBucket on arn:aws:s3:::acme-tunelab-artifacts"),
        (
            "s3.PutObject",
            "s3:PutObject",
            "s3:PutObject on arn:aws:s3:::acme-tunelab-artifacts/tunelab/ws-acme/*",
        ),
        ("sagemaker.DescribeTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:DescribeTrainingJob"),
        (
            "secretsmanager.DescribeSecret",
            "secretsmanager:DescribeSecret",
            "secretsmanager:DescribeSecret on",
        ),
    ],
)
def test_verify_connection_says_which_permission_is_missing(
    ready_account: tuple[SageMakerConnection, str],
    monkeypatch: pytest.MonkeyPatch,
    event: str,
    check: str,
    words: str,
) -> None:
    connection, _ = ready_account
    base = boto3.Session(region_name=REGION)
    if event.startswith("sts."):
        _deny(base, event)
    else:
        original = sagemaker_module._assume

        def assume_then_deny(*args: Any, **kwargs: Any) -> tuple[boto3.Session, datetime]:
            session, expires = original(*args, **kwargs)
            _deny(session, event)
            return session, expires

        monkeypatch.setattr(sagemaker_module, "_assume", assume_then_deny)

    result = verify_connection(connection, "ws-acme", base=base)

    assert not result.ok
    failed = [c for c in result.checks if not c.ok]
    assert [c.name for c in failed] == [check]
    assert words in result.message


# --- events ------------------------------------------------------------------------------------------------


def _sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


@pytest.mark.parametrize(
    ("job_status", "secondary", "status", "reason"),
    [
        ("InProgress", "Training", "in_progress", None),
        ("Completed", "Completed", "completed", None),
        ("Failed", "Failed", "failed", "AlgorithmError: CUDA out of memory"),
        ("Stopping", "Stopping", "stopping", None),
        ("Stopped", "Stopped", "stopped", None),
        ("Stopped", "MaxRuntimeExceeded", "failed", "ran past its time limit (MaxRuntimeInSeconds)"),
    ],
)
def test_the_documented_training_event_parses_for_every_status(
    job_status: str, secondary: str, status: str, reason: str | None
) -> None:
    event = _sample("sagemaker_training_job_state_change.json")
    detail = copy.deepcopy(event["detail"])
    detail.update(TrainingJobStatus=job_status, SecondaryStatus=secondary)
    if job_status == "Failed":
        detail["FailureReason"] = "AlgorithmError: CUDA out of memory"
    detail["FinalMetricDataList"] = [
        {"MetricName": "train_loss", "Value": 0.41, "Timestamp": 1583831889.0},
        {"MetricName": "epoch", "Value": 2.0, "Timestamp": 1583831889.0},
    ]

    state = parse_event(event["detail-type"], detail)

    assert isinstance(state, TrainingState)
    # The job is known by its ARN (account, region and name), never by its bare name.
    assert state.job_id == "arn:aws:sagemaker:us-east-1:123456789012:training-job/kmeans-1"
    assert state.status == status
    assert state.phase == secondary
    if reason is None:
        assert state.failure_reason is None
    else:
        assert state.failure_reason is not None
        assert reason in state.failure_reason
    assert state.metrics is not None
    assert (state.metrics.train_loss, state.metrics.epoch) == (0.41, 2.0)
    if state.terminal:
        assert state.ended_at == datetime.fromtimestamp(1583831889.050, tz=UTC)


@pytest.mark.parametrize(
    ("endpoint_status", "status"),
    [
        ("IN_SERVICE", "in_service"),
        ("InService", "in_service"),
        ("CREATING", "creating"),
        ("UPDATING", "in_service"),
        ("DELETING", "deleting"),
        ("FAILED", "failed"),
        ("OUT_OF_SERVICE", "failed"),
    ],
)
def test_the_documented_endpoint_event_parses_for_every_status(endpoint_status: str, status: str) -> None:
    event = _sample("sagemaker_endpoint_state_change.json")
    detail = {**event["detail"], "EndpointStatus": endpoint_status}
    parsed = parse_any_event(event["source"], event["detail-type"], detail, event["account"])
    assert (parsed.provider, parsed.account) == ("sagemaker", event["account"])
    state = parsed.state
    assert isinstance(state, DeploymentState)
    assert (state.deployment_id, state.status) == ("MyEndpoint", status)


def test_a_training_event_without_its_job_arn_is_not_handled() -> None:
    # Without the ARN the event could only be matched by its bare name, which any workspace can choose.
    detail = dict(_sample("sagemaker_training_job_state_change.json")["detail"].items())
    del detail["TrainingJobArn"]
    with pytest.raises(UnhandledEventError, match="TrainingJobArn"):
        parse_event("SageMaker Training Job State Change", detail)


def test_the_unchanged_training_sample_routes_by_source() -> None:
    event = _sample("sagemaker_training_job_state_change.json")
    parsed = parse_any_event(event["source"], event["detail-type"], event["detail"])
    assert isinstance(parsed, ProviderEvent)
    assert (parsed.provider, parsed.account) == ("sagemaker", None)
    assert isinstance(parsed.state, TrainingState)
    assert parsed.state.status == "completed"


def test_only_the_customers_account_speaks_for_its_models(provider: SageMakerProvider) -> None:
    assert provider.connection.account == CUSTOMER
    assert provider.speaks_for(CUSTOMER)
    assert not provider.speaks_for("999988887777")
    assert not provider.speaks_for("123456789012")  # not even the platform's own account
    assert not provider.speaks_for("")
    # An event that names no account (moto's EventBridge, the local runtime's AWS) is not refused.
    assert provider.speaks_for(None)


def test_a_config_names_the_trainers_folder(tmp_path: Path) -> None:
    # The trainer comes from its folder only: a config without one, or with the removed
    # `trainer_source_uri`, is refused.
    with pytest.raises(ValueError, match="trainer_dir"):
        SageMakerConfig(connection=_connection(), workspace_id="ws-acme")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="trainer_source_uri"):
        SageMakerConfig(
            connection=_connection(),
            workspace_id="ws-acme",
            trainer_dir=tmp_path,
            trainer_source_uri="s3://b/k.zip",  # type: ignore[call-arg]
        )


REAL_TRAINER = Path(__file__).resolve().parents[2] / "trainer"


def test_the_real_trainer_packs_with_its_entry_point_and_requirements() -> None:
    with tarfile.open(fileobj=io.BytesIO(build_trainer_archive(REAL_TRAINER)), mode="r:gz") as tar:
        names = tar.getnames()
    assert {"train.py", "requirements.txt", "__init__.py", "metric_definitions.json"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


@pytest.mark.parametrize(
    ("job_status", "billable", "expected"),
    [
        ("Completed", 4021, 4021),
        ("Completed", "4021", 4021),
        ("Completed", None, None),
        ("InProgress", 10, None),
    ],
)
def test_the_training_event_carries_the_billable_seconds_of_an_ended_job(
    job_status: str, billable: object, expected: int | None
) -> None:
    event = _sample("sagemaker_training_job_state_change.json")
    detail = copy.deepcopy(event["detail"])
    detail.update(TrainingJobStatus=job_status, SecondaryStatus=job_status)
    if billable is not None:
        detail["BillableTimeInSeconds"] = billable

    state = parse_event(event["detail-type"], detail)

    assert isinstance(state, TrainingState)
    assert state.billable_seconds == expected


# --- resume ---------------------------------------------------------------------------------------------


def test_a_resume_is_a_new_job_with_the_same_checkpoint_location(provider: SageMakerProvider) -> None:
    sent = _record_requests(provider, "CreateTrainingJob")
    # Nothing saved yet: nothing to resume from.
    assert provider.resume_point(IDENTITY, 0) is None
    first = provider.start_training(_request())
    prefix = "tunelab/ws-acme/support-bot-v1/checkpoints/"
    for step in (10, 20):
        provider.s3.put_object(
            Bucket=BUCKET,
            Key=f"{prefix}checkpoint-{step}/trainer_state.json",
            Body=json.dumps({"global_step": step, "max_steps": 120}).encode(),
        )
    # A checkpoint still being written (no trainer_state.json yet) is not one to resume from.
    provider.s3.put_object(Bucket=BUCKET, Key=f"{prefix}checkpoint-30/model.safetensors", Body=b"x")

    point = provider.resume_point(IDENTITY, 0)
    resumed = provider.start_training(_request(attempt=1))

    assert point is not None
    assert (point.checkpoint, point.step, point.total_steps) == ("checkpoint-20", 20, 120)
    # SageMaker never reuses a job's name: the resume's job has its own, for the same model.
    assert resumed.job_name == job_name(IDENTITY, 1)
    assert resumed.job_name != first.job_name
    assert resumed.job_name.startswith("support-bot-v1-")
    # ... and the same CheckpointConfig: SageMaker hands it the checkpoints, the trainer resumes.
    assert [r["TrainingJobName"] for r in sent] == [first.job_name, resumed.job_name]
    assert sent[1]["CheckpointConfig"] == sent[0]["CheckpointConfig"]
    assert sent[1]["CheckpointConfig"]["S3Uri"] == f"s3://{BUCKET}/{prefix}"
    assert sent[1]["OutputDataConfig"] == sent[0]["OutputDataConfig"]  # SageMaker adds the job's name


def test_deploy_sends_the_chosen_instance_type_count_and_gpus(provider: SageMakerProvider) -> None:
    models: list[dict[str, Any]] = []
    configs: list[dict[str, Any]] = []
    events = provider.sagemaker.meta.events
    events.register("before-parameter-build.sagemaker.CreateModel", lambda params, **_: models.append(params))
    events.register(
        "before-parameter-build.sagemaker.CreateEndpointConfig", lambda params, **_: configs.append(params)
    )
    stub = Stubber(provider.sagemaker)
    stub.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:eu-west-1:111122223333:model/m"})
    stub.add_response(
        "create_endpoint_config", {"EndpointConfigArn": "arn:aws:sagemaker:eu-west-1:1:endpoint-config/m"}
    )
    stub.add_response(
        "create_endpoint", {"EndpointArn": "arn:aws:sagemaker:eu-west-1:111122223333:endpoint/m"}
    )
    with stub:
        provider.deploy(
            _deploy_request(instance_type="ml.g6e.12xlarge", instance_count=3, gpus_per_instance=4)
        )
    [variant] = configs[0]["ProductionVariants"]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.g6e.12xlarge", 3)
    assert models[0]["PrimaryContainer"]["Environment"]["SM_NUM_GPUS"] == "4"
