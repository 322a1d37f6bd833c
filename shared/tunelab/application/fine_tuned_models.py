"""Fine-tuned models: what users (through the API), the fine-tuning workflow's tasks, provider events
and the reconciler do to a model's training and its life, in one place.

* Requests: `plan` / `estimate` (every check, nothing started), `create`, `stop`, `delete`,
  `download`, and the reads (`get`, `list_models`, `history`).
* The fine-tuning workflow's tasks: `prepare_data` → `start_training` (waits on a task token) →
  `finish_training` (the only writer of the training's final status).
* What providers say: `apply_training_state` (from an event or the reconciler) records news while a
  job runs and hands a finished job's outcome to the waiting workflow.

Rules every step follows: a status changes only through the status table (`domain.status`), with a
`status_changed` event, and is announced on tunelab's bus with the correlation id of what caused it
(`application.announce`). Provider calls come first where a failure must leave the model as it was;
clean-ups tolerate what is already gone, so a retry completes. A workflow task acts only on the model
life it was started for (`uid`): a model deleted and created again under the same name is not
touched by an old execution.

Decisions a user will notice (the API's contract leaves them open):

* A request that names another resource of the workspace in its body (`dataset_id`,
  `validation.dataset_id`, `base_fine_tuned_model`) that does not exist or is not usable is 400
  `validation_error` naming that field; 404 is kept for the resource in the path.
* A base model this deployment cannot fine-tune — a cloud model in the local runtime, a local model
  on AWS, a Bedrock model outside its regions, a retired model — is 400 saying why.
* If the workflow cannot be started, the record just written is deleted again (its name is free, its
  datasets released) and the request fails; if even that fails, the model ends `training_failed`.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, BinaryIO, cast

from aws_lambda_powertools import Logger

from tunelab.application import announce, connection_health, redaction
from tunelab.application.commands import (
    CloneIn,
    CostEstimateIn,
    CreateFineTunedModelIn,
    DatasetValidationIn,
    NoValidationIn,
    ResumeIn,
    SplitValidationIn,
)
from tunelab.application.evaluations import recorded_evaluation
from tunelab.application.ports import Context, TrainingProvider
from tunelab.application.workflows import (
    FinishedTraining,
    FinishTrainingEvent,
    PrepareDataEvent,
    PreparedData,
    StartTrainingEvent,
    TaskError,
    TrainingOutcome,
)
from tunelab.domain.actual_costs import (
    ActualTrainingCost,
    actual_training_cost,
    after_attempt,
    ended_early,
    with_earlier_attempts,
)
from tunelab.domain.archives import ArchiveChoice, Variant, archive_for
from tunelab.domain.catalog import BaseModelSpec, InstanceType, provider_traits
from tunelab.domain.costs import (
    CostEstimate,
    EvaluationRun,
    Method,
    SageMakerRun,
    estimate_cost,
    remaining_cost,
)
from tunelab.domain.datasets import (
    DatasetReport,
    DatasetStats,
    RowTokens,
    SplitPlan,
    check_for_model,
    convert_split,
    convert_to_jsonl,
    model_warnings,
    validate_dataset,
)
from tunelab.domain.errors import (
    ErrorDetail,
    Forbidden,
    InUse,
    InvalidState,
    NotFound,
    ProviderTransientError,
    TrainingCancelled,
    TunelabError,
    ValidationFailed,
)
from tunelab.domain.evaluation import DERIVED_EXTRA_TOKENS, DERIVED_MAX_NEW_TOKENS
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
from tunelab.domain.layout import PROVIDER_RESOURCE_TAG, s3_uri
from tunelab.domain.listing import ModelQuery
from tunelab.domain.providers import (
    DownloadLink,
    ResumePoint,
    TrainedOutput,
    TrainingJobRef,
    TrainingRequest,
    TrainingState,
)
from tunelab.domain.providers import Resources as ProviderResources
from tunelab.domain.quotes import Quote, check_budget, check_quote, over_budget, quote
from tunelab.domain.records import (
    Artifacts,
    Creator,
    DatasetRecord,
    DatasetRef,
    MergedArchive,
    Metrics,
    ModelChanges,
    ModelEventRecord,
    ModelRecord,
    PendingEmail,
    RecordPage,
    Resources,
    ValidationChoice,
)
from tunelab.domain.records import (
    TrainingState as TrainingRecord,
)
from tunelab.domain.resources import (
    ResourceEstimate,
    advice_request,
    check_resources,
    dora_recomputed_weights,
    estimate_resources,
    kept_checkpoints,
    setup_for,
)
from tunelab.domain.status import ACTIONS, Action, ModelStatus, NotificationKind, check_action
from tunelab.domain.tokens import TOKEN_BOUNDS

logger = Logger(child=True)

S = ModelStatus
# What a chat template adds around a row's prompt and completion (role markers, end-of-turn tokens).
CHAT_TEMPLATE_TOKENS = 32
# Where a phase's progress begins: the first number ("Training 40/120 steps").
_PROGRESS = re.compile(r"\s+(?=\d)")
TRAINING_STATES = frozenset({S.TRAINING, S.STOPPING_TRAINING})
# The task token is kept a day past the workflow's wait, so a late event still finds (and drops) it.
TOKEN_TTL_MARGIN = timedelta(days=1)
# Up to this size the JSONL is built in memory; beyond it in a temporary file (Lambda's /tmp).
SPOOL_BYTES = 64 * 1024 * 1024


# --- reads -----------------------------------------------------------------------------------------


def get(ctx: Context, identity: Identity, name: str) -> ModelRecord:
    """The caller's model `name` (`NotFound` in another workspace)."""
    return ctx.models.get(identity.workspace, name)


def list_models(
    ctx: Context,
    identity: Identity,
    *,
    limit: int,
    next_token: str | None,
    query: ModelQuery | None = None,
) -> RecordPage[ModelRecord]:
    """The caller's workspace's models matching `query`, in its order."""
    return ctx.models.list(identity.workspace, limit=limit, next_token=next_token, query=query)


def history(
    ctx: Context, identity: Identity, name: str, *, limit: int, next_token: str | None
) -> RecordPage[ModelEventRecord]:
    return ctx.models.list_events(identity.workspace, name, limit=limit, next_token=next_token)


# --- the plan checked before anything starts -------------------------------------------------------


@dataclass(frozen=True)
class TrainingPlan:
    """Everything a fine-tuning request resolves to; made only when every check passed (but, for an
    estimate, whether this deployment can run its base model: `unrunnable` says why not)."""

    spec: BaseModelSpec
    parent: ModelRecord | None
    dataset: DatasetRecord
    validation: ValidationChoice
    resources: Resources | None
    hyperparameters: ResolvedHyperparameters
    optional_hyperparameters: ResolvedOptionalHyperparameters | None
    cost: CostEstimate
    # Where the job would run (Bedrock: the model's training region); None where it cannot here.
    training_region: str | None = None
    # VRAM / storage / instance advice for the plan, where the request names instances (SageMaker).
    advice: ResourceEstimate | None = None
    unrunnable: str | None = None
    # The parent's checkpoint the job starts from instead of its final weights.
    base_checkpoint: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        """Every value the job would run with and every figure of its price (what a quote names)."""
        return {
            "base_model_id": self.spec.id,
            "base_fine_tuned_model": self.parent.name if self.parent else None,
            "base_checkpoint": self.base_checkpoint,
            "dataset": [self.dataset.dataset_id, self.dataset.rows, self.dataset.size_bytes],
            "validation": self.validation.model_dump(mode="json"),
            "resources": self.resources.model_dump(mode="json") if self.resources else None,
            "hyperparameters": self.hyperparameters.model_dump(mode="json"),
            "optional_hyperparameters": (
                self.optional_hyperparameters.model_dump(mode="json")
                if self.optional_hyperparameters
                else None
            ),
            "training_region": self.training_region,
            "cost": self.cost.model_dump(mode="json", exclude={"notes"}),
        }


