"""Every status change on tunelab's bus carries the correlation id of what caused it: the request
(create, stop, deploy, undeploy, delete), the workflow running for a request, the provider event, the
auto-undeploy schedule's invocation."""

from __future__ import annotations

from tests.application.conftest import ADA, created_model, workflow_input
from tests.fakes import FakeContext
from tunelab.application import deployments, fine_tuned_models, provider_events
from tunelab.application.commands import DeployIn
from tunelab.application.provider_events import IncomingEvent
from tunelab.application.workflows import (
    FinishDeploymentEvent,
    FinishTrainingEvent,
    PrepareDataEvent,
    StartDeploymentEvent,
    StartTrainingEvent,
)
from tunelab.domain.errors import ValidationFailed
from tunelab.domain.events import MODEL_DELETED, MODEL_STATUS_CHANGED
from tunelab.domain.providers import DeploymentState


def _completed(ctx: FakeContext, name: str) -> None:
    model = created_model(ctx, name=name)
    # the workflow carries its request's id
    event = workflow_input(
        model,
        "req-create",
        outcome={"outcome": "completed", "model_ref": "arn:custom/1", "artifacts_uri": "s3://b/o/"},
    )
    fine_tuned_models.finish_training(ctx, FinishTrainingEvent.model_validate(event))


def _deployed(ctx: FakeContext, name: str, correlation_id: str) -> None:
    model = deployments.deploy(ctx, ADA, name, DeployIn(), correlation_id=correlation_id)
    started = ctx.workflows.started[-1]
    run = StartDeploymentEvent.model_validate(
        workflow_input(model, started.correlation_id, requested_at=started.requested_at)
    )
    deployments.start_deployment(ctx, run)
    deployments.finish_deployment(
        ctx, FinishDeploymentEvent.model_validate({"mode": "deployed", "state": run.model_dump()})
    )


def test_each_status_event_names_what_caused_it(ctx: FakeContext) -> None:
    # A model created, then stopped, by two requests
    created_model(ctx, name="stopped-bot")
    fine_tuned_models.stop(ctx, ADA, "stopped-bot", correlation_id="req-stop")
    # A model trained, deployed, lost by its endpoint (a provider event), deployed again, undeployed, deleted
    _completed(ctx, "live-bot")
    _deployed(ctx, "live-bot", "req-deploy-1")
    endpoint = ctx.models.get(ADA.workspace, "live-bot").deployment
    assert endpoint is not None
    assert endpoint.endpoint is not None
    ctx.provider("bedrock").deployments.pop(endpoint.endpoint)
    deployments.apply_deployment_state(
        ctx,
        ctx.models.get(ADA.workspace, "live-bot"),
        DeploymentState(deployment_id=endpoint.endpoint, status="gone"),
        at=ctx.now(),
        correlation_id="eventbridge-event-9",
    )
    _deployed(ctx, "live-bot", "req-deploy-2")
    deployments.undeploy_for(ctx, ADA, "live-bot", correlation_id="req-undeploy")
    fine_tuned_models.delete(ctx, ADA, "live-bot", correlation_id="req-delete")

    told = [
        (e.data["model_name"], e.data["status"], e.correlation_id)
        for e in ctx.events.named(MODEL_STATUS_CHANGED)
    ]
    assert told == [
        ("stopped-bot", "training", "req-create"),
        ("stopped-bot", "stopping_training", "req-stop"),
        ("live-bot", "training", "req-create"),
        ("live-bot", "not_deployed", "req-create"),
        ("live-bot", "deploying", "req-deploy-1"),
        ("live-bot", "deployed", "req-deploy-1"),
        ("live-bot", "not_deployed", "eventbridge-event-9"),
        ("live-bot", "deploying", "req-deploy-2"),
        ("live-bot", "deployed", "req-deploy-2"),
        ("live-bot", "not_deployed", "req-undeploy"),
    ]
    [deleted] = ctx.events.named(MODEL_DELETED)
    assert deleted.correlation_id == "req-delete"


def test_a_training_event_from_another_account_changes_nothing(ctx: FakeContext) -> None:
    model = created_model(ctx)
    base = workflow_input(model, "c")
    prepared = fine_tuned_models.prepare_data(ctx, PrepareDataEvent.model_validate(base))
    fine_tuned_models.start_training(
        ctx,
        StartTrainingEvent.model_validate(
            {**base, "task_token": "t", "execution_arn": "arn", "prepared": prepared.model_dump()}
        ),
    )
    job = ctx.models.get(ADA.workspace, model.name).training.job_id
    ctx.provider("bedrock").account = "111111111111"
    event = IncomingEvent(
        id="eb-1",
        source="aws.bedrock",
        detail_type="Model Customization Job State Change",
        detail={"jobArn": job, "jobName": job, "jobStatus": "Failed", "failureMessage": "forged"},
        time=ctx.now(),
        account="999999999999",
    )

    result = provider_events.handle(ctx, event)

    assert result.action == "dropped"
    assert ctx.workflows.outcomes == []


def test_events_of_a_workspace_whose_byok_connection_is_gone_are_dropped(ctx: FakeContext) -> None:
    model = created_model(ctx)
    base = workflow_input(model, "c")
    prepared = fine_tuned_models.prepare_data(ctx, PrepareDataEvent.model_validate(base))
    fine_tuned_models.start_training(
        ctx,
        StartTrainingEvent.model_validate(
            {**base, "task_token": "t", "execution_arn": "arn", "prepared": prepared.model_dump()}
        ),
    )
    job = ctx.models.get(ADA.workspace, model.name).training.job_id
    gone = ValidationFailed.of("provider", "This workspace has no connection.")
    ctx.providers.unavailable["bedrock"] = gone
    event = IncomingEvent(
        id="eb-2",
        source="aws.bedrock",
        detail_type="Model Customization Job State Change",
        detail={"jobArn": job, "jobName": job, "jobStatus": "Failed", "failureMessage": "late"},
        time=ctx.now(),
    )

    result = provider_events.handle(ctx, event)

    assert result.action == "dropped"
    assert ctx.workflows.outcomes == []
