"""The SageMaker provider's checkpoints: the `checkpoint-<step>/` folders a job synced to the customer's
bucket (its CheckpointConfig, moto), each read from its trainer_state.json through the connector's role."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from moto import mock_aws

from tunelab.adapters.providers.sagemaker import SageMakerConfig, SageMakerProvider, job_name, model_prefix
from tunelab.domain.errors import NotFound, ValidationFailed
from tunelab.domain.evaluation import EvaluationReport, EvaluationSkipped
from tunelab.domain.providers import ModelIdentity, SageMakerConnection, TrainingJobRef

REGION = "eu-west-1"
CUSTOMER = "111122223333"
BUCKET = "acme-tunelab-artifacts"
ROLE = f"arn:aws:iam::{CUSTOMER}:role/tunelab-platform-access-{REGION}"
IDENTITY = ModelIdentity(
    workspace_id="ws-acme", model_name="support-bot-v1", created_at=datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
)
JOB = job_name(IDENTITY)
REF = TrainingJobRef(
    provider="sagemaker",
    job_id=f"arn:aws:sagemaker:{REGION}:{CUSTOMER}:training-job/{JOB}".lower(),
    job_name=JOB,
)
PREFIX = f"{model_prefix(IDENTITY)}/checkpoints/"


def _state(step: int, epoch: float) -> bytes:
    history = [
        {"step": 2, "epoch": 0.25, "loss": 2.5},
        {"step": 4, "epoch": 0.5, "loss": 2.0},
        {"step": 4, "epoch": 0.5, "eval_loss": 2.2},
        {"step": 6, "epoch": 0.75, "loss": 1.5},
    ]
    return json.dumps({"global_step": step, "epoch": epoch, "log_history": history}).encode()


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SageMakerProvider]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "train.py").write_text("print('training')\n")
    connection = SageMakerConnection(
        role_arn=ROLE, external_id="ext-7f3a", region=REGION, artifact_bucket=BUCKET
    )
    with mock_aws():
        made = SageMakerProvider(
            SageMakerConfig(connection=connection, workspace_id="ws-acme", trainer_dir=tmp_path)
        )
        made.s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        made.sagemaker.create_training_job(
            TrainingJobName=JOB,
            AlgorithmSpecification={"TrainingImage": "trainer:latest", "TrainingInputMode": "File"},
            RoleArn=f"arn:aws:iam::{CUSTOMER}:role/tunelab-execution",
            OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/{model_prefix(IDENTITY)}/output"},
            ResourceConfig={"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
            StoppingCondition={"MaxRuntimeInSeconds": 3600},
            CheckpointConfig={"S3Uri": f"s3://{BUCKET}/{PREFIX}", "LocalPath": "/opt/ml/checkpoints"},
        )
        yield made


def _put(provider: SageMakerProvider, key: str, body: bytes) -> None:
    provider.s3.put_object(Bucket=BUCKET, Key=PREFIX + key, Body=body)


def test_no_synced_checkpoint_is_an_empty_list_with_a_message(provider: SageMakerProvider) -> None:
    found = provider.checkpoints(REF)
    assert found.items == ()
    assert found.message == "The training job has not synced a checkpoint to your bucket yet."


def test_each_synced_checkpoint_is_read_from_its_trainer_state(provider: SageMakerProvider) -> None:
    _put(provider, "checkpoint-8/model.safetensors", b"w" * 100)
    _put(provider, "checkpoint-8/trainer_state.json", _state(8, 1.0))
    _put(provider, "checkpoint-4/model.safetensors", b"w" * 50)
    _put(provider, "checkpoint-4/trainer_state.json", _state(4, 0.5))
    # Still being synced (no trainer_state.json yet) and not a checkpoint at all: left out.
    _put(provider, "checkpoint-12/model.safetensors", b"w")
    _put(provider, "notes/trainer_state.json", _state(1, 0.1))
    _put(provider, "checkpoint-x/trainer_state.json", _state(1, 0.1))

    found = provider.checkpoints(REF)
    assert [(c.id, c.step, c.epoch, c.train_loss, c.eval_loss) for c in found.items] == [
        ("checkpoint-4", 4, 0.5, 2.0, 2.2),
        ("checkpoint-8", 8, 1.0, 1.5, 2.2),
    ]
    assert [c.size_bytes for c in found.items] == [50 + len(_state(4, 0.5)), 100 + len(_state(8, 1.0))]
    assert all(c.saved_at is not None for c in found.items)
    assert found.message is None


def test_a_checkpoint_download_is_refused_naming_its_folder(provider: SageMakerProvider) -> None:
    _put(provider, "checkpoint-4/trainer_state.json", _state(4, 0.5))
    with pytest.raises(ValidationFailed, match=f"s3://{BUCKET}/{PREFIX}checkpoint-4/"):
        provider.checkpoint_download(REF, "checkpoint-4")
    with pytest.raises(NotFound):
        provider.checkpoint_download(REF, "checkpoint-5")


# --- the evaluation report, synced with the checkpoint folder ----------------------------------------

REPORT = {
    "format_version": 1,
    "rows": 2,
    "validation_rows": 2,
    "max_new_tokens": 24,
    "decoding": "greedy",
    "base": {"exact_match": 0.0, "token_f1": 0.25, "format_match": 0.5},
    "fine_tuned": {"exact_match": 1.0, "token_f1": 1.0, "format_match": 1.0},
    "seconds": {"base": 1.5, "fine_tuned": 1.2},
    "samples": [{"prompt": "p", "expected": "a=b", "base": "no", "fine_tuned": "a=b"}],
    "notes": [],
}


def test_the_evaluation_report_is_read_from_the_checkpoint_folder(provider: SageMakerProvider) -> None:
    _put(provider, "tunelab-evaluation.json", json.dumps(REPORT).encode())

    report = provider.evaluation_report(REF)
    assert isinstance(report, EvaluationReport)
    assert (report.base.exact_match, report.fine_tuned.exact_match, report.rows) == (0.0, 1.0, 2)
    assert report.samples[0].fine_tuned == "a=b"


def test_no_report_is_none_and_a_skipped_or_unreadable_one_says_why(provider: SageMakerProvider) -> None:
    assert provider.evaluation_report(REF) is None

    _put(
        provider,
        "tunelab-evaluation.json",
        b'{"format_version": 1, "skipped": "the job has no validation data"}',
    )
    assert provider.evaluation_report(REF) == EvaluationSkipped(skipped="the job has no validation data")

    _put(provider, "tunelab-evaluation.json", json.dumps({**REPORT, "format_version": 7}).encode())
    unreadable = provider.evaluation_report(REF)
    assert isinstance(unreadable, EvaluationSkipped)
    assert "format_version 7" in unreadable.skipped
    assert f"s3://{BUCKET}/{PREFIX}tunelab-evaluation.json" in unreadable.skipped
