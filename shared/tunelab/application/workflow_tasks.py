"""The core of each workflow task: what PrepareData, StartTraining, FinishTraining, Notify,
StartDeployment and FinishDeployment do, given the services and their parsed event.

Rules every task follows:

* It acts only on the model life it was started for (`uid`): a model deleted and created again
  under the same name is not touched by an old execution.
* It is idempotent: a retried task finds the job, deployment or schedule it made before (names
  and tokens derive from the record), and a status already written is not written twice.
* Transient faults are raised as `ProviderTransientError` (the state machine retries them); anything
  else is caught by the state machine into the failure path, whose task (FinishTraining,
  FinishDeployment "failed") writes a final status with a reason a person understands.
"""

from __future__ import annotations

import json
import logging
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from tunelab.adapters.aws_errors import aws_call
from tunelab.adapters.providers.sagemaker import DEFAULT_MAX_RUNTIME_S as SAGEMAKER_MAX_RUNTIME_S
from tunelab.application.workflows import (
    DeploymentOutcome,
    FinishDeploymentEvent,
    FinishedDeployment,
    FinishedTraining,
    FinishTrainingEvent,
    NotificationKind,
    NotifyEvent,
    NotifyResult,
    PrepareDataEvent,
    PreparedData,
    StartDeploymentEvent,
    StartedDeployment,
    StartTrainingEvent,
    TaskError,
    TrainingOutcome,
)
from tunelab.composition.stack_definitions import PROVIDER_RESOURCE_TAG
from tunelab.composition.wiring import Services, model_identity
from tunelab.domain.datasets import SplitPlan, convert_split, convert_to_jsonl, validate_dataset
from tunelab.domain.errors import InvalidState, TunelabError, ValidationFailed
from tunelab.domain.events import EventPublisher, model_status_changed
from tunelab.domain.hyperparameters import (
    provider_splits_validation,
    to_provider_params,
    to_trainer_hyperparameters,
)
from tunelab.domain.notifications import Notifier, compose
from tunelab.domain.providers import (
    DeploymentRef,
    DeployRequest,
    ParentModel,
    ProviderTransientError,
    TrainingJobRef,
    TrainingRequest,
    s3_split,
)
from tunelab.domain.providers import Resources as ProviderResources
from tunelab.domain.records import Artifacts, DeploymentState, Metrics, ModelRecord, utcnow
from tunelab.domain.schedules import Scheduler
from tunelab.domain.status import ModelStatus

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

S = ModelStatus
TRAINING_STATES = frozenset({S.TRAINING, S.STOPPING_TRAINING})

# How long the workflow waits for the provider's job before giving up and stopping it: SageMaker's
# own limit (the job's MaxRuntimeInSeconds) plus time to queue, download and upload; Bedrock
# states no limit, so a week; the local runtime trains small models.
STARTUP_MARGIN_S = 2 * 3600
TRAINING_TIMEOUT_S: dict[str, int] = {
    "bedrock": 7 * 24 * 3600,
    "sagemaker": SAGEMAKER_MAX_RUNTIME_S + STARTUP_MARGIN_S,
    "local": 12 * 3600,
}
# The task token is kept a day past the wait, so a late event still finds (and drops) it.
TOKEN_TTL_MARGIN = timedelta(days=1)
# model.tar.gz up to this size is listed file by file (streamed); larger ones only by size.
LIST_ARCHIVE_MAX_BYTES = 512 * 1024 * 1024
# S3 Standard, us-east-1, first 50 TB: https://aws.amazon.com/s3/pricing/ (2026-11).
S3_STANDARD_PER_GB_MONTH_USD = 0.023
SUMMARY_FILE = "tunelab-training.json"
# Up to this size the JSONL is built in memory; beyond it in a temporary file (Lambda's /tmp).
SPOOL_BYTES = 64 * 1024 * 1024


class TrainingCancelled(TunelabError):  # noqa: N818  # the ASL catches it by this name
    """The model stopped being trained before the job started (a stop request, or it is gone)."""

    code = "training_cancelled"
    status = 409


class DeploymentCancelled(TunelabError):  # noqa: N818  # the ASL catches it by this name
    """The model was undeployed (or deleted) before the deployment started."""

    code = "deployment_cancelled"
    status = 409


# --- helpers ----------------------------------------------------------------------------------------


