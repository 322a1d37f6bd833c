"""The Step Functions workflows of a fine-tuning job and of a deployment: their inputs, the events of
their tasks and what the tasks answer, and the executions' names.

The state machines are ASL files (`composition/state_machines/`); the CDK app and the local runtime
both create them from there. The task Lambdas (`functions/*.py`) parse their event into the models
below and call the use cases (`application.fine_tuned_models`, `application.deployments`).

Answering the training task: the StartTraining task waits on a task token (kept with the record,
`TaskTokens`). Whoever learns how the provider's job ended (the provider-event handler, the
reconciler) sends a `TrainingOutcome` (`Workflows.send_training_outcome`); FinishTraining then
writes the final status.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tunelab.domain.status import NotificationKind

# Step Functions' limit on execution names.
EXECUTION_NAME_MAX = 80
DEFAULT_POLL_SECONDS = 30
# How long a deployment may take to come into service before it is given up and removed.
DEFAULT_DEPLOY_TIMEOUT_SECONDS = 2 * 3600

TrainingOutcomeKind = Literal["completed", "failed", "stopped"]
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
    """The model record's key in the records table, for the workflows' last-resort update (the ASL
    cannot call the store); the Step Functions adapter fills it from the store's layout."""

    pk: str
    sk: str


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
    # What the provider measured to bill the job, where its news said (SageMaker's billable seconds).
    billable_seconds: int | None = None
    trained_tokens: int | None = None


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


def execution_name(model_name: str, uid: str, attempt: int = 0) -> str:
    """The fine-tuning execution's name: `<model name>-<uid prefix>` (≤ 80 characters), and `-r<n>`
    after it for the n-th resume of the training (each run of the same model its own execution).

    Deterministic, so a retried request finds the running execution instead of starting another,
    and the console lists each job under its model's name.
    """
    suffix = f"-{uid[:8]}" + (f"-r{attempt}" if attempt else "")
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


def as_payload(model: BaseModel) -> dict[str, Any]:
    """A task result as Step Functions receives it (JSON types only)."""
    data: dict[str, Any] = json.loads(model.model_dump_json())
    return data
