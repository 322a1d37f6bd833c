"""Resuming a failed or stopped training from its last checkpoint, on in-memory fakes of every port:
the price of the remaining steps, the new attempt (execution and job), and every refusal."""

from __future__ import annotations

import pytest

from tests.application.conftest import ADA, created_model, sagemaker_request, workflow_input
from tests.fakes import FakeContext
from tunelab.application import fine_tuned_models
from tunelab.application.commands import ResumeIn
from tunelab.application.fine_tuned_models import ResumeEstimate
from tunelab.application.workflows import (
    FinishTrainingEvent,
    PrepareDataEvent,
    StartTrainingEvent,
    TrainingOutcome,
)
from tunelab.domain.errors import InvalidState, TunelabError, ValidationFailed
from tunelab.domain.events import MODEL_STATUS_CHANGED
from tunelab.domain.notifications import compose
from tunelab.domain.providers import ResumePoint
from tunelab.domain.records import ModelRecord
from tunelab.domain.status import ModelStatus as S

ACK = ResumeIn(acknowledge=True)


def _run(ctx: FakeContext, record: ModelRecord, token: str = "token-1") -> ModelRecord:
    base = workflow_input(record, "req")
    prepared = fine_tuned_models.prepare_data(ctx, PrepareDataEvent.model_validate(base))
    fine_tuned_models.start_training(
        ctx,
        StartTrainingEvent.model_validate(
            {
                **base,
                "task_token": token,
                "execution_arn": record.training.execution_arn,
                "prepared": prepared.model_dump(),
            }
        ),
    )
    return ctx.models.get(record.workspace_id, record.name)


def _end(
    ctx: FakeContext,
    record: ModelRecord,
    outcome: str,
    artifacts_uri: str | None = None,
    billable_seconds: int | None = None,
) -> ModelRecord:
    ended = TrainingOutcome(
        outcome=outcome,  # type: ignore[arg-type]
        artifacts_uri=artifacts_uri,
        billable_seconds=billable_seconds,
    )
    event = {**workflow_input(record, "run"), "outcome": ended.model_dump()}
    fine_tuned_models.finish_training(ctx, FinishTrainingEvent.model_validate(event))
    return ctx.models.get(record.workspace_id, record.name)


def _stopped_on_sagemaker(
    ctx: FakeContext, *, checkpoint: ResumePoint | None, billable_seconds: int | None = None
) -> ModelRecord:
    model = fine_tuned_models.create(ctx, ADA, sagemaker_request(ctx), correlation_id="r")
    model = _end(ctx, _run(ctx, model), "stopped", billable_seconds=billable_seconds)
    assert model.status == S.TRAINING_STOPPED
    if checkpoint is not None:
        ctx.provider("sagemaker").resume_points[model.name] = checkpoint
    return model


def test_not_acknowledged_it_prices_the_remaining_steps_and_starts_nothing(ctx: FakeContext) -> None:
    model = _stopped_on_sagemaker(
        ctx, checkpoint=ResumePoint(checkpoint="checkpoint-30", step=30, total_steps=120)
    )
    predicted = model.predicted_cost
    assert predicted is not None

    answer = fine_tuned_models.resume(ctx, ADA, model.name, ResumeIn(), correlation_id="q")

    assert isinstance(answer, ResumeEstimate)
    assert answer.checkpoint.checkpoint == "checkpoint-30"
    # 90 of 120 steps are left: 75% of the training prediction, plus the same month of storage.
    assert answer.cost.training.cost_usd == pytest.approx(predicted.training.cost_usd * 0.75, abs=0.01)
    assert answer.cost.total_usd == pytest.approx(
        answer.cost.training.cost_usd + predicted.storage_per_month_usd
    )
    assert "remaining 90 of 120 steps" in answer.cost.notes[0]
    assert ctx.models.get(ADA.workspace, model.name).status == S.TRAINING_STOPPED
    assert len(ctx.workflows.started) == 1  # only the first run's


