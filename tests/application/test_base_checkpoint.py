"""A checkpoint of a fine-tuned model as the base of a new one (`base_checkpoint`): each check naming the
field, the record and the quote carrying it, and the provider's request naming the checkpoint."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.application.conftest import (
    ADA,
    created_model,
    ready_dataset,
    sagemaker_request,
    workflow_input,
)
from tests.fakes import FakeContext
from tunelab.application import fine_tuned_models
from tunelab.application.commands import CostEstimateIn, CreateFineTunedModelIn
from tunelab.application.workflows import (
    FinishTrainingEvent,
    PrepareDataEvent,
    StartTrainingEvent,
    TrainingOutcome,
)
from tunelab.domain.checkpoints import CheckpointInfo
from tunelab.domain.errors import ValidationFailed
from tunelab.domain.providers import TrainingRequest
from tunelab.domain.records import ModelRecord

KEPT = [CheckpointInfo(id="checkpoint-4", step=4), CheckpointInfo(id="checkpoint-8", step=8)]


def _start(ctx: FakeContext, record: ModelRecord) -> ModelRecord:
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
    return ctx.models.get(record.workspace_id, record.name)


def _trained(ctx: FakeContext, record: ModelRecord, outcome: TrainingOutcome) -> ModelRecord:
    model = _start(ctx, record)
    assert model.refs.training_job is not None
    ctx.provider(model.provider).checkpoint_lists[model.refs.training_job.job_name] = list(KEPT)
    fine_tuned_models.finish_training(
        ctx,
        FinishTrainingEvent.model_validate(
            {**workflow_input(model, "run-1"), "outcome": outcome.model_dump()}
        ),
    )
    return ctx.models.get(record.workspace_id, record.name)


def _sagemaker_parent(ctx: FakeContext) -> ModelRecord:
    record = fine_tuned_models.create(ctx, ADA, sagemaker_request(ctx, name="parent"), correlation_id="r")
    uri = "s3://provider-bucket/out/parent-job/output/model.tar.gz"
    ctx.provider_files.put(uri, b"a" * 1000, content_type="application/gzip")
    return _trained(ctx, record, TrainingOutcome(outcome="completed", artifacts_uri=uri))


def _child(
    ctx: FakeContext, parent: ModelRecord, checkpoint: str, **fields: object
) -> CreateFineTunedModelIn:
    dataset = ready_dataset(ctx, name=f"more-{len(ctx.table.datasets)}")
    body: dict[str, object] = {
        "name": "child",
        "base_fine_tuned_model": parent.name,
        "base_checkpoint": checkpoint,
        "dataset_id": dataset.dataset_id,
        "validation": {"mode": "none"},
        "acknowledge": True,
        **fields,
    }
    if parent.resources is not None:
        body["resources"] = parent.resources.model_dump(include={"instance_type", "instance_count"})
    return CreateFineTunedModelIn.model_validate(body)


def _field(error: ValidationFailed) -> str | None:
    return error.details[0].field


def test_a_checkpoint_without_the_model_it_belongs_to_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        CostEstimateIn.model_validate(
            {"base_model_id": "m", "base_checkpoint": "checkpoint-4", "dataset_id": "ds_0123456789"}
        )
    [error] = refused.value.errors()
    assert error["type"] == "base_checkpoint"
    assert error["ctx"]["field"] == "base_checkpoint"


def test_a_name_that_is_not_a_checkpoints_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        CostEstimateIn.model_validate(
            {"base_fine_tuned_model": "m", "base_checkpoint": "../model", "dataset_id": "ds_0123456789"}
        )
    assert refused.value.errors()[0]["loc"] == ("base_checkpoint",)


def test_bedrock_keeps_no_checkpoints(ctx: FakeContext) -> None:
    parent = _trained(
        ctx,
        created_model(ctx, name="parent"),
        TrainingOutcome(outcome="completed", model_ref="arn:custom/1"),
    )
    assert parent.provider == "bedrock"
    with pytest.raises(ValidationFailed, match="Bedrock keeps no checkpoints") as refused:
        fine_tuned_models.create(ctx, ADA, _child(ctx, parent, "checkpoint-4"), correlation_id="r")
    assert _field(refused.value) == "base_checkpoint"


def test_a_checkpoint_the_parents_job_did_not_keep_is_refused_listing_those_it_kept(
    ctx: FakeContext,
) -> None:
    parent = _sagemaker_parent(ctx)
    kept = "kept no checkpoint-6; it kept: checkpoint-4, checkpoint-8"
    with pytest.raises(ValidationFailed, match=kept) as e:
        fine_tuned_models.estimate(ctx, ADA, _child(ctx, parent, "checkpoint-6"))
    assert _field(e.value) == "base_checkpoint"


def test_the_checkpoint_is_in_the_quote_the_record_and_the_providers_request(ctx: FakeContext) -> None:
    parent = _sagemaker_parent(ctx)
    request = _child(ctx, parent, "checkpoint-4")
    from_checkpoint = fine_tuned_models.plan(ctx, ADA, request)
    from_final = fine_tuned_models.plan(ctx, ADA, request.model_copy(update={"base_checkpoint": None}))
    assert from_checkpoint.base_checkpoint == "checkpoint-4"
    assert from_checkpoint.fingerprint()["base_checkpoint"] == "checkpoint-4"
    assert from_checkpoint.fingerprint() != from_final.fingerprint()

    child = fine_tuned_models.create(ctx, ADA, request, correlation_id="r")
    assert child.base_checkpoint == "checkpoint-4"
    _start(ctx, child)
    calls = ctx.provider("sagemaker").called("start_training")
    started = [r for r in calls if isinstance(r, TrainingRequest)]
    assert started[-1].identity.model_name == "child"
    parent_weights = started[-1].parent
    assert parent_weights is not None
    assert (parent_weights.checkpoint, parent_weights.checkpoint_job) == ("checkpoint-4", "parent-job")
    assert parent.artifacts is not None
    assert parent_weights.artifacts_uri == parent.artifacts.uri
