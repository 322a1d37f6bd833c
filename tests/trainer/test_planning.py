"""Device rules and SFTConfig defaults, checked without a GPU: what a run on one would use."""

from __future__ import annotations

import pytest
import torch

from trainer.errors import TrainerInputError
from trainer.hyperparameters import parse_hyperparameters
from trainer.planning import build_sft_arguments, plan_model_init

pytestmark = pytest.mark.xdist_group("trainer")


def _sft(raw: dict[str, str], *, has_validation: bool, on_gpu: bool = False) -> dict[str, object]:
    hp = parse_hyperparameters(raw)
    plan = plan_model_init(hp, on_gpu=on_gpu, flash_attention_available=True)
    return build_sft_arguments(
        hp, plan, output_dir="/tmp/checkpoints", has_validation=has_validation, max_length=512, on_gpu=on_gpu
    )


def test_a_gpu_with_flash_attention_uses_it_in_bf16():
    hp = parse_hyperparameters({"sft_config": '{"fp16": "true"}'})

    plan = plan_model_init(hp, on_gpu=True, flash_attention_available=True)

    assert plan.attn_implementation == "flash_attention_2"
    assert (plan.bf16, plan.fp16) == (True, False)
    assert plan.model_init_kwargs["dtype"] is torch.bfloat16
    assert plan.recorded_model_init["dtype"] == "bfloat16"
    assert any("forces bf16" in note for note in plan.notes)


def test_a_gpu_without_flash_attn_falls_back_to_sdpa_and_says_so():
    plan = plan_model_init(parse_hyperparameters({}), on_gpu=True, flash_attention_available=False)

    assert plan.attn_implementation == "sdpa"
    assert (plan.bf16, plan.fp16) == (False, False)
    assert plan.notes == ["the flash-attn package is not installed: using sdpa instead of flash_attention_2"]


def test_the_cpu_falls_back_to_sdpa_and_fp32():
    hp = parse_hyperparameters({"sft_config": '{"fp16": true}', "model_init_config": '{"use_cache": "true"}'})

    plan = plan_model_init(hp, on_gpu=False, flash_attention_available=False)

    assert plan.attn_implementation == "sdpa"
    assert (plan.bf16, plan.fp16) == (False, False)
    assert plan.model_init_kwargs["use_cache"] is True
    assert len(plan.notes) == 2


def test_eval_steps_default_to_logging_steps_with_validation_data():
    arguments = _sft({"sft_config": '{"logging_steps": 7}'}, has_validation=True)

    assert (arguments["eval_strategy"], arguments["eval_steps"]) == ("steps", 7)
    assert arguments["padding_free"] is True
    assert arguments["max_length"] is None  # rows over max_length were dropped before


def test_early_stopping_saves_at_each_evaluation_and_keeps_the_best():
    arguments = _sft({"early_stopping_patience": "2"}, has_validation=True)

    assert (arguments["save_strategy"], arguments["save_steps"]) == ("steps", 10)
    assert arguments["load_best_model_at_end"] is True
    assert arguments["metric_for_best_model"] == "eval_loss"


def test_gradient_checkpointing_is_on_for_a_gpu_and_may_be_turned_off():
    assert _sft({}, has_validation=False, on_gpu=True)["activation_checkpointing"] is True
    off = _sft({"sft_config": '{"gradient_checkpointing": "false"}'}, has_validation=False, on_gpu=True)
    assert off["activation_checkpointing"] is False


@pytest.mark.parametrize(
    ("raw", "has_validation", "message"),
    [
        ({"early_stopping_patience": "2"}, False, "early stopping needs validation data"),
        ({"sft_config": '{"eval_strategy": "steps"}'}, False, "there is no validation data"),
        ({"sft_config": '{"not_a_field": 1}'}, False, "sft_config has no field 'not_a_field'"),
        ({"sft_config": '{"bf16": "maybe"}'}, False, "sft_config.bf16 must be true or false"),
    ],
)
def test_impossible_combinations_are_refused(raw, has_validation, message):
    with pytest.raises(TrainerInputError, match=message):
        _sft(raw, has_validation=has_validation)


def test_bf16_trains_bf16_weights_with_any_attention_and_fp16_keeps_fp32_weights():
    # The memory model counts 8 bytes a parameter for a full bf16 fine-tune: the weights must be bf16
    # even where flash attention is missing and sdpa runs instead.
    bf16 = plan_model_init(
        parse_hyperparameters(
            {"sft_config": '{"bf16": true}', "model_init_config": '{"attn_implementation": "sdpa"}'}
        ),
        on_gpu=True,
        flash_attention_available=False,
    )
    assert bf16.model_init_kwargs["dtype"] is torch.bfloat16
    fp16 = plan_model_init(
        parse_hyperparameters(
            {"sft_config": '{"fp16": true}', "model_init_config": '{"attn_implementation": "sdpa"}'}
        ),
        on_gpu=True,
        flash_attention_available=False,
    )
    assert "dtype" not in fp16.model_init_kwargs
    assert fp16.recorded_model_init["dtype"] == "float32"


def test_fsdp_shards_with_fsdp2_and_its_own_activation_checkpointing():
    hp = parse_hyperparameters({"distribution": "fsdp"})
    plan = plan_model_init(hp, on_gpu=True, flash_attention_available=True)
    arguments = build_sft_arguments(
        hp, plan, output_dir="/tmp/c", has_validation=False, max_length=512, on_gpu=True, world_size=8
    )
    assert arguments["fsdp"] == "full_shard auto_wrap"
    config = arguments["fsdp_config"]
    assert (config["version"], config["state_dict_type"], config["cpu_ram_efficient_loading"]) == (
        2,
        "SHARDED_STATE_DICT",
        True,
    )
    assert config["activation_checkpointing"] is True
    checkpointing = arguments.get("activation_checkpointing", arguments.get("gradient_checkpointing"))
    assert checkpointing is False  # the Trainer's own would gather each layer a second time


def test_fsdp_with_one_process_or_ddp_does_not_shard():
    for raw, world in (({"distribution": "fsdp"}, 1), ({"distribution": "ddp"}, 8), ({}, 8)):
        hp = parse_hyperparameters(raw)
        plan = plan_model_init(hp, on_gpu=True, flash_attention_available=True)
        arguments = build_sft_arguments(
            hp, plan, output_dir="/tmp/c", has_validation=False, max_length=512, on_gpu=True, world_size=world
        )
        assert "fsdp" not in arguments, (raw, world)
