"""Persistence records: what tunelab stores about each thing, as pydantic models.

They are not the API's models (`tunelab.entrypoints.api.contracts`): a record holds what the workflows need
(S3 keys, provider ids, the record's version) and maps to the API's view with `to_out()`.
`tunelab.adapters.dynamodb` stores them in the one DynamoDB table; the key layout lives there.

Times are timezone-aware UTC datetimes. `version` counts writes: the repository conditions every
write on the version it read, so a lost race is a `Conflict`, never an overwrite.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tunelab.domain.catalog import Hosting, Provider
from tunelab.domain.costs import CostEstimate
from tunelab.domain.hyperparameters import ResolvedHyperparameters, ResolvedOptionalHyperparameters
from tunelab.domain.identity import Plan, byok_allowed
from tunelab.domain.status import DatasetStatus, ModelEventType, ModelStatus

if TYPE_CHECKING:
    # The API's models are imported where a record is turned into one (`to_out`), not here:
    # functions that never answer HTTP do not load them at their cold start.
    from tunelab.entrypoints.api.contracts import (
        CreatorOut,
        DatasetOut,
        DatasetRefOut,
        FineTunedModelOut,
        MetricsOut,
        ModelEventOut,
        ProviderOut,
        ValidationOut,
        WorkspaceOut,
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def new_dataset_id(now: datetime | None = None) -> str:
    """`ds_` + 26 characters: 48 bits of milliseconds then 80 random bits (ULID layout, lower case),
    so ids sort by creation time and datasets list oldest first."""
    millis = int(now.timestamp() * 1000) if now else time.time_ns() // 1_000_000
    value = (millis << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "ds_" + "".join(reversed(chars))


def new_uid() -> str:
    """A random id for one life of a model name (a name deleted and reused gets a new one)."""
    return secrets.token_hex(8)


class _Record(BaseModel):
    # Unknown attributes are ignored so an older function reads items a newer one wrote.
    # Validators are built on first use, not at import: a cold start builds only what it touches.
    model_config = ConfigDict(extra="ignore", validate_assignment=True, defer_build=True)


class Creator(_Record):
    email: str
    sub: str | None = None

    def to_out(self) -> CreatorOut:
        from tunelab.entrypoints.api.contracts import CreatorOut  # noqa: PLC0415  # see TYPE_CHECKING

        return CreatorOut(email=self.email, sub=self.sub)


# --- workspace ------------------------------------------------------------------------------------


class WorkspaceRecord(_Record):
    workspace_id: str
    plan: Plan
    created_at: AwareDatetime
    updated_at: AwareDatetime
    version: int = 0

    def to_out(self) -> WorkspaceOut:
        from tunelab.entrypoints.api.contracts import WorkspaceOut  # noqa: PLC0415  # see TYPE_CHECKING

        return WorkspaceOut(id=self.workspace_id, plan=self.plan, byok_allowed=byok_allowed(self.plan))


# --- provider connection --------------------------------------------------------------------------


class ProviderConnectionRecord(_Record):
    """A workspace's connection to its own provider account (BYOK; today SageMaker)."""

    workspace_id: str
    provider: Literal["sagemaker"] = "sagemaker"
    role_arn: str
    external_id: str
    region: str
    artifact_bucket: str
    hf_token_secret_arn: str | None = None
    status: Literal["connected", "error"]
    message: str | None = None
    verified_at: AwareDatetime | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    version: int = 0

    def to_out(self) -> ProviderOut:
        from tunelab.entrypoints.api.contracts import ProviderOut  # noqa: PLC0415  # see TYPE_CHECKING

        return ProviderOut(
            provider=self.provider,
            status=self.status,
            role_arn=self.role_arn,
            region=self.region,
            artifact_bucket=self.artifact_bucket,
            hf_token_secret_arn=self.hf_token_secret_arn,
            verified_at=self.verified_at,
            message=self.message,
        )


# --- datasets ---------------------------------------------------------------------------------


class DatasetStats(_Record):
    prompt_tokens: int
    completion_tokens: int
    max_row_tokens: int
    duplicate_rows: int = 0
    empty_rows_skipped: int = 0


class DatasetLongRow(_Record):
    """One of the dataset's longest rows (1-based data row, estimated tokens): a model's per-row
    limit, known only when a model is created from the dataset, names the rows over it."""

    row: int
    tokens: int


