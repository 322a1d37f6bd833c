"""Predicted cost of a fine-tuning job, computed before anything starts.

Bedrock bills trained tokens: ``tokens per epoch × epochs`` at the model's price per 1,000 tokens.
SageMaker bills instance time: the hours are predicted from the trained tokens, the model size and
the instance's GPU throughput, then priced at ``hours × hourly price × instance count`` plus the
training volume (``GB × GB-month price × hours / 730`` per instance). Local training costs nothing.

``total_usd`` is the training cost plus one month of storage of the fine-tuned model (the api
example: 1.56 + 1.95 = 3.51). Deployment is billed by the hour while deployed and is not in the total.

Every dollar figure is rounded to cents (half up); hours to two decimals. The token counts come from
an estimator whose error bound (``token_error``) widens the range to ``low_usd``–``high_usd``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from tunelab.domain.catalog import BaseModelSpec, InstanceType
from tunelab.domain.errors import ValidationFailed

Method = Literal["lora", "full"]

# The token estimator's bound: the real count lies between 0.8× and 1.25× the estimate (a
# characters-per-token heuristic against the model's own tokenizer). The caller passes the
# estimator's own bound when it has one.
DEFAULT_TOKEN_ERROR: tuple[float, float] = (0.8, 1.25)

TOKENIZER_NOTE = (
    "Token counts are estimated; each model has its own tokenizer, so the final cost may be higher or lower."
)

# --- SageMaker training-time model -------------------------------------------------------------
#
# Training FLOPs per trained token (Kaplan et al. 2020, "Scaling Laws for Neural Language Models",
# section 2.1: C ≈ 6·N per token): the forward pass costs 2·N, the backward pass 4·N (2·N for the
# gradients of the activations, 2·N for the gradients of the weights). LoRA freezes the base weights,
# so their weight gradients are never computed: ≈ 4·N per token (the adapters' own share is < 1%).
FLOPS_PER_PARAM_PER_TOKEN: dict[Method, float] = {"full": 6.0, "lora": 4.0}
# Gradient checkpointing (on by default in the trainer: TRL's SFTConfig defaults it to True) runs each
# layer's forward pass again during the backward pass: another 2·N per token (8·N full, 6·N LoRA).
RECOMPUTE_FLOPS_PER_PARAM_PER_TOKEN = 2.0

# DoRA with dropout computes each adapted module's base output a second time (resources.py,
# dora_recomputed_weights): 2 FLOPs a weight forward and 2 for the gradient of its input, 2 more when
# gradient checkpointing recomputes the forward pass.
DORA_RECOMPUTE_FLOPS_PER_WEIGHT_PER_TOKEN = 4.0

# Model FLOPs utilisation: the share of the GPUs' peak dense 16-bit tensor throughput a Hugging Face
# Trainer fine-tuning run sustains. 0.35 is a middle value for single-node runs with SDPA attention.
MFU = 0.35
# Several instances talk over the network, not NVLink: each extra instance adds 85% of its throughput.
MULTI_INSTANCE_EFFICIENCY = 0.85
# How far the real compute time strays from the throughput model: 0.7× (MFU ≈ 0.5) to 1.5× (MFU ≈ 0.23).
THROUGHPUT_ERROR: tuple[float, float] = (0.7, 1.5)

# Fixed start-up: instance provisioning, pulling the training container, starting the trainer.
STARTUP_MINUTES = 5.0
# The base model's 16-bit weights are downloaded at the start and a full-size model is uploaded at the
# end; 100 MB/s each way (S3 / Hugging Face Hub from a training instance, conservative).
TRANSFER_BYTES_PER_SECOND = 100e6
STORED_BYTES_PER_PARAM = 2.0

HOURS_PER_MONTH = 730.0

# The evaluation after training generates answers with the base model and again with the fine-tuned one,
# a forward pass (2 FLOPs a parameter a token) for each token. Reading the prompts is compute-bound, at
# the MFU training sustains. Decoding is bound by memory bandwidth: a step reads every weight once for the
# whole batch of rows (the trainer answers 16 at a time), sustaining about 2 % of the GPU's peak for one
# row's token — for a 7B model on an A10G (70 TFLOPS here), 2 × 7e9 / (70e12 × 0.02) = 10 ms a step.
GENERATION_FLOPS_PER_PARAM_PER_TOKEN = 2.0
GENERATION_MFU = 0.02
EVALUATION_BATCH_ROWS = 16  # trainer/evaluation.py, BATCH_ROWS


@dataclass(frozen=True)
class GpuPeak:
    """Peak dense (no structured sparsity) 16-bit tensor-core throughput of one GPU.

    `verified` is False where the figure could not be read on `source` itself; `note` says how it was
    checked instead.
    """

    tflops: float
    source: str
    verified: bool = True
    note: str = ""


# Keyed by the normalised `InstanceType.gpu_model` (see `gpu_key`). BF16 where the GPU has it, else
# FP16 (T4, V100). NVIDIA's datasheets print the 2:4-sparsity figure (marked *) beside the dense one;
# where only the sparse one is printed, dense is half of it.
GPU_PEAK_TFLOPS: dict[str, GpuPeak] = {
    "A10G": GpuPeak(
        70.0,
        "https://www.baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference/",
        verified=False,
        note="NVIDIA publishes no A10G datasheet (AWS's variant of the A10, whose datasheet lists 125 dense "
        "BF16). The page says the A10G has less tensor compute than the A10; 70 TFLOPS is its comparison "
        "figure, not read through the search tool. The throughput range (0.7-1.5x) covers the doubt.",
    ),
    "A10": GpuPeak(
        125.0,
        "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a10/pdf/datasheet-new/nvidia-a10-datasheet.pdf",
        verified=False,
        note="BF16 125 | 250* as reproduced in public GPU tables; the PDF itself was not read.",
    ),
    "L4": GpuPeak(
        121.0,
        "https://resources.nvidia.com/en-us-data-center-overview/l4-gpu-datasheet",
        verified=False,
        note="The datasheet prints BF16 242* TFLOPS (sparsity): 121 dense, as public spec tables list it.",
    ),
    "L40S": GpuPeak(
        362.05,
        "https://www.nvidia.com/en-us/data-center/l40s/",
        verified=False,
        note="BFLOAT16 Tensor Core 362.05 | 733* as in NVIDIA's L40/L40S table, read on a reseller's copy.",
    ),
    # A100 40 GB and 80 GB (SXM4): BF16 312 | 624*.
    "A100": GpuPeak(
        312.0,
        "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf",
    ),
    # H100 SXM: BF16 1,979* TFLOPS with sparsity -> 989.5 dense.
    "H100": GpuPeak(989.5, "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"),
    "H200": GpuPeak(
        989.5,
        "https://www.nvidia.com/en-us/data-center/h200/",
        verified=False,
        note="Same GH100 compute as the H100 SXM (BF16 1,979* with sparsity); the page was not read.",
    ),
    "T4": GpuPeak(
        65.0,
        "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/tesla-t4/t4-tensor-core-datasheet-951643.pdf",
        note="Mixed precision (FP16/FP32) 65 TFLOPS; no BF16, no sparsity.",
    ),
    "V100": GpuPeak(
        125.0,
        "https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf",
        verified=False,
        note="SXM2 tensor performance 125 TFLOPS (an earlier datasheet printed 120); no BF16.",
    ),
}


def gpu_key(gpu_model: str) -> str:
    """Normalise a catalog GPU name to its model: "NVIDIA A100-SXM4-80GB" → "A100", "a10g" → "A10G"."""
    words = [w for w in re.split(r"[^A-Z0-9]+", gpu_model.upper()) if w and w not in ("NVIDIA", "TESLA")]
    return words[0] if words else ""


def gpu_peak(instance: InstanceType) -> GpuPeak:
    """The GPU's peak dense 16-bit throughput; a catalog instance with an unknown GPU is a catalog bug."""
    try:
        return GPU_PEAK_TFLOPS[gpu_key(instance.gpu_model)]
    except KeyError:
        raise LookupError(
            f"{instance.name}: no peak FLOP/s known for GPU '{instance.gpu_model}'; add it to GPU_PEAK_TFLOPS"
        ) from None


