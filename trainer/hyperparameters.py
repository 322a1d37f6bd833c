"""Hyperparameters as SageMaker passes them, parsed and checked without importing the training libraries.

SageMaker hands every hyperparameter over as a string, both as ``--key value`` arguments and in
``hyperparameters.json``; nested objects arrive as JSON text and booleans as ``"true"``/``"false"``
(or ``"True"``/``"False"`` when a Python ``str()`` made them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainer.errors import TrainerInputError

DEFAULT_EPOCHS = 3.0
DEFAULT_LEARNING_RATE = 2e-4
DEFAULT_BATCH_SIZE = 4
DEFAULT_WARMUP_STEPS = 10
DEFAULT_SEED = 42
DEFAULT_EARLY_STOPPING_THRESHOLD = 0.0
# The product's defaults when `use_lora` comes without a (full) `lora_config`.
LORA_DEFAULTS: dict[str, Any] = {"r": 8, "lora_alpha": 8, "lora_dropout": 0.0}
LORA_ALIASES = {"alpha": "lora_alpha", "dropout": "lora_dropout"}
# How several processes share the job: each holds the whole model (DDP), or weights, gradients and
# optimizer states are sharded across all of them (FSDP). tunelab's memory model chooses, per job.
DISTRIBUTIONS = ("ddp", "fsdp")
DEFAULT_DISTRIBUTION = "ddp"
# The evaluation after training (trainer/evaluation.py): its keys, their defaults and their ranges.
# max_new_tokens has no fixed default: it is derived from the evaluated rows' completions.
EVALUATION_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "max_rows": 100,
    "max_new_tokens": None,
    "samples": 20,
}
EVALUATION_RANGES = {"max_rows": (1, 1000), "max_new_tokens": (1, 1024), "samples": (0, 100)}

# Arguments that name folders rather than hyperparameters (the local runtime and tests point them elsewhere).
PATH_ARGUMENTS = frozenset(
    {
        "model_dir",
        "output_data_dir",
        "output_dir",
        "checkpoint_dir",
        "failure_file",
        "train_dir",
        "validation_dir",
        "base_model_dir",
        "hyperparameters_file",
    }
)

HYPERPARAMETER_KEYS = frozenset(
    {
        "epochs",
        "learning_rate",
        "batch_size",
        "warmup_steps",
        "early_stopping_patience",
        "early_stopping_threshold",
        "early_stopping",
        "use_lora",
        "lora_config",
        "merge_adapters",
        "sft_config",
        "model_init_config",
        "max_length",
        "seed",
        "distribution",
        "base_model",
        "base_model_revision",
        "hf_token_secret_arn",
        "evaluation_config",
    }
)

# Values the product sets as hyperparameters of their own; sft_config may not set them a second time.
OWNED_SFT_FIELDS = {
    "num_train_epochs": "epochs",
    "learning_rate": "learning_rate",
    "per_device_train_batch_size": "batch_size",
    "warmup_steps": "warmup_steps",
    "seed": "seed",
    "max_length": "max_length",
    "output_dir": "the model folder",
    "resume_from_checkpoint": "the checkpoint folder",
    "fsdp": "distribution",
    "fsdp_config": "distribution",
    "deepspeed": "distribution",
}


def parse_value(value: Any) -> Any:
    """One SageMaker-style value to Python: JSON text is decoded, ``"True"``/``"False"`` become booleans."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text in ("True", "False"):
        return text == "True"
    if text in ("None", ""):
        return None if text == "None" else ""
    try:
        decoded = json.loads(text)
    except ValueError:
        return value
    # The SDK json-encodes each value, so a JSON string may itself hold JSON ("{\"r\": 8}").
    if isinstance(decoded, str) and decoded != value:
        return parse_value(decoded)
    return decoded


def parse_arguments(argv: Sequence[str]) -> dict[str, str]:
    """``--key value``, ``--key=value`` and a bare ``--flag`` (meaning true) into a mapping of strings."""
    parsed: dict[str, str] = {}
    index = 0
    while index < len(argv):
        token = argv[index]
        if not token.startswith("--") or len(token) == 2:
            raise TrainerInputError(f"unexpected command-line argument {token!r}; expected --name value")
        name = token[2:]
        if "=" in name:
            name, value = name.split("=", 1)
            index += 1
        elif index + 1 < len(argv) and not argv[index + 1].startswith("--"):
            value = argv[index + 1]
            index += 2
        else:
            value = "true"
            index += 1
        parsed[name.replace("-", "_")] = value
    return parsed


def read_hyperparameter_file(path: Path | None) -> dict[str, Any]:
    """The contents of ``hyperparameters.json``; an absent file is an empty mapping."""
    if path is None or not path.is_file():
        return {}
    try:
        content = json.loads(path.read_text(encoding="utf-8") or "{}")
    except ValueError as error:
        raise TrainerInputError(f"the hyperparameters file {path} is not valid JSON: {error}") from error
    if not isinstance(content, dict):
        raise TrainerInputError(f"the hyperparameters file {path} must hold a JSON object")
    return content


