"""Actual cost on the fakes: what a finished job cost beside its prediction (SageMaker billable seconds,
Bedrock's missing token count as a labelled estimate, local 0), a deployment's running and total cost,
and moving or cancelling a deployed model's automatic undeploy."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.application.conftest import ADA, created_model, sagemaker_request, workflow_input
from tests.application.test_deployments import _deployed, _trained
from tests.fakes import FakeContext
from tunelab.application import deployments, fine_tuned_models
from tunelab.application.commands import DeploymentPatchIn
from tunelab.application.workflows import FinishTrainingEvent, TrainingOutcome
from tunelab.domain.actual_costs import (
    actual_training_cost,
    after_attempt,
    deployment_cost,
    ratio,
    with_earlier_attempts,
)
from tunelab.domain.errors import InvalidState, ValidationFailed
from tunelab.domain.notifications import compose
from tunelab.domain.records import ModelRecord
from tunelab.domain.schedules import schedule_names
from tunelab.domain.status import ModelStatus as S


def _finish(ctx: FakeContext, model: ModelRecord, outcome: TrainingOutcome) -> ModelRecord:
    base = workflow_input(model, "run-1")
    fine_tuned_models.finish_training(
        ctx, FinishTrainingEvent.model_validate({**base, "outcome": outcome.model_dump()})
    )
    return ctx.models.get(ADA.workspace, model.name)


def test_a_sagemaker_job_costs_its_billable_seconds_at_the_instance_price_times_the_count(
    ctx: FakeContext,
) -> None:
    request = sagemaker_request(ctx, name="sm-bot")
    model = fine_tuned_models.create(ctx, ADA, request, correlation_id="r")
    uri = "s3://provider-bucket/out/sm-bot/output/model.tar.gz"
    ctx.provider_files.put(uri, b"a" * 100, content_type="application/gzip")

    done = _finish(ctx, model, TrainingOutcome(outcome="completed", artifacts_uri=uri, billable_seconds=5400))

    actual = done.training.actual_cost
    assert actual is not None
    assert not actual.estimated
    assert actual.basis == "billable_seconds"
    assert actual.billable_seconds == 5400
    instance = ctx.catalog.find_instance("ml.g6e.2xlarge")
    assert instance is not None
    assert model.predicted_cost is not None
    # ml.g6e instances train on their own NVMe storage: no volume is billed, as in the estimate.
    assert actual.cost_usd == round(1.5 * instance.price_per_hour_usd, 2)
    assert actual.predicted_usd == model.predicted_cost.training.cost_usd
    assert actual.actual_vs_predicted == round(actual.cost_usd / model.predicted_cost.training.cost_usd, 2)
    email = compose("training_completed", done)
    assert (
        f"Training cost: ${actual.cost_usd:,.2f} (predicted ${actual.predicted_usd:,.2f}, "
        f"{actual.actual_vs_predicted:.2f}×, the job: {actual.billable_seconds:,} billable seconds)"
        in email.text
    )


def test_two_instances_cost_twice_and_an_ebs_volume_is_billed_where_the_estimate_bills_it(
    ctx: FakeContext,
) -> None:
    spec = ctx.catalog.model("sagemaker.qwen2-5-7b-instruct")
    # Every catalog instance today has NVMe storage; one without trains on an EBS volume.
    with_disk = ctx.catalog.instances[0].model_copy(update={"local_storage_gb": 0.0})
    one = actual_training_cost(
        spec,
        region=None,
        predicted=None,
        billable_seconds=3600,
        instance=with_disk,
        instance_count=1,
        volume_size_gb=730,
        volume_per_gb_month_usd=0.1,
    )
    two = actual_training_cost(
        spec,
        region=None,
        predicted=None,
        billable_seconds=3600,
        instance=with_disk,
        instance_count=2,
        volume_size_gb=730,
        volume_per_gb_month_usd=0.1,
    )
    assert one.cost_usd == round(with_disk.price_per_hour_usd + 0.1, 2)
    assert two.cost_usd == round(2 * (with_disk.price_per_hour_usd + 0.1), 2)
    assert one.actual_vs_predicted is None  # nothing predicted to compare with


def test_a_sagemaker_job_without_billable_time_shows_the_prediction_labelled_as_an_estimate(
    ctx: FakeContext,
) -> None:
    request = sagemaker_request(ctx, name="sm-bot")
    model = fine_tuned_models.create(ctx, ADA, request, correlation_id="r")
    uri = "s3://provider-bucket/out/sm-bot/output/model.tar.gz"
    ctx.provider_files.put(uri, b"a" * 100, content_type="application/gzip")

    done = _finish(ctx, model, TrainingOutcome(outcome="completed", artifacts_uri=uri))

    actual = done.training.actual_cost
    assert actual is not None
    assert actual.estimated
    assert actual.basis == "estimated_hours"
    assert actual.actual_vs_predicted is None
    assert "Training cost (estimated" in compose("training_completed", done).text


def test_bedrock_reports_no_token_count_so_the_cost_is_a_labelled_estimate_never_an_actual(
    ctx: FakeContext,
) -> None:
    done = _trained(ctx)

    actual = done.training.actual_cost
    assert done.predicted_cost is not None
    assert actual is not None
    assert actual.estimated
    assert actual.basis == "estimated_tokens"
    assert actual.trained_tokens == done.predicted_cost.training.trained_tokens
    assert actual.cost_usd == done.predicted_cost.training.cost_usd
    assert actual.actual_vs_predicted is None
    assert "not the billed amount" in actual.note


def test_bedrock_trained_tokens_when_reported_are_priced_per_thousand(ctx: FakeContext) -> None:
    model = created_model(ctx)
    outcome = TrainingOutcome(
        outcome="completed", model_ref="arn:aws:bedrock:custom-model/x", trained_tokens=200_000
    )
    done = _finish(ctx, model, outcome)

    actual = done.training.actual_cost
    spec = ctx.catalog.model(done.base_model_id)
    assert actual is not None
    assert not actual.estimated
    assert actual.basis == "trained_tokens"
    assert actual.cost_usd == round(200 * spec.pricing.training_per_1k_tokens_usd, 2)


def test_local_training_costs_nothing_and_its_ratio_is_not_applicable(ctx: FakeContext) -> None:
    spec = ctx.catalog.model("local.tiny-llama")
    actual = actual_training_cost(spec, region=None, predicted=None)
    assert actual.cost_usd == 0.0
    assert actual.basis == "free"
    assert not actual.estimated
    assert actual.actual_vs_predicted is None
    assert ratio(0.0, 0.0) is None
    assert ratio(1.12, 1.0) == 1.12
    # A resumed local model still costs nothing, and says nothing of its earlier attempts.
    earlier = after_attempt(None, actual)
    assert (earlier.count, earlier.measured_usd, earlier.unmeasured) == (1, 0.0, 0)
    again = with_earlier_attempts(actual_training_cost(spec, region=None, predicted=None), earlier)
    assert (again.cost_usd, again.earlier_attempts_usd, again.note) == (0.0, None, actual.note)


def test_a_failed_bedrock_job_shows_no_actual_cost_not_the_whole_runs_prediction(ctx: FakeContext) -> None:
    model = created_model(ctx)  # Bedrock: it reports no usage, so only an estimate could be given
    done = _finish(ctx, model, TrainingOutcome(outcome="failed", reason="bad data"))
    assert done.status == S.TRAINING_FAILED
    assert done.training.actual_cost is None


# --- deployments -----------------------------------------------------------------------------------


def test_a_deployment_costs_its_hours_at_its_hourly_price_and_the_total_is_kept_on_undeploy(
    ctx: FakeContext,
) -> None:
    model = _deployed(ctx)
    assert model.deployment is not None
    assert model.deployment.deployed_at is not None
    assert model.predicted_cost is not None
    hourly = model.predicted_cost.deployment_per_hour_usd
    assert model.deployment.hourly_usd == hourly

    ctx.clock.advance(timedelta(hours=2, minutes=30))
    running = deployment_cost(model.deployment.deployed_at, ctx.now(), hourly)
    assert running.hours == 2.5
    assert running.cost_usd == round(2.5 * hourly, 2)

    gone = deployments.undeploy_for(ctx, ADA, model.name, correlation_id="c")

    assert gone.last_deployment is not None
    assert gone.last_deployment.hours == 2.5
    assert gone.last_deployment.cost_usd == round(2.5 * hourly, 2)
    assert gone.last_deployment.undeployed_at == ctx.now()
    assert gone.deployments_cost_usd == gone.last_deployment.cost_usd
    event = [
        e for e in ctx.models.list_events(ADA.workspace, model.name).items if e.status == S.NOT_DEPLOYED
    ][-1]
    assert event.message is not None
    assert "2.50 hours" in event.message


def _patch(body: object) -> DeploymentPatchIn:
    return DeploymentPatchIn.model_validate(body)


def test_moving_the_auto_undeploy_moves_its_schedule_and_reminder(ctx: FakeContext) -> None:
    model = _deployed(ctx)
    assert model.deployment is not None
    assert model.deployment.requested_at is not None
    undeploy, remind = schedule_names(model.identity, model.deployment.requested_at)
    before = dict(ctx.scheduler.schedules)
    assert undeploy in before

    moved = deployments.change_auto_undeploy(
        ctx, ADA, model.name, _patch({"auto_undeploy": {"after_hours": 10}})
    )

    assert moved.deployment is not None
    assert moved.deployment.auto_undeploy_at is not None
    assert moved.deployment.auto_undeploy_at >= ctx.now() + timedelta(hours=10)
    assert moved.deployment.auto_undeploy_at.second == 0
    assert ctx.scheduler.schedules[undeploy] == moved.deployment.auto_undeploy_at
    assert ctx.scheduler.schedules[remind] < moved.deployment.auto_undeploy_at
    assert ctx.scheduler.schedules[undeploy] != before[undeploy]
    assert moved.deployment.schedule_name == undeploy


def test_moving_to_a_time_too_close_for_a_reminder_drops_the_reminder(ctx: FakeContext) -> None:
    model = _deployed(ctx)
    assert model.deployment is not None
    assert model.deployment.requested_at is not None
    undeploy, remind = schedule_names(model.identity, model.deployment.requested_at)
    assert remind in ctx.scheduler.schedules
    at = (ctx.now() + timedelta(minutes=20)).isoformat()

    deployments.change_auto_undeploy(ctx, ADA, model.name, _patch({"auto_undeploy": {"at": at}}))

    assert undeploy in ctx.scheduler.schedules
    assert remind not in ctx.scheduler.schedules


def test_null_cancels_the_auto_undeploy_and_deletes_its_schedules(ctx: FakeContext) -> None:
    model = _deployed(ctx)

    cancelled = deployments.change_auto_undeploy(ctx, ADA, model.name, _patch({"auto_undeploy": None}))

    assert cancelled.deployment is not None
    assert cancelled.deployment.auto_undeploy_at is None
    assert cancelled.deployment.schedule_name is None
    assert ctx.scheduler.schedules == {}
    assert cancelled.status == S.DEPLOYED
    messages = [e.message for e in ctx.models.list_events(ADA.workspace, model.name).items]
    assert any(m and "cancelled by ada@example.com" in m for m in messages)


def test_a_cancelled_auto_undeploy_can_be_set_again(ctx: FakeContext) -> None:
    model = _deployed(ctx)
    deployments.change_auto_undeploy(ctx, ADA, model.name, _patch({"auto_undeploy": None}))
    again = deployments.change_auto_undeploy(
        ctx, ADA, model.name, _patch({"auto_undeploy": {"after_hours": 3}})
    )
    assert again.deployment is not None
    assert again.deployment.schedule_name in ctx.scheduler.schedules


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"auto_undeploy": {"after_hours": 0.01}}, "auto_undeploy.after_hours"),
        ({"auto_undeploy": {"at": "2020-01-01T00:00:00Z"}}, "auto_undeploy.at"),
    ],
)
def test_a_time_in_the_past_or_too_soon_is_refused_and_nothing_moves(
    ctx: FakeContext, body: object, field: str
) -> None:
    model = _deployed(ctx)
    before = dict(ctx.scheduler.schedules)
    with pytest.raises(ValidationFailed) as refused:
        deployments.change_auto_undeploy(ctx, ADA, model.name, _patch(body))
    assert refused.value.details[0].field == field
    assert ctx.scheduler.schedules == before


def test_a_time_beyond_thirty_days_is_refused(ctx: FakeContext) -> None:
    model = _deployed(ctx)
    at = (ctx.now() + timedelta(days=31)).isoformat()
    with pytest.raises(ValidationFailed, match="30 days"):
        deployments.change_auto_undeploy(ctx, ADA, model.name, _patch({"auto_undeploy": {"at": at}}))


def test_changing_the_auto_undeploy_of_a_model_not_deployed_is_invalid_state(ctx: FakeContext) -> None:
    model = _trained(ctx)
    with pytest.raises(InvalidState, match="Deployed"):
        deployments.change_auto_undeploy(ctx, ADA, model.name, _patch({"auto_undeploy": None}))


def test_the_patch_body_needs_auto_undeploy_given_explicitly() -> None:
    with pytest.raises(ValueError, match="auto_undeploy"):
        DeploymentPatchIn.model_validate({})