# --- results -----------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)  # built on first use


class TrainingCost(_Out):
    tokens_per_epoch: int
    epochs: int
    trained_tokens: int
    cost_usd: float
    low_usd: float
    high_usd: float
    # SageMaker only: the predicted duration; null for Bedrock (billed per token) and local.
    hours: float | None
    # SageMaker only: the part of `hours` the evaluation after training takes (null: none runs).
    evaluation_hours: float | None = None


class CostEstimate(_Out):
    currency: Literal["USD"] = "USD"
    training: TrainingCost
    storage_per_month_usd: float
    deployment_per_hour_usd: float
    # Training plus one month of storage; deployment is hourly and not included.
    total_usd: float
    notes: list[str]


@dataclass(frozen=True)
class EvaluationRun:
    """The evaluation after training: `rows` validation rows answered by the base and the fine-tuned
    model, each reading about `prompt_tokens` and writing at most `answer_tokens`."""

    rows: int
    prompt_tokens: float
    answer_tokens: float


def evaluation_hours(*, parameter_count: float, evaluation: EvaluationRun, instance: InstanceType) -> float:
    """How long generating the evaluation's answers takes on one GPU of `instance`, both models: the
    prompts read at training's MFU, then `answer_tokens` decoding steps a batch of rows."""
    peak = gpu_peak(instance).tflops * 1e12
    per_token = GENERATION_FLOPS_PER_PARAM_PER_TOKEN * parameter_count
    prompts = 2 * evaluation.rows * evaluation.prompt_tokens * per_token / (peak * MFU)
    batches = math.ceil(evaluation.rows / EVALUATION_BATCH_ROWS)
    decoding = 2 * batches * evaluation.answer_tokens * per_token / (peak * GENERATION_MFU)
    return (prompts + decoding) / 3600


