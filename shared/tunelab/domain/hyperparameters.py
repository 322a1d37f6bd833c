"""Hyperparameters: the request, the base model's spec, and the resolved values that are stored and shown.

Two kinds of input:

* `hyperparameters` — fundamental (`epochs`, `learning_rate`) and advanced (`batch_size`,
  `warmup_steps`, `early_stopping{patience, threshold}`), checked against the base model's
  `HyperparameterSpec`: what the model does not support is refused, what is out of range is
  refused with the allowed range, and every omitted value takes the model's default.
* `optional_hyperparameters` — sagemaker and local models only: a closed JSON schema
  (LoRA and DoRA, merging adapters, logging/evaluation, mixed precision, attention, the scheduler,
  weight decay, clipping, sequence length, packing, checkpointing, NEFTune, seed, saving) completed with
  defaults. Keys that would override a fundamental or advanced hyperparameter are refused at
  any depth, naming where to set them instead.

Every problem is an `ErrorDetail` with the field path the user wrote (`hyperparameters.epochs`,
`optional_hyperparameters.sft_config.logging_steps`); all problems of one request are raised
together in one `ValidationFailed`.

Decisions (the user sees them in the resolved values):

* Early stopping. Where the provider always applies its early stopping (Bedrock: Cohere
  Command applies `earlyStoppingPatience`/`earlyStoppingThreshold` whenever it has validation
  data, its own split included), it is on with the model's defaults unless the user sets other
  values. The trainer (sagemaker, local) stops early only when the request has
  `early_stopping` (`{}` is enough: the defaults fill it). Without validation data early
  stopping is refused, and is `null` in the resolved values.
* Optional defaults: `use_lora` false (full fine-tuning), except for models whose catalog entry says
  `default_use_lora` (a full fine-tune of their default request does not fit their default instance:
  tunelab's memory model): there LoRA unless `use_lora` is false, and `merge_adapters` true unless
  the request says otherwise (so `lora_config` alone is accepted there, while elsewhere it needs
  `use_lora`); with `use_lora`, `lora_config` is
  `r` 8, `lora_alpha` 8, `lora_dropout` 0.0, `target_modules` null (= peft's default for the
  architecture, e.g. `q_proj`/`v_proj` for Llama and Qwen; `"all-linear"` is accepted),
  `fan_in_fan_out` false, `bias` "none"; `merge_adapters` false; `logging_strategy` "steps"
  every 10 steps; `eval_strategy` follows logging when there is validation data (every
  "epoch" when logging is "no", so the validation data is used), else "no"; `eval_steps` =
  `logging_steps`; `gradient_accumulation_steps` 1; `use_cache` false; `lr_scheduler_type` linear,
  `weight_decay` 0, `max_grad_norm` 1, `max_length` null (the model's context, at most 2,048 tokens),
  `packing` false, `gradient_checkpointing` on GPUs only, `neftune_noise_alpha` null (off), `seed` 42,
  `save_strategy` epoch (with early stopping: at each evaluation, as the best checkpoint is loaded at
  the end), `save_total_limit` 2; LoRA's `use_rslora` and `use_dora` false. `sft_config.max_length`
  and `sft_config.seed` reach the trainer as its own `max_length` and `seed`.
* Attention: `flash_attention_2` is the default on SageMaker (the product's default); it trains
  in bf16, so it is refused, default or not, on GPUs without bf16 (the message says what to
  set instead). The local runtime trains on the CPU, where flash attention cannot run: its
  default is `sdpa` and `flash_attention_2` is refused there.
* A `null` value in the optional JSON means "the default".
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal, Self, cast, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from tunelab.domain.catalog import BaseModelSpec, FloatRange, InstanceType, IntRange
from tunelab.domain.errors import ErrorDetail, ValidationFailed

HP = "hyperparameters"
OPT = "optional_hyperparameters"
# CreateTrainingJob's HyperParameters: at most 100 entries, each value at most 2,500 characters
# (botocore's sagemaker service model, shape HyperParameterValue).
SAGEMAKER_VALUE_MAX = 2500
DEFAULT_SEED = 42
# Checkpoints the trainer keeps unless sft_config.save_total_limit says otherwise.
DEFAULT_SAVE_TOTAL_LIMIT = 2

# --------------------------------------------------------------------------------------------
# Request models (the API's `hyperparameters` object)
# --------------------------------------------------------------------------------------------


def _refuse_bool(value: Any) -> Any:
    # pydantic would read `true` as 1; a boolean where a number belongs is a mistake.
    if isinstance(value, bool):
        raise PydanticCustomError("number_type", "Input should be a number, not true or false")
    return value


_Int = Annotated[int, BeforeValidator(_refuse_bool)]
_Float = Annotated[float, BeforeValidator(_refuse_bool)]

_HP_KEYS = ("epochs", "learning_rate", "batch_size", "warmup_steps", "early_stopping")
_ES_KEYS = ("patience", "threshold")


def _unknown_keys_error(data: Any, accepted: Iterable[str], what: str) -> None:
    if not isinstance(data, Mapping):
        return
    accepted = list(accepted)
    unknown = [str(k) for k in data if k not in accepted]
    if unknown:
        raise PydanticCustomError(
            "unknown_key",
            "{problems}",
            {"problems": " ".join(_unknown_key(k, accepted, what) for k in unknown)},
        )


class EarlyStoppingIn(BaseModel):
    """Early stopping as requested; an omitted value takes the model's default."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    patience: _Int | None = Field(None, description="Evaluations without improvement before training stops.")
    threshold: _Float | None = Field(
        None, description="Smallest decrease of the validation loss that counts as an improvement."
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        _unknown_keys_error(data, _ES_KEYS, "early_stopping")
        return data


class HyperparametersIn(BaseModel):
    """The request's hyperparameters; every omitted value takes the base model's default."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    epochs: _Int | None = Field(None, description="Passes over the training data (fundamental).")
    learning_rate: _Float | None = Field(None, description="Optimizer step size (fundamental).")
    batch_size: _Int | None = Field(None, description="Examples per device per step (advanced).")
    warmup_steps: _Int | None = Field(None, description="Steps of learning-rate warmup (advanced).")
    early_stopping: EarlyStoppingIn | None = Field(
        None, description="Stop when the validation loss stops improving (advanced; needs validation data)."
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        _unknown_keys_error(data, _HP_KEYS, "hyperparameters")
        return data


OptionalHyperparametersIn = Annotated[
    dict[str, Any] | str | None,
    Field(
        description=(
            "sagemaker and local models only: a JSON object (or the JSON text of one) with use_lora, "
            "lora_config, merge_adapters, sft_config, model_init_config and evaluation_config; omitted "
            "keys take defaults."
        )
    ),
]

# --------------------------------------------------------------------------------------------
# Resolved values (stored on the model record and shown by the API)
# --------------------------------------------------------------------------------------------


class _Resolved(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class ResolvedEarlyStopping(_Resolved):
    patience: int
    threshold: float


class ResolvedHyperparameters(_Resolved):
    """Every value the job runs with; `None` = the model does not support it (or early stopping is off)."""

    epochs: int
    learning_rate: float
    batch_size: int | None = None
    warmup_steps: int | None = None
    early_stopping: ResolvedEarlyStopping | None = None


AttnImplementation = Literal["eager", "sdpa", "flash_attention_2"]
Strategy = Literal["steps", "epoch", "no"]
LoraBias = Literal["none", "all", "lora_only"]


class ResolvedLoraConfig(_Resolved):
    r: int = 8
    lora_alpha: int = 8
    lora_dropout: float = 0.0
    # None: peft's default modules for the architecture; "all-linear": every linear layer.
    target_modules: list[str] | Literal["all-linear"] | None = None
    fan_in_fan_out: bool = False
    bias: LoraBias = "none"
    # Rank-stabilised scaling (lora_alpha / sqrt(r) instead of lora_alpha / r).
    use_rslora: bool = False
    # Weight-decomposed LoRA: a trained magnitude per output feature on top of the low-rank update.
    use_dora: bool = False


# transformers' SchedulerType values that run without lr_scheduler_kwargs (cosine_with_min_lr and
# warmup_stable_decay need some; reduce_lr_on_plateau needs an evaluation every epoch; greedy is a plugin's).
LrScheduler = Literal[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
]
LR_SCHEDULERS: tuple[str, ...] = get_args(LrScheduler)
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit
MIN_MAX_LENGTH = 16


class ResolvedSftConfig(_Resolved):
    """The trainer's SFT options. Defaults on the later fields keep records stored before them readable."""

    logging_strategy: Strategy
    logging_steps: int | None
    eval_strategy: Strategy
    eval_steps: int | None
    fp16: bool
    bf16: bool
    gradient_accumulation_steps: int
    lr_scheduler_type: LrScheduler = "linear"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # Tokens a row may have (longer rows are left out, never cut); None: the model's context, at most 2,048.
    max_length: int | None = None
    packing: bool = False
    # None (records stored before it was an option): the trainer's default, on for GPUs, off on the CPU.
    gradient_checkpointing: bool | None = None
    neftune_noise_alpha: float | None = None
    seed: int = DEFAULT_SEED
    save_strategy: Strategy = "epoch"
    save_steps: int | None = None
    save_total_limit: int = DEFAULT_SAVE_TOTAL_LIMIT


class ResolvedModelInitConfig(_Resolved):
    attn_implementation: AttnImplementation
    use_cache: bool


# The trainer's evaluation after training (`trainer/evaluation.py`, `domain.evaluation`).
DEFAULT_EVALUATION_ROWS = 100
MAX_EVALUATION_ROWS = 1000
MAX_EVALUATION_NEW_TOKENS = 1024
DEFAULT_EVALUATION_SAMPLES = 20
MAX_EVALUATION_SAMPLES = 100


class ResolvedEvaluationConfig(_Resolved):
    """The evaluation after training: the base and the fine-tuned model answer up to `max_rows`
    validation rows. `enabled` is false without validation data (nothing to evaluate on)."""

    enabled: bool = True
    max_rows: int = DEFAULT_EVALUATION_ROWS
    # None: the longest expected completion among the evaluated rows plus 16 tokens, at most 512
    # (`domain.evaluation.DERIVED_*`).
    max_new_tokens: int | None = None
    samples: int = DEFAULT_EVALUATION_SAMPLES


class ResolvedOptionalHyperparameters(_Resolved):
    use_lora: bool
    lora_config: ResolvedLoraConfig | None
    merge_adapters: bool
    sft_config: ResolvedSftConfig
    model_init_config: ResolvedModelInitConfig
    # Records stored before evaluation existed read as its default.
    evaluation_config: ResolvedEvaluationConfig = Field(default_factory=ResolvedEvaluationConfig)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.lora_config is not None) != self.use_lora:
            raise ValueError("lora_config is set exactly when use_lora is true")
        return self


