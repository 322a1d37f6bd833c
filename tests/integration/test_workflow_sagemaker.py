"""The fine-tuning workflow for a SageMaker (BYOK) model: data and job in the customer's account.

moto plays both accounts (the customer's role is assumed through moto's STS); its training jobs
are created for real and the job's end is reported as the provider-event handler would.
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import pytest

from tests.integration.conftest import ACCOUNT
from tests.integration.workflow_fixtures import Stack, stack_fixture  # noqa: F401  # the `stack` fixture
from tunelab.adapters.stepfunctions import table_key
from tunelab.application.workflows import DeploymentInput, TrainingOutcome, deployment_execution_name
from tunelab.domain.records import (
    Artifacts,
    ModelChanges,
    ModelRecord,
    ProviderConnectionRecord,
    Resources,
    utcnow,
)
from tunelab.domain.status import ModelStatus

pytestmark = pytest.mark.moto
CUSTOMER_BUCKET = "acme-ml-artifacts"


def _connect(stack: Stack, workspace: str) -> None:
    stack.services.s3.create_bucket(Bucket=CUSTOMER_BUCKET)
    now = utcnow()
    stack.repo.connections.put(
        ProviderConnectionRecord(
            workspace_id=workspace,
            role_arn=f"arn:aws:iam::{ACCOUNT}:role/tunelab-connector",
            external_id="ext-123456",
            region="us-east-1",
            artifact_bucket=CUSTOMER_BUCKET,
            status="connected",
            created_at=now,
            updated_at=now,
        )
    )
    # As the API does when a connection changes: the workspace's provider is made again from it.
    stack.services.providers.forget("sagemaker", workspace)


def _status_events(stack: Stack, wait_for: int) -> list[dict[str, Any]]:
    """The details of the status changes on tunelab's bus."""
    return [
        e["detail"]
        for e in stack.domain_events(wait_for=wait_for)
        if e["detail-type"] == "Fine-tuned Model Status Changed"
    ]


def _archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_sagemaker_job_reads_from_the_customer_bucket_and_completes_with_listed_artifacts(
    stack: Stack,
) -> None:
    dataset = stack.dataset()
    _connect(stack, dataset.workspace_id)
    record: ModelRecord = stack.model(
        dataset,
        provider="sagemaker",
        hosting="byok",
        base_model_id="sagemaker.qwen2-5-7b-instruct",
        base_model_name="Qwen2.5 7B Instruct",
        resources=Resources(instance_type="ml.g6e.2xlarge", instance_count=1, volume_size_gb=100),
        hyperparameters={"epochs": 2, "learning_rate": 0.0002, "batch_size": 4},
        validation={"mode": "split", "percent": 20},
    )

    arn = stack.services.workflows.start_fine_tuning(record, correlation_id="corr-sm")
    token = stack.wait_for_token(record)
    stack.wait_for(
        lambda: stack.repo.models.get(record.workspace_id, record.name).training.job_id, what="the job's id"
    )

    # The job exists in the customer's account, reading the data tunelab wrote there
    waiting = stack.repo.models.get(record.workspace_id, record.name)
    assert waiting.training.job_id is not None
    job_name = waiting.training.job_id.rsplit("/", 1)[-1]
    assert job_name.startswith(f"{record.name}-")  # the model's name and a digest of its record
    job = stack.services.client("sagemaker").describe_training_job(TrainingJobName=job_name)
    assert waiting.training.job_id == job["TrainingJobArn"].lower()
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert channels["training"].startswith(f"s3://{CUSTOMER_BUCKET}/tunelab/{record.workspace_id}/")
    assert channels["validation"].endswith("/validation.jsonl")
    train_key = channels["training"].removeprefix(f"s3://{CUSTOMER_BUCKET}/")
    rows = stack.services.s3.get_object(Bucket=CUSTOMER_BUCKET, Key=train_key)["Body"].read().splitlines()
    assert 140 <= len(rows) <= 185  # about 80% of 200 rows
    assert job["HyperParameters"]["epochs"] == "2"

    # When the job completes with its model.tar.gz
    summary = {"artifacts": {"merged": True}}
    archive = _archive(
        {
            "config.json": b"{}",
            "model.safetensors": b"\0" * 2048,
            "adapter/adapter_model.safetensors": b"\0" * 512,
            "tunelab-training.json": json.dumps(summary).encode(),
        }
    )
    output_key = f"tunelab/{record.workspace_id}/{record.name}/output/{job_name}/output/model.tar.gz"
    stack.services.s3.put_object(Bucket=CUSTOMER_BUCKET, Key=output_key, Body=archive)
    stack.services.workflows.send_training_outcome(
        token,
        TrainingOutcome(
            outcome="completed",
            artifacts_uri=f"s3://{CUSTOMER_BUCKET}/{output_key}",
            metrics={"train_loss": 1.1, "eval_loss": 1.3, "step": 120, "epoch": 2.0},
        ),
    )
    result = stack.wait_execution(arn)

    # Then the model is not deployed, its artifacts listed with their size and the storage cost
    assert result["status"] == "SUCCEEDED"
    model = stack.repo.models.get(record.workspace_id, record.name)
    assert model.status == ModelStatus.NOT_DEPLOYED
    assert model.artifacts is not None
    assert model.artifacts.files == sorted(
        ["config.json", "model.safetensors", "adapter/adapter_model.safetensors", "tunelab-training.json"]
    )
    assert model.artifacts.size_bytes == len(archive)
    assert model.artifacts.merged is True
    s3_rate = stack.services.catalog.s3_storage_per_gb_month_usd
    assert model.storage_per_month_usd == round(len(archive) / 1e9 * s3_rate, 2)
    assert model.training.metrics is not None
    assert model.training.metrics.step == 120
    [email] = stack.emails()
    assert "is ready" in email.subject
    [changed] = _status_events(stack, wait_for=1)
    assert (changed["data"]["previous_status"], changed["data"]["status"]) == ("training", "not_deployed")
    assert changed["correlation_id"] == "corr-sm"


