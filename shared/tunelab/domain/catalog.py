"""The base-model and instance catalog: data files in `catalog_data/`, validated when first loaded.

Every price and limit carries the date it was read (`as_of`) and where (`source`). Nothing here
branches on a model id: rules read the spec.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from datetime import date
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tunelab.domain.errors import NotFound

Provider = Literal["bedrock", "sagemaker", "local"]
PROVIDER_NAMES: frozenset[str] = frozenset(get_args(Provider))
Hosting = Literal["managed", "byok", "local"]
# How rows reach the provider: Bedrock prompt/completion JSONL, the Bedrock conversation schema
# (`bedrock-conversation-2024`, Nova), or the trainer's prompt/completion JSONL (SageMaker, local).
TrainingDataFormat = Literal["prompt_completion", "bedrock_conversation", "trainer_jsonl"]

MODEL_FILES = ("bedrock.json", "sagemaker.json", "local.json")
INSTANCES_FILE = "instances.json"

# The field paths of HyperparameterSpec that a provider may name (`provider_names` keys).
HYPERPARAMETER_PATHS = (
    "epochs",
    "learning_rate",
    "batch_size",
    "warmup_steps",
    "early_stopping.patience",
    "early_stopping.threshold",
    "eval_percentage",
)


class CatalogError(Exception):
    """The shipped (or an operator's) catalog data breaks a rule; raised at start, never per request."""


class _Frozen(BaseModel):
    # Built when the catalog is first loaded, not at import (cold starts of functions without it).
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Source(_Frozen):
    """Where a figure was read, and when. `verified=False` means the page was the best one found but
    the figure could not be read on it; `note` then says what is unconfirmed."""

    url: str = Field(pattern=r"^https://\S+$")
    as_of: date
    verified: bool = True
    note: str | None = None

    @model_validator(mode="after")
    def _unverified_has_note(self) -> Self:
        if not self.verified and not self.note:
            raise ValueError(f"an unverified source ({self.url}) needs a note saying what is unconfirmed")
        return self


class IntRange(_Frozen):
    min: int
    max: int
    default: int

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.min <= self.default <= self.max:
            raise ValueError(f"default {self.default} outside [{self.min}, {self.max}]")
        return self

    def contains(self, value: float) -> bool:
        return self.min <= value <= self.max


class FloatRange(_Frozen):
    min: float
    max: float
    default: float

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.min <= self.default <= self.max:
            raise ValueError(f"default {self.default} outside [{self.min}, {self.max}]")
        return self

    def contains(self, value: float) -> bool:
        return self.min <= value <= self.max


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

    def supported_paths(self) -> list[str]:
        """The field paths (as in `provider_names`) this model accepts."""
        paths = ["epochs", "learning_rate"]
        for name in ("batch_size", "warmup_steps", "eval_percentage"):
            if getattr(self, name) is not None:
                paths.append(name)
        if self.early_stopping is not None:
            paths += ["early_stopping.patience", "early_stopping.threshold"]
        return paths

    @model_validator(mode="after")
    def _names_cover_supported(self) -> Self:
        unknown = set(self.provider_names) - set(HYPERPARAMETER_PATHS)
        if unknown:
            raise ValueError(f"provider_names has unknown hyperparameter paths {sorted(unknown)}")
        unsupported = set(self.provider_names) - set(self.supported_paths())
        if unsupported:
            raise ValueError(
                f"provider_names names hyperparameters the model does not accept: {sorted(unsupported)}"
            )
        return self


class RegionalPricing(_Frozen):
    """A model's prices in one region, where AWS charges there otherwise than the model's default."""

    training_per_1k_tokens_usd: float = Field(ge=0)
    storage_per_month_usd: float = Field(ge=0)
    deployment_per_hour_usd: float = Field(ge=0)
    source: Source


class Pricing(_Frozen):
    """A model's prices: the default figures are those of its first region (`BaseModelSpec.regions`);
    `regions` holds the regions whose prices differ."""

    training_per_1k_tokens_usd: float = Field(ge=0)
    storage_per_month_usd: float = Field(ge=0)
    deployment_per_hour_usd: float = Field(ge=0)
    source: Source
    regions: dict[str, RegionalPricing] = Field(default_factory=dict)

    @property
    def as_of(self) -> date:
        return self.source.as_of

    def in_region(self, region: str | None) -> Pricing:
        """The prices in `region` (the default ones where the region has none of its own)."""
        regional = self.regions.get(region or "")
        if regional is None:
            return self
        return Pricing(
            training_per_1k_tokens_usd=regional.training_per_1k_tokens_usd,
            storage_per_month_usd=regional.storage_per_month_usd,
            deployment_per_hour_usd=regional.deployment_per_hour_usd,
            source=regional.source,
        )


class BatchTokenLimit(_Frozen):
    """Longest record allowed when the batch size is at most `max_batch_size` (Titan's tiers)."""

    max_batch_size: int = Field(ge=1)
    max_record_tokens: int = Field(ge=1)


class DataLimits(_Frozen):
    """Record and token limits of a provider's training data for one model."""

    min_records: int = Field(ge=1)
    max_records: int = Field(ge=1)
    # Longest record, prompt + completion, in tokens (at batch size 1 where it depends on it).
    max_record_tokens: int = Field(ge=1)
    max_validation_records: int | None = Field(default=None, ge=1)
    # False where the provider refuses a validation set for this model (Nova 2 Lite's fine-tuning).
    validation_data: bool = True
    # Separate caps on the prompt (input) and the completion (output), where the provider has them.
    max_prompt_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    # Where larger batches lower the record limit; ascending by max_batch_size.
    batch_token_limits: list[BatchTokenLimit] = Field(default_factory=list)
    source: Source

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.min_records > self.max_records:
            raise ValueError(f"min_records {self.min_records} is above max_records {self.max_records}")
        sizes = [t.max_batch_size for t in self.batch_token_limits]
        if sizes != sorted(set(sizes)):
            raise ValueError("batch_token_limits must be ascending by max_batch_size, without repeats")
        if self.batch_token_limits and self.batch_token_limits[0].max_record_tokens != self.max_record_tokens:
            raise ValueError("the first batch_token_limits tier must equal max_record_tokens")
        return self

    def max_record_tokens_for(self, batch_size: int | None) -> int | None:
        """The longest record allowed at this batch size; None where the batch size is beyond every tier."""
        if not self.batch_token_limits or batch_size is None:
            return self.max_record_tokens
        for tier in self.batch_token_limits:
            if batch_size <= tier.max_batch_size:
                return tier.max_record_tokens
        return None


class Retirement(_Frozen):
    """AWS no longer offers fine-tuning of this model; the product still lists it."""

    since: date | None = None
    note: str
    source: Source


class Architecture(_Frozen):
    """The shape of a decoder-only transformer, from its `config.json`: what the memory model reads."""

    layers: int = Field(ge=1)  # num_hidden_layers
    hidden_size: int = Field(ge=1)
    intermediate_size: int = Field(ge=1)  # the MLP's (gated: gate and up are each this wide)
    attention_heads: int = Field(ge=1)
    kv_heads: int = Field(ge=1)  # num_key_value_heads (grouped-query attention)
    head_dim: int | None = Field(default=None, ge=1)  # None: hidden_size / attention_heads
    vocab_size: int = Field(ge=1)
    tied_embeddings: bool  # tie_word_embeddings: the output head shares the input embeddings
    # Where it was read; None for a shape read from a model folder on this machine.
    source: Source | None = None

    @property
    def head_width(self) -> int:
        return self.head_dim or self.hidden_size // self.attention_heads

    @property
    def query_width(self) -> int:
        return self.attention_heads * self.head_width

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_width

    def module_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one decoder layer, by its usual module name."""
        h, q, kv, i = self.hidden_size, self.query_width, self.kv_width, self.intermediate_size
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def layer_parameters(self) -> int:
        """Weights of one decoder layer: its linear layers and two norms (biases left out)."""
        return sum(a * b for a, b in self.module_shapes().values()) + 2 * self.hidden_size

    @property
    def embedding_parameters(self) -> int:
        """Input embeddings, plus the output head where it is not tied to them."""
        return self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)

    @property
    def parameter_count(self) -> int:
        return self.layers * self.layer_parameters + self.embedding_parameters + self.hidden_size

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Architecture | None:
        """The shape in a Hugging Face `config.json` (its text config for multimodal ones); None when
        it lacks a field the memory model needs."""
        nested = config.get("text_config")
        text: Mapping[str, Any] = nested if isinstance(nested, dict) else config
        try:
            heads = int(text["num_attention_heads"])
            return cls(
                layers=int(text["num_hidden_layers"]),
                hidden_size=int(text["hidden_size"]),
                intermediate_size=int(text["intermediate_size"]),
                attention_heads=heads,
                kv_heads=int(text.get("num_key_value_heads") or heads),
                head_dim=int(text["head_dim"]) if text.get("head_dim") else None,
                vocab_size=int(text["vocab_size"]),
                tied_embeddings=bool(
                    config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))
                ),
            )
        except (KeyError, TypeError, ValueError, ValidationError):
            return None


class Deployment(_Frozen):
    """How a fine-tuned model of this base is served."""

    # bedrock: on-demand custom model deployment where supported, else no-commitment provisioned
    # throughput; sagemaker: a real-time endpoint; local: the in-process inference server.
    method: Literal["on_demand", "provisioned_throughput", "sagemaker_endpoint", "local_server"]
    default_instance_type: str | None = None
    # Regions where `method` is available, where narrower than the model's training regions.
    regions: list[str] = Field(default_factory=list)


DeploymentMethod = Literal["on_demand", "provisioned_throughput", "sagemaker_endpoint", "local_server"]
Runtime = Literal["aws", "local"]


class ProviderTraits(_Frozen):
    """What a provider is, as data: every rule that differs by provider reads one of these, so no
    rule asks which provider it has (`provider_traits`; a new provider is a new entry)."""

    hosting: Hosting
    # Where tunelab can run it: deployed to AWS, or in the embedded local runtime.
    runtime: Runtime
    # Trains only in the regions its models list (Bedrock customization); else wherever it runs.
    regional: bool
    # Trains in the customer's own account (BYOK): the workspace's plan and connection are checked.
    requires_connection: bool
    # The request names the instances (type, count, volume); the cost is instance-hours.
    requires_resources: bool
    # Accepts the trainer's optional hyperparameters (LoRA, precision, ...); else only the basic ones.
    optional_hyperparameters: bool
    # Takes the provider's own hyperparameter names (`HyperparameterSpec.provider_names`).
    provider_hyperparameter_names: bool
    # The provider keeps the trained weights (a custom model, by `model_ref`): no download, and a
    # continuation starts from that model. Else the weights are a `model.tar.gz` tunelab can hand out.
    keeps_weights: bool
    # The job keeps its checkpoints (`checkpoint-<step>/`) that a new model may start from.
    keeps_checkpoints: bool
    # The trainer runs it: the model's parameter count is known and drives the resource advice.
    runs_trainer: bool
    # Trains on the CPU of the machine tunelab runs on.
    cpu_training: bool
    # Stops early on its own whenever there is validation data.
    always_stops_early: bool
    # How training is billed: per trained token, per instance-hour, or not at all.
    billing: Literal["per_token", "instance_hours", "none"]
    # What keeping the trained model costs a month: the model's price in the catalog (the provider
    # stores it), S3 storage of the archive's size, or nothing.
    storage_billing: Literal["catalog_price", "s3_archive", "none"]
    deployment_methods: tuple[DeploymentMethod, ...]


# Built into `ProviderTraits` on first use (`provider_traits`), not at import.
_TRAITS: Mapping[Provider, Mapping[str, Any]] = {
    "bedrock": {
        "hosting": "managed",
        "runtime": "aws",
        "regional": True,
        "requires_connection": False,
        "requires_resources": False,
        "optional_hyperparameters": False,
        "provider_hyperparameter_names": True,
        "keeps_weights": True,
        "keeps_checkpoints": False,
        "runs_trainer": False,
        "cpu_training": False,
        "always_stops_early": True,
        "billing": "per_token",
        "storage_billing": "catalog_price",
        "deployment_methods": ("on_demand", "provisioned_throughput"),
    },
    "sagemaker": {
        "hosting": "byok",
        "runtime": "aws",
        "regional": False,
        "requires_connection": True,
        "requires_resources": True,
        "optional_hyperparameters": True,
        "provider_hyperparameter_names": False,
        "keeps_weights": False,
        "keeps_checkpoints": True,
        "runs_trainer": True,
        "cpu_training": False,
        "always_stops_early": False,
        "billing": "instance_hours",
        "storage_billing": "s3_archive",
        "deployment_methods": ("sagemaker_endpoint",),
    },
    "local": {
        "hosting": "local",
        "runtime": "local",
        "regional": False,
        "requires_connection": False,
        "requires_resources": False,
        "optional_hyperparameters": True,
        "provider_hyperparameter_names": False,
        "keeps_weights": False,
        "keeps_checkpoints": True,
        "runs_trainer": True,
        "cpu_training": True,
        "always_stops_early": False,
        "billing": "none",
        "storage_billing": "none",
        "deployment_methods": ("local_server",),
    },
}


@cache
def provider_traits(provider: Provider) -> ProviderTraits:
    """The traits of `provider` (a model record's or a spec's)."""
    return ProviderTraits.model_validate(_TRAITS[provider])


class BaseModelSpec(_Frozen):
    id: str
    name: str
    vendor: str
    provider: Provider
    hosting: Hosting
    # None where the vendor does not publish it (Amazon Nova and Titan); known for every model that
    # needs resources (sagemaker, local), where it drives VRAM and storage advice.
    parameter_count: int | None = Field(default=None, gt=0)
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
    # Models the trainer runs: the shape the memory model reads (from the model's config.json).
    architecture: Architecture | None = None
    # What a request without optional hyperparameters trains: LoRA where a full fine-tune of the
    # default request does not fit the default instance (then merged, so the result is a whole model).
    default_use_lora: bool = False
    instruct: bool = True
    notes: list[str] = Field(default_factory=list)

    @property
    def traits(self) -> ProviderTraits:
        return provider_traits(self.provider)

    @property
    def supports_optional_hyperparameters(self) -> bool:
        return self.traits.optional_hyperparameters

    @property
    def supports_download(self) -> bool:
        return not self.traits.keeps_weights

    @property
    def requires_resources(self) -> bool:
        return self.traits.requires_resources

    @property
    def is_retired(self) -> bool:
        return self.retired is not None

    def training_region(self, region: str, regions: Collection[str] = ()) -> str | None:
        """Where a deployment in `region` that may also call the provider in `regions` trains this model:
        its own region where the model trains there, else the first of the model's regions (they are
        listed by preference) that the deployment reaches; None where it reaches none. Models that are
        not regional train wherever the deployment runs (`region`)."""
        if not self.traits.regional:
            return region
        if region in self.regions:
            return region
        return next((r for r in self.regions if r in regions), None)

    def availability(
        self, *, runtime: str, region: str, regions: Collection[str] = ()
    ) -> tuple[bool, str | None]:
        """Whether a deployment (its runtime, its region, and the other regions it reaches the
        provider in) can fine-tune this model, and if not, why."""
        traits = self.traits
        if runtime != traits.runtime:
            if runtime == "local":
                return False, "Cloud models cannot be fine-tuned in the local runtime; use a local model."
            return False, "This model is fine-tuned only in the local runtime (`tunelab local up`)."
        if self.retired is not None:
            return False, f"Fine-tuning of this model is no longer offered: {self.retired.note}"
        if self.training_region(region, regions) is None:
            offered = ", ".join(self.regions)
            reached = ", ".join(sorted({region, *regions}))
            who = self.provider.capitalize()
            return False, (
                f"{who} fine-tunes this model only in {offered}, and this deployment reaches {who} in "
                f"{reached}; the operator of this tunelab deployment can add the region "
                "(`bedrockRegions`)."
            )
        return True, None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        traits = self.traits
        if self.hosting != traits.hosting:
            raise ValueError(f"{self.id}: provider {self.provider} is hosted {traits.hosting}")
        if traits.requires_resources and not (self.hf_id and self.default_instance_type):
            raise ValueError(f"{self.id}: a {self.provider} model needs hf_id and default_instance_type")
        if traits.requires_resources and not self.deployment.default_instance_type:
            raise ValueError(f"{self.id}: a {self.provider} model needs deployment.default_instance_type")
        if traits.runs_trainer and self.parameter_count is None:
            raise ValueError(f"{self.id}: a {self.provider} model needs its parameter_count")
        if traits.requires_resources and self.architecture is None:
            raise ValueError(f"{self.id}: a {self.provider} model needs its architecture (from config.json)")
        if self.architecture is not None and self.parameter_count is not None:
            counted = self.architecture.parameter_count
            if abs(counted - self.parameter_count) > 0.02 * self.parameter_count:
                raise ValueError(
                    f"{self.id}: its architecture has {counted:,} parameters, not the "
                    f"{self.parameter_count:,} listed (more than 2% apart): one of them is wrong"
                )
        if self.default_use_lora and not traits.optional_hyperparameters:
            raise ValueError(f"{self.id}: default_use_lora applies to models the trainer runs")
        if traits.regional and not self.regions:
            raise ValueError(f"{self.id}: a {self.provider} model needs its regions")
        if len(set(self.regions)) != len(self.regions):
            raise ValueError(f"{self.id}: a region is listed twice in {self.regions}")
        priced_elsewhere = sorted(set(self.pricing.regions) - set(self.regions))
        if priced_elsewhere:
            raise ValueError(f"{self.id}: prices for {priced_elsewhere}, where the model does not train")
        if self.deployment.method not in traits.deployment_methods:
            raise ValueError(
                f"{self.id}: deployment method {self.deployment.method} is not one of "
                f"{traits.deployment_methods} for provider {self.provider}"
            )
        if traits.provider_hyperparameter_names:
            missing = set(self.hyperparameters.supported_paths()) - set(self.hyperparameters.provider_names)
            if missing:
                raise ValueError(
                    f"{self.id}: {self.provider.capitalize()} parameter names missing for {sorted(missing)}"
                )
        elif self.hyperparameters.provider_names:
            raise ValueError(
                f"{self.id}: the trainer's hyperparameters use tunelab's names; provider_names must be empty"
            )
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
    # On-demand SageMaker training price per instance-hour in the catalog's region.
    price_per_hour_usd: float = Field(gt=0)
    # Where the hardware figures were read.
    source: Source
    # Where the price was read (the price page and the spec page differ).
    price_source: Source

    @property
    def vram_gb(self) -> float:
        return self.gpus * self.vram_per_gpu_gb

    @model_validator(mode="after")
    def _family_matches_name(self) -> Self:
        if not self.name.startswith(f"ml.{self.family}."):
            raise ValueError(f"instance {self.name} is not of family {self.family}")
        return self


class _ModelsFile(_Frozen):
    models: list[BaseModelSpec]


class _InstancesFile(_Frozen):
    region: str
    # Price of training-volume storage (ml storage, general purpose SSD) per GB-month.
    volume_per_gb_month_usd: float = Field(gt=0)
    volume_source: Source
    # Price of keeping an object in S3 Standard per GB-month (a trained archive in the customer's bucket).
    s3_storage_per_gb_month_usd: float = Field(gt=0)
    s3_storage_source: Source
    instances: list[InstanceType]


BaseModelId = Annotated[
    str,
    Field(min_length=1, max_length=200, description="A base model id from `GET /v1/base-models`."),
]


class Catalog:
    """Base models and SageMaker instance types, looked up by id."""

    def __init__(self, models: list[BaseModelSpec], instances: _InstancesFile) -> None:
        ids = [m.id for m in models]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise CatalogError(f"duplicate base model ids in the catalog: {duplicates}")
        names = [i.name for i in instances.instances]
        duplicate_names = sorted({n for n in names if names.count(n) > 1})
        if duplicate_names:
            raise CatalogError(f"duplicate instance types in the catalog: {duplicate_names}")
        self._models = {m.id: m for m in models}
        self._instances = {i.name: i for i in instances.instances}
        self.instances_region = instances.region
        self.volume_per_gb_month_usd = instances.volume_per_gb_month_usd
        self.volume_source = instances.volume_source
        self.s3_storage_per_gb_month_usd = instances.s3_storage_per_gb_month_usd
        self.s3_storage_source = instances.s3_storage_source
        for m in models:
            for t in (m.default_instance_type, m.deployment.default_instance_type):
                if t is not None and t not in self._instances and m.traits.requires_resources:
                    raise CatalogError(f"{m.id}: unknown instance type {t} (not in {INSTANCES_FILE})")

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

    def trained_storage_per_month_usd(
        self, provider: Provider, size_bytes: int | None, *, predicted: float
    ) -> float:
        """What keeping a trained model costs a month, by how its provider bills storage: the predicted
        catalog price (the provider keeps it), S3 storage of the archive's `size_bytes`, or nothing."""
        billing = provider_traits(provider).storage_billing
        if billing == "none":
            return 0.0
        if billing == "s3_archive" and size_bytes is not None:
            return round(size_bytes / 1e9 * self.s3_storage_per_gb_month_usd, 2)
        return predicted

    def with_models(self, extra: list[BaseModelSpec]) -> Catalog:
        """A catalog with more models (the local runtime's, operator-registered folders)."""
        instances = _InstancesFile(
            region=self.instances_region,
            volume_per_gb_month_usd=self.volume_per_gb_month_usd,
            volume_source=self.volume_source,
            s3_storage_per_gb_month_usd=self.s3_storage_per_gb_month_usd,
            s3_storage_source=self.s3_storage_source,
            instances=self.instances,
        )
        return Catalog([*self.models, *extra], instances)