def _find(services: Services, workspace_id: str, name: str, uid: str) -> ModelRecord | None:
    """The model record of this life, or None when it was deleted (or replaced under the same name)."""
    record = services.repository.find_model(workspace_id, name)
    if record is None or record.uid != uid:
        return None
    return record


def _publisher(services: Services) -> EventPublisher:
    return EventPublisher(services.events, services.settings.event_bus_name)


def _publish_status(
    services: Services,
    record: ModelRecord,
    previous: ModelStatus | None,
    reason: str | None,
    correlation_id: str,
) -> None:
    event = model_status_changed(
        record, previous_status=previous, reason=reason, correlation_id=correlation_id
    )
    _publisher(services).publish(event)


def _job_ref(record: ModelRecord) -> TrainingJobRef | None:
    raw = record.provider_data.get("training_job")
    return TrainingJobRef.model_validate(raw) if raw else None


def _deployment_ref(record: ModelRecord) -> DeploymentRef | None:
    raw = record.provider_data.get("deployment")
    return DeploymentRef.model_validate(raw) if raw else None


@dataclass(frozen=True)
class DataStore:
    """Where a model's training data goes: where its provider's job can read it."""

    s3: S3Client
    bucket: str
    prefix: str

    def uri(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}/{name}"


def _customer_s3(services: Services, workspace_id: str) -> tuple[S3Client, str]:
    from tunelab.adapters.providers.sagemaker import assumed_session  # noqa: PLC0415  # only SageMaker models need it

    connection = services.sagemaker_connection(workspace_id)
    session = assumed_session(connection, workspace_id, base=services.session)
    return session.client("s3", region_name=connection.region), connection.artifact_bucket


def data_store(services: Services, record: ModelRecord) -> DataStore:
    """SageMaker (BYOK): the customer's artifact bucket, through their role — the job in their account
    reads only from there. Bedrock and local: the platform's artifacts bucket."""
    if record.provider == "sagemaker":
        s3, bucket = _customer_s3(services, record.workspace_id)
        return DataStore(s3, bucket, f"tunelab/{record.workspace_id}/{record.name}/data/{record.uid}")
    return DataStore(
        services.s3,
        services.settings.artifacts_bucket,
        f"training-data/{record.workspace_id}/{record.name}/{record.uid}",
    )


def _artifacts_s3(services: Services, record: ModelRecord) -> S3Client:
    if record.provider == "sagemaker":
        return _customer_s3(services, record.workspace_id)[0]
    return services.s3


@contextmanager
def _spool() -> Iterator[BinaryIO]:
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as buffer:
        yield cast("BinaryIO", buffer)


def _upload(store: DataStore, name: str, body: BinaryIO) -> str:
    body.seek(0)
    key = f"{store.prefix}/{name}"
    with aws_call(f"Writing the training data to s3://{store.bucket}/{key}", permission="s3:PutObject"):
        store.s3.upload_fileobj(body, store.bucket, key, ExtraArgs={"ContentType": "application/jsonl"})
    return store.uri(name)


def _open_dataset(services: Services, workspace_id: str, dataset_id: str) -> tuple[Any, int | None]:
    dataset = services.repository.get_dataset(workspace_id, dataset_id)
    if dataset.status != "ready" or not dataset.s3_key:
        raise ValidationFailed.of(
            "dataset_id", f"Dataset {dataset_id} is {dataset.status}; a training job needs a ready dataset."
        )
    bucket = services.settings.datasets_bucket
    with aws_call(f"Reading the dataset {dataset.name}", permission="s3:GetObject on the datasets bucket"):
        body = services.s3.get_object(Bucket=bucket, Key=dataset.s3_key)["Body"]
    return body, dataset.rows


def _training_timeout(record: ModelRecord, override: int | None) -> int:
    if override:
        return override
    return TRAINING_TIMEOUT_S.get(record.provider, TRAINING_TIMEOUT_S["bedrock"])


# --- PrepareData -------------------------------------------------------------------------------------


