"""Benchmark: the trainer's default batching (padding-free) against padded batches, side by side.

Same tiny Llama model, same variable-length prompt/completion rows (support tickets with 0 to 7
extra sentences), same batch size, epochs and steps, in the same process, both through the real
training program (`trainer.train.main`). For each it prints real (non-padding) tokens per second
of training (by wall time and by process CPU time, which other load on a shared machine does not
skew), peak RSS while training, and the final eval loss on held-out rows (completion tokens only,
measured the same way for both). It also prints achieved training FLOP/s (6 x parameters x
tokens/s; the embedding lookup is not a matmul and is left out) over the peak matmul FLOP/s
measured here and now on the same thread count.

Goal: default/padded throughput >= 1.3x with eval loss within 5%. Exits 1 when it is missed.
Run: `python benchmarks/bench_trainer_batching.py [--epochs 2] [--threads 1]`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.data import Row, encode_rows  # noqa: E402
from trainer.tiny_model import build_tiny_model, read_pairs  # noqa: E402
from trainer.train import main as train_main  # noqa: E402

SAMPLE_DATA = REPO / "shared" / "tunelab" / "sample_data"
SHAPE = {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4, "num_attention_heads": 4}
GOAL_RATIO = 1.3
GOAL_LOSS_GAP = 0.05


def write_channel(folder: Path, pairs: list[tuple[str, str]]) -> Path:
    folder.mkdir(parents=True)
    rows = (json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs)
    (folder / "data.jsonl").write_text("".join(rows), encoding="utf-8")
    return folder


def variable_length(pairs: list[tuple[str, str]], seed: int) -> list[tuple[str, str]]:
    """Prompts stretched by 0-7 repeated detail sentences: a long tail, as real tickets have."""
    rng = random.Random(seed)
    stretched = []
    for prompt, completion in pairs:
        ticket = prompt.split("Ticket: ", 1)[-1]
        extra = rng.choice([0, 0, 0, 1, 3, 7])
        stretched.append((prompt + f" Details: {ticket}" * extra, completion))
    return stretched


class PeakRss:
    """Samples this process's RSS in a thread; the peak since start()."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def completion_loss(model_dir: Path, pairs: list[tuple[str, str]]) -> float:
    """Mean NLL per completion token (end-of-turn included) on ``pairs``, one row at a time."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir)
    model.eval()
    rows = [Row(prompt=p, completion=c, source="validation", line=i) for i, (p, c) in enumerate(pairs)]
    total, count = 0.0, 0
    with torch.no_grad():
        for example in encode_rows(rows, tokenizer, None).examples:
            ids = torch.tensor([example["input_ids"]])
            mask = example["completion_mask"]
            labels = torch.tensor(
                [[t if m else -100 for t, m in zip(example["input_ids"], mask, strict=True)]]
            )
            n = int((labels[0, 1:] != -100).sum())
            total += float(model(input_ids=ids, labels=labels).loss) * n
            count += n
    return total / count


def peak_matmul_flops(seconds: float = 1.5, size: int = 512) -> float:
    """fp32 matmul FLOP per CPU-second (CPU time, like the training figures: load does not skew it)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    runs, started = 0, time.process_time()
    while time.process_time() - started < seconds:
        a @ b
        runs += 1
    return 2 * size**3 * runs / (time.process_time() - started)


def matmul_parameters(model_dir: Path) -> int:
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir)
    embedding = model.get_input_embeddings().weight.numel()
    return int(sum(p.numel() for p in model.parameters()) - embedding)


