"""The application service behind the API: what a request asks for, checked up front, then done whole.

Routes stay thin: each parses its request and calls one function here; the rules live in the domain
modules (catalog, naming, hyperparameters, datasets, costs, resources, status) and this module only
puts them in order, talks to the repository, S3, Step Functions and the providers, and makes sure
nothing is left half-done.

Decisions a user will notice (the API's contract leaves them open):

* A request that names another resource of the workspace in its body (`dataset_id`,
  `validation.dataset_id`, `base_fine_tuned_model`) that does not exist or is not usable (a dataset
  not ready, a model that never finished training) is 400 `validation_error` naming that field;
  404 is kept for the resource in the path.
* A base model that is not available in this deployment — a cloud model in the local runtime, a local
  model on AWS, a Bedrock model outside its regions, or a model whose fine-tuning AWS has retired —
  is 400 naming why (`contracts.model_availability`). Retired models stay listed (the product shows
  them) but are never started: Bedrock would refuse the job after the user acknowledged a cost.
* Fine-tuned models: if Step Functions refuses to start the execution, the record that was just
  written is deleted (its name is free again, its datasets released) and the request fails with
  500; if even the delete fails, the record is marked `training_failed` with the reason. A retry
  with the same Idempotency-Key runs again (a failed first attempt stores no response).
* Deploy: `auto_undeploy` must fall between 5 minutes and 30 days from the request.
* Datasets uploaded in the body: only a `ready` dataset's CSV is kept (at `datasets/<ws>/<id>.csv`,
  where the upload handler keeps validated uploads too); an `invalid` one keeps its report only.
  Dataset names follow `contracts.DatasetName`: 1–100 letters, digits, '.', '_' or '-', starting
  with a letter or digit, unique in the workspace regardless of case.
* SageMaker connection: replacing it with another account or region, or deleting it, is refused
  (409 `in_use`) while a SageMaker model trains, stops, deploys or is deployed — tunelab would lose
  the way to stop what bills in the customer's account. Re-verifying the same account is allowed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from tunelab.application import operations
from tunelab.application.dataset_uploads import dataset_key, upload_key
from tunelab.application.workflows import (
    deployment_execution_name,
    execution_arn,
    execution_name,
    start_deployment,
    start_fine_tuning,
)
from tunelab.domain.catalog import BaseModelSpec, InstanceType
from tunelab.domain.costs import Method, SageMakerRun, estimate_cost
from tunelab.domain.datasets import (
    DatasetReport,
    DatasetStats,
    RowTokens,
    SplitPlan,
    check_for_model,
    model_warnings,
    validate_dataset,
)
from tunelab.domain.errors import (
    ErrorDetail,
    Forbidden,
    InUse,
    InvalidState,
    TunelabError,
    ValidationFailed,
)
from tunelab.domain.events import model_status_changed
from tunelab.domain.hyperparameters import (
    Hardware,
    ResolvedHyperparameters,
    ResolvedOptionalHyperparameters,
    check_provider_split,
    has_validation_data,
    provider_splits_validation,
    resolve_training_parameters,
)
from tunelab.domain.identity import Identity, byok_allowed
from tunelab.domain.providers import InvokeParams, SageMakerConnection
from tunelab.domain.records import (
    Creator,
    DatasetLongRow,
    DatasetRecord,
    DatasetRef,
    DatasetRowError,
    DatasetWarning,
    DeploymentState,
    ModelRecord,
    ProviderConnectionRecord,
    Resources,
    TrainingState,
    ValidationChoice,
    new_dataset_id,
    utcnow,
)
from tunelab.domain.records import DatasetStats as DatasetStatsRecord
from tunelab.domain.resources import Precision, check_resources
from tunelab.domain.schedules import fire_time
from tunelab.domain.status import Action, ModelStatus, check_action
from tunelab.domain.tokens import TOKEN_BOUNDS
from tunelab.entrypoints.api.contracts import (
    AfterHoursIn,
    AtIn,
    CostEstimateIn,
    CostEstimateOut,
    CreateFineTunedModelIn,
    DatasetValidationIn,
    DeployIn,
    DownloadOut,
    InvokeIn,
    InvokeOut,
    PutSageMakerProviderIn,
    SplitValidationIn,
    UploadOut,
    UsageOut,
    model_availability,
)

if TYPE_CHECKING:
    from tunelab.composition.wiring import Services

logger = Logger(child=True)

# How long a presigned dataset upload URL stays valid.
UPLOAD_URL_SECONDS = 3600
UPLOAD_CONTENT_TYPE = "text/csv"
AUTO_UNDEPLOY_MIN = timedelta(minutes=5)
AUTO_UNDEPLOY_MAX = timedelta(days=30)
# Statuses in which a SageMaker model runs or bills in the customer's account.
_ACTIVE = frozenset(
    {ModelStatus.TRAINING, ModelStatus.STOPPING_TRAINING, ModelStatus.DEPLOYING, ModelStatus.DEPLOYED}
)


# --- fine-tuning: the plan checked before anything starts ------------------------------------------


@dataclass(frozen=True)
class TrainingPlan:
    """Everything a fine-tuning request resolves to; made only when every check passed."""

    spec: BaseModelSpec
    parent: ModelRecord | None
    dataset: DatasetRecord
    validation: ValidationChoice
    resources: Resources | None
    hyperparameters: ResolvedHyperparameters
    optional_hyperparameters: ResolvedOptionalHyperparameters | None
    cost: CostEstimateOut


def plan_training(services: Services, identity: Identity, request: CostEstimateIn) -> TrainingPlan:
    """Check a fine-tuning request the way `POST /v1/fine-tuned-models` does (everything but the name's
    uniqueness and the acknowledgement) and resolve it: base model, datasets, validation, resources,
    hyperparameters and the predicted cost.

    Raises `ValidationFailed` (400) naming the field at fault, `Forbidden` (403) for SageMaker on a plan
    without BYOK.
    """
    workspace = identity.workspace
    spec, parent = _base_model(services, workspace, request)
    _check_provider_access(services, workspace, spec)

    dataset = _ready_dataset(services, workspace, request.dataset_id, "dataset_id")
    rows = dataset.rows or 0
    validation, validation_dataset, validation_rows = _validation(services, workspace, request, spec, dataset)
    training_rows = rows - validation_rows if validation.mode == "split" else rows

    instance, hardware = _hardware(services, request, spec)
    has_validation = has_validation_data(validation.mode, spec)
    hyperparameters, optional = resolve_training_parameters(
        request.hyperparameters,
        request.optional_hyperparameters,
        spec,
        has_validation=has_validation,
        hardware=hardware,
    )

    errors = _dataset_errors(dataset, spec, "dataset_id", training_rows=training_rows, validation_rows=None)
    notes = _dataset_notes(dataset, spec)
    if validation_dataset is not None:
        errors += _dataset_errors(
            validation_dataset,
            spec,
            "validation.dataset_id",
            training_rows=None,
            validation_rows=validation_rows,
        )
        notes += _dataset_notes(validation_dataset, spec)
    elif validation.mode == "split":
        errors += [
            e
            for e in check_for_model(
                DatasetReport(rows=rows), spec, training_rows=training_rows, validation_rows=validation_rows
            )
            if e.field == "validation"
        ]
    if errors:
        raise ValidationFailed(
            errors[0].message if len(errors) == 1 else f"The dataset cannot train {spec.name}; see details.",
            errors,
        )

    resources: Resources | None = None
    run: SageMakerRun | None = None
    if instance is not None and request.resources is not None:
        method: Method = "lora" if optional is not None and optional.use_lora else "full"
        resources = Resources(
            instance_type=instance.name,
            instance_count=request.resources.instance_count,
            volume_size_gb=request.resources.volume_size_gb,
        )
        notes += check_resources(
            spec,
            instance,
            resources.instance_count,
            resources.volume_size_gb,
            method=method,
            precision=_precision(optional),
            dataset_bytes=dataset.size_bytes or 0,
            sequence_length=_sequence_length(dataset, spec),
            batch_size=hyperparameters.batch_size or 1,
        )
        run = SageMakerRun.from_catalog(
            services.catalog,
            instance_type=instance.name,
            instance_count=resources.instance_count,
            volume_size_gb=resources.volume_size_gb,
            method=method,
        )

    total_tokens = _dataset_tokens(dataset)
    tokens_per_epoch = round(total_tokens * training_rows / rows) if rows else 0
    cost = estimate_cost(
        spec,
        tokens_per_epoch=tokens_per_epoch,
        epochs=hyperparameters.epochs,
        token_error=(TOKEN_BOUNDS.low_factor, TOKEN_BOUNDS.high_factor),
        sagemaker=run,
    )
    if parent is not None:
        notes.append(f"Training continues from the fine-tuned model '{parent.name}' ({spec.name}).")
    if notes:
        cost = cost.model_copy(update={"notes": [*cost.notes, *dict.fromkeys(notes)]})
    return TrainingPlan(
        spec=spec,
        parent=parent,
        dataset=dataset,
        validation=validation,
        resources=resources,
        hyperparameters=hyperparameters,
        optional_hyperparameters=optional,
        cost=cost,
    )


def estimate(services: Services, identity: Identity, request: CostEstimateIn) -> CostEstimateOut:
    """`POST /v1/cost-estimates`: the predicted cost of the request, nothing started or stored."""
    return plan_training(services, identity, request).cost


def _base_model(
    services: Services, workspace: str, request: CostEstimateIn
) -> tuple[BaseModelSpec, ModelRecord | None]:
    settings = services.settings
    parent: ModelRecord | None = None
    if request.base_fine_tuned_model is not None:
        field = "base_fine_tuned_model"
        parent = services.repository.find_model(workspace, request.base_fine_tuned_model)
        if parent is None:
            raise ValidationFailed.of(
                field,
                f"There is no fine-tuned model '{request.base_fine_tuned_model}' in this workspace to "
                "continue from.",
            )
        try:
            check_action(Action.CONTINUE_TRAINING, parent.status, parent.name)
        except InvalidState as refused:
            raise ValidationFailed.of(field, refused.message) from None
        spec = services.catalog.find_model(parent.base_model_id)
        if spec is None:
            raise ValidationFailed.of(
                field, f"The base model {parent.base_model_id} of '{parent.name}' is no longer offered."
            )
        has_weights = (
            parent.provider_data.get(operations.MODEL_REF_KEY)
            if parent.provider == "bedrock"
            else (parent.artifacts.uri if parent.artifacts else None)
        )
        if not has_weights:
            raise ValidationFailed.of(
                field, f"'{parent.name}' has no trained weights recorded to continue from."
            )
    else:
        field = "base_model_id"
        spec = services.catalog.find_model(request.base_model_id or "")
        if spec is None:
            raise ValidationFailed.of(
                field, f"There is no base model '{request.base_model_id}'; GET /v1/base-models lists them."
            )
    available, reason = model_availability(spec, runtime=settings.runtime, region=settings.aws_region)
    if not available:
        raise ValidationFailed.of(field, f"{spec.name} cannot be fine-tuned here: {reason}")
    return spec, parent


def _check_provider_access(services: Services, workspace: str, spec: BaseModelSpec) -> None:
    """BYOK models: the plan must include BYOK and the workspace's connection must be verified."""
    if spec.provider != "sagemaker":
        return
    plan = services.repository.get_workspace(workspace).plan
    if not byok_allowed(plan):
        raise Forbidden(
            f"{spec.name} trains in your own AWS account (SageMaker, bring your own key), which the "
            f"{plan.replace('_', ' ')} plan does not include; choose a Bedrock model or change plans."
        )
    connection = services.repository.find_provider_connection(workspace, "sagemaker")
    if connection is None or connection.status != "connected":
        raise ValidationFailed.of(
            "base_model_id",
            f"{spec.name} trains in your own AWS account: connect it first with PUT /v1/providers/sagemaker"
            + (f" (the last check said: {connection.message})" if connection and connection.message else "")
            + ".",
        )
    if spec.gated and not connection.hf_token_secret_arn:
        raise ValidationFailed.of(
            "base_model_id",
            f"{spec.name} is a gated Hugging Face model: store your Hugging Face token as a secret in your "
            "account and add its ARN as hf_token_secret_arn with PUT /v1/providers/sagemaker.",
        )


