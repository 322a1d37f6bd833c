"""Persistence records: what tunelab stores about each thing, as pydantic models, and the rules every
store applies when it changes them.

They are not the API's models (`entrypoints.api.contracts`, mapped by `entrypoints.api.views`): a
record holds what the workflows need (object keys, provider references, its version). The stores
(`application.ports`; DynamoDB in `adapters.dynamodb`, in memory in the tests' fakes) keep them.

Times are timezone-aware UTC datetimes. `version` counts writes: a store conditions every write on
the version it read, so a lost race is a `Conflict`, never an overwrite.

Changes are typed: `ModelChanges` and `DatasetChanges` name the fields a use case may change (the
identity, the creator and the datasets of a model never change; its status changes only through a
transition, `status_change`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from tunelab.domain.actual_costs import ActualTrainingCost, DeploymentCost, EarlierAttempts, deployment_cost
from tunelab.domain.catalog import Hosting, Provider, provider_traits
from tunelab.domain.costs import CostEstimate
from tunelab.domain.errors import Conflict, InUse, InvalidState, NameTaken, NotFound, ValidationFailed
from tunelab.domain.evaluation import EvaluationSummary
from tunelab.domain.hyperparameters import ResolvedHyperparameters, ResolvedOptionalHyperparameters
from tunelab.domain.identity import Plan
from tunelab.domain.providers import DeploymentRef, ModelIdentity, ParentModel, TrainedModel, TrainingJobRef
from tunelab.domain.status import (
    TRAINED,
    DatasetStatus,
    ModelEventType,
    ModelStatus,
    NotificationKind,
    can_transition,
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


R = TypeVar("R", bound=BaseModel)
Item = TypeVar("Item")


@dataclass(frozen=True)
class RecordPage(Generic[Item]):
    """One page of a list; `next_token` is opaque and None on the last page."""

    items: list[Item]
    next_token: str | None


class _Record(BaseModel):
    # Unknown attributes are ignored so an older function reads items a newer one wrote.
    # Validators are built on first use, not at import: a cold start builds only what it touches.
    model_config = ConfigDict(extra="ignore", validate_assignment=True, defer_build=True)


class Creator(_Record):
    email: str
    sub: str | None = None


# --- workspace ------------------------------------------------------------------------------------


class WorkspaceRecord(_Record):
    workspace_id: str
    # Set by an operator (`tunelab-admin plan`), never by a request: see `domain.identity`.
    plan: Plan
    # The external id this workspace's BYOK connector must present, made by tunelab on first ask.
    connector_external_id: str | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    version: int = 0


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
    # The last check of the connection, passed or failed (the connect request's or the reconciler's).
    checked_at: AwareDatetime | None = None
    # Set when a provider call for this workspace was refused (access denied): checked at the next sweep.
    recheck_requested_at: AwareDatetime | None = None
    # Who connected it: told when a check finds it broken (and when it works again).
    connected_by: str | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    version: int = 0

    @property
    def last_checked_at(self) -> AwareDatetime:
        """When it was last checked (records made before checks were kept: when it was verified)."""
        return self.checked_at or self.verified_at or self.created_at

    @property
    def account(self) -> str:
        """The AWS account of the connection's role."""
        parts = self.role_arn.split(":")
        return parts[4] if len(parts) > 4 else self.role_arn


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
    # How many fine-tuned models use this dataset (training or validation); kept by the store in the
    # same transactions that create and delete models, so deleting a used dataset is refused.
    model_refs: int = 0
    version: int = 0