@dataclass(frozen=True)
class EvaluationConfig:
    """The evaluation after training: whether it runs, on how many validation rows, how long an answer
    may grow (``None``: derived from the data), and how many rows the report shows."""

    enabled: bool = EVALUATION_DEFAULTS["enabled"]
    max_rows: int = EVALUATION_DEFAULTS["max_rows"]
    max_new_tokens: int | None = EVALUATION_DEFAULTS["max_new_tokens"]
    samples: int = EVALUATION_DEFAULTS["samples"]


@dataclass
class Hyperparameters:
    """Every hyperparameter the product offers, checked, with defaults filled in."""

    epochs: float = DEFAULT_EPOCHS
    learning_rate: float = DEFAULT_LEARNING_RATE
    batch_size: int = DEFAULT_BATCH_SIZE
    warmup_steps: int = DEFAULT_WARMUP_STEPS
    early_stopping_patience: int | None = None
    early_stopping_threshold: float = DEFAULT_EARLY_STOPPING_THRESHOLD
    use_lora: bool = False
    lora_config: dict[str, Any] | None = None
    merge_adapters: bool = False
    sft_config: dict[str, Any] = field(default_factory=dict)
    model_init_config: dict[str, Any] = field(default_factory=dict)
    max_length: int | None = None
    seed: int = DEFAULT_SEED
    distribution: str = DEFAULT_DISTRIBUTION
    base_model: str | None = None
    base_model_revision: str | None = None
    hf_token_secret_arn: str | None = None
    evaluation_config: EvaluationConfig = field(default_factory=EvaluationConfig)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no"):
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise TrainerInputError(f"hyperparameter {name!r} must be true or false, not {value!r}")


