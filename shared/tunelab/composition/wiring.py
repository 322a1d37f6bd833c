"""The composition root: where the use cases' ports (`application.ports.Context`) are made from the
settings, over AWS.

Every Lambda function (and the local runtime, which dispatches to the same handlers) asks
`get_services()` for its `Services`: the application context — stores, object storage, workflows,
the event bus, email, schedules, providers — each made on first use and kept for the execution
environment's life, like Lambda keeps a warm container's globals. Nothing is built at import time.
Tests build their own `Services(...)` with moto-backed clients and install it with `set_services()`;
the in-memory fakes of the fast tests implement `Context` without this module.

The process-wide state of tunelab lives here and nowhere else, each piece with why a warm start needs
it: the services themselves (clients, the table, providers per workspace), the provider factories and
catalog extensions the local runtime registers, and the workspaces a container has seen
(`SeenWorkspaces`).

Providers:

* `bedrock` — the platform's account, its service role and the artifacts bucket (settings).
* `sagemaker` — the workspace's stored connection (BYOK, the customer's role), made once per
  workspace and forgotten when the connection changes.
* any other (`local`) — from a factory registered with `register_provider_factory(name, factory)`;
  the local runtime registers its own at start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import boto3

from tunelab.adapters import providers as provider_adapters
from tunelab.adapters.dynamodb import (
    DynamoConnections,
    DynamoDatasets,
    DynamoModels,
    DynamoRequestBudget,
    DynamoTaskTokens,
    DynamoWorkspaces,
    RecordsTable,
)
from tunelab.adapters.eventbridge import EventPublisher
from tunelab.adapters.s3 import S3Objects
from tunelab.adapters.scheduler import EventBridgeScheduler
from tunelab.adapters.ses import Notifier
from tunelab.adapters.stepfunctions import StepFunctionsWorkflows
from tunelab.application.ports import TrainingProvider, WorkspaceStore
from tunelab.composition.settings import Settings, get_settings
from tunelab.composition.trainer import trainer_dir
from tunelab.domain.catalog import (
    PROVIDER_NAMES,
    BaseModelSpec,
    Catalog,
    Provider,
    load_catalog,
    provider_traits,
)
from tunelab.domain.errors import ValidationFailed
from tunelab.domain.identity import Plan
from tunelab.domain.providers import ConnectionCheck, ProviderEvent, SageMakerConnection
from tunelab.domain.records import ModelRecord, WorkspaceRecord, utcnow

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_scheduler import EventBridgeSchedulerClient
    from mypy_boto3_sesv2 import SESV2Client
    from mypy_boto3_stepfunctions import SFNClient


class ProviderFactory(Protocol):
    """Builds the provider `name` for a workspace (the local runtime registers one for `local`)."""

    def __call__(self, services: Services, workspace_id: str) -> TrainingProvider: ...


CatalogExtension = Callable[[], list[BaseModelSpec]]
T = TypeVar("T")

# What the local runtime registers for the process it runs in: its provider and its operator's model
# folders (the runtime and the handlers share one process; they meet here).
_FACTORIES: dict[str, ProviderFactory] = {}
_EXTENSIONS: list[CatalogExtension] = []
_REGISTRY_LOCK = threading.Lock()


def register_provider_factory(name: str, factory: ProviderFactory) -> None:
    """Make the services build provider `name` with `factory` (replaces a built-in one too)."""
    with _REGISTRY_LOCK:
        _FACTORIES[name] = factory


def unregister_provider_factory(name: str) -> None:
    with _REGISTRY_LOCK:
        _FACTORIES.pop(name, None)


def register_catalog_extension(fn: CatalogExtension) -> None:
    """Add the base models `fn()` returns to every `Services.catalog` (registering twice adds once)."""
    with _REGISTRY_LOCK:
        if fn not in _EXTENSIONS:
            _EXTENSIONS.append(fn)


def unregister_catalog_extension(fn: CatalogExtension) -> None:
    with _REGISTRY_LOCK:
        if fn in _EXTENSIONS:
            _EXTENSIONS.remove(fn)


def extended_catalog(base: Catalog) -> Catalog:
    """`base` with the models of the registered extensions (an id `base` already has is skipped)."""
    with _REGISTRY_LOCK:
        extensions = list(_EXTENSIONS)
    if not extensions:
        return base
    known = {model.id for model in base.models}
    extra: list[BaseModelSpec] = []
    for extension in extensions:
        for spec in extension():
            if spec.id not in known:
                known.add(spec.id)
                extra.append(spec)
    return base.with_models(extra) if extra else base


class SeenWorkspaces:
    """A `WorkspaceStore` that remembers the workspaces this container has ensured exist, so most
    requests of a warm API container cost no read. Entries expire after `ttl_s`, so a plan an
    operator changed through another process is followed within that time; a change made through
    this one is followed at once."""

    def __init__(
        self, store: WorkspaceStore, *, ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._clock = clock
        self._seen: dict[str, tuple[WorkspaceRecord, float]] = {}
        self._lock = threading.Lock()

    def find(self, workspace: str) -> WorkspaceRecord | None:
        return self.store.find(workspace)

    def get(self, workspace: str) -> WorkspaceRecord:
        return self.store.get(workspace)

    def ensure(self, workspace: str, *, default_plan: Plan) -> WorkspaceRecord:
        now = self._clock()
        with self._lock:
            known = self._seen.get(workspace)
        if known is not None and now - known[1] < self.ttl_s:
            return known[0]
        record = self.store.ensure(workspace, default_plan=default_plan)
        with self._lock:
            self._seen[workspace] = (record, now)
        return record

    def set_plan(self, workspace: str, plan: Plan, *, default_plan: Plan) -> WorkspaceRecord:
        record = self.store.set_plan(workspace, plan, default_plan=default_plan)
        with self._lock:
            self._seen.pop(workspace, None)
        return record

    def ensure_connector_external_id(self, workspace: str, candidate: str) -> str:
        return self.store.ensure_connector_external_id(workspace, candidate)


class ProviderRegistry:
    """The providers of this deployment (`application.ports.Providers`), made on first use per
    (provider, workspace) and kept while the services live.

    A provider in the customer's own account (BYOK) is made from the workspace's stored connection
    and kept with that connection's version: every lookup reads the connection (one GetItem), so a
    connection replaced or deleted through another container is followed at once — its events are
    judged, and its data written, with the account the workspace has now, never a stale one.
    """

    def __init__(self, services: Services, injected: Mapping[str, TrainingProvider] | None = None) -> None:
        self._services = services
        self._made: dict[tuple[str, str], tuple[TrainingProvider, int | None]] = {}
        for name, provider in (injected or {}).items():
            self._made[(name, "*")] = (provider, None)
        self._lock = threading.RLock()

    def for_model(self, record: ModelRecord) -> TrainingProvider:
        return self.named(record.provider, record.workspace_id)

    def named(self, name: str, workspace: str) -> TrainingProvider:
        """Provider `name` in `workspace` (a BYOK provider is the workspace's); `ValidationFailed`
        when it needs a connection the workspace no longer has."""
        with self._lock:
            injected = self._made.get((name, "*")) or self._made.get((name, workspace))
            if injected is not None and injected[1] is None:
                return injected[0]
            version = self._connection_version(name, workspace)
            if injected is not None and injected[1] == version:
                return injected[0]
            made = self._build(name, workspace)
            self._made[(name, workspace)] = (made, version)
            return made

    def set(self, name: str, provider: TrainingProvider, workspace: str | None = None) -> None:
        """Use `provider` for `name` (in one workspace, or in all when `workspace` is None)."""
        with self._lock:
            self._made[(name, workspace or "*")] = (provider, None)

    def forget(self, provider: Provider, workspace: str) -> None:
        with self._lock:
            self._made.pop((provider, workspace), None)

    def _connection_version(self, name: str, workspace: str) -> int | None:
        """The version of the connection a BYOK provider is made from (None for the others)."""
        if name not in PROVIDER_NAMES or not provider_traits(cast("Provider", name)).requires_connection:
            return None
        record = self._services.connections.find(workspace, name)
        if record is None:
            self._made.pop((name, workspace), None)
            raise ValidationFailed.of(
                "provider",
                f"This workspace has no {name} connection; connect one with PUT /v1/providers/{name}.",
            )
        return record.version

    def parse_event(
        self, source: str, detail_type: str, detail: Mapping[str, Any], account: str | None
    ) -> ProviderEvent:
        return provider_adapters.parse_event(source, detail_type, detail, account)

    def verify_connection(self, connection: SageMakerConnection, workspace: str) -> ConnectionCheck:
        # The SageMaker and Bedrock adapters load when first used (40-60 ms of every cold start otherwise;
        # only BYOK paths need SageMaker's), not to break a cycle: the layers have none.
        from tunelab.adapters.providers.sagemaker import verify_connection  # noqa: PLC0415  # cold start

        return verify_connection(connection, workspace, base=self._services.session)

    def _build(self, name: str, workspace: str) -> TrainingProvider:
        services = self._services
        with _REGISTRY_LOCK:
            factory = _FACTORIES.get(name)
        if factory is not None:
            return factory(services, workspace)
        if name == "bedrock":
            from tunelab.adapters.providers.bedrock import BedrockConfig, BedrockProvider  # noqa: PLC0415  # cold start

            settings = services.settings
            return BedrockProvider(
                BedrockConfig(
                    region=settings.aws_region,
                    service_role_arn=settings.bedrock_role_arn,
                    output_bucket=settings.artifacts_bucket,
                    regional_buckets=settings.bedrock_data_buckets,
                ),
                session=services.session,
            )
        if name == "sagemaker":
            from tunelab.adapters.providers.sagemaker import (  # noqa: PLC0415  # cold start
                SageMakerConfig,
                SageMakerProvider,
            )

            return SageMakerProvider(
                SageMakerConfig(
                    connection=services.sagemaker_connection(workspace),
                    workspace_id=workspace,
                    trainer_dir=trainer_dir(),
                ),
                session=services.session,
            )
        raise ValueError(f"no provider {name!r}: register a factory with register_provider_factory")


class Services:
    """The application context over AWS: every port, made on first use from the settings.

    `session`: the boto3 session clients come from (a default one when absent); `clients`: ready-made
    clients by service name (`"sfn"`, `"sesv2"`, ...) that win over the session; `catalog`: a
    ready-made catalog; `providers`: ready-made providers by name (tests).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        session: boto3.Session | None = None,
        clients: dict[str, Any] | None = None,
        catalog: Catalog | None = None,
        providers: dict[str, TrainingProvider] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._session = session
        self._clients: dict[str, Any] = dict(clients or {})
        self._catalog = catalog
        self._injected = dict(providers or {})
        self._clock = clock
        self._shared: dict[str, object] = {}
        self._lock = threading.RLock()

    # --- configuration ---

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = get_settings()
        return self._settings

    @property
    def config(self) -> Settings:
        return self.settings

    @property
    def session(self) -> boto3.Session:
        if self._session is None:
            self._session = boto3.Session(region_name=self.settings.aws_region)
        return self._session

    @property
    def catalog(self) -> Catalog:
        """The shipped (or injected) catalog with the registered extensions' models."""
        if self._catalog is None:
            self._catalog = load_catalog()
        return extended_catalog(self._catalog)

    def now(self) -> datetime:
        return self._clock()

    def shared(self, key: str, make: Callable[[], T]) -> T:
        """What an entry point keeps for the container's life (e.g. the API's idempotency store), made
        once with `make`; forgotten with the services."""
        with self._lock:
            if key not in self._shared:
                self._shared[key] = make()
            return cast("T", self._shared[key])

    # --- AWS clients in the platform's region ---

    def client(self, service: str) -> Any:
        """A boto3 client of `service` in the platform's region, made once."""
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self.session.client(service, region_name=self.settings.aws_region)  # type: ignore[call-overload]
            return self._clients[service]

    @property
    def dynamodb(self) -> DynamoDBClient:
        client: DynamoDBClient = self.client("dynamodb")
        return client

    @property
    def s3(self) -> S3Client:
        client: S3Client = self.client("s3")
        return client

    @property
    def sfn(self) -> SFNClient:
        client: SFNClient = self.client("stepfunctions")
        return client

    @property
    def eventbridge(self) -> EventBridgeClient:
        client: EventBridgeClient = self.client("events")
        return client

    @property
    def sesv2(self) -> SESV2Client:
        client: SESV2Client = self.client("sesv2")
        return client

    @property
    def scheduler_client(self) -> EventBridgeSchedulerClient:
        client: EventBridgeSchedulerClient = self.client("scheduler")
        return client

    # --- the ports ---

    @cached_property
    def table(self) -> RecordsTable:
        return RecordsTable(self.settings.table_name, client_factory=lambda: self.dynamodb, clock=self._clock)

    @cached_property
    def workspaces(self) -> SeenWorkspaces:
        return SeenWorkspaces(DynamoWorkspaces(self.table))

    @cached_property
    def connections(self) -> DynamoConnections:
        return DynamoConnections(self.table)

    @cached_property
    def request_budget(self) -> DynamoRequestBudget:
        return DynamoRequestBudget(self.table)

    @cached_property
    def datasets(self) -> DynamoDatasets:
        return DynamoDatasets(self.table)

    @cached_property
    def models(self) -> DynamoModels:
        return DynamoModels(self.table)

    @cached_property
    def task_tokens(self) -> DynamoTaskTokens:
        return DynamoTaskTokens(self.table)

    @cached_property
    def files(self) -> S3Objects:
        return S3Objects(client_factory=lambda: self.s3)

    @cached_property
    def workflows(self) -> StepFunctionsWorkflows:
        settings = self.settings
        return StepFunctionsWorkflows(
            fine_tuning_arn=settings.fine_tuning_state_machine_arn,
            deployment_arn=settings.deployment_state_machine_arn,
            client_factory=lambda: self.sfn,
            poll_seconds=settings.deploy_poll_seconds,
        )

    @cached_property
    def events(self) -> EventPublisher:
        return EventPublisher(self.eventbridge, self.settings.event_bus_name)

    @cached_property
    def notifier(self) -> Notifier:
        settings = self.settings
        return Notifier(
            self.sesv2, sender=settings.sender_email, configuration_set=settings.ses_configuration_set
        )

    @cached_property
    def scheduler(self) -> EventBridgeScheduler:
        settings = self.settings
        return EventBridgeScheduler(
            self.scheduler_client,
            group=settings.schedule_group,
            role_arn=settings.scheduler_role_arn,
            target_arn=settings.auto_undeploy_target_arn,
            dead_letter_arn=settings.schedules_dlq_arn,
            clock=self._clock,
        )

    @cached_property
    def providers(self) -> ProviderRegistry:
        return ProviderRegistry(self, self._injected)

    def sagemaker_connection(self, workspace_id: str) -> SageMakerConnection:
        """The workspace's stored SageMaker connection; `ValidationFailed` when there is none."""
        record = self.connections.find(workspace_id, "sagemaker")
        if record is None:
            raise ValidationFailed.of(
                "provider",
                "This workspace has no SageMaker connection; connect one with PUT /v1/providers/sagemaker.",
            )
        return SageMakerConnection(
            role_arn=record.role_arn,
            external_id=record.external_id,
            region=record.region,
            artifact_bucket=record.artifact_bucket,
            hf_token_secret_arn=record.hf_token_secret_arn,
        )


# One container per process, like Lambda's execution environment keeps its globals between invocations.
_SERVICES: Services | None = None
_SERVICES_LOCK = threading.Lock()


def get_services() -> Services:
    """The process's services, made on first use from the settings."""
    global _SERVICES  # noqa: PLW0603  # see above
    with _SERVICES_LOCK:
        if _SERVICES is None:
            _SERVICES = Services()
        return _SERVICES


def set_services(services: Services) -> None:
    """Use `services` from now on (tests, the local runtime)."""
    global _SERVICES  # noqa: PLW0603
    with _SERVICES_LOCK:
        _SERVICES = services


def reset_services() -> None:
    """Forget the services (and with them every cache they hold); the next `get_services()` builds
    them again from the environment."""
    global _SERVICES  # noqa: PLW0603
    with _SERVICES_LOCK:
        _SERVICES = None


def operator_records_table(
    table_name: str, *, session: boto3.Session | None = None, endpoint_url: str | None = None
) -> RecordsTable:
    """A deployment's records table, for an operator's command (`tunelab-admin`): no settings needed,
    only the table and the operator's credentials."""
    made = session or boto3.Session()
    return RecordsTable(
        table_name, client_factory=lambda: made.client("dynamodb", endpoint_url=endpoint_url), clock=utcnow
    )


def operator_workspaces(
    table_name: str, *, session: boto3.Session | None = None, endpoint_url: str | None = None
) -> WorkspaceStore:
    """The workspaces of a deployment's records table, for an operator's command (`tunelab-admin`)."""
    return DynamoWorkspaces(operator_records_table(table_name, session=session, endpoint_url=endpoint_url))
