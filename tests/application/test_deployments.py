"""Deployments on the fakes: deploy, the workflow's tasks, the sandbox, and the one undeploy clean-up
reached by a user, the auto-undeploy schedule and an endpoint gone outside tunelab."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.application.conftest import ADA, created_model, trained_on_sagemaker, workflow_input
from tests.fakes import FakeContext
from tunelab.application import announce, deployments, fine_tuned_models, provider_events
from tunelab.application.commands import DeployIn, InvokeIn
from tunelab.application.provider_events import IncomingEvent
from tunelab.application.workflows import (
    FinishDeploymentEvent,
    FinishedDeployment,
    FinishTrainingEvent,
    NotifyEvent,
    StartDeploymentEvent,
    TrainingOutcome,
)
from tunelab.domain.errors import DeploymentCancelled, InvalidState, ValidationFailed
from tunelab.domain.events import MODEL_STATUS_CHANGED
from tunelab.domain.providers import DeploymentState
from tunelab.domain.records import ModelRecord
from tunelab.domain.schedules import schedule_names
from tunelab.domain.status import ModelStatus as S


def _trained(ctx: FakeContext) -> ModelRecord:
    """A model whose training completed on the local provider's double (it keeps an archive)."""
    model = created_model(ctx)
    base = workflow_input(model, "run-1")
    outcome = TrainingOutcome(
        outcome="completed", model_ref="arn:aws:bedrock:custom-model/x", artifacts_uri="s3://b/o/"
    )
    fine_tuned_models.finish_training(
        ctx, FinishTrainingEvent.model_validate({**base, "outcome": outcome.model_dump()})
    )
    return ctx.models.get(ADA.workspace, model.name)


def _deploying(ctx: FakeContext, hours: float | None = 4) -> ModelRecord:
    model = _trained(ctx)
    body = DeployIn.model_validate({"auto_undeploy": {"after_hours": hours}} if hours else {})
    return deployments.deploy(ctx, ADA, model.name, body, correlation_id="req-deploy")


def _run(ctx: FakeContext, model: ModelRecord) -> StartDeploymentEvent:
    started = ctx.workflows.started[-1]
    assert started.requested_at is not None
    return StartDeploymentEvent.model_validate(
        workflow_input(
            model,
            started.correlation_id,
            requested_at=started.requested_at,
            auto_undeploy_at=started.auto_undeploy_at,
        )
    )


def _deployed(ctx: FakeContext) -> ModelRecord:
    model = _deploying(ctx)
    run = _run(ctx, model)
    deployments.start_deployment(ctx, run)
    endpoint = ctx.models.get(ADA.workspace, model.name).refs.deployment
    assert endpoint is not None
    ctx.provider("bedrock").deployments[endpoint.deployment_id] = DeploymentState(
        deployment_id=endpoint.deployment_id, status="in_service"
    )
    state = run.model_dump()
    check = deployments.finish_deployment(
        ctx, FinishDeploymentEvent.model_validate({"mode": "check", "state": state})
    )
    assert check.status == "in_service"
    deployments.finish_deployment(
        ctx, FinishDeploymentEvent.model_validate({"mode": "deployed", "state": state})
    )
    return ctx.models.get(ADA.workspace, model.name)


def test_deploy_starts_the_workflow_with_the_undeploy_time_on_the_minute(ctx: FakeContext) -> None:
    model = _deploying(ctx, hours=4.001)

    assert model.status == S.DEPLOYING
    [execution] = [e for e in ctx.workflows.started if e.kind == "deployment"]
    assert execution.correlation_id == "req-deploy"
    assert execution.auto_undeploy_at is not None
    assert execution.auto_undeploy_at.second == 0
    assert execution.auto_undeploy_at >= ctx.now() + timedelta(hours=4.001)
    assert model.deployment is not None
    assert model.deployment.requested_at == ctx.now()


def test_a_deploy_right_after_training_is_not_refused_when_its_email_is_recorded_as_sent_meanwhile(
    ctx: FakeContext,
) -> None:
    """Training ended and its email is owed; the user deploys at once, and the Notify task records the
    email as sent between the deploy's read and its move (a version later): the deploy reads again."""
    model = _trained(ctx)
    assert model.pending_email is not None
    assert model.pending_email.kind == "training_completed"
    store = ctx.models
    moved = store.transition
    interleaved: list[int] = []

    def notify_in_between(*args: object, **kwargs: object) -> ModelRecord:
        if not interleaved:
            interleaved.append(store.get(ADA.workspace, model.name).version)
            announce.notify(
                ctx,
                NotifyEvent(
                    workspace_id=ADA.workspace,
                    model_name=model.name,
                    uid=model.uid,
                    notification="training_completed",
                ),
            )
        return moved(*args, **kwargs)  # type: ignore[arg-type]

    ctx.models.transition = notify_in_between  # type: ignore[method-assign]
    deploying = deployments.deploy(ctx, ADA, model.name, DeployIn(), correlation_id="req-deploy")

    assert deploying.status == S.DEPLOYING
    assert deploying.pending_email is None
    assert deploying.version > interleaved[0] + 1
    assert [e.subject for e in ctx.notifier.sent] == [f"[tunelab] {model.name} is ready: training completed"]