@dataclass(frozen=True)
class TrainingHours:
    """Predicted SageMaker training duration, with the range from tokens and throughput."""

    hours: float
    low: float
    high: float
    overhead_hours: float


@dataclass(frozen=True)
class SageMakerRun:
    """The resources of a SageMaker training job, as the cost model needs them."""

    instance: InstanceType
    instance_count: int
    volume_size_gb: float
    volume_per_gb_month_usd: float
    method: Method
    gradient_checkpointing: bool = True
    # Weights DoRA runs twice a token (`resources.dora_recomputed_weights`); 0 without DoRA's recompute.
    dora_recomputed_weights: float = 0.0

    @classmethod
    def from_catalog(
        cls,
        catalog: _InstanceSource,
        *,
        instance_type: str,
        instance_count: int,
        volume_size_gb: float,
        method: Method,
        gradient_checkpointing: bool = True,
        dora_recomputed_weights: float = 0.0,
    ) -> SageMakerRun:
        """Resolve the instance type in the catalog; an unknown one is a validation error of the request."""
        instance = catalog.find_instance(instance_type)
        if instance is None:
            raise ValidationFailed.of(
                "resources.instance_type",
                f"'{instance_type}' is not a SageMaker instance type tunelab offers.",
            )
        return cls(
            instance=instance,
            instance_count=instance_count,
            volume_size_gb=volume_size_gb,
            volume_per_gb_month_usd=catalog.volume_per_gb_month_usd,
            method=method,
            gradient_checkpointing=gradient_checkpointing,
            dora_recomputed_weights=dora_recomputed_weights,
        )


class _InstanceSource(Protocol):
    volume_per_gb_month_usd: float

    def find_instance(self, name: str) -> InstanceType | None: ...


