"""Where handlers get what they work with: one `Services` container, built lazily from settings.

Every Lambda function (and the local runtime, which dispatches to the same handlers) asks
`get_services()` for the repository, the catalog, boto3 clients in the platform's region and the
provider of a model. Nothing is built at import time; each piece is made on first use and kept for
the container's life. Tests build their own `Services(...)` with fakes or moto-backed clients and
install it with `set_services()`; `reset_services()` forgets it.

Providers:

* `bedrock` — `BedrockConfig` from settings (the platform's account, its service role and the
  artifacts bucket).
* `sagemaker` — from the workspace's stored `ProviderConnectionRecord` (BYOK, the customer's role).
* `local` (and any other) — from a factory registered with `register_provider_factory(name, f)`;
  the local runtime registers its own at start.

Catalog extensions (`register_catalog_extension(fn)`): functions that return more base models
(the local runtime's operator-registered model folders); `Services.catalog` adds what they return,
asked on every read so a folder registered while the runtime runs appears at once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import boto3

from tunelab.adapters.dynamodb import Repository
from tunelab.adapters.providers import get_provider
from tunelab.composition.settings import Settings, get_settings
from tunelab.domain.catalog import BaseModelSpec, Catalog, load_catalog
from tunelab.domain.errors import ValidationFailed
from tunelab.domain.providers import (
    BedrockConfig,
    ModelIdentity,
    SageMakerConfig,
    SageMakerConnection,
    TrainingProvider,
)
from tunelab.domain.records import ModelRecord

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


_FACTORIES: dict[str, ProviderFactory] = {}
_FACTORIES_LOCK = threading.Lock()

# Where the trainer's source folder may be: an explicit TRAINER_DIR, the repository's `trainer/`
# (the package lives in `shared/tunelab`), or next to the package in a Lambda bundle.
_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the package `tunelab`
_TRAINER_CANDIDATES = (_PACKAGE_DIR.parents[1] / "trainer", _PACKAGE_DIR.parent / "trainer")


def register_provider_factory(name: str, factory: ProviderFactory) -> None:
    """Make `provider_for` build provider `name` with `factory` (replaces a built-in one too)."""
    with _FACTORIES_LOCK:
        _FACTORIES[name] = factory


def unregister_provider_factory(name: str) -> None:
    with _FACTORIES_LOCK:
        _FACTORIES.pop(name, None)


CatalogExtension = Callable[[], list[BaseModelSpec]]
_EXTENSIONS: list[CatalogExtension] = []


def register_catalog_extension(fn: CatalogExtension) -> None:
    """Add the base models `fn()` returns to every `Services.catalog` (registering twice adds once)."""
    with _FACTORIES_LOCK:
        if fn not in _EXTENSIONS:
            _EXTENSIONS.append(fn)


def unregister_catalog_extension(fn: CatalogExtension) -> None:
    with _FACTORIES_LOCK:
        if fn in _EXTENSIONS:
            _EXTENSIONS.remove(fn)


def extended_catalog(base: Catalog) -> Catalog:
    """`base` with the models of the registered extensions (an id `base` already has is skipped)."""
    with _FACTORIES_LOCK:
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


def model_identity(record: ModelRecord) -> ModelIdentity:
    """The identity every provider name and idempotency token of this model derives from."""
    return ModelIdentity(
        workspace_id=record.workspace_id, model_name=record.name, created_at=record.created_at
    )


def trainer_dir() -> Path:
    """The trainer's source folder (`train.py`, `requirements.txt`) that SageMaker jobs run."""
    explicit = os.environ.get("TRAINER_DIR")
    candidates = (Path(explicit),) if explicit else _TRAINER_CANDIDATES
    for candidate in candidates:
        if (candidate / "train.py").is_file():
            return candidate
    raise FileNotFoundError(
        "The trainer's source folder (with train.py) was not found; set TRAINER_DIR or ship trainer/ "
        "with the function."
    )


