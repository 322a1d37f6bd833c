"""Following a fine-tuned model as it trains or deploys: a progress bar and its history, as text.

`ModelWatcher` polls `GET /v1/fine-tuned-models/{name}` and its `/events`, prints each new history
entry (status changes and messages) as a line, and shows a progress bar with the step, the losses,
the epoch and the time left, read from the model's training phase ("Training 40/120 steps, ETA
0:35", as the local provider reports it) and metrics. On a terminal the bar is one line redrawn with
`\\r`; elsewhere (a pipe, a CI log) it is printed as a new line when it changed, at most every
`line_every_s` seconds, so logs stay short.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TextIO

from tunelab.client.http import JsonObject, TunelabClient

# Statuses in which a model is still moving on by itself.
TRAINING_STATUSES = frozenset({"training", "stopping_training"})
DEPLOYING_STATUSES = frozenset({"deploying"})
BAR_WIDTH = 24
_PHASE_STEPS = re.compile(r"(\d+)\s*/\s*(\d+)\s+steps?(?:,\s*ETA\s+(\d+(?::\d+)+))?", re.IGNORECASE)


@dataclass(frozen=True)
class Progress:
    """What the bar shows, read from a `FineTunedModel`."""

    status: str
    label: str
    phase: str | None = None
    step: int | None = None
    max_steps: int | None = None
    eta: str | None = None
    train_loss: float | None = None
    eval_loss: float | None = None
    epoch: float | None = None

    @classmethod
    def of(cls, model: JsonObject) -> Progress:
        training = model.get("training") or {}
        metrics = training.get("metrics") or {}
        phase = training.get("phase")
        step = metrics.get("step")
        max_steps = eta = None
        found = _PHASE_STEPS.search(phase) if isinstance(phase, str) else None
        if found:
            step, max_steps, eta = int(found.group(1)), int(found.group(2)), found.group(3)
        return cls(
            status=str(model.get("status", "")),
            label=str(model.get("status_label") or model.get("status", "")),
            phase=phase if isinstance(phase, str) else None,
            step=step if isinstance(step, int) else None,
            max_steps=max_steps,
            eta=eta,
            train_loss=_number(metrics.get("train_loss")),
            eval_loss=_number(metrics.get("eval_loss")),
            epoch=_number(metrics.get("epoch")),
        )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def render(progress: Progress, width: int = BAR_WIDTH) -> str:
    """One line: `Training [#######.................]  40/120 steps  33%  loss 1.2345  ...  ETA 0:35`."""
    parts = [progress.label]
    if progress.max_steps:
        step = min(progress.step or 0, progress.max_steps)
        filled = round(width * step / progress.max_steps)
        parts.append(f"[{'#' * filled}{'.' * (width - filled)}]")
        parts.append(f"{step}/{progress.max_steps} steps")
        parts.append(f"{100 * step // progress.max_steps}%")
    elif progress.phase and progress.phase != progress.label:
        parts.append(f"- {progress.phase}")
        if progress.step is not None:
            parts.append(f"step {progress.step}")
    if progress.train_loss is not None:
        parts.append(f"loss {progress.train_loss:.4f}")
    if progress.eval_loss is not None:
        parts.append(f"eval loss {progress.eval_loss:.4f}")
    if progress.epoch is not None:
        parts.append(f"epoch {progress.epoch:.2f}")
    if progress.eta:
        parts.append(f"ETA {progress.eta}")
    return "  ".join(parts)


def describe_event(event: JsonObject) -> str | None:
    """A history entry as a line; None for metrics entries (the bar shows those)."""
    at = str(event.get("at", ""))
    clock = at[11:19] if len(at) >= 19 else at
    kind = event.get("type")
    message = event.get("message")
    if kind == "status_changed":
        text = f"status: {event.get('status')}"
        return f"{clock}  {text}" + (f" - {message}" if message else "")
    if kind == "message" and message:
        return f"{clock}  {message}"
    return None


class EventFollower:
    """Reads a model's history as it grows: each call of `new()` returns the entries not seen yet.

    The history is paged oldest first; the follower keeps the token of the last page it read and how
    many entries of that page it has returned, so each poll reads one page or little more.
    """

    def __init__(self, client: TunelabClient, name: str) -> None:
        self.client = client
        self.name = name
        self._page_token: str | None = None
        self._seen_in_page = 0

    def new(self) -> list[JsonObject]:
        fresh: list[JsonObject] = []
        while True:
            page = self.client.events_page(self.name, self._page_token)
            items = list(page.get("items") or [])
            fresh.extend(items[self._seen_in_page :])
            following = page.get("next_token")
            if not following:
                self._seen_in_page = len(items)
                return fresh
            self._page_token, self._seen_in_page = following, 0


class ModelWatcher:
    """Polls a model until its status leaves `moving`; prints its history and a progress bar."""

    def __init__(
        self,
        client: TunelabClient,
        name: str,
        *,
        out: TextIO | None = None,
        interval: float = 1.0,
        tty: bool | None = None,
        line_every_s: float = 10.0,
        show_events: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.name = name
        self.out = out or sys.stdout
        self.interval = interval
        self.tty = self.out.isatty() if tty is None else tty
        self.line_every_s = line_every_s
        self.show_events = show_events
        self.clock = clock
        self.sleep = sleep
        self.events = EventFollower(client, name)
        self._bar_shown = False
        self._last_line: str | None = None
        self._last_line_at: float | None = None
        self._last_progress: Progress | None = None

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def _line(self, text: str) -> None:
        """A line above the bar (on a terminal the bar is cleared first and redrawn next poll)."""
        if self.tty and self._bar_shown:
            self._write("\r\x1b[2K")
            self._bar_shown = False
        self._write(text + "\n")

    def _bar(self, progress: Progress) -> None:
        text = render(progress)
        if self.tty:
            self._write("\r\x1b[2K" + text)
            self._bar_shown = True
            return
        now = self.clock()
        previous = self._last_progress
        changed_phase = previous is None or (previous.status, previous.phase is None, previous.max_steps) != (
            progress.status,
            progress.phase is None,
            progress.max_steps,
        )
        due = self._last_line_at is None or now - self._last_line_at >= self.line_every_s
        if text != self._last_line and (changed_phase or due):
            self._write(text + "\n")
            self._last_line, self._last_line_at = text, now
        self._last_progress = progress

    def poll(self) -> JsonObject:
        """One round: new history lines, then the bar; the model as it stands."""
        model = self.client.model(self.name)
        if self.show_events:
            for event in self.events.new():
                line = describe_event(event)
                if line:
                    self._line(line)
        self._bar(Progress.of(model))
        return model

    def follow(self, moving: Collection[str] = TRAINING_STATUSES, timeout: float | None = None) -> JsonObject:
        """Poll until the status is not in `moving` (or `timeout` seconds pass); the last model seen."""
        deadline = None if timeout is None else self.clock() + timeout
        try:
            while True:
                model = self.poll()
                if model.get("status") not in moving:
                    return model
                if deadline is not None and self.clock() >= deadline:
                    raise TimeoutError(
                        f"{self.name} is still {model.get('status')} after {timeout:g} s of waiting"
                    )
                self.sleep(self.interval)
        finally:
            if self.tty and self._bar_shown:
                self._write("\n")
                self._bar_shown = False


def wait_for_status(
    client: TunelabClient,
    name: str,
    moving: Collection[str],
    *,
    interval: float = 1.0,
    timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> JsonObject:
    """Poll the model quietly until its status leaves `moving`; the model then."""
    deadline = None if timeout is None else clock() + timeout
    while True:
        model = client.model(name)
        if model.get("status") not in moving:
            return model
        if deadline is not None and clock() >= deadline:
            raise TimeoutError(f"{name} is still {model.get('status')} after {timeout:g} s of waiting")
        sleep(interval)