class DatasetRowError(_Record):
    row: int | None = None
    column: str | None = None
    message: str


class DatasetWarning(_Record):
    row: int | None = None
    message: str


class DatasetRecord(_Record):
    workspace_id: str
    dataset_id: str
    name: str
    status: DatasetStatus
    created_at: AwareDatetime
    updated_at: AwareDatetime
    created_by: Creator
    # Where the CSV lives in the datasets bucket.
    s3_key: str | None = None
    size_bytes: int | None = None
    rows: int | None = None
    stats: DatasetStats | None = None
    errors: list[DatasetRowError] = Field(default_factory=list)
    error_count: int = 0
    warnings: list[DatasetWarning] = Field(default_factory=list)
    # The longest rows, longest first (up to `DatasetLimits.longest_rows_kept`).
    longest_rows: list[DatasetLongRow] = Field(default_factory=list)
    # How many fine-tuned models use this dataset (training or validation); kept by the repository in
    # the same transactions that create and delete models, so deleting a used dataset is refused.
    model_refs: int = 0
    version: int = 0

    def to_out(self) -> DatasetOut:
        from tunelab.entrypoints.api.contracts import (  # noqa: PLC0415  # see TYPE_CHECKING
            CreatorOut,
            DatasetOut,
            DatasetRowErrorOut,
            DatasetStatsOut,
            DatasetWarningOut,
        )

        return DatasetOut(
            id=self.dataset_id,
            name=self.name,
            status=self.status,
            created_at=self.created_at,
            created_by=CreatorOut(email=self.created_by.email),
            size_bytes=self.size_bytes,
            rows=self.rows,
            stats=DatasetStatsOut(**self.stats.model_dump()) if self.stats else None,
            errors=[DatasetRowErrorOut(**e.model_dump()) for e in self.errors],
            error_count=self.error_count,
            warnings=[DatasetWarningOut(**w.model_dump()) for w in self.warnings],
        )


# --- fine-tuned models ------------------------------------------------------------------------


class DatasetRef(_Record):
    """The dataset as it was when the model was created (its name and rows stay shown if it is deleted)."""

    id: str
    name: str
    rows: int | None = None

    def to_out(self) -> DatasetRefOut:
        from tunelab.entrypoints.api.contracts import DatasetRefOut  # noqa: PLC0415  # see TYPE_CHECKING

        return DatasetRefOut(id=self.id, name=self.name, rows=self.rows)


class ValidationChoice(_Record):
    mode: Literal["split", "dataset", "none"]
    percent: int | None = None
    dataset: DatasetRef | None = None

    def to_out(self) -> ValidationOut:
        from tunelab.entrypoints.api.contracts import ValidationOut  # noqa: PLC0415  # see TYPE_CHECKING

        return ValidationOut(
            mode=self.mode, percent=self.percent, dataset=self.dataset.to_out() if self.dataset else None
        )


class Resources(_Record):
    instance_type: str
    instance_count: int
    volume_size_gb: int


class Metrics(_Record):
    train_loss: float | None = None
    eval_loss: float | None = None
    step: int | None = None
    epoch: float | None = None

    def to_out(self) -> MetricsOut:
        from tunelab.entrypoints.api.contracts import MetricsOut  # noqa: PLC0415  # see TYPE_CHECKING

        return MetricsOut(**self.model_dump())


class TrainingState(_Record):
    # The provider's job id, unique per provider (an ARN where names can repeat across accounts);
    # the repository indexes it so provider events find the model (`find_model_by_job`).
    job_id: str | None = None
    execution_arn: str | None = None
    started_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None
    phase: str | None = None
    failure_reason: str | None = None
    metrics: Metrics | None = None
    # Where the provider job reads its data and writes its output (s3:// URIs).
    data_uri: str | None = None
    output_uri: str | None = None


class Artifacts(_Record):
    uri: str | None = None
    size_bytes: int | None = None
    files: list[str] = Field(default_factory=list)
    merged: bool = False


