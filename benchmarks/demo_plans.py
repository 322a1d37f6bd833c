"""The demo's accuracy-versus-time curve: SmolLM2 fine-tuned with several plans on the sample data, each
scored by the trainer's own evaluation (the base model beside the fine-tuned one on the 40 validation rows).

Every plan runs the real training program (`trainer/train.py`) as the local runtime runs it (same
variables, same folders, one process), on the first N rows of the sample training data, validated on all
40 rows of the sample validation data. For each plan it prints the steps, the trainer's wall time
(loading, training, saving, merging and the evaluation) and the evaluation's share of it, the final losses
and the scores: exact match, token F1 and format match, base → fine-tuned. The ratio column is the
fine-tuned exact match over the base's (n/a while the base scores 0). Not a timed test: it takes minutes
per plan; run it on an otherwise idle machine and read the times as this machine's.

Run: `python benchmarks/demo_plans.py [--plans A,B] [--data-dir DIR]` (SmolLM2's weights are converted
into DIR's models folder the first time, as the local runtime does).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "shared"))

from tunelab.local.models import ensure_smollm2  # noqa: E402  # after the path is set

SAMPLES = REPO / "shared" / "tunelab" / "sample_data"
TRAINER = REPO / "trainer" / "train.py"


@dataclass(frozen=True)
class Plan:
    name: str
    rows: int
    epochs: int
    learning_rate: float
    lora_r: int = 16
    batch_size: int = 8
    extra: dict[str, Any] = field(default_factory=dict)

    def hyperparameters(self, model_dir: Path) -> dict[str, str]:
        lora = {
            "r": self.lora_r,
            "lora_alpha": 2 * self.lora_r,
            "lora_dropout": 0.0,
            "target_modules": "all-linear",
        }
        values: dict[str, Any] = {
            "base_model": str(model_dir),
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "warmup_steps": 2,
            "use_lora": True,
            "lora_config": lora,
            "merge_adapters": True,
            "sft_config": {"logging_strategy": "steps", "logging_steps": 2, "eval_strategy": "epoch"},
            "model_init_config": {"attn_implementation": "sdpa"},
            "evaluation_config": {"max_rows": 100},
            **self.extra,
        }
        return {
            k: json.dumps(v) if isinstance(v, dict) else str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in values.items()
        }


PLANS = [
    Plan("A", rows=32, epochs=2, learning_rate=5e-4),
    Plan("B", rows=64, epochs=2, learning_rate=5e-4),
    Plan("C", rows=64, epochs=2, learning_rate=1e-3),
    Plan("D", rows=128, epochs=1, learning_rate=1e-3),
    Plan("E", rows=96, epochs=2, learning_rate=1e-3),
    Plan("F", rows=200, epochs=1, learning_rate=1e-3),
    Plan("G", rows=200, epochs=1, learning_rate=2e-3),
    Plan("H", rows=200, epochs=1, learning_rate=2e-3, lora_r=8),
    Plan("I", rows=200, epochs=1, learning_rate=1e-3, batch_size=4),
    Plan("J", rows=200, epochs=1, learning_rate=1e-3, batch_size=2),
    Plan("K", rows=200, epochs=1, learning_rate=2e-3, batch_size=4),
]


def _rows(file_name: str) -> list[tuple[str, str]]:
    text = (SAMPLES / file_name).read_text(encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    return [(row[0], row[1]) for row in reader if len(row) >= 2]


def _channel(folder: Path, rows: list[tuple[str, str]]) -> None:
    folder.mkdir(parents=True)
    lines = [json.dumps({"prompt": p, "completion": c}) for p, c in rows]
    (folder / "data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def run(plan: Plan, model_dir: Path, root: Path) -> dict[str, Any]:
    job = root / plan.name
    _channel(job / "input" / "data" / "training", _rows("support-triage.csv")[: plan.rows])
    _channel(job / "input" / "data" / "validation", _rows("support-triage-validation.csv"))
    (job / "input" / "config").mkdir(parents=True)
    (job / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps(plan.hyperparameters(model_dir))
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "TUNELAB_"))}
    env.update(
        SM_MODEL_DIR=str(job / "model"),
        SM_OUTPUT_DIR=str(job / "output"),
        SM_OUTPUT_DATA_DIR=str(job / "output" / "data"),
        SM_CHANNEL_TRAINING=str(job / "input" / "data" / "training"),
        SM_CHANNEL_VALIDATION=str(job / "input" / "data" / "validation"),
        SM_INPUT_DIR=str(job / "input"),
        SM_NUM_GPUS="0",
        SM_HOSTS='["localhost"]',
        SM_CURRENT_HOST="localhost",
        TUNELAB_CHECKPOINT_DIR=str(job / "checkpoints"),
        TUNELAB_HYPERPARAMETERS_FILE=str(job / "input" / "config" / "hyperparameters.json"),
        TUNELAB_FAILURE_FILE=str(job / "output" / "failure"),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(TRAINER)], env=env, capture_output=True, text=True, check=False
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"plan {plan.name} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    summary = json.loads((job / "model" / "tunelab-training.json").read_text())
    report = json.loads((job / "model" / "tunelab-evaluation.json").read_text())
    return {"plan": plan, "wall": wall, "summary": summary, "report": report}


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plans", default=",".join(p.name for p in PLANS))
    parser.add_argument("--data-dir", default=str(Path.home() / ".tunelab" / "local"))
    args = parser.parse_args()
    wanted = set(args.plans.split(","))
    model_dir = ensure_smollm2(Path(args.data_dir).expanduser())
    print(f"SmolLM2 from {model_dir}; {os.cpu_count()} CPUs; validation: 40 rows", flush=True)
    header = (
        f"{'plan':<4} {'rows':>4} {'ep':>2} {'lr':>7} {'r':>3} {'steps':>5} {'wall s':>7} {'eval s':>6} "
        f"{'train/eval loss':>15}  {'exact':>11} {'token F1':>11} {'format':>11} {'ratio':>6}"
    )
    print(header, flush=True)
    with tempfile.TemporaryDirectory(prefix="tunelab-plans-") as scratch:
        for plan in PLANS:
            if plan.name not in wanted:
                continue
            result = run(plan, model_dir, Path(scratch))
            metrics, report = result["summary"]["metrics"], result["report"]
            base, tuned = report["base"], report["fine_tuned"]
            seconds = report.get("seconds") or {}
            eval_s = sum(v for v in seconds.values() if isinstance(v, int | float))
            ratio = f"{tuned['exact_match'] / base['exact_match']:.1f}x" if base["exact_match"] else "n/a"
            print(
                f"{plan.name:<4} {plan.rows:>4} {plan.epochs:>2} {plan.learning_rate:>7g} {plan.lora_r:>3} "
                f"{metrics.get('step', 0):>5} {result['wall']:>7.1f} {eval_s:>6.1f} "
                f"{metrics.get('train_loss', 0):>7.3f}/{metrics.get('eval_loss', 0):<7.3f}  "
                f"{_pct(base['exact_match']):>4} → {_pct(tuned['exact_match']):<4} "
                f"{base['token_f1']:>4.2f} → {tuned['token_f1']:<4.2f} "
                f"{_pct(base['format_match']):>4} → {_pct(tuned['format_match']):<4} {ratio:>6}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