def _ready_dataset(services: Services, workspace: str, dataset_id: str, field: str) -> DatasetRecord:
    dataset = services.repository.find_dataset(workspace, dataset_id)
    if dataset is None:
        raise ValidationFailed.of(field, f"There is no dataset {dataset_id} in this workspace.")
    if dataset.status != "ready":
        why = {
            "uploading": "its file has not been uploaded yet",
            "validating": "it is still being validated; try again in a moment",
            "invalid": f"it has {dataset.error_count:,} error(s); fix them and upload it again",
        }.get(dataset.status, dataset.status)
        raise ValidationFailed.of(
            field,
            f"Dataset '{dataset.name}' ({dataset_id}) is {dataset.status}: {why}. A ready dataset is needed.",
        )
    return dataset


def _validation(
    services: Services,
    workspace: str,
    request: CostEstimateIn,
    spec: BaseModelSpec,
    dataset: DatasetRecord,
) -> tuple[ValidationChoice, DatasetRecord | None, int]:
    """The validation choice as stored, the validation dataset (if any) and the validation rows."""
    choice = request.validation
    rows = dataset.rows or 0
    if isinstance(choice, SplitValidationIn):
        if provider_splits_validation(spec):
            check_provider_split(choice.percent, spec)
            validation_rows = math.ceil(rows * choice.percent / 100)
        else:
            validation_rows = SplitPlan(rows, choice.percent).validation_rows()
        return ValidationChoice(mode="split", percent=choice.percent), None, validation_rows
    if isinstance(choice, DatasetValidationIn):
        if choice.dataset_id == dataset.dataset_id:
            raise ValidationFailed.of(
                "validation.dataset_id",
                "The validation dataset must differ from the training dataset; for a part of the same "
                'dataset use {"mode": "split", "percent": 10}.',
            )
        other = _ready_dataset(services, workspace, choice.dataset_id, "validation.dataset_id")
        ref = DatasetRef(id=other.dataset_id, name=other.name, rows=other.rows)
        return ValidationChoice(mode="dataset", dataset=ref), other, other.rows or 0
    return ValidationChoice(mode="none"), None, 0


