"""What the use cases need from the world, as protocols: the stores of each aggregate, object
storage, the workflows, the event bus, email, schedules and the providers.

The adapters (`tunelab.adapters`: DynamoDB, S3, Step Functions, EventBridge, SES, Scheduler,
Bedrock, SageMaker; the local runtime's provider) implement them for AWS; the tests' in-memory
fakes implement them too, so every use case runs without AWS. Every method raises only the
domain's errors (`tunelab.domain.errors`).
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, BinaryIO, Literal, Protocol

from tunelab.application.workflows import TrainingOutcome
from tunelab.domain.catalog import BaseModelSpec, Catalog, Provider, Runtime
from tunelab.domain.checkpoints import CheckpointList
from tunelab.domain.evaluation import EvaluationReport, EvaluationSkipped
from tunelab.domain.events import DomainEvent
from tunelab.domain.hyperparameters import ResolvedHyperparameters, ResolvedOptionalHyperparameters
from tunelab.domain.identity import Plan
from tunelab.domain.listing import DatasetQuery, ModelQuery
from tunelab.domain.notifications import Email
from tunelab.domain.providers import (
    ConnectionCheck,
    DeploymentRef,
    DeploymentState,
    DeployRequest,
    DownloadLink,
    InvokeParams,
    InvokeResult,
    ModelIdentity,
    ProviderEvent,
    ResumePoint,
    SageMakerConnection,
    TrainedModel,
    TrainedOutput,
    TrainingJobRef,
    TrainingRequest,
    TrainingState,
)
from tunelab.domain.records import (
    DatasetChanges,
    DatasetRecord,
    Metrics,
    ModelChanges,
    ModelEventRecord,
    ModelRecord,
    ProviderConnectionRecord,
    RecordPage,
    WorkspaceRecord,
)
from tunelab.domain.schedules import AutoUndeploy
from tunelab.domain.status import ModelStatus
from tunelab.domain.training_logs import TrainingLogPage

TaskPurpose = Literal["training", "deployment", "undeployment"]
TASK_PURPOSES: tuple[TaskPurpose, ...] = ("training", "deployment", "undeployment")

# --- records ---------------------------------------------------------------------------------------


class WorkspaceStore(Protocol):
    def find(self, workspace: str) -> WorkspaceRecord | None: ...

    def get(self, workspace: str) -> WorkspaceRecord:
        """The workspace; `NotFound` when there is none."""
        ...

    def ensure(self, workspace: str, *, default_plan: Plan) -> WorkspaceRecord:
        """The workspace, created on first sight with `default_plan`; an existing one is returned as it
        is (a caller never changes its plan: `set_plan` does, for an operator)."""
        ...

    def set_plan(self, workspace: str, plan: Plan, *, default_plan: Plan) -> WorkspaceRecord:
        """Give the workspace `plan` (created with it when new): the operator's path, never a request's."""
        ...

    def ensure_connector_external_id(self, workspace: str, candidate: str) -> str:
        """The external id the workspace's BYOK connector must present: `candidate` is kept the first
        time (the workspace must exist); the one kept is returned ever after."""
        ...


class ConnectionStore(Protocol):
    def find(self, workspace: str, provider: str = "sagemaker") -> ProviderConnectionRecord | None: ...

    def put(
        self, record: ProviderConnectionRecord, *, expected_version: int | None = None
    ) -> ProviderConnectionRecord:
        """Create or replace the workspace's connection (the latest verification wins). One role belongs
        to one workspace: `InUse` when another workspace's connection holds `record.role_arn`.
        `Conflict` when `expected_version` is given and the stored connection is no longer that one."""
        ...

    def due_for_check(
        self, checked_before: datetime, *, limit: int = 20
    ) -> builtins.list[ProviderConnectionRecord]:
        """Connections (any workspace) whose re-check was asked for, then those last checked before
        `checked_before`, longest unchecked first; at most `limit`."""
        ...

    def delete(self, workspace: str, provider: str = "sagemaker") -> bool:
        """Forget the connection (and release its role); False when there was none."""
        ...


class RequestBudget(Protocol):
    """How many requests each workspace may send: a count per workspace and time window."""

    def spend(self, workspace: str, *, limit: int, window_s: int) -> bool:
        """Count one request of `workspace` in the current window of `window_s` seconds; False (and not
        counted) when the window already holds `limit`."""
        ...


class DatasetStore(Protocol):
    def create(self, record: DatasetRecord) -> DatasetRecord:
        """Store a new dataset; `NameTaken` when the workspace has one of that name (any case)."""
        ...

    def find(self, workspace: str, dataset_id: str) -> DatasetRecord | None: ...

    def get(self, workspace: str, dataset_id: str) -> DatasetRecord:
        """The dataset; `NotFound` when there is none."""
        ...

    def list(
        self,
        workspace: str,
        *,
        limit: int = 50,
        next_token: str | None = None,
        status: Collection[str] | None = None,
        query: DatasetQuery | None = None,
    ) -> RecordPage[DatasetRecord]:
        """The workspace's datasets matching `query` in its order (default oldest first), and in
        `status` when given; each page full unless it is the last. `ValidationFailed` for a token of
        another list or order."""
        ...

    def update(
        self,
        workspace: str,
        dataset_id: str,
        changes: DatasetChanges,
        *,
        expected_version: int | None = None,
        expected_status: Collection[str] | None = None,
    ) -> DatasetRecord:
        """Apply `changes`; `Conflict` when `expected_version` moved, `InvalidState` unless the status
        is one of `expected_status` (checked again on every retry)."""
        ...

    def delete(self, workspace: str, dataset_id: str) -> None:
        """Delete the record (its files are the caller's); `InUse` naming the models that use it."""
        ...


class ModelStore(Protocol):
    def create(self, record: ModelRecord, *, message: str | None = None) -> ModelRecord:
        """Store a new model with its first `status_changed` event and count it as a user of its
        datasets, at once. `NameTaken`; `ValidationFailed` (`dataset_id`) for a dataset gone or not ready."""
        ...

    def find(self, workspace: str, name: str) -> ModelRecord | None: ...

    def get(self, workspace: str, name: str) -> ModelRecord:
        """The model; `NotFound` when there is none."""
        ...

    def list(
        self,
        workspace: str,
        *,
        limit: int = 50,
        next_token: str | None = None,
        status: Collection[ModelStatus] | None = None,
        query: ModelQuery | None = None,
    ) -> RecordPage[ModelRecord]:
        """The workspace's models matching `query` in its order (default by name), and in `status`
        when given; each page full unless it is the last."""
        ...

    def update(
        self,
        workspace: str,
        name: str,
        changes: ModelChanges,
        *,
        expected_version: int | None = None,
        expected_status: Collection[ModelStatus] | None = None,
    ) -> ModelRecord:
        """Apply `changes` without a status change (`Conflict`, `InvalidState` as for datasets)."""
        ...

    def transition(
        self,
        workspace: str,
        name: str,
        expected_from: Collection[ModelStatus],
        to: ModelStatus,
        changes: ModelChanges | None = None,
        *,
        message: str | None = None,
        expected_version: int | None = None,
    ) -> ModelRecord:
        """Move the model to `to` if it is in `expected_from`, with `changes` and a `status_changed`
        event, at once; `InvalidState` naming the status otherwise. Each edge must be in the table."""
        ...

    def try_transition(
        self,
        workspace: str,
        name: str,
        expected_from: Collection[ModelStatus],
        to: ModelStatus,
        changes: ModelChanges | None = None,
        *,
        message: str | None = None,
    ) -> ModelRecord | None:
        """`transition`, or None when the model is not in `expected_from` (a duplicate or late event)."""
        ...

    def record_metrics(
        self, workspace: str, name: str, metrics: Metrics, *, at: datetime | None = None
    ) -> ModelRecord | None:
        """Keep the latest metrics and append a `metrics` event; None unless training or stopping."""
        ...

    def add_message(
        self, workspace: str, name: str, message: str, *, at: datetime | None = None
    ) -> ModelRecord:
        """Append a `message` event and count it as news."""
        ...

    def delete(self, workspace: str, name: str, *, allowed: Collection[ModelStatus]) -> ModelRecord:
        """Delete the model if in `allowed` (`InvalidState` if not), release its datasets, remove its
        history and task tokens. Returns what was deleted."""
        ...

    def list_events(
        self, workspace: str, name: str, *, limit: int = 50, next_token: str | None = None
    ) -> RecordPage[ModelEventRecord]:
        """The model's history, oldest first."""
        ...

    def find_by_job(self, provider: str, job_id: str) -> ModelRecord | None:
        """The model whose training job this is (any workspace)."""
        ...

    def find_by_endpoint(self, provider: str, endpoint: str) -> ModelRecord | None:
        """The model deployed on this endpoint or deployment of `provider` (any workspace)."""
        ...

    def stale(
        self, no_news_since: datetime, *, statuses: Collection[ModelStatus], limit: int = 100
    ) -> builtins.list[ModelRecord]:
        """Models (any workspace) in these transient statuses with no news since then, least recently
        heard of first."""
        ...

    def unsent_emails(self, *, limit: int = 100) -> builtins.list[ModelRecord]:
        """Models (any workspace) that still owe their creator an email (`pending_email`), the longest
        owed first."""
        ...

    def using_dataset(self, workspace: str, dataset_id: str) -> builtins.list[ModelRecord]:
        """The workspace's models trained or validated on this dataset."""
        ...


class TaskTokens(Protocol):
    """The Step Functions task tokens workflows wait on, kept with the model they are about."""

    def put(
        self, workspace: str, name: str, purpose: TaskPurpose, token: str, *, until: datetime
    ) -> None: ...

    def get(self, workspace: str, name: str, purpose: TaskPurpose) -> str | None:
        """The waiting token; None when there is none or it expired."""
        ...

    def delete(self, workspace: str, name: str, purpose: TaskPurpose) -> None: ...


# --- files ----------------------------------------------------------------------------------------------


class ObjectStore(Protocol):
    """Objects by `s3://bucket/key` URI. A missing object (or, with `etag`, one replaced since) is
    None / False where the method says so; other failures are the domain's errors."""

    def put(self, uri: str, body: bytes | BinaryIO, *, content_type: str) -> None: ...

    def open(self, uri: str, *, etag: str | None = None) -> BinaryIO | None:
        """The object's body as a stream; None when it is gone (or no longer the version `etag`)."""
        ...

    def exists(self, uri: str, *, etag: str | None = None) -> bool: ...

    def size(self, uri: str) -> int:
        """The object's size in bytes; `NotFound` when it is gone."""
        ...

    def copy(self, source: str, target: str) -> None: ...

    def delete(self, *uris: str) -> None:
        """Delete these objects; those already gone are skipped."""
        ...

    def delete_folder(self, folder: str) -> None:
        """Delete every object under `folder` (`s3://bucket/prefix/`)."""
        ...

    def upload_url(self, uri: str, *, content_type: str, expires_in_s: int) -> str:
        """A presigned PUT for `uri`."""
        ...


# --- workflows, events, email, schedules ----------------------------------------------------------------


class Workflows(Protocol):
    """The fine-tuning and deployment state machines, and the answers their waiting tasks need.

    Executions are named after the model (`workflows.execution_name`), so their ARNs are known before
    they start and a second start of the same one finds it."""

    def fine_tuning_arn(self, record: ModelRecord) -> str: ...

    def deployment_arn(self, record: ModelRecord, requested_at: datetime) -> str: ...

    def start_fine_tuning(
        self, record: ModelRecord, *, correlation_id: str, training_timeout_seconds: int | None = None
    ) -> str:
        """Start the model's fine-tuning execution; `training_timeout_seconds` overrides how long it waits
        for the provider's job (the provider's own limit otherwise)."""
        ...

    def start_deployment(
        self,
        record: ModelRecord,
        *,
        requested_at: datetime,
        correlation_id: str,
        auto_undeploy_at: datetime | None,
    ) -> str: ...

    def send_training_outcome(self, token: str, outcome: TrainingOutcome) -> bool:
        """Complete the waiting StartTraining task; False when nothing waits on the token any more."""
        ...

    def send_training_heartbeat(self, token: str) -> bool: ...

    def running(self, execution_arn: str) -> bool:
        """Whether the execution still runs (False once it ended, or when there is none of that ARN)."""
        ...


class EventPublisher(Protocol):
    def publish(self, *events: DomainEvent) -> None:
        """Publish on tunelab's bus; `ProviderTransientError` when some events never land."""
        ...


class Notifier(Protocol):
    def send(self, email: Email) -> str:
        """Send the email; its message id."""
        ...


class Scheduler(Protocol):
    """A deployment's one-time auto-undeploy schedules (each with the schedules dead-letter queue)."""

    def create_auto_undeploy(
        self,
        identity: ModelIdentity,
        *,
        uid: str,
        requested_at: datetime,
        undeploy_at: datetime,
        deployed_at: datetime | None = None,
    ) -> AutoUndeploy:
        """Create (or find) the undeploy schedule and its reminder."""
        ...

    def delete(self, *names: str) -> None:
        """Delete these schedules; those already gone are skipped."""
        ...


# --- providers ------------------------------------------------------------------------------------------


class TrainingProvider(Protocol):
    """Trains, serves and removes fine-tuned models in one place (Bedrock, SageMaker, the local runtime).

    Everything that differs by provider is behind these methods or in the catalog's provider traits
    (`domain.catalog.ProviderTraits`); a use case never asks which provider it has.
    """

    name: Provider
    # How long the fine-tuning workflow waits for a job of this provider before it gives up.
    training_timeout_s: int

    @property
    def storage(self) -> ObjectStore:
        """Where this provider's jobs read their data and write their artifacts."""
        ...

    def training_data_folder(self, identity: ModelIdentity, uid: str, base_model: BaseModelSpec) -> str:
        """The folder (`s3://.../`) a model's prepared training data goes to, where its job reads it (for
        a provider that trains each base model in its own region, in that region)."""
        ...

    def check_new_job(self, identity: ModelIdentity) -> None:
        """Refuse a model whose job could not start here (e.g. `NameTaken` for a job name taken in the
        customer's account), before the user waits for a workflow that would fail on it."""
        ...

    def training_hyperparameters(
        self,
        spec: BaseModelSpec,
        hyperparameters: ResolvedHyperparameters,
        optional: ResolvedOptionalHyperparameters | None,
        *,
        provider_split_percent: float | None,
    ) -> dict[str, str]:
        """The resolved hyperparameters in this provider's names and formats."""
        ...

    def start_training(self, request: TrainingRequest) -> TrainingJobRef:
        """Start the job; calling it again for the same request finds the same job."""
        ...

    def stop_training(self, ref: TrainingJobRef) -> None:
        """Ask the job to stop; a job that already ended is left as it is."""
        ...

    def resume_point(self, identity: ModelIdentity, attempt: int) -> ResumePoint | None:
        """The newest checkpoint the model's jobs up to `attempt` saved, which a job started with
        `TrainingRequest.attempt` above it continues from; None when none was saved. `ValidationFailed`
        where this provider cannot resume a job (Bedrock)."""
        ...

    def describe_training(self, ref: TrainingJobRef) -> TrainingState: ...

    def trained_output(
        self,
        ref: TrainingJobRef | None,
        *,
        artifacts_uri: str | None,
        model_ref: str | None,
        merged: bool,
    ) -> TrainedOutput:
        """What a completed job left (what its outcome did not say is read from the provider), with the
        archive's size and files where it has one; `ValidationFailed` when it left nothing usable."""
        ...

    def deploy(self, request: DeployRequest) -> DeploymentRef:
        """Start serving the model; calling it again for the same request finds the same deployment."""
        ...

    def describe_deployment(self, ref: DeploymentRef) -> DeploymentState: ...

    def undeploy(self, ref: DeploymentRef) -> None:
        """Delete the deployment; parts already gone are skipped, so a retry completes."""
        ...

    def invoke(self, ref: DeploymentRef, params: InvokeParams) -> InvokeResult: ...

    def download(self, artifacts_uri: str, *, expires_in_s: int = 900) -> DownloadLink: ...

    def delete_model(self, model: TrainedModel) -> None:
        """Remove the trained model and what the provider stored for it; already gone is fine."""
        ...

    def speaks_for(self, account: str | None) -> bool:
        """Whether an event from `account` may change this provider's models (a BYOK provider's models
        hear only from the customer's own account)."""
        ...

    def training_log(self, ref: TrainingJobRef, *, position: str | None, limit: int) -> TrainingLogPage:
        """Up to `limit` lines of the job's log from `position` (None: its first line), oldest first, and
        the position after them; a position this provider did not make is `ValidationFailed` on
        `next_token`. A provider that keeps no log answers no lines and says so (`message`)."""
        ...

    def evaluation_report(self, ref: TrainingJobRef) -> EvaluationReport | EvaluationSkipped | None:
        """The trainer's evaluation of the job's model beside its base (`domain.evaluation`), or why it
        did not evaluate (a provider that trains the model itself says so); None when the job left no
        report (yet)."""
        ...

    def checkpoints(self, ref: TrainingJobRef) -> CheckpointList:
        """The checkpoints the job kept (`checkpoint-<step>/` with its `trainer_state.json`), by step. A
        provider that keeps none answers none and says so (`message`)."""
        ...

    def checkpoint_download(
        self, ref: TrainingJobRef, checkpoint_id: str, *, expires_in_s: int = 900
    ) -> DownloadLink:
        """A short-lived link to a `.tar.gz` of one checkpoint's folder; `NotFound` for a checkpoint the
        job did not keep, `ValidationFailed` where this provider offers no such download."""
        ...


class Providers(Protocol):
    """The providers this deployment has, made on first use."""

    def for_model(self, record: ModelRecord) -> TrainingProvider:
        """The provider of a model (its provider, in its workspace)."""
        ...

    def parse_event(
        self, source: str, detail_type: str, detail: Mapping[str, Any], account: str | None
    ) -> ProviderEvent:
        """A provider's EventBridge event; `UnhandledEventError` for what no provider handles."""
        ...

    def verify_connection(self, connection: SageMakerConnection, workspace: str) -> ConnectionCheck:
        """Assume the customer's role and check each permission the jobs need."""
        ...

    def forget(self, provider: Provider, workspace: str) -> None:
        """Drop what was made from a workspace's connection (it was replaced or deleted)."""
        ...


# --- everything a use case gets -------------------------------------------------------------------------


class Config(Protocol):
    """The deployment's settings a use case reads."""

    @property
    def runtime(self) -> Runtime: ...

    @property
    def aws_region(self) -> str: ...

    @property
    def provider_regions(self) -> tuple[str, ...]:
        """Regions besides `aws_region` where the deployment reaches its regional providers."""
        ...

    @property
    def default_plan(self) -> Plan: ...

    @property
    def datasets_bucket(self) -> str: ...

    @property
    def workspace_requests_per_minute(self) -> int: ...

    @property
    def event_bus_arn(self) -> str | None: ...

    @property
    def connector_trusted_role_arns(self) -> tuple[str, ...]: ...


class Context(Protocol):
    """The ports and settings every use case receives as its first argument (`ctx`).

    The composition root (`composition.wiring.Services`) provides it over AWS, each port made on
    first use; the tests' fakes provide it in memory.
    """

    @property
    def config(self) -> Config: ...

    @property
    def catalog(self) -> Catalog: ...

    @property
    def workspaces(self) -> WorkspaceStore: ...

    @property
    def connections(self) -> ConnectionStore: ...

    @property
    def request_budget(self) -> RequestBudget: ...

    @property
    def datasets(self) -> DatasetStore: ...

    @property
    def models(self) -> ModelStore: ...

    @property
    def task_tokens(self) -> TaskTokens: ...

    @property
    def files(self) -> ObjectStore:
        """The platform's own buckets (datasets, artifacts)."""
        ...

    @property
    def workflows(self) -> Workflows: ...

    @property
    def events(self) -> EventPublisher: ...

    @property
    def notifier(self) -> Notifier: ...

    @property
    def scheduler(self) -> Scheduler: ...

    @property
    def providers(self) -> Providers: ...

    def now(self) -> datetime: ...