# --- arithmetic --------------------------------------------------------------------------------


def _half_up(value: float, places: str) -> float:
    # Snap away binary noise first (1001 / 1000 × 5 is 5.004999…, meant 5.005), then round half up.
    exact = Decimal(repr(value)).quantize(Decimal("1e-9"), rounding=ROUND_HALF_UP)
    return float(exact.quantize(Decimal(places), rounding=ROUND_HALF_UP))


def usd(value: float) -> float:
    """Round to cents, half up (1.325 → 1.33), as the user sees it."""
    return _half_up(value, "0.01")


def _hours(value: float) -> float:
    return _half_up(value, "0.01")


def instance_hourly_usd(
    instance: InstanceType, instance_count: int, volume_size_gb: float, volume_per_gb_month_usd: float
) -> float:
    """What `instance_count` training instances cost per hour, with their volumes (unrounded)."""
    # Instances with NVMe instance storage (ml.g5, ml.p4d, ...) get no EBS volume: nothing to bill.
    volume_gb = 0.0 if instance.local_storage_gb > 0 else volume_size_gb
    return instance_count * (
        instance.price_per_hour_usd + volume_gb * volume_per_gb_month_usd / HOURS_PER_MONTH
    )


def training_hours(
    *,
    parameter_count: float,
    trained_tokens: int,
    instance: InstanceType,
    instance_count: int,
    method: Method,
    gradient_checkpointing: bool = True,
    dora_recomputed_weights: float = 0.0,
    token_error: tuple[float, float] = DEFAULT_TOKEN_ERROR,
) -> TrainingHours:
    """Predict a SageMaker job's duration from a throughput model.

    compute = k·N·tokens / (peak × GPUs × MFU × instance efficiency), k = 6 (full) or 4 (LoRA),
    plus 2 with gradient checkpointing (the recomputed forward pass); DoRA with dropout adds
    (4, or 6 with checkpointing) × the weights it runs twice;
    overhead = 5 min start-up + the 16-bit model downloaded and a full-size model uploaded at 100 MB/s.
    The range scales the compute part by the token bound times the throughput bound (0.7–1.5).
    """
    peak_flops = gpu_peak(instance).tflops * 1e12
    instances_equivalent = 1 + (instance_count - 1) * MULTI_INSTANCE_EFFICIENCY
    flops_per_second = peak_flops * instance.gpus * instances_equivalent * MFU
    per_token = FLOPS_PER_PARAM_PER_TOKEN[method] + (
        RECOMPUTE_FLOPS_PER_PARAM_PER_TOKEN if gradient_checkpointing else 0.0
    )
    dora = dora_recomputed_weights * (
        DORA_RECOMPUTE_FLOPS_PER_WEIGHT_PER_TOKEN
        + (RECOMPUTE_FLOPS_PER_PARAM_PER_TOKEN if gradient_checkpointing else 0.0)
    )
    compute_hours = (per_token * parameter_count + dora) * trained_tokens / flops_per_second / 3600
    model_bytes = parameter_count * STORED_BYTES_PER_PARAM
    overhead_hours = (STARTUP_MINUTES * 60 + 2 * model_bytes / TRANSFER_BYTES_PER_SECOND) / 3600
    low_factor = token_error[0] * THROUGHPUT_ERROR[0]
    high_factor = token_error[1] * THROUGHPUT_ERROR[1]
    return TrainingHours(
        hours=overhead_hours + compute_hours,
        low=overhead_hours + compute_hours * low_factor,
        high=overhead_hours + compute_hours * high_factor,
        overhead_hours=overhead_hours,
    )


def _check_inputs(tokens_per_epoch: int, epochs: int, token_error: tuple[float, float]) -> None:
    if tokens_per_epoch < 0:
        raise ValidationFailed.of("tokens_per_epoch", "The token count cannot be negative.")
    if epochs < 1:
        raise ValidationFailed.of("hyperparameters.epochs", "Epochs must be at least 1.")
    low, high = token_error
    if not 0 < low <= 1 <= high:
        # The bound comes from code, not from the user.
        raise ValueError(f"token_error must satisfy 0 < low <= 1 <= high, got {token_error}")