def prepare_data(services: Services, event: PrepareDataEvent) -> PreparedData:
    """CSV → the provider's JSONL (`training_data_format`), with the validation split or the validation
    dataset, written where the provider's job reads (see `data_store`)."""
    record = _find(services, event.workspace_id, event.model_name, event.uid)
    if record is None:
        raise TrainingCancelled(
            f"The fine-tuned model '{event.model_name}' was deleted before training started."
        )
    if record.status == S.STOPPING_TRAINING:
        raise TrainingCancelled("Training was stopped before the job started.")
    if record.status != S.TRAINING:
        raise InvalidState(f"The model is {ModelStatus(record.status).label}; there is nothing to train.")
    spec = services.catalog.model(record.base_model_id)
    fmt = spec.training_data_format
    store = data_store(services, record)
    validation = record.validation
    training_rows = validation_rows = 0
    validation_uri: str | None = None
    with _spool() as train_out:
        if validation.mode == "split" and not provider_splits_validation(spec):
            # The split needs the count of valid rows first; the dataset's validation recorded it.
            body, rows = _open_dataset(services, record.workspace_id, record.dataset.id)
            if not rows:
                rows = validate_dataset(body).rows
                body, _ = _open_dataset(services, record.workspace_id, record.dataset.id)
            plan = SplitPlan(rows, int(validation.percent or 10))
            with _spool() as validation_out:
                report, training_rows, validation_rows = convert_split(
                    body, train_out, validation_out, fmt, plan
                )
                report.raise_for_errors()
                validation_uri = _upload(store, "validation.jsonl", validation_out)
        else:
            body, _ = _open_dataset(services, record.workspace_id, record.dataset.id)
            report = convert_to_jsonl(body, train_out, fmt)
            report.raise_for_errors()
            training_rows = report.rows
            if validation.mode == "dataset" and validation.dataset is not None:
                body, _ = _open_dataset(services, record.workspace_id, validation.dataset.id)
                with _spool() as validation_out:
                    checked = convert_to_jsonl(body, validation_out, fmt)
                    checked.raise_for_errors()
                    validation_rows = checked.rows
                    validation_uri = _upload(store, "validation.jsonl", validation_out)
        training_uri = _upload(store, "train.jsonl", train_out)
    services.repository.update_model(
        record.workspace_id,
        record.name,
        {
            "training": record.training.model_copy(
                update={"data_uri": training_uri, "phase": "Preparing data"}
            )
        },
    )
    return PreparedData(
        training_data_uri=training_uri,
        validation_data_uri=validation_uri,
        training_rows=training_rows,
        validation_rows=validation_rows,
        training_timeout_seconds=_training_timeout(record, event.training_timeout_seconds),
    )


# --- StartTraining -----------------------------------------------------------------------------------


def training_request(services: Services, record: ModelRecord, prepared: PreparedData) -> TrainingRequest:
    """The provider's training request for the record (hyperparameters in the provider's names)."""
    spec = services.catalog.model(record.base_model_id)
    resolved = record.hyperparameters
    if record.provider == "bedrock":
        split = None
        if record.validation.mode == "split" and provider_splits_validation(spec):
            split = float(record.validation.percent or 10)
        hyperparameters = to_provider_params(resolved, spec, provider_split_percent=split)
    else:
        hyperparameters = to_trainer_hyperparameters(resolved, record.optional_hyperparameters)
    parent = None
    if record.base_fine_tuned_model:
        source = services.repository.get_model(record.workspace_id, record.base_fine_tuned_model)
        parent = ParentModel(
            model_ref=source.provider_data.get("model_ref"),
            artifacts_uri=source.artifacts.uri if source.artifacts else None,
        )
    resources = (
        ProviderResources(
            instance_type=record.resources.instance_type,
            instance_count=record.resources.instance_count,
            volume_size_gb=record.resources.volume_size_gb,
        )
        if record.resources
        else None
    )
    return TrainingRequest(
        identity=model_identity(record),
        base_model=spec,
        parent=parent,
        training_data_uri=prepared.training_data_uri,
        validation_data_uri=prepared.validation_data_uri,
        hyperparameters=hyperparameters,
        resources=resources,
        tags={PROVIDER_RESOURCE_TAG: record.workspace_id},
    )


