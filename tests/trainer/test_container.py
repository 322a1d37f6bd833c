"""A stop as SageMaker sends it (SIGTERM) mid-training: the run saves within the limit and exits cleanly."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.xdist_group("trainer"), pytest.mark.slow]


def _stop_when_training(metrics_file: Path, at_step: int, sent: dict[str, float]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            step = json.loads(metrics_file.read_text())["step"]
        except (OSError, ValueError, KeyError):
            step = 0
        if step >= at_step:
            sent["at"] = time.monotonic()
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the trainer's handler, as in the container
            return
        time.sleep(0.05)


def test_sigterm_mid_training_saves_a_loadable_model(run_trainer, triage_pairs, tmp_path):
    from transformers import AutoModelForCausalLM

    root = tmp_path / "job"
    handler_before = signal.getsignal(signal.SIGTERM)
    sent: dict[str, float] = {}
    watcher = threading.Thread(
        target=_stop_when_training, args=(root / "output" / "data" / "metrics.json", 3, sent), daemon=True
    )
    watcher.start()

    run = run_trainer(
        {"epochs": 500, "batch_size": 8, "sft_config": {"logging_steps": 1}}, triage_pairs[:48], root=root
    )
    finished = time.monotonic()
    watcher.join(timeout=1)

    assert "at" in sent, "the run ended before it could be stopped"
    assert finished - sent["at"] < 120
    assert run.exit_code == 0, run.failure
    summary = run.summary
    assert summary["status"] == "stopped"
    stopped_at = summary["metrics"]["step"]
    assert 3 <= stopped_at < summary["metrics"]["max_steps"]
    assert (run.checkpoint_dir / f"checkpoint-{stopped_at}" / "trainer_state.json").is_file()
    assert AutoModelForCausalLM.from_pretrained(run.model_dir).config.vocab_size > 0
    assert run.failure is None
    assert signal.getsignal(signal.SIGTERM) == handler_before
