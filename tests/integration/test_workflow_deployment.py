"""The deployment state machine, really executed by moto, its tasks running the real handlers.

moto implements neither Bedrock's custom model deployments nor provisioned throughput, so the
provider here is a scripted one that records what was created and deleted; the workflow, the
record, the schedules (read back from moto's Scheduler), the email and the bus are all real.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from tests.integration.apigw import api_event, call, claims_for
from tests.integration.workflow_fixtures import Stack, stack_fixture  # noqa: F401  # the `stack` fixture
from tunelab.adapters.stepfunctions import table_key
from tunelab.application.ports import TrainingProvider
from tunelab.application.workflows import DeploymentInput, deployment_execution_name
from tunelab.domain.providers import (
    DeploymentRef,
    DeploymentState,
    DeploymentStatus,
    DeployRequest,
    ProviderName,
)
from tunelab.domain.records import Artifacts, ModelChanges, ModelRecord
from tunelab.domain.schedules import fire_time, schedule_names
from tunelab.domain.status import ModelStatus

pytestmark = pytest.mark.moto


class ScriptedProvider:
    """Deploys instantly; `describe_deployment` answers the scripted statuses in turn (the last repeats)."""

    name: ProviderName = "bedrock"

    def __init__(self, *statuses: DeploymentStatus, reason: str | None = None) -> None:
        self.statuses = list(statuses)
        self.reason = reason
        self.deployed: list[DeployRequest] = []
        self.undeployed: list[str] = []
        self.live: set[str] = set()

    def deploy(self, request: DeployRequest) -> DeploymentRef:
        self.deployed.append(request)
        name = f"{request.identity.model_name}-{request.deploy_digest()[:8]}"
        self.live.add(name)
        return DeploymentRef(provider="bedrock", kind="custom_model_deployment", deployment_id=name)

    def describe_deployment(self, ref: DeploymentRef) -> DeploymentState:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return DeploymentState(
            deployment_id=ref.deployment_id, status=status, reason=self.reason if status == "failed" else None
        )

    def undeploy(self, ref: DeploymentRef) -> None:
        self.undeployed.append(ref.deployment_id)
        self.live.discard(ref.deployment_id)


def _use(stack: Stack, provider: ScriptedProvider) -> None:
    # Only the deployment half of the protocol is scripted; the workflow calls nothing else.
    stack.services.providers.set("bedrock", cast("TrainingProvider", provider))


def _trained(stack: Stack) -> ModelRecord:
    """A trained Bedrock model (custom model ARN known), moved to `deploying` as the API does."""
    dataset = stack.dataset()
    record = stack.model(dataset)
    repo = stack.repo
    repo.models.transition(
        record.workspace_id,
        record.name,
        {ModelStatus.TRAINING},
        ModelStatus.NOT_DEPLOYED,
        ModelChanges(
            artifacts=Artifacts(uri="s3://tunelab-test-artifacts/bedrock-output/x/", files=[]),
            refs=record.refs.model_copy(
                update={"model_ref": "arn:aws:bedrock:us-east-1:123456789012:custom-model/x"}
            ),
        ),
    )
    return repo.models.transition(
        record.workspace_id, record.name, {ModelStatus.NOT_DEPLOYED}, ModelStatus.DEPLOYING
    )


def _deploy(
    stack: Stack, record: ModelRecord, requested_at: datetime, auto_undeploy_at: datetime | None = None
) -> str:
    """Start the deployment as the API does (the stack polls at once: DEPLOY_POLL_SECONDS=0)."""
    return stack.services.workflows.start_deployment(
        record, requested_at=requested_at, correlation_id="corr-d", auto_undeploy_at=auto_undeploy_at
    )


def _deploy_with(stack: Stack, record: ModelRecord, requested_at: datetime, **timing: int) -> str:
    """Start the deployment with its own polling interval or time limit (`poll_seconds`,
    `timeout_seconds`), the execution's input otherwise as the API gives it."""
    body = DeploymentInput(
        workspace_id=record.workspace_id,
        model_name=record.name,
        uid=record.uid,
        correlation_id="corr-d",
        table_key=table_key(record.workspace_id, record.name),
        requested_at=requested_at,
        **timing,  # type: ignore[arg-type]
    )
    name = deployment_execution_name(record.name, record.uid, requested_at)
    started = stack.sfn.start_execution(
        stateMachineArn=stack.deployment_arn, name=name, input=body.model_dump_json()
    )
    return str(started["executionArn"])