def estimate_cost(
    spec: BaseModelSpec,
    *,
    region: str | None = None,
    tokens_per_epoch: int,
    epochs: int,
    token_error: tuple[float, float] = DEFAULT_TOKEN_ERROR,
    sagemaker: SageMakerRun | None = None,
    evaluation: EvaluationRun | None = None,
) -> CostEstimate:
    """The predicted cost of fine-tuning `spec` on `tokens_per_epoch` tokens for `epochs` epochs.

    `sagemaker` carries the instance, count, volume and method, and is required exactly for
    SageMaker models. Raises `ValidationFailed` on negative tokens, epochs < 1, or missing/extra
    resources. `region` is where the job runs: the model's prices there (`Pricing.in_region`).
    `evaluation`: the evaluation after training, where one runs (its time is billed with the job's).
    """
    _check_inputs(tokens_per_epoch, epochs, token_error)
    trained_tokens = tokens_per_epoch * epochs
    pricing = spec.pricing.in_region(region)
    low_factor, high_factor = token_error
    notes: list[str] = []
    hours: float | None = None
    eval_hours: float | None = None

    billing = spec.traits.billing
    if billing == "instance_hours":
        if sagemaker is None:
            raise ValidationFailed.of(
                "resources", "SageMaker models need resources: instance type, count, volume."
            )
        run = sagemaker
        # The catalog guarantees it for SageMaker models.
        parameter_count = float(spec.parameter_count or 0)
        if run.instance_count < 1:
            raise ValidationFailed.of("resources.instance_count", "The instance count must be at least 1.")
        if run.volume_size_gb < 0:
            raise ValidationFailed.of("resources.volume_size_gb", "The volume size cannot be negative.")
        predicted = training_hours(
            parameter_count=parameter_count,
            trained_tokens=trained_tokens,
            instance=run.instance,
            instance_count=run.instance_count,
            method=run.method,
            gradient_checkpointing=run.gradient_checkpointing,
            dora_recomputed_weights=run.dora_recomputed_weights,
            token_error=token_error,
        )
        hourly = instance_hourly_usd(
            run.instance, run.instance_count, run.volume_size_gb, run.volume_per_gb_month_usd
        )
        extra = 0.0
        if evaluation is not None:
            extra = evaluation_hours(
                parameter_count=parameter_count, evaluation=evaluation, instance=run.instance
            )
            eval_hours = _hours(extra)
        cost = hourly * (predicted.hours + extra)
        low, high = hourly * (predicted.low + extra), hourly * (predicted.high + extra)
        hours = _hours(predicted.hours + extra)
        notes.append(TOKENIZER_NOTE)
        notes.append(
            f"Training time is predicted from the model size ({parameter_count / 1e9:.3g}B parameters), "
            f"the trained tokens and the throughput of {run.instance_count} × {run.instance.name} "
            f"({run.instance.gpus} × {run.instance.gpu_model}, assuming {MFU:.0%} of peak) for "
            f"{'LoRA' if run.method == 'lora' else 'full fine-tuning'}"
            f"{' with gradient checkpointing' if run.gradient_checkpointing else ''}"
            f"{' (DoRA runs its adapted layers twice with dropout)' if run.dora_recomputed_weights else ''}"
            ", plus about "
            f"{predicted.overhead_hours * 60:.0f} minutes to start and to move the model; the real duration "
            "may differ."
        )
        if evaluation is not None:
            notes.append(
                f"Evaluation after training: the base and the fine-tuned model answer {evaluation.rows} "
                f"validation rows, about {max(extra * 60, 0.1):.1f} minutes billed with the job "
                "(optional_hyperparameters.evaluation_config turns it off or sizes it)."
            )
        if run.instance.local_storage_gb > 0:
            notes.append(
                f"{run.instance.name} trains on its own {run.instance.local_storage_gb:g} GB NVMe storage; "
                "no separate volume is billed."
            )
    elif billing == "per_token":
        if sagemaker is not None:
            raise ValidationFailed.of("resources", "Resources apply to SageMaker models only.")
        cost = trained_tokens / 1000 * pricing.training_per_1k_tokens_usd
        low, high = cost * low_factor, cost * high_factor
        notes.append(TOKENIZER_NOTE)
    else:
        if sagemaker is not None:
            raise ValidationFailed.of("resources", "Resources apply to SageMaker models only.")
        cost = low = high = 0.0
        notes.append("Local training runs on this machine: there are no cloud charges.")
        if evaluation is not None:
            notes.append(
                f"After training, the base and the fine-tuned model answer {evaluation.rows} validation "
                f"rows (up to {evaluation.answer_tokens:.0f} tokens each) to compare them; on a CPU that "
                "takes a while too (optional_hyperparameters.evaluation_config turns it off or sizes it)."
            )

    storage = usd(pricing.storage_per_month_usd)
    training = TrainingCost(
        tokens_per_epoch=tokens_per_epoch,
        epochs=epochs,
        trained_tokens=trained_tokens,
        cost_usd=usd(cost),
        low_usd=usd(low),
        high_usd=usd(high),
        hours=hours,
        evaluation_hours=eval_hours,
    )
    if billing != "none":
        notes.append(
            f"The total is training plus one month of storage; a deployed model costs "
            f"${usd(pricing.deployment_per_hour_usd):.2f} per hour on top. "
            f"Prices{f' in {region}' if region and spec.traits.regional else ''} as of "
            f"{pricing.as_of.isoformat()}."
        )
    return CostEstimate(
        training=training,
        storage_per_month_usd=storage,
        deployment_per_hour_usd=usd(pricing.deployment_per_hour_usd),
        # The sum of the figures shown, so the user's own addition agrees.
        total_usd=usd(training.cost_usd + storage),
        notes=notes,
    )


