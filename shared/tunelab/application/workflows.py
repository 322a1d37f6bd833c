"""The Step Functions workflows of a fine-tuning job and of a deployment: their inputs, the events of
their tasks, and how the rest of tunelab starts them and answers their waiting tasks.

The state machines are the ASL files next to this module (`fine_tuning.asl.json`,
`deployment.asl.json`); the CDK app and the local runtime both create them from these files
(`definition(...)` fills in the placeholders). The task Lambdas (`functions/*.py`) parse their
event into the models below and call `tunelab.application.workflow_tasks`.

Answering the training task: the StartTraining task waits on a task token (kept on the record,
`Repository.get_task_token(ws, name, "training")`). Whoever learns how the provider's job ended
(the provider-event handler, the reconciler) sends a `TrainingOutcome` with
`send_training_outcome(sfn, token, outcome)`; FinishTraining then writes the final status.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tunelab.domain.records import ModelRecord

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

# Step Functions' limit on execution names.
EXECUTION_NAME_MAX = 80
DEFAULT_POLL_SECONDS = 30
# How long a deployment may take to come into service before it is given up and removed.
DEFAULT_DEPLOY_TIMEOUT_SECONDS = 2 * 3600

TrainingOutcomeKind = Literal["completed", "failed", "stopped"]
NotificationKind = Literal[
    "training_completed",
    "training_failed",
    "training_stopped",
    "deployed",
    "deploy_failed",
    "undeploy_reminder",
    "undeployed",
]
DeploymentCheckStatus = Literal["creating", "in_service", "failed", "timed_out", "cancelled"]
FinishDeploymentMode = Literal["check", "deployed", "failed"]

# Error names the tasks raise on purpose; the ASL files catch them by name (the Lambda error's
# `errorType` is the exception's class name).
TRAINING_CANCELLED = "TrainingCancelled"
DEPLOYMENT_CANCELLED = "DeploymentCancelled"
TRANSIENT_ERROR = "ProviderTransientError"


class _Event(BaseModel):
    # Step Functions passes more than a task reads (the whole state); unknown keys are ignored.
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- what starts an execution ---------------------------------------------------------------------


class TableKey(_Strict):
    """The model record's key in the table, for the workflows' last-resort DynamoDB update."""

    pk: str
    sk: str


def table_key(workspace_id: str, model_name: str) -> TableKey:
    """The record's key as `tunelab.adapters.dynamodb` lays it out (`WS#<ws>`, `MODEL#<lower-case name>`).

    Only the ASL's last-resort update uses it (it cannot call the repository); the workflow tests
    check that it reaches the record the repository reads.
    """
    return TableKey(pk=f"WS#{workspace_id}", sk=f"MODEL#{model_name.lower()}")


class FineTuningInput(_Event):
    """The fine-tuning execution's input (one execution per model life, named by `execution_name`)."""

    workspace_id: str
    model_name: str
    uid: str
    correlation_id: str
    table_key: TableKey
    # Overrides the wait on the provider's job (seconds); PrepareData computes it otherwise.
    training_timeout_seconds: int | None = Field(default=None, ge=1)


class DeploymentInput(_Event):
    """The deployment execution's input; `requested_at` names the deployment and its schedules."""

    workspace_id: str
    model_name: str
    uid: str
    correlation_id: str
    table_key: TableKey
    requested_at: AwareDatetime
    auto_undeploy_at: AwareDatetime | None = None
    instance_type: str | None = None
    instance_count: int = Field(default=1, ge=1)
    poll_seconds: int = Field(default=DEFAULT_POLL_SECONDS, ge=0, le=3600)
    timeout_seconds: int = Field(default=DEFAULT_DEPLOY_TIMEOUT_SECONDS, ge=1)


# --- how a training job ended (sent to the waiting task) ------------------------------------------


class TrainingOutcome(_Strict):
    """How the provider's job ended: the output of the StartTraining task's token."""

    outcome: TrainingOutcomeKind
    # Why it failed or stopped, in words a person understands (the provider's message).
    reason: str | None = None
    # Where the trained artifacts are (SageMaker's model.tar.gz, Bedrock's output folder).
    artifacts_uri: str | None = None
    # Bedrock: the custom model's ARN.
    model_ref: str | None = None
    # The final metrics as the provider reports them (train_loss, eval_loss, step, epoch).
    metrics: dict[str, float | int | None] | None = None


class DeploymentOutcome(_Strict):
    """What the deployment's check found (FinishDeployment in "check" mode)."""

    status: DeploymentCheckStatus
    reason: str | None = None
    deployment_id: str | None = None


class TaskError(_Event):
    """What a Catch puts at its ResultPath: the error name and its cause (a Lambda error's JSON)."""

    Error: str
    Cause: str | None = None

    def message(self) -> str | None:
        """The error's message: a Lambda error's `errorMessage`, else the cause as given."""
        if not self.Cause:
            return None
        try:
            cause = json.loads(self.Cause)
        except ValueError:
            return self.Cause
        if isinstance(cause, Mapping):
            text = cause.get("errorMessage")
            return str(text) if text is not None else self.Cause
        return self.Cause

    def error_type(self) -> str:
        """The Lambda error's `errorType` (the exception's class), else the error name."""
        if self.Cause:
            try:
                cause = json.loads(self.Cause)
            except ValueError:
                return self.Error
            if isinstance(cause, Mapping) and isinstance(cause.get("errorType"), str):
                return str(cause["errorType"])
        return self.Error


# --- the tasks' events and results -----------------------------------------------------------------


class PreparedData(_Strict):
    """PrepareData's result, kept at `$.prepared`."""

    training_data_uri: str
    validation_data_uri: str | None
    training_rows: int
    validation_rows: int
    training_timeout_seconds: int