def test_in_service_is_deployed_with_an_auto_undeploy_schedule_and_a_reminder(stack: Stack) -> None:
    provider = ScriptedProvider("creating", "creating", "in_service")
    _use(stack, provider)
    record = _trained(stack)
    requested = datetime.now(UTC).replace(microsecond=0)
    undeploy_at = requested + timedelta(hours=4)

    result = stack.wait_execution(_deploy(stack, record, requested, auto_undeploy_at=undeploy_at))

    assert result["status"] == "SUCCEEDED", result
    model = stack.repo.models.get(record.workspace_id, record.name)
    assert model.status == ModelStatus.DEPLOYED
    assert model.deployment is not None
    assert model.deployment.endpoint in provider.live
    assert model.deployment.deployed_at is not None
    assert model.deployment.auto_undeploy_at == fire_time(undeploy_at)  # the whole minute it fires at
    # the deploy used the custom model and the request time
    assert provider.deployed[0].model_ref == "arn:aws:bedrock:us-east-1:123456789012:custom-model/x"
    assert provider.deployed[0].requested_at == requested
    # the schedules exist in the schedule group, targeting the auto-undeploy function
    settings = stack.services.settings
    scheduler = stack.services.scheduler_client
    undeploy_name, reminder_name = schedule_names(model.identity, requested)
    assert model.deployment.schedule_name == undeploy_name
    undeploy = scheduler.get_schedule(Name=undeploy_name, GroupName=settings.schedule_group)
    assert undeploy["ScheduleExpression"] == f"at({fire_time(undeploy_at).strftime('%Y-%m-%dT%H:%M:00')})"
    assert undeploy["ScheduleExpressionTimezone"] == "UTC"
    assert undeploy["Target"]["Arn"] == settings.auto_undeploy_target_arn
    assert undeploy["Target"]["RoleArn"] == settings.scheduler_role_arn
    assert json.loads(undeploy["Target"]["Input"])["action"] == "undeploy"
    assert undeploy["Target"]["DeadLetterConfig"]["Arn"] == settings.schedules_dlq_arn
    reminder = scheduler.get_schedule(Name=reminder_name, GroupName=settings.schedule_group)
    # 10% of a 4-hour window before, on a whole minute
    remind_at = datetime.fromisoformat(reminder["ScheduleExpression"][3:-1]).replace(tzinfo=UTC)
    assert abs(remind_at - (undeploy_at - timedelta(minutes=24))) <= timedelta(minutes=1)
    assert json.loads(reminder["Target"]["Input"])["action"] == "remind"
    assert reminder["Target"]["DeadLetterConfig"]["Arn"] == settings.schedules_dlq_arn
    # the creator is told, and the bus carries the change
    [email] = stack.emails()
    assert email.subject == f"[tunelab] {record.name} is deployed"
    assert "undeployed automatically" in email.body
    changed = [e["detail"] for e in stack.domain_events(wait_for=1)]
    assert changed[-1]["data"]["status"] == "deployed"
    assert changed[-1]["data"]["endpoint"] == model.deployment.endpoint
    assert changed[-1]["correlation_id"] == "corr-d"


def test_a_failed_deployment_is_removed_and_the_model_is_not_deployed_with_the_reason(stack: Stack) -> None:
    provider = ScriptedProvider("creating", "failed", reason="Insufficient capacity for ml.g5.2xlarge.")
    _use(stack, provider)
    record = _trained(stack)
    requested = datetime.now(UTC)

    result = stack.wait_execution(
        _deploy(stack, record, requested, auto_undeploy_at=requested + timedelta(hours=2))
    )

    assert result["status"] == "SUCCEEDED"
    model = stack.repo.models.get(record.workspace_id, record.name)
    assert model.status == ModelStatus.NOT_DEPLOYED
    assert model.deployment is None
    assert model.refs.deployment is None
    # nothing left behind: the deployment was deleted, no schedule exists
    assert provider.live == set()
    assert len(provider.undeployed) == 1
    schedules = stack.services.scheduler_client.list_schedules(
        GroupName=stack.services.settings.schedule_group
    )
    assert schedules["Schedules"] == []
    history = stack.repo.models.list_events(record.workspace_id, record.name).items
    assert "Insufficient capacity" in (history[-1].message or "")
    [email] = stack.emails()
    assert email.subject == f"[tunelab] Deployment of {record.name} failed"
    assert "Insufficient capacity" in email.body
    changed = [e["detail"] for e in stack.domain_events(wait_for=1)]
    assert changed[-1]["data"]["status"] == "not_deployed"
    assert changed[-1]["data"]["previous_status"] == "deploying"
    assert changed[-1]["correlation_id"] == "corr-d"