@dataclass(frozen=True)
class Estimate:
    """`POST /v1/cost-estimates`: the plan, its price and, where it can run here, its quote."""

    plan: TrainingPlan
    quote: Quote | None


def plan(
    ctx: Context, identity: Identity, request: CostEstimateIn, *, for_estimate: bool = False
) -> TrainingPlan:
    """Check a fine-tuning request the way `create` does (everything but the name's uniqueness and the
    acknowledgement) and resolve it: base model, datasets, validation, resources, hyperparameters and
    the predicted cost. `ValidationFailed` naming the field at fault; `Forbidden` for a BYOK model on
    a plan without BYOK. `for_estimate`: a base model this deployment cannot run is priced all the
    same, the plan saying why it cannot run (`unrunnable`)."""
    workspace = identity.workspace
    spec, parent, unrunnable = _base_model(ctx, workspace, request, refuse_unavailable=not for_estimate)
    base_checkpoint = (
        _parent_checkpoint(ctx, parent, request.base_checkpoint)
        if parent is not None and request.base_checkpoint is not None
        else None
    )
    if unrunnable is None:
        _check_provider_access(ctx, workspace, spec)

    dataset = _ready_dataset(ctx, workspace, request.dataset_id, "dataset_id")
    rows = dataset.rows or 0
    validation, validation_dataset, validation_rows = _validation(ctx, workspace, request, spec, dataset)
    training_rows = rows - validation_rows if validation.mode == "split" else rows

    instance, hardware = _hardware(ctx, request, spec)
    hyperparameters, optional = resolve_training_parameters(
        request.hyperparameters,
        request.optional_hyperparameters,
        spec,
        has_validation=has_validation_data(validation.mode, spec),
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
    advice: ResourceEstimate | None = None
    if instance is not None and request.resources is not None:
        setup = setup_for(
            hyperparameters,
            optional,
            context_length=spec.context_length,
            longest_row_tokens=_longest_row_tokens(dataset),
        )
        advice = estimate_resources(
            advice_request(
                spec, setup, dataset_bytes=dataset.size_bytes or 0, checkpoints=kept_checkpoints(optional)
            ),
            ctx.catalog,
        )
        method: Method = setup.method
        checked = check_resources(
            spec,
            instance,
            request.resources.instance_count,
            request.resources.volume_size_gb,
            setup=setup,
            dataset_bytes=dataset.size_bytes or 0,
            checkpoints=kept_checkpoints(optional),
        )
        notes += checked.warnings
        # The trainer runs the job the way the check sized it (sharded where one GPU cannot hold it).
        resources = Resources(
            instance_type=instance.name,
            instance_count=request.resources.instance_count,
            volume_size_gb=request.resources.volume_size_gb,
            distribution=checked.strategy,
        )
        run = SageMakerRun.from_catalog(
            ctx.catalog,
            instance_type=instance.name,
            instance_count=resources.instance_count,
            volume_size_gb=resources.volume_size_gb,
            method=method,
            gradient_checkpointing=setup.gradient_checkpointing,
            dora_recomputed_weights=dora_recomputed_weights(spec, optional),
        )

    total_tokens = _dataset_tokens(dataset)
    tokens_per_epoch = round(total_tokens * training_rows / rows) if rows else 0
    region = spec.training_region(ctx.config.aws_region, ctx.config.provider_regions)
    evaluation, not_evaluated = _evaluation_run(
        optional, validation_dataset or dataset, validation_rows, resources=resources, instance=instance
    )
    if not_evaluated:
        notes.append(not_evaluated)
    cost = estimate_cost(
        spec,
        region=region,
        tokens_per_epoch=tokens_per_epoch,
        epochs=hyperparameters.epochs,
        token_error=(TOKEN_BOUNDS.low_factor, TOKEN_BOUNDS.high_factor),
        sagemaker=run,
        evaluation=evaluation,
    )
    if parent is not None:
        notes.append(f"Training continues from the fine-tuned model '{parent.name}' ({spec.name}).")
        if base_checkpoint is not None:
            notes.append(f"It starts from {base_checkpoint} of '{parent.name}', not its final weights.")
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
        training_region=region if spec.traits.regional and unrunnable is None else None,
        advice=advice,
        unrunnable=unrunnable,
        base_checkpoint=base_checkpoint,
    )


def estimate(ctx: Context, identity: Identity, request: CostEstimateIn) -> Estimate:
    """`POST /v1/cost-estimates`: the whole plan the job would run with and its predicted cost, nothing
    started or stored; with a quote (`quote_id`, valid for QUOTE_TTL) where this deployment can run it.
    A `max_total_usd` the price is above is said in a note (starting it would be refused)."""
    planned = plan(ctx, identity, request, for_estimate=True)
    over = (
        over_budget(request.max_total_usd, planned.cost.total_usd)
        if request.max_total_usd is not None
        else None
    )
    if over is not None:
        note = f"{over}: starting it would be refused."
        planned = replace(
            planned, cost=planned.cost.model_copy(update={"notes": [*planned.cost.notes, note]})
        )
    if planned.unrunnable is not None:
        return Estimate(plan=planned, quote=None)
    return Estimate(plan=planned, quote=quote(identity.workspace, planned.fingerprint(), now=ctx.now()))


def _base_model(
    ctx: Context, workspace: str, request: CostEstimateIn, *, refuse_unavailable: bool = True
) -> tuple[BaseModelSpec, ModelRecord | None, str | None]:
    parent: ModelRecord | None = None
    if request.base_fine_tuned_model is not None:
        field = "base_fine_tuned_model"
        parent = ctx.models.find(workspace, request.base_fine_tuned_model)
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
        spec = ctx.catalog.find_model(parent.base_model_id)
        if spec is None:
            raise ValidationFailed.of(
                field, f"The base model {parent.base_model_id} of '{parent.name}' is no longer offered."
            )
        if parent.weights() is None:
            raise ValidationFailed.of(
                field, f"'{parent.name}' has no trained weights recorded to continue from."
            )
    else:
        field = "base_model_id"
        spec = ctx.catalog.find_model(request.base_model_id or "")
        if spec is None:
            raise ValidationFailed.of(
                field, f"There is no base model '{request.base_model_id}'; GET /v1/base-models lists them."
            )
    available, reason = spec.availability(
        runtime=ctx.config.runtime, region=ctx.config.aws_region, regions=ctx.config.provider_regions
    )
    if not available and refuse_unavailable:
        raise ValidationFailed.of(field, f"{spec.name} cannot be fine-tuned here: {reason}")
    return spec, parent, None if available else f"{spec.name} cannot be fine-tuned here: {reason}"


_PROVIDER_NAMES = {"bedrock": "Bedrock", "sagemaker": "SageMaker", "local": "The local runtime"}


def _parent_checkpoint(ctx: Context, parent: ModelRecord, checkpoint: str) -> str:
    """The checkpoint of the parent's job a new model starts from; `ValidationFailed` naming
    `base_checkpoint` where the parent's provider keeps none or its job did not keep this one."""
    field = "base_checkpoint"
    if not provider_traits(parent.provider).keeps_checkpoints:
        raise ValidationFailed.of(
            field,
            f"{_PROVIDER_NAMES[parent.provider]} keeps no checkpoints: start from '{parent.name}' itself.",
        )
    ref = parent.refs.training_job
    kept = ctx.providers.for_model(parent).checkpoints(ref).items if ref is not None else ()
    if not any(item.id == checkpoint for item in kept):
        names = ", ".join(item.id for item in kept) or "none"
        raise ValidationFailed.of(
            field, f"The training job of '{parent.name}' kept no {checkpoint}; it kept: {names}."
        )
    return checkpoint