def _hardware(
    services: Services, request: CostEstimateIn, spec: BaseModelSpec
) -> tuple[InstanceType | None, Hardware | InstanceType | None]:
    if not spec.requires_resources:
        if request.resources is not None:
            raise ValidationFailed.of(
                "resources",
                f"{spec.name} is a {spec.provider} model; resources (instance type, count, volume) apply to "
                "SageMaker models only: remove resources.",
            )
        return None, (Hardware.cpu() if spec.provider == "local" else None)
    if request.resources is None:
        raise ValidationFailed.of(
            "resources",
            f"{spec.name} trains on SageMaker: give resources with instance_type (e.g. "
            f"{spec.default_instance_type}), instance_count and volume_size_gb; POST /v1/resource-estimates "
            "advises them.",
        )
    instance = services.catalog.find_instance(request.resources.instance_type)
    if instance is None:
        offered = ", ".join(sorted(i.name for i in services.catalog.instances)[:12])
        raise ValidationFailed.of(
            "resources.instance_type",
            f"'{request.resources.instance_type}' is not a SageMaker instance type tunelab offers "
            f"({offered}, …).",
        )
    return instance, instance


def _precision(optional: ResolvedOptionalHyperparameters | None) -> Precision:
    if optional is None:
        return "bf16"
    if optional.sft_config.bf16:
        return "bf16"
    return "fp16" if optional.sft_config.fp16 else "fp32"


