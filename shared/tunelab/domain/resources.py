"""VRAM, training-volume and instance advice for a SageMaker fine-tuning job.

The method (all figures in GB = 1e9 bytes, as the product guide counts):

VRAM
    weights     = parameters × bytes of the precision (fp32 4, fp16/bf16 2, int8 1, int4 0.5)
    gradients   = parameters × bytes × trainable fraction
    optimizer   = parameters × bytes × trainable fraction × (AdamW/Adam 2, 8-bit AdamW 1, Adafactor 1, SGD 1)
    i.e. weights + (gradients + optimizer) × fraction; the fraction is 1 for full fine-tuning and
    0.2 by default for LoRA. Quantised weights (int8/int4, QLoRA-style; LoRA only) keep their
    trainable state in 16 bits.
    activations = Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
    Models", eq. 1): per layer s·b·h·(34 + 5·a·s/h) bytes in 16 bits without recomputation. The
    5·a·s/h term is the attention-score matrix, which SDPA/FlashAttention (the trainer's attention)
    never stores, so 34·s·b·h per layer; with gradient checkpointing only each layer's input is kept
    (2·s·b·h per layer) plus one layer's full activations during its recomputation; it is on unless
    the request turns it off, as in the trainer (TRL's SFTConfig defaults it to True). fp32 doubles it.
    Hidden size h and layers L come from the parameter count: N ≈ 12·L·h² with L = h/128 (the shape of
    Llama-class models: 7B → h ≈ 4,210, L ≈ 33), so h = (128·N/12)^(1/3).
    with_buffer = total × 1.2 (20% for framework overhead, the logits and allocator fragmentation).

Storage
    base model  = parameters × 2 bytes (16-bit files; 4 bytes when training in fp32)
    checkpoints = base model × (1 + optimizer multiplier) each (AdamW 3×, 8-bit AdamW/Adafactor/SGD 2×: the
    weights plus the optimizer states, the product guide's 2–3×); kept full-size for LoRA too, as
    the merged model is saved at full size.
    recommended = total + 10% headroom, rounded up to the next 50 GB (45 → 50).

Instances
    An instance type fits when each of its GPUs holds its share of the model state plus its own
    micro-batch's activations: (state ÷ all GPUs of all instances + activations) × 1.2 ≤ VRAM per GPU,
    with state = weights + gradients + optimizer. Where one GPU holds the whole job (with_buffer ≤ its
    VRAM) plain data parallelism does; elsewhere the state must be sharded (FSDP / ZeRO-3), for LoRA
    and full fine-tuning alike. The smallest instance count (up to 8) at which some type fits is
    advised; types are listed fitting first, cheapest first. Types without bf16 are left out when bf16
    is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from tunelab.domain.catalog import BaseModelSpec, InstanceType
from tunelab.domain.errors import ErrorDetail, ValidationFailed

Precision = Literal["fp32", "fp16", "bf16", "int8", "int4"]
Optimizer = Literal["adamw", "adam", "adamw_8bit", "adafactor", "sgd"]
Method = Literal["lora", "full"]

GB = 1e9
BYTES_PER_PARAM: dict[Precision, float] = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0, "int4": 0.5}
# Optimizer states per trainable weight, in weights' worth: Adam/AdamW momentum + variance; 8-bit AdamW
# the same two states at half the size; Adafactor its factored second moment (an upper bound); SGD
# with momentum (plain SGD keeps none: an upper bound).
OPTIMIZER_MULTIPLIER: dict[Optimizer, float] = {
    "adamw": 2.0,
    "adam": 2.0,
    "adamw_8bit": 1.0,
    "adafactor": 1.0,
    "sgd": 1.0,
}
DEFAULT_LORA_FRACTION = 0.2
BUFFER = 1.2
HEAD_DIM = 128
# Bytes per token per layer per hidden unit (Korthikanti et al. 2022, without the attention scores).
ACTIVATION_BYTES = 34.0
CHECKPOINTED_ACTIVATION_BYTES = 2.0
STORAGE_HEADROOM = 1.1
STORAGE_STEP_GB = 50
MAX_INSTANCE_COUNT = 8


class ResourceEstimateRequest(BaseModel):
    """Body of `POST /v1/resource-estimates`: a catalog model or a bare parameter count."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    base_model_id: str | None = Field(default=None, min_length=1, max_length=200)
    parameter_count: float | None = Field(default=None, gt=0, le=1e13)
    precision: Precision = "bf16"
    optimizer: Optimizer = "adamw"
    method: Method = "lora"
    # Share of the parameters trained; LoRA only (default 0.2, the product guide's upper figure).
    trainable_fraction: float | None = Field(default=None, gt=0, le=1)
    dataset_bytes: float = Field(default=0, ge=0, le=1e14)
    checkpoints: int = Field(default=1, ge=0, le=100)
    sequence_length: int = Field(default=2048, ge=1, le=1_048_576)
    # Per-GPU (per-device) batch size.
    batch_size: int = Field(default=1, ge=1, le=4096)
    # The trainer's SFT configuration turns gradient checkpointing on unless told otherwise (TRL's
    # SFTConfig default); `sft_config.gradient_checkpointing: false` in the job means False here.
    gradient_checkpointing: bool = True

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
    model_config = ConfigDict(frozen=True, defer_build=True)
    weights: float
    gradients: float
    optimizer: float
    activations: float
    total: float
    with_buffer: float


