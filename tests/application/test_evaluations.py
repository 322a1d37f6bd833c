"""The evaluation after training on the fakes: a completed job's report is kept on the record as a
summary, served whole by `GET .../evaluation`, stated in the training email and priced in the estimate;
where there is none, every answer says why."""

from __future__ import annotations

import re

import pytest

from tests.application.conftest import (
    ADA,
    create_request,
    created_model,
    ready_dataset,
    sagemaker_request,
    workflow_input,
)
from tests.fakes import FakeContext
from tunelab.application import evaluations, fine_tuned_models
from tunelab.application.commands import CloneIn, CostEstimateIn
from tunelab.application.workflows import (
    FinishTrainingEvent,
    PrepareDataEvent,
    StartTrainingEvent,
    TrainingOutcome,
)
from tunelab.domain.errors import NotFound
from tunelab.domain.evaluation import (
    EvaluationReport,
    EvaluationSample,
    EvaluationScores,
    EvaluationSkipped,
    headline,
    percent,
)
from tunelab.domain.hyperparameters import ResolvedEvaluationConfig
from tunelab.domain.notifications import compose
from tunelab.domain.records import ModelRecord
from tunelab.domain.status import ModelStatus as S

REPORT = EvaluationReport(
    rows=40,
    validation_rows=40,
    max_new_tokens=24,
    base=EvaluationScores(exact_match=0.125, token_f1=0.31, format_match=0.2),
    fine_tuned=EvaluationScores(exact_match=0.825, token_f1=0.93, format_match=1.0),
    samples=[
        EvaluationSample(
            prompt="Ticket: my invoice is wrong",
            expected="category=billing; priority=medium",
            base="This ticket is about billing.",
            fine_tuned="category=billing; priority=medium",
        )
    ],
)


def _started(ctx: FakeContext, model: ModelRecord) -> str:
    """Run the workflow's first two steps: the model's job exists; returns its name."""
    base = workflow_input(model, "run-1")
    prepared = fine_tuned_models.prepare_data(ctx, PrepareDataEvent.model_validate(base))
    ref = fine_tuned_models.start_training(
        ctx,
        StartTrainingEvent.model_validate(
            {**base, "task_token": "t", "execution_arn": "arn:exec", "prepared": prepared.model_dump()}
        ),
    )
    return ref.job_name


def _finish(ctx: FakeContext, model: ModelRecord, outcome: TrainingOutcome) -> ModelRecord:
    fine_tuned_models.finish_training(
        ctx,
        FinishTrainingEvent.model_validate(
            {**workflow_input(model, "run-1"), "outcome": outcome.model_dump()}
        ),
    )
    return ctx.models.get(ADA.workspace, model.name)


def _sagemaker_model(ctx: FakeContext, report: EvaluationReport | EvaluationSkipped | None) -> ModelRecord:
    model = fine_tuned_models.create(ctx, ADA, sagemaker_request(ctx, name="sm-eval"), correlation_id="r")
    job = _started(ctx, model)
    if report is not None:
        ctx.provider("sagemaker").evaluations[job] = report
    uri = f"s3://provider-bucket/out/{job}/output/model.tar.gz"
    ctx.provider_files.put(uri, b"a" * 100, content_type="application/gzip")
    return _finish(ctx, model, TrainingOutcome(outcome="completed", artifacts_uri=uri, billable_seconds=600))


def test_a_completed_job_keeps_its_scores_and_the_report_is_served_whole(ctx: FakeContext) -> None:
    done = _sagemaker_model(ctx, REPORT)

    assert done.status == S.NOT_DEPLOYED
    assert done.training.evaluation == REPORT.summary()
    assert done.training.evaluation_note is None
    report = evaluations.get_evaluation(ctx, ADA, done.name)
    assert report.samples[0].fine_tuned == "category=billing; priority=medium"
    assert report.fine_tuned.exact_match == 0.825


def test_the_training_email_states_the_headline(ctx: FakeContext) -> None:
    done = _sagemaker_model(ctx, REPORT)

    text = compose("training_completed", done).text
    assert (
        "exact match 12.5 % → 82.5 % on 40 validation rows (token F1 0.31 → 0.93, format 20 % → 100 %)"
        in text
    )
    assert f"tunelab models evaluation {done.name}" in text
    assert headline(REPORT.summary()).startswith("exact match 12.5 % → 82.5 %")
    # Never rounded to all or nothing when it is not.
    assert percent(0.9999) == "99.9 %"
    assert percent(0.0001) == "0.1 %"
    assert (percent(1.0), percent(0.0)) == ("100 %", "0 %")


def test_a_skipped_evaluation_says_why_on_the_record_in_the_email_and_in_the_404(ctx: FakeContext) -> None:
    done = _sagemaker_model(ctx, EvaluationSkipped(skipped="turned off (evaluation_config.enabled false)"))

    assert done.training.evaluation is None
    assert done.training.evaluation_note == "turned off (evaluation_config.enabled false)"
    assert (
        "Not evaluated: turned off (evaluation_config.enabled false)."
        in compose("training_completed", done).text
    )
    with pytest.raises(NotFound, match="was not evaluated: turned off"):
        evaluations.get_evaluation(ctx, ADA, done.name)


def test_a_job_that_wrote_no_report_says_so(ctx: FakeContext) -> None:
    done = _sagemaker_model(ctx, None)

    assert done.training.evaluation_note == "The training job wrote no evaluation report."
    with pytest.raises(NotFound, match="wrote no evaluation report"):
        evaluations.get_evaluation(ctx, ADA, done.name)


