"""Fixtures for the trainer: the sample data as JSONL channels, one tiny model per session, a runner."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DATA = REPO_ROOT / "shared" / "tunelab" / "sample_data"
TRAINER_DIR = REPO_ROOT / "trainer"

Pair = tuple[str, str]


def read_csv_pairs(path: Path) -> list[Pair]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return [(row[0], row[1]) for row in rows[1:]]


def write_channel(folder: Path, pairs: Sequence[Pair], name: str = "data.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"prompt": prompt, "completion": completion}) for prompt, completion in pairs]
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def sagemaker_hyperparameters(values: dict[str, Any]) -> dict[str, str]:
    """Values as SageMaker hands them over: strings, nested objects as JSON text."""
    return {
        key: json.dumps(value)
        if isinstance(value, dict | list)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
        for key, value in values.items()
    }


@dataclass
class TrainerRun:
    exit_code: int
    root: Path
    model_dir: Path
    output_data_dir: Path
    checkpoint_dir: Path
    failure_file: Path

    @property
    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = json.loads((self.model_dir / "tunelab-training.json").read_text())
        return summary

    @property
    def metrics(self) -> dict[str, Any]:
        metrics: dict[str, Any] = json.loads((self.output_data_dir / "metrics.json").read_text())
        return metrics

    @property
    def failure(self) -> str | None:
        return self.failure_file.read_text() if self.failure_file.exists() else None


def job_environment(root: Path, train: Path | None, validation: Path | None = None) -> dict[str, str]:
    """The SageMaker variables, every folder pointed into ``root``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SM_", "TUNELAB_"))}
    env.update(
        SM_MODEL_DIR=str(root / "model"),
        SM_OUTPUT_DIR=str(root / "output"),
        SM_OUTPUT_DATA_DIR=str(root / "output" / "data"),
        TUNELAB_CHECKPOINT_DIR=str(root / "checkpoints"),
        TUNELAB_HYPERPARAMETERS_FILE=str(root / "hyperparameters.json"),
        HF_HUB_OFFLINE="1",
    )
    if train is not None:
        env["SM_CHANNEL_TRAINING"] = str(train)
    if validation is not None:
        env["SM_CHANNEL_VALIDATION"] = str(validation)
    return env


@pytest.fixture(scope="session", autouse=True)
def _one_cpu_thread() -> None:
    # The suite shares two cores; a tiny model trains several times faster on one thread than on two
    # contended ones (OpenMP threads spin while they wait for each other).
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def triage_pairs() -> list[Pair]:
    return read_csv_pairs(SAMPLE_DATA / "support-triage.csv")


@pytest.fixture(scope="session")
def triage_validation_pairs() -> list[Pair]:
    return read_csv_pairs(SAMPLE_DATA / "support-triage-validation.csv")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, triage_pairs: list[Pair]) -> Path:
    from trainer.tiny_model import build_tiny_model

    return build_tiny_model(triage_pairs, tmp_path_factory.mktemp("tiny-model"), seed=0)


def prepare_job(
    root: Path,
    tiny_model_dir: Path,
    hyperparameters: dict[str, Any],
    train: Sequence[Pair],
    validation: Sequence[Pair] | None = None,
) -> dict[str, str]:
    """A job's folders as SageMaker lays them out (channels, hyperparameters.json of strings); its
    environment."""
    root.mkdir(parents=True, exist_ok=True)
    train_dir = write_channel(root / "input" / "training", train)
    validation_dir = write_channel(root / "input" / "validation", validation) if validation else None
    values = {"base_model": str(tiny_model_dir), **hyperparameters}
    (root / "hyperparameters.json").write_text(json.dumps(sagemaker_hyperparameters(values)))
    return job_environment(root, train_dir, validation_dir)


def run_job(
    root: Path,
    tiny_model_dir: Path,
    hyperparameters: dict[str, Any],
    train: Sequence[Pair],
    validation: Sequence[Pair] | None = None,
) -> TrainerRun:
    """Run the trainer in-process as SageMaker would (hyperparameters.json of strings, SM_* folders)."""
    from trainer.train import main

    env = prepare_job(root, tiny_model_dir, hyperparameters, train, validation)
    code = main([], env)
    return TrainerRun(
        exit_code=code,
        root=root,
        model_dir=root / "model",
        output_data_dir=root / "output" / "data",
        checkpoint_dir=root / "checkpoints",
        failure_file=root / "output" / "failure",
    )


@pytest.fixture
def run_trainer(tmp_path: Path, tiny_model_dir: Path):
    """Run the trainer in-process as SageMaker would (hyperparameters.json of strings, SM_* folders)."""

    def run(
        hyperparameters: dict[str, Any],
        train: Sequence[Pair],
        validation: Sequence[Pair] | None = None,
        root: Path | None = None,
    ) -> TrainerRun:
        return run_job(root or tmp_path / "job", tiny_model_dir, hyperparameters, train, validation)

    return run


def greedy_completions(
    model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int = 24
) -> list[str]:
    """What the model writes after each prompt's user turn, greedily."""
    import torch

    tokenizer.padding_side = "left"
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
        )
        for p in prompts
    ]
    completions: list[str] = []
    model.eval()
    for start in range(0, len(texts), 64):
        batch = tokenizer(
            texts[start : start + 64], return_tensors="pt", padding=True, add_special_tokens=False
        )
        with torch.no_grad():
            output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
        for row in output[:, batch["input_ids"].shape[1] :]:
            completions.append(tokenizer.decode(row, skip_special_tokens=True))
    return completions


def logits(model: Any, tokenizer: Any, texts: Sequence[str]) -> Any:
    import torch

    tokenizer.padding_side = "right"
    batch = tokenizer(list(texts), return_tensors="pt", padding=True)
    model.eval()
    with torch.no_grad():
        return model(**batch).logits
