"""Fundamental and advanced hyperparameters: checked against the model, defaults filled, mapped to the
provider's names and to the trainer's hyperparameters."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from tests.unit.model_specs import model_spec
from tunelab.domain.catalog import IntRange, load_catalog
from tunelab.domain.errors import ValidationFailed
from tunelab.domain.hyperparameters import (
    HyperparametersIn,
    ResolvedHyperparameters,
    check_provider_split,
    has_validation_data,
    plain_number,
    provider_splits_validation,
    resolve_hyperparameters,
    resolve_optional_hyperparameters,
    resolve_training_parameters,
    to_provider_params,
    to_trainer_hyperparameters,
)
from tunelab.entrypoints.api.errors import status_of

TRAINER = model_spec("sagemaker")
COHERE_LIKE = model_spec(
    "bedrock",
    name="Command Test",
    batch_size=IntRange(min=8, max=8, default=8),
    warmup_steps=None,
    eval_percentage=IntRange(min=5, max=50, default=20),
)
LLAMA_LIKE = model_spec(
    "bedrock",
    name="Llama Test",
    batch_size=IntRange(min=1, max=1, default=1),
    warmup_steps=None,
    early_stopping=False,
)


def refused(request: Any, model=TRAINER, *, has_validation: bool = True) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        resolve_hyperparameters(request, model, has_validation=has_validation)
    return caught.value


def fields(error: ValidationFailed) -> list[str | None]:
    return [d.field for d in error.details]


# --- defaults ------------------------------------------------------------------------------


@pytest.mark.parametrize("request_", [None, {}, HyperparametersIn()])
def test_omitted_values_take_the_models_defaults(request_: Any) -> None:
    resolved = resolve_hyperparameters(request_, TRAINER, has_validation=False)
    assert resolved.model_dump() == {
        "epochs": 3,
        "learning_rate": 0.0001,
        "batch_size": 4,
        "warmup_steps": 10,
        "early_stopping": None,
    }


def test_given_values_are_kept_and_the_rest_defaulted() -> None:
    resolved = resolve_hyperparameters({"epochs": 5, "batch_size": 16}, TRAINER, has_validation=False)
    assert (resolved.epochs, resolved.batch_size, resolved.learning_rate, resolved.warmup_steps) == (
        5,
        16,
        1e-4,
        10,
    )


def test_unsupported_advanced_values_resolve_to_null() -> None:
    resolved = resolve_hyperparameters(None, LLAMA_LIKE, has_validation=True)
    assert resolved.warmup_steps is None
    assert resolved.early_stopping is None
    assert resolved.batch_size == 1


def test_the_bounds_themselves_are_accepted() -> None:
    resolved = resolve_hyperparameters(
        {"epochs": 10, "learning_rate": 5e-6, "warmup_steps": 0}, TRAINER, has_validation=False
    )
    assert (resolved.epochs, resolved.learning_rate, resolved.warmup_steps) == (10, 5e-6, 0)


# --- ranges --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "field", "words"),
    [
        (
            {"epochs": 0},
            "hyperparameters.epochs",
            "epochs must be between 1 and 10 for Test Model 8B (got 0).",
        ),
        ({"epochs": 11}, "hyperparameters.epochs", "between 1 and 10"),
        (
            {"learning_rate": 0.000001},
            "hyperparameters.learning_rate",
            "learning_rate must be between 0.000005 and 0.1 for Test Model 8B (got 0.000001).",
        ),
        ({"learning_rate": 0.5}, "hyperparameters.learning_rate", "between 0.000005 and 0.1"),
        ({"batch_size": 65}, "hyperparameters.batch_size", "batch_size must be between 1 and 64"),
        ({"warmup_steps": -1}, "hyperparameters.warmup_steps", "warmup_steps must be between 0 and 1000"),
    ],
)
def test_out_of_range_names_the_allowed_range(request_: dict[str, Any], field: str, words: str) -> None:
    error = refused(request_)
    assert fields(error) == [field]
    assert words in error.details[0].message


def test_a_fixed_value_is_stated_as_such() -> None:
    error = refused({"batch_size": 4}, LLAMA_LIKE)
    assert error.details[0].message == "batch_size must be 1 for Llama Test (got 4)."


def test_every_problem_is_reported_at_once() -> None:
    error = refused({"epochs": 99, "learning_rate": 9.0, "batch_size": 0, "early_stopping": {"patience": 0}})
    assert fields(error) == [
        "hyperparameters.epochs",
        "hyperparameters.learning_rate",
        "hyperparameters.batch_size",
        "hyperparameters.early_stopping.patience",
    ]
    assert error.message.startswith("4 problems with the hyperparameters:")
    assert status_of(error) == 400


# --- what the model does not support -------------------------------------------------------


def test_an_unsupported_advanced_hyperparameter_is_refused() -> None:
    error = refused({"warmup_steps": 5}, LLAMA_LIKE)
    assert fields(error) == ["hyperparameters.warmup_steps"]
    assert error.message == (
        "Llama Test does not support warmup_steps; remove it. It accepts: epochs, learning_rate, batch_size."
    )


def test_early_stopping_on_a_model_without_it_is_refused() -> None:
    error = refused({"early_stopping": {"patience": 2}}, LLAMA_LIKE)
    assert fields(error) == ["hyperparameters.early_stopping"]
    assert "Llama Test does not support early stopping" in error.message


# --- early stopping ------------------------------------------------------------------------


def test_early_stopping_without_validation_data_is_refused() -> None:
    error = refused({"early_stopping": {"patience": 2}}, has_validation=False)
    assert fields(error) == ["hyperparameters.early_stopping"]
    assert "needs validation data" in error.message


def test_the_trainer_stops_early_only_when_asked() -> None:
    assert resolve_hyperparameters(None, TRAINER, has_validation=True).early_stopping is None
    on = resolve_hyperparameters({"early_stopping": {}}, TRAINER, has_validation=True)
    assert on.early_stopping is not None
    assert on.early_stopping.model_dump() == {"patience": 3, "threshold": 0.01}


def test_a_partial_early_stopping_is_completed_with_defaults() -> None:
    resolved = resolve_hyperparameters({"early_stopping": {"threshold": 0.05}}, TRAINER, has_validation=True)
    assert resolved.early_stopping is not None
    assert (resolved.early_stopping.patience, resolved.early_stopping.threshold) == (3, 0.05)


def test_a_provider_that_always_stops_early_shows_its_defaults() -> None:
    resolved = resolve_hyperparameters(None, COHERE_LIKE, has_validation=True)
    assert resolved.early_stopping is not None
    assert resolved.early_stopping.patience == 3
    overridden = resolve_hyperparameters(
        {"early_stopping": {"patience": 7}}, COHERE_LIKE, has_validation=True
    )
    assert overridden.early_stopping is not None
    assert overridden.early_stopping.patience == 7


def test_a_provider_that_splits_for_itself_always_has_validation_data() -> None:
    assert has_validation_data("none", COHERE_LIKE)
    assert not has_validation_data("none", TRAINER)
    assert has_validation_data("split", TRAINER)
    assert has_validation_data("dataset", LLAMA_LIKE)


# --- malformed input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "field", "words"),
    [
        ({"num_train_epochs": 3}, "hyperparameters.num_train_epochs", "(did you mean 'epochs'?)"),
        ({"epochCount": 3}, "hyperparameters.epochCount", "(did you mean 'epochs'?)"),
        ({"learning_rte": 0.1}, "hyperparameters.learning_rte", "(did you mean 'learning_rate'?)"),
        (
            {"early_stopping": {"patients": 2}},
            "hyperparameters.early_stopping.patients",
            "accepted: patience",
        ),
        ({"epochs": True}, "hyperparameters.epochs", "not true or false"),
        ({"epochs": 2.5}, "hyperparameters.epochs", "fractional part"),
        ({"learning_rate": "fast"}, "hyperparameters.learning_rate", "valid number"),
        ({"early_stopping": 3}, "hyperparameters.early_stopping", "early_stopping"),
        ([3], "hyperparameters", "must be a JSON object"),
    ],
)
def test_malformed_hyperparameters_name_the_field(request_: Any, field: str, words: str) -> None:
    error = refused(request_)
    assert fields(error) == [field]
    assert words in error.details[0].message


def test_another_request_model_of_the_same_shape_is_read_as_its_json() -> None:
    class EarlyStopping(BaseModel):
        patience: int | None = None

    class Hyperparameters(BaseModel):
        epochs: int | None = None
        early_stopping: EarlyStopping | None = None

    resolved = resolve_hyperparameters(
        Hyperparameters(epochs=2, early_stopping=EarlyStopping()), TRAINER, has_validation=True
    )
    assert resolved.epochs == 2
    assert resolved.early_stopping is not None
    assert resolved.early_stopping.patience == 3
    assert resolve_hyperparameters(Hyperparameters(), TRAINER, has_validation=True).early_stopping is None


def test_whole_floats_and_numeric_strings_are_read_as_numbers() -> None:
    resolved = resolve_hyperparameters(
        {"epochs": 4.0, "learning_rate": "0.0002"}, TRAINER, has_validation=False
    )
    assert (resolved.epochs, resolved.learning_rate) == (4, 0.0002)


def test_in_a_request_model_an_unknown_key_lists_the_accepted_ones() -> None:
    class Body(BaseModel):
        hyperparameters: HyperparametersIn

    with pytest.raises(ValidationError) as caught:
        Body.model_validate({"hyperparameters": {"epochs": 2, "lr": 0.1}})
    (error,) = caught.value.errors()
    assert error["loc"] == ("hyperparameters",)
    assert "Unknown key 'lr' in hyperparameters (did you mean 'learning_rate'?)" in error["msg"]


# --- provider parameters -------------------------------------------------------------------


def test_provider_params_use_the_providers_names_and_strings() -> None:
    resolved = resolve_hyperparameters(
        {"epochs": 2, "learning_rate": 0.00001}, COHERE_LIKE, has_validation=True
    )
    assert to_provider_params(resolved, COHERE_LIKE) == {
        "epochCount": "2",
        "learningRate": "0.00001",
        "batchSize": "8",
        "earlyStoppingPatience": "3",
        "earlyStoppingThreshold": "0.01",
    }


def test_provider_params_carry_the_providers_own_split() -> None:
    resolved = resolve_hyperparameters(None, COHERE_LIKE, has_validation=True)
    params = to_provider_params(resolved, COHERE_LIKE, provider_split_percent=10)
    assert params["evalPercentage"] == "10"


def test_a_provider_split_outside_its_range_is_refused() -> None:
    resolved = resolve_hyperparameters(None, COHERE_LIKE, has_validation=True)
    with pytest.raises(ValidationFailed) as caught:
        to_provider_params(resolved, COHERE_LIKE, provider_split_percent=60)
    assert fields(caught.value) == ["validation.percent"]
    assert "between 5 and 50 percent" in caught.value.message


def test_the_split_percentage_is_checked_up_front_for_a_self_splitting_provider() -> None:
    assert provider_splits_validation(COHERE_LIKE)
    assert not provider_splits_validation(TRAINER)
    check_provider_split(5, COHERE_LIKE)
    check_provider_split(3, TRAINER)  # tunelab splits: any percentage the API allows
    with pytest.raises(ValidationFailed) as caught:
        check_provider_split(3, COHERE_LIKE)
    assert fields(caught.value) == ["validation.percent"]
    assert (
        caught.value.message
        == "The validation split must be between 5 and 50 percent for Command Test (got 3)."
    )


def test_provider_params_leave_out_what_the_model_does_not_take() -> None:
    resolved = resolve_hyperparameters(None, LLAMA_LIKE, has_validation=True)
    assert to_provider_params(resolved, LLAMA_LIKE) == {
        "epochCount": "3",
        "learningRate": "0.0001",
        "batchSize": "1",
    }


@pytest.mark.parametrize(
    ("value", "text"), [(1e-05, "0.00001"), (5e-06, "0.000005"), (0.0002, "0.0002"), (10.0, "10"), (3, "3")]
)
def test_numbers_are_written_without_exponents(value: float, text: str) -> None:
    assert plain_number(value) == text


# --- the trainer's hyperparameters ---------------------------------------------------------


def test_trainer_hyperparameters_are_strings_with_json_configs() -> None:
    resolved, optional = resolve_training_parameters(
        {"epochs": 2, "early_stopping": {"patience": 2}},
        {
            "use_lora": True,
            "lora_config": {"r": 16},
            "sft_config": {"gradient_accumulation_steps": 4, "max_length": 2048, "seed": 7},
        },
        TRAINER,
        has_validation=True,
    )
    params = to_trainer_hyperparameters(resolved, optional)
    assert all(isinstance(v, str) for v in params.values())
    assert {k: params[k] for k in ("epochs", "learning_rate", "batch_size", "warmup_steps", "seed")} == {
        "epochs": "2",
        "learning_rate": "0.0001",
        "batch_size": "4",
        "warmup_steps": "10",
        "seed": "7",
    }
    assert (params["early_stopping_patience"], params["early_stopping_threshold"]) == ("2", "0.01")
    assert (params["use_lora"], params["merge_adapters"], params["max_length"]) == ("true", "false", "2048")
    assert json.loads(params["lora_config"])["r"] == 16
    assert json.loads(params["sft_config"])["gradient_accumulation_steps"] == 4
    # The trainer takes max_length and seed as hyperparameters of their own, not in sft_config.
    assert not {"max_length", "seed"} & set(json.loads(params["sft_config"]))
    assert json.loads(params["model_init_config"]) == {
        "attn_implementation": "flash_attention_2",
        "use_cache": False,
    }


def test_trainer_hyperparameters_leave_out_what_is_off() -> None:
    resolved = resolve_hyperparameters(None, TRAINER, has_validation=False)
    optional = resolve_optional_hyperparameters(
        {"sft_config": {"logging_strategy": "epoch"}}, TRAINER, has_validation=False
    )
    params = to_trainer_hyperparameters(resolved, optional)
    # Absent, not null: the trainer hands sft_config to the library, whose defaults apply.
    assert json.loads(params["sft_config"]) == {
        "logging_strategy": "epoch",
        "eval_strategy": "no",
        "fp16": False,
        "bf16": True,
        "gradient_accumulation_steps": 1,
        "lr_scheduler_type": "linear",
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "packing": False,
        "gradient_checkpointing": True,
        "save_strategy": "epoch",
        "save_total_limit": 2,
    }
    assert "early_stopping_patience" not in params
    assert "max_length" not in params  # the trainer's default: the model's context, at most 2,048
    assert "lora_config" not in params
    assert "max_length" not in params
    assert params["use_lora"] == "false"
    assert params["seed"] == "42"


def test_both_resolvers_report_their_problems_together() -> None:
    with pytest.raises(ValidationFailed) as caught:
        resolve_training_parameters(
            {"epochs": 0}, {"sft_config": {"num_train_epochs": 2}}, TRAINER, has_validation=False
        )
    assert fields(caught.value) == [
        "hyperparameters.epochs",
        "optional_hyperparameters.sft_config.num_train_epochs",
    ]


def test_the_resolved_values_round_trip_through_storage() -> None:
    resolved = resolve_hyperparameters({"early_stopping": {}}, TRAINER, has_validation=True)
    stored = json.loads(json.dumps(resolved.model_dump()))
    assert ResolvedHyperparameters.model_validate(stored) == resolved


# --- the shipped catalog -------------------------------------------------------------------

CATALOG = load_catalog()


def test_every_shipped_model_resolves_its_own_defaults() -> None:
    for model in CATALOG.models:
        for has_validation in (False, True):
            resolved = resolve_hyperparameters(None, model, has_validation=has_validation)
            assert resolved.epochs == model.hyperparameters.epochs.default
            if model.provider == "bedrock":
                assert to_provider_params(resolved, model)["epochCount"] == str(resolved.epochs)
            else:
                assert to_trainer_hyperparameters(resolved, None)["epochs"] == str(resolved.epochs)


def test_cohere_command_on_bedrock_sends_its_early_stopping_and_split() -> None:
    model = CATALOG.model("cohere.command-text-v14:7:4k")
    resolved = resolve_hyperparameters(
        {"epochs": 2}, model, has_validation=has_validation_data("split", model)
    )
    assert to_provider_params(resolved, model, provider_split_percent=10) == {
        "epochCount": "2",
        "learningRate": "0.00001",
        "batchSize": "8",
        "earlyStoppingPatience": "6",
        "earlyStoppingThreshold": "0.01",
        "evalPercentage": "10",
    }


def test_llama_on_bedrock_takes_batch_size_one_only() -> None:
    model = CATALOG.model("meta.llama3-1-8b-instruct-v1:0:128k")
    error = refused({"batch_size": 2, "warmup_steps": 5}, model)
    assert fields(error) == ["hyperparameters.batch_size", "hyperparameters.warmup_steps"]
    assert error.details[0].message == "batch_size must be 1 for Meta Llama 3.1 8B Instruct (got 2)."


def test_nova_warmup_steps_go_to_bedrock_under_its_name() -> None:
    model = CATALOG.model("amazon.nova-micro-v1:0:128k")
    resolved = resolve_hyperparameters({"warmup_steps": 20}, model, has_validation=False)
    assert to_provider_params(resolved, model)["learningRateWarmupSteps"] == "20"
    assert "between 1 and 5" in refused({"epochs": 6}, model).message


def test_a_sagemaker_model_from_the_catalog_stops_early_when_asked() -> None:
    model = CATALOG.model("sagemaker.qwen2-5-7b-instruct")
    resolved = resolve_hyperparameters({"early_stopping": {"patience": 5}}, model, has_validation=True)
    assert resolved.early_stopping is not None
    params = to_trainer_hyperparameters(resolved, None)
    assert params["early_stopping_patience"] == "5"