def test_while_training_and_after_a_failure_the_404_says_why(ctx: FakeContext) -> None:
    model = created_model(ctx)
    with pytest.raises(NotFound, match="still training"):
        evaluations.get_evaluation(ctx, ADA, model.name)

    failed = _finish(ctx, model, TrainingOutcome(outcome="failed", reason="out of memory"))
    assert failed.status == S.TRAINING_FAILED
    with pytest.raises(NotFound, match="training did not complete"):
        evaluations.get_evaluation(ctx, ADA, model.name)


def test_a_bedrock_model_says_why_it_has_no_evaluation(ctx: FakeContext) -> None:
    model = created_model(ctx)  # a Bedrock model
    _started(ctx, model)
    done = _finish(
        ctx,
        model,
        TrainingOutcome(
            outcome="completed", model_ref="arn:aws:bedrock:custom-model/x", artifacts_uri="s3://b/o/"
        ),
    )

    assert done.training.evaluation is None
    with pytest.raises(NotFound, match="Bedrock trains the model itself"):
        evaluations.get_evaluation(ctx, ADA, done.name)


def test_the_estimate_bills_the_evaluation_and_turning_it_off_takes_it_away(ctx: FakeContext) -> None:
    request = sagemaker_request(ctx, validation={"mode": "split", "percent": 20})
    body = request.model_dump(exclude={"name", "acknowledge", "quote_id", "max_total_usd"})
    with_it = fine_tuned_models.estimate(ctx, ADA, CostEstimateIn.model_validate(body)).plan.cost
    off = {**body, "optional_hyperparameters": {"evaluation_config": {"enabled": False}}}
    without = fine_tuned_models.estimate(ctx, ADA, CostEstimateIn.model_validate(off)).plan.cost

    assert with_it.training.evaluation_hours is not None
    assert without.training.evaluation_hours is None
    [note] = [n for n in with_it.notes if n.startswith("Evaluation after training")]
    found = re.search(r"answer (\d+) validation rows, about ([\d.]+) minutes billed with the job", note)
    assert found is not None, note
    assert 0 < int(found.group(1)) <= 100
    assert float(found.group(2)) > 0
    assert with_it.training.evaluation_hours == pytest.approx(float(found.group(2)) / 60, abs=0.006)
    assert not any("Evaluation after training" in note for note in without.notes)


def test_a_job_on_several_gpus_is_estimated_without_an_evaluation_and_says_so(ctx: FakeContext) -> None:
    request = sagemaker_request(
        ctx,
        validation={"mode": "split", "percent": 20},
        resources={"instance_type": "ml.g6e.12xlarge", "instance_count": 1, "volume_size_gb": 50},
    )
    body = request.model_dump(exclude={"name", "acknowledge", "quote_id", "max_total_usd"})
    cost = fine_tuned_models.estimate(ctx, ADA, CostEstimateIn.model_validate(body)).plan.cost

    assert cost.training.evaluation_hours is None
    assert any("single-process jobs" in note for note in cost.notes)


def test_a_local_job_with_a_validation_dataset_is_told_the_evaluation_runs(ctx: FakeContext) -> None:
    train = ready_dataset(ctx, name="train")
    held = ready_dataset(ctx, name="held")
    request = create_request(
        train, base_model_id="local.tiny-llama", validation={"mode": "dataset", "dataset_id": held.dataset_id}
    )
    body = request.model_dump(exclude={"name", "acknowledge", "quote_id", "max_total_usd"})
    cost = fine_tuned_models.estimate(ctx, ADA, CostEstimateIn.model_validate(body)).plan.cost

    assert cost.total_usd == 0
    assert any("the base and the fine-tuned model answer" in note for note in cost.notes)


def test_a_clone_follows_its_own_validation_data_unless_the_evaluation_was_turned_off(
    ctx: FakeContext,
) -> None:
    # A source without validation data: its evaluation was off because there was nothing to evaluate on.
    source = fine_tuned_models.create(
        ctx,
        ADA,
        sagemaker_request(ctx, name="no-validation", validation={"mode": "none"}),
        correlation_id="r",
    )
    assert source.optional_hyperparameters is not None
    assert not source.optional_hyperparameters.evaluation_config.enabled
    # A record from before the evaluation existed reads it as on: its clone must not be refused for it.
    old = source.optional_hyperparameters.model_copy(update={"evaluation_config": ResolvedEvaluationConfig()})
    key = (ADA.workspace, source.name.lower())
    ctx.table.models[key] = source.model_copy(update={"optional_hyperparameters": old})

    same = fine_tuned_models.clone(
        ctx, ADA, source.name, CloneIn(name="same", acknowledge=True), correlation_id="c"
    )
    validated = fine_tuned_models.clone(
        ctx,
        ADA,
        source.name,
        CloneIn.model_validate(
            {"name": "validated", "acknowledge": True, "validation": {"mode": "split", "percent": 20}}
        ),
        correlation_id="c",
    )
    assert isinstance(same, ModelRecord)
    assert isinstance(validated, ModelRecord)
    assert same.optional_hyperparameters is not None
    assert validated.optional_hyperparameters is not None
    assert not same.optional_hyperparameters.evaluation_config.enabled
    assert validated.optional_hyperparameters.evaluation_config.enabled

    # Turned off by the user: every clone keeps it off.
    off = fine_tuned_models.create(
        ctx,
        ADA,
        sagemaker_request(
            ctx,
            name="off",
            validation={"mode": "split", "percent": 20},
            optional_hyperparameters={"evaluation_config": {"enabled": False}},
        ),
        correlation_id="r",
    )
    kept = fine_tuned_models.clone(
        ctx, ADA, off.name, CloneIn(name="kept-off", acknowledge=True), correlation_id="c"
    )
    assert isinstance(kept, ModelRecord)
    assert kept.optional_hyperparameters is not None
    assert not kept.optional_hyperparameters.evaluation_config.enabled