def test_a_deployment_that_never_comes_into_service_times_out_and_is_removed(stack: Stack) -> None:
    provider = ScriptedProvider("creating")
    _use(stack, provider)
    record = _trained(stack)

    arn = _deploy_with(stack, record, datetime.now(UTC), poll_seconds=1, timeout_seconds=2)
    result = stack.wait_execution(arn, timeout=60)

    assert result["status"] == "SUCCEEDED"
    model = stack.repo.models.get(record.workspace_id, record.name)
    assert model.status == ModelStatus.NOT_DEPLOYED
    assert provider.live == set()
    [email] = stack.emails()
    assert "did not come into service" in email.body


def test_undeploying_while_deploying_ends_the_workflow_quietly(stack: Stack) -> None:
    provider = ScriptedProvider("creating")
    _use(stack, provider)
    record = _trained(stack)

    arn = _deploy_with(stack, record, datetime.now(UTC), poll_seconds=1)
    stack.wait_for(lambda: provider.deployed, what="the deployment to be created")
    # the user undeploys (what the API's undeploy does to the record)
    stack.repo.models.transition(
        record.workspace_id,
        record.name,
        {ModelStatus.DEPLOYING},
        ModelStatus.NOT_DEPLOYED,
        ModelChanges(deployment=None),
    )
    result = stack.wait_execution(arn)

    assert result["status"] == "SUCCEEDED"
    assert "Cancelled" in stack.states_entered(arn)
    assert stack.repo.models.get(record.workspace_id, record.name).status == ModelStatus.NOT_DEPLOYED
    assert stack.emails() == []


def test_patching_the_auto_undeploy_moves_both_schedules_and_null_deletes_them(stack: Stack) -> None:
    """PATCH .../deployment through the API: the schedules in moto's Scheduler move, then go."""
    _use(stack, ScriptedProvider("in_service"))
    record = _trained(stack)
    requested = datetime.now(UTC).replace(microsecond=0)
    result = stack.wait_execution(
        _deploy(stack, record, requested, auto_undeploy_at=requested + timedelta(hours=4))
    )
    assert result["status"] == "SUCCEEDED", result
    scheduler = stack.services.scheduler_client
    group = stack.services.settings.schedule_group
    undeploy_name, reminder_name = schedule_names(record.identity, requested)
    path = f"/v1/fine-tuned-models/{record.name}/deployment"
    claims = claims_for(record.workspace_id)

    moved_to = (datetime.now(UTC) + timedelta(hours=9)).replace(microsecond=0)
    moved = call(api_event("PATCH", path, {"auto_undeploy": {"at": moved_to.isoformat()}}, claims=claims))

    assert moved.status == 200, moved.body
    expected = fire_time(moved_to)
    assert moved.body["deployment"]["auto_undeploy_at"] == expected.strftime("%Y-%m-%dT%H:%M:%SZ")
    undeploy = scheduler.get_schedule(Name=undeploy_name, GroupName=group)
    assert undeploy["ScheduleExpression"] == f"at({expected.strftime('%Y-%m-%dT%H:%M:%S')})"
    assert json.loads(undeploy["Target"]["Input"])["undeploy_at"].startswith(
        expected.strftime("%Y-%m-%dT%H:%M")
    )
    reminder = scheduler.get_schedule(Name=reminder_name, GroupName=group)
    remind_at = datetime.fromisoformat(reminder["ScheduleExpression"][3:-1]).replace(tzinfo=UTC)
    # 10% of the new window (about 54 minutes of 9 hours) before it
    assert expected - timedelta(minutes=55) <= remind_at <= expected - timedelta(minutes=53)
    assert moved.body["cost"]["deployment"]["hours"] >= 0

    cancelled = call(api_event("PATCH", path, {"auto_undeploy": None}, claims=claims))

    assert cancelled.status == 200, cancelled.body
    assert cancelled.body["deployment"]["auto_undeploy_at"] is None
    assert scheduler.list_schedules(GroupName=group)["Schedules"] == []
    assert cancelled.body["status"] == "deployed"

    # a time in the past is refused; a model not deployed is invalid_state
    past = call(api_event("PATCH", path, {"auto_undeploy": {"at": "2020-01-01T00:00:00Z"}}, claims=claims))
    assert past.status == 400
    assert past.error_code == "validation_error"
    undeployed = call(api_event("POST", f"/v1/fine-tuned-models/{record.name}/undeploy", claims=claims))
    assert undeployed.status == 202, undeployed.body
    assert undeployed.body["cost"]["last_deployment"]["undeployed_at"] is not None
    late = call(api_event("PATCH", path, {"auto_undeploy": {"after_hours": 2}}, claims=claims))
    assert late.status == 409
    assert late.error_code == "invalid_state"
