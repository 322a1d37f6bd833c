"""Fine-tuned models on the fakes: create, stop, download, delete, and the fine-tuning workflow's tasks."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import timedelta

import pytest

from tests.application.conftest import (
    ADA,
    ADAPTER_BYTES,
    MERGED_COPY_BYTES,
    SAGEMAKER_MODEL,
    create_request,
    created_model,
    ready_dataset,
    sagemaker_request,
    trained_on_sagemaker,
    workflow_input,
)
from tests.fakes import FakeContext
from tunelab.application import fine_tuned_models
from tunelab.application.workflows import (
    FinishedTraining,
    FinishTrainingEvent,
    PrepareDataEvent,
    StartTrainingEvent,
    TaskError,
    TrainingOutcome,
)
from tunelab.domain.datasets import SplitPlan
from tunelab.domain.errors import (
    Forbidden,
    InUse,
    InvalidState,
    NameTaken,
    NotFound,
    ProviderPermissionDenied,
    ProviderTransientError,
    ValidationFailed,
)
from tunelab.domain.events import MODEL_DELETED, MODEL_STATUS_CHANGED
from tunelab.domain.identity import Identity
from tunelab.domain.providers import TrainingJobRef, TrainingMetrics, TrainingState
from tunelab.domain.records import ModelRecord
from tunelab.domain.status import ModelStatus as S


def _started(ctx: FakeContext, record: ModelRecord) -> ModelRecord:
    """Run PrepareData and StartTraining as the workflow would; the model with its job recorded."""
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


def _finish(ctx: FakeContext, record: ModelRecord, **fields: object) -> FinishedTraining:
    base = workflow_input(record, "run-7")
    return fine_tuned_models.finish_training(ctx, FinishTrainingEvent.model_validate({**base, **fields}))


# --- create ---------------------------------------------------------------------------------------


def test_create_stores_the_model_starts_its_workflow_and_announces_it(ctx: FakeContext) -> None:
    model = created_model(ctx)

    assert model.status == S.TRAINING
    assert ctx.models.get(
        ADA.workspace, "support-bot"
    ).training.execution_arn == ctx.workflows.fine_tuning_arn(model)
    [started] = ctx.workflows.started
    assert (started.kind, started.record.name, started.correlation_id) == (
        "fine_tuning",
        "support-bot",
        "req-create",
    )
    [event] = ctx.events.named(MODEL_STATUS_CHANGED)
    assert event.correlation_id == "req-create"
    assert event.data["status"] == "training"
    assert event.data["reason"] == "Training requested by ada@example.com."
    # The dataset is counted as in use: it cannot be deleted under the model.
    with pytest.raises(InUse):
        ctx.datasets.delete(ADA.workspace, model.dataset.id)


def test_a_model_this_deployment_cannot_train_is_refused_naming_why(ctx: FakeContext) -> None:
    dataset = ready_dataset(ctx)
    with pytest.raises(ValidationFailed) as refused:
        fine_tuned_models.create(
            ctx, ADA, create_request(dataset, base_model_id="local.tiny-llama"), correlation_id="r"
        )
    assert refused.value.details[0].field == "base_model_id"
    assert "only in the local runtime" in refused.value.message
    assert ctx.models.find(ADA.workspace, "support-bot") is None
    assert ctx.workflows.started == []


def test_a_model_its_provider_trains_without_validation_data_refuses_a_validation_set(
    ctx: FakeContext,
) -> None:
    dataset = ready_dataset(ctx)
    nova2 = "amazon.nova-2-lite-v1:0:256k"
    for validation in (
        {"mode": "split", "percent": 10},
        {"mode": "dataset", "dataset_id": dataset.dataset_id},
    ):
        with pytest.raises(ValidationFailed) as refused:
            fine_tuned_models.create(
                ctx,
                ADA,
                create_request(dataset, base_model_id=nova2, validation=validation),
                correlation_id="r",
            )
        assert refused.value.details[0].field == "validation"
        assert "Amazon Nova 2 Lite is fine-tuned without validation data" in refused.value.message
        assert '{"mode": "none"}' in refused.value.message
    assert ctx.workflows.started == []


def test_a_workflow_that_cannot_start_leaves_nothing_behind(ctx: FakeContext) -> None:
    ctx.workflows.fail_start = RuntimeError("Step Functions is down")
    dataset = ready_dataset(ctx)

    with pytest.raises(Exception, match="could not start the training workflow"):
        fine_tuned_models.create(ctx, ADA, create_request(dataset), correlation_id="r")

    assert ctx.models.find(ADA.workspace, "support-bot") is None
    ctx.datasets.delete(ADA.workspace, dataset.dataset_id)  # released: deletable again
    assert ctx.events.published == []


def test_byok_needs_a_plan_with_it_and_a_connection(ctx: FakeContext) -> None:
    dataset = ready_dataset(ctx)
    request = create_request(
        dataset,
        base_model_id=SAGEMAKER_MODEL,
        resources={"instance_type": "ml.g6e.2xlarge", "instance_count": 1, "volume_size_gb": 50},
    )
    with pytest.raises(ValidationFailed, match="connect it first with PUT /v1/providers/sagemaker"):
        fine_tuned_models.create(ctx, ADA, request, correlation_id="r")
    ctx.workspaces.set_plan(ADA.workspace, "trial", default_plan="trial")
    with pytest.raises(Forbidden, match="trial plan does not include"):
        fine_tuned_models.create(ctx, ADA, request, correlation_id="r")


def test_a_job_name_taken_in_the_providers_account_is_refused_before_anything_starts(
    ctx: FakeContext,
) -> None:
    request = sagemaker_request(ctx)
    ctx.provider("sagemaker").taken_names.add("support-bot")

    with pytest.raises(NameTaken):
        fine_tuned_models.create(ctx, ADA, request, correlation_id="r")
    assert ctx.models.find(ADA.workspace, "support-bot") is None
    assert ctx.workflows.started == []


def test_the_estimate_checks_like_create_and_stores_nothing(ctx: FakeContext) -> None:
    dataset = ready_dataset(ctx)
    estimate = fine_tuned_models.estimate(ctx, ADA, create_request(dataset)).plan.cost

    assert estimate.training.epochs == 2
    assert estimate.training.tokens_per_epoch > 0
    assert estimate.total_usd > 0
    assert ctx.models.list(ADA.workspace).items == []


# --- stop, download, delete -----------------------------------------------------------------------


def test_stop_asks_the_provider_and_announces_with_the_requests_correlation_id(ctx: FakeContext) -> None:
    model = _started(ctx, created_model(ctx))

    stopped = fine_tuned_models.stop(ctx, ADA, model.name, correlation_id="req-stop")

    assert stopped.status == S.STOPPING_TRAINING
    assert ctx.provider("bedrock").called("stop_training") == [model.refs.training_job]
    event = ctx.events.named(MODEL_STATUS_CHANGED)[-1]
    assert (event.data["status"], event.correlation_id) == ("stopping_training", "req-stop")
    with pytest.raises(InvalidState, match="Stopping training"):
        fine_tuned_models.stop(ctx, ADA, model.name, correlation_id="again")


def test_a_stop_that_lands_at_once_is_the_users_stop_not_one_made_outside_tunelab(ctx: FakeContext) -> None:
    model = _started(ctx, created_model(ctx))
    ended: list[str | None] = []

    def lands_at_once(ref: TrainingJobRef) -> None:
        # The provider's news of the end is read and applied before the stop request returns: its
        # reason comes from the model's status at that moment.
        now = ctx.models.get(ADA.workspace, model.name)
        outcome = fine_tuned_models.training_outcome(now, TrainingState(job_id=ref.job_id, status="stopped"))
        assert outcome.reason == "The training job was stopped as requested."
        event = {**workflow_input(model, "run"), "outcome": outcome.model_dump()}
        ended.append(fine_tuned_models.finish_training(ctx, FinishTrainingEvent.model_validate(event)).status)

    ctx.provider("bedrock").on_stop = lands_at_once

    answer = fine_tuned_models.stop(ctx, ADA, model.name, correlation_id="req-stop")

    assert answer.status == S.STOPPING_TRAINING  # what the request did; no 409 for a stop that landed
    assert ended == ["training_stopped"]  # the model was stopping when the news came
    assert ctx.models.get(ADA.workspace, model.name).status == S.TRAINING_STOPPED


def test_a_stop_the_provider_refuses_puts_the_model_back_to_training_and_says_why(ctx: FakeContext) -> None:
    model = _started(ctx, created_model(ctx))

    def refuses(ref: TrainingJobRef) -> None:
        raise ProviderPermissionDenied("The role may not call bedrock:StopModelCustomizationJob.")

    ctx.provider("bedrock").on_stop = refuses

    with pytest.raises(ProviderPermissionDenied):
        fine_tuned_models.stop(ctx, ADA, model.name, correlation_id="req-stop")

    assert ctx.models.get(ADA.workspace, model.name).status == S.TRAINING
    history = [
        e.message for e in ctx.models.list_events(ADA.workspace, model.name, limit=100, next_token=None).items
    ]
    assert history[-1] == (
        "The stop could not be issued: The role may not call bedrock:StopModelCustomizationJob. "
        "The model is Training again."
    )
    assert [e.data["status"] for e in ctx.events.named(MODEL_STATUS_CHANGED)][-2:] == [
        "stopping_training",
        "training",
    ]
    # Once the provider accepts, the model stops as usual.
    ctx.provider("bedrock").on_stop = None
    assert fine_tuned_models.stop(ctx, ADA, model.name, correlation_id="again").status == S.STOPPING_TRAINING


def test_a_refused_stop_whose_way_back_cannot_be_written_is_still_the_providers_error(
    ctx: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _started(ctx, created_model(ctx))

    def refuses(ref: TrainingJobRef) -> None:
        raise ProviderPermissionDenied("The role may not call bedrock:StopModelCustomizationJob.")

    def store_down(*args: object, **kwargs: object) -> None:
        raise ProviderTransientError("The table is throttled.")

    ctx.provider("bedrock").on_stop = refuses
    monkeypatch.setattr(ctx.models, "try_transition", store_down)

    # The user hears why the stop failed, not that a write after it did.
    with pytest.raises(ProviderPermissionDenied, match="StopModelCustomizationJob"):
        fine_tuned_models.stop(ctx, ADA, model.name, correlation_id="req-stop")
    # Left stopping: the reconciler issues the stop again (never a model training with no way back).
    assert ctx.models.get(ADA.workspace, model.name).status == S.STOPPING_TRAINING


def test_a_stop_before_the_job_exists_is_issued_when_it_starts(ctx: FakeContext) -> None:
    model = created_model(ctx)

    stopped = fine_tuned_models.stop(ctx, ADA, model.name, correlation_id="req-stop")

    assert stopped.status == S.STOPPING_TRAINING
    assert ctx.provider("bedrock").called("stop_training") == []
    # PrepareData then refuses to train a model being stopped (the workflow ends it `training_stopped`).
    with pytest.raises(Exception, match="stopped before the job started"):
        _started(ctx, model)


def test_a_bedrock_model_cannot_be_downloaded(ctx: FakeContext) -> None:
    model = created_model(ctx)
    with pytest.raises(ValidationFailed, match="keeps the weights"):
        fine_tuned_models.download(ctx, ADA, model.name)


def test_an_unmerged_lora_model_keeps_its_merged_copy_and_downloads_it_or_its_adapter(
    ctx: FakeContext,
) -> None:
    # Given a LoRA job that was not merged: its model.tar.gz holds the adapter, its output archive the copy
    model = trained_on_sagemaker(
        ctx, "lora-bot", optional={"use_lora": True, "merge_adapters": False}, merged_copy=True
    )

    # Then the record says where the merged copy is, and both archives are billed as storage
    assert model.status == S.NOT_DEPLOYED
    assert model.artifacts is not None
    copy = model.artifacts.merged_archive
    assert copy is not None
    assert copy.uri == "s3://provider-bucket/out/lora-bot-job/output/output.tar.gz"
    assert (copy.path, copy.size_bytes) == ("merged/", MERGED_COPY_BYTES)
    both = (ADAPTER_BYTES + MERGED_COPY_BYTES) / 1e9 * ctx.catalog.s3_storage_per_gb_month_usd
    assert model.storage_per_month_usd == round(both, 2)

    # When it is downloaded without a variant, it is the merged copy; with variant=adapter, the adapter
    merged = fine_tuned_models.download(ctx, ADA, model.name)
    adapter = fine_tuned_models.download(ctx, ADA, model.name, "adapter")

    assert (
        merged.link.url == "https://downloads.example/provider-bucket/out/lora-bot-job/output/output.tar.gz"
    )
    assert (merged.archive.variant, merged.archive.model_path) == ("merged", "merged/")
    assert merged.archive.files == ["merged/config.json", "merged/model.safetensors", "metrics.json"]
    assert "merged/" in merged.archive.contents
    assert (
        adapter.link.url == "https://downloads.example/provider-bucket/out/lora-bot-job/output/model.tar.gz"
    )
    assert (adapter.archive.variant, adapter.archive.model_path) == ("adapter", "adapter/")
    assert adapter.link.size_bytes == ADAPTER_BYTES


def test_a_full_fine_tune_downloads_its_archive_and_has_no_adapter(ctx: FakeContext) -> None:
    model = trained_on_sagemaker(ctx, "full-bot", optional=None)

    download = fine_tuned_models.download(ctx, ADA, model.name)
    with pytest.raises(ValidationFailed) as refused:
        fine_tuned_models.download(ctx, ADA, model.name, "adapter")

    assert download.link.url.endswith("/full-bot-job/output/model.tar.gz")
    assert (download.archive.variant, download.archive.model_path) == ("merged", "")
    assert refused.value.details[0].field == "variant"
    assert "fully fine-tuned" in refused.value.message


def test_an_unmerged_lora_model_from_before_merged_copies_downloads_only_its_adapter(
    ctx: FakeContext,
) -> None:
    model = trained_on_sagemaker(
        ctx, "old-lora", optional={"use_lora": True, "merge_adapters": False}, merged_copy=False
    )
    assert model.artifacts is not None
    assert model.artifacts.merged_archive is None

    with pytest.raises(InvalidState) as refused:
        fine_tuned_models.download(ctx, ADA, model.name, "merged")
    adapter = fine_tuned_models.download(ctx, ADA, model.name, "adapter")
    # A download that names no variant gets what such a model has, as it did before merged copies.
    plain = fine_tuned_models.download(ctx, ADA, model.name)

    assert "trained before tunelab kept a merged copy" in refused.value.message
    assert "variant=adapter" in refused.value.message
    assert adapter.link.url.endswith("/old-lora-job/output/model.tar.gz")
    assert (plain.archive.variant, plain.link.url) == ("adapter", adapter.link.url)


def test_a_lora_model_merged_into_its_weights_downloads_them_or_its_adapter(ctx: FakeContext) -> None:
    model = trained_on_sagemaker(
        ctx, "merged-bot", optional={"use_lora": True, "merge_adapters": True}, merged_copy=False
    )

    download = fine_tuned_models.download(ctx, ADA, model.name)
    adapter = fine_tuned_models.download(ctx, ADA, model.name, "adapter")

    # One archive holds both: the merged model at its root, the adapter in adapter/
    assert download.link.url == adapter.link.url
    assert download.link.url.endswith("/merged-bot-job/output/model.tar.gz")
    assert (download.archive.model_path, adapter.archive.model_path) == ("", "adapter/")


def test_delete_removes_what_the_provider_holds_the_training_data_and_the_record(ctx: FakeContext) -> None:
    model = _started(ctx, created_model(ctx))
    _finish(ctx, model, outcome=TrainingOutcome(outcome="failed", reason="Out of capacity.").model_dump())
    provider = ctx.provider("bedrock")
    folder = provider.training_data_folder(model.identity, model.uid, ctx.catalog.model(model.base_model_id))
    assert ctx.provider_files.under(folder)

    fine_tuned_models.delete(ctx, ADA, model.name, correlation_id="req-delete")

    assert ctx.models.find(ADA.workspace, model.name) is None
    assert [m.identity for m in provider.called("delete_model")] == [model.identity]
    assert ctx.provider_files.under(folder) == []
    [deleted] = ctx.events.named(MODEL_DELETED)
    assert (deleted.correlation_id, deleted.data["deleted_by"]) == ("req-delete", "ada@example.com")


def test_a_model_another_one_continues_from_cannot_be_deleted_while_it_trains(ctx: FakeContext) -> None:
    parent = _started(ctx, created_model(ctx))
    _finish(ctx, parent, outcome=TrainingOutcome(outcome="completed", model_ref="arn:custom/1").model_dump())
    dataset = ready_dataset(ctx, name="more")
    request = create_request(
        dataset, name="support-bot-2", base_model_id=None, base_fine_tuned_model=parent.name
    )
    fine_tuned_models.create(ctx, ADA, request, correlation_id="r")

    with pytest.raises(InUse, match="'support-bot-2' is training from it"):
        fine_tuned_models.delete(ctx, ADA, parent.name, correlation_id="req-delete")


def test_another_workspace_sees_no_model(ctx: FakeContext) -> None:
    model = created_model(ctx)
    stranger = Identity(sub="s", email="eve@example.com", workspace="ws-globex")
    with pytest.raises(NotFound):
        fine_tuned_models.get(ctx, stranger, model.name)
    with pytest.raises(NotFound):
        fine_tuned_models.stop(ctx, stranger, model.name, correlation_id="r")
    with pytest.raises(NotFound):
        fine_tuned_models.delete(ctx, stranger, model.name, correlation_id="r")
    assert ctx.models.get(ADA.workspace, model.name).status == S.TRAINING


# --- the fine-tuning workflow ---------------------------------------------------------------------


def test_prepare_data_writes_the_providers_jsonl_split_where_its_job_reads(ctx: FakeContext) -> None:
    model = created_model(ctx)
    base = workflow_input(model, "c")

    prepared = fine_tuned_models.prepare_data(ctx, PrepareDataEvent.model_validate(base))

    folder = ctx.provider("bedrock").training_data_folder(
        model.identity, model.uid, ctx.catalog.model(model.base_model_id)
    )
    assert prepared.training_data_uri == folder + "train.jsonl"
    train = ctx.provider_files.objects[prepared.training_data_uri].decode().splitlines()
    assert prepared.training_rows == len(train)
    assert prepared.training_rows + prepared.validation_rows == model.dataset.rows == 200
    # 10 % held back, row by row (the same rows every time): the planned count, within sampling noise
    assert prepared.validation_rows == SplitPlan(200, 10).validation_rows()
    # Nova's conversation schema, one row a line
    assert json.loads(train[0])["schemaVersion"] == "bedrock-conversation-2024"
    assert prepared.training_timeout_seconds == ctx.provider("bedrock").training_timeout_s
    assert ctx.models.get(ADA.workspace, model.name).training.phase == "Preparing data"


def test_start_training_keeps_the_token_and_the_job(ctx: FakeContext) -> None:
    model = _started(ctx, created_model(ctx))

    assert model.refs.training_job is not None
    assert model.training.job_id == model.refs.training_job.job_id
    assert ctx.task_tokens.get(ADA.workspace, model.name, "training") == "token-1"
    [request] = ctx.provider("bedrock").called("start_training")
    assert request.tags == {"tunelab-workspace": ADA.workspace}
    assert request.hyperparameters["epochs"] == "2"


def test_a_completed_job_reaches_the_workflow_and_ends_not_deployed(ctx: FakeContext) -> None:
    model = _started(ctx, created_model(ctx))
    ref = model.refs.training_job
    assert ref is not None
    done = TrainingState(
        job_id=ref.job_id,
        status="completed",
        model_ref="arn:aws:bedrock:us-east-1:123456789012:custom-model/x",
        artifacts_uri="s3://artifacts/out/",
        metrics=TrainingMetrics(train_loss=0.3, eval_loss=0.4, step=30, epoch=2.0),
    )

    applied = fine_tuned_models.apply_training_state(ctx, model, done, at=ctx.now())
    again = fine_tuned_models.apply_training_state(ctx, model, done, at=ctx.now())
    [(token, outcome)] = ctx.workflows.outcomes
    finished = _finish(ctx, model, outcome=outcome.model_dump())

    assert applied.applied
    assert not again.applied
    assert token == "token-1"
    assert finished.status == "not_deployed"
    assert finished.notification == "training_completed"
    stored = ctx.models.get(ADA.workspace, model.name)
    assert stored.refs.model_ref == done.model_ref
    assert stored.training.metrics is not None
    assert stored.training.metrics.eval_loss == 0.4
    assert ctx.task_tokens.get(ADA.workspace, model.name, "training") is None
    event = ctx.events.named(MODEL_STATUS_CHANGED)[-1]
    assert (event.data["status"], event.correlation_id) == ("not_deployed", "run-7")


def test_a_byok_archive_is_billed_as_storage_of_its_size(ctx: FakeContext) -> None:
    model = _started(ctx, fine_tuned_models.create(ctx, ADA, sagemaker_request(ctx), correlation_id="r"))
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        data = b"x" * 2_000_000
        info = tarfile.TarInfo("model.safetensors")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    uri = "s3://provider-bucket/out/model.tar.gz"
    ctx.provider_files.put(uri, archive.getvalue() * 1, content_type="application/gzip")

    _finish(ctx, model, outcome=TrainingOutcome(outcome="completed", artifacts_uri=uri).model_dump())

    stored = ctx.models.get(ADA.workspace, model.name)
    size = len(ctx.provider_files.objects[uri])
    assert stored.artifacts is not None
    assert stored.artifacts.size_bytes == size
    assert stored.storage_per_month_usd == round(size / 1e9 * ctx.catalog.s3_storage_per_gb_month_usd, 2)


def test_a_job_that_failed_ends_training_failed_with_the_providers_reason(ctx: FakeContext) -> None:
    model = _started(ctx, created_model(ctx))

    finished = _finish(
        ctx, model, outcome=TrainingOutcome(outcome="failed", reason="Out of capacity.").model_dump()
    )

    stored = ctx.models.get(ADA.workspace, model.name)
    assert (finished.status, finished.notification) == ("training_failed", "training_failed")
    assert stored.training.failure_reason == "Out of capacity."
    assert stored.training.ended_at is not None


def test_a_timeout_stops_the_job_and_says_how_long_was_waited(ctx: FakeContext) -> None:
    model = _started(ctx, created_model(ctx))

    _finish(ctx, model, error=TaskError(Error="States.Timeout").model_dump(), training_timeout_seconds=7200)

    stored = ctx.models.get(ADA.workspace, model.name)
    assert stored.status == S.TRAINING_FAILED
    assert "did not finish within 2 hours" in (stored.training.failure_reason or "")
    assert ctx.provider("bedrock").called("stop_training") == [model.refs.training_job]


def test_news_while_training_is_recorded_once_and_late_news_is_skipped(ctx: FakeContext) -> None:
    model = _started(ctx, created_model(ctx))
    ref = model.refs.training_job
    assert ref is not None
    at = ctx.now() + timedelta(minutes=5)
    running = TrainingState(
        job_id=ref.job_id,
        status="in_progress",
        phase="Training 10/40 steps",
        metrics=TrainingMetrics(train_loss=1.0, step=10),
    )

    first = fine_tuned_models.apply_training_state(ctx, model, running, at=at)
    model = ctx.models.get(ADA.workspace, model.name)
    older = fine_tuned_models.apply_training_state(
        ctx, model, running.model_copy(update={"phase": "Uploading"}), at=at - timedelta(minutes=1)
    )

    assert first.applied
    assert not older.applied
    history = ctx.models.list_events(ADA.workspace, model.name).items
    assert [(e.type, e.message) for e in history][-2:] == [
        ("message", "Training phase: Training."),
        ("metrics", None),
    ]
    assert ctx.workflows.heartbeats == ["token-1"]  # late news is not a sign of life either


def test_a_timed_out_training_ends_failed_even_when_its_provider_cannot_be_made(ctx: FakeContext) -> None:
    # The BYOK connection was deleted while the job ran: the final status is still written.
    model = _started(ctx, created_model(ctx))
    ctx.providers.unavailable["bedrock"] = ValidationFailed.of(
        "provider", "This workspace has no connection."
    )

    finished = _finish(ctx, model, error={"Error": "States.Timeout", "Cause": ""})

    assert finished.status == S.TRAINING_FAILED
    stored = ctx.models.get(ADA.workspace, model.name)
    assert stored.status == S.TRAINING_FAILED
    assert stored.training.failure_reason == (
        "The training job did not finish within its time limit, tunelab's limit for it, so it was stopped."
    )
