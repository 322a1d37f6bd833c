"""What users (through the API) and tunelab itself (events, schedules, the reconciler) do to a model
in the same way: stop its training, undeploy it, delete it.

Each operation checks the status table (`tunelab.domain.status`: `InvalidState` naming the status when the
action is not possible), calls the provider, changes the record with a `status_changed` event,
publishes "Fine-tuned Model Status Changed" on tunelab's bus and tells the creator by email where
the change is theirs to know. Provider calls come first where a failure must leave the model as it
was; cleanups tolerate what is already gone, so a retry completes.

Publishing and emailing happen after the record changed: a failure there is logged, not raised —
the change happened, and a retry of the request would only be refused by the status table.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from tunelab.domain.errors import InUse, InvalidState
from tunelab.domain.events import EventPublisher, model_deleted, model_status_changed
from tunelab.domain.notifications import Notifier, compose
from tunelab.domain.providers import DeploymentRef, TrainedModel, TrainingJobRef, s3_split
from tunelab.domain.records import ModelRecord, utcnow
from tunelab.domain.schedules import Scheduler
from tunelab.domain.status import ACTIONS, Action, ModelStatus, check_action

if TYPE_CHECKING:
    from tunelab.composition.wiring import Services

logger = Logger(child=True)

# `provider_data` keys the workflows write and the operations read: the provider's own references.
TRAINING_JOB_KEY = "training_job"  # a TrainingJobRef as a dict
DEPLOYMENT_KEY = "deployment"  # a DeploymentRef as a dict
MODEL_REF_KEY = "model_ref"  # Bedrock: the custom model's ARN

_REMINDER_SUFFIX = "-remind"
_UNDEPLOY_SUFFIX = "-undeploy"


# --- references to what the provider holds ------------------------------------------------------------


def training_job_ref(model: ModelRecord) -> TrainingJobRef | None:
    """The provider's job of this model (kept by the StartTraining task), or None before it started."""
    stored = model.provider_data.get(TRAINING_JOB_KEY)
    return TrainingJobRef.model_validate(stored) if isinstance(stored, dict) else None


def deployment_ref(model: ModelRecord) -> DeploymentRef | None:
    """The provider's deployment of this model (kept by the StartDeployment task), or None."""
    stored = model.provider_data.get(DEPLOYMENT_KEY)
    return DeploymentRef.model_validate(stored) if isinstance(stored, dict) else None


def schedule_names_of(model: ModelRecord) -> list[str]:
    """The auto-undeploy schedules of the model's current deployment (the undeploy one and its reminder)."""
    name = model.deployment.schedule_name if model.deployment else None
    if not name:
        return []
    reminder = (
        name.removesuffix(_UNDEPLOY_SUFFIX) + _REMINDER_SUFFIX if name.endswith(_UNDEPLOY_SUFFIX) else None
    )
    return [name, *([reminder] if reminder else [])]


# --- the clients the operations use ----------------------------------------------------------------------


def scheduler(services: Services) -> Scheduler:
    settings = services.settings
    return Scheduler(
        services.scheduler,
        group=settings.schedule_group,
        role_arn=settings.scheduler_role_arn,
        target_arn=settings.auto_undeploy_target_arn,
    )


def notifier(services: Services) -> Notifier:
    settings = services.settings
    return Notifier(
        services.sesv2, sender=settings.sender_email, configuration_set=settings.ses_configuration_set
    )


def publisher(services: Services) -> EventPublisher:
    return EventPublisher(services.events, services.settings.event_bus_name)


# --- the operations -----------------------------------------------------------------------------------------


def stop_training(services: Services, workspace: str, name: str, *, by: str) -> ModelRecord:
    """Stop the model's training: the provider is asked to stop the job, then the model is
    `stopping_training`. The fine-tuning workflow settles it (`training_stopped`, or `not_deployed`
    when the job completed first) once the provider confirms.

    `InvalidState` unless the model is `training`; a provider refusal leaves it `training`. When the
    job has not been started yet, the model becomes `stopping_training` at once and the stop is
    issued as soon as the job exists (the reconciler re-issues stops of models stuck stopping).
    """
    repository = services.repository
    model = repository.get_model(workspace, name)
    check_action(Action.STOP, model.status, name)
    ref = training_job_ref(model)
    if ref is not None:
        services.provider_for(model).stop_training(ref)
        message = f"Stop requested by {by}."
    else:
        message = f"Stop requested by {by}; the job will be stopped as soon as it has started."
    updated = repository.transition(
        workspace, name, {ModelStatus.TRAINING}, ModelStatus.STOPPING_TRAINING, message=message
    )
    _publish(services, updated, previous=model.status, reason=message)
    return updated


