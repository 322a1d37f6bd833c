"""From checked hyperparameters to the objects the libraries take: SFTConfig, LoraConfig, from_pretrained.

Also the record of what was really used: defaults filled in, device fall-backs written down as notes.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from trainer.errors import TrainerInputError
from trainer.hyperparameters import Hyperparameters, parse_value

FLASH_ATTENTION = "flash_attention_2"
CPU_ATTENTION = "sdpa"
DEFAULT_LOGGING_STEPS = 10
MAX_DEFAULT_LENGTH = 2048
# The sft_config values recorded for every run, besides those the user set.
RECORDED_SFT_FIELDS = (
    "logging_strategy",
    "logging_steps",
    "eval_strategy",
    "eval_steps",
    "save_strategy",
    "save_steps",
    "bf16",
    "fp16",
    "gradient_accumulation_steps",
    "gradient_checkpointing",
    "per_device_eval_batch_size",
    "padding_free",
    "packing",
    "completion_only_loss",
    "lr_scheduler_type",
    "optim",
    "weight_decay",
    "max_grad_norm",
    "load_best_model_at_end",
)
# The config attribute a model folder uses to ask for embeddings and head to be trained with LoRA.
LORA_MODULES_TO_SAVE_ATTRIBUTE = "tunelab_lora_modules_to_save"


@dataclass
class Plan:
    """The values a run really uses, as recorded, plus the notes that explain device fall-backs."""

    notes: list[str] = field(default_factory=list)
    attn_implementation: str = CPU_ATTENTION
    bf16: bool = False
    fp16: bool = False
    model_init_kwargs: dict[str, Any] = field(default_factory=dict)
    recorded_model_init: dict[str, Any] = field(default_factory=dict)
    # bf16 weights trained without autocast (sharded full fine-tuning): recorded as bf16.
    pure_bf16: bool = False


def _field_types(cls: Any) -> dict[str, Any]:
    return {f.name: f.type for f in dataclasses.fields(cls)}


def _is_bool_type(annotation: Any) -> bool:
    if annotation is bool:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return bool in typing.get_args(annotation)
    return False


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise TrainerInputError(f"sft_config.{name} must be true or false, not {value!r}")


def plan_model_init(hp: Hyperparameters, on_gpu: bool, flash_attention_available: bool) -> Plan:
    """Attention, precision and ``from_pretrained`` arguments for this device.

    flash_attention_2 is the default on a GPU and forces bf16; on the CPU (or without the flash-attn
    package) the run falls back to sdpa and says so in its notes.
    """
    import torch

    plan = Plan()
    init = dict(hp.model_init_config)
    sft = hp.sft_config
    requested = init.pop("attn_implementation", None)
    if requested is not None and not isinstance(requested, str):
        raise TrainerInputError("model_init_config.attn_implementation must be text")
    attention = requested or FLASH_ATTENTION
    if attention.startswith("flash_attention") and not on_gpu:
        attention = CPU_ATTENTION
        plan.notes.append(f"{requested or FLASH_ATTENTION} needs a GPU: using {CPU_ATTENTION} on the CPU")
    elif attention.startswith("flash_attention") and not flash_attention_available:
        plan.notes.append(
            f"the flash-attn package is not installed: using {CPU_ATTENTION} instead of {attention}"
        )
        attention = CPU_ATTENTION
    plan.attn_implementation = attention

    bf16 = _bool("bf16", sft["bf16"]) if "bf16" in sft else False
    fp16 = _bool("fp16", sft["fp16"]) if "fp16" in sft else False
    if attention.startswith("flash_attention"):
        if fp16:
            plan.notes.append("flash attention forces bf16: fp16 was turned off")
        bf16, fp16 = True, False
    if fp16 and not on_gpu:
        fp16 = False
        plan.notes.append("fp16 mixed precision needs a GPU: training in fp32 on the CPU")
    if bf16 and fp16:
        raise TrainerInputError("sft_config sets both bf16 and fp16; choose one")
    plan.bf16, plan.fp16 = bf16, fp16

    dtype_name = init.pop("dtype", None) or init.pop("torch_dtype", None)
    if dtype_name is None and bf16:
        # bf16 trains bf16 weights (flash attention takes half-precision weights only): gradients and
        # AdamW states are bf16 too, the 8 bytes per parameter tunelab's memory model counts. fp16 and
        # fp32 keep fp32 weights (fp16 is autocast over them: fp16 master weights cannot be unscaled).
        dtype_name = "bfloat16"
    if dtype_name is not None:
        if dtype_name != "auto" and not isinstance(getattr(torch, str(dtype_name), None), torch.dtype):
            raise TrainerInputError(f"model_init_config.dtype {dtype_name!r} is not a torch dtype")
        init["dtype"] = dtype_name if dtype_name == "auto" else getattr(torch, str(dtype_name))
    use_cache = init.pop("use_cache", False)  # no KV cache while training: it only costs memory
    init["use_cache"] = _bool("use_cache", use_cache) if isinstance(use_cache, str) else bool(use_cache)
    init["attn_implementation"] = attention
    plan.model_init_kwargs = init
    plan.recorded_model_init = {
        **{k: v for k, v in init.items() if k != "dtype"},
        "dtype": str(dtype_name) if dtype_name is not None else "float32",
    }
    return plan


def default_max_length(model_config: Any, tokenizer: Any) -> int:
    """The model's context, at most ``MAX_DEFAULT_LENGTH`` tokens."""
    text_config = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
    limits = [MAX_DEFAULT_LENGTH]
    context = getattr(text_config, "max_position_embeddings", None)
    if isinstance(context, int) and context > 0:
        limits.append(context)
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 10_000_000:
        limits.append(tokenizer_limit)
    return min(limits)


