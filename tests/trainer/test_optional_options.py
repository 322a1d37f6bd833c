"""The wider optional hyperparameters, as the API resolves them, applied by the trainer on the tiny model.

Each run goes the way a job goes: `resolve_training_parameters` (the API's checks and defaults), then
`to_trainer_hyperparameters` (what a provider hands the trainer), then the trainer on the tiny model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tunelab.domain.catalog import load_catalog
from tunelab.domain.hyperparameters import Hardware, resolve_training_parameters, to_trainer_hyperparameters

pytestmark = [pytest.mark.xdist_group("trainer"), pytest.mark.slow]

TINY = load_catalog().model("local.tiny-llama")


def trainer_values(hyperparameters: dict[str, Any], optional: dict[str, Any]) -> dict[str, str]:
    resolved, resolved_optional = resolve_training_parameters(
        hyperparameters, optional, TINY, has_validation=False, hardware=Hardware.cpu()
    )
    return to_trainer_hyperparameters(resolved, resolved_optional)


def training_arguments(checkpoint: Path) -> Any:
    """The TrainingArguments the Trainer ran with, as it saved them in its checkpoint."""
    import torch

    return torch.load(checkpoint / "training_args.bin", weights_only=False)


def test_every_option_reaches_the_trainer_and_the_adapter(run_trainer, triage_pairs):
    values = trainer_values(
        {"epochs": 1, "learning_rate": 0.01, "batch_size": 2, "warmup_steps": 0},
        {
            "use_lora": True,
            "lora_config": {"use_rslora": True, "use_dora": True},
            "sft_config": {
                "lr_scheduler_type": "constant",
                "weight_decay": 0.05,
                "max_grad_norm": 0.5,
                "max_length": 128,
                "packing": True,
                "gradient_checkpointing": True,
                "neftune_noise_alpha": 5,
                "seed": 11,
                "save_strategy": "steps",
                "save_steps": 1,
                "save_total_limit": 2,
                "logging_steps": 1,
            },
        },
    )

    run = run_trainer(values, triage_pairs[:24])

    assert run.exit_code == 0, run.failure
    # save_total_limit 2 with a checkpoint every step: only the last two are left.
    checkpoints = sorted(p.name for p in run.checkpoint_dir.glob("checkpoint-*"))
    steps = run.metrics["step"]
    assert steps >= 3
    assert checkpoints == [f"checkpoint-{steps - 1}", f"checkpoint-{steps}"]
    args = training_arguments(run.checkpoint_dir / f"checkpoint-{steps}")
    assert str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)) == "constant"
    assert (args.weight_decay, args.max_grad_norm, args.neftune_noise_alpha) == (0.05, 0.5, 5)
    assert (args.seed, args.data_seed, args.save_total_limit, args.save_steps) == (11, 11, 2, 1)
    assert (args.packing, args.max_length, args.gradient_checkpointing) == (True, 128, True)
    # A constant schedule without warm-up: every logged step at the full learning rate.
    assert {entry["learning_rate"] for entry in run.metrics["history"] if "learning_rate" in entry} == {0.01}

    adapter_config = json.loads((run.model_dir / "adapter" / "adapter_config.json").read_text())
    assert (adapter_config["use_rslora"], adapter_config["use_dora"]) == (True, True)
    summary = run.summary
    assert summary["hyperparameters"]["max_length"] == 128
    assert summary["hyperparameters"]["seed"] == 11
    recorded = summary["optional_hyperparameters"]
    assert (recorded["lora_config"]["use_rslora"], recorded["lora_config"]["use_dora"]) == (True, True)
    sft = recorded["sft_config"]
    for name, value in {
        "lr_scheduler_type": "constant",
        "weight_decay": 0.05,
        "max_grad_norm": 0.5,
        "packing": True,
        "gradient_checkpointing": True,
        "neftune_noise_alpha": 5,
        "save_strategy": "steps",
        "save_steps": 1,
        "save_total_limit": 2,
    }.items():
        assert sft[name] == value, name


def _weights(model_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_the_seed_makes_two_runs_equal_and_another_seed_differs(run_trainer, triage_pairs, tmp_path):
    def trained(seed: int, name: str) -> dict[str, Any]:
        values = trainer_values(
            {"epochs": 1, "learning_rate": 0.01, "batch_size": 4},
            {"sft_config": {"seed": seed, "weight_decay": 0.1}},
        )
        run = run_trainer(values, triage_pairs[:24], root=tmp_path / name)
        assert run.exit_code == 0, run.failure
        return _weights(run.model_dir)

    first, again, other = trained(5, "first"), trained(5, "again"), trained(6, "other")

    assert first.keys() == again.keys() == other.keys()
    assert all((first[k] == again[k]).all() for k in first)
    assert any(not (first[k] == other[k]).all() for k in first)


def test_max_length_from_the_options_leaves_longer_rows_out(run_trainer, triage_pairs):
    values = trainer_values({"epochs": 1, "batch_size": 4}, {"sft_config": {"max_length": 41}})

    run = run_trainer(values, triage_pairs[:24])

    assert run.exit_code == 0, run.failure
    rows = run.summary["rows"]["training"]
    assert run.summary["hyperparameters"]["max_length"] == 41
    assert 0 < rows["trained"] < rows["read"] == 24