# --------------------------------------------------------------------------------------------
# Hardware the job trains on (for bf16 and flash attention)
# --------------------------------------------------------------------------------------------

HardwareKind = Literal["gpu_bf16", "gpu_no_bf16", "cpu"]


class Hardware(_Resolved):
    """What the job trains on, as far as precision and attention care."""

    kind: HardwareKind
    description: str

    @classmethod
    def of_instance(cls, instance: InstanceType) -> Hardware:
        return cls(
            kind="gpu_bf16" if instance.bf16 else "gpu_no_bf16",
            description=f"the {instance.gpu_model} GPUs of {instance.name}",
        )

    @classmethod
    def cpu(cls, description: str = "the local runtime's CPU") -> Hardware:
        return cls(kind="cpu", description=description)


# --------------------------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------------------------


def plain_number(value: float) -> str:
    """A number as plain decimal text: 5e-06 -> "0.000005", 10.0 -> "10" (for messages and providers)."""
    if isinstance(value, int) or (math.isfinite(value) and value == int(value) and abs(value) < 1e15):
        return str(int(value))
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return plain_number(value)
    if value is None:
        return "null"
    text = json.dumps(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 40 else text[:37] + "…"


def _unknown_key(key: str, accepted: list[str], where: str) -> str:
    # Another spelling of one of ours (num_train_epochs, epochCount) points at ours.
    owner = _RESERVED.get(_norm(key))
    close = [owner[1].rsplit(".", 1)[1]] if owner and owner[1].rsplit(".", 1)[1] in accepted else []
    close = close or difflib.get_close_matches(key, accepted, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"Unknown key '{key}' in {where}{hint}; accepted: {', '.join(accepted)}."


def _failed(details: list[ErrorDetail]) -> ValidationFailed:
    if len(details) == 1:
        return ValidationFailed(details[0].message, details)
    shown = " ".join(d.message for d in details[:3])
    more = f" (and {len(details) - 3} more; see details)" if len(details) > 3 else ""
    return ValidationFailed(f"{len(details)} problems with the hyperparameters: {shown}{more}", details)


# --------------------------------------------------------------------------------------------
# Fundamental and advanced hyperparameters
# --------------------------------------------------------------------------------------------


def _range_text(spec: IntRange | FloatRange) -> str:
    if spec.min == spec.max:
        return f"must be {plain_number(spec.min)}"
    return f"must be between {plain_number(spec.min)} and {plain_number(spec.max)}"


def _in_range(
    value: float | None,
    spec: IntRange | FloatRange,
    path: str,
    *,
    model: BaseModelSpec,
    errors: list[ErrorDetail],
) -> Any:
    label = path.rsplit(".", 1)[-1]
    if value is None:
        return spec.default
    if not spec.min <= value <= spec.max:
        errors.append(
            ErrorDetail(
                field=f"{HP}.{path}",
                message=f"{label} {_range_text(spec)} for {model.name} (got {plain_number(value)}).",
            )
        )
        return spec.default
    return value


def _parse_hyperparameters(
    request: BaseModel | Mapping[str, Any] | None, errors: list[ErrorDetail]
) -> HyperparametersIn:
    if request is None:
        return HyperparametersIn()
    if isinstance(request, HyperparametersIn):
        return request
    if isinstance(request, BaseModel):
        # Another request model of the same shape (an API contract's own): read it as its JSON.
        request = request.model_dump(exclude_none=True)
    if not isinstance(request, Mapping):
        errors.append(
            ErrorDetail(field=HP, message='hyperparameters must be a JSON object, e.g. {"epochs": 3}.')
        )
        return HyperparametersIn()
    data = dict(request)
    for key in [k for k in data if k not in _HP_KEYS]:
        errors.append(ErrorDetail(field=f"{HP}.{key}", message=_unknown_key(str(key), list(_HP_KEYS), HP)))
        del data[key]
    early = data.get("early_stopping")
    if isinstance(early, Mapping):
        early = dict(early)
        for key in [k for k in early if k not in _ES_KEYS]:
            errors.append(
                ErrorDetail(
                    field=f"{HP}.early_stopping.{key}",
                    message=_unknown_key(str(key), list(_ES_KEYS), "early_stopping"),
                )
            )
            del early[key]
        data["early_stopping"] = early
    try:
        return HyperparametersIn.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            field = f"{HP}.{loc}" if loc else HP
            prefix = f"{err['loc'][-1]}: " if err["loc"] and err["type"] != "unknown_key" else ""
            errors.append(ErrorDetail(field=field, message=f"{prefix}{err['msg']}."))
        return HyperparametersIn()


def has_validation_data(validation_mode: Literal["split", "dataset", "none"], spec: BaseModelSpec) -> bool:
    """Whether the job will have validation data: the user's choice, or a provider that always splits.

    A provider that splits off validation rows itself (the spec's `eval_percentage`, Bedrock's
    `evalPercentage`) holds rows back even when the user chose no validation.
    """
    return validation_mode != "none" or spec.hyperparameters.eval_percentage is not None


def early_stopping_requested(request: HyperparametersIn | None, spec: BaseModelSpec) -> bool:
    """Whether early stopping will be on when there is validation data (see the module's decisions)."""
    if spec.hyperparameters.early_stopping is None:
        return False
    explicit = request is not None and request.early_stopping is not None
    return explicit or spec.traits.always_stops_early


def _resolve_hyperparameters(
    request: HyperparametersIn, model: BaseModelSpec, has_validation: bool, errors: list[ErrorDetail]
) -> ResolvedHyperparameters:
    spec = model.hyperparameters
    epochs = _in_range(request.epochs, spec.epochs, "epochs", model=model, errors=errors)
    learning_rate = _in_range(
        request.learning_rate, spec.learning_rate, "learning_rate", model=model, errors=errors
    )
    advanced: dict[str, Any] = {}
    for name, value, allowed in (
        ("batch_size", request.batch_size, spec.batch_size),
        ("warmup_steps", request.warmup_steps, spec.warmup_steps),
    ):
        if allowed is None:
            if value is not None:
                errors.append(
                    ErrorDetail(
                        field=f"{HP}.{name}",
                        message=f"{model.name} does not support {name}; remove it. {_supported(model)}",
                    )
                )
            advanced[name] = None
        else:
            advanced[name] = _in_range(value, allowed, name, model=model, errors=errors)

    early: ResolvedEarlyStopping | None = None
    es_spec = spec.early_stopping
    asked = request.early_stopping
    if es_spec is None:
        if asked is not None:
            errors.append(
                ErrorDetail(
                    field=f"{HP}.early_stopping",
                    message=f"{model.name} does not support early stopping; remove early_stopping. "
                    + _supported(model),
                )
            )
    elif not has_validation:
        if asked is not None:
            errors.append(
                ErrorDetail(
                    field=f"{HP}.early_stopping",
                    message="Early stopping needs validation data: choose a validation split or a "
                    "validation dataset, or remove early_stopping.",
                )
            )
    elif early_stopping_requested(request, model):
        asked = asked or EarlyStoppingIn()
        early = ResolvedEarlyStopping(
            patience=_in_range(
                asked.patience, es_spec.patience, "early_stopping.patience", model=model, errors=errors
            ),
            threshold=_in_range(
                asked.threshold, es_spec.threshold, "early_stopping.threshold", model=model, errors=errors
            ),
        )
    return ResolvedHyperparameters(
        epochs=epochs, learning_rate=learning_rate, early_stopping=early, **advanced
    )


def _supported(model: BaseModelSpec) -> str:
    spec = model.hyperparameters
    names = ["epochs", "learning_rate"] + [
        n for n in ("batch_size", "warmup_steps", "early_stopping") if getattr(spec, n) is not None
    ]
    return f"It accepts: {', '.join(names)}."


def resolve_hyperparameters(
    request: HyperparametersIn | BaseModel | Mapping[str, Any] | None,
    model: BaseModelSpec,
    *,
    has_validation: bool,
) -> ResolvedHyperparameters:
    """The hyperparameters the job runs with: the request checked against the model, defaults filled.

    Raises `ValidationFailed` with every problem (field paths `hyperparameters.<name>`).
    `has_validation`: see `has_validation_data`.
    """
    errors: list[ErrorDetail] = []
    resolved = _resolve_hyperparameters(
        _parse_hyperparameters(request, errors), model, has_validation, errors
    )
    if errors:
        raise _failed(errors)
    return resolved


# --------------------------------------------------------------------------------------------
# Provider parameters (Bedrock's names, values as strings)
# --------------------------------------------------------------------------------------------

_PROVIDER_FIELDS = (
    "epochs",
    "learning_rate",
    "batch_size",
    "warmup_steps",
    "early_stopping.patience",
    "early_stopping.threshold",
)


def provider_splits_validation(model: BaseModelSpec) -> bool:
    """Whether the provider holds back validation rows itself (then tunelab sends the whole dataset)."""
    return model.hyperparameters.eval_percentage is not None


def check_provider_split(percent: float, model: BaseModelSpec) -> None:
    """Refuse a validation split percentage outside what a self-splitting provider accepts.

    Call it when the request is checked (the field is `validation.percent`); models whose data
    tunelab splits itself accept any percentage the API allows.
    """
    allowed = model.hyperparameters.eval_percentage
    if allowed is not None and not allowed.min <= percent <= allowed.max:
        raise ValidationFailed.of(
            "validation.percent",
            f"The validation split {_range_text(allowed)} percent for {model.name} "
            f"(got {plain_number(percent)}).",
        )


def to_provider_params(
    resolved: ResolvedHyperparameters, model: BaseModelSpec, *, provider_split_percent: float | None = None
) -> dict[str, str]:
    """The provider's hyperparameters (e.g. Bedrock's `epochCount`), every value a string.

    `provider_split_percent`: the validation split's percentage when the provider makes the
    split itself (the model's `eval_percentage`, sent as e.g. `evalPercentage`); `None` when we
    split the data or there is a validation dataset. Out of the model's range it raises
    `ValidationFailed` on `validation.percent`.
    """
    spec = model.hyperparameters
    values: dict[str, float | None] = {
        "epochs": resolved.epochs,
        "learning_rate": resolved.learning_rate,
        "batch_size": resolved.batch_size,
        "warmup_steps": resolved.warmup_steps,
        "early_stopping.patience": resolved.early_stopping.patience if resolved.early_stopping else None,
        "early_stopping.threshold": resolved.early_stopping.threshold if resolved.early_stopping else None,
    }
    if provider_split_percent is not None:
        if spec.eval_percentage is None:
            raise ValueError(f"{model.id}: the provider does not split validation data itself")
        check_provider_split(provider_split_percent, model)
        values["eval_percentage"] = provider_split_percent
    params: dict[str, str] = {}
    for field, value in values.items():
        if value is None:
            continue
        name = spec.provider_names.get(field)
        if name is None:
            # A catalog entry without the provider's name for a supported field: a data bug.
            raise ValueError(f"{model.id}: the catalog has no provider name for '{field}'")
        params[name] = plain_number(value)
    return params


# --------------------------------------------------------------------------------------------
# Optional hyperparameters
# --------------------------------------------------------------------------------------------

_TOP_KEYS = [
    "use_lora",
    "lora_config",
    "merge_adapters",
    "sft_config",
    "model_init_config",
    "evaluation_config",
]
_LORA_KEYS = [
    "r",
    "lora_alpha",
    "alpha",
    "lora_dropout",
    "dropout",
    "target_modules",
    "fan_in_fan_out",
    "bias",
    "use_rslora",
    "use_dora",
]
_SFT_KEYS = [
    "logging_strategy",
    "logging_steps",
    "eval_strategy",
    "eval_steps",
    "fp16",
    "bf16",
    "gradient_accumulation_steps",
    "lr_scheduler_type",
    "weight_decay",
    "max_grad_norm",
    "max_length",
    "packing",
    "gradient_checkpointing",
    "neftune_noise_alpha",
    "seed",
    "save_strategy",
    "save_steps",
    "save_total_limit",
]
_INIT_KEYS = ["attn_implementation", "use_cache"]
_EVALUATION_KEYS = ["enabled", "max_rows", "max_new_tokens", "samples"]
_SECTIONS = {
    "lora_config": _LORA_KEYS,
    "sft_config": _SFT_KEYS,
    "model_init_config": _INIT_KEYS,
    "evaluation_config": _EVALUATION_KEYS,
}

_EPOCHS = ("the number of epochs", f"{HP}.epochs")
_LR = ("the learning rate", f"{HP}.learning_rate")
_BATCH = ("the batch size", f"{HP}.batch_size")
_WARMUP = ("the learning-rate warmup", f"{HP}.warmup_steps")
_PATIENCE = ("early stopping", f"{HP}.early_stopping.patience")
_THRESHOLD = ("early stopping", f"{HP}.early_stopping.threshold")
# Spellings (ours, the trainer's TrainingArguments, Bedrock's) of what the fundamental and
# advanced hyperparameters own; compared without case, underscores or hyphens.
_RESERVED_SPELLINGS: dict[str, tuple[str, str]] = {
    "epochs": _EPOCHS,
    "epoch": _EPOCHS,
    "num_train_epochs": _EPOCHS,
    "num_epochs": _EPOCHS,
    "epochCount": _EPOCHS,
    "max_steps": _EPOCHS,
    "learning_rate": _LR,
    "lr": _LR,
    "batch_size": _BATCH,
    "per_device_train_batch_size": _BATCH,
    "per_device_eval_batch_size": _BATCH,
    "train_batch_size": _BATCH,
    "eval_batch_size": _BATCH,
    "per_gpu_train_batch_size": _BATCH,
    "auto_find_batch_size": _BATCH,
    "warmup_steps": _WARMUP,
    "warmup_ratio": _WARMUP,
    "warmup": _WARMUP,
    "num_warmup_steps": _WARMUP,
    "learningRateWarmupSteps": _WARMUP,
    "early_stopping": ("early stopping", f"{HP}.early_stopping"),
    "early_stopping_patience": _PATIENCE,
    "early_stopping_threshold": _THRESHOLD,
}


def _norm(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


_RESERVED = {_norm(k): v for k, v in _RESERVED_SPELLINGS.items()}
RESERVED_OPTIONAL_KEYS = tuple(_RESERVED_SPELLINGS)


def _find_reserved(value: Any, path: str, errors: list[ErrorDetail]) -> set[str]:
    """Report every key, at any depth, that would override a fundamental or advanced hyperparameter."""
    found: set[str] = set()
    if isinstance(value, Mapping):
        for key, inner in value.items():
            here = f"{path}.{key}"
            owner = _RESERVED.get(_norm(str(key)))
            if owner is not None:
                what, where = owner
                errors.append(
                    ErrorDetail(
                        field=here,
                        message=f"'{key}' cannot be set in optional hyperparameters: {what} is a "
                        f"fundamental or advanced hyperparameter; set {where} instead.",
                    )
                )
                found.add(here)
            found |= _find_reserved(inner, here, errors)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            found |= _find_reserved(inner, f"{path}[{i}]", errors)
    return found


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the key '{key}' appears twice")
        seen[key] = value
    return seen


def parse_optional_hyperparameters(raw: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """The raw optional hyperparameters as a dict: `None`, "" and `{}` are empty; JSON text is parsed."""
    if raw is None:
        return {}
    if isinstance(raw, str):
        if not raw.strip():
            return {}
        try:
            raw = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise ValidationFailed.of(
                OPT,
                f"Optional hyperparameters are not valid JSON: {exc.msg} at line {exc.lineno}, "
                f"column {exc.colno}.",
            ) from None
        except ValueError as exc:
            raise ValidationFailed.of(OPT, f"Optional hyperparameters are not valid: {exc}.") from None
    if not isinstance(raw, Mapping):
        raise ValidationFailed.of(
            OPT, 'Optional hyperparameters must be a JSON object, e.g. {"use_lora": true}.'
        )
    return dict(raw)


def _as_number(value: object) -> float | None:
    """A number given as one or as its text (not a boolean); None for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


class _Reader:
    """Reads typed values out of the raw JSON, collecting one `ErrorDetail` per problem."""

    def __init__(self, errors: list[ErrorDetail], skip: set[str]) -> None:
        self.errors = errors
        self.skip = skip  # paths already reported (reserved keys)

    def fail(self, path: str, message: str) -> None:
        self.errors.append(ErrorDetail(field=path, message=message))

    def section(self, raw: dict[str, Any], key: str, path: str) -> dict[str, Any] | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.fail(f"{path}.{key}", f"{key} must be a JSON object (got {_show(value)}).")
            return None
        return dict(value)

    def known(self, raw: dict[str, Any], accepted: list[str], path: str, where: str) -> None:
        for key in raw:
            if key not in accepted and f"{path}.{key}" not in self.skip:
                self.fail(f"{path}.{key}", _unknown_key(str(key), accepted, where))

    def boolean(self, raw: dict[str, Any], key: str, path: str) -> bool | None:
        value = raw.get(key)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        self.fail(f"{path}.{key}", f"{key} must be true or false (got {_show(value)}).")
        return None

    def integer(
        self,
        raw: dict[str, Any],
        key: str,
        path: str,
        minimum: int = 1,
        *,
        maximum: int | None = None,
        why: str = "",
    ) -> int | None:
        value = raw.get(key)
        if value is None:
            return None
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif (isinstance(value, float) and value.is_integer()) or (
            isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value)
        ):
            number = int(value)
        if number is None or number < minimum or (maximum is not None and number > maximum):
            allowed = f"of at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            self.fail(f"{path}.{key}", f"{key} must be a whole number {allowed} (got {_show(value)}){why}.")
            return None
        return number

    def number(
        self, raw: dict[str, Any], key: str, path: str, *, low: float, high: float, above_low: bool = False
    ) -> float | None:
        """A number from `low` (`above_low`: greater than it) to `high`; the message gives both ends."""
        value = raw.get(key)
        if value is None:
            return None
        number = _as_number(value)
        inside = (
            number is not None
            and math.isfinite(number)
            and (number > low if above_low else number >= low)
            and number <= high
        )
        if not inside:
            allowed = (
                f"greater than {plain_number(low)} and at most {plain_number(high)}"
                if above_low
                else f"from {plain_number(low)} to {plain_number(high)}"
            )
            self.fail(f"{path}.{key}", f"{key} must be a number {allowed} (got {_show(value)}).")
            return None
        return number

    def fraction(self, raw: dict[str, Any], key: str, path: str) -> float | None:
        value = raw.get(key)
        if value is None:
            return None
        number = _as_number(value)
        if number is None or not 0.0 <= number < 1.0:
            self.fail(
                f"{path}.{key}",
                f"{key} must be a number from 0 up to (not including) 1 (got {_show(value)}).",
            )
            return None
        return number

    def choice(
        self,
        raw: dict[str, Any],
        key: str,
        path: str,
        options: list[str],
        aliases: Mapping[str, str] | None = None,
    ) -> str | None:
        value = raw.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            text = value.strip().lower()
            text = (aliases or {}).get(text, text)
            if text in options:
                return text
        self.fail(f"{path}.{key}", f"{key} must be one of {', '.join(options)} (got {_show(value)}).")
        return None


def _target_modules(
    reader: _Reader, raw: dict[str, Any], path: str
) -> list[str] | Literal["all-linear"] | None:
    value = raw.get("target_modules")
    field = f"{path}.target_modules"
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == "all-linear":
        return "all-linear"
    if isinstance(value, list) and value:
        bad = [v for v in value if not (isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9_.\-]+", v))]
        if not bad:
            return list(dict.fromkeys(value))
        reader.fail(
            field,
            f'target_modules must list module names such as "q_proj" (got {_show(bad[0])}).',
        )
        return None
    reader.fail(
        field,
        'target_modules must be a non-empty list of module names such as ["q_proj", "v_proj"], '
        f'or "all-linear", or null for the default (got {_show(value)}).',
    )
    return None


def _default_attention(model: BaseModelSpec, hardware: Hardware | None) -> AttnImplementation:
    if model.traits.cpu_training or (hardware is not None and hardware.kind == "cpu"):
        return "sdpa"
    return "flash_attention_2"


def _resolve_lora(
    reader: _Reader, data: dict[str, Any], lora_raw: dict[str, Any] | None, model: BaseModelSpec
) -> tuple[bool, ResolvedLoraConfig | None, bool]:
    use_lora = reader.boolean(data, "use_lora", OPT)
    merge = reader.boolean(data, "merge_adapters", OPT)
    if use_lora is None and model.default_use_lora:
        # The model trains LoRA by default: a full fine-tune of the default request does not fit its
        # default instance.
        use_lora = True
    if use_lora and merge is None and model.default_use_lora:
        # Merged unless asked otherwise, whether LoRA was asked for or defaulted: the result is a whole
        # model, as a full fine-tune's.
        merge = True
    lora: ResolvedLoraConfig | None = None
    if lora_raw is not None and use_lora is not True:
        reader.fail(
            f"{OPT}.lora_config",
            'lora_config has no effect unless use_lora is true; add "use_lora": true or remove lora_config.',
        )
    if merge and use_lora is not True:
        reader.fail(
            f"{OPT}.merge_adapters",
            'merge_adapters needs LoRA adapters to merge; add "use_lora": true or remove merge_adapters.',
        )
    if use_lora:
        lraw = lora_raw or {}
        lpath = f"{OPT}.lora_config"
        spelled: dict[str, str] = {}
        for ours, theirs in (("lora_alpha", "alpha"), ("lora_dropout", "dropout")):
            spelled[ours] = theirs if lraw.get(theirs) is not None else ours
            if lraw.get(ours) is not None and lraw.get(theirs) is not None:
                reader.fail(f"{lpath}.{theirs}", f"Give {ours} or {theirs} (the same setting), not both.")
        values: dict[str, Any] = {
            "r": reader.integer(lraw, "r", lpath),
            "lora_alpha": reader.integer(lraw, spelled["lora_alpha"], lpath),
            "lora_dropout": reader.fraction(lraw, spelled["lora_dropout"], lpath),
            "target_modules": _target_modules(reader, lraw, lpath),
            "fan_in_fan_out": reader.boolean(lraw, "fan_in_fan_out", lpath),
            "bias": reader.choice(lraw, "bias", lpath, ["none", "all", "lora_only"]),
            "use_rslora": reader.boolean(lraw, "use_rslora", lpath),
            "use_dora": reader.boolean(lraw, "use_dora", lpath),
        }
        lora = ResolvedLoraConfig(**{k: v for k, v in values.items() if v is not None})
        if len(json.dumps(lora.model_dump(), separators=(",", ":"))) > SAGEMAKER_VALUE_MAX:
            reader.fail(
                f"{lpath}.target_modules",
                f"lora_config is too long for a SageMaker hyperparameter ({SAGEMAKER_VALUE_MAX} characters); "
                'list fewer target_modules or use "all-linear".',
            )

    return bool(use_lora), lora, bool(merge)


def _resolve_precision(
    reader: _Reader,
    sft_raw: dict[str, Any],
    init_raw: dict[str, Any],
    model: BaseModelSpec,
    hardware: Hardware | None,
) -> tuple[AttnImplementation, bool, bool, bool]:
    ipath, spath = f"{OPT}.model_init_config", f"{OPT}.sft_config"
    attn_given = reader.choice(init_raw, "attn_implementation", ipath, ["eager", "sdpa", "flash_attention_2"])
    attn = cast(AttnImplementation, attn_given) if attn_given else _default_attention(model, hardware)
    use_cache = reader.boolean(init_raw, "use_cache", ipath)
    fp16 = reader.boolean(sft_raw, "fp16", spath)
    bf16 = reader.boolean(sft_raw, "bf16", spath)
    if fp16 and bf16:
        reader.fail(spath, "fp16 and bf16 cannot both be true; choose one (or neither, for fp32).")
    attn_name = f"{attn}{'' if attn_given else ' (the default attention)'}"
    if attn == "flash_attention_2":
        if fp16 and not bf16:
            reader.fail(
                f"{spath}.fp16",
                f"{attn_name} trains in bf16, so fp16 cannot be true; set "
                "model_init_config.attn_implementation to sdpa or eager to train in fp16.",
            )
        if bf16 is False:
            reader.fail(
                f"{spath}.bf16",
                f"{attn_name} trains in bf16, so bf16 cannot be false; remove bf16 or set "
                "model_init_config.attn_implementation to sdpa or eager.",
            )
        bf16 = True
    if hardware is not None and hardware.kind == "cpu" and attn == "flash_attention_2":
        reader.fail(
            f"{ipath}.attn_implementation",
            f"flash_attention_2 needs an NVIDIA GPU, and this model trains on {hardware.description}; "
            "set attn_implementation to sdpa or eager.",
        )
    if hardware is not None and hardware.kind == "gpu_no_bf16":
        if attn == "flash_attention_2":
            reader.fail(
                f"{ipath}.attn_implementation",
                f"{attn_name} trains in bf16, which {hardware.description} do not support; set "
                "model_init_config.attn_implementation to sdpa or eager, or choose an instance type "
                "whose GPUs support bf16 (Ampere or newer, e.g. A10G, L4, A100, H100).",
            )
        elif bf16:
            reader.fail(
                f"{spath}.bf16",
                f"bf16 is not supported by {hardware.description}; use fp16 or neither (fp32), or "
                "choose an instance type whose GPUs support bf16 (Ampere or newer).",
            )

    return attn, bool(use_cache), bool(fp16), bool(bf16)


def _resolve_logging(
    reader: _Reader, sft_raw: dict[str, Any], *, has_validation: bool, early_stopping: bool
) -> tuple[Strategy, int | None, Strategy, int | None]:
    spath = f"{OPT}.sft_config"
    none_is_no = {"none": "no"}
    strategies = ["steps", "epoch", "no"]
    log_given = reader.choice(sft_raw, "logging_strategy", spath, strategies, none_is_no)
    log_steps = reader.integer(sft_raw, "logging_steps", spath)
    log_strategy = log_given or "steps"
    if log_strategy == "steps" and log_steps is None:
        if log_given == "steps" and sft_raw.get("logging_steps") is None:
            reader.fail(
                f"{spath}.logging_steps",
                "logging_steps is required when logging_strategy is steps (e.g. 50).",
            )
        log_steps = log_steps or 10
    elif log_strategy != "steps" and sft_raw.get("logging_steps") is not None:
        reader.fail(
            f"{spath}.logging_steps",
            f"logging_steps applies only when logging_strategy is steps (it is {log_strategy}); remove it.",
        )
        log_steps = None
    elif log_strategy != "steps":
        log_steps = None

    eval_given = reader.choice(sft_raw, "eval_strategy", spath, strategies, none_is_no)
    eval_steps = reader.integer(sft_raw, "eval_steps", spath)
    no_validation = (
        "needs validation data: choose a validation split or a validation dataset, "
        "or set eval_strategy to no."
    )
    if not has_validation and eval_given in ("steps", "epoch"):
        reader.fail(f"{spath}.eval_strategy", f"eval_strategy {eval_given} {no_validation}")
    elif not has_validation and sft_raw.get("eval_steps") is not None:
        reader.fail(f"{spath}.eval_steps", f"eval_steps {no_validation}")
    if eval_given is not None:
        eval_strategy = eval_given
    elif not has_validation:
        eval_strategy = "no"
    elif eval_steps is not None:
        eval_strategy = "steps"
    else:
        eval_strategy = log_strategy if log_strategy != "no" else "epoch"
    if eval_strategy == "steps":
        if eval_steps is None and sft_raw.get("eval_steps") is None:
            if log_strategy != "steps":
                reader.fail(
                    f"{spath}.eval_steps",
                    "eval_steps is required when eval_strategy is steps and logging_strategy is not steps.",
                )
            eval_steps = log_steps
    elif sft_raw.get("eval_steps") is not None and has_validation:
        reader.fail(
            f"{spath}.eval_steps",
            f"eval_steps applies only when eval_strategy is steps (it is {eval_strategy}); remove it.",
        )
        eval_steps = None
    else:
        eval_steps = None
    if early_stopping and has_validation and eval_strategy == "no":
        reader.fail(
            f"{spath}.eval_strategy",
            "Early stopping needs evaluations, and eval_strategy no turns them off; set eval_strategy to "
            "steps or epoch, or remove hyperparameters.early_stopping.",
        )

    return cast(Strategy, log_strategy), log_steps, cast(Strategy, eval_strategy), eval_steps


# Ranges of the training options (the messages name them): weight decay is a fraction of the weights
# taken off each step; a gradient norm of 0 turns clipping off; NEFTune's paper uses alphas of 5 to 15.
WEIGHT_DECAY_MAX = 1.0
MAX_GRAD_NORM_MAX = 100.0
NEFTUNE_ALPHA_MAX = 100.0
SAVE_TOTAL_LIMIT_MAX = 100


def _resolve_training_options(
    reader: _Reader,
    sft_raw: dict[str, Any],
    model: BaseModelSpec,
    hardware: Hardware | None,
    *,
    eval_strategy: Strategy,
    eval_steps: int | None,
    early_stopping: bool,
) -> dict[str, Any]:
    """Scheduler, regularisation, sequence length, packing, checkpointing, NEFTune, seed and saving."""
    spath = f"{OPT}.sft_config"
    on_cpu = model.traits.cpu_training or (hardware is not None and hardware.kind == "cpu")
    checkpointing = reader.boolean(sft_raw, "gradient_checkpointing", spath)
    values: dict[str, Any] = {
        "lr_scheduler_type": reader.choice(sft_raw, "lr_scheduler_type", spath, list(LR_SCHEDULERS))
        or "linear",
        "weight_decay": reader.number(sft_raw, "weight_decay", spath, low=0, high=WEIGHT_DECAY_MAX) or 0.0,
        "max_grad_norm": reader.number(sft_raw, "max_grad_norm", spath, low=0, high=MAX_GRAD_NORM_MAX),
        "max_length": reader.integer(
            sft_raw,
            "max_length",
            spath,
            minimum=MIN_MAX_LENGTH,
            maximum=model.context_length,
            why=f"; {model.name}'s context is {model.context_length} tokens",
        ),
        "packing": bool(reader.boolean(sft_raw, "packing", spath)),
        # On by default where memory is scarce (GPUs); on the CPU it would only slow the run.
        "gradient_checkpointing": (not on_cpu) if checkpointing is None else checkpointing,
        "neftune_noise_alpha": reader.number(
            sft_raw, "neftune_noise_alpha", spath, low=0, high=NEFTUNE_ALPHA_MAX, above_low=True
        ),
        "seed": reader.integer(sft_raw, "seed", spath, minimum=0, maximum=MAX_SEED),
        "save_total_limit": reader.integer(
            sft_raw, "save_total_limit", spath, minimum=1, maximum=SAVE_TOTAL_LIMIT_MAX
        ),
    }
    if values["max_grad_norm"] is None:
        values["max_grad_norm"] = 1.0
    if values["seed"] is None:
        values["seed"] = DEFAULT_SEED

    save_given = reader.choice(sft_raw, "save_strategy", spath, ["steps", "epoch", "no"], {"none": "no"})
    save_steps = reader.integer(sft_raw, "save_steps", spath)
    steps_given = sft_raw.get("save_steps") is not None
    if early_stopping and eval_strategy != "no":
        # The best checkpoint is loaded at the end: transformers saves exactly when it evaluates.
        save = save_given or eval_strategy
        if save != eval_strategy:
            reader.fail(
                f"{spath}.save_strategy",
                f"With early stopping a checkpoint is saved at each evaluation, so save_strategy must be "
                f"{eval_strategy} (the eval_strategy); remove save_strategy or set it to {eval_strategy}.",
            )
        if save == "steps" and eval_steps is not None:
            if save_steps is not None and save_steps % eval_steps:
                reader.fail(
                    f"{spath}.save_steps",
                    f"With early stopping save_steps must be a multiple of eval_steps ({eval_steps}) "
                    f"(got {save_steps}).",
                )
            save_steps = save_steps or eval_steps
    else:
        save = save_given or ("steps" if steps_given else "epoch")
        if save == "steps" and save_steps is None and not steps_given:
            reader.fail(
                f"{spath}.save_steps", "save_steps is required when save_strategy is steps (e.g. 500)."
            )
    if save != "steps":
        if steps_given:
            reader.fail(
                f"{spath}.save_steps",
                f"save_steps applies only when save_strategy is steps (it is {save}); remove it.",
            )
        save_steps = None
    if save == "no" and values["save_total_limit"] is not None:
        reader.fail(
            f"{spath}.save_total_limit",
            "save_strategy is no, so no checkpoints are kept: remove save_total_limit.",
        )
    values["save_total_limit"] = values["save_total_limit"] or DEFAULT_SAVE_TOTAL_LIMIT
    values.update(save_strategy=save, save_steps=save_steps)
    return values


def _resolve_optional(
    raw: Mapping[str, Any] | str | None,
    model: BaseModelSpec,
    *,
    has_validation: bool,
    hardware: Hardware | None,
    early_stopping: bool,
    errors: list[ErrorDetail],
) -> ResolvedOptionalHyperparameters | None:
    try:
        data = parse_optional_hyperparameters(raw)
    except ValidationFailed as exc:
        errors.extend(exc.details)
        return None
    if not model.supports_optional_hyperparameters:
        if data:
            errors.append(
                ErrorDetail(
                    field=OPT,
                    message=f"{model.name} is a {model.provider} model, and {model.provider} takes no "
                    "optional hyperparameters (they are for sagemaker and local models); remove "
                    "optional_hyperparameters.",
                )
            )
        return None

    before = len(errors)
    reader = _Reader(errors, _find_reserved(data, OPT, errors))
    reader.known(data, _TOP_KEYS, OPT, "optional hyperparameters")
    lora_raw = reader.section(data, "lora_config", OPT)
    sft_raw = reader.section(data, "sft_config", OPT) or {}
    init_raw = reader.section(data, "model_init_config", OPT) or {}
    evaluation_raw = reader.section(data, "evaluation_config", OPT) or {}
    sections = {
        "lora_config": lora_raw,
        "sft_config": sft_raw,
        "model_init_config": init_raw,
        "evaluation_config": evaluation_raw,
    }
    for key, section in sections.items():
        if section is not None:
            reader.known(section, _SECTIONS[key], f"{OPT}.{key}", key)

    use_lora, lora, merge = _resolve_lora(reader, data, lora_raw, model)
    attn, use_cache, fp16, bf16 = _resolve_precision(reader, sft_raw, init_raw, model, hardware)
    log_strategy, log_steps, eval_strategy, eval_steps = _resolve_logging(
        reader, sft_raw, has_validation=has_validation, early_stopping=early_stopping
    )
    accumulation = reader.integer(sft_raw, "gradient_accumulation_steps", f"{OPT}.sft_config")
    options = _resolve_training_options(
        reader,
        sft_raw,
        model,
        hardware,
        eval_strategy=eval_strategy,
        eval_steps=eval_steps,
        early_stopping=early_stopping and has_validation,
    )
    evaluation = _resolve_evaluation(reader, evaluation_raw, has_validation=has_validation)

    if len(errors) > before:
        return None
    return ResolvedOptionalHyperparameters(
        use_lora=use_lora,
        lora_config=lora,
        merge_adapters=merge,
        sft_config=ResolvedSftConfig(
            logging_strategy=log_strategy,
            logging_steps=log_steps,
            eval_strategy=eval_strategy,
            eval_steps=eval_steps,
            fp16=fp16,
            bf16=bf16,
            gradient_accumulation_steps=accumulation or 1,
            **options,
        ),
        model_init_config=ResolvedModelInitConfig(attn_implementation=attn, use_cache=use_cache),
        evaluation_config=evaluation,
    )


def _resolve_evaluation(
    reader: _Reader, raw: dict[str, Any], *, has_validation: bool
) -> ResolvedEvaluationConfig:
    path = f"{OPT}.evaluation_config"
    enabled = reader.boolean(raw, "enabled", path)
    if enabled and not has_validation:
        reader.fail(
            f"{path}.enabled",
            "The evaluation after training needs validation data: choose a validation split or a "
            "validation dataset, or set enabled to false.",
        )
    max_rows = reader.integer(raw, "max_rows", path, maximum=MAX_EVALUATION_ROWS)
    new_tokens = reader.integer(raw, "max_new_tokens", path, maximum=MAX_EVALUATION_NEW_TOKENS)
    samples = reader.integer(raw, "samples", path, minimum=0, maximum=MAX_EVALUATION_SAMPLES)
    return ResolvedEvaluationConfig(
        enabled=has_validation if enabled is None else enabled and has_validation,
        max_rows=DEFAULT_EVALUATION_ROWS if max_rows is None else max_rows,
        max_new_tokens=new_tokens,
        samples=DEFAULT_EVALUATION_SAMPLES if samples is None else samples,
    )


def _hardware(hardware: Hardware | InstanceType | None) -> Hardware | None:
    return Hardware.of_instance(hardware) if isinstance(hardware, InstanceType) else hardware


def resolve_optional_hyperparameters(
    raw: Mapping[str, Any] | str | None,
    model: BaseModelSpec,
    *,
    has_validation: bool,
    hardware: Hardware | InstanceType | None = None,
    early_stopping: bool = False,
) -> ResolvedOptionalHyperparameters | None:
    """The optional hyperparameters the job runs with, every default filled in; `None` for bedrock.

    `raw` is a dict or its JSON text. `hardware`: the SageMaker instance type (or `Hardware`),
    `Hardware.cpu()` for the local runtime, `None` when unknown (no precision checks).
    `early_stopping`: whether the resolved hyperparameters stop early (evaluation must then run).
    Raises `ValidationFailed` with every problem (`optional_hyperparameters.<path>`).
    """
    errors: list[ErrorDetail] = []
    resolved = _resolve_optional(
        raw,
        model,
        has_validation=has_validation,
        hardware=_hardware(hardware),
        early_stopping=early_stopping,
        errors=errors,
    )
    if errors:
        raise _failed(errors)
    return resolved


def resolve_training_parameters(
    hyperparameters: HyperparametersIn | BaseModel | Mapping[str, Any] | None,
    optional_hyperparameters: Mapping[str, Any] | str | None,
    model: BaseModelSpec,
    *,
    has_validation: bool,
    hardware: Hardware | InstanceType | None = None,
) -> tuple[ResolvedHyperparameters, ResolvedOptionalHyperparameters | None]:
    """Both resolvers at once, every problem of both in one `ValidationFailed`."""
    errors: list[ErrorDetail] = []
    request = _parse_hyperparameters(hyperparameters, errors)
    resolved = _resolve_hyperparameters(request, model, has_validation, errors)
    early = has_validation and early_stopping_requested(request, model)
    optional = _resolve_optional(
        optional_hyperparameters,
        model,
        has_validation=has_validation,
        hardware=_hardware(hardware),
        early_stopping=early,
        errors=errors,
    )
    if errors:
        raise _failed(errors)
    return resolved, optional


# --------------------------------------------------------------------------------------------
# The trainer's hyperparameters (SageMaker's HyperParameters map; the local runtime's too)
# --------------------------------------------------------------------------------------------


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _json(model: BaseModel) -> str:
    # Nulls left out: absent means the library's default (peft's target modules, HF's step counts).
    return json.dumps(model.model_dump(exclude_none=True), separators=(",", ":"))


# sft_config keys the trainer takes as hyperparameters of their own (it refuses them in sft_config).
_TRAINER_OWN_KEYS = ("max_length", "seed")


def to_trainer_hyperparameters(
    resolved: ResolvedHyperparameters, optional: ResolvedOptionalHyperparameters | None
) -> dict[str, str]:
    """What `trainer/train.py` reads: every value a string, nested configs as compact JSON, booleans
    as "true"/"false"; keys for unsupported values (None) are left out.

    Keys: epochs, learning_rate, batch_size, warmup_steps, early_stopping_patience,
    early_stopping_threshold, use_lora, lora_config, merge_adapters, sft_config,
    model_init_config, evaluation_config, max_length, seed (`sft_config.max_length` and
    `sft_config.seed` go to the trainer's own `max_length` and `seed`).
    """
    sft = optional.sft_config if optional is not None else None
    out: dict[str, str] = {
        "epochs": str(resolved.epochs),
        "learning_rate": plain_number(resolved.learning_rate),
        "seed": str(sft.seed if sft is not None else DEFAULT_SEED),
    }
    if resolved.batch_size is not None:
        out["batch_size"] = str(resolved.batch_size)
    if resolved.warmup_steps is not None:
        out["warmup_steps"] = str(resolved.warmup_steps)
    if resolved.early_stopping is not None:
        out["early_stopping_patience"] = str(resolved.early_stopping.patience)
        out["early_stopping_threshold"] = plain_number(resolved.early_stopping.threshold)
    if optional is not None:
        out["use_lora"] = _flag(optional.use_lora)
        if optional.lora_config is not None:
            out["lora_config"] = _json(optional.lora_config)
        out["merge_adapters"] = _flag(optional.merge_adapters)
        sft_values = optional.sft_config.model_dump(exclude_none=True, exclude=set(_TRAINER_OWN_KEYS))
        out["sft_config"] = json.dumps(sft_values, separators=(",", ":"))
        out["model_init_config"] = _json(optional.model_init_config)
        out["evaluation_config"] = _json(optional.evaluation_config)
    if sft is not None and sft.max_length is not None:
        out["max_length"] = str(sft.max_length)
    too_long = [k for k, v in out.items() if len(v) > SAGEMAKER_VALUE_MAX]
    if too_long:
        raise ValueError(f"hyperparameter values over {SAGEMAKER_VALUE_MAX} characters: {too_long}")
    return out