@pytest.mark.parametrize(
    ("choice", "field"),
    [({"after_hours": 0.05}, "auto_undeploy.after_hours"), ({"at": "in 31 days"}, "auto_undeploy.at")],
)
def test_an_auto_undeploy_outside_five_minutes_to_thirty_days_is_refused(
    ctx: FakeContext, choice: dict[str, object], field: str
) -> None:
    model = _trained(ctx)
    if choice.get("at"):
        choice = {"at": (ctx.now() + timedelta(days=31)).isoformat()}
    with pytest.raises(ValidationFailed) as refused:
        deployments.deploy(
            ctx, ADA, model.name, DeployIn.model_validate({"auto_undeploy": choice}), correlation_id="r"
        )
    assert refused.value.details[0].field == field
    assert ctx.models.get(ADA.workspace, model.name).status == S.NOT_DEPLOYED


def test_a_deployment_comes_into_service_with_its_schedules_and_serves_the_sandbox(ctx: FakeContext) -> None:
    model = _deployed(ctx)

    assert model.status == S.DEPLOYED
    assert model.deployment is not None
    assert model.deployment.deployed_at is not None
    undeploy, remind = schedule_names(model.identity, model.deployment.requested_at)  # type: ignore[arg-type]
    assert set(ctx.scheduler.schedules) == {undeploy, remind}
    assert ctx.scheduler.schedules[undeploy] == model.deployment.auto_undeploy_at
    event = ctx.events.named(MODEL_STATUS_CHANGED)[-1]
    assert (event.data["status"], event.correlation_id) == ("deployed", "req-deploy")
    answer = deployments.invoke(ctx, ADA, model.name, InvokeIn(prompt="hello"))
    assert answer.completion == "echo: hello"


def test_an_unmerged_lora_model_is_served_from_its_merged_copy(ctx: FakeContext) -> None:
    model = trained_on_sagemaker(
        ctx, "lora-bot", optional={"use_lora": True, "merge_adapters": False}, merged_copy=True
    )

    deploying = deployments.deploy(ctx, ADA, model.name, DeployIn(), correlation_id="req-deploy")
    deployments.start_deployment(ctx, _run(ctx, deploying))

    [request] = ctx.provider("sagemaker").called("deploy")
    assert request.artifacts_uri == "s3://provider-bucket/out/lora-bot-job/output/output.tar.gz"
    assert request.artifacts_path == "merged/"


def test_a_full_model_is_served_from_its_archive_root(ctx: FakeContext) -> None:
    model = trained_on_sagemaker(ctx, "full-bot", optional=None)

    deploying = deployments.deploy(ctx, ADA, model.name, DeployIn(), correlation_id="req-deploy")
    deployments.start_deployment(ctx, _run(ctx, deploying))

    [request] = ctx.provider("sagemaker").called("deploy")
    assert request.artifacts_uri == "s3://provider-bucket/out/full-bot-job/output/model.tar.gz"
    assert request.artifacts_path is None


def test_an_unmerged_lora_model_without_a_merged_copy_is_refused_before_anything_is_made(
    ctx: FakeContext,
) -> None:
    model = trained_on_sagemaker(
        ctx, "old-lora", optional={"use_lora": True, "merge_adapters": False}, merged_copy=False
    )
    started = len(ctx.workflows.started)

    with pytest.raises(InvalidState) as refused:
        deployments.deploy(ctx, ADA, model.name, DeployIn(), correlation_id="req-deploy")

    assert "cannot be deployed" in refused.value.message
    assert "variant=adapter" in refused.value.message
    assert ctx.models.get(ADA.workspace, model.name).status == S.NOT_DEPLOYED
    assert len(ctx.workflows.started) == started  # no deployment workflow
    assert ctx.provider("sagemaker").called("deploy") == []


def test_undeploy_removes_the_deployment_and_both_schedules_and_tells_everyone(ctx: FakeContext) -> None:
    model = _deployed(ctx)
    ref = model.refs.deployment

    undeployed = deployments.undeploy_for(ctx, ADA, model.name, correlation_id="req-undeploy")

    assert undeployed.status == S.NOT_DEPLOYED
    assert undeployed.deployment is None
    assert undeployed.refs.deployment is None
    assert ctx.provider("bedrock").called("undeploy") == [ref]
    assert ctx.scheduler.schedules == {}
    event = ctx.events.named(MODEL_STATUS_CHANGED)[-1]
    assert (event.data["status"], event.correlation_id) == ("not_deployed", "req-undeploy")
    email = ctx.notifier.sent[-1]
    assert email.kind == "undeployed"
    # The creator asked: the email gives no reason, the history says who (the status event's reason).
    assert "Reason:" not in email.text
    assert event.data["reason"] == "Undeployed by ada@example.com."
    with pytest.raises(InvalidState):
        deployments.invoke(ctx, ADA, model.name, InvokeIn(prompt="hello"))


