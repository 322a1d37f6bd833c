"""The HTTPS API's request and response bodies (contract v1, design/api.md), as pydantic models.

These models are the contract: the resolver validates requests against them and the OpenAPI
document (`GET /v1/openapi.json`) is generated from them, field descriptions included. They are
separate from the persistence records (`tunelab.domain.records`), which map to them with `to_out()`.

Conventions: snake_case fields; times are RFC 3339 UTC strings ending in `Z`; money is a number
in USD in a field ending in `_usd`. Request models forbid unknown fields so a typo
(`hyperparameters.epoch`) is a 400 naming the field rather than a silently ignored value.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Generic, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from tunelab.domain.catalog import BaseModelId, BaseModelSpec, FloatRange, Hosting, IntRange, Provider
from tunelab.domain.costs import CostEstimate, TrainingCost
from tunelab.domain.hyperparameters import (
    HyperparametersIn,
    OptionalHyperparametersIn,
    ResolvedHyperparameters,
    ResolvedOptionalHyperparameters,
)
from tunelab.domain.identity import Plan
from tunelab.domain.naming import ModelName
from tunelab.domain.resources import ResourceEstimate, ResourceEstimateRequest
from tunelab.domain.status import DatasetStatus, ModelEventType, ModelStatus

# --- reusable types --------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """`2026-11-28T12:00:00Z` (milliseconds only when there are any)."""
    value = value.astimezone(UTC)
    millis = f".{value.microsecond // 1000:03d}" if value.microsecond // 1000 else ""
    return value.strftime("%Y-%m-%dT%H:%M:%S") + millis + "Z"


Timestamp = Annotated[
    AwareDatetime,
    AfterValidator(_utc),
    PlainSerializer(rfc3339, return_type=str, when_used="json"),
    Field(
        description="RFC 3339 time in UTC, e.g. `2026-11-28T12:00:00Z`.", examples=["2026-11-28T12:00:00Z"]
    ),
]

DATASET_ID_PATTERN = r"^ds_[0-9a-z]{8,40}$"
DatasetId = Annotated[
    str,
    Field(
        pattern=DATASET_ID_PATTERN,
        description="A dataset id from `POST /v1/datasets` (`ds_` and lower-case letters and digits).",
        examples=["ds_01jdq8k2m3n4p5q6r7s8t9v0w1"],
    ),
]

DatasetName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="The dataset's name: 1–100 letters, digits, '.', '_' or '-', starting with a letter "
        "or digit. Unique in the workspace.",
        examples=["support-tickets"],
    ),
]

Usd = Annotated[float, Field(description="US dollars.")]

ProviderName = Provider


class _In(BaseModel):
    """A request body: unknown fields are refused, so typos are reported instead of ignored."""

    # Validators are built on first use, not at import: a cold start builds only what it touches.
    model_config = ConfigDict(extra="forbid", defer_build=True)


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
    verified_at: Timestamp | None = Field(default=None, description="When the connection was last checked.")
    message: str | None = Field(default=None, description="Why the provider is not usable, when it is not.")


ROLE_ARN_PATTERN = r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}$"
SECRET_ARN_PATTERN = r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9_/+=.@-]+$"  # noqa: S105
REGION_PATTERN = r"^[a-z]{2}(-gov)?-[a-z]+-\d$"
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"


class PutSageMakerProviderIn(_In):
    role_arn: str = Field(
        pattern=ROLE_ARN_PATTERN, description="The IAM role tunelab assumes in the customer's account."
    )
    external_id: str = Field(
        min_length=2,
        max_length=1224,
        pattern=r"^[A-Za-z0-9_+=,.@:/-]+$",
        description="The external id the role's trust policy requires.",
    )
    region: str = Field(pattern=REGION_PATTERN, description="Region of the training jobs and endpoints.")
    artifact_bucket: str = Field(
        pattern=BUCKET_PATTERN, description="Bucket in the customer's account for datasets and model outputs."
    )
    hf_token_secret_arn: str | None = Field(
        default=None,
        pattern=SECRET_ARN_PATTERN,
        description="Secrets Manager secret (in the customer's account) holding a Hugging Face token for "
        "gated models; tunelab passes its ARN to the job and never reads the value.",
    )


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
    def from_spec(cls, spec: BaseModelSpec, *, runtime: str, region: str) -> BaseModelOut:
        """The API view of a catalog entry, with its availability in this deployment."""
        available, reason = model_availability(spec, runtime=runtime, region=region)
        hp = spec.hyperparameters
        return cls(
            id=spec.id,
            name=spec.name,
            vendor=spec.vendor,
            provider=spec.provider,
            hosting=spec.hosting,
            available=available,
            unavailable_reason=reason,
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
                training_per_1k_tokens_usd=spec.pricing.training_per_1k_tokens_usd,
                storage_per_month_usd=spec.pricing.storage_per_month_usd,
                deployment_per_hour_usd=spec.pricing.deployment_per_hour_usd,
                as_of=spec.pricing.source.as_of,
                source_url=spec.pricing.source.url,
            ),
            notes=list(spec.notes),
        )


def model_availability(spec: BaseModelSpec, *, runtime: str, region: str) -> tuple[bool, str | None]:
    """Whether this deployment (runtime, region) can fine-tune `spec`, and if not, why."""
    if runtime == "local" and spec.provider != "local":
        return False, "Cloud models cannot be fine-tuned in the local runtime; use a local model."
    if runtime != "local" and spec.provider == "local":
        return False, "This model is fine-tuned only in the local runtime (`tunelab local up`)."
    if spec.retired is not None:
        return False, f"Fine-tuning of this model is no longer offered: {spec.retired.note}"
    if spec.provider == "bedrock" and region not in spec.regions:
        offered = ", ".join(sorted(spec.regions))
        return False, f"Bedrock does not fine-tune this model in {region}; it does in {offered}."
    return True, None


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


class CreateDatasetIn(_In):
    name: DatasetName


class UploadOut(_Out):
    url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(description="Send these headers with the upload, exactly.")
    expires_at: Timestamp


class CreateDatasetOut(_Out):
    dataset: DatasetOut
    upload: UploadOut


# --- fine-tuning requests ---------------------------------------------------------------------


class SplitValidationIn(_In):
    mode: Literal["split"]
    percent: int = Field(ge=1, le=50, description="Share of the dataset's rows held back for validation.")


class DatasetValidationIn(_In):
    mode: Literal["dataset"]
    dataset_id: DatasetId


class NoValidationIn(_In):
    mode: Literal["none"]


ValidationIn = Annotated[
    SplitValidationIn | DatasetValidationIn | NoValidationIn,
    Field(discriminator="mode", description="Where validation data comes from."),
]


class ResourcesIn(_In):
    instance_type: str = Field(
        min_length=1, max_length=64, description="SageMaker instance type, e.g. `ml.g5.12xlarge`."
    )
    instance_count: int = Field(default=1, ge=1, le=64, description="Instances; more than one runs torchrun.")
    volume_size_gb: int = Field(default=100, ge=1, le=16384, description="Training volume per instance.")


def _one_base(base_model_id: str | None, base_fine_tuned_model: str | None) -> None:
    if (base_model_id is None) == (base_fine_tuned_model is None):
        # `field` in ctx tells the API's error mapping which field to name.
        raise PydanticCustomError(
            "base_model",
            "Give either base_model_id or base_fine_tuned_model (exactly one).",
            {"field": "base_model_id"},
        )


class CostEstimateIn(_In):
    """The body of `POST /v1/fine-tuned-models`, where the acknowledgement is not needed."""

    name: ModelName | None = None
    base_model_id: BaseModelId | None = None
    base_fine_tuned_model: ModelName | None = Field(
        default=None,
        description="Continue from this fine-tuned model of the workspace instead of a base model.",
    )
    dataset_id: DatasetId
    validation: ValidationIn = Field(default_factory=lambda: NoValidationIn(mode="none"))
    resources: ResourcesIn | None = Field(default=None, description="SageMaker only, and required there.")
    hyperparameters: HyperparametersIn = Field(default_factory=HyperparametersIn)
    optional_hyperparameters: OptionalHyperparametersIn = None
    acknowledge: bool | None = None

    @model_validator(mode="after")
    def _exactly_one_base(self) -> Self:
        _one_base(self.base_model_id, self.base_fine_tuned_model)
        return self


class CreateFineTunedModelIn(CostEstimateIn):
    name: ModelName
    acknowledge: bool = Field(description="Must be true: the user has read the predicted cost.")

    @model_validator(mode="after")
    def _acknowledged(self) -> Self:
        if not self.acknowledge:
            raise PydanticCustomError(
                "acknowledge",
                "Set acknowledge to true once you have read the predicted cost (POST /v1/cost-estimates).",
                {"field": "acknowledge"},
            )
        return self


class AfterHoursIn(_In):
    after_hours: float = Field(gt=0, le=24 * 30, description="Undeploy this many hours after deployment.")


class AtIn(_In):
    at: Timestamp = Field(description="Undeploy at this time (UTC).")


class DeployIn(_In):
    auto_undeploy: AfterHoursIn | AtIn | None = Field(
        default=None, description="When to undeploy automatically; null keeps it deployed until undeployed."
    )


class InvokeIn(_In):
    prompt: str = Field(min_length=1, max_length=100_000)
    max_tokens: int = Field(default=256, ge=1, le=8192)
    temperature: float = Field(default=0.7, ge=0, le=2)
    top_p: float = Field(default=0.9, gt=0, le=1)


class UsageOut(_Out):
    input_tokens: int
    output_tokens: int


class InvokeOut(_Out):
    completion: str
    usage: UsageOut
    latency_ms: int


class DownloadOut(_Out):
    url: str = Field(description="Presigned URL of the `.tar.gz` archive.")
    expires_at: Timestamp
    size_bytes: int
    files: list[str]


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


class ModelCostOut(_Out):
    predicted: CostEstimateOut | None = Field(
        default=None, description="The estimate shown before it started."
    )
    storage_per_month_usd: Usd


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


class ArtifactsOut(_Out):
    size_bytes: int | None = None
    files: list[str] = Field(default_factory=list)
    merged: bool = False


class DeploymentOut(_Out):
    endpoint: str | None = None
    deployed_at: Timestamp | None = None
    auto_undeploy_at: Timestamp | None = None


class FineTunedModelOut(_Out):
    name: str
    status: ModelStatus
    status_label: str
    provider: ProviderName
    hosting: Hosting
    base_model: BaseModelRefOut
    base_fine_tuned_model: str | None = None
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
    artifacts: ArtifactsOut | None = None
    deployment: DeploymentOut | None = None


EventType = ModelEventType


class ModelEventOut(_Out):
    at: Timestamp
    type: EventType
    status: ModelStatus | None = None
    message: str | None = None
    metrics: MetricsOut | None = None