class StorageGb(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)
    base_model: float
    checkpoints: float
    dataset: float
    total: float
    recommended: int


class InstanceAdvice(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)
    instance_type: str
    gpus: int
    vram_gb: float
    fits: bool
    price_per_hour_usd: float


class ResourceEstimate(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)
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


@dataclass(frozen=True)
class Requirements:
    """Raw (unrounded) figures in GB, and the rules they came from."""

    parameter_count: float
    method: Method
    fraction: float
    weights: float
    gradients: float
    optimizer: float
    activations: float
    hidden_size: float
    layers: float
    base_model: float
    checkpoint_each: float
    checkpoints: float
    dataset: float

    @property
    def state(self) -> float:
        return self.weights + self.gradients + self.optimizer

    @property
    def total(self) -> float:
        return self.state + self.activations

    @property
    def with_buffer(self) -> float:
        return self.total * BUFFER

    @property
    def storage_total(self) -> float:
        return self.base_model + self.checkpoints + self.dataset

    def per_gpu_need(self, total_gpus: int) -> float:
        """VRAM one GPU needs with the model state shared over `total_gpus`: its shard plus its activations.

        With one GPU (or a state small enough to replicate) this is with_buffer or less.
        """
        return (self.state / total_gpus + self.activations) * BUFFER


def model_shape(parameter_count: float) -> tuple[float, float]:
    """(hidden size, layers) of a Llama-shaped decoder with this many parameters: N = 12·L·h², L = h/128."""
    hidden = (HEAD_DIM * parameter_count / 12) ** (1 / 3)
    return hidden, hidden / HEAD_DIM


def activation_gb(
    parameter_count: float,
    *,
    sequence_length: int,
    batch_size: int,
    gradient_checkpointing: bool,
    precision: Precision = "bf16",
) -> float:
    """Activation memory of one GPU's micro-batch (Korthikanti et al. 2022, attention scores not stored)."""
    hidden, layers = model_shape(parameter_count)
    tokens = sequence_length * batch_size
    if gradient_checkpointing:
        per_token = hidden * (CHECKPOINTED_ACTIVATION_BYTES * layers + ACTIVATION_BYTES)
    else:
        per_token = hidden * layers * ACTIVATION_BYTES
    scale = 2.0 if precision == "fp32" else 1.0
    return tokens * per_token * scale / GB