def _as_number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise TrainerInputError(f"hyperparameter {name!r} must be a number, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise TrainerInputError(f"hyperparameter {name!r} must be a number, not {value!r}") from error
    if not math.isfinite(number):
        raise TrainerInputError(f"hyperparameter {name!r} must be a finite number, not {value!r}")
    return number


def _as_int(name: str, value: Any) -> int:
    number = _as_number(name, value)
    if not number.is_integer():
        raise TrainerInputError(f"hyperparameter {name!r} must be a whole number, not {value!r}")
    return int(number)


def _as_mapping(name: str, value: Any) -> dict[str, Any]:
    value = parse_value(value)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TrainerInputError(f"hyperparameter {name!r} must be a JSON object, not {value!r}")
    return {str(key): parse_value(item) for key, item in value.items()}


def _at_least(name: str, value: float, minimum: float, *, strictly: bool = False) -> None:
    if value < minimum or (strictly and value == minimum):
        relation = "greater than" if strictly else "at least"
        raise TrainerInputError(f"hyperparameter {name!r} must be {relation} {minimum:g}, not {value:g}")


def parse_hyperparameters(raw: Mapping[str, Any]) -> Hyperparameters:
    """Check and convert raw (string) hyperparameters; unknown names are refused, defaults filled in."""
    values = {key: parse_value(value) for key, value in raw.items() if not key.startswith("sagemaker_")}
    unknown = sorted(set(values) - HYPERPARAMETER_KEYS - PATH_ARGUMENTS)
    if unknown:
        raise TrainerInputError(
            f"unknown hyperparameter {unknown[0]!r}; known: {', '.join(sorted(HYPERPARAMETER_KEYS))}"
        )
    hp = Hyperparameters()
    if values.get("epochs") is not None:
        hp.epochs = _as_number("epochs", values["epochs"])
        _at_least("epochs", hp.epochs, 0, strictly=True)
    if values.get("learning_rate") is not None:
        hp.learning_rate = _as_number("learning_rate", values["learning_rate"])
        _at_least("learning_rate", hp.learning_rate, 0, strictly=True)
    if values.get("batch_size") is not None:
        hp.batch_size = _as_int("batch_size", values["batch_size"])
        _at_least("batch_size", hp.batch_size, 1)
    if values.get("warmup_steps") is not None:
        hp.warmup_steps = _as_int("warmup_steps", values["warmup_steps"])
        _at_least("warmup_steps", hp.warmup_steps, 0)
    _parse_early_stopping(values, hp)
    if values.get("max_length") is not None:
        hp.max_length = _as_int("max_length", values["max_length"])
        _at_least("max_length", hp.max_length, 2)
    if values.get("seed") is not None:
        hp.seed = _as_int("seed", values["seed"])
    if values.get("distribution") not in (None, ""):
        distribution = str(values["distribution"]).strip().lower()
        if distribution not in DISTRIBUTIONS:
            raise TrainerInputError(
                f"hyperparameter 'distribution' must be one of {', '.join(DISTRIBUTIONS)}, "
                f"not {values['distribution']!r}"
            )
        hp.distribution = distribution
    for name in ("base_model", "base_model_revision", "hf_token_secret_arn"):
        if values.get(name) not in (None, ""):
            setattr(hp, name, str(values[name]))
    _parse_lora(values, hp)
    hp.sft_config = _as_mapping("sft_config", values.get("sft_config"))
    for owned, hyperparameter in OWNED_SFT_FIELDS.items():
        if owned in hp.sft_config:
            raise TrainerInputError(
                f"sft_config may not set {owned!r}: it is set by the hyperparameter {hyperparameter!r}"
            )
    hp.model_init_config = _as_mapping("model_init_config", values.get("model_init_config"))
    hp.evaluation_config = _parse_evaluation(values.get("evaluation_config"))
    return hp


def _parse_evaluation(value: Any) -> EvaluationConfig:
    given = _as_mapping("evaluation_config", value)
    unknown = sorted(set(given) - set(EVALUATION_DEFAULTS))
    if unknown:
        raise TrainerInputError(
            f"evaluation_config has no key {unknown[0]!r}; known: {', '.join(sorted(EVALUATION_DEFAULTS))}"
        )
    values: dict[str, Any] = {}
    if given.get("enabled") is not None:
        values["enabled"] = _as_bool("evaluation_config.enabled", given["enabled"])
    for name, (low, high) in EVALUATION_RANGES.items():
        if given.get(name) is None:
            continue
        label = f"evaluation_config.{name}"
        number = _as_int(label, given[name])
        if not low <= number <= high:
            raise TrainerInputError(f"hyperparameter {label!r} must be from {low} to {high}, not {number}")
        values[name] = number
    return EvaluationConfig(**values)


def _parse_early_stopping(values: Mapping[str, Any], hp: Hyperparameters) -> None:
    nested = values.get("early_stopping")
    patience = values.get("early_stopping_patience")
    threshold = values.get("early_stopping_threshold")
    if nested is not None:
        nested_map = _as_mapping("early_stopping", nested)
        patience = nested_map.get("patience", patience)
        threshold = nested_map.get("threshold", threshold)
    if patience is not None:
        hp.early_stopping_patience = _as_int("early_stopping_patience", patience)
        _at_least("early_stopping_patience", hp.early_stopping_patience, 1)
    if threshold is not None:
        hp.early_stopping_threshold = _as_number("early_stopping_threshold", threshold)
        _at_least("early_stopping_threshold", hp.early_stopping_threshold, 0)


def _parse_lora(values: Mapping[str, Any], hp: Hyperparameters) -> None:
    hp.use_lora = _as_bool("use_lora", values["use_lora"]) if values.get("use_lora") is not None else False
    hp.merge_adapters = (
        _as_bool("merge_adapters", values["merge_adapters"])
        if values.get("merge_adapters") is not None
        else False
    )
    given = _as_mapping("lora_config", values.get("lora_config"))
    if given and not hp.use_lora:
        raise TrainerInputError("lora_config is set but use_lora is not true")
    if hp.merge_adapters and not hp.use_lora:
        raise TrainerInputError(
            "merge_adapters needs use_lora: there is no adapter to merge in full fine-tuning"
        )
    if not hp.use_lora:
        return
    config = dict(LORA_DEFAULTS)
    for key, value in given.items():
        name = LORA_ALIASES.get(key, key)
        if name in given and name != key:
            raise TrainerInputError(f"lora_config sets both {key!r} and {name!r}")
        config[name] = value
    config["r"] = _as_int("lora_config.r", config["r"])
    _at_least("lora_config.r", config["r"], 1)
    config["lora_alpha"] = _as_number("lora_config.lora_alpha", config["lora_alpha"])
    if float(config["lora_alpha"]).is_integer():
        config["lora_alpha"] = int(config["lora_alpha"])
    config["lora_dropout"] = _as_number("lora_config.lora_dropout", config["lora_dropout"])
    if not 0 <= config["lora_dropout"] < 1:
        raise TrainerInputError("hyperparameter 'lora_config.lora_dropout' must be at least 0 and below 1")
    if "fan_in_fan_out" in config:
        config["fan_in_fan_out"] = _as_bool("lora_config.fan_in_fan_out", config["fan_in_fan_out"])
    if "bias" in config and config["bias"] not in ("none", "all", "lora_only"):
        raise TrainerInputError("hyperparameter 'lora_config.bias' must be one of none, all, lora_only")
    target = config.get("target_modules")
    if target is not None and not (
        isinstance(target, str) or (isinstance(target, list) and all(isinstance(t, str) for t in target))
    ):
        raise TrainerInputError("hyperparameter 'lora_config.target_modules' must be a list of module names")
    hp.lora_config = config


def collect_raw_hyperparameters(
    file_values: Mapping[str, Any], argv_values: Mapping[str, str]
) -> dict[str, Any]:
    """The file's values, overridden by the command line (SageMaker passes the same values both ways)."""
    merged: dict[str, Any] = dict(file_values)
    merged.update(argv_values)
    return merged