def start_training(services: Services, event: StartTrainingEvent) -> TrainingJobRef:
    """Keep the task token on the record, start the provider's job (idempotent), record its id.

    The token is stored before the job starts, so an event about the job always finds it.
    """
    repo = services.repository
    record = _find(services, event.workspace_id, event.model_name, event.uid)
    if record is None:
        raise TrainingCancelled(
            f"The fine-tuned model '{event.model_name}' was deleted before training started."
        )
    if record.status == S.STOPPING_TRAINING:
        raise TrainingCancelled("Training was stopped before the job started.")
    if record.status != S.TRAINING:
        raise InvalidState(f"The model is {ModelStatus(record.status).label}; there is nothing to train.")
    ttl = timedelta(seconds=event.prepared.training_timeout_seconds) + TOKEN_TTL_MARGIN
    repo.put_task_token(record.workspace_id, record.name, "training", event.task_token, ttl=ttl)
    provider = services.provider_for(record)
    ref = provider.start_training(training_request(services, record, event.prepared))
    now = utcnow()
    training = record.training.model_copy(
        update={
            "job_id": ref.job_id,
            "execution_arn": event.execution_arn,
            "started_at": record.training.started_at or now,
            "output_uri": ref.output_uri,
            "phase": "Starting",
        }
    )
    try:
        updated = repo.update_model(
            record.workspace_id,
            record.name,
            {
                "training": training,
                "provider_data": {**record.provider_data, "training_job": ref.model_dump()},
            },
            expected_status=TRAINING_STATES,
        )
    except InvalidState:
        updated = repo.get_model(record.workspace_id, record.name)
    if updated.status == S.STOPPING_TRAINING:
        # A stop asked while the job was being created found no job id to stop: stop it now.
        provider.stop_training(ref)
    return ref


# --- FinishTraining ----------------------------------------------------------------------------------


def _reason_of(error: TaskError, timeout_s: int | None) -> tuple[ModelStatus, str]:
    """The status and the sentence a person reads for an error the state machine caught."""
    kind = error.error_type()
    message = error.message()
    if kind == "States.Timeout" or error.Error == "States.Timeout":
        hours = f"{timeout_s / 3600:g} hours" if timeout_s else "its time limit"
        return S.TRAINING_FAILED, (
            f"The training job did not finish within {hours}, tunelab's limit for it, so it was stopped."
        )
    if kind == "TrainingCancelled":
        return S.TRAINING_STOPPED, message or "Training was stopped before the job started."
    if kind in {
        "ValidationFailed",
        "NotFound",
        "NameTaken",
        "ProviderPermissionDenied",
        "Forbidden",
        "ProviderError",
    }:
        return S.TRAINING_FAILED, message or kind
    if kind == "ProviderTransientError":
        return S.TRAINING_FAILED, (
            f"The provider stayed unavailable after several retries ({message}). Start the job again later."
        )
    detail = f": {message[:300]}" if message else ""
    return S.TRAINING_FAILED, f"tunelab could not run the training workflow ({kind}{detail})."


def _metrics(record: ModelRecord, outcome: TrainingOutcome) -> Metrics | None:
    known = {k: v for k, v in (outcome.metrics or {}).items() if k in Metrics.model_fields and v is not None}
    base = record.training.metrics.model_dump() if record.training.metrics else {}
    merged = {**base, **known}
    return Metrics.model_validate(merged) if merged else None


def _merged_flag(record: ModelRecord) -> bool:
    optional = record.optional_hyperparameters
    return optional is not None and optional.use_lora and optional.merge_adapters


def describe_archive(s3: S3Client, uri: str, *, merged_default: bool) -> Artifacts:
    """Size, files and merged flag of a `model.tar.gz`; the file list only up to LIST_ARCHIVE_MAX_BYTES."""
    bucket, key = s3_split(uri)
    with aws_call(f"Reading the artifacts {uri}", permission="s3:GetObject"):
        size = int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
    files: list[str] = []
    merged = merged_default
    if size <= LIST_ARCHIVE_MAX_BYTES:
        with aws_call(f"Reading the artifacts {uri}", permission="s3:GetObject"):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            with tarfile.open(fileobj=body, mode="r|gz") as archive:
                for member in archive:
                    if not member.isfile():
                        continue
                    name = member.name.removeprefix("./")
                    files.append(name)
                    if name == SUMMARY_FILE:
                        extracted = archive.extractfile(member)
                        summary = json.loads(extracted.read()) if extracted else {}
                        merged = bool((summary.get("artifacts") or {}).get("merged", merged))
    return Artifacts(uri=uri, size_bytes=size, files=sorted(files), merged=merged)