def recommended_volume_gb(total_gb: float) -> int:
    """Total plus 10% headroom, rounded up to the next 50 GB: 45 → 50, 46 → 100 (50.6 rounds up)."""
    return max(
        STORAGE_STEP_GB,
        math.ceil(_round(total_gb * STORAGE_HEADROOM, "0.001") / STORAGE_STEP_GB) * STORAGE_STEP_GB,
    )


def storage_gb(
    *, base_model_gb: float, checkpoint_gb: float, checkpoints: int, dataset_gb: float
) -> StorageGb:
    """Training-volume figures: base model + checkpoints × each + dataset, and the advised size."""
    base, each, data = _round(base_model_gb), _round(checkpoint_gb), _round(dataset_gb)
    ckpts = _round(each * checkpoints)
    total = _round(base + ckpts + data)
    return StorageGb(
        base_model=base,
        checkpoints=ckpts,
        dataset=data,
        total=total,
        recommended=recommended_volume_gb(total),
    )


def requirements(
    parameter_count: float,
    *,
    precision: Precision = "bf16",
    optimizer: Optimizer = "adamw",
    method: Method = "lora",
    trainable_fraction: float | None = None,
    dataset_bytes: float = 0,
    checkpoints: int = 1,
    sequence_length: int = 2048,
    batch_size: int = 1,
    gradient_checkpointing: bool = True,
) -> Requirements:
    """The raw VRAM and storage needs of a job; raises `ValidationFailed` on contradictory input."""
    _check_combination(method, precision, trainable_fraction)
    fraction = 1.0 if method == "full" else (trainable_fraction or DEFAULT_LORA_FRACTION)
    weight_bytes = BYTES_PER_PARAM[precision]
    # Quantised base weights train 16-bit adapters: their gradients and states are 2 bytes each.
    state_bytes = 2.0 if precision in ("int8", "int4") else weight_bytes
    multiplier = OPTIMIZER_MULTIPLIER[optimizer]
    hidden, layers = model_shape(parameter_count)
    base_model = parameter_count * (4.0 if precision == "fp32" else 2.0) / GB
    checkpoint_each = base_model * (1 + multiplier)
    return Requirements(
        parameter_count=parameter_count,
        method=method,
        fraction=fraction,
        weights=parameter_count * weight_bytes / GB,
        gradients=parameter_count * state_bytes * fraction / GB,
        optimizer=parameter_count * state_bytes * fraction * multiplier / GB,
        activations=activation_gb(
            parameter_count,
            sequence_length=sequence_length,
            batch_size=batch_size,
            gradient_checkpointing=gradient_checkpointing,
            precision=precision,
        ),
        hidden_size=hidden,
        layers=layers,
        base_model=base_model,
        checkpoint_each=checkpoint_each,
        checkpoints=checkpoint_each * checkpoints,
        dataset=dataset_bytes / GB,
    )


def _check_combination(method: Method, precision: Precision, trainable_fraction: float | None) -> None:
    if method == "full" and trainable_fraction is not None and trainable_fraction != 1:
        raise ValidationFailed.of(
            "trainable_fraction",
            "Full fine-tuning trains every parameter; trainable_fraction applies to LoRA.",
        )
    if method == "full" and precision in ("int8", "int4"):
        raise ValidationFailed.of(
            "precision", f"{precision} weights cannot be fully fine-tuned; use LoRA or a 16-bit precision."
        )
    if trainable_fraction is not None and not 0 < trainable_fraction <= 1:
        raise ValidationFailed.of(
            "trainable_fraction", "The trainable fraction must be above 0 and at most 1."
        )


def _fits(req: Requirements, instance: InstanceType, count: int) -> bool:
    return req.per_gpu_need(instance.gpus * count) <= instance.vram_per_gpu_gb


def _plan(req: Requirements, candidates: Sequence[InstanceType]) -> int | None:
    """Smallest instance count at which some candidate fits; None when none does up to the maximum."""
    for count in range(1, MAX_INSTANCE_COUNT + 1):
        if any(_fits(req, i, count) for i in candidates):
            return count
    return None


