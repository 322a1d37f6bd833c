"""Deployments: deploy, the sandbox, undeploy — by a user, by the auto-undeploy schedule or because
the provider's endpoint went away — and the deployment workflow's tasks.

* `deploy` (`not_deployed` → `deploying`) starts the deployment workflow: `start_deployment` creates
  the provider's deployment and the auto-undeploy schedules, `finish_deployment` polls it ("check")
  and records it `deployed`, or removes what was made and goes back to `not_deployed` ("failed").
* `undeploy` is the one way a deployment ends: the provider's deployment and the schedules go
  (`_remove`, what is already gone is skipped), the model becomes `not_deployed`, the bus and the
  creator are told. The schedules' target (`handle_schedule`) and endpoint events
  (`apply_deployment_state`) call it too.

Decisions a user will notice: `auto_undeploy` must fall between 5 minutes and 30 days from the
request, and is stored as the whole minute the schedule fires in (never before the time asked for).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from aws_lambda_powertools import Logger

from tunelab.application import announce, connection_health, redaction
from tunelab.application.commands import AfterHoursIn, AtIn, DeployIn, DeploymentPatchIn, InvokeIn
from tunelab.application.ports import Context
from tunelab.application.workflows import (
    DeploymentOutcome,
    FinishDeploymentEvent,
    FinishedDeployment,
    StartDeploymentEvent,
    StartedDeployment,
)
from tunelab.domain.actual_costs import DeploymentCost
from tunelab.domain.archives import serving_archive
from tunelab.domain.catalog import InstanceType
from tunelab.domain.costs import usd
from tunelab.domain.errors import (
    Conflict,
    DeploymentCancelled,
    InvalidState,
    ProviderTransientError,
    TunelabError,
    ValidationFailed,
)
from tunelab.domain.identity import Identity
from tunelab.domain.layout import PROVIDER_RESOURCE_TAG
from tunelab.domain.providers import DeploymentRef, DeployRequest, InvokeParams, InvokeResult, ModelIdentity
from tunelab.domain.providers import DeploymentState as ProviderDeployment
from tunelab.domain.records import DeploymentState, ModelChanges, ModelRecord, PendingEmail, invalid_state
from tunelab.domain.resources import serving_instance
from tunelab.domain.schedules import ScheduleInput, fire_time, schedule_names
from tunelab.domain.status import ACTIONS, Action, ModelStatus, check_action

logger = Logger(child=True)

S = ModelStatus
AUTO_UNDEPLOY_MIN = timedelta(minutes=5)
# Reads, checks and moves of a deploy request, when the model changes under it.
DEPLOY_ATTEMPTS = 3
AUTO_UNDEPLOY_MAX = timedelta(days=30)
AUTO_UNDEPLOY_REASON = "The auto-undeploy time chosen when it was deployed has come."
# Errors whose message is already a sentence for the user.
_TOLD_AS_IS = frozenset({"ValidationFailed", "ProviderError", "ProviderPermissionDenied"})


# --- requests -------------------------------------------------------------------------------------------


def auto_undeploy_at(choice: AfterHoursIn | AtIn | None, now: datetime) -> datetime | None:
    """When a deployment requested at `now` undeploys itself; `ValidationFailed` outside 5 min–30 days."""
    if choice is None:
        return None
    if isinstance(choice, AfterHoursIn):
        at, field = now + timedelta(hours=choice.after_hours), "auto_undeploy.after_hours"
    else:
        at, field = choice.at, "auto_undeploy.at"
    if at < now + AUTO_UNDEPLOY_MIN:
        raise ValidationFailed.of(field, "The automatic undeploy must be at least 5 minutes from now.")
    if at > now + AUTO_UNDEPLOY_MAX:
        raise ValidationFailed.of(field, "The automatic undeploy must be at most 30 days ahead.")
    # Stored and shown as the whole minute the schedule fires at, never before the time asked for.
    return fire_time(at)


def deploy(
    ctx: Context, identity: Identity, name: str, request: DeployIn, *, correlation_id: str
) -> ModelRecord:
    """`POST .../deploy`: `not_deployed` → `deploying`, and start the deployment workflow. The model is
    read, checked and moved as one: when something else wrote it in between (the email its training
    owed being recorded as sent, right after training ended), all three are done again."""
    message = f"Deployment requested by {identity.email}."
    for attempt in range(1, DEPLOY_ATTEMPTS + 1):
        model = ctx.models.get(identity.workspace, name)
        check_action(Action.DEPLOY, model.status, model.name)
        # Refused before anything is made when no endpoint could load the model (an unmerged LoRA
        # adapter without its merged copy), rather than after waiting for an endpoint that fails.
        serving_archive(model)
        now = ctx.now()
        undeploy_at = auto_undeploy_at(request.auto_undeploy, now)
        instance = _endpoint_instance(ctx, model, request)
        count = (request.instance_count or 1) if instance else None
        try:
            deploying = ctx.models.transition(
                identity.workspace,
                model.name,
                {S.NOT_DEPLOYED},
                S.DEPLOYING,
                ModelChanges(
                    deployment=DeploymentState(
                        execution_arn=ctx.workflows.deployment_arn(model, now),
                        requested_at=now,
                        auto_undeploy_at=undeploy_at,
                        hourly_usd=_hourly_usd(ctx, model, instance, count),
                        instance_type=instance.name if instance else None,
                        instance_count=count,
                    )
                ),
                message=message,
                expected_version=model.version,
            )
            break
        except Conflict as changed:
            if type(changed) is not Conflict or attempt == DEPLOY_ATTEMPTS:
                raise  # a clash the status table explains, or a model that keeps changing
    try:
        ctx.workflows.start_deployment(
            deploying, requested_at=now, correlation_id=correlation_id, auto_undeploy_at=undeploy_at
        )
    except Exception as error:
        logger.exception("Could not start the deployment execution", extra={"model": model.name})
        ctx.models.try_transition(
            identity.workspace,
            model.name,
            {S.DEPLOYING},
            S.NOT_DEPLOYED,
            ModelChanges(deployment=None),
            message="tunelab could not start the deployment workflow; nothing was deployed.",
        )
        raise TunelabError(
            f"tunelab could not start the deployment of '{model.name}'; it is still Not deployed. "
            "Try again in a minute."
        ) from error
    announce.status_changed(
        ctx, deploying, previous=S.NOT_DEPLOYED, reason=message, correlation_id=correlation_id
    )
    return deploying


def _endpoint_instance(ctx: Context, model: ModelRecord, request: DeployIn) -> InstanceType | None:
    """The instance type a SageMaker endpoint runs on (`resources.serving_instance`); None for a model
    served without one (Bedrock, local), where asking for one is refused."""
    spec = ctx.catalog.model(model.base_model_id)
    if spec.deployment.method != "sagemaker_endpoint":
        for field, value in (
            ("instance_type", request.instance_type),
            ("instance_count", request.instance_count),
        ):
            if value is not None:
                raise ValidationFailed.of(
                    field, f"{spec.name} is not served on a SageMaker endpoint: it takes no {field}."
                )
        return None
    if spec.parameter_count is None:  # the catalog requires it of every SageMaker model
        raise ValidationFailed.of("instance_type", f"{spec.name} has no parameter count to size an endpoint.")
    return serving_instance(
        spec.parameter_count,
        ctx.catalog.instances,
        requested=request.instance_type,
        default=spec.deployment.default_instance_type,
    )


def _hourly_usd(ctx: Context, model: ModelRecord, instance: InstanceType | None, count: int | None) -> float:
    """The deployment's price per hour: a SageMaker endpoint's instance price × count (the catalog's
    instance price is its SageMaker training price list's: tunelab holds no separate hosting price);
    elsewhere the one its prediction showed, else the catalog's."""
    if instance is not None:
        return usd(instance.price_per_hour_usd * (count or 1))
    if model.predicted_cost is not None:
        return model.predicted_cost.deployment_per_hour_usd
    spec = ctx.catalog.model(model.base_model_id)
    region = spec.training_region(ctx.config.aws_region, ctx.config.provider_regions)
    return usd(spec.pricing.in_region(region).deployment_per_hour_usd)


def change_auto_undeploy(
    ctx: Context, identity: Identity, name: str, request: DeploymentPatchIn
) -> ModelRecord:
    """`PATCH .../deployment`: move a deployed model's auto-undeploy (its schedule and reminder move
    with it) or cancel it (`auto_undeploy: null` deletes them). `InvalidState` unless deployed; the
    time follows the deploy request's rules, counted from now."""
    model = ctx.models.get(identity.workspace, name)
    deployment = model.deployment
    if model.status != S.DEPLOYED or deployment is None:
        raise invalid_state(model, {S.DEPLOYED})
    now = ctx.now()
    undeploy_at = auto_undeploy_at(request.auto_undeploy, now)
    requested_at = deployment.requested_at
    names = _schedules_of(model.identity, deployment)
    if undeploy_at is None:
        if names:
            ctx.scheduler.delete(*names)
        changed = deployment.model_copy(update={"auto_undeploy_at": None, "schedule_name": None})
        message = f"Automatic undeploy cancelled by {identity.email}."
    else:
        if requested_at is None:
            # A deployment recorded before its request time was kept: its schedules cannot be renamed.
            raise InvalidState(
                f"The deployment of '{model.name}' predates changing its automatic undeploy; "
                "undeploy and deploy it again."
            )
        # Same names (they derive from the deploy request): the schedules are updated in place.
        plan = ctx.scheduler.create_auto_undeploy(
            model.identity,
            uid=model.uid,
            requested_at=requested_at,
            undeploy_at=undeploy_at,
            deployed_at=deployment.deployed_at,
        )
        if plan.reminder_name is None:
            ctx.scheduler.delete(schedule_names(model.identity, requested_at)[1])
        changed = deployment.model_copy(
            update={"auto_undeploy_at": plan.undeploy_at, "schedule_name": plan.undeploy_name}
        )
        message = (
            f"Automatic undeploy moved to {plan.undeploy_at.strftime('%Y-%m-%d %H:%M UTC')} "
            f"by {identity.email}."
        )
    try:
        updated = ctx.models.update(
            identity.workspace, model.name, ModelChanges(deployment=changed), expected_status={S.DEPLOYED}
        )
    except InvalidState:
        # Undeployed meanwhile: the undeploy deleted its schedules; these may have been made after it.
        if names:
            ctx.scheduler.delete(*names)
        raise
    ctx.models.add_message(identity.workspace, model.name, message, at=now)
    return updated


def invoke(ctx: Context, identity: Identity, name: str, request: InvokeIn) -> InvokeResult:
    """`POST .../invoke`: one call of the deployed model (the sandbox)."""
    model = ctx.models.get(identity.workspace, name)
    check_action(Action.INVOKE, model.status, model.name)
    ref = model.refs.deployment
    if ref is None:
        raise InvalidState(
            f"Model '{model.name}' is Deployed but its endpoint is not recorded yet; retry shortly."
        )
    with connection_health.rechecked_if_refused(ctx, model):
        return ctx.providers.for_model(model).invoke(
            ref,
            InvokeParams(
                prompt=request.prompt,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                top_p=request.top_p,
            ),
        )


def undeploy(
    ctx: Context,
    workspace: str,
    name: str,
    *,
    by: str,
    correlation_id: str,
    reason: str | None = None,
    only_if: Collection[ModelStatus] | None = None,
) -> ModelRecord:
    """Undeploy the model: the provider's deployment and the auto-undeploy schedules are deleted (what
    is already gone is skipped), the model is `not_deployed`; the bus and the creator are told.

    `by` says who asked (a user's email, "auto-undeploy", "provider"); `reason` is shown in the
    history and the email. `only_if` narrows the statuses accepted (default: deploying or deployed);
    `InvalidState` otherwise. A deployment still being created is removed as far as it exists; its
    workflow finds the model no longer deploying and removes anything it creates after this.
    """
    model = ctx.models.get(workspace, name)
    allowed = set(ACTIONS[Action.UNDEPLOY]) & set(
        only_if if only_if is not None else ACTIONS[Action.UNDEPLOY]
    )
    if model.status not in allowed:
        check_action(Action.UNDEPLOY, model.status, name)
        raise InvalidState(f"Cannot undeploy model '{name}' this way: its status is {model.status.label}.")
    with connection_health.rechecked_if_refused(ctx, model):
        _remove(ctx, model, model.refs.deployment)
    message = reason or f"Undeployed by {by}."
    ran = _ran(ctx, model)
    cost_changes: dict[str, Any] = {}
    history = message
    if ran is not None:
        # Kept in the history: what this deployment ran and cost.
        history += f" It ran {ran.hours:.2f} hours and cost ${ran.cost_usd:,.2f}."
        cost_changes = {
            "last_deployment": ran,
            "deployments_cost_usd": usd(model.deployments_cost_usd + ran.cost_usd),
        }
    updated = ctx.models.try_transition(
        workspace,
        name,
        allowed,
        S.NOT_DEPLOYED,
        ModelChanges(
            deployment=None, refs=model.refs.model_copy(update={"deployment": None}), **cost_changes
        ),
        message=history,
    )
    if updated is None:
        current = ctx.models.get(workspace, name)
        if current.status == S.NOT_DEPLOYED:
            # Settled meanwhile by someone else (the deployment workflow, an endpoint event).
            return current
        check_action(Action.UNDEPLOY, current.status, name)
        raise InvalidState(f"Model '{name}' changed while it was being undeployed; try again.")
    announce.status_changed(
        ctx, updated, previous=model.status, reason=message, correlation_id=correlation_id
    )
    # The email gives a reason only where there is one beyond who asked (the schedule, the provider).
    announce.tell_creator(ctx, "undeployed", updated, reason=reason)
    logger.info("Model undeployed", extra={"workspace_id": workspace, "model": name, "by": by})
    return updated


def _ran(ctx: Context, model: ModelRecord) -> DeploymentCost | None:
    """The hours and cost of the deployment ending now; None if it never came into service."""
    return model.deployment_cost(ctx.now(), ended=True)


def undeploy_for(ctx: Context, identity: Identity, name: str, *, correlation_id: str) -> ModelRecord:
    """`POST .../undeploy`: the caller undeploys their model."""
    return undeploy(ctx, identity.workspace, name, by=identity.email, correlation_id=correlation_id)


def _schedules_of(
    identity: ModelIdentity, deployment: DeploymentState | None, requested_at: datetime | None = None
) -> list[str]:
    """The auto-undeploy schedules (the undeploy and its reminder) of one deployment."""
    at = requested_at or (deployment.requested_at if deployment else None)
    if at is not None:
        return list(schedule_names(identity, at))
    # A deployment recorded before its request time was kept: its schedule's name and the reminder's.
    name = deployment.schedule_name if deployment else None
    if not name:
        return []
    return [name, *([name.removesuffix("-undeploy") + "-remind"] if name.endswith("-undeploy") else [])]


def _remove(
    ctx: Context, model: ModelRecord, ref: DeploymentRef | None, *, requested_at: datetime | None = None
) -> None:
    """The one clean-up of a deployment: the provider's deployment (when one was made) and its
    auto-undeploy schedules; parts already gone are skipped, so a retry completes."""
    if ref is not None:
        ctx.providers.for_model(model).undeploy(ref)
    names = _schedules_of(model.identity, model.deployment, requested_at)
    if names:
        ctx.scheduler.delete(*names)


# --- the deployment workflow -------------------------------------------------------------------------


def _find(ctx: Context, workspace_id: str, name: str, uid: str) -> ModelRecord | None:
    record = ctx.models.find(workspace_id, name)
    return record if record is not None and record.uid == uid else None


def start_deployment(ctx: Context, event: StartDeploymentEvent) -> StartedDeployment:
    """Create the provider's deployment (idempotent: names and tokens from the request time) and the
    auto-undeploy schedules, and keep them on the record; remove them at once if the model was
    undeployed meanwhile."""
    record = _find(ctx, event.workspace_id, event.model_name, event.uid)
    if record is None or record.status != S.DEPLOYING:
        raise DeploymentCancelled(f"The fine-tuned model '{event.model_name}' is no longer being deployed.")
    # The model with full weights: model.tar.gz, or an unmerged LoRA model's merged copy.
    archive = serving_archive(record)
    # The instance chosen at deploy (kept on the record), else the workflow input's.
    instance_type = (record.deployment and record.deployment.instance_type) or event.instance_type
    request = DeployRequest(
        identity=record.identity,
        requested_at=event.requested_at,
        base_model=ctx.catalog.model(record.base_model_id),
        model_ref=record.refs.model_ref,
        artifacts_uri=archive.uri if archive else (record.artifacts.uri if record.artifacts else None),
        artifacts_path=(archive.model_path or None) if archive else None,
        instance_type=instance_type,
        instance_count=(record.deployment and record.deployment.instance_count) or event.instance_count,
        gpus_per_instance=_gpus(ctx, instance_type),
        tags={PROVIDER_RESOURCE_TAG: record.workspace_id},
    )
    ref = ctx.providers.for_model(record).deploy(request)
    # The schedules are made now, with the deployment (the time was chosen with the request); a
    # deployment that then fails removes them again (FinishDeployment "failed").
    auto = None
    if event.auto_undeploy_at is not None:
        auto = ctx.scheduler.create_auto_undeploy(
            record.identity,
            uid=record.uid,
            requested_at=event.requested_at,
            undeploy_at=event.auto_undeploy_at,
        )
    deployment = (record.deployment or DeploymentState()).model_copy(
        update={
            "endpoint": ref.deployment_id,
            "endpoint_arn": None,
            "requested_at": event.requested_at,
            "auto_undeploy_at": auto.undeploy_at if auto else None,
            "schedule_name": auto.undeploy_name if auto else None,
        }
    )
    try:
        ctx.models.update(
            record.workspace_id,
            record.name,
            ModelChanges(deployment=deployment, refs=record.refs.model_copy(update={"deployment": ref})),
            expected_status={S.DEPLOYING},
        )
    except InvalidState:
        _remove(ctx, record, ref, requested_at=event.requested_at)
        raise DeploymentCancelled(
            f"'{record.name}' was undeployed while its deployment was created."
        ) from None
    return StartedDeployment(deployment_id=ref.deployment_id)


def _gpus(ctx: Context, instance_type: str | None) -> int:
    instance = ctx.catalog.find_instance(instance_type) if instance_type else None
    return instance.gpus if instance else 1


def _check(ctx: Context, event: FinishDeploymentEvent) -> DeploymentOutcome:
    state = event.state
    record = _find(ctx, state.workspace_id, state.model_name, state.uid)
    if record is None or record.status != S.DEPLOYING:
        return DeploymentOutcome(status="cancelled")
    ref = record.refs.deployment
    if ref is None:
        return DeploymentOutcome(status="failed", reason="The deployment was not created.")
    started = event.started_at or state.requested_at
    if ctx.now() - started > timedelta(seconds=state.timeout_seconds):
        minutes = round(state.timeout_seconds / 60)
        return DeploymentOutcome(
            status="timed_out",
            deployment_id=ref.deployment_id,
            reason=f"The deployment did not come into service within {minutes} minutes, so it was removed.",
        )
    described = ctx.providers.for_model(record).describe_deployment(ref)
    if described.status in ("in_service", "creating"):
        return DeploymentOutcome(status=described.status, deployment_id=ref.deployment_id)
    if described.status == "failed":
        return DeploymentOutcome(
            status="failed",
            deployment_id=ref.deployment_id,
            reason=described.reason or "The provider reported that the deployment failed without saying why.",
        )
    return DeploymentOutcome(
        status="failed",
        deployment_id=ref.deployment_id,
        reason="The deployment was deleted before it came into service.",
    )


def _deployed(ctx: Context, event: FinishDeploymentEvent) -> FinishedDeployment:
    state = event.state
    record = _find(ctx, state.workspace_id, state.model_name, state.uid)
    if record is None:
        return FinishedDeployment(status=None, notification=None)
    deployment = (record.deployment or DeploymentState()).model_copy(update={"deployed_at": ctx.now()})
    owed = PendingEmail(kind="deployed", since=ctx.now())
    updated = ctx.models.try_transition(
        record.workspace_id,
        record.name,
        {S.DEPLOYING},
        S.DEPLOYED,
        ModelChanges(deployment=deployment, pending_email=owed),
    )
    if updated is None:
        current = ctx.models.get(record.workspace_id, record.name)
        if current.status != S.DEPLOYED:
            # Undeployed while it came into service: the undeploy removed the deployment; drop the schedules.
            _remove(ctx, record, None, requested_at=state.requested_at)
            return FinishedDeployment(status=current.status.value, notification=None)
        updated = current
    announce.status_changed(
        ctx, updated, previous=S.DEPLOYING, reason=None, correlation_id=state.correlation_id, strict=True
    )
    return FinishedDeployment(status=updated.status.value, notification="deployed")


def _failure_reason(event: FinishDeploymentEvent, public: Callable[[str], str]) -> str:
    state = event.state
    if state.error is not None:
        kind = state.error.error_type()
        message = state.error.message()
        message = public(message) if message else message
        if kind == ProviderTransientError.__name__:
            return f"The provider stayed unavailable after several retries ({message}). Try again later."
        if isinstance(message, str) and kind in _TOLD_AS_IS:
            return message
        detail = f": {message[:300]}" if message else ""
        return f"tunelab could not complete the deployment ({kind}{detail})."
    if state.check is not None:
        return state.check.Payload.reason or "The deployment failed."
    return "The deployment failed."


def _failed(ctx: Context, event: FinishDeploymentEvent) -> FinishedDeployment:
    state = event.state
    record = _find(ctx, state.workspace_id, state.model_name, state.uid)
    if record is None:
        return FinishedDeployment(status=None, notification=None)
    # Provider and AWS text may name the platform's roles, buckets and files: the tenant reads it without.
    reason = redaction.public_reason(
        ctx, record, _failure_reason(event, lambda text: redaction.public_reason(ctx, record, text))
    )
    connection_health.recheck_if_refused_task(ctx, record, state.error)
    # Nothing is left behind: the deployment (if any) and the schedules (if any) go first.
    live = record.status in {S.DEPLOYING, S.DEPLOYED}
    _remove(ctx, record, record.refs.deployment if live else None, requested_at=state.requested_at)
    updated = ctx.models.try_transition(
        record.workspace_id,
        record.name,
        {S.DEPLOYING, S.DEPLOYED},
        S.NOT_DEPLOYED,
        ModelChanges(
            deployment=None,
            refs=record.refs.model_copy(update={"deployment": None}),
            pending_email=PendingEmail(kind="deploy_failed", reason=reason, since=ctx.now()),
        ),
        message=f"Deployment failed: {reason}",
    )
    if updated is None:
        current = ctx.models.get(record.workspace_id, record.name)
        return FinishedDeployment(status=current.status.value, notification=None, reason=reason)
    announce.status_changed(
        ctx, updated, previous=record.status, reason=reason, correlation_id=state.correlation_id, strict=True
    )
    return FinishedDeployment(status=updated.status.value, notification="deploy_failed", reason=reason)


def finish_deployment(ctx: Context, event: FinishDeploymentEvent) -> DeploymentOutcome | FinishedDeployment:
    """ "check": how the deployment stands; "deployed": record it; "failed": remove what was created
    and go back to not_deployed with the reason."""
    if event.mode == "check":
        return _check(ctx, event)
    if event.mode == "deployed":
        return _deployed(ctx, event)
    return _failed(ctx, event)


# --- the auto-undeploy schedules ---------------------------------------------------------------------

ScheduleAction = Literal["undeployed", "reminded", "ignored"]


@dataclass(frozen=True)
class ScheduleResult:
    action: ScheduleAction
    reason: str


def handle_schedule(ctx: Context, payload: Mapping[str, Any], *, correlation_id: str) -> ScheduleResult:
    """Carry out one auto-undeploy schedule's input. A schedule acts only on the deployment it was made
    for: the same life of the name (`uid`), `deployed`, carrying that deployment's schedule. A schedule
    of an earlier deployment that fires late changes nothing."""
    order = ScheduleInput.model_validate(payload)
    model = ctx.models.find(order.workspace_id, order.model_name)
    why_not = _why_not(model, order)
    if why_not is not None or model is None:
        logger.info("Schedule ignored", extra={"reason": why_not, "model": order.model_name})
        return ScheduleResult(action="ignored", reason=why_not or "the model is gone")
    if order.action == "remind":
        # Raised on failure: Scheduler retries the invocation.
        announce.tell_creator(ctx, "undeploy_reminder", model, at=order.undeploy_at, strict=True)
        return ScheduleResult(action="reminded", reason=f"{model.created_by.email} was reminded")
    undeploy(
        ctx,
        model.workspace_id,
        model.name,
        reason=AUTO_UNDEPLOY_REASON,
        by="auto-undeploy",
        correlation_id=correlation_id,
        only_if={S.DEPLOYED},
    )
    return ScheduleResult(action="undeployed", reason=AUTO_UNDEPLOY_REASON)


def _why_not(model: ModelRecord | None, order: ScheduleInput) -> str | None:
    if model is None or model.uid != order.uid:
        return "the model was deleted (or its name now belongs to another model)"
    if model.status != S.DEPLOYED:
        return f"the model is {model.status.label}, not deployed"
    undeploy_name, _ = schedule_names(model.identity, order.deployment_requested_at)
    if model.deployment is None or model.deployment.schedule_name != undeploy_name:
        return "the schedule belongs to an earlier deployment of the model"
    return None


# --- what providers say about a deployment ---------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    applied: bool
    reason: str


def apply_deployment_state(
    ctx: Context, model: ModelRecord, state: ProviderDeployment, *, at: datetime, correlation_id: str
) -> Applied:
    """An endpoint (or Bedrock deployment) that failed or went away outside tunelab: a deployed model is
    undeployed with the reason; one still deploying gets a message (its workflow settles the status)."""
    if state.status in ("creating", "in_service"):
        return Applied(False, f"the endpoint is {state.status}; nothing to do")
    if state.status == "deleting" and model.status != S.DEPLOYED:
        # tunelab's own clean-up of a deployment that did not come into service.
        return Applied(False, "the endpoint of a model not deployed is being deleted")
    endpoint = state.deployment_id
    what = {
        "failed": f"The endpoint {endpoint} failed" + (f": {state.reason}" if state.reason else "."),
        # SageMaker may say Deleting and nothing after: a deployed model's endpoint going away is enough.
        "deleting": f"The endpoint {endpoint} is being deleted outside tunelab.",
        "gone": f"The endpoint {endpoint} was deleted outside tunelab.",
    }[state.status]
    what = redaction.public_reason(ctx, model, what)  # the provider's words and its deployment's ARN
    if model.status != S.DEPLOYED:
        # The deployment workflow polls the endpoint while deploying and settles it itself.
        ctx.models.add_message(model.workspace_id, model.name, what, at=at)
        return Applied(True, "message recorded; the deployment workflow settles the status")
    undeploy(
        ctx,
        model.workspace_id,
        model.name,
        reason=f"{what} The model is no longer deployed.",
        by="provider",
        correlation_id=correlation_id,
        only_if={S.DEPLOYED},
    )
    return Applied(True, f"the endpoint is {state.status}; the model was undeployed")