def _sequence_length(dataset: DatasetRecord, spec: BaseModelSpec) -> int:
    longest = dataset.stats.max_row_tokens if dataset.stats else 0
    return max(1, min(spec.context_length, longest or 2048))


def _dataset_tokens(dataset: DatasetRecord) -> int:
    stats = dataset.stats
    return (stats.prompt_tokens + stats.completion_tokens) if stats else 0


def _report_of(dataset: DatasetRecord) -> DatasetReport:
    """What the dataset's stored validation says, as the report the model checks read.

    The record keeps its longest rows; one validated before it kept them has only the longest
    length, which stands in as row 0 (unknown).
    """
    stats = dataset.stats
    longest = [RowTokens(row=r.row, tokens=r.tokens) for r in dataset.longest_rows]
    if not longest and stats and stats.max_row_tokens:
        longest = [RowTokens(row=0, tokens=stats.max_row_tokens)]
    return DatasetReport(
        rows=dataset.rows or 0,
        size_bytes=dataset.size_bytes or 0,
        stats=DatasetStats(**stats.model_dump()) if stats else DatasetStats(),
        longest_rows=longest,
    )


def _about_longest(detail: ErrorDetail, dataset: DatasetRecord, field: str) -> ErrorDetail:
    if detail.row is None:
        return detail.model_copy(update={"field": detail.field or field})
    if detail.row != 0:
        message = detail.message.replace("row is", f"Row {detail.row} of dataset '{dataset.name}' is", 1)
        return detail.model_copy(update={"field": detail.field or field, "message": message})
    message = detail.message.replace("row is", f"The longest row of dataset '{dataset.name}' is", 1)
    return ErrorDetail(field=field, message=message)