def _resolve_parameter_count(request: ResourceEstimateRequest, catalog: ResourceCatalog) -> tuple[float, str]:
    if (request.base_model_id is None) == (request.parameter_count is None):
        raise ValidationFailed.of("base_model_id", "Give either base_model_id or parameter_count, not both.")
    if request.parameter_count is not None:
        return request.parameter_count, f"{request.parameter_count / 1e9:.3g}B parameters"
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
    return float(spec.parameter_count), f"{spec.name} ({spec.parameter_count / 1e9:.3g}B parameters)"


def estimate_resources(request: ResourceEstimateRequest, catalog: ResourceCatalog) -> ResourceEstimate:
    """VRAM, storage and instance advice for `request` (the method is in this module's docstring)."""
    parameter_count, label = _resolve_parameter_count(request, catalog)
    req = requirements(
        parameter_count,
        precision=request.precision,
        optimizer=request.optimizer,
        method=request.method,
        trainable_fraction=request.trainable_fraction,
        dataset_bytes=request.dataset_bytes,
        checkpoints=request.checkpoints,
        sequence_length=request.sequence_length,
        batch_size=request.batch_size,
        gradient_checkpointing=request.gradient_checkpointing,
    )
    weights, gradients, optimizer = _round(req.weights), _round(req.gradients), _round(req.optimizer)
    activations = _round(req.activations)
    total = _round(weights + gradients + optimizer + activations)
    vram = VramGb(
        weights=weights,
        gradients=gradients,
        optimizer=optimizer,
        activations=activations,
        total=total,
        with_buffer=_round(total * BUFFER),
    )
    storage = storage_gb(
        base_model_gb=req.base_model,
        checkpoint_gb=req.checkpoint_each,
        checkpoints=request.checkpoints,
        dataset_gb=req.dataset,
    )

    notes: list[str] = []
    candidates = list(catalog.instances)
    if request.precision == "bf16":
        without = sorted(i.name for i in candidates if not i.bf16)
        candidates = [i for i in candidates if i.bf16]
        if without:
            notes.append(f"Left out for lacking bf16 (choose fp16 to consider them): {', '.join(without)}.")
    count = _plan(req, candidates)
    advice = sorted(
        (
            InstanceAdvice(
                instance_type=i.name,
                gpus=i.gpus,
                vram_gb=_round(i.vram_gb),
                fits=count is not None and _fits(req, i, count),
                price_per_hour_usd=i.price_per_hour_usd,
            )
            for i in candidates
        ),
        key=lambda a: (not a.fits, a.price_per_hour_usd, a.instance_type),
    )

    fraction_text = (
        "every parameter trained" if req.method == "full" else f"{req.fraction:g} of the parameters trained"
    )
    notes.append(
        f"{label}, {request.precision}, {request.optimizer}, {req.method} ({fraction_text}): "
        f"VRAM = weights + (gradients + optimizer) × fraction + activations, plus a {BUFFER - 1:.0%} buffer. "
        "GB are 10^9 bytes."
    )
    notes.append(
        f"Activations: {request.sequence_length} tokens × batch {request.batch_size} per GPU over "
        f"~{req.layers:.0f} layers of width ~{req.hidden_size:,.0f} (derived from the parameter count), "
        + (
            "with gradient checkpointing (the trainer's default)."
            if request.gradient_checkpointing
            else "without gradient checkpointing; turning it on cuts them several-fold."
        )
    )
    notes.append(
        f"Storage: each checkpoint ≈ {1 + OPTIMIZER_MULTIPLIER[request.optimizer]:g}× the base model "
        "(weights + optimizer states); recommended = total + 10%, rounded up to the next 50 GB."
    )
    if count is None:
        notes.append(
            f"Nothing fits, even across {MAX_INSTANCE_COUNT} instances: activations alone need "
            f"{req.activations:.1f} GB per GPU. Lower batch_size or sequence_length, turn on gradient "
            "checkpointing, or use LoRA."
        )
    else:
        fitting = [i for i in candidates if _fits(req, i, count)]
        if all(req.with_buffer <= i.vram_per_gpu_gb for i in fitting):
            notes.append("One GPU holds the whole job: plain data-parallel training works on every fit.")
        else:
            notes.append(
                "Where one GPU cannot hold the whole job, fits means the weights, gradients and optimizer "
                "states are sharded across all GPUs (FSDP / ZeRO-3) and each GPU keeps its own activations."
            )
    if count is not None and count > 1:
        notes.append(
            f"No single instance holds this job: it needs {count} instances "
            "(distributed training over the network)."
        )
    return ResourceEstimate(
        vram_gb=vram, storage_gb=storage, instances=advice, instance_count=count, notes=notes
    )