def test_acknowledged_it_trains_again_as_a_new_attempt_with_its_own_execution_and_job(
    ctx: FakeContext,
) -> None:
    model = _stopped_on_sagemaker(
        ctx, checkpoint=ResumePoint(checkpoint="checkpoint-30", step=30, total_steps=120)
    )
    first_arn, first_job = model.training.execution_arn, model.refs.training_job
    estimate = fine_tuned_models.resume(ctx, ADA, model.name, ResumeIn(), correlation_id="q")
    assert isinstance(estimate, ResumeEstimate)

    resumed = fine_tuned_models.resume(
        ctx,
        ADA,
        model.name,
        ResumeIn(acknowledge=True, quote_id=estimate.quote.quote_id),
        correlation_id="req-resume",
    )

    assert isinstance(resumed, ModelRecord)
    assert (resumed.status, resumed.uid, resumed.training.attempt) == (S.TRAINING, model.uid, 1)
    assert resumed.refs.training_job is None  # the old job's events no longer find the model
    assert resumed.training.execution_arn != first_arn
    assert resumed.training.execution_arn is not None
    assert resumed.training.execution_arn.endswith("-r1")
    assert ctx.workflows.started[-1].record.training.attempt == 1
    event = ctx.events.named(MODEL_STATUS_CHANGED)[-1]
    assert (event.data["status"], event.correlation_id) == ("training", "req-resume")
    history = [
        e.message for e in ctx.models.list_events(ADA.workspace, model.name, limit=100, next_token=None).items
    ]
    assert "Training resumed from checkpoint-30 by ada@example.com." in history
    assert history[0] is not None
    assert history[0].startswith("Training requested by")

    # The workflow's StartTraining asks the provider for a job of the new attempt, under a new name.
    ran = _run(ctx, resumed, token="token-2")
    request = ctx.provider("sagemaker").called("start_training")[-1]
    assert request.attempt == 1
    assert ran.refs.training_job is not None
    assert first_job is not None
    assert ran.refs.training_job.job_name != first_job.job_name
    folder = f"s3://provider-bucket/out/{ran.refs.training_job.job_name}/output/"
    ctx.provider_files.put(folder + "model.tar.gz", b"a" * 1000, content_type="application/gzip")
    done = _end(ctx, ran, "completed", artifacts_uri=folder + "model.tar.gz")
    assert done.status == S.NOT_DEPLOYED, done.training.failure_reason


def test_a_quote_of_another_price_or_a_lower_maximum_is_refused(ctx: FakeContext) -> None:
    model = _stopped_on_sagemaker(
        ctx, checkpoint=ResumePoint(checkpoint="checkpoint-30", step=30, total_steps=120)
    )
    estimate = fine_tuned_models.resume(ctx, ADA, model.name, ResumeIn(), correlation_id="q")
    assert isinstance(estimate, ResumeEstimate)
    ctx.provider("sagemaker").resume_points[model.name] = ResumePoint(
        checkpoint="checkpoint-60", step=60, total_steps=120
    )

    with pytest.raises(ValidationFailed):
        fine_tuned_models.resume(
            ctx,
            ADA,
            model.name,
            ResumeIn(acknowledge=True, quote_id=estimate.quote.quote_id),
            correlation_id="r",
        )
    with pytest.raises(ValidationFailed, match="above your maximum"):
        fine_tuned_models.resume(
            ctx, ADA, model.name, ResumeIn(acknowledge=True, max_total_usd=0.001), correlation_id="r"
        )
    assert ctx.models.get(ADA.workspace, model.name).status == S.TRAINING_STOPPED


def test_no_checkpoint_is_400_and_bedrock_cannot_resume(ctx: FakeContext) -> None:
    model = _stopped_on_sagemaker(ctx, checkpoint=None)
    with pytest.raises(ValidationFailed, match="no checkpoint to resume from"):
        fine_tuned_models.resume(ctx, ADA, model.name, ACK, correlation_id="r")

    bedrock = _end(ctx, created_model(ctx, name="nova-bot"), "failed")
    assert bedrock.status == S.TRAINING_FAILED
    with pytest.raises(ValidationFailed, match="Bedrock cannot resume a job; clone it instead"):
        fine_tuned_models.resume(ctx, ADA, bedrock.name, ACK, correlation_id="r")


def test_other_statuses_are_409(ctx: FakeContext) -> None:
    model = created_model(ctx)
    with pytest.raises(InvalidState, match="it is already training"):
        fine_tuned_models.resume(ctx, ADA, model.name, ACK, correlation_id="r")


def test_a_workflow_that_cannot_start_puts_the_model_back_as_it_was(ctx: FakeContext) -> None:
    model = _stopped_on_sagemaker(
        ctx, checkpoint=ResumePoint(checkpoint="checkpoint-30", step=30, total_steps=None)
    )
    ctx.workflows.fail_start = RuntimeError("Step Functions is down")

    with pytest.raises(TunelabError, match="so it was not resumed"):
        fine_tuned_models.resume(ctx, ADA, model.name, ACK, correlation_id="r")

    stored = ctx.models.get(ADA.workspace, model.name)
    assert stored.status == S.TRAINING_STOPPED
    assert (stored.training.attempt, stored.refs.training_job) == (0, model.refs.training_job)


def _hourly(ctx: FakeContext, model: ModelRecord) -> float:
    assert model.resources is not None
    instance = ctx.catalog.find_instance(model.resources.instance_type)
    assert instance is not None
    return instance.price_per_hour_usd * model.resources.instance_count


def _resume_and_complete(ctx: FakeContext, model: ModelRecord, billable_seconds: int | None) -> ModelRecord:
    resumed = fine_tuned_models.resume(ctx, ADA, model.name, ACK, correlation_id="req-resume")
    assert isinstance(resumed, ModelRecord)
    ran = _run(ctx, resumed, token="token-2")
    assert ran.refs.training_job is not None
    archive = f"s3://provider-bucket/out/{ran.refs.training_job.job_name}/output/model.tar.gz"
    ctx.provider_files.put(archive, b"a" * 1000, content_type="application/gzip")
    return _end(ctx, ran, "completed", artifacts_uri=archive, billable_seconds=billable_seconds)