def remaining_cost(predicted: CostEstimate, *, done_steps: int, total_steps: int | None) -> CostEstimate:
    """What resuming a job from its checkpoint at `done_steps` of `total_steps` would cost: the training
    prediction (cost, range, tokens, hours) scaled by the share of steps left, `(total - done) / total`,
    plus the same month of storage. Steps are what the trainer counts (its checkpoint's `global_step`
    of `max_steps`): a step trains the same number of rows at any point of the run, so the remaining
    steps' share of the price is their share of the steps. Without a step count the whole prediction."""
    if not total_steps or total_steps <= 0:
        return predicted.model_copy(
            update={
                "notes": [
                    *predicted.notes,
                    "The checkpoint does not say how many steps the run has: the whole prediction is shown.",
                ]
            }
        )
    left = max(total_steps - done_steps, 0) / total_steps
    training = predicted.training
    # The evaluation after training runs whole whatever the steps left: only the rest is scaled.
    evaluation = (
        min(training.evaluation_hours / training.hours, 1.0)
        if training.hours and training.evaluation_hours
        else 0.0
    )
    share = evaluation + (1 - evaluation) * left
    scaled = training.model_copy(
        update={
            "trained_tokens": round(training.trained_tokens * left),
            "cost_usd": usd(training.cost_usd * share),
            "low_usd": usd(training.low_usd * share),
            "high_usd": usd(training.high_usd * share),
            "hours": _hours(training.hours * share) if training.hours is not None else None,
        }
    )
    note = (
        f"Resuming trains the remaining {total_steps - min(done_steps, total_steps)} of {total_steps} steps: "
        f"{left:.0%} of the predicted training cost."
    )
    return predicted.model_copy(
        update={
            "training": scaled,
            "total_usd": usd(scaled.cost_usd + predicted.storage_per_month_usd),
            "notes": [note, *predicted.notes],
        }
    )
