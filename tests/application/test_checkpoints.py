"""The checkpoints use case on fakes: the provider's list for a model's job; none, with a message, for a
model without one or a provider that keeps none; a download link or 404."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.application.conftest import ADA, created_model, sagemaker_request, workflow_input
from tests.fakes import FakeContext
from tunelab.application import checkpoints, fine_tuned_models
from tunelab.application.workflows import PrepareDataEvent, StartTrainingEvent
from tunelab.domain.checkpoints import CheckpointInfo
from tunelab.domain.errors import NotFound, ValidationFailed
from tunelab.domain.records import ModelRecord

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
KEPT = [
    CheckpointInfo(id="checkpoint-10", step=10, epoch=1.0, train_loss=1.5, saved_at=T0),
    CheckpointInfo(id="checkpoint-5", step=5, epoch=0.5, train_loss=2.0, saved_at=T0),
]


def _sagemaker_model(ctx: FakeContext) -> ModelRecord:
    return fine_tuned_models.create(ctx, ADA, sagemaker_request(ctx), correlation_id="req-create")


def _started(ctx: FakeContext, record: ModelRecord) -> ModelRecord:
    base = workflow_input(record, "req-create")
    prepared = fine_tuned_models.prepare_data(ctx, PrepareDataEvent.model_validate(base))
    fine_tuned_models.start_training(
        ctx,
        StartTrainingEvent.model_validate(
            {
                **base,
                "task_token": "token-1",
                "execution_arn": record.training.execution_arn,
                "prepared": prepared.model_dump(),
            }
        ),
    )
    model = ctx.models.get(record.workspace_id, record.name)
    assert model.refs.training_job is not None
    ctx.provider(model.provider).checkpoint_lists[model.refs.training_job.job_name] = list(KEPT)
    return model


def test_a_models_job_lists_its_checkpoints_by_step(ctx: FakeContext) -> None:
    model = _started(ctx, _sagemaker_model(ctx))
    found = checkpoints.list_checkpoints(ctx, ADA, model.name)
    assert [c.id for c in found.items] == ["checkpoint-5", "checkpoint-10"]
    assert found.message is None


def test_a_model_without_a_job_has_none_and_says_why(ctx: FakeContext) -> None:
    model = _sagemaker_model(ctx)
    found = checkpoints.list_checkpoints(ctx, ADA, model.name)
    assert found.items == ()
    assert found.message == "The training job has not started yet; its checkpoints appear once it saves them."
    with pytest.raises(NotFound):
        checkpoints.download_checkpoint(ctx, ADA, model.name, "checkpoint-5")


def test_a_kept_checkpoint_downloads_and_another_is_not_found(ctx: FakeContext) -> None:
    model = _started(ctx, _sagemaker_model(ctx))
    got = checkpoints.download_checkpoint(ctx, ADA, model.name, "checkpoint-5")
    assert got.checkpoint_id == "checkpoint-5"
    assert got.link.url.endswith("/checkpoint-5.tar.gz")
    with pytest.raises(NotFound):
        checkpoints.download_checkpoint(ctx, ADA, model.name, "checkpoint-6")
    # Not a checkpoint's name: the provider is not asked.
    with pytest.raises(NotFound):
        checkpoints.download_checkpoint(ctx, ADA, model.name, "../model")
    assert ctx.provider(model.provider).called("checkpoint_download") == ["checkpoint-5", "checkpoint-6"]


def test_bedrock_keeps_none(ctx: FakeContext) -> None:
    model = _started(ctx, created_model(ctx, base_model_id="amazon.nova-micro-v1:0:128k"))
    assert model.provider == "bedrock"
    found = checkpoints.list_checkpoints(ctx, ADA, model.name)
    assert found.items == ()
    assert found.message
    assert "keeps no checkpoints" in found.message
    with pytest.raises(ValidationFailed):
        checkpoints.download_checkpoint(ctx, ADA, model.name, "checkpoint-5")