def _dataset_errors(
    dataset: DatasetRecord,
    spec: BaseModelSpec,
    field: str,
    *,
    training_rows: int | None,
    validation_rows: int | None,
) -> list[ErrorDetail]:
    report = _report_of(dataset)
    found = check_for_model(
        report,
        spec,
        training_rows=training_rows if training_rows is not None else spec.limits.min_records,
        validation_rows=validation_rows,
    )
    if training_rows is None:
        # A validation dataset: only its row lengths and its size as validation data count.
        found = [e for e in found if e.field != "dataset_id"]
    return [_about_longest(e, dataset, field) for e in found]


def _dataset_notes(dataset: DatasetRecord, spec: BaseModelSpec) -> list[str]:
    notes = []
    for warning in model_warnings(_report_of(dataset), spec):
        text = warning.message.replace("row is", f"The longest row of dataset '{dataset.name}' is", 1)
        notes.append(text if text.endswith(".") else text + ".")
    return notes


# --- fine-tuning: create ---------------------------------------------------------------------------


def create_fine_tuned_model(
    services: Services, identity: Identity, request: CreateFineTunedModelIn, *, correlation_id: str
) -> ModelRecord:
    """`POST /v1/fine-tuned-models`: check everything, store the model `training`, start its workflow.

    `NameTaken` when the workspace (or, for SageMaker, the customer's account) has that name. If the
    workflow cannot be started, the stored record is removed again (see the module's decisions).
    """
    plan = plan_training(services, identity, request)
    settings = services.settings
    now = utcnow()
    record = ModelRecord(
        workspace_id=identity.workspace,
        name=request.name,
        status=ModelStatus.TRAINING,
        provider=plan.spec.provider,
        hosting=plan.spec.hosting,
        base_model_id=plan.spec.id,
        base_model_name=plan.spec.name,
        base_fine_tuned_model=plan.parent.name if plan.parent else None,
        dataset=DatasetRef(id=plan.dataset.dataset_id, name=plan.dataset.name, rows=plan.dataset.rows),
        validation=plan.validation,
        resources=plan.resources,
        hyperparameters=plan.hyperparameters,
        optional_hyperparameters=plan.optional_hyperparameters,
        predicted_cost=plan.cost,
        storage_per_month_usd=plan.cost.storage_per_month_usd,
        created_by=Creator(email=identity.email, sub=identity.sub),
        created_at=now,
        updated_at=now,
        last_news_at=now,
    )
    # The execution's name derives from the record: its ARN is known before it starts, so no write
    # after the start races the workflow's own writes.
    arn = execution_arn(settings.fine_tuning_state_machine_arn, execution_name(record.name, record.uid))
    record = record.model_copy(
        update={"training": TrainingState(execution_arn=arn, started_at=now, phase="Starting")}
    )
    if record.provider == "sagemaker":
        _check_provider_job_name(services, record)
    stored = services.repository.create_model(record, message=f"Training requested by {identity.email}.")
    try:
        start_fine_tuning(
            services.sfn, settings.fine_tuning_state_machine_arn, stored, correlation_id=correlation_id
        )
    except Exception as error:
        _undo_create(services, stored, error)
        raise TunelabError(
            f"tunelab could not start the training workflow of '{stored.name}', so nothing was created; "
            "try again in a minute."
        ) from error
    _publish(
        services,
        stored,
        previous=None,
        reason=f"Training requested by {identity.email}.",
        correlation_id=correlation_id,
    )
    logger.info(
        "Fine-tuned model created",
        extra={"workspace_id": stored.workspace_id, "model": stored.name, "provider": stored.provider},
    )
    return stored


def _check_provider_job_name(services: Services, record: ModelRecord) -> None:
    """SageMaker job names are unique in the customer's account and region: refuse a taken one now,
    before the user waits for a workflow that would fail on it."""
    from tunelab.adapters.providers.sagemaker import SageMakerProvider  # noqa: PLC0415  # boto3-heavy, BYOK only
    from tunelab.composition.wiring import model_identity  # noqa: PLC0415  # wiring imports the providers

    provider = services.provider_for(record)
    if isinstance(provider, SageMakerProvider):
        provider.check_job_name(record.name, model_identity(record))


def _undo_create(services: Services, record: ModelRecord, error: Exception) -> None:
    logger.exception("Could not start the fine-tuning execution", extra={"model": record.name})
    repository = services.repository
    try:
        repository.delete_model(record.workspace_id, record.name, allowed={ModelStatus.TRAINING})
        return
    except Exception:
        logger.exception("Could not remove the model after a failed start", extra={"model": record.name})
    reason = (
        f"tunelab could not start the training workflow ({type(error).__name__}); delete this model and "
        "try again."
    )
    repository.try_transition(
        record.workspace_id,
        record.name,
        {ModelStatus.TRAINING},
        ModelStatus.TRAINING_FAILED,
        {"training": record.training.model_copy(update={"failure_reason": reason, "ended_at": utcnow()})},
        message=reason,
    )


