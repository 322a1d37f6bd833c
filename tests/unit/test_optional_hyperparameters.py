"""Optional hyperparameters (sagemaker and local): the schema, its defaults, and the rules between keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.model_specs import instance, model_spec
from tunelab.domain.catalog import load_catalog
from tunelab.domain.errors import ValidationFailed
from tunelab.domain.hyperparameters import (
    RESERVED_OPTIONAL_KEYS,
    Hardware,
    ResolvedOptionalHyperparameters,
    resolve_hyperparameters,
    resolve_optional_hyperparameters,
    resolve_training_parameters,
    to_trainer_hyperparameters,
)

SAGEMAKER = model_spec("sagemaker")
LOCAL = model_spec("local", name="Tiny Llama")
BEDROCK = model_spec("bedrock", name="Bedrock Test")
T4 = instance("ml.g4dn.xlarge", "NVIDIA T4", bf16=False)
A10G = instance("ml.g5.2xlarge", "NVIDIA A10G", bf16=True)
OPT = "optional_hyperparameters"


def resolve(raw: Any, model=SAGEMAKER, **kwargs: Any) -> ResolvedOptionalHyperparameters:
    kwargs.setdefault("has_validation", True)
    resolved = resolve_optional_hyperparameters(raw, model, **kwargs)
    assert resolved is not None
    return resolved


def refused(raw: Any, model=SAGEMAKER, **kwargs: Any) -> ValidationFailed:
    kwargs.setdefault("has_validation", True)
    with pytest.raises(ValidationFailed) as caught:
        resolve_optional_hyperparameters(raw, model, **kwargs)
    return caught.value


def only(error: ValidationFailed) -> tuple[str | None, str]:
    assert len(error.details) == 1, error.details
    return error.details[0].field, error.details[0].message


# --- defaults ------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, {}, "", "  ", "{}"])
def test_nothing_given_resolves_to_every_default_on_sagemaker(raw: Any) -> None:
    assert resolve(raw, has_validation=False).model_dump() == {
        "use_lora": False,
        "lora_config": None,
        "merge_adapters": False,
        "sft_config": {
            "logging_strategy": "steps",
            "logging_steps": 10,
            "eval_strategy": "no",
            "eval_steps": None,
            "fp16": False,
            "bf16": True,  # flash_attention_2 forces bf16
            "gradient_accumulation_steps": 1,
            "lr_scheduler_type": "linear",
            "weight_decay": 0.0,
            "max_grad_norm": 1.0,
            "max_length": None,  # the model's context, at most 2,048 tokens
            "packing": False,
            "gradient_checkpointing": True,  # on GPUs
            "neftune_noise_alpha": None,
            "seed": 42,
            "save_strategy": "epoch",
            "save_steps": None,
            "save_total_limit": 2,
        },
        "model_init_config": {"attn_implementation": "flash_attention_2", "use_cache": False},
        # Without validation data there is nothing to evaluate on.
        "evaluation_config": {"enabled": False, "max_rows": 100, "max_new_tokens": None, "samples": 20},
    }


def test_the_local_runtime_defaults_to_sdpa_in_fp32() -> None:
    resolved = resolve(None, LOCAL, hardware=Hardware.cpu())
    assert resolved.model_init_config.attn_implementation == "sdpa"
    assert (resolved.sft_config.bf16, resolved.sft_config.fp16) == (False, False)


def test_use_lora_alone_gets_the_default_lora_config() -> None:
    resolved = resolve({"use_lora": True})
    assert resolved.lora_config is not None
    assert resolved.lora_config.model_dump() == {
        "r": 8,
        "lora_alpha": 8,
        "lora_dropout": 0.0,
        "target_modules": None,
        "fan_in_fan_out": False,
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
    }


def test_a_partial_lora_config_is_completed() -> None:
    resolved = resolve({"use_lora": True, "lora_config": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05}})
    assert resolved.lora_config is not None
    assert (resolved.lora_config.r, resolved.lora_config.lora_alpha, resolved.lora_config.lora_dropout) == (
        16,
        32,
        0.05,
    )
    assert resolved.lora_config.bias == "none"


def test_the_contracts_example_resolves_as_written() -> None:
    example: dict[str, Any] = {
        "use_lora": True,
        "lora_config": {
            "r": 8,
            "lora_alpha": 16,
            "lora_dropout": 0.05,
            "target_modules": ["q_proj", "v_proj"],
            "fan_in_fan_out": False,
            "bias": "none",
        },
        "merge_adapters": True,
        "sft_config": {
            "logging_strategy": "steps",
            "logging_steps": 50,
            "eval_strategy": "steps",
            "eval_steps": 50,
            "bf16": True,
            "fp16": False,
            "gradient_accumulation_steps": 4,
        },
        "model_init_config": {"attn_implementation": "sdpa", "use_cache": False},
    }
    resolved = resolve(example, hardware=A10G).model_dump()
    # Every value comes back as written; the options the example leaves out take their defaults.
    for section in ("lora_config", "sft_config"):
        assert {k: resolved[section][k] for k in example[section]} == example[section]
    assert {k: resolved[k] for k in ("use_lora", "merge_adapters", "model_init_config")} == {
        k: example[k] for k in ("use_lora", "merge_adapters", "model_init_config")
    }


def test_json_text_is_read_like_the_object() -> None:
    raw = {"use_lora": True, "sft_config": {"logging_strategy": "epoch"}}
    assert resolve(json.dumps(raw, indent=2)) == resolve(raw)


def test_the_products_alternative_spellings_alpha_and_dropout() -> None:
    resolved = resolve({"use_lora": True, "lora_config": {"r": 8, "alpha": 8, "dropout": 0.05}})
    assert resolved.lora_config is not None
    assert (resolved.lora_config.lora_alpha, resolved.lora_config.lora_dropout) == (8, 0.05)


def test_both_spellings_at_once_are_refused() -> None:
    field, message = only(refused({"use_lora": True, "lora_config": {"alpha": 8, "lora_alpha": 16}}))
    assert field == f"{OPT}.lora_config.alpha"
    assert message == "Give lora_alpha or alpha (the same setting), not both."


def test_a_bad_value_under_the_alternative_spelling_names_that_spelling() -> None:
    field, message = only(refused({"use_lora": True, "lora_config": {"dropout": 2}}))
    assert field == f"{OPT}.lora_config.dropout"
    assert message.startswith("dropout must be a number from 0 up to (not including) 1")


def test_null_means_the_default() -> None:
    resolved = resolve(
        {"use_lora": True, "lora_config": {"r": None, "target_modules": None}, "sft_config": None}
    )
    assert resolved.lora_config is not None
    assert resolved.lora_config.r == 8


def test_the_resolved_values_round_trip_through_storage() -> None:
    resolved = resolve(
        {"use_lora": True, "merge_adapters": True, "lora_config": {"target_modules": "all-linear"}}
    )
    stored = json.loads(json.dumps(resolved.model_dump()))
    assert ResolvedOptionalHyperparameters.model_validate(stored) == resolved


# --- where optional hyperparameters are not taken ------------------------------------------


def test_bedrock_refuses_optional_hyperparameters() -> None:
    field, message = only(refused({"use_lora": True}, BEDROCK))
    assert field == OPT
    assert message.startswith(
        "Bedrock Test is a bedrock model, and bedrock takes no optional hyperparameters"
    )


@pytest.mark.parametrize("raw", [None, {}, "", "{}"])
def test_bedrock_with_nothing_given_has_none(raw: Any) -> None:
    assert resolve_optional_hyperparameters(raw, BEDROCK, has_validation=True) is None


# --- malformed input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ('{"use_lora": true,', "not valid JSON: Expecting property name enclosed in double quotes at line 1"),
        ('{"use_lora": true, "use_lora": false}', "the key 'use_lora' appears twice"),
        ("[1, 2]", "must be a JSON object"),
        ("true", "must be a JSON object"),
    ],
)
def test_text_that_is_not_one_json_object_is_refused(raw: str, words: str) -> None:
    field, message = only(refused(raw))
    assert field == OPT
    assert words in message


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (
            {"use_lroa": True},
            f"{OPT}.use_lroa",
            "Unknown key 'use_lroa' in optional hyperparameters (did you mean 'use_lora'?)",
        ),
        (
            {"use_lora": True, "lora_config": {"rank": 4}},
            f"{OPT}.lora_config.rank",
            "Unknown key 'rank' in lora_config; accepted: r, lora_alpha, alpha, lora_dropout, dropout, "
            "target_modules, fan_in_fan_out, bias, use_rslora, use_dora.",
        ),
        (
            {"sft_config": {"optim": "adamw"}},
            f"{OPT}.sft_config.optim",
            "accepted: logging_strategy, logging_steps",
        ),
        (
            {"model_init_config": {"torch_dtype": "bf16"}},
            f"{OPT}.model_init_config.torch_dtype",
            "accepted: attn_implementation, use_cache",
        ),
        ({"sft_config": "steps"}, f"{OPT}.sft_config", 'sft_config must be a JSON object (got "steps").'),
    ],
)
def test_unknown_keys_are_refused_listing_the_accepted_ones(
    raw: dict[str, Any], field: str, words: str
) -> None:
    got_field, message = only(refused(raw))
    assert got_field == field
    assert words in message


# --- keys owned by the fundamental and advanced hyperparameters ----------------------------


@pytest.mark.parametrize(
    ("raw", "field", "where"),
    [
        ({"epochs": 3}, f"{OPT}.epochs", "hyperparameters.epochs"),
        (
            {"sft_config": {"num_train_epochs": 3}},
            f"{OPT}.sft_config.num_train_epochs",
            "hyperparameters.epochs",
        ),
        ({"sft_config": {"max_steps": 100}}, f"{OPT}.sft_config.max_steps", "hyperparameters.epochs"),
        (
            {"sft_config": {"learning_rate": 0.1}},
            f"{OPT}.sft_config.learning_rate",
            "hyperparameters.learning_rate",
        ),
        (
            {"sft_config": {"per_device_train_batch_size": 8}},
            f"{OPT}.sft_config.per_device_train_batch_size",
            "hyperparameters.batch_size",
        ),
        (
            {"sft_config": {"per_device_eval_batch_size": 8}},
            f"{OPT}.sft_config.per_device_eval_batch_size",
            "hyperparameters.batch_size",
        ),
        (
            {"sft_config": {"warmup_ratio": 0.1}},
            f"{OPT}.sft_config.warmup_ratio",
            "hyperparameters.warmup_steps",
        ),
        ({"warmup_steps": 5}, f"{OPT}.warmup_steps", "hyperparameters.warmup_steps"),
        (
            {"early_stopping_patience": 2},
            f"{OPT}.early_stopping_patience",
            "hyperparameters.early_stopping.patience",
        ),
        (
            {"sft_config": {"early_stopping_threshold": 0.1}},
            f"{OPT}.sft_config.early_stopping_threshold",
            "hyperparameters.early_stopping.threshold",
        ),
        (
            {"model_init_config": {"extra": {"deeper": {"LearningRate": 1}}}},
            f"{OPT}.model_init_config.extra.deeper.LearningRate",
            "hyperparameters.learning_rate",
        ),
        ({"x": [{"epochCount": 2}]}, f"{OPT}.x[0].epochCount", "hyperparameters.epochs"),
    ],
)
def test_a_key_owned_by_the_hyperparameters_is_refused_at_any_depth(
    raw: dict[str, Any], field: str, where: str
) -> None:
    error = refused(raw)
    reserved = [d for d in error.details if d.field == field]
    assert len(reserved) == 1, error.details
    assert f"set {where} instead" in reserved[0].message
    assert "cannot be set in optional hyperparameters" in reserved[0].message


@given(
    key=st.sampled_from(RESERVED_OPTIONAL_KEYS),
    path=st.lists(st.sampled_from(["sft_config", "lora_config", "model_init_config", "custom"]), max_size=4),
)
@settings(max_examples=60)
def test_every_reserved_spelling_is_refused_wherever_it_hides(key: str, path: list[str]) -> None:
    raw: dict[str, Any] = {key: 1}
    for part in reversed(path):
        raw = {part: raw}
    error = refused({"use_lora": True, **raw})
    expected = ".".join([OPT, *path, key])
    assert any(d.field == expected and "instead" in d.message for d in error.details)


# --- LoRA ----------------------------------------------------------------------------------


def test_lora_config_without_use_lora_is_refused() -> None:
    field, message = only(refused({"lora_config": {"r": 4}}))
    assert field == f"{OPT}.lora_config"
    assert message.startswith('lora_config has no effect unless use_lora is true; add "use_lora": true')


LORA_BY_DEFAULT = SAGEMAKER.model_copy(update={"default_use_lora": True})


@pytest.mark.parametrize(
    ("raw", "lora", "merged", "r"),
    [
        ({}, True, True, 8),
        ({"use_lora": True}, True, True, 8),
        ({"lora_config": {"r": 16}}, True, True, 16),
        ({"merge_adapters": False}, True, False, 8),
        ({"use_lora": False}, False, False, None),
    ],
)
def test_a_model_that_trains_lora_by_default_merges_unless_told_otherwise(
    raw: dict[str, Any], lora: bool, merged: bool, r: int | None
) -> None:
    resolved = resolve(raw, LORA_BY_DEFAULT)
    assert (resolved.use_lora, resolved.merge_adapters) == (lora, merged)
    assert (resolved.lora_config.r if resolved.lora_config else None) == r


def test_merge_adapters_without_lora_is_refused() -> None:
    field, message = only(refused({"merge_adapters": True, "use_lora": False}))
    assert field == f"{OPT}.merge_adapters"
    assert "needs LoRA adapters to merge" in message


@pytest.mark.parametrize(
    ("lora", "field", "words"),
    [
        ({"r": 0}, "r", "r must be a whole number of at least 1 (got 0)."),
        ({"r": 8.5}, "r", "(got 8.5)"),
        ({"r": True}, "r", "(got true)"),
        ({"lora_alpha": "big"}, "lora_alpha", 'lora_alpha must be a whole number of at least 1 (got "big").'),
        ({"lora_dropout": 1.0}, "lora_dropout", "from 0 up to (not including) 1 (got 1)"),
        ({"lora_dropout": -0.1}, "lora_dropout", "(got -0.1)"),
        ({"bias": "some"}, "bias", 'bias must be one of none, all, lora_only (got "some").'),
        ({"fan_in_fan_out": "maybe"}, "fan_in_fan_out", "fan_in_fan_out must be true or false"),
        ({"target_modules": []}, "target_modules", "non-empty list of module names"),
        ({"target_modules": "q_proj"}, "target_modules", 'or "all-linear"'),
        ({"target_modules": ["q_proj", 3]}, "target_modules", "(got 3)"),
        ({"target_modules": ["q proj"]}, "target_modules", 'module names such as "q_proj"'),
    ],
)
def test_bad_lora_values_are_refused(lora: dict[str, Any], field: str, words: str) -> None:
    got_field, message = only(refused({"use_lora": True, "lora_config": lora}))
    assert got_field == f"{OPT}.lora_config.{field}"
    assert words in message


def test_lora_values_given_as_text_are_read() -> None:
    resolved = resolve({"use_lora": "true", "lora_config": {"r": "16", "lora_dropout": "0.1", "bias": "ALL"}})
    assert resolved.lora_config is not None
    assert (resolved.lora_config.r, resolved.lora_config.lora_dropout, resolved.lora_config.bias) == (
        16,
        0.1,
        "all",
    )


def test_target_modules_all_linear_and_duplicates() -> None:
    assert resolve(
        {"use_lora": True, "lora_config": {"target_modules": "all-linear"}}
    ).lora_config.target_modules == (  # type: ignore[union-attr]
        "all-linear"
    )
    listed = resolve({"use_lora": True, "lora_config": {"target_modules": ["q_proj", "v_proj", "q_proj"]}})
    assert listed.lora_config is not None
    assert listed.lora_config.target_modules == ["q_proj", "v_proj"]


def test_a_lora_config_too_long_for_a_sagemaker_hyperparameter_is_refused() -> None:
    modules = [f"model.layers.{i}.self_attn.q_proj" for i in range(100)]
    field, message = only(refused({"use_lora": True, "lora_config": {"target_modules": modules}}))
    assert field == f"{OPT}.lora_config.target_modules"
    assert "too long for a SageMaker hyperparameter (2500 characters)" in message


# --- logging and evaluation ----------------------------------------------------------------


def test_logging_strategy_none_is_stored_as_no() -> None:
    resolved = resolve({"sft_config": {"logging_strategy": "none", "eval_strategy": "None"}})
    assert (resolved.sft_config.logging_strategy, resolved.sft_config.eval_strategy) == ("no", "no")
    assert resolved.sft_config.logging_steps is None


def test_logging_steps_are_required_with_the_steps_strategy() -> None:
    field, message = only(refused({"sft_config": {"logging_strategy": "steps"}}))
    assert field == f"{OPT}.sft_config.logging_steps"
    assert message == "logging_steps is required when logging_strategy is steps (e.g. 50)."


def test_logging_steps_alone_mean_the_steps_strategy() -> None:
    resolved = resolve({"sft_config": {"logging_steps": 25}})
    assert (resolved.sft_config.logging_strategy, resolved.sft_config.logging_steps) == ("steps", 25)
    assert (resolved.sft_config.eval_strategy, resolved.sft_config.eval_steps) == ("steps", 25)


def test_logging_steps_with_another_strategy_are_refused() -> None:
    field, message = only(refused({"sft_config": {"logging_strategy": "epoch", "logging_steps": 5}}))
    assert field == f"{OPT}.sft_config.logging_steps"
    assert "applies only when logging_strategy is steps (it is epoch)" in message


@pytest.mark.parametrize(
    ("sft", "expected"),
    [
        ({}, ("steps", 10)),
        ({"logging_strategy": "epoch"}, ("epoch", None)),
        ({"logging_strategy": "no"}, ("epoch", None)),  # validation data is used once per epoch
        ({"logging_steps": 7, "eval_steps": 21}, ("steps", 21)),
        ({"logging_strategy": "epoch", "eval_strategy": "steps", "eval_steps": 30}, ("steps", 30)),
        ({"eval_strategy": "no"}, ("no", None)),
    ],
)
def test_evaluation_follows_logging_when_there_is_validation_data(
    sft: dict[str, Any], expected: tuple[str, int | None]
) -> None:
    resolved = resolve({"sft_config": sft}, has_validation=True)
    assert (resolved.sft_config.eval_strategy, resolved.sft_config.eval_steps) == expected


def test_without_validation_data_there_is_no_evaluation() -> None:
    assert (
        resolve({"sft_config": {"logging_steps": 5}}, has_validation=False).sft_config.eval_strategy == "no"
    )


@pytest.mark.parametrize(
    ("sft", "field"),
    [
        ({"eval_strategy": "epoch"}, "eval_strategy"),
        ({"eval_strategy": "steps"}, "eval_strategy"),
        ({"eval_steps": 5}, "eval_steps"),
    ],
)
def test_evaluation_without_validation_data_is_refused(sft: dict[str, Any], field: str) -> None:
    got_field, message = only(refused({"sft_config": sft}, has_validation=False))
    assert got_field == f"{OPT}.sft_config.{field}"
    assert "needs validation data: choose a validation split or a validation dataset" in message


def test_eval_steps_are_required_when_logging_does_not_count_steps() -> None:
    field, message = only(refused({"sft_config": {"logging_strategy": "epoch", "eval_strategy": "steps"}}))
    assert field == f"{OPT}.sft_config.eval_steps"
    assert "eval_steps is required when eval_strategy is steps" in message


def test_eval_steps_with_another_strategy_are_refused() -> None:
    field, message = only(refused({"sft_config": {"eval_strategy": "epoch", "eval_steps": 5}}))
    assert field == f"{OPT}.sft_config.eval_steps"
    assert "applies only when eval_strategy is steps (it is epoch)" in message


def test_early_stopping_with_evaluation_turned_off_is_refused() -> None:
    with pytest.raises(ValidationFailed) as caught:
        resolve_training_parameters(
            {"early_stopping": {}}, {"sft_config": {"eval_strategy": "no"}}, SAGEMAKER, has_validation=True
        )
    field, message = only(caught.value)
    assert field == f"{OPT}.sft_config.eval_strategy"
    assert "Early stopping needs evaluations" in message


def test_a_bad_strategy_lists_the_options() -> None:
    field, message = only(refused({"sft_config": {"logging_strategy": "sometimes"}}))
    assert field == f"{OPT}.sft_config.logging_strategy"
    assert message == 'logging_strategy must be one of steps, epoch, no (got "sometimes").'


@pytest.mark.parametrize("value", [0, -1, 2.5, "two"])
def test_gradient_accumulation_steps_must_be_at_least_one(value: Any) -> None:
    field, message = only(refused({"sft_config": {"gradient_accumulation_steps": value}}))
    assert field == f"{OPT}.sft_config.gradient_accumulation_steps"
    assert "whole number of at least 1" in message


# --- precision and attention ---------------------------------------------------------------


def test_boolean_text_is_accepted_for_precision() -> None:
    resolved = resolve(
        {
            "sft_config": {"fp16": "true", "bf16": "false"},
            "model_init_config": {"attn_implementation": "sdpa"},
        }
    )
    assert (resolved.sft_config.fp16, resolved.sft_config.bf16) == (True, False)


@pytest.mark.parametrize("value", ["yes", 1, "1", "on"])
def test_other_boolean_spellings_are_refused(value: Any) -> None:
    field, message = only(
        refused({"sft_config": {"fp16": value}, "model_init_config": {"attn_implementation": "sdpa"}})
    )
    assert field == f"{OPT}.sft_config.fp16"
    assert message.startswith("fp16 must be true or false")


def test_fp16_and_bf16_together_are_refused() -> None:
    field, message = only(
        refused(
            {"sft_config": {"fp16": True, "bf16": True}, "model_init_config": {"attn_implementation": "sdpa"}}
        )
    )
    assert field == f"{OPT}.sft_config"
    assert message == "fp16 and bf16 cannot both be true; choose one (or neither, for fp32)."


def test_flash_attention_forces_bf16() -> None:
    resolved = resolve({"model_init_config": {"attn_implementation": "flash_attention_2"}}, hardware=A10G)
    assert resolved.sft_config.bf16 is True


def test_fp16_with_flash_attention_is_refused() -> None:
    field, message = only(refused({"sft_config": {"fp16": True}}))
    assert field == f"{OPT}.sft_config.fp16"
    assert message.startswith(
        "flash_attention_2 (the default attention) trains in bf16, so fp16 cannot be true"
    )


def test_bf16_false_with_flash_attention_is_refused() -> None:
    field, message = only(
        refused(
            {"sft_config": {"bf16": False}, "model_init_config": {"attn_implementation": "flash_attention_2"}}
        )
    )
    assert field == f"{OPT}.sft_config.bf16"
    assert "flash_attention_2 trains in bf16, so bf16 cannot be false" in message


def test_the_default_attention_is_refused_on_a_gpu_without_bf16() -> None:
    field, message = only(refused(None, hardware=T4))
    assert field == f"{OPT}.model_init_config.attn_implementation"
    assert message.startswith(
        "flash_attention_2 (the default attention) trains in bf16, which the NVIDIA T4 GPUs of "
        "ml.g4dn.xlarge do not support; set model_init_config.attn_implementation to sdpa or eager"
    )


def test_bf16_is_refused_on_a_gpu_without_it() -> None:
    field, message = only(
        refused(
            {"sft_config": {"bf16": True}, "model_init_config": {"attn_implementation": "sdpa"}}, hardware=T4
        )
    )
    assert field == f"{OPT}.sft_config.bf16"
    assert "bf16 is not supported by the NVIDIA T4 GPUs of ml.g4dn.xlarge; use fp16 or neither" in message


def test_fp16_with_sdpa_runs_on_a_gpu_without_bf16() -> None:
    resolved = resolve(
        {"sft_config": {"fp16": True}, "model_init_config": {"attn_implementation": "sdpa"}}, hardware=T4
    )
    assert (resolved.sft_config.fp16, resolved.sft_config.bf16) == (True, False)


def test_hardware_may_be_given_as_the_instance_type_or_left_unknown() -> None:
    assert resolve(None, hardware=A10G).model_init_config.attn_implementation == "flash_attention_2"
    assert resolve(None, hardware=None).sft_config.bf16 is True
    assert Hardware.of_instance(T4).kind == "gpu_no_bf16"


def test_flash_attention_is_refused_on_the_cpu() -> None:
    field, message = only(
        refused(
            {"model_init_config": {"attn_implementation": "flash_attention_2"}},
            LOCAL,
            hardware=Hardware.cpu(),
        )
    )
    assert field == f"{OPT}.model_init_config.attn_implementation"
    assert message == (
        "flash_attention_2 needs an NVIDIA GPU, and this model trains on the local runtime's CPU; "
        "set attn_implementation to sdpa or eager."
    )


def test_an_unknown_attention_lists_the_options() -> None:
    field, message = only(refused({"model_init_config": {"attn_implementation": "flash_attention_3"}}))
    assert field == f"{OPT}.model_init_config.attn_implementation"
    assert "must be one of eager, sdpa, flash_attention_2" in message


# --- many problems, one error --------------------------------------------------------------


def test_every_problem_is_reported_in_one_error() -> None:
    error = refused(
        {
            "use_lora": True,
            "lora_config": {"r": 0, "bias": "x"},
            "sft_config": {"fp16": True, "bf16": True, "learning_rate": 1},
            "model_init_config": {"use_cache": "sometimes"},
            "junk": 1,
        },
        hardware=T4,
    )
    assert {d.field for d in error.details} >= {
        f"{OPT}.lora_config.r",
        f"{OPT}.lora_config.bias",
        f"{OPT}.sft_config",
        f"{OPT}.sft_config.learning_rate",
        f"{OPT}.model_init_config.use_cache",
        f"{OPT}.junk",
        f"{OPT}.model_init_config.attn_implementation",
    }
    assert "see details" in error.message


# --- robustness: any JSON either resolves or is refused with field paths --------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 100)
    | st.floats(-2, 2, allow_nan=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
known_keys = st.sampled_from(
    [
        "use_lora",
        "lora_config",
        "merge_adapters",
        "sft_config",
        "model_init_config",
        "r",
        "lora_alpha",
        "alpha",
        "dropout",
        "bias",
        "target_modules",
        "logging_strategy",
        "logging_steps",
        "eval_strategy",
        "eval_steps",
        "fp16",
        "bf16",
        "gradient_accumulation_steps",
        "attn_implementation",
        "use_cache",
        "epochs",
    ]
)
shaped = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-2, 64)
    | st.sampled_from(["steps", "epoch", "none", "sdpa", "true", "all-linear"]),
    lambda children: st.dictionaries(known_keys, children, max_size=5) | st.lists(children, max_size=2),
    max_leaves=15,
)


strategies = st.sampled_from(["steps", "epoch", "no", "none"])
plausible = st.fixed_dictionaries(
    {},
    optional={
        "use_lora": st.booleans(),
        "lora_config": st.fixed_dictionaries(
            {},
            optional={
                "r": st.integers(1, 64),
                "lora_alpha": st.integers(1, 64),
                "lora_dropout": st.floats(0, 0.9),
                "bias": st.sampled_from(["none", "all", "lora_only"]),
                "target_modules": st.sampled_from([None, "all-linear", ["q_proj", "v_proj"]]),
            },
        ),
        "merge_adapters": st.booleans(),
        "sft_config": st.fixed_dictionaries(
            {},
            optional={
                "logging_strategy": strategies,
                "logging_steps": st.integers(1, 100),
                "eval_strategy": strategies,
                "eval_steps": st.integers(1, 100),
                "fp16": st.booleans(),
                "bf16": st.booleans(),
                "gradient_accumulation_steps": st.integers(1, 8),
            },
        ),
        "model_init_config": st.fixed_dictionaries(
            {},
            optional={
                "attn_implementation": st.sampled_from(["eager", "sdpa", "flash_attention_2"]),
                "use_cache": st.booleans(),
            },
        ),
    },
)


@given(
    raw=plausible | plausible.map(json.dumps) | st.dictionaries(known_keys, shaped, max_size=5) | json_values,
    has_validation=st.booleans(),
    hardware=st.sampled_from([None, T4, A10G]),
)
@settings(max_examples=300, deadline=None)
def test_any_input_resolves_or_is_refused_with_field_paths(
    raw: Any, has_validation: bool, hardware: Any
) -> None:
    try:
        resolved = resolve_optional_hyperparameters(
            raw, SAGEMAKER, has_validation=has_validation, hardware=hardware
        )
    except ValidationFailed as error:
        details = error.details
        assert details
        assert all(d.field is not None and d.field.startswith(OPT) and d.message for d in details)
        return
    assert resolved is not None
    # What resolves is consistent, and the trainer can be given it.
    assert not (resolved.sft_config.fp16 and resolved.sft_config.bf16)
    if not has_validation:
        assert resolved.sft_config.eval_strategy == "no"
    if resolved.sft_config.logging_strategy == "steps":
        assert resolved.sft_config.logging_steps is not None
    if resolved.sft_config.eval_strategy == "steps":
        assert resolved.sft_config.eval_steps is not None
    if resolved.model_init_config.attn_implementation == "flash_attention_2":
        assert resolved.sft_config.bf16
    if hardware is T4:
        assert not resolved.sft_config.bf16
    # What the user set is what resolves.
    given_ = json.loads(raw) if isinstance(raw, str) and raw.strip() else raw
    sft = given_.get("sft_config") if isinstance(given_, dict) else None
    if isinstance(sft, dict) and sft.get("gradient_accumulation_steps") is not None:
        assert resolved.sft_config.gradient_accumulation_steps == sft["gradient_accumulation_steps"]
    if isinstance(sft, dict) and sft.get("logging_strategy") in ("steps", "epoch"):
        assert resolved.sft_config.logging_strategy == sft["logging_strategy"]
    assert ResolvedOptionalHyperparameters.model_validate(resolved.model_dump()) == resolved
    sagemaker_params = to_trainer_hyperparameters(
        resolve_training_parameters(None, None, SAGEMAKER, has_validation=False)[0], resolved
    )
    assert all(isinstance(v, str) and len(v) <= 2500 for v in sagemaker_params.values())


# --- the shipped catalog -------------------------------------------------------------------


def test_every_shipped_model_resolves_its_defaults_on_its_default_hardware() -> None:
    catalog = load_catalog()
    for model in catalog.models:
        if model.provider == "bedrock":
            assert resolve_optional_hyperparameters(None, model, has_validation=True) is None
            continue
        hardware = (
            catalog.instance(model.default_instance_type)
            if model.provider == "sagemaker" and model.default_instance_type
            else Hardware.cpu()
        )
        resolved = resolve(None, model, hardware=hardware)
        expected = "flash_attention_2" if model.provider == "sagemaker" else "sdpa"
        assert resolved.model_init_config.attn_implementation == expected, model.id


def test_a_shipped_bedrock_model_refuses_lora() -> None:
    model = load_catalog().model("meta.llama3-1-8b-instruct-v1:0:128k")
    field, message = only(refused('{"use_lora": true}', model))
    assert field == OPT
    assert message.startswith("Meta Llama 3.1 8B Instruct is a bedrock model")


# --- the training options (scheduler, regularisation, length, packing, NEFTune, seed, saving) ------


def test_every_training_option_is_accepted_and_resolved_as_written() -> None:
    sft = {
        "lr_scheduler_type": "cosine",
        "weight_decay": 0.01,
        "max_grad_norm": 0.5,
        "max_length": 512,
        "packing": True,
        "gradient_checkpointing": False,
        "neftune_noise_alpha": 5,
        "seed": 1234,
        "save_strategy": "steps",
        "save_steps": 100,
        "save_total_limit": 3,
    }
    resolved = resolve(
        {"use_lora": True, "lora_config": {"use_rslora": True, "use_dora": True}, "sft_config": sft}
    )
    assert {k: v for k, v in resolved.sft_config.model_dump().items() if k in sft} == sft
    assert resolved.lora_config is not None
    assert (resolved.lora_config.use_rslora, resolved.lora_config.use_dora) == (True, True)


def test_training_options_given_as_text_are_read_like_their_values() -> None:
    resolved = resolve(
        {
            "sft_config": {
                "weight_decay": "0.1",
                "packing": "true",
                "seed": "7",
                "lr_scheduler_type": " Cosine ",
            }
        }
    )
    assert (resolved.sft_config.weight_decay, resolved.sft_config.packing) == (0.1, True)
    assert (resolved.sft_config.seed, resolved.sft_config.lr_scheduler_type) == (7, "cosine")


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        (
            "lr_scheduler_type",
            "cosine_with_min_lr",
            "lr_scheduler_type must be one of linear, cosine, "
            "cosine_with_restarts, polynomial, constant, constant_with_warmup, inverse_sqrt",
        ),
        ("lr_scheduler_type", 3, "lr_scheduler_type must be one of linear"),
        ("weight_decay", 1.5, "weight_decay must be a number from 0 to 1 (got 1.5)"),
        ("weight_decay", -0.1, "weight_decay must be a number from 0 to 1 (got -0.1)"),
        ("weight_decay", True, "weight_decay must be a number from 0 to 1 (got true)"),
        ("max_grad_norm", -1, "max_grad_norm must be a number from 0 to 100 (got -1)"),
        ("max_grad_norm", "inf", "max_grad_norm must be a number from 0 to 100"),
        (
            "max_length",
            8,
            "max_length must be a whole number from 16 to 8192 (got 8); Test Model 8B's context",
        ),
        ("max_length", 8193, "max_length must be a whole number from 16 to 8192 (got 8193)"),
        ("max_length", 512.5, "max_length must be a whole number from 16 to 8192"),
        ("packing", "yes", "packing must be true or false"),
        ("gradient_checkpointing", 1, "gradient_checkpointing must be true or false"),
        (
            "neftune_noise_alpha",
            0,
            "neftune_noise_alpha must be a number greater than 0 and at most 100 (got 0)",
        ),
        ("neftune_noise_alpha", 101, "neftune_noise_alpha must be a number greater than 0 and at most 100"),
        ("seed", -1, "seed must be a whole number from 0 to 4294967295 (got -1)"),
        ("seed", 2**32, "seed must be a whole number from 0 to 4294967295"),
        ("save_strategy", "best", 'save_strategy must be one of steps, epoch, no (got "best")'),
        ("save_steps", 0, "save_steps must be a whole number of at least 1 (got 0)"),
        ("save_total_limit", 0, "save_total_limit must be a whole number from 1 to 100 (got 0)"),
        ("save_total_limit", 101, "save_total_limit must be a whole number from 1 to 100 (got 101)"),
    ],
)
def test_a_bad_training_option_is_refused_naming_the_field_and_the_range(
    key: str, value: Any, words: str
) -> None:
    field, message = only(refused({"sft_config": {key: value}}))
    assert field == f"{OPT}.sft_config.{key}"
    assert words in message


@pytest.mark.parametrize("key", ["use_rslora", "use_dora"])
def test_a_lora_switch_that_is_not_a_boolean_is_refused(key: str) -> None:
    field, message = only(refused({"use_lora": True, "lora_config": {key: "sometimes"}}))
    assert field == f"{OPT}.lora_config.{key}"
    assert message == f'{key} must be true or false (got "sometimes").'


def test_gradient_checkpointing_is_on_for_gpus_and_off_on_the_cpu_by_default() -> None:
    assert resolve(None, hardware=A10G).sft_config.gradient_checkpointing is True
    assert resolve(None, LOCAL, hardware=Hardware.cpu()).sft_config.gradient_checkpointing is False
    assert resolve({"sft_config": {"gradient_checkpointing": True}}, LOCAL).sft_config.gradient_checkpointing


def test_save_steps_alone_saves_every_that_many_steps() -> None:
    sft = resolve({"sft_config": {"save_steps": 50}}).sft_config
    assert (sft.save_strategy, sft.save_steps) == ("steps", 50)


@pytest.mark.parametrize(
    ("sft", "field", "words"),
    [
        ({"save_strategy": "steps"}, "save_steps", "save_steps is required when save_strategy is steps"),
        (
            {"save_strategy": "epoch", "save_steps": 10},
            "save_steps",
            "save_steps applies only when save_strategy is steps (it is epoch)",
        ),
        (
            {"save_strategy": "no", "save_total_limit": 3},
            "save_total_limit",
            "save_strategy is no, so no checkpoints are kept",
        ),
    ],
)
def test_saving_options_that_contradict_each_other_are_refused(
    sft: dict[str, Any], field: str, words: str
) -> None:
    got_field, message = only(refused({"sft_config": sft}))
    assert got_field == f"{OPT}.sft_config.{field}"
    assert words in message


def test_with_early_stopping_saving_follows_evaluation() -> None:
    _, optional = resolve_training_parameters(
        {"early_stopping": {}}, {"sft_config": {"eval_steps": 20}}, SAGEMAKER, has_validation=True
    )
    assert optional is not None
    assert (optional.sft_config.save_strategy, optional.sft_config.save_steps) == ("steps", 20)


@pytest.mark.parametrize(
    ("sft", "field", "words"),
    [
        (
            {"eval_steps": 20, "save_strategy": "epoch"},
            "save_strategy",
            "save_strategy must be steps (the eval_strategy)",
        ),
        (
            {"eval_steps": 20, "save_steps": 30},
            "save_steps",
            "save_steps must be a multiple of eval_steps (20) (got 30)",
        ),
    ],
)
def test_with_early_stopping_saving_apart_from_evaluation_is_refused(
    sft: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        resolve_training_parameters(
            {"early_stopping": {}}, {"sft_config": sft}, SAGEMAKER, has_validation=True
        )
    assert [(d.field, words in d.message) for d in caught.value.details] == [
        (f"{OPT}.sft_config.{field}", True)
    ]


FUNDAMENTAL_SPELLINGS = [
    ("num_train_epochs", "hyperparameters.epochs"),
    ("NumTrainEpochs", "hyperparameters.epochs"),
    ("epoch-count", "hyperparameters.epochs"),
    ("max_steps", "hyperparameters.epochs"),
    ("LR", "hyperparameters.learning_rate"),
    ("learningRate", "hyperparameters.learning_rate"),
    ("per_device_train_batch_size", "hyperparameters.batch_size"),
    ("per_gpu_train_batch_size", "hyperparameters.batch_size"),
    ("BATCH_SIZE", "hyperparameters.batch_size"),
    ("warmup_ratio", "hyperparameters.warmup_steps"),
    ("num_warmup_steps", "hyperparameters.warmup_steps"),
    ("Warmup", "hyperparameters.warmup_steps"),
    ("early_stopping_patience", "hyperparameters.early_stopping.patience"),
    ("earlyStoppingThreshold", "hyperparameters.early_stopping.threshold"),
]


@pytest.mark.parametrize(("key", "owner"), FUNDAMENTAL_SPELLINGS)
def test_fundamental_hyperparameters_stay_refused_in_sft_config_beside_the_new_options(
    key: str, owner: str
) -> None:
    error = refused({"sft_config": {"weight_decay": 0.1, "seed": 3, key: 1}})
    assert [d.field for d in error.details] == [f"{OPT}.sft_config.{key}"]
    assert f"set {owner} instead" in error.details[0].message


def test_max_length_and_seed_reach_the_trainer_as_its_own_hyperparameters() -> None:
    resolved, optional = resolve_training_parameters(
        None,
        {"sft_config": {"max_length": 256, "seed": 9, "neftune_noise_alpha": 5}},
        SAGEMAKER,
        has_validation=False,
    )
    params = to_trainer_hyperparameters(resolved, optional)
    assert (params["max_length"], params["seed"]) == ("256", "9")
    sft = json.loads(params["sft_config"])
    assert not {"max_length", "seed"} & set(sft)
    assert sft["neftune_noise_alpha"] == 5


# --- evaluation after training ----------------------------------------------------------------


def test_with_validation_data_the_evaluation_runs_by_default_on_100_rows() -> None:
    evaluation = resolve(None, has_validation=True).evaluation_config
    expected = {"enabled": True, "max_rows": 100, "max_new_tokens": None, "samples": 20}
    assert evaluation.model_dump() == expected


def test_the_evaluation_can_be_turned_off_and_sized() -> None:
    assert not resolve({"evaluation_config": {"enabled": False}}).evaluation_config.enabled
    sized = resolve({"evaluation_config": {"max_rows": 40, "max_new_tokens": 32, "samples": 0}})
    assert (sized.evaluation_config.max_rows, sized.evaluation_config.max_new_tokens) == (40, 32)
    assert sized.evaluation_config.samples == 0


def test_asking_for_an_evaluation_without_validation_data_is_refused() -> None:
    field, message = only(refused({"evaluation_config": {"enabled": True}}, has_validation=False))
    assert field == f"{OPT}.evaluation_config.enabled"
    assert "needs validation data" in message


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("max_rows", 0, "from 1 to 1000"),
        ("max_rows", 5000, "from 1 to 1000"),
        ("max_new_tokens", 2048, "from 1 to 1024"),
        ("samples", 101, "from 0 to 100"),
        ("enabled", "maybe", "true or false"),
        ("rows", 10, "max_rows"),  # an unknown key names the one meant
    ],
)
def test_bad_evaluation_settings_are_refused_naming_the_key(key: str, value: Any, says: str) -> None:
    field, message = only(refused({"evaluation_config": {key: value}}))
    assert field == f"{OPT}.evaluation_config.{key}"
    assert says in message


def test_the_trainer_gets_the_evaluation_settings_as_json() -> None:
    optional = resolve({"evaluation_config": {"max_rows": 40}}, LOCAL, hardware=Hardware.cpu())
    out = to_trainer_hyperparameters(resolve_hyperparameters({}, LOCAL, has_validation=True), optional)
    assert json.loads(out["evaluation_config"]) == {"enabled": True, "max_rows": 40, "samples": 20}