def _completed_changes(services: Services, record: ModelRecord, outcome: TrainingOutcome) -> dict[str, Any]:
    now = utcnow()
    provider_data = dict(record.provider_data)
    model_ref = outcome.model_ref
    artifacts_uri = outcome.artifacts_uri
    ref = _job_ref(record)
    if ((model_ref is None and record.provider == "bedrock") or artifacts_uri is None) and ref is not None:
        state = services.provider_for(record).describe_training(ref)
        model_ref = model_ref or state.model_ref
        artifacts_uri = artifacts_uri or state.artifacts_uri
    if model_ref:
        provider_data["model_ref"] = model_ref
    storage = record.storage_per_month_usd
    if record.provider == "bedrock":
        # Bedrock keeps the weights; its output folder holds only the job's metrics.
        artifacts = Artifacts(uri=artifacts_uri, size_bytes=None, files=[], merged=False)
    elif artifacts_uri:
        try:
            artifacts = describe_archive(
                _artifacts_s3(services, record), artifacts_uri, merged_default=_merged_flag(record)
            )
        except ProviderTransientError:
            raise
        except (TunelabError, tarfile.TarError, OSError, ValueError) as error:
            # The weights exist; only their listing failed (e.g. the role may not read them): the
            # model is still usable, its file list stays empty.
            logger.warning("could not list the artifacts %s of %s: %s", artifacts_uri, record.name, error)
            artifacts = Artifacts(uri=artifacts_uri, merged=_merged_flag(record))
        if artifacts.size_bytes is not None:
            rate = 0.0 if record.provider == "local" else S3_STANDARD_PER_GB_MONTH_USD
            storage = round(artifacts.size_bytes / 1e9 * rate, 2)
    else:
        raise ValidationFailed("The job completed but reported no artifacts; the model cannot be used.")
    training = record.training.model_copy(
        update={
            "ended_at": now,
            "phase": "Completed",
            "failure_reason": None,
            "metrics": _metrics(record, outcome),
        }
    )
    return {
        "training": training,
        "artifacts": artifacts,
        "storage_per_month_usd": storage,
        "provider_data": provider_data,
    }


def _stop_job(services: Services, record: ModelRecord) -> None:
    ref = _job_ref(record)
    if ref is None:
        return
    try:
        services.provider_for(record).stop_training(ref)
    except ProviderTransientError:
        raise
    except (TunelabError, NotImplementedError) as error:
        # The status still changes; the reconciler and the provider's own limits end the job.
        logger.warning("could not stop the job %s of %s: %s", ref.job_name, record.name, error)


_NOTIFICATION: dict[ModelStatus, NotificationKind] = {
    S.NOT_DEPLOYED: "training_completed",
    S.TRAINING_FAILED: "training_failed",
    S.TRAINING_STOPPED: "training_stopped",
}


def finish_training(services: Services, event: FinishTrainingEvent) -> FinishedTraining:
    """Write the training's final status — the only writer of it — and publish the domain event."""
    repo = services.repository
    record = _find(services, event.workspace_id, event.model_name, event.uid)
    if record is None:
        return FinishedTraining(status=None, notification=None, reason="the model no longer exists")
    timeout = event.training_timeout_seconds or TRAINING_TIMEOUT_S.get(record.provider)
    changes: dict[str, Any]
    if event.outcome is not None:
        outcome = event.outcome
        if outcome.outcome == "completed":
            target, reason = S.NOT_DEPLOYED, None
            try:
                changes = (
                    _completed_changes(services, record, outcome) if record.status in TRAINING_STATES else {}
                )
            except ProviderTransientError:
                raise
            except TunelabError as unusable:
                target, reason = (
                    S.TRAINING_FAILED,
                    f"The job completed, but its result cannot be used: {unusable}",
                )
                changes = {}
        else:
            target = S.TRAINING_FAILED if outcome.outcome == "failed" else S.TRAINING_STOPPED
            reason = outcome.reason or (
                "The provider reported that the job failed without saying why."
                if outcome.outcome == "failed"
                else None
            )
            changes = {}
    else:
        error = event.error or TaskError(
            Error="States.Runtime", Cause="FinishTraining ran without an outcome"
        )
        target, reason = _reason_of(error, timeout)
        if record.status in TRAINING_STATES:
            _stop_job(services, record)
        changes = {}
    if target != S.NOT_DEPLOYED and record.status in TRAINING_STATES:
        changes = {
            "training": record.training.model_copy(
                update={
                    "ended_at": utcnow(),
                    "phase": "Failed" if target == S.TRAINING_FAILED else "Stopped",
                    "failure_reason": reason,
                }
            )
        }
    previous = ModelStatus(record.status)
    updated = repo.try_transition(
        record.workspace_id, record.name, TRAINING_STATES, target, changes, message=reason
    )
    if updated is None:
        current = repo.get_model(record.workspace_id, record.name)
        if current.status != target:
            # Someone else ended it another way: tell nobody twice.
            return FinishedTraining(status=current.status.value, notification=None, reason=reason)
        updated, previous = current, ModelStatus(current.status)
    repo.delete_task_token(record.workspace_id, record.name, "training")
    _publish_status(services, updated, previous, reason, event.correlation_id)
    return FinishedTraining(status=updated.status.value, notification=_NOTIFICATION[target], reason=reason)