# --- actions on a model ----------------------------------------------------------------------------------


def auto_undeploy_at(choice: AfterHoursIn | AtIn | None, now: datetime) -> datetime | None:
    """When a deployment requested at `now` undeploys itself; `ValidationFailed` outside 5 min–30 days."""
    if choice is None:
        return None
    if isinstance(choice, AfterHoursIn):
        at, field = now + timedelta(hours=choice.after_hours), "auto_undeploy.after_hours"
    else:
        at, field = choice.at, "auto_undeploy.at"
    if at < now + AUTO_UNDEPLOY_MIN:
        raise ValidationFailed.of(
            field, "The automatic undeploy must be at least 5 minutes after the deployment is requested."
        )
    if at > now + AUTO_UNDEPLOY_MAX:
        raise ValidationFailed.of(field, "The automatic undeploy must be at most 30 days ahead.")
    # Stored and shown as the whole minute the schedule fires at, never before the time asked for.
    return fire_time(at)


def deploy_model(
    services: Services,
    identity: Identity,
    name: str,
    request: DeployIn,
    *,
    correlation_id: str,
    now: datetime | None = None,
) -> ModelRecord:
    """`POST .../deploy`: `not_deployed` → `deploying`, and start the deployment workflow."""
    repository = services.repository
    settings = services.settings
    model = repository.get_model(identity.workspace, name)
    check_action(Action.DEPLOY, model.status, model.name)
    now = now or utcnow()
    undeploy_at = auto_undeploy_at(request.auto_undeploy, now)
    arn = execution_arn(
        settings.deployment_state_machine_arn, deployment_execution_name(model.name, model.uid, now)
    )
    message = f"Deployment requested by {identity.email}."
    deploying = repository.transition(
        identity.workspace,
        model.name,
        {ModelStatus.NOT_DEPLOYED},
        ModelStatus.DEPLOYING,
        {"deployment": DeploymentState(execution_arn=arn, auto_undeploy_at=undeploy_at)},
        message=message,
        expected_version=model.version,
    )
    try:
        start_deployment(
            services.sfn,
            settings.deployment_state_machine_arn,
            deploying,
            requested_at=now,
            correlation_id=correlation_id,
            auto_undeploy_at=undeploy_at,
            poll_seconds=settings.deploy_poll_seconds,
        )
    except Exception as error:
        logger.exception("Could not start the deployment execution", extra={"model": model.name})
        repository.try_transition(
            identity.workspace,
            model.name,
            {ModelStatus.DEPLOYING},
            ModelStatus.NOT_DEPLOYED,
            {"deployment": None},
            message="tunelab could not start the deployment workflow; nothing was deployed.",
        )
        raise TunelabError(
            f"tunelab could not start the deployment of '{model.name}'; it is still Not deployed. "
            "Try again in a minute."
        ) from error
    _publish(
        services, deploying, previous=ModelStatus.NOT_DEPLOYED, reason=message, correlation_id=correlation_id
    )
    return deploying


def invoke_model(services: Services, identity: Identity, name: str, request: InvokeIn) -> InvokeOut:
    """`POST .../invoke`: one call of the deployed model (the sandbox)."""
    model = services.repository.get_model(identity.workspace, name)
    check_action(Action.INVOKE, model.status, model.name)
    ref = operations.deployment_ref(model)
    if ref is None:
        raise InvalidState(
            f"Model '{model.name}' is Deployed but its endpoint is not recorded yet; retry shortly."
        )
    result = services.provider_for(model).invoke(
        ref,
        InvokeParams(
            prompt=request.prompt,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
        ),
    )
    return InvokeOut(
        completion=result.completion,
        usage=UsageOut(input_tokens=result.input_tokens, output_tokens=result.output_tokens),
        latency_ms=result.latency_ms,
    )


def download_model(services: Services, identity: Identity, name: str) -> DownloadOut:
    """`GET .../download`: a short-lived link to the trained archive (SageMaker and local models)."""
    model = services.repository.get_model(identity.workspace, name)
    if model.provider == "bedrock":
        raise ValidationFailed(
            f"'{model.name}' was trained on Bedrock, which keeps the weights in AWS and offers no download; "
            "models trained on SageMaker (your own account) or locally can be downloaded."
        )
    check_action(Action.DOWNLOAD, model.status, model.name)
    uri = model.artifacts.uri if model.artifacts else None
    if not uri:
        raise InvalidState(f"Model '{model.name}' has no archive recorded; its training produced no files.")
    link = services.provider_for(model).download(uri)
    return DownloadOut(
        url=link.url,
        expires_at=link.expires_at,
        size_bytes=link.size_bytes,
        files=list(model.artifacts.files) if model.artifacts else [],
    )