class Services:
    """The repository, the catalog, AWS clients and providers, each made on first use.

    `session`: the boto3 session clients come from (a fresh default one when absent);
    `clients`: ready-made clients by service name (`"sfn"`, `"sesv2"`, ...) that win over the session;
    `repository` / `catalog` / `settings`: ready-made ones (tests, the local runtime).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        session: boto3.Session | None = None,
        clients: dict[str, Any] | None = None,
        repository: Repository | None = None,
        catalog: Catalog | None = None,
        providers: dict[str, TrainingProvider] | None = None,
    ) -> None:
        self._settings = settings
        self._session = session
        self._clients: dict[str, Any] = dict(clients or {})
        self._repository = repository
        self._catalog = catalog
        # Providers made (or injected) for (name, workspace); reused while the container lives.
        self._providers: dict[tuple[str, str], TrainingProvider] = {}
        for name, provider in (providers or {}).items():
            self._providers[(name, "*")] = provider
        self._lock = threading.RLock()

    # --- configuration and records -----------------------------------------------------------

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = get_settings()
        return self._settings

    @property
    def region(self) -> str:
        return self.settings.aws_region

    @property
    def session(self) -> boto3.Session:
        if self._session is None:
            self._session = boto3.Session(region_name=self.region)
        return self._session

    @property
    def repository(self) -> Repository:
        if self._repository is None:
            self._repository = Repository(self.settings.table_name, self.dynamodb)
        return self._repository

    @property
    def catalog(self) -> Catalog:
        """The shipped (or injected) catalog with the registered extensions' models."""
        if self._catalog is None:
            self._catalog = load_catalog()
        return extended_catalog(self._catalog)

    # --- AWS clients in the platform's region --------------------------------------------------

    def client(self, service: str) -> Any:
        """A boto3 client of `service` in the platform's region, made once."""
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self.session.client(service, region_name=self.region)  # type: ignore[call-overload]
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
    def events(self) -> EventBridgeClient:
        client: EventBridgeClient = self.client("events")
        return client

    @property
    def sesv2(self) -> SESV2Client:
        client: SESV2Client = self.client("sesv2")
        return client

    @property
    def scheduler(self) -> EventBridgeSchedulerClient:
        client: EventBridgeSchedulerClient = self.client("scheduler")
        return client

    # --- providers -------------------------------------------------------------------------------

    @cached_property
    def bedrock_config(self) -> BedrockConfig:
        settings = self.settings
        return BedrockConfig(
            region=settings.aws_region,
            service_role_arn=settings.bedrock_role_arn,
            output_bucket=settings.artifacts_bucket,
        )

    def sagemaker_connection(self, workspace_id: str) -> SageMakerConnection:
        """The workspace's stored SageMaker connection; `ValidationFailed` when there is none usable."""
        record = self.repository.find_provider_connection(workspace_id, "sagemaker")
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

    def sagemaker_config(self, workspace_id: str) -> SageMakerConfig:
        return SageMakerConfig(
            connection=self.sagemaker_connection(workspace_id),
            workspace_id=workspace_id,
            trainer_dir=trainer_dir(),
        )

    def provider_for(
        self, record_or_name: ModelRecord | str, workspace_id: str | None = None
    ) -> TrainingProvider:
        """The provider of a model record (its provider and workspace), or of provider `name` in
        `workspace_id` (required for `sagemaker`, whose connection is the workspace's)."""
        if isinstance(record_or_name, ModelRecord):
            name: str = record_or_name.provider
            workspace = workspace_id or record_or_name.workspace_id
        else:
            name, workspace = record_or_name, workspace_id or ""
        with self._lock:
            injected = self._providers.get((name, "*")) or self._providers.get((name, workspace))
            if injected is not None:
                return injected
            provider = self._build_provider(name, workspace)
            # A SageMaker provider holds the connection read now; a replaced connection needs
            # a new container (connections change rarely, and `forget_provider` drops it).
            self._providers[(name, workspace)] = provider
            return provider

    def set_provider(self, name: str, provider: TrainingProvider, workspace_id: str | None = None) -> None:
        """Use `provider` for `name` (in one workspace, or in all when `workspace_id` is None)."""
        with self._lock:
            self._providers[(name, workspace_id or "*")] = provider

    def forget_provider(self, name: str, workspace_id: str) -> None:
        """Drop a cached provider (the workspace's connection was replaced or deleted)."""
        with self._lock:
            self._providers.pop((name, workspace_id), None)

    def _build_provider(self, name: str, workspace: str) -> TrainingProvider:
        factory = _FACTORIES.get(name)
        if factory is not None:
            return factory(self, workspace)
        if name == "bedrock":
            return get_provider("bedrock", self.bedrock_config, session=self.session)
        if name == "sagemaker":
            if not workspace:
                raise ValueError("the sagemaker provider needs the workspace id")
            return get_provider("sagemaker", self.sagemaker_config(workspace), session=self.session)
        raise ValueError(f"no provider {name!r}: register a factory with register_provider_factory")


_SERVICES: Services | None = None
_SERVICES_LOCK = threading.Lock()


def get_services() -> Services:
    """The process's services, made on first use from the settings."""
    global _SERVICES  # noqa: PLW0603  # one container per process, like Lambda's
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
    """Forget the services; the next `get_services()` builds them again from the environment."""
    global _SERVICES  # noqa: PLW0603
    with _SERVICES_LOCK:
        _SERVICES = None
