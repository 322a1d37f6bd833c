"""Provider state changes: Bedrock customization jobs, SageMaker training jobs and endpoints, and the
local runtime's jobs (source "tunelab.local").

EventBridge rules send the events to the provider-events queue; each message body is one event
(SageMaker's come from connected customer accounts through tunelab's bus, with the customer's
`account`). `handle_provider_event` parses it with `tunelab.adapters.providers.parse_event`, finds the model
by its job id or endpoint, and applies it idempotently:

* Training, not finished: the phase is kept on the model (with its progress, e.g. "Training
  40/120 steps"), a new phase becomes a message of the model's history, new metrics a `metrics`
  event (`Repository.record_metrics`); the waiting workflow gets a heartbeat.
* Training finished (completed, failed, stopped): the fine-tuning workflow waits on a task token;
  it gets the `TrainingOutcome` (`apply_training_state`, shared with the reconciler). Its
  FinishTraining task is the one writer of the final status.
* Endpoint failed, or deleted outside tunelab, while the model is deployed: the model is undeployed
  (`operations.undeploy_model`: what is left of the endpoint is removed, the schedules deleted,
  the status `not_deployed` with the reason, the creator told). While deploying, the deployment
  workflow polls the endpoint itself: the event only becomes a message.

Duplicates and stragglers change nothing: a model no longer training ignores training news, an
event older than the last one applied is skipped, a token already answered reports itself gone.
An event for a job no model has is dropped, except while it is fresh: the job may have started a
moment before its id was recorded, so the message is received again (`RetryLater`) for a while.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from aws_lambda_powertools import Logger

from tunelab.adapters.providers import EVENT_SOURCES, parse_event
from tunelab.application import operations
from tunelab.application.workflows import TrainingOutcome, send_training_heartbeat, send_training_outcome
from tunelab.domain.errors import InvalidState
from tunelab.domain.providers import DeploymentState, TrainingState, UnhandledEventError
from tunelab.domain.records import Metrics, ModelRecord, utcnow
from tunelab.domain.status import ModelStatus
from tunelab.entrypoints.messages import EventEnvelope, RetryLater

if TYPE_CHECKING:
    from tunelab.composition.wiring import Services

logger = Logger(child=True)

# How long an event for a job no model has yet is received again before it is dropped. The race
# it covers (a job started, its id not yet written) lasts seconds; the queue's visibility timeout
# spaces the retries, and the queue's receive limit bounds them in any case.
UNKNOWN_JOB_RETRY_WINDOW = timedelta(minutes=10)
# `provider_data` key: the time of the latest provider event applied, to skip older ones.
LAST_EVENT_AT = "last_event_at"

_TRAINING = frozenset({ModelStatus.TRAINING, ModelStatus.STOPPING_TRAINING})
# Where a phase's progress begins: the first number ("Training 40/120 steps").
_PROGRESS = re.compile(r"\s+(?=\d)")

EventAction = Literal["applied", "ignored", "dropped"]


@dataclass(frozen=True)
class EventResult:
    """What one event did: `applied`, `ignored` (nothing left to do) or `dropped` (not ours / unknown)."""

    action: EventAction
    reason: str
    workspace_id: str | None = None
    model_name: str | None = None


def handle_provider_event(
    services: Services, event: EventEnvelope, *, now: datetime | None = None
) -> EventResult:
    """Apply one provider event (see the module's description). Raises `RetryLater` for a fresh event
    of a job not recorded yet; AWS errors propagate (the message is received again)."""
    try:
        state = parse_event(event.source, event.detail_type, event.detail)
    except UnhandledEventError as error:
        return _result("dropped", f"unhandled event: {error}")
    provider = EVENT_SOURCES[event.source]
    if isinstance(state, TrainingState):
        return _training_event(services, provider, state, event, now or utcnow())
    return _deployment_event(services, provider, state, event)


def _training_event(
    services: Services, provider: str, state: TrainingState, event: EventEnvelope, now: datetime
) -> EventResult:
    model = services.repository.find_model_by_job(provider, state.job_id)
    if model is None:
        if event.age(now) < UNKNOWN_JOB_RETRY_WINDOW:
            raise RetryLater(f"no model has the {provider} job {state.job_id} yet")
        return _result("dropped", f"no model has the {provider} job {state.job_id}")
    if not _from_the_models_account(services, model, event):
        return _result("dropped", f"the event's account {event.account} is not the model's", model)
    return apply_training_state(services, model, state, at=event.time)


def apply_training_state(
    services: Services, model: ModelRecord, state: TrainingState, *, at: datetime | None = None
) -> EventResult:
    """Apply what the provider says of a model's training job: news while it runs, the outcome to the
    waiting workflow when it ended. Used by the event handler and the reconciler alike."""
    if model.status not in _TRAINING:
        return _result(
            "ignored", f"the model is {model.status.value}; training news no longer applies", model
        )
    if state.terminal:
        return _send_outcome(services, model, state)
    return _record_progress(services, model, state, at or utcnow())


def training_outcome(model: ModelRecord, state: TrainingState) -> TrainingOutcome:
    """The `TrainingOutcome` a finished job's state means for the waiting workflow."""
    if state.status == "completed":
        return TrainingOutcome(
            outcome="completed",
            artifacts_uri=state.artifacts_uri,
            model_ref=state.model_ref,
            metrics=state.metrics.model_dump() if state.metrics else None,
        )
    if state.status == "failed":
        return TrainingOutcome(
            outcome="failed",
            reason=state.failure_reason
            or "The provider reports that the training job failed; it gave no reason.",
        )
    reason = (
        "The training job was stopped as requested."
        if model.status == ModelStatus.STOPPING_TRAINING
        else "The training job was stopped outside tunelab (in the provider's console or API)."
    )
    return TrainingOutcome(outcome="stopped", reason=reason)


def _send_outcome(services: Services, model: ModelRecord, state: TrainingState) -> EventResult:
    token = services.repository.get_task_token(model.workspace_id, model.name, "training")
    if token is None:
        return _result(
            "ignored", f"the job {state.status}, but no workflow waits for it (answered before?)", model
        )
    if not send_training_outcome(services.sfn, token, training_outcome(model, state)):
        return _result("ignored", f"the job {state.status}; the workflow had its answer already", model)
    return _result("applied", f"the job {state.status}; the workflow was told", model)


def _record_progress(
    services: Services, model: ModelRecord, state: TrainingState, at: datetime
) -> EventResult:
    last = model.provider_data.get(LAST_EVENT_AT)
    if isinstance(last, str) and datetime.fromisoformat(last) > at:
        return _result("ignored", "an older event than the last one applied", model)
    repository = services.repository
    ws, name = model.workspace_id, model.name
    new_phase = bool(state.phase) and state.phase != model.training.phase
    # A message for each new phase, not for each progress report within one ("Training 40/120 steps").
    new_stage = new_phase and phase_name(state.phase) != phase_name(model.training.phase)
    metrics = Metrics(**state.metrics.model_dump()) if state.metrics else None
    new_metrics = metrics is not None and metrics != model.training.metrics
    if not (new_phase or new_metrics):
        _heartbeat(services, model)
        return _result("ignored", "nothing new in the event", model)
    training = model.training.model_copy(update={"phase": state.phase}) if new_phase else model.training
    try:
        repository.update_model(
            ws,
            name,
            {"training": training, "provider_data": {**model.provider_data, LAST_EVENT_AT: at.isoformat()}},
            expected_status=_TRAINING,
        )
    except InvalidState:
        return _result("ignored", "the model left training while the event was applied", model)
    if new_stage:
        repository.add_message(ws, name, f"Training phase: {phase_name(state.phase)}.", at=at)
    if metrics is not None and new_metrics:
        repository.record_metrics(ws, name, metrics, at=at)
    _heartbeat(services, model)
    return _result("applied", "training news recorded", model)


def phase_name(phase: str | None) -> str | None:
    """The phase without its progress: "Training 40/120 steps, ETA 0:35" is "Training"."""
    return _PROGRESS.split(phase, maxsplit=1)[0].strip() if phase else None


def _heartbeat(services: Services, model: ModelRecord) -> None:
    token = services.repository.get_task_token(model.workspace_id, model.name, "training")
    if token is not None:
        send_training_heartbeat(services.sfn, token)


def _deployment_event(
    services: Services, provider: str, state: DeploymentState, event: EventEnvelope
) -> EventResult:
    model = services.repository.find_model_by_endpoint(state.deployment_id)
    if model is None:
        return _result("dropped", f"no model is deployed on {state.deployment_id}")
    if model.provider != provider or not _from_the_models_account(services, model, event):
        return _result("dropped", f"the event's account {event.account} is not the model's", model)
    if state.status in ("creating", "in_service"):
        return _result("ignored", f"the endpoint is {state.status}; nothing to do", model)
    if state.status == "deleting" and model.status != ModelStatus.DEPLOYED:
        # tunelab's own cleanup of a deployment that did not come into service.
        return _result("ignored", "the endpoint of a model not deployed is being deleted", model)
    endpoint = state.deployment_id
    what = {
        "failed": f"The endpoint {endpoint} failed" + (f": {state.reason}" if state.reason else "."),
        # SageMaker may say Deleting and nothing after: a deployed model's endpoint going away is enough.
        "deleting": f"The endpoint {endpoint} is being deleted outside tunelab.",
        "gone": f"The endpoint {endpoint} was deleted outside tunelab.",
    }[state.status]
    if model.status != ModelStatus.DEPLOYED:
        # The deployment workflow polls the endpoint while deploying and settles it itself.
        services.repository.add_message(model.workspace_id, model.name, what, at=event.time)
        return _result("applied", "message recorded; the deployment workflow settles the status", model)
    operations.undeploy_model(
        services,
        model.workspace_id,
        model.name,
        reason=f"{what} The model is no longer deployed.",
        by="provider",
        only_if={ModelStatus.DEPLOYED},
    )
    return _result("applied", f"the endpoint is {state.status}; the model was undeployed", model)


def _from_the_models_account(services: Services, model: ModelRecord, event: EventEnvelope) -> bool:
    """SageMaker events come from customers' accounts: only the model's own account may speak for it."""
    if model.provider != "sagemaker" or event.account is None:
        # No account: only moto (the local runtime) delivers events without one.
        return True
    connection = services.repository.find_provider_connection(model.workspace_id, "sagemaker")
    if connection is None:
        return False
    parts = connection.role_arn.split(":")
    return len(parts) > 4 and parts[4] == event.account


def _result(action: EventAction, reason: str, model: ModelRecord | None = None) -> EventResult:
    result = EventResult(
        action=action,
        reason=reason,
        workspace_id=model.workspace_id if model else None,
        model_name=model.name if model else None,
    )
    log = logger.warning if action == "dropped" else logger.info
    log(
        f"Provider event {action}: {reason}",
        extra={"workspace_id": result.workspace_id, "model": result.model_name},
    )
    return result
