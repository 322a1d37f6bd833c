"""The base-model and instance catalog: data files in `catalog_data/`, validated when first loaded.

Every price and limit carries the date it was read (`as_of`) and where (`source`). Nothing here
branches on a model id: rules read the spec.
"""

from __future__ import annotations

import json
from datetime import date
from functools import cache
from importlib import resources
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tunelab.errors import NotFound

Provider = Literal["bedrock", "sagemaker", "local"]
Hosting = Literal["managed", "byok", "local"]
# How rows reach the provider: Bedrock prompt/completion JSONL, the Bedrock conversation schema
# (`bedrock-conversation-2024`, Nova), or the trainer's prompt/completion JSONL (SageMaker, local).
TrainingDataFormat = Literal["prompt_completion", "bedrock_conversation", "trainer_jsonl"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Source(_Frozen):
    """Where a figure was read, and when."""

    url: str
    as_of: date


class IntRange(_Frozen):
    min: int
    max: int
    default: int

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.min <= self.default <= self.max:
            raise ValueError(f"default {self.default} outside [{self.min}, {self.max}]")
        return self


class FloatRange(_Frozen):
    min: float
    max: float
    default: float

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.min <= self.default <= self.max:
            raise ValueError(f"default {self.default} outside [{self.min}, {self.max}]")
        return self


class EarlyStoppingSpec(_Frozen):
    patience: IntRange
    threshold: FloatRange


class HyperparameterSpec(_Frozen):
    """What one base model accepts; a `None` entry means the model does not support it."""

    epochs: IntRange
    learning_rate: FloatRange
    batch_size: IntRange | None = None
    warmup_steps: IntRange | None = None
    early_stopping: EarlyStoppingSpec | None = None
    # Share of the training rows the provider holds back for validation when the user asks for a
    # split and the provider does the split itself (Cohere's `evalPercentage`).
    eval_percentage: IntRange | None = None
    # Our field path -> the provider's parameter name, e.g. {"epochs": "epochCount",
    # "early_stopping.patience": "earlyStoppingPatience"}. Empty for the trainer (names are ours).
    provider_names: dict[str, str] = Field(default_factory=dict)
    source: Source


class Pricing(_Frozen):
    training_per_1k_tokens_usd: float = Field(ge=0)
    storage_per_month_usd: float = Field(ge=0)
    deployment_per_hour_usd: float = Field(ge=0)
    source: Source

    @property
    def as_of(self) -> date:
        return self.source.as_of


class DataLimits(_Frozen):
    """Record and token limits of a provider's training data for one model."""

    min_records: int = Field(ge=1)
    max_records: int = Field(ge=1)
    # Longest record, prompt + completion, in tokens.
    max_record_tokens: int = Field(ge=1)
    max_validation_records: int | None = None
    source: Source


class Retirement(_Frozen):
    """AWS no longer offers fine-tuning of this model; the product still lists it."""

    since: date | None = None
    note: str
    source: Source


class Deployment(_Frozen):
    """How a fine-tuned model of this base is served."""

    # bedrock: on-demand custom model deployment where supported, else no-commitment provisioned
    # throughput; sagemaker: a real-time endpoint; local: the in-process inference server.
    method: Literal["on_demand", "provisioned_throughput", "sagemaker_endpoint", "local_server"]
    default_instance_type: str | None = None


class BaseModelSpec(_Frozen):
    id: str
    name: str
    vendor: str
    provider: Provider
    hosting: Hosting
    parameter_count: int = Field(gt=0)
    context_length: int = Field(gt=0)
    training_data_format: TrainingDataFormat
    hyperparameters: HyperparameterSpec
    pricing: Pricing
    limits: DataLimits
    deployment: Deployment
    regions: list[str] = Field(default_factory=list)
    retired: Retirement | None = None
    # sagemaker and local: the Hugging Face id (or local folder) the trainer loads.
    hf_id: str | None = None
    gated: bool = False
    default_instance_type: str | None = None
    instruct: bool = True
    notes: list[str] = Field(default_factory=list)

    @property
    def supports_optional_hyperparameters(self) -> bool:
        return self.provider != "bedrock"

    @property
    def supports_download(self) -> bool:
        return self.provider != "bedrock"

    @property
    def requires_resources(self) -> bool:
        return self.provider == "sagemaker"

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        expected_hosting = {"bedrock": "managed", "sagemaker": "byok", "local": "local"}[self.provider]
        if self.hosting != expected_hosting:
            raise ValueError(f"{self.id}: provider {self.provider} is hosted {expected_hosting}")
        if self.provider == "sagemaker" and not (self.hf_id and self.default_instance_type):
            raise ValueError(f"{self.id}: a SageMaker model needs hf_id and default_instance_type")
        if self.provider == "bedrock" and not self.regions:
            raise ValueError(f"{self.id}: a Bedrock model needs its regions")
        if not self.instruct:
            raise ValueError(f"{self.id}: only instruct (chat) models are offered")
        return self


class InstanceType(_Frozen):
    name: str
    family: str
    gpus: int = Field(ge=1)
    gpu_model: str
    vram_per_gpu_gb: float = Field(gt=0)
    bf16: bool
    local_storage_gb: float = Field(ge=0)
    vcpus: int = Field(ge=1)
    memory_gb: float = Field(gt=0)
    price_per_hour_usd: float = Field(gt=0)
    source: Source

    @property
    def vram_gb(self) -> float:
        return self.gpus * self.vram_per_gpu_gb


class _ModelsFile(_Frozen):
    models: list[BaseModelSpec]


class _InstancesFile(_Frozen):
    region: str
    # Price of training-volume storage (ml storage, general purpose SSD) per GB-month.
    volume_per_gb_month_usd: float
    volume_source: Source
    instances: list[InstanceType]


BaseModelId = Annotated[
    str,
    Field(min_length=1, max_length=200, description="A base model id from `GET /v1/base-models`."),
]


class Catalog:
    """Base models and SageMaker instance types, looked up by id."""

    def __init__(
        self, models: list[BaseModelSpec], instances: _InstancesFile
    ) -> None:
        ids = [m.id for m in models]
        duplicates = {i for i in ids if ids.count(i) > 1}
        if duplicates:
            raise ValueError(f"duplicate base model ids in the catalog: {sorted(duplicates)}")
        self._models = {m.id: m for m in models}
        self._instances = {i.name: i for i in instances.instances}
        self.instances_region = instances.region
        self.volume_per_gb_month_usd = instances.volume_per_gb_month_usd
        self.volume_source = instances.volume_source
        for m in models:
            for t in (m.default_instance_type, m.deployment.default_instance_type):
                if t is not None and t not in self._instances and m.provider == "sagemaker":
                    raise ValueError(f"{m.id}: unknown instance type {t}")

    @property
    def models(self) -> list[BaseModelSpec]:
        return list(self._models.values())

    @property
    def instances(self) -> list[InstanceType]:
        return list(self._instances.values())

    def model(self, model_id: str) -> BaseModelSpec:
        try:
            return self._models[model_id]
        except KeyError:
            raise NotFound(f"There is no base model '{model_id}'; GET /v1/base-models lists them.") from None

    def find_model(self, model_id: str) -> BaseModelSpec | None:
        return self._models.get(model_id)

    def instance(self, name: str) -> InstanceType:
        try:
            return self._instances[name]
        except KeyError:
            raise NotFound(f"There is no SageMaker instance type '{name}' in the catalog.") from None

    def find_instance(self, name: str) -> InstanceType | None:
        return self._instances.get(name)

    def with_models(self, extra: list[BaseModelSpec]) -> Catalog:
        """A catalog with more models (the local runtime's, operator-registered folders)."""
        instances = _InstancesFile(
            region=self.instances_region,
            volume_per_gb_month_usd=self.volume_per_gb_month_usd,
            volume_source=self.volume_source,
            instances=self.instances,
        )
        return Catalog([*self.models, *extra], instances)


def _read(name: str) -> str:
    return resources.files("tunelab").joinpath("catalog_data", name).read_text(encoding="utf-8")


@cache
def load_catalog() -> Catalog:
    """The shipped catalog (Bedrock, SageMaker and local models; instance types), validated."""
    models: list[BaseModelSpec] = []
    for name in ("bedrock.json", "sagemaker.json", "local.json"):
        models.extend(_ModelsFile.model_validate(json.loads(_read(name))).models)
    instances = _InstancesFile.model_validate(json.loads(_read("instances.json")))
    return Catalog(models, instances)