def train(
    name: str, root: Path, model_dir: Path, train_dir: Path, hyperparameters: dict[str, Any]
) -> dict[str, Any]:
    job = root / name
    job.mkdir()
    (job / "hyperparameters.json").write_text(
        json.dumps({k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in hyperparameters.items()})
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SM_", "TUNELAB_"))},
        "SM_CHANNEL_TRAINING": str(train_dir),
        "SM_MODEL_DIR": str(job / "model"),
        "SM_OUTPUT_DIR": str(job / "output"),
        "SM_OUTPUT_DATA_DIR": str(job / "output" / "data"),
        "TUNELAB_CHECKPOINT_DIR": str(job / "checkpoints"),
        "TUNELAB_HYPERPARAMETERS_FILE": str(job / "hyperparameters.json"),
    }
    log = io.StringIO()  # the metric and progress lines; only the figures are printed
    with PeakRss() as rss, contextlib.redirect_stdout(log):
        code = train_main(["--base_model", str(model_dir)], env)
    if code != 0:
        raise SystemExit(f"{name} training failed: {(job / 'output' / 'failure').read_text()}")
    summary = json.loads((job / "model" / "tunelab-training.json").read_text())
    metrics = summary["metrics"]
    tokens = int(summary["rows"]["training"]["tokens"] * summary["hyperparameters"]["epochs"])
    return {
        "name": name,
        "model_dir": job / "model",
        "steps": metrics["step"],
        "tokens": tokens,
        "wall_s": metrics["train_runtime"],
        "cpu_s": metrics["train_cpu_seconds"],
        "tokens_per_s": tokens / metrics["train_runtime"],
        "tokens_per_cpu_s": tokens / metrics["train_cpu_seconds"],
        "peak_rss_mb": rss.peak / 2**20,
        "padding_free": summary["optional_hyperparameters"]["sft_config"]["padding_free"],
    }


def run(epochs: int, threads: int, batch_size: int) -> int:
    torch.set_num_threads(threads)
    pairs = variable_length(read_pairs(SAMPLE_DATA / "support-triage.csv"), seed=1)
    held_out = variable_length(read_pairs(SAMPLE_DATA / "support-triage-validation.csv"), seed=2)
    with tempfile.TemporaryDirectory(prefix="bench-batching-") as tmp:
        root = Path(tmp)
        model_dir = build_tiny_model(pairs, root / "base", seed=0, shape=SHAPE)
        train_dir = write_channel(root / "training", pairs)
        common = {"epochs": epochs, "batch_size": batch_size, "learning_rate": 0.003, "seed": 0}
        # Warm-up: the first run in a process pays for lazy imports and allocator growth.
        train("warmup", root, model_dir, train_dir, {**common, "epochs": 1, "sft_config": {"max_steps": 3}})
        padded = train(
            "padded", root, model_dir, train_dir, {**common, "sft_config": {"padding_free": False}}
        )
        default = train("default", root, model_dir, train_dir, common)
        for result in (padded, default):
            result["eval_loss"] = completion_loss(result["model_dir"], held_out)
        parameters = matmul_parameters(model_dir)
        peak = peak_matmul_flops()

    print(f"model: {parameters / 1e6:.2f} M matmul parameters; {len(pairs)} rows; {padded['tokens']} tokens")
    header = ("batching", "steps", "tok/s", "tok/cpu-s", "peak RSS", "eval loss", "MFU")
    print("{:10} {:>5} {:>7} {:>9} {:>9} {:>9} {:>6}".format(*header))
    for result in (padded, default):
        result["flops"] = 6 * parameters * result["tokens_per_cpu_s"]
        result["mfu"] = result["flops"] / peak
        label = "default" if result["padding_free"] else "padded"
        print(
            f"{label:10} {result['steps']:>5} {result['tokens_per_s']:>7.0f} "
            f"{result['tokens_per_cpu_s']:>9.0f} {result['peak_rss_mb']:>7.0f}MB "
            f"{result['eval_loss']:>9.4f} {result['mfu']:>6.1%}"
        )
    ratio_wall = default["tokens_per_s"] / padded["tokens_per_s"]
    ratio_cpu = default["tokens_per_cpu_s"] / padded["tokens_per_cpu_s"]
    loss_gap = abs(default["eval_loss"] - padded["eval_loss"]) / padded["eval_loss"]
    print(f"peak matmul: {peak / 1e9:.1f} GFLOP per CPU-second ({threads} thread(s), fp32 512x512)")
    print(
        "achieved training FLOP per CPU-second (6 x params x real tokens): "
        f"default {default['flops'] / 1e9:.2f} G = {default['mfu']:.1%} of peak; "
        f"padded {padded['flops'] / 1e9:.2f} G = {padded['mfu']:.1%}"
    )
    print(f"ratio default/padded: {ratio_cpu:.2f}x by CPU time, {ratio_wall:.2f}x by wall time")
    print(f"eval loss gap: {loss_gap:.2%}")
    ok = ratio_cpu >= GOAL_RATIO and loss_gap <= GOAL_LOSS_GAP
    print(f"goal (>= {GOAL_RATIO}x, eval loss within {GOAL_LOSS_GAP:.0%}): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    arguments = parser.parse_args()
    sys.exit(run(arguments.epochs, arguments.threads, arguments.batch_size))