def test_a_stopped_job_costs_what_it_ran_and_its_email_says_so_and_how_to_go_on(ctx: FakeContext) -> None:
    model = _stopped_on_sagemaker(
        ctx,
        checkpoint=ResumePoint(checkpoint="checkpoint-30", step=30, total_steps=120),
        billable_seconds=1800,
    )

    actual = model.training.actual_cost
    assert actual is not None
    assert (actual.basis, actual.billable_seconds, actual.estimated) == ("billable_seconds", 1800, False)
    assert actual.cost_usd == pytest.approx(0.5 * _hourly(ctx, model), abs=0.01)
    # The prediction is for the whole run: a part of one is not compared with it.
    assert actual.actual_vs_predicted is None
    assert actual.earlier_attempts_usd is None
    email = compose("training_stopped", model).text
    assert f"Training cost: ${actual.cost_usd:,.2f}" in email
    assert "for the whole run, the job: 1,800 billable seconds)" in email
    assert f"/v1/fine-tuned-models/{model.name}/resume" in email
    assert "Check the dataset" not in email  # a stop is not the data's fault


def test_a_resumed_model_costs_every_attempt_together(ctx: FakeContext) -> None:
    model = _stopped_on_sagemaker(
        ctx,
        checkpoint=ResumePoint(checkpoint="checkpoint-30", step=30, total_steps=120),
        billable_seconds=1800,
    )
    first = model.training.actual_cost
    assert first is not None

    done = _resume_and_complete(ctx, model, billable_seconds=5400)

    assert done.status == S.NOT_DEPLOYED, done.training.failure_reason
    actual = done.training.actual_cost
    assert actual is not None
    hourly = _hourly(ctx, done)
    # 30 minutes stopped, then 90 minutes to the end: two hours in all, not the last attempt's 1.5.
    assert actual.cost_usd == pytest.approx(2 * hourly, abs=0.02)
    assert actual.earlier_attempts_usd == first.cost_usd
    assert actual.billable_seconds == 5400  # the last job's own measure
    assert done.predicted_cost is not None
    assert actual.actual_vs_predicted == round(actual.cost_usd / done.predicted_cost.training.cost_usd, 2)
    assert "for the 1 earlier attempt before the resume" in actual.note
    email = compose("training_completed", done).text
    assert f"Training cost: ${actual.cost_usd:,.2f}" in email
    assert (
        f"${first.cost_usd:,.2f} of it for the attempts before the resume, this job: 5,400 billable seconds)"
        in email
    )


def test_an_attempt_the_provider_measured_nothing_of_is_said_not_counted(ctx: FakeContext) -> None:
    model = _stopped_on_sagemaker(
        ctx, checkpoint=ResumePoint(checkpoint="checkpoint-30", step=30, total_steps=120)
    )
    assert model.training.actual_cost is None  # no billable time in the news of its end

    done = _resume_and_complete(ctx, model, billable_seconds=3600)

    actual = done.training.actual_cost
    assert actual is not None
    assert actual.cost_usd == pytest.approx(_hourly(ctx, done), abs=0.01)
    # Nothing measured is not "$0.00 of it": the figure is this job's, and the note says why.
    assert actual.earlier_attempts_usd is None
    assert "The 1 earlier attempt was not measured by the provider, so it is not included" in actual.note
    email = compose("training_completed", done).text
    assert "before the resume" not in email


def test_every_attempt_of_a_model_resumed_three_times_is_counted_once(ctx: FakeContext) -> None:
    point = ResumePoint(checkpoint="checkpoint-30", step=30, total_steps=120)
    model = _stopped_on_sagemaker(ctx, checkpoint=point, billable_seconds=1800)
    hourly = _hourly(ctx, model)
    # Attempt 2 stops after 30 measured minutes; attempt 3 fails with nothing measured.
    for token, outcome, seconds in (("token-2", "stopped", 1800), ("token-3", "failed", None)):
        resumed = fine_tuned_models.resume(ctx, ADA, model.name, ACK, correlation_id=f"req-{token}")
        assert isinstance(resumed, ModelRecord)
        model = _end(ctx, _run(ctx, resumed, token=token), outcome, billable_seconds=seconds)
        ctx.provider("sagemaker").resume_points[model.name] = point
    second = model.training.actual_cost
    assert model.status == S.TRAINING_FAILED
    assert second is None  # the failed attempt measured nothing: no figure, not the prediction

    done = _resume_and_complete(ctx, model, billable_seconds=3600)

    actual = done.training.actual_cost
    assert actual is not None
    assert done.training.attempt == 3
    # 0.5 h + 0.5 h measured before, 1 h in the last job: 2 h, each measured attempt once.
    assert actual.cost_usd == pytest.approx(2 * hourly, abs=0.03)
    assert actual.earlier_attempts_usd == pytest.approx(hourly, abs=0.02)
    assert "for the 3 earlier attempts (1 of them not measured by the provider" in actual.note