def _describe(error: ValidationError, data: object) -> str:
    """One line per problem, naming the entry (model id / instance name) rather than a list index."""
    lines = []
    for err in error.errors():
        loc = list(err["loc"])
        where = ".".join(str(p) for p in loc)
        if len(loc) >= 2 and loc[0] in ("models", "instances") and isinstance(loc[1], int):
            try:
                entry = data[loc[0]][loc[1]]  # type: ignore[index]
                key = entry.get("id") or entry.get("name")
            except (KeyError, IndexError, TypeError, AttributeError):
                key = None
            if key:
                where = f"{loc[0]}[{key}]" + "".join(f".{p}" for p in loc[2:])
        lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)


def parse_catalog(model_files: Mapping[str, object], instances: object) -> Catalog:
    """Validate catalog data (file name -> parsed JSON) into a Catalog; any broken rule raises
    `CatalogError` naming the file and the entry."""
    models: list[BaseModelSpec] = []
    for name, data in model_files.items():
        try:
            models.extend(_ModelsFile.model_validate(data).models)
        except ValidationError as e:
            raise CatalogError(f"{name}: {_describe(e, data)}") from None
    try:
        instances_file = _InstancesFile.model_validate(instances)
    except ValidationError as e:
        raise CatalogError(f"{INSTANCES_FILE}: {_describe(e, instances)}") from None
    return Catalog(models, instances_file)


def read_catalog_data() -> tuple[dict[str, Any], Any]:
    """The shipped catalog files as parsed JSON: ({file name: data} for models, instances data)."""
    models = {name: json.loads(_read(name)) for name in MODEL_FILES}
    return models, json.loads(_read(INSTANCES_FILE))


def _read(name: str) -> str:
    return resources.files("tunelab").joinpath("catalog_data", name).read_text(encoding="utf-8")


# Read once per process: the shipped files never change while it runs (a warm Lambda reuses it).
@cache
def load_catalog() -> Catalog:
    """The shipped catalog (Bedrock, SageMaker and local models; instance types), validated."""
    models, instances = read_catalog_data()
    return parse_catalog(models, instances)
