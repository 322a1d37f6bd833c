"""Memory, training-volume and instance advice for a job the trainer runs: one memory model, used by
`POST /v1/resource-estimates` and by the check made when a SageMaker job is created, computed for the
plan the trainer will run (its method, precision, checkpointing, batch and sequence length) on the
model's real architecture (layers, widths, heads, vocabulary: the catalog's `architecture`, read from
the model's `config.json`). All figures in GB = 1e9 bytes.

The trainer (`trainer/`) and what it holds per GPU
    weights     N × w, with w = 2 bytes when training in bf16 (the trainer loads bf16 weights) and
                4 otherwise (fp32; fp16 is autocast over fp32 weights, as fp16 master weights cannot be
                unscaled).
    full fine-tuning: gradients N × w and AdamW's two states 2 × N × w (torch's AdamW keeps them in
                the weights' dtype): 4 × N × w in all.
    LoRA        the base's weights frozen (no gradients, no states); the adapters, r × (in + out) per
                adapted linear layer (peft's default modules for Llama, Qwen and Gemma: q_proj and
                v_proj), in fp32 with their gradients and two states: 16 bytes each. DoRA (use_dora)
                adds a trained magnitude per output feature of each adapted module, and while it takes
                each module's weight norm the dense update and updated weight (2 × out × in × 4 bytes,
                the largest module's).
    activations per GPU, for its micro-batch of T = batch_size × sequence_length tokens (padding-free
                batches hold at most that), in a bytes per value (2 under bf16/fp16 autocast, 4 in fp32):
                a decoder layer keeps E = 4h + 2q + 2kv + 4i values per token (norm inputs and outputs,
                query, key, value and attention output, the MLP's gate, up, activation and product;
                SDPA and flash attention never store the attention scores, cf. Korthikanti et al. 2022;
                eager attention adds its scores and their softmax, 2 × heads × s a token).
                With gradient checkpointing (on by default on GPUs) only each layer's input is kept
                (L × h × T values) plus one layer's E × T during its recomputation; without, L × E × T.
    logits      T × V × (a + 8) bytes: the head's output, its fp32 copy for the loss and its gradient.
    DDP         each GPU holds everything above, plus DDP's gradient buckets (one more copy of the
                trained weights' gradients).
    FSDP        weights, gradients and optimizer states are sharded over all GPUs of all instances
                (÷ world size); each GPU also holds the unsharded root (embeddings and head, whose
                FSDP2 keeps gathered through the step; their gradients too when they train) and two
                gathered decoder layers (the one computing and the one prefetched).
    total       (the above) × 1.10 for the allocator's fragmentation, + 1 GB for the CUDA context and
                kernels' workspace.

Strategy
    One GPU in all: single. Several: DDP where one GPU holds the whole job (less communication), else
    FSDP (the trainer's `distribution` hyperparameter is set to match). An instance type fits at a
    count when its per-GPU VRAM holds that strategy's total. The smallest count (up to 8) at which some
    type fits is advised; types are listed fitting first, cheapest first.

Storage
    base model  = N × 2 bytes (the 16-bit files downloaded)
    trained     = N × w (the model written: full, or merged; an unmerged adapter's merged copy)
    checkpoints = sft_config.save_total_limit kept (2 by default; none with save_strategy no) × each:
                full fine-tuning N × w × 3 (weights and AdamW's two states), LoRA the adapter's fp32
                weights and states.
    recommended = total + 10% headroom, rounded up to the next 50 GB (45 → 50).

The figures have not been calibrated on a GPU in this project yet: `benchmarks/gpu_check.sh` measures
the peak on a real one and prints it next to this model's figure for the same plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError

from tunelab.domain.catalog import Architecture, BaseModelSpec, InstanceType
from tunelab.domain.errors import ErrorDetail, ValidationFailed
from tunelab.domain.hyperparameters import (
    DEFAULT_SAVE_TOTAL_LIMIT,
    ResolvedHyperparameters,
    ResolvedOptionalHyperparameters,
)

Precision = Literal["fp32", "fp16", "bf16"]
Optimizer = Literal["adamw"]
Method = Literal["lora", "full"]
Strategy = Literal["single", "ddp", "fsdp"]
Attention = Literal["flash_attention_2", "sdpa", "eager"]
TargetModules = list[str] | Literal["all-linear"] | None

GB = 1e9
FRAGMENTATION = 1.10
RUNTIME_OVERHEAD_GB = 1.0
ADAMW_STATES = 2
# LoRA adapters train in fp32 (peft casts them up): with their gradients and AdamW's two states,
# 16 bytes an adapter parameter.
ADAPTER_BYTES = 4.0
# peft's default target modules for the Llama, Qwen2 and Gemma families.
DEFAULT_LORA_MODULES = ("q_proj", "v_proj")
DEFAULT_LORA_R = 8
# The trainer's longest default sequence: the model's context, at most this (trainer/planning.py).
TRAINER_MAX_LENGTH = 2048
STORAGE_HEADROOM = 1.1
STORAGE_STEP_GB = 50
CHECKPOINT_MULTIPLIER = 1 + ADAMW_STATES
# The trainer keeps its latest checkpoints up to sft_config.save_total_limit (default 2).
KEPT_CHECKPOINTS = DEFAULT_SAVE_TOTAL_LIMIT
BASE_FILE_BYTES = 2.0
MAX_INSTANCE_COUNT = 8


def _weight_bytes(precision: Precision) -> float:
    return 2.0 if precision == "bf16" else 4.0


def _activation_bytes(precision: Precision) -> float:
    return 4.0 if precision == "fp32" else 2.0


@dataclass(frozen=True)
class TrainingSetup:
    """What the trainer will run, as far as memory cares."""

    method: Method
    precision: Precision = "bf16"
    gradient_checkpointing: bool = True
    batch_size: int = 4
    sequence_length: int = TRAINER_MAX_LENGTH
    lora_r: int = DEFAULT_LORA_R
    lora_target_modules: TargetModules = None
    # eager attention stores each layer's attention scores and their softmax; sdpa and flash do not.
    attention: Attention = "sdpa"
    # DoRA (LoRA's use_dora): a trained magnitude per output feature of each adapted module.
    dora: bool = False

    @property
    def tokens(self) -> int:
        return self.batch_size * self.sequence_length

    def describe(self) -> str:
        kind = "DoRA" if self.dora else "LoRA"
        method = (
            f"{kind} r={self.lora_r} on {self._modules_text()}"
            if self.method == "lora"
            else "full fine-tuning"
        )
        checkpointing = "with" if self.gradient_checkpointing else "without"
        attention = ", eager attention" if self.attention == "eager" else ""
        return (
            f"{method}, {self.precision}{attention}, AdamW, {checkpointing} gradient checkpointing, "
            f"{self.batch_size} × {self.sequence_length} tokens per GPU"
        )

    def _modules_text(self) -> str:
        if self.lora_target_modules == "all-linear":
            return "every linear layer"
        return "/".join(self.lora_target_modules or DEFAULT_LORA_MODULES)


def _adapted_shapes(arch: Architecture, target_modules: TargetModules) -> list[tuple[int, int]]:
    # A module name the shape does not know counts as a hidden × hidden layer.
    shapes = arch.module_shapes()
    names: Sequence[str] = (
        list(shapes) if target_modules == "all-linear" else target_modules or DEFAULT_LORA_MODULES
    )
    return [shapes.get(n, (arch.hidden_size, arch.hidden_size)) for n in names]


def lora_parameters(arch: Architecture, r: int, target_modules: TargetModules, dora: bool = False) -> int:
    """Adapter weights: r × (in + out) for each adapted linear layer of every decoder layer; DoRA adds
    a magnitude per output feature (out) of each."""
    shapes = _adapted_shapes(arch, target_modules)
    per_layer = sum(r * (i + o) + (o if dora else 0) for i, o in shapes)
    return arch.layers * per_layer


def dora_recomputed_weights(spec: BaseModelSpec, optional: ResolvedOptionalHyperparameters | None) -> int:
    """Weights DoRA runs a second time for each token: with lora_dropout above 0, peft computes every
    adapted module's base output again on the dropped-out input (it reuses the layer's output only
    without dropout); 0 for LoRA, full fine-tuning or DoRA without dropout."""
    lora = optional.lora_config if optional is not None else None
    if lora is None or not lora.use_dora or lora.lora_dropout == 0 or spec.parameter_count is None:
        return 0
    arch = shape_of(spec, spec.parameter_count)
    return arch.layers * sum(i * o for i, o in _adapted_shapes(arch, lora.target_modules))


def dora_workspace_bytes(arch: Architecture, target_modules: TargetModules) -> float:
    """DoRA's transient memory: peft forms each adapted module's dense update B·A and the updated weight
    (out × in each, fp32) to take its norm, one module at a time: the largest module's, twice."""
    return 2 * max(i * o for i, o in _adapted_shapes(arch, target_modules)) * ADAPTER_BYTES


