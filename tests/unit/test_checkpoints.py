"""A checkpoint as read from its folder's name and trainer_state.json: the last losses at or before its
step."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tunelab.domain.checkpoints import CheckpointInfo, by_step, checkpoint_info, checkpoint_step

HISTORY = [
    {"step": 5, "epoch": 0.5, "loss": 2.4},
    {"step": 10, "epoch": 1.0, "loss": 2.0},
    {"step": 10, "epoch": 1.0, "eval_loss": 2.1},
    {"step": 15, "epoch": 1.5, "loss": 1.1},
    {"step": 20, "epoch": 2.0, "eval_loss": 1.3},
]


def test_the_losses_are_the_last_logged_at_or_before_the_step() -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    state = json.dumps({"global_step": 12, "epoch": 1.2, "log_history": HISTORY})
    info = checkpoint_info("checkpoint-12", state, saved_at=at, size_bytes=9)
    assert info == CheckpointInfo(
        id="checkpoint-12", step=12, epoch=1.2, train_loss=2.0, eval_loss=2.1, saved_at=at, size_bytes=9
    )


def test_a_checkpoint_before_any_log_has_no_losses() -> None:
    info = checkpoint_info(
        "checkpoint-2", json.dumps({"global_step": 2, "epoch": 0.2, "log_history": HISTORY})
    )
    assert info is not None
    assert (info.step, info.train_loss, info.eval_loss) == (2, None, None)


def test_what_is_not_a_checkpoint_or_not_readable_is_none() -> None:
    assert checkpoint_info("final", "{}") is None
    assert checkpoint_info("checkpoint-3", "{not json") is None
    assert checkpoint_info("checkpoint-3", "[]") is None
    # Without global_step, the folder's name says the step.
    assert checkpoint_info("checkpoint-3", "{}") == CheckpointInfo(id="checkpoint-3", step=3)


def test_ids_and_order() -> None:
    assert checkpoint_step("checkpoint-40") == 40
    assert checkpoint_step("checkpoint-") is None
    assert checkpoint_step("../checkpoint-4") is None
    items = [CheckpointInfo(id=f"checkpoint-{s}", step=s) for s in (20, 5, 10)]
    assert [i.step for i in by_step(items)] == [5, 10, 20]