class PrepareDataEvent(FineTuningInput):
    pass


class StartTrainingEvent(FineTuningInput):
    task_token: str
    execution_arn: str
    prepared: PreparedData


class FinishTrainingEvent(FineTuningInput):
    # One of the two: the token's output, or the error a Catch caught.
    outcome: TrainingOutcome | None = None
    error: TaskError | None = None


class FinishedTraining(_Strict):
    """FinishTraining's result, at `$.finished`: the status now and what to tell the creator."""

    status: str | None
    notification: NotificationKind | None
    reason: str | None = None


class NotifyEvent(_Event):
    workspace_id: str
    model_name: str
    uid: str
    notification: NotificationKind
    reason: str | None = None
    # The undeploy time an `undeploy_reminder` announces.
    at: AwareDatetime | None = None


class NotifyResult(_Strict):
    sent: bool
    message_id: str | None = None
    why_not: str | None = None


class StartDeploymentEvent(DeploymentInput):
    pass


class StartedDeployment(_Strict):
    deployment_id: str


class _CheckResult(_Event):
    Payload: DeploymentOutcome


class DeploymentRun(DeploymentInput):
    """The deployment execution's state as the later tasks see it."""

    check: _CheckResult | None = None
    error: TaskError | None = None


class FinishDeploymentEvent(_Event):
    mode: FinishDeploymentMode
    state: DeploymentRun
    # When the execution started (`$$.Execution.StartTime`): the deployment's time limit counts from it.
    started_at: AwareDatetime | None = None


class FinishedDeployment(_Strict):
    status: str | None
    notification: NotificationKind | None
    reason: str | None = None


# --- execution names and starting executions ---------------------------------------------------------


def execution_name(model_name: str, uid: str) -> str:
    """The fine-tuning execution's name: `<model name>-<uid prefix>` (≤ 80 characters).

    Deterministic, so a retried request finds the running execution instead of starting another,
    and the console lists each job under its model's name.
    """
    suffix = f"-{uid[:8]}"
    return model_name[: EXECUTION_NAME_MAX - len(suffix)] + suffix


def deployment_execution_name(model_name: str, uid: str, requested_at: datetime) -> str:
    """The deployment execution's name: `<model name>-deploy-<request time>-<uid prefix>`."""
    stamp = requested_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    suffix = f"-deploy-{stamp}-{uid[:6]}"
    return model_name[: EXECUTION_NAME_MAX - len(suffix)] + suffix


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN an execution `name` of that (Standard) state machine has."""
    prefix, _, machine = state_machine_arn.partition(":stateMachine:")
    return f"{prefix}:execution:{machine}:{name}"


def _start(sfn: SFNClient, state_machine_arn: str, name: str, body: BaseModel) -> str:
    try:
        return sfn.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=body.model_dump_json()
        )["executionArn"]
    except ClientError as error:
        # Started before (a retried request): the execution of that name is this one.
        if error.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
            return execution_arn(state_machine_arn, name)
        raise


def start_fine_tuning(
    sfn: SFNClient,
    state_machine_arn: str,
    record: ModelRecord,
    *,
    correlation_id: str,
    training_timeout_seconds: int | None = None,
) -> str:
    """Start the model's fine-tuning execution (once; a second call returns the same ARN)."""
    body = FineTuningInput(
        workspace_id=record.workspace_id,
        model_name=record.name,
        uid=record.uid,
        correlation_id=correlation_id,
        table_key=table_key(record.workspace_id, record.name),
        training_timeout_seconds=training_timeout_seconds,
    )
    return _start(sfn, state_machine_arn, execution_name(record.name, record.uid), body)


def start_deployment(
    sfn: SFNClient,
    state_machine_arn: str,
    record: ModelRecord,
    *,
    requested_at: datetime,
    correlation_id: str,
    auto_undeploy_at: datetime | None = None,
    instance_type: str | None = None,
    instance_count: int = 1,
    poll_seconds: int = DEFAULT_POLL_SECONDS,
    timeout_seconds: int = DEFAULT_DEPLOY_TIMEOUT_SECONDS,
) -> str:
    """Start the deployment execution of a model the API has just set `deploying`."""
    body = DeploymentInput(
        workspace_id=record.workspace_id,
        model_name=record.name,
        uid=record.uid,
        correlation_id=correlation_id,
        table_key=table_key(record.workspace_id, record.name),
        requested_at=requested_at,
        auto_undeploy_at=auto_undeploy_at,
        instance_type=instance_type,
        instance_count=instance_count,
        poll_seconds=poll_seconds,
        timeout_seconds=timeout_seconds,
    )
    name = deployment_execution_name(record.name, record.uid, requested_at)
    return _start(sfn, state_machine_arn, name, body)


_GONE_TOKEN_CODES = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})


def send_training_outcome(sfn: SFNClient, token: str, outcome: TrainingOutcome) -> bool:
    """Complete the waiting StartTraining task with `outcome`.

    False when the token is no longer waited on (the task already completed, timed out, or the
    execution ended): a duplicate or late event, which changes nothing. Other errors propagate.
    """
    try:
        sfn.send_task_success(taskToken=token, output=outcome.model_dump_json())
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in _GONE_TOKEN_CODES:
            return False
        raise
    return True


def send_training_heartbeat(sfn: SFNClient, token: str) -> bool:
    """Tell the waiting task the job is alive (for a state with HeartbeatSeconds); False if gone."""
    try:
        sfn.send_task_heartbeat(taskToken=token)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in _GONE_TOKEN_CODES:
            return False
        raise
    return True


def as_payload(model: BaseModel) -> dict[str, Any]:
    """A task result as Step Functions receives it (JSON types only)."""
    data: dict[str, Any] = json.loads(model.model_dump_json())
    return data