class DatasetChanges(BaseModel):
    """What may change on a dataset: its status and what its validation found (never its name)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    status: DatasetStatus | None = None
    s3_key: str | None = None
    size_bytes: int | None = None
    rows: int | None = None
    stats: DatasetStats | None = None
    errors: list[DatasetRowError] | None = None
    error_count: int | None = None
    warnings: list[DatasetWarning] | None = None
    longest_rows: list[DatasetLongRow] | None = None

    def apply(self, record: DatasetRecord) -> DatasetRecord:
        """`record` with the fields given here (those left out stay as they are)."""
        return _applied(record, self)

    def matches(self, record: DatasetRecord) -> bool:
        """Whether `record` already holds every field given here."""
        return all(getattr(record, name) == getattr(self, name) for name in self.model_fields_set)


# --- fine-tuned models ------------------------------------------------------------------------


class DatasetRef(_Record):
    """The dataset as it was when the model was created (its name and rows stay shown if it is deleted)."""

    id: str
    name: str
    rows: int | None = None


class ValidationChoice(_Record):
    mode: Literal["split", "dataset", "none"]
    percent: int | None = None
    dataset: DatasetRef | None = None


class Resources(_Record):
    instance_type: str
    instance_count: int
    volume_size_gb: int
    # How the trainer shares the job over the GPUs, chosen by the memory model when the job was
    # created (None: a record from before, trained data-parallel).
    distribution: Literal["single", "ddp", "fsdp"] | None = None


class Metrics(_Record):
    train_loss: float | None = None
    eval_loss: float | None = None
    step: int | None = None
    epoch: float | None = None


class TrainingState(_Record):
    # The provider's job id, unique per provider (an ARN where names can repeat across accounts);
    # the store indexes it so provider events find the model (`ModelStore.find_by_job`).
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
    # What the job cost once it ended, from the provider's measure (`domain.actual_costs`); with the
    # earlier attempts of a resumed model included. A stopped or failed job has one where measured.
    actual_cost: ActualTrainingCost | None = None
    # 0 for the first run; n after the n-th resume (each attempt has its own execution and job).
    attempt: int = 0
    # After a resume: what the attempts before this one cost (carried from attempt to attempt).
    earlier_attempts: EarlierAttempts | None = None
    # The trainer's evaluation of the trained model beside its base (`domain.evaluation`), once the job
    # completed; where there is none, why (`evaluation_note`: no validation data, turned off, Bedrock...).
    evaluation: EvaluationSummary | None = None
    evaluation_note: str | None = None


class MergedArchive(_Record):
    """The merged copy of an unmerged LoRA model: an archive of its own (the job's output archive) with
    the full weights and configuration in the folder `path`."""

    uri: str
    path: str = "merged/"
    size_bytes: int | None = None
    files: list[str] = Field(default_factory=list)


class Artifacts(_Record):
    # The job's `model.tar.gz`: the model (full, or merged with its adapter), or the adapter alone.
    uri: str | None = None
    size_bytes: int | None = None
    files: list[str] = Field(default_factory=list)
    merged: bool = False
    # LoRA not merged: where the merged copy is; None for full and merged models, and for unmerged LoRA
    # models trained before the trainer wrote one (they can be downloaded as the adapter only).
    merged_archive: MergedArchive | None = None


class DeploymentState(_Record):
    # The endpoint (or Bedrock deployment / provisioned throughput) name, indexed for
    # `ModelStore.find_by_endpoint`.
    endpoint: str | None = None
    endpoint_arn: str | None = None
    execution_arn: str | None = None
    # When this deployment was asked for: its provider names and auto-undeploy schedules derive from it.
    requested_at: AwareDatetime | None = None
    deployed_at: AwareDatetime | None = None
    auto_undeploy_at: AwareDatetime | None = None
    schedule_name: str | None = None
    # The deployment's price per hour, fixed when it was asked for (its running cost is read from it).
    hourly_usd: float | None = None
    # The SageMaker endpoint's instance type and count, chosen when it was asked for (None elsewhere).
    instance_type: str | None = None
    instance_count: int | None = None


class PendingEmail(_Record):
    """The email a status change owes the model's creator, kept on the record from the change until it
    is sent: by the workflow's Notify task, or — when the workflow ended first (the local runtime was
    killed, SES stayed unavailable through Notify's retries) — by the reconciler."""

    kind: NotificationKind
    reason: str | None = None
    since: AwareDatetime


class ProviderRefs(_Record):
    """What the provider holds for this model, as the workflows recorded it."""

    # The training job (StartTraining keeps it).
    training_job: TrainingJobRef | None = None
    # The provider's own trained model, where it keeps the weights (Bedrock's custom model ARN).
    model_ref: str | None = None
    # The current deployment (StartDeployment keeps it; an undeploy forgets it).
    deployment: DeploymentRef | None = None
    # The time of the newest provider event applied: an older one arriving late is skipped.
    last_event_at: AwareDatetime | None = None


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
    # The parent's checkpoint the job starts from instead of its final weights.
    base_checkpoint: str | None = None
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
    refs: ProviderRefs = Field(default_factory=ProviderRefs)
    # An email owed and not yet sent (see PendingEmail).
    pending_email: PendingEmail | None = None
    # The last deployment that ended (its hours and cost), and what all ended deployments cost.
    last_deployment: DeploymentCost | None = None
    deployments_cost_usd: float = 0.0
    version: int = 0

    @model_validator(mode="before")
    @classmethod
    def _refs_from_provider_data(cls, data: Any) -> Any:
        # Items written before `refs` kept the same references in an untyped `provider_data` map.
        if (
            isinstance(data, Mapping)
            and "refs" not in data
            and isinstance(data.get("provider_data"), Mapping)
        ):
            old = data["provider_data"]
            refs = {
                "training_job": old.get("training_job"),
                "model_ref": old.get("model_ref"),
                "deployment": old.get("deployment"),
                "last_event_at": old.get("last_event_at"),
            }
            return {**data, "refs": {k: v for k, v in refs.items() if v is not None}}
        return data

    @property
    def identity(self) -> ModelIdentity:
        """The identity every provider name and idempotency token of this model derives from."""
        return ModelIdentity(workspace_id=self.workspace_id, model_name=self.name, created_at=self.created_at)

    def trained(self) -> TrainedModel:
        """What the provider holds of this model, for deleting it."""
        return TrainedModel(
            identity=self.identity,
            job=self.refs.training_job,
            model_ref=self.refs.model_ref,
            artifacts_uri=self.artifacts.uri if self.artifacts else None,
            attempt=self.training.attempt,
        )

    def deployment_cost(self, until: datetime, *, ended: bool = False) -> DeploymentCost | None:
        """What the deployment has cost to `until` (`ended`: it is undeployed then); None unless the model
        is deployed and in service. Priced at the hourly price kept at deploy time, else (a deployment
        made before prices were kept) the one its prediction showed."""
        deployment = self.deployment
        if self.status != ModelStatus.DEPLOYED or deployment is None or deployment.deployed_at is None:
            return None
        hourly = deployment.hourly_usd
        if hourly is None:
            hourly = self.predicted_cost.deployment_per_hour_usd if self.predicted_cost else 0.0
        return deployment_cost(deployment.deployed_at, until, hourly, ended=ended)

    def weights(self) -> ParentModel | None:
        """Where a model continuing from this one reads its weights: the provider's own model where the
        provider keeps the weights (Bedrock), else the archive; None before training succeeded or when
        the job left none."""
        if self.status not in TRAINED:
            return None
        if provider_traits(self.provider).keeps_weights:
            return ParentModel(model_ref=self.refs.model_ref) if self.refs.model_ref else None
        archive = self.artifacts.uri if self.artifacts else None
        return ParentModel(artifacts_uri=archive) if archive else None


class ModelChanges(BaseModel):
    """What may change on a fine-tuned model besides its status (which changes only in a transition).

    Fields left out stay as they are; `deployment=None` given explicitly clears the deployment.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    training: TrainingState | None = None
    artifacts: Artifacts | None = None
    deployment: DeploymentState | None = None
    storage_per_month_usd: float | None = None
    refs: ProviderRefs | None = None
    # Given explicitly as None: the owed email was sent.
    pending_email: PendingEmail | None = None
    last_deployment: DeploymentCost | None = None
    deployments_cost_usd: float | None = None

    def apply(self, record: ModelRecord) -> ModelRecord:
        """`record` with the fields given here."""
        return _applied(record, self)


class ModelEventRecord(_Record):
    """One entry of a model's history: a status change, the latest metrics, or a message."""

    at: AwareDatetime
    type: ModelEventType
    status: ModelStatus | None = None
    message: str | None = None
    metrics: Metrics | None = None


def _applied(record: R, changes: BaseModel) -> R:
    data = dict(record)
    data.update({name: getattr(changes, name) for name in changes.model_fields_set})
    return type(record).model_validate(data)


# --- the rules every store applies -------------------------------------------------------------


def status_change(
    current: ModelRecord,
    expected_from: Collection[ModelStatus],
    to: ModelStatus,
    changes: ModelChanges | None,
    *,
    now: datetime,
    message: str | None,
) -> tuple[ModelRecord, ModelEventRecord]:
    """`current` moved to `to` with `changes`, and its `status_changed` event; `InvalidState` (naming
    the current status) unless `current` is in `expected_from`."""
    if current.status not in expected_from:
        raise invalid_state(current, expected_from)
    event = ModelEventRecord(at=now, type="status_changed", status=to, message=message)
    moved = (changes or ModelChanges()).apply(current)
    return moved.model_copy(update={"status": to, "last_news_at": now}), event


def check_transitions(expected_from: Collection[ModelStatus], to: ModelStatus) -> None:
    """Every `expected_from` → `to` must be an edge of `tunelab.domain.status.TRANSITIONS`."""
    for source in expected_from:
        if not can_transition(source, to):
            raise ValueError(f"{source.value} -> {to.value} is not a transition of tunelab.domain.status")


def written(new: R, current: R, *, now: datetime) -> R:
    """`new` as the write after `current`: the next version, stamped `now`."""
    return new.model_copy(update={"version": int(getattr(current, "version")) + 1, "updated_at": now})  # noqa: B009


def in_order(events: list[ModelEventRecord], floor: datetime | None) -> list[ModelEventRecord]:
    """`events` with no time before `floor` (the newest time already in the history) or before the
    one ahead of it: a provider's whole-second stamp for something learned after an event stamped
    to the millisecond is shown at that event's time, never before it."""
    ordered: list[ModelEventRecord] = []
    for event in events:
        kept = event if floor is None or event.at >= floor else event.model_copy(update={"at": floor})
        ordered.append(kept)
        floor = kept.at
    return ordered


def with_history(
    new: ModelRecord, events: list[ModelEventRecord]
) -> tuple[ModelRecord, list[ModelEventRecord]]:
    """`new` and its `events` in order after its history so far (`last_event_at` moves with them)."""
    if not events:
        return new, events
    ordered = in_order(events, new.last_event_at)
    return new.model_copy(update={"last_event_at": ordered[-1].at}), ordered


def dataset_ids(model: ModelRecord) -> set[str]:
    """The datasets a model uses (training, and validation when it has its own)."""
    ids = {model.dataset.id}
    if model.validation.dataset is not None:
        ids.add(model.validation.dataset.id)
    return ids


def invalid_state(current: ModelRecord, needed: Collection[ModelStatus]) -> InvalidState:
    labels = " or ".join(s.label for s in ModelStatus if s in needed)
    return InvalidState(
        f"Fine-tuned model '{current.name}' is {current.status.label}; this needs it to be {labels}."
    )


def dataset_in_state(current: DatasetRecord, needed: Collection[str]) -> InvalidState:
    needs = " or ".join(sorted(needed))
    return InvalidState(f"Dataset {current.dataset_id} is {current.status}; this needs it to be {needs}.")


def dataset_in_use(dataset_id: str, users: list[str]) -> InUse:
    """A dataset that cannot be deleted: the models using it (`users`, by name)."""
    shown = ", ".join(f"'{n}'" for n in users[:5]) + (" and others" if len(users) > 5 else "")
    return InUse(
        f"Dataset {dataset_id} is used by the fine-tuned model{'s' if len(users) != 1 else ''} "
        f"{shown or '(being created)'}; delete {'them' if len(users) != 1 else 'it'} first."
    )


def dataset_unusable(dataset_id: str, found: DatasetRecord | None) -> ValidationFailed:
    """A model cannot be created from a dataset that is gone or not ready."""
    state = "does not exist" if found is None else f"is {found.status}"
    return ValidationFailed.of(
        "dataset_id", f"Dataset {dataset_id} {state}; a fine-tuning job needs a ready dataset."
    )


def bad_page_token() -> ValidationFailed:
    """A `next_token` that the list it is used on did not return (another list, workspace, or made up)."""
    return ValidationFailed.of(
        "next_token", "This next_token was not returned by this list; start again without it."
    )


def model_not_found(name: str) -> NotFound:
    return NotFound(f"There is no fine-tuned model '{name}' in this workspace.")


def dataset_not_found(dataset_id: str) -> NotFound:
    return NotFound(f"There is no dataset {dataset_id} in this workspace.")


def role_taken(role_arn: str) -> InUse:
    """One customer role belongs to one workspace: another workspace's connection holds this one."""
    return InUse(
        f"The role {role_arn} is connected to another tunelab workspace. Each workspace deploys its own "
        "connector stack (GET /v1/providers/sagemaker/connector gives its parameters) and connects the "
        "role that stack made."
    )


def workspace_not_found(workspace: str) -> NotFound:
    return NotFound(f"There is no workspace '{workspace}'.")


def changed_since_read(what: str) -> Conflict:
    return Conflict(f"The {what} changed since it was read; read it again and retry.")


def lost_race(what: str) -> Conflict:
    return Conflict(f"The {what} kept changing while this request was applied; try again.")


def dataset_name_taken(name: str) -> NameTaken:
    return NameTaken(f"A dataset named '{name}' already exists in this workspace; choose another name.")


def model_name_taken(name: str) -> NameTaken:
    return NameTaken(
        f"A fine-tuned model named '{name}' already exists in this workspace; choose another name."
    )


__all__ = [
    "Artifacts",
    "Creator",
    "DatasetChanges",
    "DatasetLongRow",
    "DatasetRecord",
    "DatasetRef",
    "DatasetRowError",
    "DatasetStats",
    "DatasetWarning",
    "DeploymentState",
    "MergedArchive",
    "Metrics",
    "ModelChanges",
    "ModelEventRecord",
    "ModelRecord",
    "ProviderConnectionRecord",
    "ProviderRefs",
    "RecordPage",
    "Resources",
    "TrainingState",
    "ValidationChoice",
    "WorkspaceRecord",
]