def test_the_auto_undeploy_schedule_undeploys_its_own_deployment_only(ctx: FakeContext) -> None:
    model = _deployed(ctx)
    assert model.deployment is not None
    order = {
        "action": "undeploy",
        "workspace_id": model.workspace_id,
        "model_name": model.name,
        "uid": model.uid,
        "deployment_requested_at": model.deployment.requested_at,
        "undeploy_at": model.deployment.auto_undeploy_at,
    }
    earlier = {**order, "deployment_requested_at": ctx.now() - timedelta(days=1)}

    ignored = deployments.handle_schedule(ctx, earlier, correlation_id="lambda-1")
    reminded = deployments.handle_schedule(ctx, {**order, "action": "remind"}, correlation_id="lambda-2")
    done = deployments.handle_schedule(ctx, order, correlation_id="lambda-3")

    assert (ignored.action, reminded.action, done.action) == ("ignored", "reminded", "undeployed")
    assert ctx.notifier.sent[-2].kind == "undeploy_reminder"
    event = ctx.events.named(MODEL_STATUS_CHANGED)[-1]
    assert (event.data["status"], event.correlation_id) == ("not_deployed", "lambda-3")
    assert event.data["reason"] == deployments.AUTO_UNDEPLOY_REASON
    assert f"Reason: {deployments.AUTO_UNDEPLOY_REASON}" in ctx.notifier.sent[-1].text


def test_an_endpoint_gone_outside_tunelab_undeploys_the_model_under_the_events_id(ctx: FakeContext) -> None:
    model = _deployed(ctx)
    endpoint = model.deployment.endpoint if model.deployment else None
    assert endpoint is not None
    ctx.provider("bedrock").deployments.pop(endpoint)
    state = DeploymentState(deployment_id=endpoint, status="gone")

    applied = deployments.apply_deployment_state(ctx, model, state, at=ctx.now(), correlation_id="eb-event-1")

    assert applied.applied
    stored = ctx.models.get(ADA.workspace, model.name)
    assert stored.status == S.NOT_DEPLOYED
    event = ctx.events.named(MODEL_STATUS_CHANGED)[-1]
    assert event.correlation_id == "eb-event-1"
    assert "was deleted outside tunelab" in event.data["reason"]


def test_a_failed_deployment_is_removed_and_the_model_goes_back_to_not_deployed(ctx: FakeContext) -> None:
    model = _deploying(ctx)
    run = _run(ctx, model)
    deployments.start_deployment(ctx, run)
    ref = ctx.models.get(ADA.workspace, model.name).refs.deployment
    assert ref is not None
    ctx.provider("bedrock").deployments[ref.deployment_id] = DeploymentState(
        deployment_id=ref.deployment_id, status="failed", reason="Out of capacity."
    )
    state = run.model_dump()
    check = deployments.finish_deployment(
        ctx, FinishDeploymentEvent.model_validate({"mode": "check", "state": state})
    )
    assert check.status == "failed"

    finished = deployments.finish_deployment(
        ctx,
        FinishDeploymentEvent.model_validate(
            {"mode": "failed", "state": {**state, "check": {"Payload": check.model_dump()}}}
        ),
    )

    assert isinstance(finished, FinishedDeployment)
    assert (finished.status, finished.notification, finished.reason) == (
        "not_deployed",
        "deploy_failed",
        "Out of capacity.",
    )
    assert ctx.provider("bedrock").called("undeploy") == [ref]
    assert ctx.scheduler.schedules == {}


def test_a_deployment_undeployed_while_it_is_made_is_removed_at_once(ctx: FakeContext) -> None:
    model = _deploying(ctx)
    run = _run(ctx, model)
    deployments.undeploy_for(ctx, ADA, model.name, correlation_id="req-undeploy")

    with pytest.raises(DeploymentCancelled):
        deployments.start_deployment(ctx, run)
    assert ctx.provider("bedrock").called("deploy") == []
    assert ctx.scheduler.schedules == {}


def test_provider_events_reach_the_deployment_through_the_dispatcher(ctx: FakeContext) -> None:
    model = _deployed(ctx)
    assert model.deployment is not None
    assert model.deployment.endpoint is not None
    # The event below is SageMaker's; the model is Bedrock's: that endpoint name is not its endpoint.
    event = IncomingEvent(
        id="eb-2",
        source="aws.sagemaker",
        detail_type="SageMaker Endpoint State Change",
        detail={"EndpointName": model.deployment.endpoint, "EndpointStatus": "FAILED"},
        time=ctx.now(),
    )

    result = provider_events.handle(ctx, event)

    assert result.action == "dropped"
    assert ctx.models.get(ADA.workspace, model.name).status == S.DEPLOYED