class DeploymentState(_Record):
    # The endpoint (or Bedrock deployment / provisioned throughput) name, indexed for
    # `find_model_by_endpoint`.
    endpoint: str | None = None
    endpoint_arn: str | None = None
    execution_arn: str | None = None
    deployed_at: AwareDatetime | None = None
    auto_undeploy_at: AwareDatetime | None = None
    schedule_name: str | None = None


class ModelRecord(_Record):
    workspace_id: str
    name: str
    # One life of this name; the events partition is keyed by it.
    uid: str = Field(default_factory=new_uid)
    status: ModelStatus
    provider: Provider
    hosting: Hosting
    base_model_id: str
    base_model_name: str
    base_fine_tuned_model: str | None = None
    dataset: DatasetRef
    validation: ValidationChoice
    resources: Resources | None = None
    hyperparameters: ResolvedHyperparameters
    optional_hyperparameters: ResolvedOptionalHyperparameters | None = None
    predicted_cost: CostEstimate | None = None
    storage_per_month_usd: float = 0.0
    created_by: Creator
    created_at: AwareDatetime
    updated_at: AwareDatetime
    training: TrainingState = Field(default_factory=TrainingState)
    artifacts: Artifacts | None = None
    deployment: DeploymentState | None = None
    # Last time anything was heard of this model (a status change, metrics, a message): the
    # reconciler asks the provider about transient models with no news for a while.
    last_news_at: AwareDatetime
    # The `at` of the newest event in its history. Providers stamp their events to the second
    # (EventBridge's `time`), so an event may carry a time before one already recorded; the history
    # is kept in the order tunelab learned of things, and its times never go backwards.
    last_event_at: AwareDatetime | None = None
    # Provider adapters' own data (e.g. a Bedrock custom model ARN, the BYOK role used).
    provider_data: dict[str, Any] = Field(default_factory=dict)
    version: int = 0

    def to_out(self) -> FineTunedModelOut:
        from tunelab.entrypoints.api.contracts import (  # noqa: PLC0415  # see TYPE_CHECKING
            ArtifactsOut,
            BaseModelRefOut,
            DeploymentOut,
            FineTunedModelOut,
            ModelCostOut,
            ResourcesOut,
            TrainingOut,
        )

        training = self.training
        return FineTunedModelOut(
            name=self.name,
            status=self.status,
            status_label=self.status.label,
            provider=self.provider,
            hosting=self.hosting,
            base_model=BaseModelRefOut(id=self.base_model_id, name=self.base_model_name),
            base_fine_tuned_model=self.base_fine_tuned_model,
            dataset=self.dataset.to_out(),
            validation=self.validation.to_out(),
            resources=ResourcesOut(**self.resources.model_dump()) if self.resources else None,
            hyperparameters=self.hyperparameters,
            optional_hyperparameters=self.optional_hyperparameters,
            cost=ModelCostOut(
                predicted=self.predicted_cost, storage_per_month_usd=self.storage_per_month_usd
            ),
            created_by=self.created_by.to_out(),
            created_at=self.created_at,
            updated_at=self.updated_at,
            training=TrainingOut(
                job_id=training.job_id,
                execution_arn=training.execution_arn,
                started_at=training.started_at,
                ended_at=training.ended_at,
                phase=training.phase,
                failure_reason=training.failure_reason,
                metrics=training.metrics.to_out() if training.metrics else None,
            ),
            artifacts=ArtifactsOut(
                size_bytes=self.artifacts.size_bytes, files=self.artifacts.files, merged=self.artifacts.merged
            )
            if self.artifacts
            else None,
            deployment=DeploymentOut(
                endpoint=self.deployment.endpoint,
                deployed_at=self.deployment.deployed_at,
                auto_undeploy_at=self.deployment.auto_undeploy_at,
            )
            if self.deployment
            else None,
        )


class ModelEventRecord(_Record):
    """One entry of a model's history: a status change, the latest metrics, or a message."""

    at: AwareDatetime
    type: ModelEventType
    status: ModelStatus | None = None
    message: str | None = None
    metrics: Metrics | None = None

    def to_out(self) -> ModelEventOut:
        from tunelab.entrypoints.api.contracts import ModelEventOut  # noqa: PLC0415  # see TYPE_CHECKING

        return ModelEventOut(
            at=self.at,
            type=self.type,
            status=self.status,
            message=self.message,
            metrics=self.metrics.to_out() if self.metrics else None,
        )