@dataclass(frozen=True)
class Memory:
    """One GPU's memory for a strategy, in GB (unrounded)."""

    strategy: Strategy
    world_size: int
    weights: float
    gradients: float
    optimizer: float
    activations: float
    logits: float
    # DDP's gradient buckets, or FSDP's gathered root and layers.
    distribution: float

    @property
    def subtotal(self) -> float:
        state = self.weights + self.gradients + self.optimizer
        return state + self.activations + self.logits + self.distribution

    @property
    def total(self) -> float:
        return self.subtotal * FRAGMENTATION + RUNTIME_OVERHEAD_GB


def memory(arch: Architecture, setup: TrainingSetup, strategy: Strategy, world_size: int = 1) -> Memory:
    """One GPU's memory when `world_size` GPUs run `setup` with `strategy` (the module's method)."""
    if strategy == "single" or world_size < 1:
        world_size = 1
    n = arch.parameter_count
    w = _weight_bytes(setup.precision)
    a = _activation_bytes(setup.precision)
    if setup.method == "full":
        frozen, trained, trained_bytes = 0.0, n, w
    else:
        frozen = n * w
        trained = lora_parameters(arch, setup.lora_r, setup.lora_target_modules, setup.dora)
        trained_bytes = ADAPTER_BYTES
    weights = frozen + trained * trained_bytes
    gradients = trained * trained_bytes
    optimizer = ADAMW_STATES * trained * trained_bytes
    h, q, kv, i = arch.hidden_size, arch.query_width, arch.kv_width, arch.intermediate_size
    per_layer = 4 * h + 2 * q + 2 * kv + 4 * i
    if setup.attention == "eager":
        # Each token's scores over the sequence, per head, and their softmax.
        per_layer += 2 * arch.attention_heads * setup.sequence_length
    tokens = setup.tokens
    if setup.gradient_checkpointing:
        activations = tokens * (arch.layers * h + per_layer) * a
    else:
        activations = tokens * arch.layers * per_layer * a
    logits = tokens * arch.vocab_size * (a + 8.0)
    if setup.method == "lora" and setup.dora:
        activations += dora_workspace_bytes(arch, setup.lora_target_modules)
    shards = world_size if strategy == "fsdp" else 1
    distribution = 0.0
    if strategy == "ddp":
        distribution = trained * trained_bytes
    elif strategy == "fsdp":
        root = arch.embedding_parameters * w * (2 if setup.method == "full" else 1)
        distribution = root + 2 * arch.layer_parameters * w
    return Memory(
        strategy=strategy,
        world_size=world_size,
        weights=weights / shards / GB,
        gradients=gradients / shards / GB,
        optimizer=optimizer / shards / GB,
        activations=activations / GB,
        logits=logits / GB,
        distribution=distribution / GB,
    )