# --- Notify ------------------------------------------------------------------------------------------


def send_notification(services: Services, event: NotifyEvent) -> NotifyResult:
    """Email the model's creator about `event.notification`."""
    record = _find(services, event.workspace_id, event.model_name, event.uid)
    if record is None:
        return NotifyResult(sent=False, why_not="the model no longer exists")
    settings = services.settings
    notifier = Notifier(
        services.sesv2, sender=settings.sender_email, configuration_set=settings.ses_configuration_set
    )
    email = compose(event.notification, record, reason=event.reason, at=event.at)
    message_id = notifier.send(email)
    logger.info("sent the %s email about %s", event.notification, record.name)
    return NotifyResult(sent=True, message_id=message_id)


# --- deployment --------------------------------------------------------------------------------------


def _scheduler(services: Services) -> Scheduler:
    settings = services.settings
    return Scheduler(
        services.scheduler,
        group=settings.schedule_group,
        role_arn=settings.scheduler_role_arn,
        target_arn=settings.auto_undeploy_target_arn,
        dead_letter_arn=settings.schedules_dlq_arn,
    )


def start_deployment(services: Services, event: StartDeploymentEvent) -> StartedDeployment:
    """Create the provider's deployment (idempotent: names and tokens from the request time) and keep
    it on the record; undeploy at once if the model was undeployed meanwhile."""
    repo = services.repository
    record = _find(services, event.workspace_id, event.model_name, event.uid)
    if record is None or record.status != S.DEPLOYING:
        raise DeploymentCancelled(f"The fine-tuned model '{event.model_name}' is no longer being deployed.")
    spec = services.catalog.model(record.base_model_id)
    request = DeployRequest(
        identity=model_identity(record),
        requested_at=event.requested_at,
        base_model=spec,
        model_ref=record.provider_data.get("model_ref"),
        artifacts_uri=record.artifacts.uri if record.artifacts else None,
        instance_type=event.instance_type,
        instance_count=event.instance_count,
        tags={PROVIDER_RESOURCE_TAG: record.workspace_id},
    )
    provider = services.provider_for(record)
    ref = provider.deploy(request)
    # The auto-undeploy schedules are made now, with the deployment (the time was chosen with the
    # request); a deployment that fails removes them again (FinishDeployment "failed").
    scheduler = _scheduler(services)
    auto = None
    if event.auto_undeploy_at is not None:
        auto = scheduler.create_auto_undeploy(
            request.identity,
            uid=record.uid,
            requested_at=event.requested_at,
            undeploy_at=event.auto_undeploy_at,
        )
    deployment = (record.deployment or DeploymentState()).model_copy(
        update={
            "endpoint": ref.deployment_id,
            "endpoint_arn": None,
            "auto_undeploy_at": auto.undeploy_at if auto else None,
            "schedule_name": auto.undeploy_name if auto else None,
        }
    )
    try:
        repo.update_model(
            record.workspace_id,
            record.name,
            {
                "deployment": deployment,
                "provider_data": {**record.provider_data, "deployment": ref.model_dump()},
            },
            expected_status={S.DEPLOYING},
        )
    except InvalidState:
        provider.undeploy(ref)
        scheduler.delete_auto_undeploy(request.identity, event.requested_at)
        raise DeploymentCancelled(
            f"'{record.name}' was undeployed while its deployment was created."
        ) from None
    return StartedDeployment(deployment_id=ref.deployment_id)