def test_sagemaker_model_deploys_to_an_endpoint_in_the_customer_account(stack: Stack) -> None:
    dataset = stack.dataset()
    _connect(stack, dataset.workspace_id)
    record: ModelRecord = stack.model(
        dataset,
        provider="sagemaker",
        hosting="byok",
        base_model_id="sagemaker.qwen2-5-7b-instruct",
        base_model_name="Qwen2.5 7B Instruct",
        resources=Resources(instance_type="ml.g6e.2xlarge", instance_count=1, volume_size_gb=100),
        hyperparameters={"epochs": 2, "learning_rate": 0.0002, "batch_size": 4},
    )
    artifacts = f"s3://{CUSTOMER_BUCKET}/tunelab/{record.workspace_id}/{record.name}/output/model.tar.gz"
    stack.repo.models.transition(
        record.workspace_id,
        record.name,
        {ModelStatus.TRAINING},
        ModelStatus.NOT_DEPLOYED,
        ModelChanges(artifacts=Artifacts(uri=artifacts)),
    )
    deploying = stack.repo.models.transition(
        record.workspace_id, record.name, {ModelStatus.NOT_DEPLOYED}, ModelStatus.DEPLOYING
    )
    requested = utcnow()

    # moto's endpoint configurations refuse GPU instance types; the workflow passes the one asked for
    # (the execution's input as the API gives it, with that instance type)
    body = DeploymentInput(
        workspace_id=deploying.workspace_id,
        model_name=deploying.name,
        uid=deploying.uid,
        correlation_id="corr-sm-d",
        table_key=table_key(deploying.workspace_id, deploying.name),
        requested_at=requested,
        instance_type="ml.m5.xlarge",
        poll_seconds=0,
    )
    arn = stack.sfn.start_execution(
        stateMachineArn=stack.deployment_arn,
        name=deployment_execution_name(deploying.name, deploying.uid, requested),
        input=body.model_dump_json(),
    )["executionArn"]
    result = stack.wait_execution(arn)

    assert result["status"] == "SUCCEEDED", result
    model = stack.repo.models.get(record.workspace_id, record.name)
    assert model.status == ModelStatus.DEPLOYED
    assert model.deployment is not None
    endpoint = stack.services.client("sagemaker").describe_endpoint(EndpointName=model.deployment.endpoint)
    assert endpoint["EndpointStatus"] == "InService"
    sm_model = stack.services.client("sagemaker").describe_model(ModelName=model.deployment.endpoint)
    assert sm_model["PrimaryContainer"]["ModelDataUrl"] == artifacts
    assert model.deployment.auto_undeploy_at is None
    [email] = stack.emails()
    assert "stays deployed, and billed, until you undeploy it" in email.body
    [changed] = _status_events(stack, wait_for=1)
    assert (changed["data"]["previous_status"], changed["data"]["status"]) == ("deploying", "deployed")
    assert changed["correlation_id"] == "corr-sm-d"