@dataclass(frozen=True)
class Placement:
    """How a job runs on `count` instances of a type: the strategy the trainer will use and its memory."""

    instance: InstanceType
    count: int
    memory: Memory

    @property
    def strategy(self) -> Strategy:
        return self.memory.strategy

    @property
    def fits(self) -> bool:
        return self.memory.total <= self.instance.vram_per_gpu_gb


def place(arch: Architecture, setup: TrainingSetup, instance: InstanceType, count: int) -> Placement:
    """The strategy the trainer uses on `count` × `instance`: single GPU; DDP where one GPU holds the
    whole job; else FSDP (the least memory; `fits` says whether even that fits)."""
    world = instance.gpus * count
    if world == 1:
        return Placement(instance, count, memory(arch, setup, "single"))
    replicated = memory(arch, setup, "ddp", world)
    if replicated.total <= instance.vram_per_gpu_gb:
        return Placement(instance, count, replicated)
    return Placement(instance, count, memory(arch, setup, "fsdp", world))


def shape_of(spec: BaseModelSpec, parameter_count: float) -> Architecture:
    """The model's shape from its configuration (the catalog), else approximated from its size."""
    return spec.architecture or approximate_architecture(parameter_count)


def approximate_architecture(parameter_count: float) -> Architecture:
    """A Llama-shaped decoder of about this many parameters, for a bare parameter count: N ≈ 12·L·h²
    with L = h/128, a gated MLP of 8h/3, full multi-head attention and a 32,000-token vocabulary."""
    hidden = max(64, round((128 * parameter_count / 12) ** (1 / 3) / 64) * 64)
    return Architecture(
        layers=max(1, round(hidden / 128)),
        hidden_size=hidden,
        intermediate_size=max(1, round(8 * hidden / 3)),
        attention_heads=max(1, hidden // 128),
        kv_heads=max(1, hidden // 128),
        vocab_size=32_000,
        tied_embeddings=False,
    )


def trainer_max_length(context_length: int, optional: ResolvedOptionalHyperparameters | None) -> int:
    """The trainer's max_length: `sft_config.max_length`, else the model's context, at most 2,048."""
    asked = optional.sft_config.max_length if optional is not None else None
    return asked or min(context_length, TRAINER_MAX_LENGTH)


def setup_for(
    hyperparameters: ResolvedHyperparameters,
    optional: ResolvedOptionalHyperparameters | None,
    *,
    context_length: int,
    longest_row_tokens: int | None = None,
) -> TrainingSetup:
    """The setup the trainer runs for a job's resolved values: LoRA (or DoRA) or full, bf16 unless fp16
    or fp32 was asked for, the request's batch size, `sft_config.gradient_checkpointing` (on for GPUs
    unless turned off), and the sequence length: with packing every sequence is filled to max_length;
    without, a micro-batch is at most as long as the longest row (`longest_row_tokens`, when known)
    the trainer keeps (rows over max_length are left out)."""
    lora = optional.lora_config if optional is not None else None
    sft = optional.sft_config if optional is not None else None
    precision: Precision = "bf16" if sft is None or sft.bf16 else "fp16" if sft.fp16 else "fp32"
    max_length = trainer_max_length(context_length, optional)
    packing = sft is not None and sft.packing
    length = max_length if packing or not longest_row_tokens else min(max_length, longest_row_tokens)
    checkpointing = sft is None or sft.gradient_checkpointing is not False
    return TrainingSetup(
        method="lora" if optional is not None and optional.use_lora else "full",
        precision=precision,
        gradient_checkpointing=checkpointing,
        attention=optional.model_init_config.attn_implementation if optional is not None else "sdpa",
        batch_size=hyperparameters.batch_size or 1,
        sequence_length=max(1, length),
        lora_r=lora.r if lora else DEFAULT_LORA_R,
        lora_target_modules=lora.target_modules if lora else None,
        dora=bool(lora and lora.use_dora),
    )


def advice_request(
    spec: BaseModelSpec, setup: TrainingSetup, *, dataset_bytes: int, checkpoints: int
) -> ResourceEstimateRequest:
    """The resource estimate's request for a job of `spec` run with `setup` (the quote's advice)."""
    lora = (
        {"lora_r": setup.lora_r, "lora_target_modules": setup.lora_target_modules}
        if setup.method == "lora"
        else {}
    )
    return ResourceEstimateRequest(
        base_model_id=spec.id,
        precision=setup.precision,
        method=setup.method,
        **lora,  # type: ignore[arg-type]
        dataset_bytes=dataset_bytes,
        checkpoints=checkpoints,
        sequence_length=setup.sequence_length,
        batch_size=setup.batch_size,
        gradient_checkpointing=setup.gradient_checkpointing,
        attn_implementation=setup.attention,
    )


def kept_checkpoints(optional: ResolvedOptionalHyperparameters | None) -> int:
    """Checkpoints on the volume at once: `sft_config.save_total_limit`, none when saving is off."""
    if optional is None:
        return KEPT_CHECKPOINTS
    sft = optional.sft_config
    return 0 if sft.save_strategy == "no" else sft.save_total_limit


def default_setup(spec: BaseModelSpec) -> TrainingSetup:
    """The setup of a request that sets nothing: the model's default method, batch size and the
    trainer's default sequence length, bf16 (the default attention trains in it), checkpointing on."""
    batch = spec.hyperparameters.batch_size
    return TrainingSetup(
        method="lora" if spec.default_use_lora else "full",
        attention="sdpa" if spec.traits.cpu_training else "flash_attention_2",
        batch_size=batch.default if batch else 4,
        sequence_length=min(spec.context_length, TRAINER_MAX_LENGTH),
    )


# --- the API's request and answer ---------------------------------------------------------------------


class ResourceEstimateRequest(BaseModel):
    """Body of `POST /v1/resource-estimates`: a catalog model (or a bare parameter count) and the plan.

    Omitted values are what a fine-tuning request without them runs: the model's default method and
    batch size, the trainer's default sequence length, bf16, gradient checkpointing on, LoRA r 8 on
    peft's default modules."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    base_model_id: str | None = Field(default=None, min_length=1, max_length=200)
    parameter_count: float | None = Field(default=None, gt=0, le=1e13)
    precision: Precision = "bf16"
    # The trainer runs AdamW (torch's, states in the weights' dtype).
    optimizer: Optimizer = "adamw"
    method: Method | None = None
    lora_r: int = Field(default=DEFAULT_LORA_R, ge=1, le=4096)
    # null: peft's default modules for the architecture; "all-linear": every linear layer.
    lora_target_modules: list[str] | Literal["all-linear"] | None = None
    dataset_bytes: float = Field(default=0, ge=0, le=1e14)
    # Checkpoints on the volume at once (the trainer keeps its latest 2).
    checkpoints: int = Field(default=KEPT_CHECKPOINTS, ge=0, le=100)
    sequence_length: int | None = Field(default=None, ge=1, le=1_048_576)
    # Per-GPU (per-device) batch size.
    batch_size: int | None = Field(default=None, ge=1, le=4096)
    gradient_checkpointing: bool = True
    # null: the default (flash attention or sdpa: the same memory); eager stores attention scores.
    attn_implementation: Attention | None = None

    @field_validator("precision", mode="before")
    @classmethod
    def _trainer_precisions(cls, value: Any) -> Any:
        if value not in (None, "bf16", "fp16", "fp32"):
            raise PydanticCustomError(
                "precision",
                "precision is bf16, fp16 or fp32: the trainer does not train quantised (int8/int4) weights.",
            )
        return value

    @field_validator("optimizer", mode="before")
    @classmethod
    def _trainer_optimizer(cls, value: Any) -> Any:
        if value not in (None, "adamw"):
            raise PydanticCustomError(
                "optimizer", "The trainer runs AdamW only; optimizer is adamw (or left out)."
            )
        return value

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> ResourceEstimateRequest:
        """Validate a request body; every problem becomes a `ValidationFailed` detail with its field."""
        try:
            return cls.model_validate(body)
        except PydanticValidationError as exc:
            details = [
                ErrorDetail(field=".".join(str(p) for p in err["loc"]) or None, message=err["msg"])
                for err in exc.errors()
            ]
            raise ValidationFailed("The resource estimate request is not valid.", details) from None


class VramGb(BaseModel):
    """The whole job on one GPU (before any sharding)."""

    model_config = ConfigDict(frozen=True, defer_build=True)
    weights: float
    gradients: float
    optimizer: float
    activations: float
    logits: float
    total: float
    # With the allocator's fragmentation and the CUDA context.
    with_buffer: float


class StorageGb(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)
    base_model: float
    # The model the job writes (full, or merged: the base's size in its training dtype).
    trained_model: float = 0.0
    checkpoints: float
    dataset: float
    total: float
    recommended: int


class ArchitectureShown(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)
    layers: int
    hidden_size: int
    intermediate_size: int
    attention_heads: int
    kv_heads: int
    vocab_size: int
    # "catalog": the model's config.json; "approximate": derived from a bare parameter count.
    source: Literal["catalog", "approximate"]


class PlanShown(BaseModel):
    """The plan the figures are for (every default filled in)."""

    model_config = ConfigDict(frozen=True, defer_build=True)
    method: Method
    precision: Precision
    optimizer: Optimizer
    gradient_checkpointing: bool
    batch_size: int
    sequence_length: int
    lora_r: int | None
    lora_target_modules: list[str] | Literal["all-linear"] | None
    parameters: int
    trained_parameters: int
    architecture: ArchitectureShown


class InstanceAdvice(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)
    instance_type: str
    gpus: int
    vram_gb: float
    fits: bool
    price_per_hour_usd: float
    # At the advised instance count: how the trainer would run there, and what each GPU needs.
    strategy: Strategy
    memory_per_gpu_gb: float


class ResourceEstimate(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)
    plan: PlanShown
    vram_gb: VramGb
    storage_gb: StorageGb
    instances: list[InstanceAdvice]
    # Instances of one type to run; null when no type fits even with 8 instances.
    instance_count: int | None
    notes: list[str]


class ResourceCatalog(Protocol):
    """What the advice reads from the catalog (`tunelab.domain.catalog.Catalog` provides it)."""

    def find_model(self, model_id: str) -> BaseModelSpec | None: ...

    @property
    def instances(self) -> list[InstanceType]: ...


def _round(value: float, places: str = "0.1") -> float:
    # Snap away binary noise first, then round half up: 26.88 → 26.9, 0.05 → 0.1.
    exact = Decimal(repr(value)).quantize(Decimal("1e-9"), rounding=ROUND_HALF_UP)
    return float(exact.quantize(Decimal(places), rounding=ROUND_HALF_UP))


def recommended_volume_gb(total_gb: float) -> int:
    """Total plus 10% headroom, rounded up to the next 50 GB: 45 → 50, 46 → 100 (50.6 rounds up)."""
    return max(
        STORAGE_STEP_GB,
        math.ceil(_round(total_gb * STORAGE_HEADROOM, "0.001") / STORAGE_STEP_GB) * STORAGE_STEP_GB,
    )


def storage_gb(
    *,
    base_model_gb: float,
    checkpoint_gb: float,
    checkpoints: int,
    dataset_gb: float,
    trained_model_gb: float = 0.0,
) -> StorageGb:
    """Training-volume figures: base model + the model written + checkpoints × each + dataset, and the
    advised size."""
    base, each, data = _round(base_model_gb), _round(checkpoint_gb), _round(dataset_gb)
    trained = _round(trained_model_gb)
    ckpts = _round(each * checkpoints)
    total = _round(base + trained + ckpts + data)
    return StorageGb(
        base_model=base,
        trained_model=trained,
        checkpoints=ckpts,
        dataset=data,
        total=total,
        recommended=recommended_volume_gb(total),
    )


def _base_model_gb(parameter_count: float) -> float:
    """The base's files as downloaded: 16-bit weights."""
    return parameter_count * BASE_FILE_BYTES / GB


def _storage(arch: Architecture, setup: TrainingSetup, checkpoints: int, dataset_bytes: float) -> StorageGb:
    """The volume a job fills: the base's files, the model it writes (full or merged, in the weights'
    dtype), its checkpoints (full fine-tuning: the weights and AdamW's two states; LoRA: the adapter
    and its states, fp32) and the dataset."""
    n, w = arch.parameter_count, _weight_bytes(setup.precision)
    if setup.method == "full":
        each = n * w * CHECKPOINT_MULTIPLIER
    else:
        adapters = lora_parameters(arch, setup.lora_r, setup.lora_target_modules, setup.dora)
        each = adapters * ADAPTER_BYTES * CHECKPOINT_MULTIPLIER
    return storage_gb(
        base_model_gb=_base_model_gb(n),
        trained_model_gb=n * w / GB,
        checkpoint_gb=each / GB,
        checkpoints=checkpoints,
        dataset_gb=dataset_bytes / GB,
    )


def smallest_count(
    arch: Architecture, setup: TrainingSetup, candidates: Sequence[InstanceType]
) -> int | None:
    """Smallest instance count at which some candidate fits; None when none does up to the maximum."""
    for count in range(1, MAX_INSTANCE_COUNT + 1):
        if any(place(arch, setup, i, count).fits for i in candidates):
            return count
    return None


def _resolve(
    request: ResourceEstimateRequest, catalog: ResourceCatalog
) -> tuple[Architecture, str, BaseModelSpec | None]:
    if (request.base_model_id is None) == (request.parameter_count is None):
        raise ValidationFailed.of("base_model_id", "Give either base_model_id or parameter_count, not both.")
    if request.parameter_count is not None:
        arch = approximate_architecture(request.parameter_count)
        return arch, f"{request.parameter_count / 1e9:.3g}B parameters", None
    model_id = request.base_model_id or ""
    spec = catalog.find_model(model_id)
    if spec is None:
        raise ValidationFailed.of(
            "base_model_id", f"There is no base model '{model_id}'; GET /v1/base-models lists them."
        )
    if not spec.traits.runs_trainer or spec.parameter_count is None:
        raise ValidationFailed.of(
            "base_model_id", f"'{model_id}' is trained by Bedrock, which chooses its own resources."
        )
    arch = shape_of(spec, spec.parameter_count)
    return arch, f"{spec.name} ({spec.parameter_count / 1e9:.3g}B parameters)", spec


def _setup(request: ResourceEstimateRequest, spec: BaseModelSpec | None) -> TrainingSetup:
    defaults = default_setup(spec) if spec else TrainingSetup(method="full")
    method = request.method or defaults.method
    if method == "full" and (request.lora_target_modules is not None or "lora_r" in request.model_fields_set):
        raise ValidationFailed.of("method", "lora_r and lora_target_modules apply to method lora.")
    return TrainingSetup(
        method=method,
        precision=request.precision,
        gradient_checkpointing=request.gradient_checkpointing,
        batch_size=request.batch_size or defaults.batch_size,
        sequence_length=request.sequence_length or defaults.sequence_length,
        lora_r=request.lora_r,
        lora_target_modules=request.lora_target_modules,
        attention=request.attn_implementation or "sdpa",
    )


def estimate_resources(request: ResourceEstimateRequest, catalog: ResourceCatalog) -> ResourceEstimate:
    """Memory, storage and instance advice for `request` (the method is in this module's docstring)."""
    arch, label, spec = _resolve(request, catalog)
    configured = spec is not None and spec.architecture is not None
    setup = _setup(request, spec)
    one = memory(arch, setup, "single")
    vram = VramGb(
        weights=_round(one.weights),
        gradients=_round(one.gradients),
        optimizer=_round(one.optimizer),
        activations=_round(one.activations),
        logits=_round(one.logits),
        total=_round(one.subtotal),
        with_buffer=_round(one.total),
    )
    storage = _storage(arch, setup, request.checkpoints, request.dataset_bytes)

    notes: list[str] = []
    candidates = list(catalog.instances)
    if setup.precision == "bf16":
        without = sorted(i.name for i in candidates if not i.bf16)
        candidates = [i for i in candidates if i.bf16]
        if without:
            notes.append(f"Left out for lacking bf16 (choose fp16 to consider them): {', '.join(without)}.")
    count = smallest_count(arch, setup, candidates)
    placements = [place(arch, setup, i, count or 1) for i in candidates]
    advice = sorted(
        (
            InstanceAdvice(
                instance_type=p.instance.name,
                gpus=p.instance.gpus,
                vram_gb=_round(p.instance.vram_gb),
                fits=count is not None and p.fits,
                price_per_hour_usd=p.instance.price_per_hour_usd,
                strategy=p.strategy,
                memory_per_gpu_gb=_round(p.memory.total),
            )
            for p in placements
        ),
        key=lambda a: (not a.fits, a.price_per_hour_usd, a.instance_type),
    )
    trained = (
        arch.parameter_count
        if setup.method == "full"
        else lora_parameters(arch, setup.lora_r, setup.lora_target_modules, setup.dora)
    )
    shape = (
        f"{arch.layers} layers of width {arch.hidden_size:,} (MLP {arch.intermediate_size:,}, "
        f"{arch.attention_heads} heads, {arch.kv_heads} key/value heads), vocabulary {arch.vocab_size:,}"
    )
    notes.append(
        f"{label}: {setup.describe()}. "
        + (
            f"Shape from the model's configuration: {shape}."
            if configured
            else f"Shape approximated from the parameter count: {shape}; give base_model_id for a "
            "catalog model's real shape."
        )
    )
    notes.append(
        "Per GPU: weights, gradients and AdamW states (sharded across GPUs under FSDP), activations of its "
        f"micro-batch, logits, and DDP's buckets or FSDP's gathered layers; × {FRAGMENTATION:.2f} for "
        f"fragmentation, + {RUNTIME_OVERHEAD_GB:g} GB for the CUDA context. GB are 10^9 bytes."
    )
    notes.append(
        "Storage: the base's files, the model written, the checkpoints (full fine-tuning: weights and "
        "AdamW's two states each; LoRA: the adapter's), the dataset; recommended = total + 10%, rounded up "
        "to the next 50 GB."
    )
    if count is None:
        notes.append(
            f"Nothing fits, even across {MAX_INSTANCE_COUNT} instances: activations and logits alone need "
            f"{one.activations + one.logits:.1f} GB per GPU. Lower batch_size or sequence_length, turn on "
            "gradient checkpointing, or use LoRA."
        )
    else:
        fitting = [p for p in placements if p.fits]
        strategies = [s for s in ("single", "ddp", "fsdp") if any(p.strategy == s for p in fitting)]
        described = {
            "single": "one GPU holds the whole job",
            "ddp": "data-parallel (DDP): every GPU holds the whole job",
            "fsdp": "sharded (FSDP): weights, gradients and optimizer states are split across all GPUs",
        }
        notes.append(
            "How the trainer runs on the fitting types: " + "; ".join(described[s] for s in strategies) + "."
        )
    if count is not None and count > 1:
        notes.append(
            f"No single instance holds this job: it needs {count} instances "
            "(distributed training over the network)."
        )
    return ResourceEstimate(
        plan=PlanShown(
            method=setup.method,
            precision=setup.precision,
            optimizer="adamw",
            gradient_checkpointing=setup.gradient_checkpointing,
            batch_size=setup.batch_size,
            sequence_length=setup.sequence_length,
            lora_r=setup.lora_r if setup.method == "lora" else None,
            lora_target_modules=setup.lora_target_modules if setup.method == "lora" else None,
            parameters=arch.parameter_count,
            trained_parameters=trained,
            architecture=ArchitectureShown(
                layers=arch.layers,
                hidden_size=arch.hidden_size,
                intermediate_size=arch.intermediate_size,
                attention_heads=arch.attention_heads,
                kv_heads=arch.kv_heads,
                vocab_size=arch.vocab_size,
                source="catalog" if configured else "approximate",
            ),
        ),
        vram_gb=vram,
        storage_gb=storage,
        instances=advice,
        instance_count=count,
        notes=notes,
    )


@dataclass(frozen=True)
class ResourceCheck:
    """What the create-time check found: warnings the user acknowledges, and how the trainer will run."""

    warnings: list[str]
    strategy: Strategy
    memory_per_gpu_gb: float


def check_resources(
    spec: BaseModelSpec,
    instance: InstanceType,
    instance_count: int,
    volume_size_gb: float,
    *,
    setup: TrainingSetup,
    dataset_bytes: float = 0,
    checkpoints: int = KEPT_CHECKPOINTS,
) -> ResourceCheck:
    """Check a fine-tuning job's chosen resources for the plan the trainer will run.

    Errors (`ValidationFailed`, the job could not start or would fail at once): bf16 on an instance
    without it; storage smaller than the base model. Warnings: too little VRAM by this module's model
    (estimates are rough, the user may know better), storage below the advice.
    """
    if instance_count < 1:
        raise ValidationFailed.of("resources.instance_count", "The instance count must be at least 1.")
    if setup.precision == "bf16" and not instance.bf16:
        raise ValidationFailed.of(
            "resources.instance_type",
            f"{instance.name} ({instance.gpu_model}) does not support bf16; use fp16.",
        )
    if spec.parameter_count is None:
        raise ValueError(f"{spec.id}: resources apply to models with a known parameter count")
    arch = shape_of(spec, spec.parameter_count)
    warnings: list[str] = []
    # Instances with NVMe instance storage get no EBS volume: their storage is fixed.
    nvme = instance.local_storage_gb > 0
    storage, field = (
        (instance.local_storage_gb, "resources.instance_type")
        if nvme
        else (volume_size_gb, "resources.volume_size_gb")
    )
    base = _base_model_gb(spec.parameter_count)
    if storage < base:
        where = f"{instance.name}'s {storage:g} GB instance storage" if nvme else f"a {storage:g} GB volume"
        raise ValidationFailed.of(
            field, f"The base model alone needs {_round(base):g} GB; it does not fit on {where}."
        )
    advised = _storage(arch, setup, checkpoints, dataset_bytes)
    if storage < advised.total:
        warnings.append(
            f"Storage of {storage:g} GB is less than the {advised.total:g} GB this job may write "
            f"(base model, trained model, checkpoints, dataset); {advised.recommended} GB is advised."
        )
    elif not nvme and volume_size_gb < advised.recommended:
        warnings.append(
            f"A {volume_size_gb:g} GB volume leaves little headroom; {advised.recommended} GB is advised."
        )
    if nvme and volume_size_gb > instance.local_storage_gb:
        warnings.append(
            f"{instance.name} trains on its own {instance.local_storage_gb:g} GB NVMe storage; "
            f"the {volume_size_gb:g} GB volume size does not apply."
        )

    placement = place(arch, setup, instance, instance_count)
    need = _round(placement.memory.total)
    if not placement.fits:
        warnings.append(
            f"Each GPU of {instance_count} × {instance.name} has {instance.vram_per_gpu_gb:g} GB, "
            f"but {setup.describe()} needs about {need:g} GB per GPU"
            + (" even sharded (FSDP)" if placement.strategy == "fsdp" else "")
            + ": training may run out of memory. Use a larger instance, more instances, a smaller batch, "
            "LoRA, or gradient checkpointing."
        )
    return ResourceCheck(warnings=warnings, strategy=placement.strategy, memory_per_gpu_gb=need)


# --- serving ----------------------------------------------------------------------------------------
#
# What a SageMaker endpoint needs to serve a fine-tuned model (the merged model, full weights):
#     weights     N × 2 bytes (served in bf16, as the trainer writes them);
#     headroom    + 20% of the weights for the KV cache and activations of a modest batch;
#     CUDA        + 1 GB per GPU (its context and kernels' workspace);
# spread over all the instance's GPUs (the server shards the model by tensor parallelism), so an
# instance type fits when gpus × vram_per_gpu_gb holds it. The 20% is tunelab's choice, checked against
# the DJL LMI instance-type guide (docs.djl.ai, "Instance Type Selection": a ~7B half-precision model,
# 14 GB of weights, on one 24 GB GPU; ~13-20B on 96 GB): below it the server has too little KV cache to
# batch requests. Every instance of the endpoint holds a whole copy; the count adds throughput, not memory.
SERVING_WEIGHT_BYTES = 2.0
SERVING_HEADROOM = 0.20
SERVING_CUDA_GB_PER_GPU = 1.0
MAX_SERVING_INSTANCES = 10


def serving_gb(parameter_count: float, gpus: int) -> float:
    """The GPU memory (GB, all the instance's GPUs together) serving the merged model needs."""
    weights = parameter_count * SERVING_WEIGHT_BYTES / GB
    return weights * (1 + SERVING_HEADROOM) + SERVING_CUDA_GB_PER_GPU * gpus


def serves(parameter_count: float, instance: InstanceType) -> bool:
    """Whether one instance of this type holds the model for serving."""
    return serving_gb(parameter_count, instance.gpus) <= instance.vram_gb


def serving_instances(parameter_count: float, instances: Sequence[InstanceType]) -> list[InstanceType]:
    """The instance types that can serve the model, smallest total VRAM first, then cheapest."""
    fitting = [i for i in instances if serves(parameter_count, i)]
    return sorted(fitting, key=lambda i: (i.vram_gb, i.price_per_hour_usd, i.name))


def serving_instance(
    parameter_count: float,
    instances: Sequence[InstanceType],
    *,
    requested: str | None,
    default: str | None,
) -> InstanceType:
    """The instance type a deployment runs on: the one requested (`ValidationFailed` on `instance_type`
    when unknown or too small, naming the smallest that fits), else the model's default when it fits,
    else the cheapest that fits."""
    by_name = {i.name: i for i in instances}
    fitting = serving_instances(parameter_count, instances)
    need = serving_gb(parameter_count, 1)
    if requested is not None:
        chosen = by_name.get(requested)
        if chosen is None:
            known = ", ".join(sorted(by_name)[:6])
            raise ValidationFailed.of(
                "instance_type",
                f"'{requested}' is not an instance type tunelab offers; some that are: {known}.",
            )
        if not serves(parameter_count, chosen):
            smallest = f" The smallest that fits is {fitting[0].name}." if fitting else ""
            raise ValidationFailed.of(
                "instance_type",
                f"{requested} has {chosen.vram_gb:g} GB of GPU memory; serving this model needs about "
                f"{serving_gb(parameter_count, chosen.gpus):.1f} GB.{smallest}",
            )
        return chosen
    if default is not None and default in by_name and serves(parameter_count, by_name[default]):
        return by_name[default]
    if not fitting:
        raise ValidationFailed.of(
            "instance_type",
            f"No instance type tunelab offers holds this model for serving (about {need:.1f} GB).",
        )
    return min(fitting, key=lambda i: (i.price_per_hour_usd, i.vram_gb, i.name))
