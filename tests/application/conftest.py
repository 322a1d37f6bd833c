"""The fast tier: the use cases on in-memory fakes of every port (`tests.fakes`), no AWS, no moto.

Each test builds what it needs with the helpers below and drives one use case the way its entry point
(a route, a workflow task, a message handler) would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes import FakeContext
from tunelab.application import datasets, fine_tuned_models
from tunelab.application.commands import CreateFineTunedModelIn
from tunelab.application.workflows import FinishTrainingEvent, TrainingOutcome
from tunelab.domain.identity import Identity
from tunelab.domain.providers import MergedArchive
from tunelab.domain.records import DatasetRecord, ModelRecord, ProviderConnectionRecord

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "shared" / "tunelab" / "sample_data"
TRAINING_CSV = (SAMPLE_DATA / "support-triage.csv").read_bytes()
VALIDATION_CSV = (SAMPLE_DATA / "support-triage-validation.csv").read_bytes()
ADA = Identity(sub="sub-ada", email="ada@example.com", workspace="ws-acme")
BEDROCK_MODEL = "amazon.nova-micro-v1:0:128k"
SAGEMAKER_MODEL = "sagemaker.qwen2-5-7b-instruct"


@pytest.fixture
def ctx() -> FakeContext:
    context = FakeContext()
    context.workspaces.set_plan(ADA.workspace, "subscription", default_plan="pay_as_you_go")
    return context


def ready_dataset(ctx: FakeContext, name: str = "tickets", data: bytes = TRAINING_CSV) -> DatasetRecord:
    dataset = datasets.create_from_csv(ctx, ADA, name, data)
    assert dataset.status == "ready", dataset.errors
    return dataset


def create_request(dataset: DatasetRecord, **fields: object) -> CreateFineTunedModelIn:
    body: dict[str, object] = {
        "name": "support-bot",
        "base_model_id": BEDROCK_MODEL,
        "dataset_id": dataset.dataset_id,
        "validation": {"mode": "split", "percent": 10},
        "hyperparameters": {"epochs": 2},
        "acknowledge": True,
    }
    body.update(fields)
    return CreateFineTunedModelIn.model_validate(body)


def created_model(ctx: FakeContext, **fields: object) -> ModelRecord:
    """A model created through the use case (status `training`, its workflow started)."""
    dataset = ready_dataset(ctx, name=f"data-{len(ctx.table.datasets)}")
    return fine_tuned_models.create(ctx, ADA, create_request(dataset, **fields), correlation_id="req-create")


def workflow_input(model: ModelRecord, correlation_id: str, **more: object) -> dict[str, object]:
    """What a workflow execution of `model` carries into each task (the fields every task event has)."""
    return {
        "workspace_id": model.workspace_id,
        "model_name": model.name,
        "uid": model.uid,
        "correlation_id": correlation_id,
        "table_key": {"pk": f"WS#{model.workspace_id}", "sk": f"MODEL#{model.name.lower()}"},
        **more,
    }


def connect_sagemaker(ctx: FakeContext, *, hf_token_secret_arn: str | None = None) -> None:
    now = ctx.now()
    ctx.connections.put(
        ProviderConnectionRecord(
            workspace_id=ADA.workspace,
            role_arn="arn:aws:iam::210987654321:role/tunelab-connector",
            external_id="ext-1234567890",
            region="us-west-2",
            artifact_bucket="customer-artifacts",
            hf_token_secret_arn=hf_token_secret_arn,
            status="connected",
            created_at=now,
            updated_at=now,
        )
    )


def sagemaker_request(
    ctx: FakeContext, *, hf_token_secret_arn: str | None = None, **fields: object
) -> CreateFineTunedModelIn:
    connect_sagemaker(ctx, hf_token_secret_arn=hf_token_secret_arn)
    dataset = ready_dataset(ctx, name=f"data-{len(ctx.table.datasets)}")
    body: dict[str, object] = {
        "base_model_id": SAGEMAKER_MODEL,
        "resources": {"instance_type": "ml.g6e.2xlarge", "instance_count": 1, "volume_size_gb": 50},
        **fields,
    }
    return create_request(dataset, **body)


ADAPTER_BYTES = 1_000_000
MERGED_COPY_BYTES = 15_000_000


SMALL_SAGEMAKER_MODEL = "sagemaker.llama-3-2-1b-instruct"  # a full fine-tune of it fits one GPU


def trained_on_sagemaker(
    ctx: FakeContext,
    name: str,
    *,
    optional: dict[str, object] | None,
    merged_copy: bool = False,
    base_model_id: str | None = None,
) -> ModelRecord:
    """A model trained on the SageMaker double, `not_deployed`: its `model.tar.gz` in the provider's
    bucket and, with `merged_copy`, the merged copy an unmerged LoRA job leaves in its output archive.
    `optional=None`: a full fine-tune (of a model small enough for it)."""
    fields: dict[str, object] = {"name": name}
    secret = None
    if optional is not None:
        fields["optional_hyperparameters"] = optional
        if base_model_id is not None:
            fields["base_model_id"] = base_model_id
    else:
        fields["optional_hyperparameters"] = {"use_lora": False}
        fields["base_model_id"] = SMALL_SAGEMAKER_MODEL
        fields["resources"] = {"instance_type": "ml.g6e.xlarge", "instance_count": 1, "volume_size_gb": 50}
        secret = "arn:aws:secretsmanager:us-west-2:210987654321:secret:hf-token"  # the model is gated
    request = sagemaker_request(ctx, hf_token_secret_arn=secret, **fields)
    model = fine_tuned_models.create(ctx, ADA, request, correlation_id="r")
    folder = f"s3://provider-bucket/out/{name}-job/output/"
    uri = folder + "model.tar.gz"
    ctx.provider_files.put(uri, b"a" * ADAPTER_BYTES, content_type="application/gzip")
    if merged_copy:
        ctx.provider("sagemaker").merged_archives[uri] = MergedArchive(
            uri=folder + "output.tar.gz",
            path="merged/",
            size_bytes=MERGED_COPY_BYTES,
            files=["merged/config.json", "merged/model.safetensors", "metrics.json"],
        )
    outcome = TrainingOutcome(outcome="completed", artifacts_uri=uri)
    fine_tuned_models.finish_training(
        ctx,
        FinishTrainingEvent.model_validate(
            {**workflow_input(model, "run-1"), "outcome": outcome.model_dump()}
        ),
    )
    return ctx.models.get(ADA.workspace, name)