def _coerce_sft_value(name: str, value: Any, annotation: Any) -> Any:
    value = parse_value(value)
    if _is_bool_type(annotation) and isinstance(value, str):
        return _bool(name, value)
    return value


def sharded(hp: Hyperparameters, world_size: int) -> bool:
    """Whether this run shards the model across its processes (FSDP): asked for, and more than one."""
    return hp.distribution == "fsdp" and world_size > 1


def fsdp_arguments(checkpointing: bool) -> dict[str, Any]:
    """FSDP2 through accelerate: each decoder layer (the model's ``_no_split_modules``) its own shard unit.

    Weights are read on one process per host and sent to the others; checkpoints are sharded (each rank
    writes its part, the optimizer states are never gathered); the final model is gathered into
    ordinary safetensors. Activation checkpointing is FSDP's own (the Trainer's gradient checkpointing
    would all-gather each layer a second time).
    """
    return {
        "fsdp": "full_shard auto_wrap",
        "fsdp_config": {
            "version": 2,
            "reshard_after_forward": True,
            "state_dict_type": "SHARDED_STATE_DICT",
            "cpu_ram_efficient_loading": True,
            "activation_checkpointing": checkpointing,
        },
    }


def build_sft_arguments(
    hp: Hyperparameters,
    plan: Plan,
    *,
    output_dir: str,
    has_validation: bool,
    max_length: int,
    on_gpu: bool,
    world_size: int = 1,
) -> dict[str, Any]:
    """Keyword arguments for ``SFTConfig``: the product's defaults, then the user's ``sft_config`` on top."""
    from trl.trainer.sft_config import SFTConfig

    types_by_field = _field_types(SFTConfig)
    user: dict[str, Any] = {}
    for name, value in hp.sft_config.items():
        if name not in types_by_field:
            raise TrainerInputError(
                f"sft_config has no field {name!r} (see SFTConfig in the TRL documentation)"
            )
        user[name] = _coerce_sft_value(name, value, types_by_field[name])

    logging_strategy = str(user.get("logging_strategy", "steps"))
    logging_steps = user.get("logging_steps", DEFAULT_LOGGING_STEPS)
    eval_strategy = str(user.get("eval_strategy", logging_strategy if has_validation else "no"))
    if eval_strategy != "no" and not has_validation:
        raise TrainerInputError(
            f"sft_config.eval_strategy is {eval_strategy!r} but there is no validation data"
        )
    early_stopping = hp.early_stopping_patience is not None
    if early_stopping and not has_validation:
        raise TrainerInputError("early stopping needs validation data")
    if early_stopping and eval_strategy == "no":
        raise TrainerInputError("early stopping needs evaluation: sft_config.eval_strategy may not be 'no'")
    eval_steps = user.get("eval_steps", logging_steps) if eval_strategy == "steps" else None

    packing = bool(user.get("packing", False))
    arguments: dict[str, Any] = {
        "output_dir": output_dir,
        "num_train_epochs": hp.epochs,
        "learning_rate": hp.learning_rate,
        "per_device_train_batch_size": hp.batch_size,
        "per_device_eval_batch_size": hp.batch_size,
        "warmup_steps": hp.warmup_steps,
        "seed": hp.seed,
        "data_seed": hp.seed,
        "logging_strategy": logging_strategy,
        "logging_steps": logging_steps,
        "eval_strategy": eval_strategy,
        "eval_steps": eval_steps,
        # A checkpoint per epoch so an interrupted job resumes; early stopping saves at each evaluation.
        "save_strategy": "epoch",
        "save_total_limit": 2,
        "bf16": plan.bf16,
        "fp16": plan.fp16,
        "padding_free": not packing,
        # The dataset arrives tokenized (prompt and completion are gone), so TRL cannot infer this itself.
        "completion_only_loss": True,
        # Rows over max_length were dropped already; padding-free batches must not truncate again.
        "max_length": max_length if packing else None,
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": not on_gpu,
        "dataloader_num_workers": 0,
        "ddp_find_unused_parameters": False,
    }
    checkpointing = user.pop("gradient_checkpointing", on_gpu)  # saves GPU memory; only slows a CPU run
    if sharded(hp, world_size):
        arguments.update(fsdp_arguments(bool(checkpointing)))
        checkpointing = False
        user.pop("activation_checkpointing", None)
        if plan.bf16 and plan.recorded_model_init.get("dtype") == "bfloat16" and not hp.use_lora:
            # accelerate's bf16 mixed precision under FSDP2 makes fp32 master copies of the trained
            # weights (16 bytes a parameter with their gradients and AdamW states); the weights are bf16
            # already, so the run trains in pure bf16 as one process does (8 bytes a parameter).
            arguments["bf16"] = False
            plan.pure_bf16 = True
            plan.notes.append(
                "sharded full fine-tuning of bf16 weights runs in pure bf16 (no fp32 master copies)"
            )
    if "activation_checkpointing" in types_by_field:
        arguments["activation_checkpointing"] = user.pop("activation_checkpointing", checkpointing)
    else:
        arguments["gradient_checkpointing"] = checkpointing
    if early_stopping:
        arguments.update(
            save_strategy=eval_strategy,
            save_steps=eval_steps if eval_steps is not None else 500,
            load_best_model_at_end=True,
            metric_for_best_model="eval_loss",
            greater_is_better=False,
        )
    arguments.update({k: v for k, v in user.items() if k not in ("bf16", "fp16")})
    return arguments


