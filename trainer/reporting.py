"""Metric lines, progress lines, ``metrics.json``, and stopping on SIGTERM.

Metric lines (one per logging event, matched by ``metric_definitions.json``)::

    train_loss=0.1234 learning_rate=0.0001 grad_norm=0.52 step=10 epoch=0.5
    eval_loss=0.2345 step=10 epoch=0.5

Progress lines (for a progress bar; JSON after a fixed prefix)::

    tunelab-progress {"step": 10, "max_steps": 50, "epoch": 0.5, "loss": 0.1234, "eval_loss": null}
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

PROGRESS_PREFIX = "tunelab-progress "
PROGRESS_INTERVAL_S = 1.0


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _format(value: float) -> str:
    return f"{value:.6g}"


def metric_line(kind: str, logs: dict[str, Any], step: int, epoch: float | None) -> str:
    """``train_loss=... step=... epoch=...`` (or ``eval_loss=...``) for one logging event."""
    parts: list[str] = []
    if kind == "train":
        parts.append(f"train_loss={_format(float(logs['loss']))}")
        for key in ("learning_rate", "grad_norm"):
            value = _number(logs.get(key))
            if value is not None:
                parts.append(f"{key}={_format(value)}")
    else:
        parts.append(f"eval_loss={_format(float(logs['eval_loss']))}")
    parts.append(f"step={step}")
    if epoch is not None:
        parts.append(f"epoch={round(epoch, 4)}")
    return " ".join(parts)


class ReportingCallback(TrainerCallback):
    """Prints metric and progress lines on the main process and keeps ``metrics.json`` current."""

    def __init__(self, metrics_file: Path | None, enabled: bool = True) -> None:
        self.metrics_file = metrics_file
        self.enabled = enabled
        self.history: list[dict[str, Any]] = []
        self.latest: dict[str, Any] = {"train_loss": None, "eval_loss": None, "step": 0, "epoch": 0.0}
        self.summary: dict[str, Any] = {}
        self.first_step: int | None = None
        self._last_progress = 0.0
        self._cpu_started = 0.0

    def _emit(self, line: str) -> None:
        if self.enabled:
            print(line, flush=True)

    def progress(self, state: Any, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_INTERVAL_S:
            return
        self._last_progress = now
        payload = {
            "step": int(state.global_step),
            "max_steps": int(state.max_steps),
            "epoch": round(float(state.epoch or 0.0), 4),
            "loss": self.latest["train_loss"],
            "eval_loss": self.latest["eval_loss"],
        }
        self._emit(PROGRESS_PREFIX + json.dumps(payload))

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.first_step = int(state.global_step)
        self._cpu_started = time.process_time()
        self.latest["step"] = int(state.global_step)
        self.progress(state, force=True)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.latest["step"] = int(state.global_step)
        self.latest["epoch"] = float(state.epoch or 0.0)
        self.progress(state)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        logs = logs or {}
        step, epoch = int(state.global_step), _number(state.epoch)
        entry: dict[str, Any] | None = None
        if _number(logs.get("loss")) is not None:
            self.latest["train_loss"] = float(logs["loss"])
            entry = {"step": step, "epoch": epoch, "train_loss": float(logs["loss"])}
            for key in ("learning_rate", "grad_norm"):
                if _number(logs.get(key)) is not None:
                    entry[key] = float(logs[key])
            self._emit(metric_line("train", logs, step, epoch))
        elif _number(logs.get("eval_loss")) is not None:
            self.latest["eval_loss"] = float(logs["eval_loss"])
            entry = {"step": step, "epoch": epoch, "eval_loss": float(logs["eval_loss"])}
            self._emit(metric_line("eval", logs, step, epoch))
        elif "train_runtime" in logs:  # the trainer's closing summary
            average = _number(logs.get("train_loss"))
            self.summary = {
                "train_loss_average": average,
                "train_runtime": _number(logs.get("train_runtime")),
                "train_samples_per_second": _number(logs.get("train_samples_per_second")),
            }
            if self.latest["train_loss"] is None and average is not None and step > (self.first_step or 0):
                # A run shorter than one logging interval logged no loss: a logging event now would
                # have reported the mean since the start, which is this average. Report it as one.
                self.latest["train_loss"] = average
                entry = {"step": step, "epoch": epoch, "train_loss": average}
                self._emit(metric_line("train", {"loss": average}, step, epoch))
        if entry is not None:
            self.history.append(entry)
            self.latest.update(step=step, epoch=epoch or 0.0)
            self.progress(state, force=True)
            self.write()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.latest["step"] = int(state.global_step)
        self.latest["epoch"] = float(state.epoch or 0.0)
        self.latest["max_steps"] = int(state.max_steps)
        # CPU time of this process while training: a throughput figure that other load does not skew.
        self.latest["train_cpu_seconds"] = round(time.process_time() - self._cpu_started, 3)
        self.progress(state, force=True)
        self.write()

    def metrics(self) -> dict[str, Any]:
        return {**self.latest, **self.summary, "history": self.history}

    def write(self) -> None:
        if self.metrics_file is None or not self.enabled:
            return
        self.metrics_file.parent.mkdir(parents=True, exist_ok=True)
        self.metrics_file.write_text(json.dumps(self.metrics(), indent=2), encoding="utf-8")


class StopOnSignal(TrainerCallback):
    """Ends training after the current step and saves a checkpoint once a stop was requested."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.stopped_at_step: int | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if _on_any_rank(self.requested.is_set()):
            self.stopped_at_step = int(state.global_step)
            control.should_training_stop = True
            control.should_save = True
        return control


def _on_any_rank(flag: bool) -> bool:
    """True when ``flag`` is set on any process: every rank must stop at the same step or DDP hangs."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    on_gpu = dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
