"""Provider events: Bedrock and SageMaker state changes (EventBridge → SQS) and the local runtime's
jobs (source "tunelab.local"), applied to the model they are about.

Training events record news while a job runs and hand a finished job's outcome to the waiting
fine-tuning workflow (`fine_tuned_models.apply_training_state`); endpoint events undeploy a deployed
model whose endpoint failed or went away (`deployments.apply_deployment_state`).

Duplicates and out-of-order events change nothing wrong: a status never "changes" to itself, an event
older than the last one applied is skipped, a token already answered reports itself gone. An event
from another account than the model's is dropped (a BYOK model hears only from its customer's
account). An event for a job no model has is dropped, except while it is fresh: the job may have
started a moment before its id was recorded, so the message is received again (`RetryLater`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from aws_lambda_powertools import Logger

from tunelab.application import deployments, fine_tuned_models
from tunelab.application.ports import Context
from tunelab.domain.errors import ValidationFailed
from tunelab.domain.providers import TrainingState, UnhandledEventError
from tunelab.domain.records import ModelRecord

logger = Logger(child=True)

# How long an event for a job no model has yet is received again before it is dropped. The race
# it covers (a job started, its id not yet written) lasts seconds; the queue's visibility timeout
# spaces the retries, and the queue's receive limit bounds them in any case.
UNKNOWN_JOB_RETRY_WINDOW = timedelta(minutes=10)

EventAction = Literal["applied", "ignored", "dropped"]


class RetryLater(Exception):  # noqa: N818  # a signal, not an error
    """The message cannot be applied yet (e.g. the job's id is not recorded yet): receive it again."""


@dataclass(frozen=True)
class EventResult:
    """What one event did: `applied`, `ignored` (nothing left to do) or `dropped` (not ours / unknown)."""

    action: EventAction
    reason: str
    workspace_id: str | None = None
    model_name: str | None = None


@dataclass(frozen=True)
class IncomingEvent:
    """A provider's EventBridge event, as the message handler read it."""

    id: str
    source: str
    detail_type: str
    detail: Mapping[str, Any]
    time: datetime
    # The source account (a customer's for forwarded BYOK events); None where none is given.
    account: str | None = None


def handle(ctx: Context, event: IncomingEvent, *, now: datetime | None = None) -> EventResult:
    """Apply one provider event (see the module's description). Raises `RetryLater` for a fresh event
    of a job not recorded yet; a dependency's errors propagate (the message is received again)."""
    try:
        parsed = ctx.providers.parse_event(event.source, event.detail_type, event.detail, event.account)
    except UnhandledEventError as error:
        return _result("dropped", f"unhandled event: {error}")
    state = parsed.state
    if isinstance(state, TrainingState):
        model = ctx.models.find_by_job(parsed.provider, state.job_id)
        if model is None and state.former_job_id:
            # A job started before its provider's ids took their present form (the account check below
            # still applies).
            model = ctx.models.find_by_job(parsed.provider, state.former_job_id)
        if model is None:
            if (now or ctx.now()) - event.time < UNKNOWN_JOB_RETRY_WINDOW:
                raise RetryLater(f"no model has the {parsed.provider} job {state.job_id} yet")
            return _result("dropped", f"no model has the {parsed.provider} job {state.job_id}")
        if not _speaks_for(ctx, model, parsed.account):
            return _result("dropped", f"the event's account {parsed.account} is not the model's", model)
        applied = fine_tuned_models.apply_training_state(ctx, model, state, at=event.time)
        return _result("applied" if applied.applied else "ignored", applied.reason, model)
    model = ctx.models.find_by_endpoint(parsed.provider, state.deployment_id)
    if model is None:
        return _result("dropped", f"no model is deployed on {state.deployment_id}")
    if not _speaks_for(ctx, model, parsed.account):
        return _result("dropped", f"the event's account {parsed.account} is not the model's", model)
    applied_deployment = deployments.apply_deployment_state(
        ctx, model, state, at=event.time, correlation_id=event.id
    )
    return _result("applied" if applied_deployment.applied else "ignored", applied_deployment.reason, model)


def _speaks_for(ctx: Context, model: ModelRecord, account: str | None) -> bool:
    """Whether an event from `account` may change `model`; nobody may once the provider cannot be made
    for it (a BYOK workspace whose connection is gone: its events are dropped, not retried)."""
    try:
        provider = ctx.providers.for_model(model)
    except ValidationFailed:
        return False
    return provider.speaks_for(account)


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
