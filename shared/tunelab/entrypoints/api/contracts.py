"""The HTTPS API's request and response bodies (contract v1, design/api.md), as pydantic models.

These models are the contract: the resolver validates requests against them and the OpenAPI
document (`GET /v1/openapi.json`) is generated from them, field descriptions included. The request
bodies that start something are the use cases' own commands (`application.commands`), served as they
are; the responses are separate from the persistence records (`domain.records`), which
`entrypoints.api.views` maps to them.

Conventions: snake_case fields; times are RFC 3339 UTC strings ending in `Z`; money is a number
in USD in a field ending in `_usd`. Request models forbid unknown fields so a typo
(`hyperparameters.epoch`) is a 400 naming the field rather than a silently ignored value.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from tunelab.application.commands import (
    AfterHoursIn,
    AtIn,
    CloneIn,
    CostEstimateIn,
    CreateDatasetIn,
    CreateFineTunedModelIn,
    DatasetValidationIn,
    DeployIn,
    DeploymentPatchIn,
    InvokeIn,
    NoValidationIn,
    PutSageMakerProviderIn,
    ResourcesIn,
    ResumeIn,
    SplitValidationIn,
    ValidationIn,
)
from tunelab.domain.actual_costs import ActualBasis
from tunelab.domain.archives import Variant
from tunelab.domain.catalog import BaseModelSpec, FloatRange, Hosting, InstanceType, IntRange, Provider
from tunelab.domain.costs import CostEstimate, TrainingCost
from tunelab.domain.hyperparameters import ResolvedHyperparameters, ResolvedOptionalHyperparameters
from tunelab.domain.identity import Plan
from tunelab.domain.naming import DATASET_ID_PATTERN, DatasetId, DatasetName
from tunelab.domain.resources import ResourceEstimate, ResourceEstimateRequest
from tunelab.domain.status import DatasetStatus, ModelEventType, ModelStatus
from tunelab.domain.times import Timestamp, rfc3339

# --- reusable types --------------------------------------------------------------------------


Usd = Annotated[float, Field(description="US dollars.")]

ProviderName = Provider


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


# --- errors ----------------------------------------------------------------------------------


class ErrorDetailOut(_Out):
    field: str | None = Field(
        default=None, description="Path of the field at fault, e.g. `hyperparameters.epochs`."
    )
    message: str = Field(description="What is wrong with it.")
    row: int | None = Field(default=None, description="Dataset errors: the 1-based data row.")
    column: str | None = Field(default=None, description="Dataset errors: the column.")


class ErrorOut(_Out):
    code: str = Field(
        description="`validation_error`, `unauthorized`, `forbidden`, `not_found`, `name_taken`, "
        "`invalid_state`, `in_use`, `idempotency_conflict`, `payload_too_large`, `throttled`, "
        "`provider_error` or `internal_error`."
    )
    message: str = Field(description="One sentence a person can act on.")
    details: list[ErrorDetailOut] | None = Field(
        default=None, description="One entry per problem, when known."
    )


class ErrorBody(_Out):
    """The body of every error response, whatever the status."""

    error: ErrorOut


# --- lists ------------------------------------------------------------------------------------

T = TypeVar("T")

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50


class Page(_Out, Generic[T]):
    """A page of a list; pass `next_token` back as `?next_token=` for the next page."""

    items: list[T]
    next_token: str | None = Field(
        default=None, description="Opaque; present when there are more items, null on the last page."
    )


# --- health, workspace, providers -------------------------------------------------------------


class HealthOut(_Out):
    status: Literal["ok"] = "ok"


class WorkspaceOut(_Out):
    id: str = Field(description="The workspace of the caller's token.")
    plan: Plan
    byok_allowed: bool = Field(
        description="Whether the plan includes bring-your-own-key providers (SageMaker)."
    )


ProviderStatus = Literal["connected", "not_connected", "error"]


class ProviderOut(_Out):
    provider: ProviderName
    status: ProviderStatus
    role_arn: str | None = Field(default=None, description="SageMaker: the role in the customer's account.")
    region: str | None = Field(default=None, description="SageMaker: where jobs and endpoints run.")
    artifact_bucket: str | None = Field(default=None, description="SageMaker: the bucket for job outputs.")
    hf_token_secret_arn: str | None = Field(
        default=None, description="SageMaker: the secret holding the Hugging Face token, if any."
    )
    verified_at: Timestamp | None = Field(
        default=None, description="When a check of the connection last passed."
    )
    message: str | None = Field(default=None, description="Why the provider is not usable, when it is not.")
    checked_at: Timestamp | None = Field(
        default=None,
        description="SageMaker: when the connection was last checked, passed or failed (tunelab checks it "
        "daily, and after AWS refused one of its calls; a failed check sets `status` to `error`).",
    )


class ConnectorOut(_Out):
    """What the BYOK connector stack is deployed with, for this workspace."""

    workspace_id: str = Field(description="The workspace the connector is for (its `WorkspaceId`).")
    external_id: str = Field(
        description="The external id tunelab made for this workspace; the connector's role requires it."
    )
    role_session_name: str = Field(
        description="The role session name tunelab assumes the role with; the connector requires it."
    )
    parameters: dict[str, str] = Field(
        description="The connector template's parameters: WorkspaceId, ExternalId, PlatformRoleArns, "
        "PlatformEventBusArn (and optionally HuggingFaceSecretArn, yours to add)."
    )
    deploy_command: str = Field(description="An AWS CLI command that deploys the connector with them.")
    message: str | None = Field(default=None, description="What is missing, when a parameter is unknown.")


# --- base models ------------------------------------------------------------------------------


class IntRangeOut(_Out):
    min: int
    max: int
    default: int

    @classmethod
    def of(cls, spec: IntRange) -> IntRangeOut:
        return cls(min=spec.min, max=spec.max, default=spec.default)


class FloatRangeOut(_Out):
    min: float
    max: float
    default: float

    @classmethod
    def of(cls, spec: FloatRange) -> FloatRangeOut:
        return cls(min=spec.min, max=spec.max, default=spec.default)


class EarlyStoppingRangesOut(_Out):
    patience: IntRangeOut
    threshold: FloatRangeOut


class HyperparameterRangesOut(_Out):
    """What a base model accepts; a null entry means the model does not support it."""

    epochs: IntRangeOut
    learning_rate: FloatRangeOut
    batch_size: IntRangeOut | None
    warmup_steps: IntRangeOut | None
    early_stopping: EarlyStoppingRangesOut | None


class SourceOut(_Out):
    url: str = Field(description="The page the figure was read on.")
    as_of: date = Field(description="When it was read.")
    verified: bool = Field(description="False where the figure could not be confirmed there (see note).")
    note: str | None = None


class InstanceTypeOut(_Out):
    """A SageMaker instance type a training job may run on, with its GPUs and on-demand price."""

    name: str = Field(examples=["ml.g5.12xlarge"])
    family: str
    gpus: int = Field(description="GPUs per instance.")
    gpu_model: str
    vram_per_gpu_gb: float
    vram_gb: float = Field(description="GPU memory of the whole instance (GPUs × per GPU).")
    bf16: bool = Field(description="Whether its GPUs compute in bfloat16.")
    local_storage_gb: float = Field(description="Instance storage (NVMe) besides the training volume.")
    vcpus: int
    memory_gb: float
    price_per_hour_usd: Usd = Field(description="On-demand SageMaker training price per instance-hour.")
    region: str = Field(description="The region the price is for.")
    price_source: SourceOut
    source: SourceOut = Field(description="Where the hardware figures were read.")

    @classmethod
    def from_instance(cls, instance: InstanceType, *, region: str) -> InstanceTypeOut:
        return cls(
            **instance.model_dump(exclude={"source", "price_source"}),
            vram_gb=instance.vram_gb,
            region=region,
            price_source=SourceOut(**instance.price_source.model_dump()),
            source=SourceOut(**instance.source.model_dump()),
        )


class PricingOut(_Out):
    training_per_1k_tokens_usd: Usd
    storage_per_month_usd: Usd
    deployment_per_hour_usd: Usd
    as_of: date = Field(description="When these prices were read.")
    source_url: str | None = Field(default=None, description="Where they were read.")


class BaseModelOut(_Out):
    id: str
    name: str
    vendor: str
    provider: ProviderName
    hosting: Hosting
    available: bool = Field(
        description="False where this deployment cannot fine-tune it; see unavailable_reason."
    )
    unavailable_reason: str | None = None
    regions: list[str] = Field(
        default_factory=list,
        description=(
            "Where the provider fine-tunes it (Bedrock), by preference; empty where it trains wherever "
            "tunelab runs it (SageMaker: the connection's region; local)."
        ),
    )
    training_region: str | None = Field(
        default=None,
        description=(
            "The region this deployment trains, keeps and serves it in (its own where the model trains "
            "there, else the first of `regions` it reaches); null where it cannot, or where the "
            "connection decides (SageMaker)."
        ),
    )
    parameter_count: int | None = Field(description="Null where the vendor does not publish it.")
    context_length: int
    training_data_format: str = Field(description="How rows are sent to the provider.")
    hyperparameters: HyperparameterRangesOut
    supports_optional_hyperparameters: bool
    supports_download: bool
    requires_resources: bool = Field(
        description="True where `resources` (instance type and count) is required."
    )
    default_instance_type: str | None = None
    gated: bool = Field(
        description="A gated Hugging Face model: the SageMaker connection needs an hf_token secret."
    )
    pricing: PricingOut
    notes: list[str] = Field(default_factory=list)

    @classmethod
    def from_spec(
        cls, spec: BaseModelSpec, *, runtime: str, region: str, regions: Collection[str] = ()
    ) -> BaseModelOut:
        """The API view of a catalog entry, with its availability in this deployment (its runtime, its
        region and the other regions it reaches the provider in), priced where it would train."""
        available, reason = spec.availability(runtime=runtime, region=region, regions=regions)
        trains_in = spec.training_region(region, regions) if available and spec.traits.regional else None
        pricing = spec.pricing.in_region(trains_in)
        hp = spec.hyperparameters
        return cls(
            id=spec.id,
            name=spec.name,
            vendor=spec.vendor,
            provider=spec.provider,
            hosting=spec.hosting,
            available=available,
            unavailable_reason=reason,
            regions=list(spec.regions) if spec.traits.regional else [],
            training_region=trains_in,
            parameter_count=spec.parameter_count,
            context_length=spec.context_length,
            training_data_format=spec.training_data_format,
            hyperparameters=HyperparameterRangesOut(
                epochs=IntRangeOut.of(hp.epochs),
                learning_rate=FloatRangeOut.of(hp.learning_rate),
                batch_size=IntRangeOut.of(hp.batch_size) if hp.batch_size else None,
                warmup_steps=IntRangeOut.of(hp.warmup_steps) if hp.warmup_steps else None,
                early_stopping=EarlyStoppingRangesOut(
                    patience=IntRangeOut.of(hp.early_stopping.patience),
                    threshold=FloatRangeOut.of(hp.early_stopping.threshold),
                )
                if hp.early_stopping
                else None,
            ),
            supports_optional_hyperparameters=spec.supports_optional_hyperparameters,
            supports_download=spec.supports_download,
            requires_resources=spec.requires_resources,
            default_instance_type=spec.default_instance_type,
            gated=spec.gated,
            pricing=PricingOut(
                training_per_1k_tokens_usd=pricing.training_per_1k_tokens_usd,
                storage_per_month_usd=pricing.storage_per_month_usd,
                deployment_per_hour_usd=pricing.deployment_per_hour_usd,
                as_of=pricing.source.as_of,
                source_url=pricing.source.url,
            ),
            notes=list(spec.notes),
        )


# --- datasets ---------------------------------------------------------------------------------


class CreatorOut(_Out):
    email: str
    sub: str | None = None


class DatasetStatsOut(_Out):
    prompt_tokens: int
    completion_tokens: int
    max_row_tokens: int
    duplicate_rows: int
    empty_rows_skipped: int


class DatasetRowErrorOut(_Out):
    row: int | None = Field(default=None, description="1-based data row (the header is not counted).")
    column: str | None = None
    message: str


class DatasetWarningOut(_Out):
    row: int | None = None
    message: str


class DatasetOut(_Out):
    id: DatasetId
    name: str
    status: DatasetStatus
    created_at: Timestamp
    created_by: CreatorOut
    size_bytes: int | None = None
    rows: int | None = Field(default=None, description="Data rows used (after empty rows are skipped).")
    stats: DatasetStatsOut | None = None
    errors: list[DatasetRowErrorOut] = Field(default_factory=list, description="At most 100 are listed.")
    error_count: int = 0
    warnings: list[DatasetWarningOut] = Field(default_factory=list)


class UploadOut(_Out):
    url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(description="Send these headers with the upload, exactly.")
    expires_at: Timestamp


class CreateDatasetOut(_Out):
    dataset: DatasetOut
    upload: UploadOut


# --- fine-tuning requests ---------------------------------------------------------------------


class UsageOut(_Out):
    input_tokens: int
    output_tokens: int


class InvokeOut(_Out):
    completion: str
    usage: UsageOut
    latency_ms: int


DownloadVariant = Annotated[
    Variant,
    Field(
        description="`merged`: the model with full weights and configuration, as it is served (for LoRA "
        "not merged into the weights, the merged copy, under `merged/`); `adapter`: the LoRA adapter."
    ),
]


class DownloadOut(_Out):
    url: str = Field(description="Presigned URL of the `.tar.gz` archive.")
    expires_at: Timestamp
    size_bytes: int
    files: list[str]
    variant: DownloadVariant
    model_path: str = Field(
        description="The folder inside the archive that holds what was asked for, as a prefix of `files`: "
        '`""` for the archive\'s root, `merged/` for the merged copy of an unmerged LoRA model, `adapter/` '
        "for the adapter."
    )
    contents: str = Field(description="What the archive holds, in a sentence.")


# --- cost and resource estimates --------------------------------------------------------------


# The domain modules own these shapes (they compute them); the API serves them as they are.
CostEstimateOut = CostEstimate
TrainingCostOut = TrainingCost
ResourceEstimateIn = ResourceEstimateRequest
ResourceEstimateOut = ResourceEstimate


# --- fine-tuned models ------------------------------------------------------------------------


class BaseModelRefOut(_Out):
    id: str
    name: str


class DatasetRefOut(_Out):
    id: str
    name: str
    rows: int | None = None


class ValidationOut(_Out):
    mode: Literal["split", "dataset", "none"]
    percent: int | None = None
    dataset: DatasetRefOut | None = None


class ResourcesOut(_Out):
    instance_type: str
    instance_count: int
    volume_size_gb: int
    distribution: Literal["single", "ddp", "fsdp"] | None = Field(
        default=None,
        description="How the trainer shares the job over the GPUs: one GPU, data-parallel (every GPU "
        "holds the whole job), or sharded (FSDP). Chosen by tunelab's memory model.",
    )


class PlanOut(_Out):
    """What the job would run with, every default filled in."""

    base_model_id: str
    base_model_name: str
    provider: ProviderName
    training_region: str | None = Field(
        default=None,
        description="Where the job would run, for a provider that trains each model in its region.",
    )
    base_fine_tuned_model: str | None = None
    base_checkpoint: str | None = Field(
        default=None, description="The checkpoint of `base_fine_tuned_model` the job starts from."
    )
    dataset: DatasetRefOut
    validation: ValidationOut
    resources: ResourcesOut | None = None
    hyperparameters: ResolvedHyperparameters
    optional_hyperparameters: ResolvedOptionalHyperparameters | None = None
    advice: ResourceEstimateOut | None = Field(
        default=None,
        description="VRAM, storage and instance advice for this plan, where the request names instances.",
    )


class QuoteOut(CostEstimate):
    """`POST /v1/cost-estimates`: the predicted cost (as before), the whole plan, and a quote to start it
    with (`quote_id` in `POST /v1/fine-tuned-models`)."""

    runnable: bool = Field(description="False where this deployment cannot run the base model; see why.")
    unrunnable_reason: str | None = None
    plan: PlanOut
    quote_id: str | None = Field(
        default=None,
        description="Names this plan at this price; starting with it refuses any change. Null when not "
        "runnable here.",
    )
    quote_expires_at: Timestamp | None = None


class ResumeQuoteOut(CostEstimate):
    """`POST /v1/fine-tuned-models/{name}/resume` not acknowledged: what resuming costs — the remaining
    steps' share of the model's predicted training cost, plus a month of storage — and the checkpoint
    it would continue from; nothing started."""

    model: str
    checkpoint: str = Field(
        description="The checkpoint the resumed job continues from (`checkpoint-<step>`)."
    )
    step: int = Field(description="The step the checkpoint was saved at.")
    total_steps: int | None = Field(
        default=None,
        description="The run's step count, as the checkpoint records it; null where it does not.",
    )
    quote_id: str = Field(description="Names this resume at this price; `quote_id` in the acknowledged call.")
    quote_expires_at: Timestamp


class ActualCostOut(_Out):
    cost_usd: Usd = Field(
        description="What training cost (see `estimated`): the job's measured cost, plus that of the "
        "earlier attempts of a resumed model (`earlier_attempts_usd`)."
    )
    basis: ActualBasis = Field(
        description="What the figure is made of: the provider's billable seconds (SageMaker) or trained "
        "tokens; `estimated_*` where the provider measured nothing and the prediction's figures are "
        "used; `free` for local training."
    )
    estimated: bool = Field(description="True when this is an estimate, not a measured cost.")
    billable_seconds: int | None = None
    trained_tokens: int | None = None
    predicted_usd: Usd | None = None
    actual_vs_predicted: float | None = Field(
        default=None,
        description="cost_usd / predicted_usd; null where not applicable (an estimate, a prediction "
        "of 0 as in local training, or a job that stopped or failed before the end).",
    )
    earlier_attempts_usd: Usd | None = Field(
        default=None,
        description="Of cost_usd, what the earlier jobs of a resumed model cost (each stopped or failed, "
        "as measured by the provider); null for a model never resumed.",
    )
    note: str


class DeploymentCostOut(_Out):
    deployed_at: Timestamp
    undeployed_at: Timestamp | None = None
    hours: float = Field(description="Hours in service (to now while deployed).")
    hourly_usd: Usd
    cost_usd: Usd = Field(description="hours × hourly_usd.")


class ModelCostOut(_Out):
    predicted: CostEstimateOut | None = Field(
        default=None, description="The estimate shown before it started."
    )
    storage_per_month_usd: Usd
    actual: ActualCostOut | None = Field(
        default=None,
        description="What training actually cost, once the job ended: when it completed, and when it "
        "stopped or failed where the provider measured what it ran; null until then.",
    )
    deployment: DeploymentCostOut | None = Field(
        default=None, description="While deployed: the running hours and the cost so far."
    )
    last_deployment: DeploymentCostOut | None = Field(
        default=None, description="The last deployment that ended: its hours and total cost."
    )
    deployments_total_usd: Usd = Field(default=0.0, description="What all ended deployments cost.")


class MetricsOut(_Out):
    train_loss: float | None = None
    eval_loss: float | None = None
    step: int | None = None
    epoch: float | None = None


class TrainingOut(_Out):
    job_id: str | None = None
    execution_arn: str | None = None
    started_at: Timestamp | None = None
    ended_at: Timestamp | None = None
    phase: str | None = Field(default=None, description="The provider's own phase, e.g. `Training`.")
    failure_reason: str | None = None
    metrics: MetricsOut | None = None
    attempt: int = Field(
        default=0, description="0 for the first run; n after the n-th resume (`POST .../resume`)."
    )


class EvaluationScoresOut(_Out):
    exact_match: float = Field(
        ge=0.0,
        le=1.0,
        description="Share of answers equal to the expected completion after trimming whitespace.",
    )
    token_f1: float = Field(
        ge=0.0,
        le=1.0,
        description="Mean token-level F1 against the expected completion (lower-case word tokens).",
    )
    format_match: float = Field(
        ge=0.0,
        le=1.0,
        description="Share of answers in the expected "
        "completion's shape (the same JSON structure, or the same text with "
        "its words as placeholders).",
    )


class EvaluationSummaryOut(_Out):
    """The base model and the fine-tuned model answering the same validation rows, scored alike."""

    rows: int = Field(description="Validation rows answered by both models.")
    base: EvaluationScoresOut
    fine_tuned: EvaluationScoresOut
    headline: str = Field(description="The scores in one line, as the training email states them.")


class EvaluationSampleOut(_Out):
    prompt: str
    expected: str
    base: str = Field(description="The base model's answer.")
    fine_tuned: str = Field(description="The fine-tuned model's answer.")


class EvaluationOut(EvaluationSummaryOut):
    """The whole report of the evaluation run after training."""

    validation_rows: int | None = Field(default=None, description="Validation rows the job had.")
    max_new_tokens: int | None = Field(
        default=None, description="The most tokens an answer could have (longer ones were cut there)."
    )
    decoding: str = Field(description="How answers were generated (`greedy`).")
    seconds: dict[str, float | None] = Field(
        default_factory=dict, description="Time spent generating, per model (`base`, `fine_tuned`)."
    )
    samples: list[EvaluationSampleOut] = Field(
        default_factory=list, description="A sample of the rows, with both models' answers."
    )
    notes: list[str] = Field(default_factory=list)


class MergedArchiveOut(_Out):
    path: str = Field(description="The folder of the archive that holds the merged model, e.g. `merged/`.")
    size_bytes: int | None = None
    files: list[str] = Field(default_factory=list)


class ArtifactsOut(_Out):
    size_bytes: int | None = None
    files: list[str] = Field(default_factory=list)
    merged: bool = False
    merged_archive: MergedArchiveOut | None = Field(
        default=None,
        description="LoRA not merged into the weights: the merged copy kept in an archive of its own "
        "(the download's `merged` variant); null otherwise.",
    )
    download_variants: list[Variant] = Field(
        default_factory=list,
        description="The `variant`s `GET .../download` serves for this model.",
    )


class DeploymentOut(_Out):
    endpoint: str | None = None
    deployed_at: Timestamp | None = None
    auto_undeploy_at: Timestamp | None = None
    instance_type: str | None = Field(default=None, description="SageMaker: the endpoint's instance type.")
    instance_count: int | None = Field(default=None, description="SageMaker: the endpoint's instances.")


class FineTunedModelOut(_Out):
    name: str
    status: ModelStatus
    status_label: str
    provider: ProviderName
    hosting: Hosting
    base_model: BaseModelRefOut
    base_fine_tuned_model: str | None = None
    base_checkpoint: str | None = Field(
        default=None, description="The checkpoint of `base_fine_tuned_model` the job starts from."
    )
    dataset: DatasetRefOut
    validation: ValidationOut
    resources: ResourcesOut | None = None
    hyperparameters: ResolvedHyperparameters = Field(description="As resolved: every default filled in.")
    optional_hyperparameters: ResolvedOptionalHyperparameters | None = Field(
        default=None, description="As resolved (every default filled in), or null where the model takes none."
    )
    cost: ModelCostOut
    created_by: CreatorOut
    created_at: Timestamp
    updated_at: Timestamp
    training: TrainingOut
    evaluation: EvaluationSummaryOut | None = Field(
        default=None,
        description="Once training completed: the base model beside the fine-tuned model on the "
        "validation rows (`GET .../evaluation` has the whole report); null where there is none.",
    )
    evaluation_note: str | None = Field(
        default=None, description="Why there is no evaluation, where the model's training completed."
    )
    artifacts: ArtifactsOut | None = None
    deployment: DeploymentOut | None = None


EventType = ModelEventType


class ModelEventOut(_Out):
    at: Timestamp
    type: EventType
    status: ModelStatus | None = None
    message: str | None = None
    metrics: MetricsOut | None = None


class TrainingLogLineOut(_Out):
    at: Timestamp = Field(description="When the line was written.")
    message: str


class TrainingLogOut(_Out):
    """A page of the model's training log, oldest first."""

    items: list[TrainingLogLineOut]
    next_token: str | None = Field(
        default=None,
        description="Opaque; where the next page starts. Present while more lines may come (the model "
        "still trains or stops, or this page was full); null once training ended and the last line was read.",
    )
    message: str | None = Field(
        default=None,
        description="Why there are no lines, where that is worth saying (no job yet; Bedrock keeps no log).",
    )