def _check_provider_access(ctx: Context, workspace: str, spec: BaseModelSpec) -> None:
    """A model that trains in the customer's own account: the plan must include BYOK and the
    workspace's connection must be verified."""
    if not spec.traits.requires_connection:
        return
    plan_name = ctx.workspaces.get(workspace).plan
    if not byok_allowed(plan_name):
        raise Forbidden(
            f"{spec.name} trains in your own AWS account (SageMaker, bring your own key), which the "
            f"{plan_name.replace('_', ' ')} plan does not include; choose a Bedrock model or change plans."
        )
    connection = ctx.connections.find(workspace, spec.provider)
    if connection is None or connection.status != "connected":
        raise ValidationFailed.of(
            "base_model_id",
            f"{spec.name} trains in your own AWS account: connect it first with "
            f"PUT /v1/providers/{spec.provider}"
            + (f" (the last check said: {connection.message})" if connection and connection.message else "")
            + ".",
        )
    if spec.gated and not connection.hf_token_secret_arn:
        raise ValidationFailed.of(
            "base_model_id",
            f"{spec.name} is a gated Hugging Face model: store your Hugging Face token as a secret in your "
            f"account and add its ARN as hf_token_secret_arn with PUT /v1/providers/{spec.provider}.",
        )


def _ready_dataset(ctx: Context, workspace: str, dataset_id: str, field: str) -> DatasetRecord:
    dataset = ctx.datasets.find(workspace, dataset_id)
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
    ctx: Context, workspace: str, request: CostEstimateIn, spec: BaseModelSpec, dataset: DatasetRecord
) -> tuple[ValidationChoice, DatasetRecord | None, int]:
    """The validation choice as stored, the validation dataset (if any) and the validation rows."""
    choice = request.validation
    rows = dataset.rows or 0
    if not spec.limits.validation_data and not isinstance(choice, NoValidationIn):
        raise ValidationFailed.of(
            "validation",
            f"{spec.name} is fine-tuned without validation data: {spec.provider.capitalize()} refuses a "
            'validation set for it. Send {"mode": "none"}.',
        )
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
        other = _ready_dataset(ctx, workspace, choice.dataset_id, "validation.dataset_id")
        ref = DatasetRef(id=other.dataset_id, name=other.name, rows=other.rows)
        return ValidationChoice(mode="dataset", dataset=ref), other, other.rows or 0
    return ValidationChoice(mode="none"), None, 0


def _hardware(
    ctx: Context, request: CostEstimateIn, spec: BaseModelSpec
) -> tuple[InstanceType | None, Hardware | InstanceType | None]:
    if not spec.requires_resources:
        if request.resources is not None:
            raise ValidationFailed.of(
                "resources",
                f"{spec.name} is a {spec.provider} model; resources (instance type, count, volume) apply to "
                "SageMaker models only: remove resources.",
            )
        return None, (Hardware.cpu() if spec.traits.cpu_training else None)
    if request.resources is None:
        raise ValidationFailed.of(
            "resources",
            f"{spec.name} trains on SageMaker: give resources with instance_type (e.g. "
            f"{spec.default_instance_type}), instance_count and volume_size_gb; POST /v1/resource-estimates "
            "advises them.",
        )
    instance = ctx.catalog.find_instance(request.resources.instance_type)
    if instance is None:
        offered = ", ".join(sorted(i.name for i in ctx.catalog.instances)[:12])
        raise ValidationFailed.of(
            "resources.instance_type",
            f"'{request.resources.instance_type}' is not a SageMaker instance type tunelab offers "
            f"({offered}, …).",
        )
    return instance, instance


def _longest_row_tokens(dataset: DatasetRecord) -> int | None:
    """The dataset's longest row at the token estimate's high bound (the count is estimated; the chat
    template adds a few tokens); None when unknown. The memory model caps it at the trainer's
    max_length (longer rows are left out, never cut)."""
    longest = dataset.stats.max_row_tokens if dataset.stats else 0
    return math.ceil(longest * TOKEN_BOUNDS.high_factor) + CHAT_TEMPLATE_TOKENS if longest else None


