"""Connection health on fakes: the daily re-check, the re-check a refused call asks for, the status
`GET /v1/providers` shows, and exactly one email per change of status."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.application.conftest import ADA, sagemaker_request, trained_on_sagemaker, workflow_input
from tests.application.test_resume import _run
from tests.fakes import FakeContext
from tunelab.application import (
    connection_health,
    deployments,
    fine_tuned_models,
    provider_connections,
    reconcile,
)
from tunelab.application.commands import DeployIn, InvokeIn, PutSageMakerProviderIn
from tunelab.application.workflows import FinishDeploymentEvent, FinishTrainingEvent
from tunelab.domain.errors import ProviderPermissionDenied, ProviderTransientError
from tunelab.domain.providers import ConnectionCheck, ConnectionCheckItem, DeploymentRef, TrainingJobRef
from tunelab.domain.records import ModelChanges, ModelRecord, ProviderRefs
from tunelab.domain.status import ModelStatus as S

BROKEN = ConnectionCheck(
    ok=False,
    message="tunelab could not assume the role arn:aws:iam::210987654321:role/tunelab-connector: denied.",
    checks=[ConnectionCheckItem(name="sts:AssumeRole", ok=False, message="denied")],
)
WORKS = ConnectionCheck(ok=True, message="Connected.", checks=[])


def _connected(ctx: FakeContext) -> None:
    ctx.workspaces.ensure_connector_external_id(ADA.workspace, "tunelab-" + "ab" * 16)
    provider_connections.connect_sagemaker(
        ctx,
        ADA,
        PutSageMakerProviderIn(
            role_arn="arn:aws:iam::210987654321:role/tunelab-connector",
            region="us-west-2",
            artifact_bucket="customer-artifacts",
        ),
    )


def _sagemaker_status(ctx: FakeContext) -> tuple[str, str | None]:
    (item,) = [p for p in provider_connections.list_providers(ctx, ADA) if p.provider == "sagemaker"]
    message = item.message or (item.connection.message if item.connection else None)
    return item.status, message


def _emails(ctx: FakeContext, kind: str) -> int:
    return len([e for e in ctx.notifier.sent if e.kind == kind])


def test_a_connection_is_checked_again_after_a_day_not_before(ctx: FakeContext) -> None:
    _connected(ctx)
    assert connection_health.check_connections(ctx).checked == 0
    ctx.clock.advance(timedelta(hours=25))
    assert connection_health.check_connections(ctx).checked == 1
    # Checked now: not again until a day has passed.
    assert connection_health.check_connections(ctx).checked == 0
    record = ctx.connections.find(ADA.workspace)
    assert record is not None
    assert record.checked_at == ctx.now()


def test_a_failing_check_sets_error_with_what_failed_and_emails_once(ctx: FakeContext) -> None:
    _connected(ctx)
    ctx.providers.check = BROKEN
    for _ in range(3):  # three days of failing checks
        ctx.clock.advance(timedelta(hours=25))
        connection_health.check_connections(ctx)

    assert _sagemaker_status(ctx) == ("error", BROKEN.message)
    assert _emails(ctx, "connection_error") == 1
    (email,) = [e for e in ctx.notifier.sent if e.kind == "connection_error"]
    assert email.to == ADA.email
    assert BROKEN.message in email.text
    assert ("sagemaker", ADA.workspace) in ctx.providers.forgotten


def test_a_passing_check_after_an_error_reconnects_and_says_so_once(ctx: FakeContext) -> None:
    _connected(ctx)
    ctx.providers.check = BROKEN
    ctx.clock.advance(timedelta(hours=25))
    connection_health.check_connections(ctx)
    ctx.providers.check = WORKS
    for _ in range(2):
        ctx.clock.advance(timedelta(hours=25))
        connection_health.check_connections(ctx)
    assert _sagemaker_status(ctx) == ("connected", None)
    assert _emails(ctx, "connection_error") == 1
    assert _emails(ctx, "connection_recovered") == 1


def test_a_refused_call_asks_for_a_check_at_the_next_sweep(ctx: FakeContext) -> None:
    model = fine_tuned_models.create(ctx, ADA, sagemaker_request(ctx), correlation_id="req-create")
    _connected(ctx)  # connected by Ada, through the API's use case
    job = TrainingJobRef(provider="sagemaker", job_id="j", job_name="j")
    ctx.models.update(ADA.workspace, model.name, ModelChanges(refs=ProviderRefs(training_job=job)))
    provider = ctx.provider("sagemaker")

    def refuse(ref: TrainingJobRef) -> object:
        raise ProviderPermissionDenied("Reading the training job j was refused.")

    provider.describe_training = refuse  # type: ignore[method-assign,assignment]
    ctx.providers.check = BROKEN
    # The sweep asks about the stale job, is refused, and checks the connection in the same sweep.
    ctx.clock.advance(timedelta(hours=1))
    report = reconcile.reconcile(ctx)

    assert report.connections_checked == 1
    assert report.connections_broken == 1
    assert _sagemaker_status(ctx)[0] == "error"
    assert _emails(ctx, "connection_error") == 1


def test_a_check_that_lost_a_race_records_and_sends_nothing(ctx: FakeContext) -> None:
    _connected(ctx)
    record = ctx.connections.find(ADA.workspace)
    assert record is not None
    # Someone connected again between the read and the write: theirs stands.
    _connected(ctx)
    ctx.providers.check = BROKEN
    assert connection_health.recheck(ctx, record, now=ctx.now()) is None
    assert _sagemaker_status(ctx)[0] == "connected"
    assert ctx.notifier.sent == []


def test_a_training_refused_with_access_denied_asks_for_a_check(ctx: FakeContext) -> None:
    model = fine_tuned_models.create(ctx, ADA, sagemaker_request(ctx), correlation_id="req-create")
    _connected(ctx)
    cause = {"errorType": "ProviderPermissionDenied", "errorMessage": "Starting the job was refused."}
    fine_tuned_models.finish_training(
        ctx,
        FinishTrainingEvent.model_validate(
            {
                **workflow_input(model, "run-1"),
                "error": {"Error": "ProviderPermissionDenied", "Cause": json.dumps(cause)},
            }
        ),
    )
    record = ctx.connections.find(ADA.workspace)
    assert record is not None
    assert record.recheck_requested_at == ctx.now()
    # Due at once, though checked today.
    assert ctx.connections.due_for_check(ctx.now() - timedelta(hours=24)) == [record]


def test_a_connection_whose_check_cannot_run_is_tried_an_hour_later_behind_the_others(
    ctx: FakeContext,
) -> None:
    _connected(ctx)
    ctx.clock.advance(connection_health.CHECK_EVERY + timedelta(minutes=1))

    def unreachable(*_: object, **__: object) -> ConnectionCheck:
        raise ProviderTransientError("The customer's account could not be reached.")

    ctx.providers.verify_connection = unreachable  # type: ignore[method-assign]
    report = connection_health.check_connections(ctx)

    assert (report.checked, report.errors) == (0, 1)
    after = ctx.connections.find(ADA.workspace)
    assert after is not None
    assert after.status == "connected"
    # Not due again at once (it would come first in every sweep): an hour from now.
    assert ctx.connections.due_for_check(ctx.now() - connection_health.CHECK_EVERY) == []
    ctx.clock.advance(connection_health.RETRY_AFTER + timedelta(minutes=1))
    due = ctx.connections.due_for_check(ctx.now() - connection_health.CHECK_EVERY)
    assert [c.workspace_id for c in due] == [ADA.workspace]


def _deployed_on_sagemaker(ctx: FakeContext) -> ModelRecord:
    model = trained_on_sagemaker(ctx, "served-bot", optional={"use_lora": True})
    endpoint = DeploymentRef(provider="sagemaker", kind="sagemaker_endpoint", deployment_id="served-bot-ep")
    ctx.models.transition(ADA.workspace, model.name, {S.NOT_DEPLOYED}, S.DEPLOYING, ModelChanges())
    return ctx.models.transition(
        ADA.workspace,
        model.name,
        {S.DEPLOYING},
        S.DEPLOYED,
        ModelChanges(refs=model.refs.model_copy(update={"deployment": endpoint})),
    )


def _recheck_asked(ctx: FakeContext) -> bool:
    record = ctx.connections.find(ADA.workspace)
    assert record is not None
    return record.recheck_requested_at == ctx.now()


def test_a_sandbox_call_or_an_undeploy_refused_with_access_denied_asks_for_a_check(ctx: FakeContext) -> None:
    _connected(ctx)
    model = _deployed_on_sagemaker(ctx)
    denied = ProviderPermissionDenied("The role may not call sagemaker:InvokeEndpoint.")
    ctx.provider("sagemaker").refusals["invoke"] = denied

    with pytest.raises(ProviderPermissionDenied):
        deployments.invoke(ctx, ADA, model.name, InvokeIn(prompt="hello"))
    assert _recheck_asked(ctx)

    _connected(ctx)  # connected again: no re-check pending
    assert not _recheck_asked(ctx)
    ctx.provider("sagemaker").refusals["undeploy"] = denied
    with pytest.raises(ProviderPermissionDenied):
        deployments.undeploy_for(ctx, ADA, model.name, correlation_id="req-undeploy")
    assert _recheck_asked(ctx)
    assert ctx.models.get(ADA.workspace, model.name).status == S.DEPLOYED  # nothing half-done


def test_other_refusals_ask_for_no_check(ctx: FakeContext) -> None:
    _connected(ctx)
    model = _deployed_on_sagemaker(ctx)
    ctx.provider("sagemaker").refusals["invoke"] = ProviderTransientError("Throttled.")

    with pytest.raises(ProviderTransientError):
        deployments.invoke(ctx, ADA, model.name, InvokeIn(prompt="hello"))
    assert not _recheck_asked(ctx)


def test_a_stop_refused_with_access_denied_asks_for_a_check(ctx: FakeContext) -> None:
    _connected(ctx)
    model = fine_tuned_models.create(ctx, ADA, sagemaker_request(ctx), correlation_id="req-create")
    model = _run(ctx, model)

    def refuses(ref: TrainingJobRef) -> None:
        raise ProviderPermissionDenied("The role may not call sagemaker:StopTrainingJob.")

    ctx.provider("sagemaker").on_stop = refuses

    with pytest.raises(ProviderPermissionDenied):
        fine_tuned_models.stop(ctx, ADA, model.name, correlation_id="req-stop")
    assert _recheck_asked(ctx)


def test_a_deployment_refused_with_access_denied_asks_for_a_check(ctx: FakeContext) -> None:
    _connected(ctx)
    model = trained_on_sagemaker(ctx, "served-bot", optional={"use_lora": True})
    deployments.deploy(ctx, ADA, model.name, DeployIn(), correlation_id="req-deploy")
    started = ctx.workflows.started[-1]
    cause = {"errorType": "ProviderPermissionDenied", "errorMessage": "Creating the endpoint was refused."}
    state = workflow_input(model, started.correlation_id, requested_at=started.requested_at)
    state["error"] = {"Error": "ProviderPermissionDenied", "Cause": json.dumps(cause)}

    deployments.finish_deployment(
        ctx, FinishDeploymentEvent.model_validate({"mode": "failed", "state": state})
    )

    assert ctx.models.get(ADA.workspace, model.name).status == S.NOT_DEPLOYED
    assert _recheck_asked(ctx)