def _check(services: Services, event: FinishDeploymentEvent) -> DeploymentOutcome:
    state = event.state
    record = _find(services, state.workspace_id, state.model_name, state.uid)
    if record is None or record.status != S.DEPLOYING:
        return DeploymentOutcome(status="cancelled")
    ref = _deployment_ref(record)
    if ref is None:
        return DeploymentOutcome(status="failed", reason="The deployment was not created.")
    started = event.started_at or state.requested_at
    if utcnow() - started > timedelta(seconds=state.timeout_seconds):
        minutes = round(state.timeout_seconds / 60)
        return DeploymentOutcome(
            status="timed_out",
            deployment_id=ref.deployment_id,
            reason=f"The deployment did not come into service within {minutes} minutes, so it was removed.",
        )
    described = services.provider_for(record).describe_deployment(ref)
    if described.status == "in_service":
        return DeploymentOutcome(status="in_service", deployment_id=ref.deployment_id)
    if described.status == "creating":
        return DeploymentOutcome(status="creating", deployment_id=ref.deployment_id)
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


def _deployed(services: Services, event: FinishDeploymentEvent) -> FinishedDeployment:
    state = event.state
    repo = services.repository
    record = _find(services, state.workspace_id, state.model_name, state.uid)
    if record is None:
        return FinishedDeployment(status=None, notification=None)
    identity = model_identity(record)
    deployment = (record.deployment or DeploymentState()).model_copy(update={"deployed_at": utcnow()})
    updated = repo.try_transition(
        record.workspace_id, record.name, {S.DEPLOYING}, S.DEPLOYED, {"deployment": deployment}
    )
    if updated is None:
        current = repo.get_model(record.workspace_id, record.name)
        if current.status != S.DEPLOYED:
            # Undeployed while it came into service: the undeploy removed the deployment; drop the schedules.
            _scheduler(services).delete_auto_undeploy(identity, state.requested_at)
            return FinishedDeployment(status=current.status.value, notification=None)
        updated = current
    _publish_status(services, updated, S.DEPLOYING, None, state.correlation_id)
    return FinishedDeployment(status=updated.status.value, notification="deployed")


def _failed(services: Services, event: FinishDeploymentEvent) -> FinishedDeployment:
    state = event.state
    repo = services.repository
    record = _find(services, state.workspace_id, state.model_name, state.uid)
    if record is None:
        return FinishedDeployment(status=None, notification=None)
    if state.error is not None:
        kind = state.error.error_type()
        message = state.error.message()
        if kind == "ProviderTransientError":
            reason = f"The provider stayed unavailable after several retries ({message}). Try again later."
        elif isinstance(message, str) and kind in {
            "ValidationFailed",
            "ProviderError",
            "ProviderPermissionDenied",
        }:
            reason = message
        else:
            detail = f": {message[:300]}" if message else ""
            reason = f"tunelab could not complete the deployment ({kind}{detail})."
    elif state.check is not None:
        reason = state.check.Payload.reason or "The deployment failed."
    else:
        reason = "The deployment failed."
    # Nothing is left behind: the deployment (if any) and the schedules (if any) go first.
    ref = _deployment_ref(record)
    if ref is not None and record.status in {S.DEPLOYING, S.DEPLOYED}:
        services.provider_for(record).undeploy(ref)
    _scheduler(services).delete_auto_undeploy(model_identity(record), state.requested_at)
    provider_data = {k: v for k, v in record.provider_data.items() if k != "deployment"}
    updated = repo.try_transition(
        record.workspace_id,
        record.name,
        {S.DEPLOYING, S.DEPLOYED},
        S.NOT_DEPLOYED,
        {"deployment": None, "provider_data": provider_data},
        message=f"Deployment failed: {reason}",
    )
    if updated is None:
        current = repo.get_model(record.workspace_id, record.name)
        return FinishedDeployment(status=current.status.value, notification=None, reason=reason)
    _publish_status(services, updated, ModelStatus(record.status), reason, state.correlation_id)
    return FinishedDeployment(status=updated.status.value, notification="deploy_failed", reason=reason)


def finish_deployment(
    services: Services, event: FinishDeploymentEvent
) -> DeploymentOutcome | FinishedDeployment:
    """ "check": how the deployment stands; "deployed": record it and schedule the auto-undeploy;
    "failed": remove what was created and go back to not_deployed with the reason."""
    if event.mode == "check":
        return _check(services, event)
    if event.mode == "deployed":
        return _deployed(services, event)
    return _failed(services, event)