def _evaluation_run(
    optional: ResolvedOptionalHyperparameters | None,
    dataset: DatasetRecord,
    validation_rows: int,
    *,
    resources: Resources | None,
    instance: InstanceType | None,
) -> tuple[EvaluationRun | None, str | None]:
    """The evaluation after training the job would run (its size, for the estimate), or None; and why
    none runs where the user may not expect it (the trainer evaluates in single-process jobs only)."""
    config = optional.evaluation_config if optional is not None else None
    # `enabled` is already false without validation data; a record stored before it existed is not.
    if config is None or not config.enabled or validation_rows <= 0:
        return None, None
    if instance is not None and resources is not None and instance.gpus * resources.instance_count > 1:
        processes = instance.gpus * resources.instance_count
        return None, (
            f"No evaluation after training: it runs in single-process jobs, and this job runs on {processes} "
            "GPUs (the trainer says so in the model's evaluation note)."
        )
    stats = dataset.stats
    rows = dataset.rows or 0
    prompt = stats.prompt_tokens / rows if stats and rows else 0.0
    completion = stats.completion_tokens / rows if stats and rows else 0.0
    # The base model may answer at length where the fine-tuned one stops with the expected length.
    answer = float(
        config.max_new_tokens or min(DERIVED_MAX_NEW_TOKENS, 2 * completion + DERIVED_EXTRA_TOKENS)
    )
    return EvaluationRun(
        rows=min(config.max_rows, validation_rows), prompt_tokens=prompt, answer_tokens=answer
    ), None


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
    found = check_for_model(
        _report_of(dataset),
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


# --- create ----------------------------------------------------------------------------------------


def create(
    ctx: Context, identity: Identity, request: CreateFineTunedModelIn, *, correlation_id: str
) -> ModelRecord:
    """`POST /v1/fine-tuned-models`: check everything, store the model `training`, start its workflow.

    `NameTaken` when the workspace (or the provider's account) has that name. If the workflow cannot
    be started, the stored record is removed again (see the module's decisions).
    """
    planned = plan(ctx, identity, request)
    now = ctx.now()
    # The price the user agreed to: the quote they read, and/or a maximum.
    if request.quote_id is not None:
        check_quote(
            request.quote_id,
            identity.workspace,
            planned.fingerprint(),
            now=now,
            total_usd=planned.cost.total_usd,
        )
    if request.max_total_usd is not None:
        check_budget(request.max_total_usd, planned.cost.total_usd)
    record = ModelRecord(
        workspace_id=identity.workspace,
        name=request.name,
        status=S.TRAINING,
        provider=planned.spec.provider,
        hosting=planned.spec.hosting,
        base_model_id=planned.spec.id,
        base_model_name=planned.spec.name,
        base_fine_tuned_model=planned.parent.name if planned.parent else None,
        base_checkpoint=planned.base_checkpoint,
        dataset=DatasetRef(
            id=planned.dataset.dataset_id, name=planned.dataset.name, rows=planned.dataset.rows
        ),
        validation=planned.validation,
        resources=planned.resources,
        hyperparameters=planned.hyperparameters,
        optional_hyperparameters=planned.optional_hyperparameters,
        predicted_cost=planned.cost,
        storage_per_month_usd=planned.cost.storage_per_month_usd,
        created_by=Creator(email=identity.email, sub=identity.sub),
        created_at=now,
        updated_at=now,
        last_news_at=now,
    )
    # The execution's name derives from the record: its ARN is known before it starts, so no write
    # after the start races the workflow's own writes.
    record = record.model_copy(
        update={
            "training": TrainingRecord(
                execution_arn=ctx.workflows.fine_tuning_arn(record), started_at=now, phase="Starting"
            )
        }
    )
    ctx.providers.for_model(record).check_new_job(record.identity)
    requested = f"Training requested by {identity.email}."
    stored = ctx.models.create(record, message=requested)
    try:
        ctx.workflows.start_fine_tuning(stored, correlation_id=correlation_id)
    except Exception as error:
        _undo_create(ctx, stored, error)
        raise TunelabError(
            f"tunelab could not start the training workflow of '{stored.name}', so nothing was created; "
            "try again in a minute."
        ) from error
    announce.status_changed(ctx, stored, previous=None, reason=requested, correlation_id=correlation_id)
    logger.info(
        "Fine-tuned model created",
        extra={"workspace_id": stored.workspace_id, "model": stored.name, "provider": stored.provider},
    )
    return stored


def clone_request(source: ModelRecord, clone: CloneIn) -> CreateFineTunedModelIn:
    """The create request of a clone of `source`: its base, dataset, validation, resources and (resolved)
    hyperparameters; the hyperparameters the clone gives join the source's, each other part it gives
    (dataset, validation, resources, optional hyperparameters) replaces the source's."""
    validation: dict[str, Any]
    if clone.validation is not None:
        validation = clone.validation.model_dump()
    elif source.validation.mode == "split":
        validation = {"mode": "split", "percent": source.validation.percent}
    elif source.validation.mode == "dataset" and source.validation.dataset is not None:
        validation = {"mode": "dataset", "dataset_id": source.validation.dataset.id}
    else:
        validation = {"mode": "none"}
    resources = (
        clone.resources.model_dump()
        if clone.resources is not None
        else source.resources.model_dump(include={"instance_type", "instance_count", "volume_size_gb"})
        if source.resources is not None
        else None
    )
    # The values given join the source's (one change is one value); the other parts are replaced whole.
    hyperparameters = {
        **source.hyperparameters.model_dump(exclude_none=True),
        **(clone.hyperparameters.model_dump(exclude_none=True) if clone.hyperparameters is not None else {}),
    }
    if (
        validation["mode"] == "none"
        and clone.validation is not None
        and not (clone.hyperparameters is not None and clone.hyperparameters.early_stopping is not None)
    ):
        # Early stopping needs validation data: a clone without any stops early no more.
        hyperparameters.pop("early_stopping", None)
    optional = (
        clone.optional_hyperparameters
        if clone.optional_hyperparameters is not None
        else _request_of(source, validation_changed=clone.validation is not None)
    )
    return CreateFineTunedModelIn.model_validate(
        {
            "name": clone.name,
            **(
                {
                    "base_fine_tuned_model": source.base_fine_tuned_model,
                    **({"base_checkpoint": source.base_checkpoint} if source.base_checkpoint else {}),
                }
                if source.base_fine_tuned_model
                else {"base_model_id": source.base_model_id}
            ),
            "dataset_id": clone.dataset_id or source.dataset.id,
            "validation": validation,
            "resources": resources,
            "hyperparameters": hyperparameters,
            "optional_hyperparameters": optional,
            # The acknowledgement is the clone's own: checked by `clone`, not here.
            "acknowledge": True,
            "quote_id": clone.quote_id,
            "max_total_usd": clone.max_total_usd,
        }
    )


# The sft_config values the resolver works out from others rather than takes as given: a clone leaves
# them to it (kept, they could contradict what the clone changes, or what a record of an earlier
# release reads back as defaults).
_DERIVED_SFT = {
    # follow the validation data
    "validation": ("eval_strategy", "eval_steps"),
    # with early stopping, saving follows evaluation
    "early_stopping": ("save_strategy", "save_steps"),
}


def _request_of(source: ModelRecord, *, validation_changed: bool) -> dict[str, Any] | None:
    """The source's resolved optional hyperparameters as a request the resolver takes again."""
    if source.optional_hyperparameters is None:
        return None
    request = source.optional_hyperparameters.model_dump(mode="json", exclude_none=True)
    sft: dict[str, Any] = request.get("sft_config", {})
    derived = [*_DERIVED_SFT["validation"]] if validation_changed else []
    if source.hyperparameters.early_stopping is not None:
        derived += _DERIVED_SFT["early_stopping"]
    if sft.get("save_strategy") == "no":
        derived.append("save_total_limit")  # resolved to its default, but refused beside "no"
    for key in derived:
        sft.pop(key, None)
    evaluation: dict[str, Any] = request.get("evaluation_config", {})
    # `enabled` follows the validation data unless the user turned it off: re-derived when the validation
    # changes, and where the source had none (its "off" was derived, or a record from before evaluation
    # read `enabled` as true).
    if evaluation.get("enabled") is True or source.validation.mode == "none":
        evaluation.pop("enabled", None)
    return request


def clone(
    ctx: Context, identity: Identity, name: str, request: CloneIn, *, correlation_id: str
) -> ModelRecord | Estimate:
    """`POST /v1/fine-tuned-models/{name}/clone`: a new model from `name`'s request and the clone's
    changes, through every check of `create`. Not acknowledged: the clone's estimate (and quote), nothing
    started."""
    source = ctx.models.get(identity.workspace, name)
    create_request = clone_request(source, request)
    if not request.acknowledge:
        return estimate(ctx, identity, create_request)
    return create(ctx, identity, create_request, correlation_id=correlation_id)


def _undo_create(ctx: Context, record: ModelRecord, error: Exception) -> None:
    logger.exception("Could not start the fine-tuning execution", extra={"model": record.name})
    try:
        ctx.models.delete(record.workspace_id, record.name, allowed={S.TRAINING})
        return
    except Exception:
        logger.exception("Could not remove the model after a failed start", extra={"model": record.name})
    reason = (
        f"tunelab could not start the training workflow ({type(error).__name__}); delete this model and "
        "try again."
    )
    ctx.models.try_transition(
        record.workspace_id,
        record.name,
        {S.TRAINING},
        S.TRAINING_FAILED,
        ModelChanges(
            training=record.training.model_copy(update={"failure_reason": reason, "ended_at": ctx.now()})
        ),
        message=reason,
    )


# --- resume ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResumeEstimate:
    """`POST .../resume` not acknowledged: the checkpoint it would continue from, what the remaining
    steps cost, and the quote that price gets; nothing started."""

    model: ModelRecord
    checkpoint: ResumePoint
    cost: CostEstimate
    quote: Quote


def _resume_plan(
    ctx: Context, identity: Identity, name: str
) -> tuple[ModelRecord, ResumePoint, CostEstimate]:
    model = ctx.models.get(identity.workspace, name)
    check_action(Action.RESUME, model.status, name)
    point = ctx.providers.for_model(model).resume_point(model.identity, model.training.attempt)
    if point is None:
        raise ValidationFailed.of(
            "name",
            f"'{name}' has no checkpoint to resume from: its job ended before the trainer saved one. "
            "Clone it to train it again.",
        )
    if model.predicted_cost is None:
        raise ValidationFailed.of("name", f"'{name}' has no predicted cost to price the resume from.")
    cost = remaining_cost(model.predicted_cost, done_steps=point.step, total_steps=point.total_steps)
    return model, point, cost


def _resume_fingerprint(model: ModelRecord, point: ResumePoint, cost: CostEstimate) -> dict[str, Any]:
    return {
        "resume": model.name,
        "uid": model.uid,
        "attempt": model.training.attempt + 1,
        "checkpoint": point.model_dump(mode="json"),
        "cost": cost.model_dump(mode="json", exclude={"notes"}),
    }


def resume(
    ctx: Context, identity: Identity, name: str, request: ResumeIn, *, correlation_id: str
) -> ModelRecord | ResumeEstimate:
    """`POST /v1/fine-tuned-models/{name}/resume`: train a `training_failed` or `training_stopped` model
    on from its provider's newest checkpoint, under its own name, record and history: the model is
    `training` again and a new fine-tuning execution (and provider job) runs as attempt n + 1.

    `InvalidState` in other statuses; `ValidationFailed` when the provider cannot resume (Bedrock) or
    no checkpoint was saved. Not acknowledged: the remaining steps' share of the prediction
    (`domain.costs.remaining_cost`) and a quote, nothing started. If the workflow cannot be started,
    the model is put back as it was (status, training, job reference) and the request fails.
    """
    model, point, cost = _resume_plan(ctx, identity, name)
    now = ctx.now()
    fingerprint = _resume_fingerprint(model, point, cost)
    if not request.acknowledge:
        return ResumeEstimate(
            model=model, checkpoint=point, cost=cost, quote=quote(identity.workspace, fingerprint, now=now)
        )
    if request.quote_id is not None:
        check_quote(request.quote_id, identity.workspace, fingerprint, now=now, total_usd=cost.total_usd)
    if request.max_total_usd is not None:
        check_budget(request.max_total_usd, cost.total_usd)
    attempt = model.training.attempt + 1
    training = TrainingRecord(
        attempt=attempt,
        started_at=now,
        phase="Starting",
        data_uri=model.training.data_uri,
        metrics=model.training.metrics,
        # What the model's jobs so far cost goes on with it: its actual cost covers every attempt.
        earlier_attempts=after_attempt(model.training.earlier_attempts, model.training.actual_cost),
    )
    training = training.model_copy(
        update={
            "execution_arn": ctx.workflows.fine_tuning_arn(model.model_copy(update={"training": training}))
        }
    )
    message = f"Training resumed from {point.checkpoint} by {identity.email}."
    resumed = ctx.models.transition(
        identity.workspace,
        name,
        {model.status},
        S.TRAINING,
        ModelChanges(training=training, refs=model.refs.model_copy(update={"training_job": None})),
        message=message,
        expected_version=model.version,
    )
    try:
        ctx.workflows.start_fine_tuning(resumed, correlation_id=correlation_id)
    except Exception as error:
        logger.exception("Could not start the resumed fine-tuning execution", extra={"model": name})
        reason = (
            f"tunelab could not start the training workflow ({type(error).__name__}); the model is "
            f"{model.status.label} again."
        )
        ctx.models.try_transition(
            identity.workspace,
            name,
            {S.TRAINING},
            model.status,
            ModelChanges(training=model.training, refs=model.refs),
            message=reason,
        )
        raise TunelabError(
            f"tunelab could not start the training workflow of '{name}', so it was not resumed; "
            "try again in a minute."
        ) from error
    announce.status_changed(
        ctx, resumed, previous=model.status, reason=message, correlation_id=correlation_id
    )
    logger.info(
        "Fine-tuned model resumed",
        extra={"workspace_id": resumed.workspace_id, "model": name, "checkpoint": point.checkpoint},
    )
    return resumed


# --- stop, download, delete ------------------------------------------------------------------------


def stop(ctx: Context, identity: Identity, name: str, *, correlation_id: str) -> ModelRecord:
    """Stop the model's training: the model is `stopping_training`, then the provider is asked to stop
    the job; the fine-tuning workflow settles it (`training_stopped`, or `not_deployed` when the job
    completed first) once the provider confirms.

    The status is written first, so the news of a stop that lands at once finds the stop asked for
    (not "stopped outside tunelab"), and a second request is told a stop is under way. `InvalidState`
    unless the model is `training`; a provider refusal puts it back to `training` and is raised. When
    the job has not started yet, the stop is issued as soon as the job exists (the reconciler re-issues
    stops of models stuck stopping).
    """
    workspace, by = identity.workspace, identity.email
    model = ctx.models.get(workspace, name)
    check_action(Action.STOP, model.status, name)
    message = (
        f"Stop requested by {by}."
        if model.refs.training_job is not None
        else f"Stop requested by {by}; the job will be stopped as soon as it has started."
    )
    # Not pinned to the version read: progress written meanwhile must not refuse the stop.
    updated = ctx.models.transition(workspace, name, {S.TRAINING}, S.STOPPING_TRAINING, message=message)
    announce.status_changed(
        ctx, updated, previous=model.status, reason=message, correlation_id=correlation_id
    )
    # The job as the stopping record knows it: one StartTraining recorded meanwhile is stopped here,
    # one it records from now on is stopped by StartTraining itself (it finds the model stopping).
    ref = updated.refs.training_job
    if ref is None:
        return updated
    try:
        with connection_health.rechecked_if_refused(ctx, updated):
            ctx.providers.for_model(updated).stop_training(ref)
    except Exception as error:
        said = error.message if isinstance(error, TunelabError) else type(error).__name__
        reason = redaction.public_reason(
            ctx, updated, f"The stop could not be issued: {said.rstrip('.')}. The model is Training again."
        )
        try:
            back = ctx.models.try_transition(
                workspace, name, {S.STOPPING_TRAINING}, S.TRAINING, ModelChanges(), message=reason
            )
            if back is not None:
                announce.status_changed(
                    ctx, back, previous=S.STOPPING_TRAINING, reason=reason, correlation_id=correlation_id
                )
        except Exception:  # the user hears of the stop's error; the reconciler re-issues the stop
            logger.exception(
                "Could not put a model whose stop failed back to training", extra={"model": name}
            )
        raise
    return updated


@dataclass(frozen=True)
class Download:
    """A short-lived link to one archive of a model, and what that archive holds."""

    model: ModelRecord
    link: DownloadLink
    archive: ArchiveChoice


def download(ctx: Context, identity: Identity, name: str, variant: Variant | None = None) -> Download:
    """`GET .../download?variant=`: a short-lived link to the trained archive, where the provider hands one
    out: `merged` (the default) the full model with its configuration, `adapter` the LoRA adapter
    (`domain.archives`; None: `default_variant`). `ValidationFailed` for an adapter of a fully
    fine-tuned model; `InvalidState` for the full model of an unmerged LoRA model trained before merged
    copies were kept."""
    model = ctx.models.get(identity.workspace, name)
    if provider_traits(model.provider).keeps_weights:
        raise ValidationFailed(
            f"'{model.name}' was trained on {model.provider.capitalize()}, which keeps the weights in AWS "
            "and offers no download; models trained on SageMaker (your own account) or locally can be "
            "downloaded."
        )
    check_action(Action.DOWNLOAD, model.status, model.name)
    archive = archive_for(model, variant)
    return Download(model, ctx.providers.for_model(model).download(archive.uri), archive)


def delete(ctx: Context, identity: Identity, name: str, *, correlation_id: str) -> ModelRecord:
    """Delete the model and everything tunelab made for it: the provider's trained model and files, the
    prepared training data, the record, its history and its task tokens.

    `InvalidState` while it trains, stops, deploys or is deployed; `InUse` while a model continuing
    from it trains (its job reads this one's weights). The provider goes first: if it refuses, the
    record stays, so nothing is left behind unseen. "Fine-tuned Model Deleted" is published last.
    """
    workspace, by = identity.workspace, identity.email
    model = ctx.models.get(workspace, name)
    check_action(Action.DELETE, model.status, name)
    continuing = _training_from(ctx, workspace, name)
    if continuing:
        listed = ", ".join(f"'{child}'" for child in continuing)
        raise InUse(
            f"Model '{name}' cannot be deleted while {listed} "
            f"{'is' if len(continuing) == 1 else 'are'} training from it; "
            "wait for that training to end or stop it first."
        )
    provider = ctx.providers.for_model(model)
    provider.delete_model(model.trained())
    # The prepared data where PrepareData wrote it (recorded), else where it would have.
    data = model.training.data_uri
    folder = (
        data.rsplit("/", 1)[0] + "/"
        if data
        else provider.training_data_folder(model.identity, model.uid, ctx.catalog.model(model.base_model_id))
    )
    provider.storage.delete_folder(folder)
    deleted = ctx.models.delete(workspace, name, allowed=ACTIONS[Action.DELETE])
    logger.info("Model deleted", extra={"workspace_id": workspace, "model": name, "by": by})
    announce.deleted(ctx, deleted, by=by, correlation_id=correlation_id)
    return deleted


def _training_from(ctx: Context, workspace: str, name: str) -> list[str]:
    """Names of the workspace's models that continue from `name` and are training or stopping."""
    found: list[str] = []
    token: str | None = None
    while True:
        page = ctx.models.list(workspace, limit=100, next_token=token, status=TRAINING_STATES)
        found += [m.name for m in page.items if m.base_fine_tuned_model == name]
        token = page.next_token
        if token is None:
            return found


# --- the fine-tuning workflow: PrepareData ---------------------------------------------------------


def _find(ctx: Context, workspace_id: str, name: str, uid: str) -> ModelRecord | None:
    """The model record of this life, or None when it was deleted (or replaced under the same name)."""
    record = ctx.models.find(workspace_id, name)
    return record if record is not None and record.uid == uid else None


def _to_train(ctx: Context, workspace_id: str, name: str, uid: str) -> ModelRecord:
    record = _find(ctx, workspace_id, name, uid)
    if record is None:
        raise TrainingCancelled(f"The fine-tuned model '{name}' was deleted before training started.")
    if record.status == S.STOPPING_TRAINING:
        raise TrainingCancelled("Training was stopped before the job started.")
    if record.status != S.TRAINING:
        raise InvalidState(f"The model is {record.status.label}; there is nothing to train.")
    return record


@contextmanager
def _spool() -> Iterator[BinaryIO]:
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as buffer:
        yield cast("BinaryIO", buffer)


def _open_dataset(ctx: Context, workspace_id: str, dataset_id: str) -> tuple[BinaryIO, int | None]:
    dataset = ctx.datasets.get(workspace_id, dataset_id)
    if dataset.status != "ready" or not dataset.s3_key:
        raise ValidationFailed.of(
            "dataset_id", f"Dataset {dataset_id} is {dataset.status}; a training job needs a ready dataset."
        )
    body = ctx.files.open(s3_uri(ctx.config.datasets_bucket, dataset.s3_key))
    if body is None:
        raise NotFound(f"The file of dataset '{dataset.name}' is gone; upload it again as a new dataset.")
    return body, dataset.rows


def prepare_data(ctx: Context, event: PrepareDataEvent) -> PreparedData:
    """CSV → the provider's JSONL (`training_data_format`), with the validation split or the validation
    dataset, written where the provider's job reads (`TrainingProvider.training_data_folder`)."""
    record = _to_train(ctx, event.workspace_id, event.model_name, event.uid)
    spec = ctx.catalog.model(record.base_model_id)
    fmt = spec.training_data_format
    provider = ctx.providers.for_model(record)
    folder = provider.training_data_folder(record.identity, record.uid, spec)

    def upload(name: str, body: BinaryIO) -> str:
        body.seek(0)
        uri = folder + name
        provider.storage.put(uri, body, content_type="application/jsonl")
        return uri

    validation = record.validation
    training_rows = validation_rows = 0
    validation_uri: str | None = None
    with _spool() as train_out:
        if validation.mode == "split" and not provider_splits_validation(spec):
            # The split needs the count of valid rows first; the dataset's validation recorded it.
            body, rows = _open_dataset(ctx, record.workspace_id, record.dataset.id)
            if not rows:
                rows = validate_dataset(body).rows
                body, _ = _open_dataset(ctx, record.workspace_id, record.dataset.id)
            split = SplitPlan(rows, int(validation.percent or 10))
            with _spool() as validation_out:
                report, training_rows, validation_rows = convert_split(
                    body, train_out, validation_out, fmt, split
                )
                report.raise_for_errors()
                validation_uri = upload("validation.jsonl", validation_out)
        else:
            body, _ = _open_dataset(ctx, record.workspace_id, record.dataset.id)
            report = convert_to_jsonl(body, train_out, fmt)
            report.raise_for_errors()
            training_rows = report.rows
            if validation.mode == "dataset" and validation.dataset is not None:
                body, _ = _open_dataset(ctx, record.workspace_id, validation.dataset.id)
                with _spool() as validation_out:
                    checked = convert_to_jsonl(body, validation_out, fmt)
                    checked.raise_for_errors()
                    validation_rows = checked.rows
                    validation_uri = upload("validation.jsonl", validation_out)
        training_uri = upload("train.jsonl", train_out)
    ctx.models.update(
        record.workspace_id,
        record.name,
        ModelChanges(
            training=record.training.model_copy(update={"data_uri": training_uri, "phase": "Preparing data"})
        ),
    )
    return PreparedData(
        training_data_uri=training_uri,
        validation_data_uri=validation_uri,
        training_rows=training_rows,
        validation_rows=validation_rows,
        training_timeout_seconds=event.training_timeout_seconds or provider.training_timeout_s,
    )


# --- the fine-tuning workflow: StartTraining ---------------------------------------------------------


def training_request(
    ctx: Context, record: ModelRecord, provider: TrainingProvider, prepared: PreparedData
) -> TrainingRequest:
    """The provider's training request for the record (hyperparameters in the provider's names)."""
    spec = ctx.catalog.model(record.base_model_id)
    split = None
    if record.validation.mode == "split" and provider_splits_validation(spec):
        split = float(record.validation.percent or 10)
    hyperparameters = provider.training_hyperparameters(
        spec, record.hyperparameters, record.optional_hyperparameters, provider_split_percent=split
    )
    parent = None
    if record.base_fine_tuned_model:
        parent_record = ctx.models.get(record.workspace_id, record.base_fine_tuned_model)
        parent = parent_record.weights()
        if parent is None:
            # Never train from the base model instead, as if it continued: say what is missing.
            raise ValidationFailed.of(
                "base_fine_tuned_model",
                f"'{record.base_fine_tuned_model}' has no trained weights recorded to continue from.",
            )
        job = parent_record.refs.training_job
        if record.base_checkpoint:
            if job is None:
                raise ValidationFailed.of(
                    "base_checkpoint",
                    f"'{parent_record.name}' has no training job that kept {record.base_checkpoint}.",
                )
            parent = parent.model_copy(
                update={"checkpoint": record.base_checkpoint, "checkpoint_job": job.job_name}
            )
    resources = (
        ProviderResources(
            instance_type=record.resources.instance_type,
            instance_count=record.resources.instance_count,
            volume_size_gb=record.resources.volume_size_gb,
            distribution=record.resources.distribution,
        )
        if record.resources
        else None
    )
    return TrainingRequest(
        identity=record.identity,
        base_model=spec,
        parent=parent,
        training_data_uri=prepared.training_data_uri,
        validation_data_uri=prepared.validation_data_uri,
        hyperparameters=hyperparameters,
        resources=resources,
        tags={PROVIDER_RESOURCE_TAG: record.workspace_id},
        attempt=record.training.attempt,
    )


def start_training(ctx: Context, event: StartTrainingEvent) -> TrainingJobRef:
    """Keep the task token, start the provider's job (idempotent), record its reference.

    The token is stored before the job starts, so an event about the job always finds it.
    """
    record = _to_train(ctx, event.workspace_id, event.model_name, event.uid)
    until = ctx.now() + timedelta(seconds=event.prepared.training_timeout_seconds) + TOKEN_TTL_MARGIN
    ctx.task_tokens.put(record.workspace_id, record.name, "training", event.task_token, until=until)
    provider = ctx.providers.for_model(record)
    ref = provider.start_training(training_request(ctx, record, provider, event.prepared))
    training = record.training.model_copy(
        update={
            "job_id": ref.job_id,
            "execution_arn": event.execution_arn,
            "started_at": record.training.started_at or ctx.now(),
            "output_uri": ref.output_uri,
            "phase": "Starting",
        }
    )
    try:
        updated = ctx.models.update(
            record.workspace_id,
            record.name,
            ModelChanges(training=training, refs=record.refs.model_copy(update={"training_job": ref})),
            expected_status=TRAINING_STATES,
        )
    except InvalidState:
        updated = ctx.models.get(record.workspace_id, record.name)
    if updated.status == S.STOPPING_TRAINING:
        # A stop asked while the job was being created found no job to stop: stop it now.
        provider.stop_training(ref)
    return ref


# --- the fine-tuning workflow: FinishTraining --------------------------------------------------------


_NOTIFICATION: dict[ModelStatus, NotificationKind] = {
    S.NOT_DEPLOYED: "training_completed",
    S.TRAINING_FAILED: "training_failed",
    S.TRAINING_STOPPED: "training_stopped",
}
# Errors whose message is already a sentence for the user.
_TOLD_AS_IS = frozenset(
    {"ValidationFailed", "NotFound", "NameTaken", "ProviderPermissionDenied", "Forbidden", "ProviderError"}
)


def _reason_of(
    error: TaskError, timeout_s: int | None, public: Callable[[str], str]
) -> tuple[ModelStatus, str]:
    """The status and the sentence a person reads for an error the state machine caught; `public` makes
    the error's own text fit for the tenant (before it is cut to length)."""
    kind = error.error_type()
    message = error.message()
    message = public(message) if message else message
    if kind == "States.Timeout" or error.Error == "States.Timeout":
        hours = f"{timeout_s / 3600:g} hours" if timeout_s else "its time limit"
        return S.TRAINING_FAILED, (
            f"The training job did not finish within {hours}, tunelab's limit for it, so it was stopped."
        )
    if kind == TrainingCancelled.__name__:
        return S.TRAINING_STOPPED, message or "Training was stopped before the job started."
    if kind in _TOLD_AS_IS:
        return S.TRAINING_FAILED, message or kind
    if kind == ProviderTransientError.__name__:
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


def _completed_changes(ctx: Context, record: ModelRecord, outcome: TrainingOutcome) -> ModelChanges:
    # A listing the provider could not read leaves the files empty; nothing usable is ValidationFailed.
    output = ctx.providers.for_model(record).trained_output(
        record.refs.training_job,
        artifacts_uri=outcome.artifacts_uri,
        model_ref=outcome.model_ref,
        merged=_merged_flag(record),
    )
    copy = output.merged_archive
    artifacts = Artifacts(
        uri=output.artifacts_uri,
        size_bytes=output.size_bytes,
        files=output.files,
        merged=output.merged,
        merged_archive=MergedArchive(
            uri=copy.uri, path=copy.path, size_bytes=copy.size_bytes, files=copy.files
        )
        if copy is not None
        else None,
    )
    # The merged copy of an unmerged LoRA model is kept (and billed) alongside the adapter.
    stored = output.size_bytes
    if stored is not None and copy is not None and copy.size_bytes is not None:
        stored += copy.size_bytes
    storage = ctx.catalog.trained_storage_per_month_usd(
        record.provider, stored, predicted=record.storage_per_month_usd
    )
    training = record.training.model_copy(
        update={
            "ended_at": ctx.now(),
            "phase": "Completed",
            "failure_reason": None,
            "metrics": _metrics(record, outcome),
            "actual_cost": _actual_cost(ctx, record, output, outcome),
            **recorded_evaluation(ctx, record),
        }
    )
    refs = record.refs.model_copy(update={"model_ref": output.model_ref}) if output.model_ref else record.refs
    return ModelChanges(training=training, artifacts=artifacts, storage_per_month_usd=storage, refs=refs)


def _actual_cost(
    ctx: Context, record: ModelRecord, output: TrainedOutput, outcome: TrainingOutcome
) -> ActualTrainingCost:
    """What the job cost, from what the provider measured (its output, else its news of the end), with
    the earlier attempts of a resumed model."""
    return _cost(
        ctx,
        record,
        billable_seconds=output.billable_seconds
        if output.billable_seconds is not None
        else outcome.billable_seconds,
        trained_tokens=output.trained_tokens if output.trained_tokens is not None else outcome.trained_tokens,
    )


def _ended_cost(
    ctx: Context, record: ModelRecord, outcome: TrainingOutcome | None
) -> ActualTrainingCost | None:
    """What a stopped or failed job cost, where the provider's news of its end measured it (None
    otherwise, or where the catalog no longer knows the model)."""
    try:
        cost = _cost(
            ctx,
            record,
            billable_seconds=outcome.billable_seconds if outcome else None,
            trained_tokens=outcome.trained_tokens if outcome else None,
        )
    except TunelabError:
        return None
    return ended_early(cost)


def _cost(
    ctx: Context, record: ModelRecord, *, billable_seconds: int | None, trained_tokens: int | None
) -> ActualTrainingCost:
    spec = ctx.catalog.model(record.base_model_id)
    resources = record.resources
    cost = actual_training_cost(
        spec,
        region=spec.training_region(ctx.config.aws_region, ctx.config.provider_regions),
        predicted=record.predicted_cost,
        billable_seconds=billable_seconds,
        trained_tokens=trained_tokens,
        instance=ctx.catalog.find_instance(resources.instance_type) if resources else None,
        instance_count=resources.instance_count if resources else 1,
        volume_size_gb=resources.volume_size_gb if resources else 0,
        volume_per_gb_month_usd=ctx.catalog.volume_per_gb_month_usd,
    )
    return with_earlier_attempts(cost, record.training.earlier_attempts)


def _training_timeout(ctx: Context, record: ModelRecord) -> int | None:
    """How long the workflow waited for the job, for the reason a person reads; None when the provider
    cannot be made (the final status is written all the same)."""
    try:
        return ctx.providers.for_model(record).training_timeout_s
    except TunelabError:
        return None


def _stop_job(ctx: Context, record: ModelRecord) -> None:
    ref = record.refs.training_job
    if ref is None:
        return
    try:
        ctx.providers.for_model(record).stop_training(ref)
    except ProviderTransientError:
        raise
    except (TunelabError, NotImplementedError) as error:
        # The status still changes; the reconciler and the provider's own limits end the job.
        logger.warning("could not stop the job %s of %s: %s", ref.job_name, record.name, error)


def finish_training(ctx: Context, event: FinishTrainingEvent) -> FinishedTraining:
    """Write the training's final status — the only writer of it — and announce it."""
    return _finish_training(
        ctx,
        event.workspace_id,
        event.model_name,
        event.uid,
        outcome=event.outcome,
        error=event.error,
        training_timeout_seconds=event.training_timeout_seconds,
        correlation_id=event.correlation_id,
    )


def _finish_training(
    ctx: Context,
    workspace_id: str,
    model_name: str,
    uid: str,
    *,
    outcome: TrainingOutcome | None,
    error: TaskError | None,
    training_timeout_seconds: int | None,
    correlation_id: str,
    retried: bool = True,
) -> FinishedTraining:
    """`retried`: this may repeat an attempt that recorded the status but did not get to tell the
    creator (the workflow retries FinishTraining), so a status already there is still told; without
    it only the caller that recorded the status tells (two settlers must not both send the email)."""
    record = _find(ctx, workspace_id, model_name, uid)
    if record is None:
        return FinishedTraining(status=None, notification=None, reason="the model no longer exists")
    changes = ModelChanges()
    if outcome is not None:
        if outcome.outcome == "completed":
            target, reason = S.NOT_DEPLOYED, None
            try:
                if record.status in TRAINING_STATES:
                    changes = _completed_changes(ctx, record, outcome)
            except ProviderTransientError:
                raise
            except TunelabError as unusable:
                target = S.TRAINING_FAILED
                reason = f"The job completed, but its result cannot be used: {unusable}"
        else:
            target = S.TRAINING_FAILED if outcome.outcome == "failed" else S.TRAINING_STOPPED
            reason = outcome.reason or (
                "The provider reported that the job failed without saying why."
                if outcome.outcome == "failed"
                else None
            )
    else:
        error = error or TaskError(Error="States.Runtime", Cause="FinishTraining ran without an outcome")
        timeout = training_timeout_seconds or _training_timeout(ctx, record)
        target, reason = _reason_of(error, timeout, lambda text: redaction.public_reason(ctx, record, text))
        connection_health.recheck_if_refused_task(ctx, record, error)
        if record.status in TRAINING_STATES:
            _stop_job(ctx, record)
    # Provider and AWS text may name the platform's roles, buckets and files: the tenant reads it without.
    reason = redaction.public_reason(ctx, record, reason) if reason else reason
    if target != S.NOT_DEPLOYED and record.status in TRAINING_STATES:
        changes = ModelChanges(
            training=record.training.model_copy(
                update={
                    "ended_at": ctx.now(),
                    "phase": "Failed" if target == S.TRAINING_FAILED else "Stopped",
                    "failure_reason": reason,
                    # A job that ran is billed for what it ran, where the provider measured it.
                    "actual_cost": _ended_cost(ctx, record, outcome),
                }
            )
        )
    previous = record.status
    # The email this change owes goes with it, on the record, until Notify (or the reconciler) sends it.
    changes = changes.model_copy(
        update={"pending_email": PendingEmail(kind=_NOTIFICATION[target], reason=reason, since=ctx.now())}
    )
    updated = ctx.models.try_transition(
        record.workspace_id, record.name, TRAINING_STATES, target, changes, message=reason
    )
    if updated is None:
        current = ctx.models.get(record.workspace_id, record.name)
        if current.status != target or not retried or current.pending_email is None:
            # Someone else ended it (another way, or this way and told the creator — no email is owed
            # any more): tell nobody twice.
            return FinishedTraining(status=current.status.value, notification=None, reason=reason)
        updated, previous = current, current.status
    ctx.task_tokens.delete(record.workspace_id, record.name, "training")
    announce.status_changed(
        ctx, updated, previous=previous, reason=reason, correlation_id=correlation_id, strict=True
    )
    return FinishedTraining(status=updated.status.value, notification=_NOTIFICATION[target], reason=reason)


# --- what providers say about a job ----------------------------------------------------------------


def training_outcome(model: ModelRecord, state: TrainingState) -> TrainingOutcome:
    """The `TrainingOutcome` a finished job's state means for the waiting workflow."""
    if state.status == "completed":
        return TrainingOutcome(
            outcome="completed",
            artifacts_uri=state.artifacts_uri,
            model_ref=state.model_ref,
            metrics=state.metrics.model_dump() if state.metrics else None,
            billable_seconds=state.billable_seconds,
            trained_tokens=state.trained_tokens,
        )
    if state.status == "failed":
        return TrainingOutcome(
            outcome="failed",
            reason=state.failure_reason
            or "The provider reports that the training job failed; it gave no reason.",
            billable_seconds=state.billable_seconds,
            trained_tokens=state.trained_tokens,
        )
    reason = (
        "The training job was stopped as requested."
        if model.status == S.STOPPING_TRAINING
        else "The training job was stopped outside tunelab (in the provider's console or API)."
    )
    return TrainingOutcome(
        outcome="stopped",
        reason=reason,
        billable_seconds=state.billable_seconds,
        trained_tokens=state.trained_tokens,
    )


@dataclass(frozen=True)
class Applied:
    """What applying a provider's news did: `applied`, or `ignored` with why."""

    applied: bool
    reason: str
    # Recorded here rather than by the job's workflow, which no longer runs (`settle_training`).
    settled: bool = False


def apply_training_state(ctx: Context, model: ModelRecord, state: TrainingState, *, at: datetime) -> Applied:
    """Apply what the provider says of a model's job: news while it runs (phase, metrics), the outcome
    to the waiting workflow when it ended. Duplicates and late news change nothing."""
    if model.status not in TRAINING_STATES:
        return Applied(False, f"the model is {model.status.value}; training news no longer applies")
    if state.terminal:
        token = ctx.task_tokens.get(model.workspace_id, model.name, "training")
        if token is not None and ctx.workflows.send_training_outcome(token, training_outcome(model, state)):
            return Applied(True, f"the job {state.status}; the workflow was told")
        if workflow_running(ctx, model):
            return Applied(False, f"the job {state.status}; the workflow had its answer already")
        return settle_training(
            ctx, model, training_outcome(model, state), correlation_id=f"settle-{model.uid}"
        )
    return _record_progress(ctx, model, state, at)


def workflow_running(ctx: Context, model: ModelRecord) -> bool:
    """Whether the model's fine-tuning execution still runs (and so will record how the job ended)."""
    arn = model.training.execution_arn
    return arn is None or ctx.workflows.running(arn)


def settle_training(
    ctx: Context, model: ModelRecord, outcome: TrainingOutcome, *, correlation_id: str
) -> Applied:
    """Record how a job ended when its workflow no longer runs (it was lost — the local runtime
    restarted — or it ended without recording it): the workflow's own last steps, in its order —
    FinishTraining, the single writer of the final status, then the email it asks for."""
    finished = _finish_training(
        ctx,
        model.workspace_id,
        model.name,
        model.uid,
        outcome=outcome,
        error=None,
        training_timeout_seconds=None,
        correlation_id=correlation_id,
        retried=False,
    )
    if finished.notification is not None:
        # The email the new status owes, as Notify would send it (and record it sent).
        announce.send_owed(ctx, ctx.models.get(model.workspace_id, model.name))
    return Applied(
        True, f"the job {outcome.outcome}; its workflow had ended, so the outcome was recorded", settled=True
    )


def _record_progress(ctx: Context, model: ModelRecord, state: TrainingState, at: datetime) -> Applied:
    last = model.refs.last_event_at
    if last is not None and last > at:
        return Applied(False, "an older event than the last one applied")
    ws, name = model.workspace_id, model.name
    new_phase = bool(state.phase) and state.phase != model.training.phase
    # A message for each new phase, not for each progress report within one ("Training 40/120 steps").
    new_stage = new_phase and phase_name(state.phase) != phase_name(model.training.phase)
    metrics = Metrics(**state.metrics.model_dump()) if state.metrics else None
    new_metrics = metrics is not None and metrics != model.training.metrics
    if not (new_phase or new_metrics):
        _heartbeat(ctx, model)
        return Applied(False, "nothing new in the event")
    training = model.training.model_copy(update={"phase": state.phase}) if new_phase else model.training
    try:
        ctx.models.update(
            ws,
            name,
            ModelChanges(training=training, refs=model.refs.model_copy(update={"last_event_at": at})),
            expected_status=TRAINING_STATES,
        )
    except InvalidState:
        return Applied(False, "the model left training while the event was applied")
    if new_stage:
        ctx.models.add_message(ws, name, f"Training phase: {phase_name(state.phase)}.", at=at)
    if metrics is not None and new_metrics:
        ctx.models.record_metrics(ws, name, metrics, at=at)
    _heartbeat(ctx, model)
    return Applied(True, "training news recorded")


def phase_name(phase: str | None) -> str | None:
    """The phase without its progress: "Training 40/120 steps, ETA 0:35" is "Training"."""
    return _PROGRESS.split(phase, maxsplit=1)[0].strip() if phase else None


def _heartbeat(ctx: Context, model: ModelRecord) -> None:
    token = ctx.task_tokens.get(model.workspace_id, model.name, "training")
    if token is not None:
        ctx.workflows.send_training_heartbeat(token)


__all__ = [
    "Applied",
    "Download",
    "TrainingPlan",
    "apply_training_state",
    "create",
    "delete",
    "download",
    "estimate",
    "finish_training",
    "get",
    "history",
    "list_models",
    "phase_name",
    "plan",
    "prepare_data",
    "settle_training",
    "start_training",
    "stop",
    "training_outcome",
    "training_request",
    "workflow_running",
]
