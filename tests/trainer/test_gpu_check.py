"""benchmarks/gpu_check.sh: its CPU path end to end (the tiny model, two plans, a few steps), and the
figures its GPU path computes (peak FLOP/s table, memory ratios, MFU, table cells) from a summary
shaped like a GPU run's."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import gpu_check
from tunelab.domain.catalog import load_catalog
from tunelab.domain.resources import FRAGMENTATION, TrainingSetup, memory

REPO_ROOT = Path(__file__).resolve().parents[2]
PLANS = ("lora-bf16-sdpa", "full-bf16-sdpa")


def table_rows(output: str) -> dict[str, dict[str, str]]:
    """The printed table as {plan: {column: cell}}."""
    lines = [line for line in output.splitlines() if " | " in line]
    header = [cell.strip() for cell in lines[0].split(" | ")]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.split(" | ")]
        assert len(cells) == len(header), line
        row = dict(zip(header, cells, strict=True))
        rows[row["plan"]] = row
    return rows


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


@pytest.mark.slow
@pytest.mark.xdist_group("trainer")
def test_cpu_path_prints_a_row_per_plan_and_writes_the_figures(tmp_path: Path) -> None:
    result_file = tmp_path / "gpu_check.json"
    env = {**os.environ, "GPU_CHECK_PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    env.pop("OUT", None)
    done = subprocess.run(
        [
            "bash",
            str(REPO_ROOT / "benchmarks" / "gpu_check.sh"),
            "--cpu",
            "--steps",
            "3",
            "--batch-size",
            "4",
            "--threads",
            "1",
            "--json",
            str(result_file),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    output = done.stdout

    rows = table_rows(output)
    assert set(rows) == {f"{plan} (CPU)" for plan in PLANS}
    for row in rows.values():
        assert row["status"] == "completed"
        assert row["steps"] == "3"
        assert int(row["tokens"]) > 0
        for column in ("VRAM alloc GB", "VRAM reserved GB", "VRAM process GB", "reserved/model", "MFU"):
            assert row[column] == "n/a (CPU)"
        assert number(row["RSS GB"]) > 0
        assert number(row["model GB"]) > 0
        assert number(row["tok/s"]) > 0
        assert number(row["tok/s steady"]) > 0
        assert math.isfinite(number(row["eval loss"]))
    assert f"results (JSON): {result_file}" in output

    report = json.loads(result_file.read_text())
    assert report["mode"] == "cpu"
    assert report["settings"]["steps"] == 3
    assert "6 × N" in report["formulas"]["achieved_flops"]
    assert "4 × N" in report["formulas"]["achieved_flops"]
    runs = {run["plan"]: run for run in report["runs"]}
    assert set(runs) == set(PLANS)
    for plan, run in runs.items():
        assert run["status"] == "completed"
        assert run["device"] == "cpu"
        assert run["attention_used"] == "sdpa"
        assert run["steps"] == 3
        assert run["tokens_trained"] > 0
        assert run["tokens_per_s"] > 0
        assert run["tokens_per_s"] == pytest.approx(run["tokens_trained"] / run["train_runtime_s"])
        assert run["memory_model"]["total_gb"] > 0
        assert run["memory_model"]["setup"].startswith("LoRA" if plan.startswith("lora") else "full")
        assert run["peak_rss_gb"] > 0
        assert run["peak_reserved_gb"] is None
        assert run["mfu"] is None
        assert isinstance(run["eval_loss"], float)
        assert f"{run['eval_loss']:.4f}" == rows[f"{plan} (CPU)"]["eval loss"]


@pytest.mark.parametrize(
    ("name", "tflops"),
    [
        ("NVIDIA H200", 989.5),
        ("NVIDIA H200 NVL", 835.5),
        ("NVIDIA H100 80GB HBM3", 989.5),
        ("NVIDIA H100 PCIe", 756.5),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A100 80GB PCIe", 312.0),
        ("NVIDIA A10", 125.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA L40S", 362.05),
        ("NVIDIA L40", 181.05),
        ("NVIDIA A10G", None),
        ("Tesla T4", None),
    ],
)
def test_peak_bf16_table(name: str, tflops: float | None) -> None:
    found = gpu_check.peak_bf16_tflops(name)
    assert (found[1] if found else None) == tflops


def test_steady_throughput_leaves_out_the_first_fifth() -> None:
    # 10 steps, 1000 tokens: steps 3..10 (8 steps, 800 tokens pro rata) took 4 s.
    times = {step: 10.0 + 0.5 * step for step in range(1, 11)}
    times[1] = 0.0  # a slow first step does not count
    assert gpu_check.steady_tokens_per_second(times, 10, 1000) == pytest.approx(800 / 4.0)
    assert gpu_check.steady_tokens_per_second({1: 0.0, 2: 1.0}, 2, 100) is None


def gpu_summary(method: str, reserved_gb: float) -> dict[str, Any]:
    """A summary as a GPU run writes it (trainer/run.py), with chosen figures."""
    return {
        "status": "completed",
        "notes": [],
        "hyperparameters": {"batch_size": 16, "max_length": 512},
        "optional_hyperparameters": {
            "use_lora": method == "lora",
            "lora_config": {"r": 8, "target_modules": ["q_proj", "v_proj"]} if method == "lora" else None,
            "sft_config": {"bf16": True, "fp16": False, "gradient_checkpointing": True},
            "model_init_config": {"attn_implementation": "sdpa"},
        },
        "rows": {"training": {"trained": 320, "tokens": 24_000, "longest_tokens": 81}},
        "metrics": {"step": 20, "epoch": 1.0, "train_runtime": 4.0, "eval_loss": 1.25},
        "device": {
            "type": "gpu",
            "name": "NVIDIA H200",
            "peak_allocated_gb": reserved_gb * 0.8,
            "peak_reserved_gb": reserved_gb,
        },
        "versions": {"torch": "2.13.0"},
    }


@pytest.mark.parametrize("method", ["lora", "full"])
def test_gpu_row_sets_the_measured_peak_beside_the_memory_model(method: str) -> None:
    arch = load_catalog().model(gpu_check.SMOLLM2_ID).architecture
    assert arch is not None
    setup = TrainingSetup(method=method, batch_size=16, sequence_length=81)  # type: ignore[arg-type]
    advised = memory(arch, setup, "single").total
    # torch's reserved memory has no CUDA context: it is set beside the figure without it.
    allocator = memory(arch, setup, "single").subtotal * FRAGMENTATION
    result = gpu_check.TrainerResult(
        exit_code=0,
        wall_s=20.0,
        summary=gpu_summary(method, reserved_gb=allocator * 0.9),
        metrics=None,
        step_times={4: 1.0, 20: 3.0},
        process_vram_gb=advised * 1.5,
        log_tail=[],
        failure=None,
    )
    plan = gpu_check.PlanSpec(method, "sdpa")
    peak = gpu_check.peak_bf16_tflops("NVIDIA H200")
    row = gpu_check.measure(plan, result, arch=arch, steps=20, peak=peak, on_cpu=False)

    assert row["memory_model"]["total_gb"] == pytest.approx(advised)
    assert row["memory_model"]["allocator_gb"] == pytest.approx(allocator)
    assert row["reserved_ratio"] == pytest.approx(0.9)
    assert row["reserved_within_goal"] is True
    assert row["process_ratio"] == pytest.approx(1.5)
    assert row["process_within_goal"] is False
    assert row["tokens_per_s"] == pytest.approx(24_000 / 4.0)
    assert row["steady_tokens_per_s"] == pytest.approx(24_000 * 16 / 20 / 2.0)
    flops_per_token = (6 if method == "full" else 4) * gpu_check.matmul_parameters(arch)
    assert row["mfu"] == pytest.approx(flops_per_token * 6000 / 989.5e12)

    row["cpu_eval_loss"], row["cpu_precision"], row["eval_loss_difference"] = 1.2, "fp32", 0.05
    cells = table_rows(gpu_check.table([row], on_cpu=False))[plan.name]
    assert cells["VRAM reserved GB"] == f"{allocator * 0.9:.2f}"
    assert cells["reserved/model"] == "0.90 (ok)"
    assert cells["process/model"] == "1.50 (off)"
    assert cells["RSS GB"] == "n/a (GPU)"
    assert cells["MFU"].endswith("%")
    assert cells["CPU eval loss"] == "1.2000 (fp32)"
    assert cells["Δ loss"] == "0.0500"


def test_unknown_gpu_gets_no_mfu() -> None:
    arch = load_catalog().model(gpu_check.SMOLLM2_ID).architecture
    assert arch is not None
    result = gpu_check.TrainerResult(0, 20.0, gpu_summary("full", 3.0), None, {}, None, [], None)
    plan = gpu_check.PlanSpec("full", "sdpa")
    row = gpu_check.measure(plan, result, arch=arch, steps=20, peak=None, on_cpu=False)
    assert row["mfu"] is None
    assert row["achieved_tflops"] > 0
    assert row["process_ratio"] is None
