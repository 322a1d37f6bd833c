"""Sharded training (FSDP2 through accelerate) on 2 CPU processes with gloo, on the tiny model.

The trainer re-runs itself under torchrun when SageMaker says there are 2 GPUs (`SM_NUM_GPUS`), and
shards the model when its `distribution` hyperparameter says fsdp (what tunelab's memory model sets
where one GPU cannot hold a job). Compared with one process training the same global batch (8 rows a
step = 2 processes × 4), with a constant learning rate so that a run stopped after its first epoch
and resumed for the second follows the same schedule as one uninterrupted run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.trainer.conftest import (
    TRAINER_DIR,
    Pair,
    TrainerRun,
    prepare_job,
)

# Both processes share this machine's two cores: one thread each.
pytestmark = pytest.mark.xdist_group("sharded")

CONSTANT = {"lr_scheduler_type": "constant"}
BASE = {"batch_size": 4, "learning_rate": 0.003, "warmup_steps": 0, "sft_config": CONSTANT}
# Loss curves of the sharded and the single-process run agree to this relative difference (measured:
# about 1e-6 for a full fine-tune; summation order differs between one and two processes).
LOSS_TOLERANCE = 1e-3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_sharded(
    root: Path,
    tiny_model_dir: Path,
    train: Sequence[Pair],
    hyperparameters: dict[str, Any],
    validation: Sequence[Pair] | None = None,
) -> TrainerRun:
    """`python trainer/train.py` as SageMaker starts it on an instance with 2 GPUs (here: 2 CPU processes)."""
    env = prepare_job(root, tiny_model_dir, hyperparameters, train, validation)
    env.update(SM_NUM_GPUS="2", TUNELAB_MASTER_PORT=str(_free_port()), OMP_NUM_THREADS="1")
    completed = subprocess.run(
        [sys.executable, str(TRAINER_DIR / "train.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    run = TrainerRun(
        exit_code=completed.returncode,
        root=root,
        model_dir=root / "model",
        output_data_dir=root / "output" / "data",
        checkpoint_dir=root / "checkpoints",
        failure_file=root / "output" / "failure",
    )
    if run.exit_code != 0:  # the whole story in the captured output (an assertion's text is cut short)
        print(completed.stdout[-6000:], "\n----- stderr\n", completed.stderr[-6000:])
    assert run.exit_code == 0, (run.failure, completed.stdout[-3000:], completed.stderr[-3000:])
    return run


def losses(run: TrainerRun) -> dict[int, float]:
    return {entry["step"]: entry["train_loss"] for entry in run.metrics["history"] if "train_loss" in entry}


def test_fsdp_on_two_processes_matches_one_process_resumes_and_saves_a_loadable_model(
    tmp_path: Path, tiny_model_dir: Path, triage_pairs: list[Pair], run_trainer: Any
) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    single = run_trainer({**BASE, "batch_size": 8, "epochs": 2}, triage_pairs, root=tmp_path / "single")
    assert single.exit_code == 0, single.failure
    expected = losses(single)
    assert sorted(expected) == [10, 20, 30, 40, 50]  # 200 rows, 8 a step: 25 steps an epoch

    sharded_root = tmp_path / "sharded"
    first = run_sharded(
        sharded_root, tiny_model_dir, triage_pairs, {**BASE, "distribution": "fsdp", "epochs": 1}
    )
    assert first.summary["device"]["distribution"] == "fsdp"
    assert first.summary["device"]["processes"] == 2
    curve = losses(first)
    assert sorted(curve) == [10, 20]
    # Checkpoints are sharded: each process wrote its part, no gathered optimizer file.
    checkpoint = first.checkpoint_dir / "checkpoint-25"
    assert (checkpoint / "pytorch_model_fsdp_0").is_dir()
    assert not (checkpoint / "optimizer.pt").exists()

    # The same job asked for a second epoch: it resumes from checkpoint-25 and continues the count.
    resumed = run_sharded(
        sharded_root, tiny_model_dir, triage_pairs, {**BASE, "distribution": "fsdp", "epochs": 2}
    )
    assert resumed.summary["metrics"]["resumed_from_step"] == 25
    assert resumed.metrics["step"] == 50
    after = losses(resumed)
    assert sorted(after) == [30, 40, 50]
    # The first log after the resume averages only the 5 steps since it (26-30, not 21-30): left out.
    curve.update({step: loss for step, loss in after.items() if step != 30})
    assert sorted(curve) == [10, 20, 40, 50]
    for step, loss in curve.items():
        assert loss == pytest.approx(expected[step], rel=LOSS_TOLERANCE), step

    # The final save gathered the shards into ordinary safetensors that load, with the weights the
    # single process trained.
    model = AutoModelForCausalLM.from_pretrained(resumed.model_dir)
    assert model.config.use_cache is True
    ours, theirs = (
        load_file(resumed.model_dir / "model.safetensors"),
        load_file(single.model_dir / "model.safetensors"),
    )
    assert set(ours) == set(theirs)
    assert max(float((ours[k] - theirs[k]).abs().max()) for k in ours) < 1e-3


def test_fsdp_lora_writes_the_adapter_and_a_merged_copy_that_loads(
    tmp_path: Path, tiny_model_dir: Path, triage_pairs: list[Pair]
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run = run_sharded(
        tmp_path / "lora",
        tiny_model_dir,
        triage_pairs,
        {**BASE, "epochs": 1, "distribution": "fsdp", "use_lora": True, "lora_config": {"r": 8}},
    )
    summary = run.summary
    assert summary["device"]["distribution"] == "fsdp"
    assert summary["artifacts"]["merged"] is False
    assert summary["artifacts"]["merged_variant"] == "merged/"
    assert (run.model_dir / "adapter_config.json").is_file()
    assert not (run.model_dir / "config.json").exists()

    # The merged copy (gathered, then merged on rank 0 from the saved adapter) equals the adapter applied
    # to the base by hand, and loads on its own.
    merged_dir = run.output_data_dir / "merged"
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    by_hand = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(run.model_dir / "adapter")
    ).merge_and_unload()
    theirs = by_hand.state_dict()
    for name, tensor in merged.state_dict().items():
        assert torch.allclose(tensor, theirs[name], atol=1e-6), name
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert any(not torch.equal(tensor, base[name]) for name, tensor in merged.state_dict().items())
    assert os.path.isfile(merged_dir / "tokenizer.json")


def test_sharded_full_fine_tuning_in_bf16_keeps_bf16_weights(
    tmp_path: Path, tiny_model_dir: Path, triage_pairs: list[Pair]
) -> None:
    # accelerate's bf16 mixed precision would make fp32 master copies of every trained weight under
    # FSDP2 (16 bytes a parameter, twice what the memory model counts, and an fp32 model saved): the
    # trainer trains bf16 weights in pure bf16 instead, as one process does.
    from safetensors import safe_open

    run = run_sharded(
        tmp_path / "bf16",
        tiny_model_dir,
        triage_pairs[:64],
        {**BASE, "epochs": 1, "distribution": "fsdp", "sft_config": {**CONSTANT, "bf16": True}},
    )
    assert run.summary["device"]["distribution"] == "fsdp"
    assert run.summary["optional_hyperparameters"]["sft_config"]["bf16"] is True
    assert run.summary["optional_hyperparameters"]["model_init_config"]["dtype"] == "bfloat16"
    assert any("pure bf16" in note for note in run.summary["notes"])
    with safe_open(str(run.model_dir / "model.safetensors"), "pt") as weights:
        dtypes = {str(weights.get_slice(name).get_dtype()) for name in weights.keys()}  # noqa: SIM118
    assert dtypes == {"BF16"}


def test_a_job_on_several_processes_skips_the_evaluation_and_says_why(
    tmp_path: Path, tiny_model_dir: Path, triage_pairs: list[Pair], triage_validation_pairs: list[Pair]
) -> None:
    run = run_sharded(
        tmp_path / "ddp",
        tiny_model_dir,
        triage_pairs[:32],
        {"batch_size": 4, "sft_config": {"max_steps": 2}},
        validation=triage_validation_pairs[:8],
    )

    skipped = {
        "format_version": 1,
        "skipped": "evaluation runs in single-process jobs; this job ran on 2 processes",
    }
    assert run.summary["device"]["processes"] == 2
    assert run.summary["evaluation"] == skipped
    for folder in (run.model_dir, run.checkpoint_dir):
        assert json.loads((folder / "tunelab-evaluation.json").read_text()) == skipped
    assert not (run.checkpoint_dir / "tunelab-evaluation-base.json").exists()