def recorded_sft_config(config: Any, user_keys: set[str], plan: Plan | None = None) -> dict[str, Any]:
    """The effective values of the product's sft_config keys and of every key the user set."""
    recorded: dict[str, Any] = {}
    fsdp_config = getattr(config, "fsdp_config", None) if getattr(config, "fsdp", None) else None
    for name in (*RECORDED_SFT_FIELDS, *sorted(user_keys)):
        if name == "gradient_checkpointing" and isinstance(fsdp_config, dict):
            value = bool(fsdp_config.get("activation_checkpointing", False))
        elif name == "gradient_checkpointing" and hasattr(config, "activation_checkpointing"):
            value = config.activation_checkpointing
        elif hasattr(config, name):
            value = getattr(config, name)
        else:
            continue
        recorded[name] = _plain(value)
    if plan is not None and plan.pure_bf16:
        recorded["bf16"] = True
    if recorded.get("eval_strategy") != "steps":
        recorded.pop("eval_steps", None)
    if recorded.get("save_strategy") != "steps":
        recorded.pop("save_steps", None)
    return recorded


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, set | tuple):
        return sorted(value) if isinstance(value, set) else list(value)
    return value


def build_lora_arguments(hp: Hyperparameters, model_config: Any) -> dict[str, Any]:
    """Keyword arguments for ``LoraConfig``: the requested values; embeddings and head when the model asks."""
    from peft import LoraConfig

    config = dict(hp.lora_config or {})
    known = {f.name for f in dataclasses.fields(LoraConfig)}
    for name in config:
        if name not in known:
            raise TrainerInputError(f"lora_config has no field {name!r}")
    wanted = getattr(model_config, LORA_MODULES_TO_SAVE_ATTRIBUTE, None)
    if "modules_to_save" not in config and wanted:
        config["modules_to_save"] = list(wanted)
    config["task_type"] = "CAUSAL_LM"
    return config


def recorded_lora_config(peft_config: Any, requested: dict[str, Any]) -> dict[str, Any]:
    """The adapter's real configuration, in the product's names."""
    recorded: dict[str, Any] = {}
    for name in (
        "r",
        "lora_alpha",
        "lora_dropout",
        "target_modules",
        "fan_in_fan_out",
        "bias",
        "modules_to_save",
    ):
        recorded[name] = _plain(getattr(peft_config, name, None))
    for name in requested:
        if name not in recorded and hasattr(peft_config, name):
            recorded[name] = _plain(getattr(peft_config, name))
    return recorded
