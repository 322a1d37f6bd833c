"""The fakes of object storage, workflows, the event bus, email, schedules and providers, and
`FakeContext`: every port a use case needs, in memory, with what each was asked kept for the test."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from tests.fakes.stores import (
    MemoryConnections,
    MemoryDatasets,
    MemoryModels,
    MemoryRequestBudget,
    MemoryTable,
    MemoryTaskTokens,
    MemoryWorkspaces,
)
from tunelab.adapters.providers import parse_event
from tunelab.application.workflows import TrainingOutcome
from tunelab.domain.catalog import BaseModelSpec, Catalog, Provider, Runtime, load_catalog, provider_traits
from tunelab.domain.checkpoints import CheckpointInfo, CheckpointList, by_step, unknown_checkpoint
from tunelab.domain.errors import NameTaken, NotFound, ValidationFailed
from tunelab.domain.evaluation import EvaluationReport, EvaluationSkipped
from tunelab.domain.events import DomainEvent
from tunelab.domain.hyperparameters import (
    ResolvedHyperparameters,
    ResolvedOptionalHyperparameters,
    to_trainer_hyperparameters,
)
from tunelab.domain.identity import Plan
from tunelab.domain.notifications import Email
from tunelab.domain.providers import (
    ConnectionCheck,
    DeploymentRef,
    DeploymentState,
    DeployRequest,
    DownloadLink,
    InvokeParams,
    InvokeResult,
    MergedArchive,
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
from tunelab.domain.records import ModelRecord
from tunelab.domain.schedules import AutoUndeploy, plan_auto_undeploy
from tunelab.domain.training_logs import TrainingLogLine, TrainingLogPage, bad_log_token

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.moment = now

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, delta: timedelta) -> None:
        self.moment += delta


class MemoryObjects:
    """Objects by `s3://bucket/key`, with an ETag per version (the S3 adapter's contract)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.etags: dict[str, str] = {}
        self._version = 0
        # Raised by `delete` when set (a store that refuses).
        self.fail_delete: Exception | None = None

    def put(self, uri: str, body: bytes | BinaryIO, *, content_type: str) -> None:
        self._version += 1
        self.objects[uri] = body if isinstance(body, bytes) else body.read()
        self.etags[uri] = f"etag-{self._version}"

    def open(self, uri: str, *, etag: str | None = None) -> BinaryIO | None:
        if not self.exists(uri, etag=etag):
            return None
        return io.BytesIO(self.objects[uri])

    def exists(self, uri: str, *, etag: str | None = None) -> bool:
        return uri in self.objects and (etag is None or self.etags[uri] == etag.strip('"'))

    def size(self, uri: str) -> int:
        if uri not in self.objects:
            raise NotFound(f"{uri}: not found.")
        return len(self.objects[uri])

    def copy(self, source: str, target: str) -> None:
        self.put(target, self.objects[source], content_type="")

    def delete(self, *uris: str) -> None:
        if self.fail_delete is not None:
            raise self.fail_delete
        for uri in uris:
            self.objects.pop(uri, None)
            self.etags.pop(uri, None)

    def delete_folder(self, folder: str) -> None:
        prefix = folder if folder.endswith("/") else folder + "/"
        self.delete(*[uri for uri in self.objects if uri.startswith(prefix)])

    def upload_url(self, uri: str, *, content_type: str, expires_in_s: int) -> str:
        return f"https://uploads.example/{uri.removeprefix('s3://')}?expires={expires_in_s}"

    def under(self, folder: str) -> list[str]:
        return sorted(uri for uri in self.objects if uri.startswith(folder))


@dataclass
class Execution:
    kind: str
    record: ModelRecord
    correlation_id: str
    requested_at: datetime | None = None
    auto_undeploy_at: datetime | None = None


class RecordedWorkflows:
    """Executions started and task answers sent (none runs: the test drives the tasks itself)."""

    def __init__(self) -> None:
        self.started: list[Execution] = []
        self.outcomes: list[tuple[str, TrainingOutcome]] = []
        self.heartbeats: list[str] = []
        self.answered: set[str] = set()
        self.fail_start: Exception | None = None
        # Executions that ended (or vanished): `running` says False for them.
        self.ended: set[str] = set()

    def fine_tuning_arn(self, record: ModelRecord) -> str:
        attempt = f"-r{record.training.attempt}" if record.training.attempt else ""
        return (
            "arn:aws:states:us-east-1:123456789012:execution:fine-tuning:"
            f"{record.name}-{record.uid[:8]}{attempt}"
        )

    def deployment_arn(self, record: ModelRecord, requested_at: datetime) -> str:
        return (
            f"arn:aws:states:us-east-1:123456789012:execution:deployment:{record.name}-{requested_at:%H%M%S}"
        )

    def start_fine_tuning(
        self, record: ModelRecord, *, correlation_id: str, training_timeout_seconds: int | None = None
    ) -> str:
        if self.fail_start is not None:
            raise self.fail_start
        self.started.append(Execution("fine_tuning", record, correlation_id))
        return self.fine_tuning_arn(record)

    def start_deployment(
        self,
        record: ModelRecord,
        *,
        requested_at: datetime,
        correlation_id: str,
        auto_undeploy_at: datetime | None,
    ) -> str:
        if self.fail_start is not None:
            raise self.fail_start
        self.started.append(Execution("deployment", record, correlation_id, requested_at, auto_undeploy_at))
        return self.deployment_arn(record, requested_at)

    def send_training_outcome(self, token: str, outcome: TrainingOutcome) -> bool:
        if token in self.answered:
            return False
        self.answered.add(token)
        self.outcomes.append((token, outcome))
        return True

    def send_training_heartbeat(self, token: str) -> bool:
        self.heartbeats.append(token)
        return token not in self.answered

    def running(self, execution_arn: str) -> bool:
        return execution_arn not in self.ended


class RecordedEvents:
    def __init__(self) -> None:
        self.published: list[DomainEvent] = []
        self.fail_with: Exception | None = None

    def publish(self, *events: DomainEvent) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.published.extend(events)

    def named(self, name: str) -> list[DomainEvent]:
        return [e for e in self.published if e.name == name]


class RecordedEmails:
    def __init__(self) -> None:
        self.sent: list[Email] = []

    def send(self, email: Email) -> str:
        self.sent.append(email)
        return f"message-{len(self.sent)}"


class MemoryScheduler:
    """Schedules by name, planned as the EventBridge adapter plans them."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.schedules: dict[str, datetime] = {}

    def create_auto_undeploy(
        self,
        identity: ModelIdentity,
        *,
        uid: str,
        requested_at: datetime,
        undeploy_at: datetime,
        deployed_at: datetime | None = None,
    ) -> AutoUndeploy:
        plan, orders = plan_auto_undeploy(
            identity,
            uid=uid,
            requested_at=requested_at,
            undeploy_at=undeploy_at,
            now=self.clock(),
            deployed_at=deployed_at,
        )
        for name, order in orders.items():
            at = plan.undeploy_at if order.action == "undeploy" else plan.remind_at
            assert at is not None
            self.schedules[name] = at
        return plan

    def delete(self, *names: str) -> None:
        for name in names:
            self.schedules.pop(name, None)


class FakeProvider:
    """A provider in memory: jobs and deployments as the test sets them, every call recorded."""

    training_timeout_s = 3600

    def __init__(self, name: Provider, storage: MemoryObjects, *, bucket: str = "provider-bucket") -> None:
        self.name: Provider = name
        self.storage = storage
        self.bucket = bucket
        self.calls: list[tuple[str, Any]] = []
        self.jobs: dict[str, TrainingState] = {}
        self.deployments: dict[str, DeploymentState] = {}
        self.account: str | None = None
        self.taken_names: set[str] = set()
        # The merged copies unmerged LoRA jobs left, by the job's archive (what the test says they left).
        self.merged_archives: dict[str, MergedArchive] = {}
        # Each job's log lines, by job name (what the test says the job printed).
        self.logs: dict[str, list[TrainingLogLine]] = {}
        # Each job's checkpoints, by job name (what the test says the job kept).
        self.checkpoint_lists: dict[str, list[CheckpointInfo]] = {}
        # The evaluation report of each job (by job name), as the trainer would have written it.
        self.evaluations: dict[str, EvaluationReport | EvaluationSkipped] = {}
        # The checkpoint each model's jobs saved, by model name (what the test says they saved).
        self.resume_points: dict[str, ResumePoint] = {}
        # What a stop does besides being recorded (a stop the provider refuses, or one that lands at once).
        self.on_stop: Callable[[TrainingJobRef], None] | None = None
        # Calls the provider refuses, by method name (e.g. "invoke": ProviderPermissionDenied(...)).
        self.refusals: dict[str, Exception] = {}

    def called(self, what: str) -> list[Any]:
        return [arg for name, arg in self.calls if name == what]

    def training_data_folder(self, identity: ModelIdentity, uid: str, base_model: BaseModelSpec) -> str:
        return f"s3://{self.bucket}/data/{identity.workspace_id}/{identity.model_name}/{uid}/"

    def check_new_job(self, identity: ModelIdentity) -> None:
        if identity.model_name in self.taken_names:
            raise NameTaken(f"A job named '{identity.model_name}' already exists in the provider's account.")

    def training_hyperparameters(
        self,
        spec: BaseModelSpec,
        hyperparameters: ResolvedHyperparameters,
        optional: ResolvedOptionalHyperparameters | None,
        *,
        provider_split_percent: float | None,
    ) -> dict[str, str]:
        return to_trainer_hyperparameters(hyperparameters, optional)

    def start_training(self, request: TrainingRequest) -> TrainingJobRef:
        self.calls.append(("start_training", request))
        name = f"{request.identity.model_name}-job" + (f"-r{request.attempt}" if request.attempt else "")
        self.jobs.setdefault(name, TrainingState(job_id=name, status="in_progress"))
        return TrainingJobRef(
            provider=self.name, job_id=name, job_name=name, output_uri=f"s3://{self.bucket}/out/{name}/"
        )

    def stop_training(self, ref: TrainingJobRef) -> None:
        self.calls.append(("stop_training", ref))
        if self.on_stop is not None:
            self.on_stop(ref)

    def resume_point(self, identity: ModelIdentity, attempt: int) -> ResumePoint | None:
        if not provider_traits(self.name).runs_trainer:
            raise ValidationFailed.of("name", "Bedrock cannot resume a job; clone it instead.")
        return self.resume_points.get(identity.model_name)

    def describe_training(self, ref: TrainingJobRef) -> TrainingState:
        return self.jobs.get(ref.job_id) or TrainingState(job_id=ref.job_id, status="in_progress")

    def trained_output(
        self, ref: TrainingJobRef | None, *, artifacts_uri: str | None, model_ref: str | None, merged: bool
    ) -> TrainedOutput:
        # As the real ones: a provider keeping the weights needs its model, the others an archive.
        if provider_traits(self.name).keeps_weights and not model_ref:
            raise ValidationFailed(
                "The job completed, but the provider reported no model; it cannot be used."
            )
        if not provider_traits(self.name).keeps_weights and not artifacts_uri:
            raise ValidationFailed("The job completed but reported no artifacts; the model cannot be used.")
        size = len(self.storage.objects.get(artifacts_uri or "", b"")) or None
        return TrainedOutput(
            model_ref=model_ref,
            artifacts_uri=artifacts_uri,
            size_bytes=size,
            merged=merged,
            merged_archive=self.merged_archives.get(artifacts_uri or ""),
        )

    def deploy(self, request: DeployRequest) -> DeploymentRef:
        self.calls.append(("deploy", request))
        endpoint = f"{request.identity.model_name}-{request.requested_at:%H%M%S}"
        self.deployments.setdefault(endpoint, DeploymentState(deployment_id=endpoint, status="creating"))
        return DeploymentRef(provider=self.name, kind="local_server", deployment_id=endpoint)

    def describe_deployment(self, ref: DeploymentRef) -> DeploymentState:
        return self.deployments.get(ref.deployment_id) or DeploymentState(
            deployment_id=ref.deployment_id, status="gone"
        )

    def undeploy(self, ref: DeploymentRef) -> None:
        self.calls.append(("undeploy", ref))
        if "undeploy" in self.refusals:
            raise self.refusals["undeploy"]
        self.deployments.pop(ref.deployment_id, None)

    def invoke(self, ref: DeploymentRef, params: InvokeParams) -> InvokeResult:
        self.calls.append(("invoke", params))
        if "invoke" in self.refusals:
            raise self.refusals["invoke"]
        return InvokeResult(
            completion=f"echo: {params.prompt}", input_tokens=3, output_tokens=2, latency_ms=5
        )

    def download(self, artifacts_uri: str, *, expires_in_s: int = 900) -> DownloadLink:
        return DownloadLink(
            url=f"https://downloads.example/{artifacts_uri.removeprefix('s3://')}",
            expires_at=T0 + timedelta(seconds=expires_in_s),
            size_bytes=len(self.storage.objects.get(artifacts_uri, b"")),
        )

    def delete_model(self, model: TrainedModel) -> None:
        self.calls.append(("delete_model", model))

    def speaks_for(self, account: str | None) -> bool:
        return account is None or self.account is None or account == self.account

    def training_log(self, ref: TrainingJobRef, *, position: str | None, limit: int) -> TrainingLogPage:
        self.calls.append(("training_log", position))
        if position is not None and not position.isdigit():
            raise bad_log_token()
        start = int(position or 0)
        lines = self.logs.get(ref.job_name, [])[start : start + limit]
        return TrainingLogPage(lines=tuple(lines), position=str(start + len(lines)))

    def evaluation_report(self, ref: TrainingJobRef) -> EvaluationReport | EvaluationSkipped | None:
        self.calls.append(("evaluation_report", ref))
        if provider_traits(self.name).keeps_weights:  # as Bedrock: its training runs no trainer of ours
            return EvaluationSkipped(skipped="Bedrock trains the model itself.")
        return self.evaluations.get(ref.job_name)

    def checkpoints(self, ref: TrainingJobRef) -> CheckpointList:
        self.calls.append(("checkpoints", ref))
        if provider_traits(self.name).keeps_weights:  # as Bedrock: it keeps none
            return CheckpointList(message="Bedrock keeps no checkpoints of its customization jobs.")
        return CheckpointList(items=by_step(self.checkpoint_lists.get(ref.job_name, [])))

    def checkpoint_download(
        self, ref: TrainingJobRef, checkpoint_id: str, *, expires_in_s: int = 900
    ) -> DownloadLink:
        self.calls.append(("checkpoint_download", checkpoint_id))
        if provider_traits(self.name).keeps_weights:
            raise ValidationFailed("Bedrock keeps no checkpoints of its customization jobs.")
        if not any(item.id == checkpoint_id for item in self.checkpoint_lists.get(ref.job_name, [])):
            raise unknown_checkpoint(checkpoint_id)
        return DownloadLink(
            url=f"https://downloads.example/{ref.job_name}/{checkpoint_id}.tar.gz",
            expires_at=T0 + timedelta(seconds=expires_in_s),
            size_bytes=123,
        )


class FakeProviders:
    """The providers by name; events are parsed as the real registry parses them."""

    def __init__(self, providers: Mapping[str, FakeProvider]) -> None:
        self.providers = dict(providers)
        self.forgotten: list[tuple[str, str]] = []
        # Providers that cannot be made now, and why (e.g. a BYOK workspace whose connection is gone).
        self.unavailable: dict[str, Exception] = {}
        self.check: ConnectionCheck = ConnectionCheck(ok=True, message="Connected.", checks=[])

    def for_model(self, record: ModelRecord) -> FakeProvider:
        refused = self.unavailable.get(record.provider)
        if refused is not None:
            raise refused
        return self.providers[record.provider]

    def parse_event(
        self, source: str, detail_type: str, detail: Mapping[str, Any], account: str | None
    ) -> ProviderEvent:
        return parse_event(source, detail_type, detail, account)

    def verify_connection(self, connection: SageMakerConnection, workspace: str) -> ConnectionCheck:
        return self.check

    def forget(self, provider: Provider, workspace: str) -> None:
        self.forgotten.append((provider, workspace))


@dataclass(frozen=True)
class FakeConfig:
    runtime: Runtime = "aws"
    aws_region: str = "us-east-1"
    # As the CDK app deploys from us-east-1 by default: a regional Bedrock stack in us-west-2.
    provider_regions: tuple[str, ...] = ("us-west-2",)
    default_plan: Plan = "pay_as_you_go"
    datasets_bucket: str = "datasets"
    artifacts_bucket: str = "artifacts"
    workspace_requests_per_minute: int = 1200
    event_bus_arn: str | None = "arn:aws:events:us-east-1:123456789012:event-bus/tunelab"
    connector_trusted_role_arns: tuple[str, ...] = ("arn:aws:iam::123456789012:role/tunelab-api",)


@dataclass
class FakeContext:
    """Every port in memory (`application.ports.Context`)."""

    config: FakeConfig = field(default_factory=FakeConfig)
    clock: Clock = field(default_factory=Clock)
    catalog: Catalog = field(default_factory=load_catalog)

    def __post_init__(self) -> None:
        self.table = MemoryTable(self.clock)
        self.workspaces = MemoryWorkspaces(self.table)
        self.connections = MemoryConnections(self.table)
        self.request_budget = MemoryRequestBudget(self.clock)
        self.datasets = MemoryDatasets(self.table)
        self.models = MemoryModels(self.table, self.datasets)
        self.task_tokens = MemoryTaskTokens(self.table)
        self.files = MemoryObjects()
        self.workflows = RecordedWorkflows()
        self.events = RecordedEvents()
        self.notifier = RecordedEmails()
        self.scheduler = MemoryScheduler(self.clock)
        self.provider_files = MemoryObjects()
        self.providers = FakeProviders(
            {name: FakeProvider(name, self.provider_files) for name in ("bedrock", "sagemaker", "local")}
        )

    def now(self) -> datetime:
        return self.clock()

    def provider(self, name: Provider) -> FakeProvider:
        return self.providers.providers[name]