def _publish(
    services: Services,
    record: ModelRecord,
    *,
    previous: ModelStatus | None,
    reason: str | None,
    correlation_id: str,
) -> None:
    # The record changed already: a failure to announce it is logged, not raised.
    try:
        operations.publisher(services).publish(
            model_status_changed(
                record, previous_status=previous, reason=reason, correlation_id=correlation_id
            )
        )
    except Exception:
        logger.exception("Could not publish the status change", extra={"model": record.name})


# --- datasets ----------------------------------------------------------------------------------------


def create_dataset_from_csv(services: Services, identity: Identity, name: str, data: bytes) -> DatasetRecord:
    """`POST /v1/datasets?name=` with the CSV as the body: validated now; a ready one's CSV is kept."""
    report = validate_dataset(io.BytesIO(data))
    now = utcnow()
    dataset_id = new_dataset_id(now)
    key = dataset_key(identity.workspace, dataset_id) if report.ready else None
    record = DatasetRecord(
        workspace_id=identity.workspace,
        dataset_id=dataset_id,
        name=name,
        status="ready" if report.ready else "invalid",
        created_at=now,
        updated_at=now,
        created_by=Creator(email=identity.email, sub=identity.sub),
        s3_key=key,
        **_report_fields(report),
    )
    bucket = services.settings.datasets_bucket
    if key is not None:
        services.s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=UPLOAD_CONTENT_TYPE)
    try:
        return services.repository.create_dataset(record)
    except Exception:
        if key is not None:
            services.s3.delete_object(Bucket=bucket, Key=key)
        raise


def create_dataset_upload(
    services: Services, identity: Identity, name: str
) -> tuple[DatasetRecord, UploadOut]:
    """`POST /v1/datasets` with `{"name"}`: the dataset `uploading` and a presigned PUT for its file."""
    now = utcnow()
    record = DatasetRecord(
        workspace_id=identity.workspace,
        dataset_id=new_dataset_id(now),
        name=name,
        status="uploading",
        created_at=now,
        updated_at=now,
        created_by=Creator(email=identity.email, sub=identity.sub),
    )
    stored = services.repository.create_dataset(record)
    url = services.s3.generate_presigned_url(
        "put_object",
        Params={
            "Bucket": services.settings.datasets_bucket,
            "Key": upload_key(identity.workspace, stored.dataset_id),
            "ContentType": UPLOAD_CONTENT_TYPE,
        },
        ExpiresIn=UPLOAD_URL_SECONDS,
    )
    upload = UploadOut(
        url=url,
        headers={"Content-Type": UPLOAD_CONTENT_TYPE},
        expires_at=now + timedelta(seconds=UPLOAD_URL_SECONDS),
    )
    return stored, upload


def delete_dataset(services: Services, identity: Identity, dataset_id: str) -> None:
    """`DELETE /v1/datasets/{id}`: the record (refused with `InUse` while a model uses it), then its files."""
    repository = services.repository
    dataset = repository.get_dataset(identity.workspace, dataset_id)
    repository.delete_dataset(identity.workspace, dataset_id)
    bucket = services.settings.datasets_bucket
    keys = {upload_key(identity.workspace, dataset_id), *([dataset.s3_key] if dataset.s3_key else [])}
    services.s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": k} for k in sorted(keys)], "Quiet": True}
    )


def _report_fields(report: DatasetReport) -> dict[str, Any]:
    return {
        "size_bytes": report.size_bytes,
        "rows": report.rows,
        "stats": DatasetStatsRecord(**report.stats.model_dump()),
        "errors": [DatasetRowError(row=e.row, column=e.column, message=e.message) for e in report.errors],
        "error_count": report.error_count,
        "warnings": [DatasetWarning(row=w.row, message=w.message) for w in report.warnings],
        "longest_rows": [DatasetLongRow(row=r.row, tokens=r.tokens) for r in report.longest_rows],
    }


# --- the SageMaker (BYOK) connection -------------------------------------------------------------------