def check_resources(
    spec: BaseModelSpec,
    instance: InstanceType,
    instance_count: int,
    volume_size_gb: float,
    *,
    method: Method,
    precision: Precision = "bf16",
    optimizer: Optimizer = "adamw",
    trainable_fraction: float | None = None,
    dataset_bytes: float = 0,
    checkpoints: int = 1,
    sequence_length: int = 2048,
    batch_size: int = 1,
    gradient_checkpointing: bool = True,
) -> list[str]:
    """Check a fine-tuning job's chosen resources; returns warnings the user acknowledges.

    Errors (`ValidationFailed`, the job could not start or would fail at once): bf16 on an instance
    without it; storage smaller than the base model. Warnings: too little VRAM by this module's rule
    (estimates are rough, the user may know better, e.g. a smaller batch), storage below the advice.
    """
    if instance_count < 1:
        raise ValidationFailed.of("resources.instance_count", "The instance count must be at least 1.")
    if precision == "bf16" and not instance.bf16:
        raise ValidationFailed.of(
            "resources.instance_type",
            f"{instance.name} ({instance.gpu_model}) does not support bf16; use fp16.",
        )
    if spec.parameter_count is None:
        raise ValueError(f"{spec.id}: resources apply to models with a known parameter count")
    req = requirements(
        float(spec.parameter_count),
        precision=precision,
        optimizer=optimizer,
        method=method,
        trainable_fraction=trainable_fraction,
        dataset_bytes=dataset_bytes,
        checkpoints=checkpoints,
        sequence_length=sequence_length,
        batch_size=batch_size,
        gradient_checkpointing=gradient_checkpointing,
    )
    warnings: list[str] = []
    # Instances with NVMe instance storage get no EBS volume: their storage is fixed.
    nvme = instance.local_storage_gb > 0
    storage, field = (
        (instance.local_storage_gb, "resources.instance_type")
        if nvme
        else (volume_size_gb, "resources.volume_size_gb")
    )
    base = _round(req.base_model)
    if storage < req.base_model:
        where = f"{instance.name}'s {storage:g} GB instance storage" if nvme else f"a {storage:g} GB volume"
        raise ValidationFailed.of(
            field, f"The base model alone needs {base:g} GB; it does not fit on {where}."
        )
    advised = storage_gb(
        base_model_gb=req.base_model,
        checkpoint_gb=req.checkpoint_each,
        checkpoints=checkpoints,
        dataset_gb=req.dataset,
    )
    if storage < advised.total:
        warnings.append(
            f"Storage of {storage:g} GB is less than the {advised.total:g} GB this job may write "
            f"(model, checkpoints, dataset); {advised.recommended} GB is advised."
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

    need = req.per_gpu_need(instance.gpus * instance_count)
    if need > instance.vram_per_gpu_gb:
        warnings.append(
            f"Each GPU of {instance_count} × {instance.name} has {instance.vram_per_gpu_gb:g} GB, "
            f"but this job needs about {_round(need):g} GB per GPU (buffer included): "
            "training may run out of memory. "
            "Use a larger instance, more instances, a smaller batch, gradient checkpointing or LoRA."
        )
    return warnings