def undeploy_model(
    services: Services,
    workspace: str,
    name: str,
    *,
    reason: str | None = None,
    by: str,
    only_if: Collection[ModelStatus] | None = None,
) -> ModelRecord:
    """Undeploy the model: the provider's deployment is deleted (what is already gone is skipped),
    the auto-undeploy schedules deleted, the model `not_deployed`; the bus and the creator are told.

    `by` says who asked (a user's email, "auto-undeploy", "provider"); `reason` is shown in the
    history and the email. `only_if` narrows the statuses accepted (default: deploying or deployed).
    `InvalidState` when the model is not in one of them. A deployment still being created is
    removed as far as it exists; its workflow finds the model no longer deploying and removes
    anything it creates after this.
    """
    repository = services.repository
    model = repository.get_model(workspace, name)
    allowed = set(ACTIONS[Action.UNDEPLOY]) & set(
        only_if if only_if is not None else ACTIONS[Action.UNDEPLOY]
    )
    if model.status not in allowed:
        check_action(Action.UNDEPLOY, model.status, name)
        raise InvalidState(f"Cannot undeploy model '{name}' this way: its status is {model.status.label}.")
    ref = deployment_ref(model)
    if ref is not None:
        services.provider_for(model).undeploy(ref)
    schedules = scheduler(services)
    for schedule in schedule_names_of(model):
        schedules.delete(schedule)
    message = reason or f"Undeployed by {by}."
    provider_data = {k: v for k, v in model.provider_data.items() if k != DEPLOYMENT_KEY}
    updated = repository.try_transition(
        workspace,
        name,
        allowed,
        ModelStatus.NOT_DEPLOYED,
        {"deployment": None, "provider_data": provider_data},
        message=message,
    )
    if updated is None:
        current = repository.get_model(workspace, name)
        if current.status == ModelStatus.NOT_DEPLOYED:
            # Settled meanwhile by someone else (the deployment workflow, an endpoint event).
            return current
        check_action(Action.UNDEPLOY, current.status, name)
        raise InvalidState(f"Model '{name}' changed while it was being undeployed; try again.")
    _publish(services, updated, previous=model.status, reason=message)
    _email(services, updated, "undeployed", reason=reason)
    logger.info("Model undeployed", extra={"workspace_id": workspace, "model": name, "by": by})
    return updated


def delete_model(services: Services, workspace: str, name: str, *, by: str) -> ModelRecord:
    """Delete the model and everything tunelab made for it: the provider's trained model and files,
    the prepared training data and outputs in tunelab's buckets, the record, its history and tokens.

    `InvalidState` while it trains, stops, deploys or is deployed; `InUse` while a model continuing
    from it is training (its job reads this one's weights). The provider goes first: if it refuses,
    the record stays, so nothing is left behind unseen. "Fine-tuned Model Deleted" is published last.
    """
    repository = services.repository
    model = repository.get_model(workspace, name)
    check_action(Action.DELETE, model.status, name)
    continuing = _training_from(services, workspace, name)
    if continuing:
        listed = ", ".join(f"'{child}'" for child in continuing)
        raise InUse(
            f"Model '{name}' cannot be deleted while {listed} "
            f"{'is' if len(continuing) == 1 else 'are'} training from it; "
            "wait for that training to end or stop it first."
        )
    from tunelab.composition.wiring import model_identity  # noqa: PLC0415  # wiring imports the providers

    stored_ref = model.provider_data.get(MODEL_REF_KEY)
    trained = TrainedModel(
        identity=model_identity(model),
        job=training_job_ref(model),
        model_ref=stored_ref if isinstance(stored_ref, str) else None,
        artifacts_uri=model.artifacts.uri if model.artifacts else None,
    )
    services.provider_for(model).delete_model(trained)
    for uri in (model.training.data_uri, model.training.output_uri):
        if uri:
            _delete_platform_objects(services, uri, model)
    deleted = repository.delete_model(workspace, name, allowed=ACTIONS[Action.DELETE])
    logger.info("Model deleted", extra={"workspace_id": workspace, "model": name, "by": by})
    try:
        publisher(services).publish(model_deleted(deleted, at=utcnow(), by=by))
    except Exception:
        logger.exception("Could not publish the deletion", extra={"model": name})
    return deleted


def _training_from(services: Services, workspace: str, name: str) -> list[str]:
    """Names of the workspace's models that continue from `name` and are training or stopping."""
    found: list[str] = []
    token: str | None = None
    while True:
        page = services.repository.list_models(
            workspace,
            limit=100,
            next_token=token,
            status={ModelStatus.TRAINING, ModelStatus.STOPPING_TRAINING},
        )
        found += [m.name for m in page.items if m.base_fine_tuned_model == name]
        token = page.next_token
        if token is None:
            return found


# --- helpers ---------------------------------------------------------------------------------------------


def _delete_platform_objects(services: Services, uri: str, model: ModelRecord) -> None:
    """Delete the folder of `uri` when it is in tunelab's own buckets and belongs to this model's life
    alone (`.../<workspace>/<model>/<uid or job digest>/...`); anything else is the provider's."""
    try:
        bucket, key = s3_split(uri)
    except ValueError:
        return
    settings = services.settings
    if bucket not in {settings.datasets_bucket, settings.artifacts_bucket}:
        return
    prefix = key if key.endswith("/") else key.rsplit("/", 1)[0] + "/"
    own = f"/{model.workspace_id}/{model.name}/"
    _, found, rest = f"/{prefix}".partition(own)
    if not found or not rest.strip("/"):
        logger.warning("Not deleting a folder that is not this model's alone", extra={"uri": uri})
        return
    s3 = services.s3
    token: dict[str, Any] = {}
    while True:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, **token)
        keys = [{"Key": item["Key"]} for item in listed.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})  # type: ignore[typeddict-item]
        if not listed.get("IsTruncated"):
            return
        token = {"ContinuationToken": listed["NextContinuationToken"]}


def _publish(services: Services, record: ModelRecord, *, previous: ModelStatus, reason: str | None) -> None:
    try:
        publisher(services).publish(model_status_changed(record, previous_status=previous, reason=reason))
    except Exception:
        logger.exception("Could not publish the status change", extra={"model": record.name})


def _email(services: Services, record: ModelRecord, kind: Any, *, reason: str | None) -> None:
    try:
        notifier(services).send(compose(kind, record, reason=reason))
    except Exception:
        logger.exception("Could not send the email", extra={"model": record.name, "kind": kind})