# Which request field each check of `verify_connection` is about.
_CHECK_FIELDS = {
    "sts:AssumeRole": "role_arn",
    "s3:ListBucket": "artifact_bucket",
    "s3:PutObject": "artifact_bucket",
    "sagemaker:DescribeTrainingJob": "role_arn",
    "secretsmanager:DescribeSecret": "hf_token_secret_arn",
}


def connect_sagemaker(
    services: Services, identity: Identity, request: PutSageMakerProviderIn
) -> ProviderConnectionRecord:
    """`PUT /v1/providers/sagemaker`: verify the connection (assume the role, check each permission the
    jobs need) and store it; nothing is stored when a check fails (400 naming it)."""
    from tunelab.adapters.providers.sagemaker import forget_sessions, verify_connection  # noqa: PLC0415

    workspace = identity.workspace
    repository = services.repository
    plan = repository.get_workspace(workspace).plan
    if not byok_allowed(plan):
        raise Forbidden(
            f"The {plan.replace('_', ' ')} plan does not include bring-your-own-key providers; SageMaker "
            "connections need a Subscription, Enterprise Usage Credit or Internal plan."
        )
    current = repository.find_provider_connection(workspace, "sagemaker")
    if current is not None and (
        _account_of(current.role_arn) != _account_of(request.role_arn) or current.region != request.region
    ):
        _refuse_while_active(services, workspace, "moved to another account or region")
    connection = SageMakerConnection(
        role_arn=request.role_arn,
        external_id=request.external_id,
        region=request.region,
        artifact_bucket=request.artifact_bucket,
        hf_token_secret_arn=request.hf_token_secret_arn,
    )
    check = verify_connection(connection, workspace, base=services.session)
    if not check.ok:
        raise ValidationFailed(
            check.message,
            [
                ErrorDetail(field=_CHECK_FIELDS.get(c.name), message=c.message)
                for c in check.checks
                if not c.ok
            ],
        )
    now = utcnow()
    stored = repository.put_provider_connection(
        ProviderConnectionRecord(
            workspace_id=workspace,
            role_arn=request.role_arn,
            external_id=request.external_id,
            region=request.region,
            artifact_bucket=request.artifact_bucket,
            hf_token_secret_arn=request.hf_token_secret_arn,
            status="connected",
            message=None,
            verified_at=now,
            created_at=now,
            updated_at=now,
        )
    )
    # Providers and sessions made from the old connection must not outlive it.
    services.forget_provider("sagemaker", workspace)
    forget_sessions()
    logger.info("SageMaker connected", extra={"workspace_id": workspace, "region": request.region})
    return stored


def disconnect_sagemaker(services: Services, identity: Identity) -> None:
    """`DELETE /v1/providers/sagemaker`: forget the connection (refused while SageMaker models run)."""
    from tunelab.adapters.providers.sagemaker import forget_sessions  # noqa: PLC0415

    _refuse_while_active(services, identity.workspace, "deleted")
    services.repository.delete_provider_connection(identity.workspace, "sagemaker")
    services.forget_provider("sagemaker", identity.workspace)
    forget_sessions()


def _account_of(role_arn: str) -> str:
    return role_arn.split(":")[4] if role_arn.count(":") >= 5 else role_arn


def _active_sagemaker_models(services: Services, workspace: str) -> Iterator[ModelRecord]:
    token: str | None = None
    while True:
        page = services.repository.list_models(workspace, limit=100, next_token=token, status=_ACTIVE)
        yield from (m for m in page.items if m.provider == "sagemaker")
        token = page.next_token
        if not token:
            return


def _refuse_while_active(services: Services, workspace: str, what: str) -> None:
    active = list(_active_sagemaker_models(services, workspace))
    if not active:
        return
    shown = ", ".join(f"'{m.name}' ({m.status.label})" for m in active[:5]) + (
        " and more" if len(active) > 5 else ""
    )
    raise InUse(
        f"The SageMaker connection cannot be {what} while models use it: {shown}. Stop or undeploy them "
        "first, so nothing keeps billing in your account unseen."
    )


__all__ = [
    "AUTO_UNDEPLOY_MAX",
    "AUTO_UNDEPLOY_MIN",
    "UPLOAD_URL_SECONDS",
    "TrainingPlan",
    "auto_undeploy_at",
    "connect_sagemaker",
    "create_dataset_from_csv",
    "create_dataset_upload",
    "create_fine_tuned_model",
    "delete_dataset",
    "deploy_model",
    "disconnect_sagemaker",
    "download_model",
    "estimate",
    "invoke_model",
    "plan_training",
]
