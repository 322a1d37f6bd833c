"""Training for real on the tiny model: it learns, records what it used, stops early, resumes."""

from __future__ import annotations

import re

import pytest

from tests.trainer.conftest import greedy_completions

pytestmark = [pytest.mark.xdist_group("trainer"), pytest.mark.slow]


def test_learns_the_training_completions_and_records_the_requested_values(run_trainer, triage_pairs, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    requested = {
        "epochs": 6,
        "learning_rate": 0.01,
        "batch_size": 8,
        "warmup_steps": 2,
        "seed": 7,
        "max_length": 256,
        "sft_config": {
            "logging_steps": 25,
            "gradient_accumulation_steps": 1,
            "bf16": "false",
            "fp16": "false",
        },
        "model_init_config": {"attn_implementation": "sdpa", "use_cache": False},
    }

    run = run_trainer(requested, triage_pairs)

    assert run.exit_code == 0, run.failure
    model = AutoModelForCausalLM.from_pretrained(run.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(run.model_dir)
    written = greedy_completions(model, tokenizer, [prompt for prompt, _ in triage_pairs])
    exact = sum(w == c for w, (_, c) in zip(written, triage_pairs, strict=True))
    assert exact / len(triage_pairs) >= 0.9, list(zip(written, triage_pairs, strict=True))[:5]

    summary = run.summary
    recorded = summary["hyperparameters"]
    for name in ("epochs", "learning_rate", "batch_size", "warmup_steps", "seed", "max_length"):
        assert recorded[name] == requested[name], name
    optional = summary["optional_hyperparameters"]
    assert optional["sft_config"]["logging_steps"] == 25
    assert optional["sft_config"]["gradient_accumulation_steps"] == 1
    assert optional["sft_config"]["bf16"] is False
    assert optional["sft_config"]["fp16"] is False
    assert optional["model_init_config"]["attn_implementation"] == "sdpa"
    assert optional["model_init_config"]["use_cache"] is False
    assert optional["use_lora"] is False
    assert summary["rows"]["training"] == {**summary["rows"]["training"], "read": 200, "trained": 200}
    assert summary["versions"]["trl"]

    # One metric line per logging event, in the format the metric definitions match.
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("train_loss=")]
    assert len(lines) == 200 // 8 * 6 // 25
    assert re.fullmatch(r"train_loss=\S+ learning_rate=\S+ grad_norm=\S+ step=25 epoch=1\.0", lines[0])
    assert run.metrics["step"] == 150
    assert run.metrics["train_loss"] < 1.0


def test_a_run_shorter_than_one_logging_interval_still_reports_its_train_loss(
    run_trainer, triage_pairs, capsys
):
    run = run_trainer({"epochs": 1, "batch_size": 8, "sft_config": {"logging_steps": 50}}, triage_pairs[:24])

    assert run.exit_code == 0, run.failure
    # 3 steps, no logging event: the loss a user sees is the run's mean, reported once at the end.
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("train_loss=")]
    assert len(lines) == 1
    assert re.fullmatch(r"train_loss=\S+ step=3 epoch=1\.0", lines[0])
    assert run.metrics["train_loss"] == pytest.approx(float(lines[0].split()[0].split("=")[1]), rel=1e-5)
    assert run.metrics["train_loss"] == run.metrics["train_loss_average"]


def test_flash_attention_falls_back_on_the_cpu_and_says_so(run_trainer, triage_pairs):
    run = run_trainer({"epochs": 1, "batch_size": 16, "sft_config": {"max_steps": 2}}, triage_pairs[:32])

    assert run.exit_code == 0, run.failure
    summary = run.summary
    assert summary["optional_hyperparameters"]["model_init_config"]["attn_implementation"] == "sdpa"
    assert any("flash_attention_2" in note and "sdpa" in note for note in summary["notes"])
    assert summary["optional_hyperparameters"]["sft_config"]["padding_free"] is True


def test_rows_longer_than_max_length_are_counted_not_cut(run_trainer, triage_pairs):
    long_row = (triage_pairs[0][0] + " more detail" * 40, triage_pairs[0][1])

    run = run_trainer(
        {"epochs": 1, "max_length": 64, "sft_config": {"max_steps": 1}}, [*triage_pairs[:20], long_row]
    )

    assert run.exit_code == 0, run.failure
    rows = run.summary["rows"]["training"]
    assert rows["read"] == 21
    assert rows["trained"] == 20
    assert rows["dropped_too_long"] == 1
    assert rows["dropped_rows"][0].startswith("data.jsonl:21 ")


def test_early_stopping_stops_on_a_plateau(run_trainer, triage_pairs, triage_validation_pairs):
    plateau = {
        "epochs": 2,
        "learning_rate": 1e-7,
        "batch_size": 8,
        "early_stopping_patience": 2,
        "early_stopping_threshold": 0.01,
        "sft_config": {"logging_steps": 4},
    }

    run = run_trainer(plateau, triage_pairs[:96], triage_validation_pairs[:24])

    assert run.exit_code == 0, run.failure
    metrics = run.metrics
    assert metrics["max_steps"] == 24
    # First evaluation sets the best loss, two more without improvement end the run.
    assert metrics["step"] == 12
    assert run.summary["optional_hyperparameters"]["sft_config"]["eval_steps"] == 4


def test_early_stopping_does_not_stop_while_eval_loss_improves(run_trainer, triage_pairs):
    improving = {
        "epochs": 2,
        "learning_rate": 0.01,
        "batch_size": 8,
        "early_stopping_patience": 2,
        "early_stopping_threshold": 0.0,
        "sft_config": {"logging_steps": 4},
    }

    run = run_trainer(improving, triage_pairs[:96], triage_pairs[:24])

    assert run.exit_code == 0, run.failure
    metrics = run.metrics
    assert metrics["step"] == metrics["max_steps"] == 24
    evals = [entry["eval_loss"] for entry in metrics["history"] if "eval_loss" in entry]
    assert len(evals) == 6


def test_resume_from_a_checkpoint_continues_the_step_count(run_trainer, triage_pairs, tmp_path):
    root = tmp_path / "job"
    first = run_trainer(
        {"epochs": 1, "batch_size": 8, "sft_config": {"logging_steps": 2}}, triage_pairs[:64], root=root
    )
    assert first.exit_code == 0, first.failure
    assert (first.checkpoint_dir / "checkpoint-8" / "trainer_state.json").is_file()

    second = run_trainer(
        {"epochs": 2, "batch_size": 8, "sft_config": {"logging_steps": 2}}, triage_pairs[:64], root=root
    )

    assert second.exit_code == 0, second.failure
    metrics = second.metrics
    assert second.summary["metrics"]["resumed_from_step"] == 8
    assert metrics["step"] == 16
    assert [entry["step"] for entry in metrics["history"]] == [10, 12, 14, 16]


def test_packing_on_request_trains_without_cutting_rows(run_trainer, triage_pairs):
    run = run_trainer(
        {"epochs": 1, "batch_size": 2, "max_length": 128, "sft_config": {"packing": True, "max_steps": 2}},
        triage_pairs[:32],
    )

    assert run.exit_code == 0, run.failure
    recorded = run.summary["optional_hyperparameters"]["sft_config"]
    assert recorded["packing"] is True
    assert run.summary["rows"]["training"]["trained"] == 32
    assert run.metrics["step"] == 2