class CheckpointOut(_Out):
    id: str = Field(description="The checkpoint's id: its folder's name, `checkpoint-<step>`.")
    step: int = Field(description="The training step it was saved at.")
    epoch: float | None = None
    train_loss: float | None = Field(
        default=None, description="The last training loss logged at or before its step."
    )
    eval_loss: float | None = Field(
        default=None, description="The last evaluation loss logged at or before its step."
    )
    saved_at: Timestamp | None = None
    size_bytes: int | None = None


class CheckpointsOut(_Out):
    """The checkpoints the model's training job kept, by step."""

    items: list[CheckpointOut]
    message: str | None = Field(
        default=None,
        description="Why there are none, where that is worth saying (no job; Bedrock keeps none).",
    )


class CheckpointDownloadOut(_Out):
    id: str = Field(description="The checkpoint's id.")
    url: str = Field(description="Presigned URL of a `.tar.gz` of the checkpoint's folder.")
    expires_at: Timestamp
    size_bytes: int


__all__ = [
    "DATASET_ID_PATTERN",
    "AfterHoursIn",
    "AtIn",
    "CheckpointDownloadOut",
    "CheckpointOut",
    "CheckpointsOut",
    "CloneIn",
    "CostEstimateIn",
    "CreateDatasetIn",
    "CreateFineTunedModelIn",
    "DatasetId",
    "DatasetName",
    "DatasetValidationIn",
    "DeployIn",
    "DeploymentPatchIn",
    "InvokeIn",
    "NoValidationIn",
    "PutSageMakerProviderIn",
    "ResourcesIn",
    "ResumeIn",
    "ResumeQuoteOut",
    "SplitValidationIn",
    "Timestamp",
    "ValidationIn",
    "rfc3339",
]
