"""Hyperparameters as SageMaker hands them over: strings, nested JSON as text, booleans as words."""

from __future__ import annotations

import json

import pytest

from trainer.errors import TrainerInputError
from trainer.hyperparameters import (
    collect_raw_hyperparameters,
    parse_arguments,
    parse_hyperparameters,
    parse_value,
    read_hyperparameter_file,
)

pytestmark = pytest.mark.xdist_group("trainer")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("false", False),
        ("True", True),
        ("False", False),
        ("3", 3),
        ("0.0001", 0.0001),
        ("1e-4", 0.0001),
        ('{"r": 16, "lora_alpha": 32}', {"r": 16, "lora_alpha": 32}),
        ('["q_proj", "v_proj"]', ["q_proj", "v_proj"]),
        ('"{\\"r\\": 4}"', {"r": 4}),  # encoded twice, as the SageMaker SDK does
        ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("null", None),
    ],
)
def test_values_are_decoded_from_sagemaker_strings(text, value):
    assert parse_value(text) == value


def test_a_hyperparameters_file_of_strings_resolves_every_value(tmp_path):
    file = tmp_path / "hyperparameters.json"
    file.write_text(
        json.dumps(
            {
                "epochs": "2",
                "learning_rate": "0.0002",
                "batch_size": "4",
                "warmup_steps": "10",
                "early_stopping_patience": "3",
                "early_stopping_threshold": "0.01",
                "use_lora": "true",
                "lora_config": json.dumps(
                    {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
                ),
                "merge_adapters": "false",
                "sft_config": json.dumps(
                    {"logging_steps": 50, "eval_strategy": "steps", "bf16": "true", "fp16": "false"}
                ),
                "model_init_config": '{"attn_implementation": "sdpa", "use_cache": false}',
                "max_length": "512",
                "seed": "7",
                "sagemaker_program": '"train.py"',
                "sagemaker_submit_directory": '"s3://bucket/sourcedir.tar.gz"',
            }
        )
    )

    hp = parse_hyperparameters(read_hyperparameter_file(file))

    assert (hp.epochs, hp.learning_rate, hp.batch_size, hp.warmup_steps) == (2, 0.0002, 4, 10)
    assert (hp.early_stopping_patience, hp.early_stopping_threshold) == (3, 0.01)
    assert hp.use_lora is True
    assert hp.merge_adapters is False
    assert hp.lora_config == {
        "r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.05,
        "target_modules": ["q_proj", "v_proj"],
    }
    assert hp.sft_config == {"logging_steps": 50, "eval_strategy": "steps", "bf16": True, "fp16": False}
    assert hp.model_init_config == {"attn_implementation": "sdpa", "use_cache": False}
    assert (hp.max_length, hp.seed) == (512, 7)


def test_use_lora_alone_gets_the_product_defaults():
    hp = parse_hyperparameters({"use_lora": "true"})

    assert hp.lora_config == {"r": 8, "lora_alpha": 8, "lora_dropout": 0.0}
    assert hp.merge_adapters is False


def test_a_partial_lora_config_keeps_the_other_defaults():
    hp = parse_hyperparameters({"use_lora": "True", "lora_config": '{"r": 32}'})

    assert hp.lora_config == {"r": 32, "lora_alpha": 8, "lora_dropout": 0.0}


def test_command_line_arguments_override_the_file():
    argv = ["--epochs", "5", "--use_lora", "--learning-rate=0.001", "--sft_config", '{"logging_steps": 5}']

    raw = collect_raw_hyperparameters({"epochs": "2", "batch_size": "8"}, parse_arguments(argv))
    hp = parse_hyperparameters(raw)

    assert (hp.epochs, hp.batch_size, hp.learning_rate, hp.use_lora) == (5, 8, 0.001, True)
    assert hp.sft_config == {"logging_steps": 5}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"epoch": "3"}, "unknown hyperparameter 'epoch'"),
        ({"epochs": "0"}, "'epochs' must be greater than 0"),
        ({"batch_size": "2.5"}, "'batch_size' must be a whole number"),
        ({"use_lora": "maybe"}, "'use_lora' must be true or false"),
        ({"lora_config": '{"r": 4}'}, "lora_config is set but use_lora is not true"),
        ({"merge_adapters": "true"}, "merge_adapters needs use_lora"),
        ({"use_lora": "true", "lora_config": '{"bias": "some"}'}, "'lora_config.bias' must be one of"),
        ({"sft_config": '{"num_train_epochs": 9}'}, "set by the hyperparameter 'epochs'"),
        ({"sft_config": "[1, 2]"}, "'sft_config' must be a JSON object"),
        ({"early_stopping_patience": "0"}, "'early_stopping_patience' must be at least 1"),
        ({"distribution": "zero3"}, "'distribution' must be one of ddp, fsdp"),
        ({"sft_config": '{"fsdp": "full_shard"}'}, "set by the hyperparameter 'distribution'"),
    ],
)
def test_wrong_values_are_refused_with_a_reason(raw, message):
    with pytest.raises(TrainerInputError, match=message.replace("(", r"\(")):
        parse_hyperparameters(raw)


def test_early_stopping_may_come_as_one_object():
    hp = parse_hyperparameters({"early_stopping": '{"patience": 2, "threshold": 0.5}'})

    assert (hp.early_stopping_patience, hp.early_stopping_threshold) == (2, 0.5)
