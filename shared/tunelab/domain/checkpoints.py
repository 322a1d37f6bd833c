"""The checkpoints a fine-tuned model's training job kept: what each one is (its step, epoch and the
losses logged up to it), read from the `trainer_state.json` the trainer writes into every
`checkpoint-<step>/` folder.

Each provider keeps them its own way (the local runtime in the job's `checkpoints/` folder, SageMaker
synced to the customer's bucket; Bedrock keeps none); `checkpoint_info` reads one the same way for all.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tunelab.domain.errors import NotFound

_CHECKPOINT_ID = re.compile(r"checkpoint-(\d+)")


class CheckpointInfo(BaseModel):
    """One checkpoint: `id` is its folder's name (`checkpoint-<step>`); the losses are the last the
    trainer logged at or before its step (None where it logged none)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    step: int = Field(ge=0)
    epoch: float | None = None
    train_loss: float | None = None
    eval_loss: float | None = None
    saved_at: AwareDatetime | None = None
    size_bytes: int | None = Field(default=None, ge=0)


class CheckpointList(BaseModel):
    """The checkpoints a job kept, by step; `message` says why there are none where that is worth
    saying."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    items: tuple[CheckpointInfo, ...] = ()
    message: str | None = None


def checkpoint_step(checkpoint_id: str) -> int | None:
    """The step of a checkpoint's folder name (`checkpoint-12` → 12); None for any other name."""
    match = _CHECKPOINT_ID.fullmatch(checkpoint_id)
    return int(match.group(1)) if match else None


def unknown_checkpoint(checkpoint_id: str) -> NotFound:
    return NotFound(f"This model's training job kept no checkpoint {checkpoint_id!r}.")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def checkpoint_info(
    checkpoint_id: str,
    trainer_state: str | bytes,
    *,
    saved_at: datetime | None = None,
    size_bytes: int | None = None,
) -> CheckpointInfo | None:
    """A checkpoint from its folder's name and its `trainer_state.json`; None for a folder that is not a
    checkpoint or a state that cannot be read (a checkpoint still being written)."""
    step = checkpoint_step(checkpoint_id)
    if step is None:
        return None
    try:
        state = json.loads(trainer_state)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(state, dict):
        return None
    global_step = state.get("global_step")
    if isinstance(global_step, int) and not isinstance(global_step, bool) and global_step >= 0:
        step = global_step
    train_loss = eval_loss = None
    for entry in state.get("log_history") or ():
        if not isinstance(entry, dict):
            continue
        at = entry.get("step")
        if isinstance(at, int) and at > step:
            continue
        train_loss = _number(entry.get("loss")) if "loss" in entry else train_loss
        eval_loss = _number(entry.get("eval_loss")) if "eval_loss" in entry else eval_loss
    return CheckpointInfo(
        id=checkpoint_id,
        step=step,
        epoch=_number(state.get("epoch")),
        train_loss=train_loss,
        eval_loss=eval_loss,
        saved_at=saved_at,
        size_bytes=size_bytes,
    )


def by_step(items: list[CheckpointInfo]) -> tuple[CheckpointInfo, ...]:
    return tuple(sorted(items, key=lambda item: item.step))
