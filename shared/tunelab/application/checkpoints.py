"""`GET /v1/fine-tuned-models/{name}/checkpoints` and `.../checkpoints/{id}/download`: the checkpoints a
model's training job kept, and a link to one of them as a `.tar.gz`.

The provider reads its own checkpoints (`TrainingProvider.checkpoints`, `checkpoint_download`); this
use case finds the model's job and says why there are none where the model has no job.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.application.ports import Context
from tunelab.domain.checkpoints import CheckpointInfo, checkpoint_step, unknown_checkpoint
from tunelab.domain.identity import Identity
from tunelab.domain.providers import DownloadLink
from tunelab.domain.records import ModelRecord
from tunelab.domain.status import ModelStatus

_NOT_STARTED = frozenset({ModelStatus.TRAINING, ModelStatus.STOPPING_TRAINING})


@dataclass(frozen=True)
class Checkpoints:
    model: ModelRecord
    items: tuple[CheckpointInfo, ...]
    message: str | None = None


@dataclass(frozen=True)
class CheckpointDownload:
    model: ModelRecord
    checkpoint_id: str
    link: DownloadLink


def list_checkpoints(ctx: Context, identity: Identity, name: str) -> Checkpoints:
    """The checkpoints the model's job kept, by step; none, with a message, for a model without a job
    or a provider that keeps none."""
    model = ctx.models.get(identity.workspace, name)
    ref = model.refs.training_job
    if ref is None:
        message = (
            "The training job has not started yet; its checkpoints appear once it saves them."
            if model.status in _NOT_STARTED
            else "This model has no training job, so it has no checkpoints."
        )
        return Checkpoints(model, (), message)
    found = ctx.providers.for_model(model).checkpoints(ref)
    return Checkpoints(model, found.items, found.message)


def download_checkpoint(
    ctx: Context, identity: Identity, name: str, checkpoint_id: str
) -> CheckpointDownload:
    """A short-lived link to a `.tar.gz` of one checkpoint's folder; `NotFound` for a checkpoint the
    model's job did not keep."""
    model = ctx.models.get(identity.workspace, name)
    ref = model.refs.training_job
    if ref is None or checkpoint_step(checkpoint_id) is None:
        raise unknown_checkpoint(checkpoint_id)
    link = ctx.providers.for_model(model).checkpoint_download(ref, checkpoint_id)
    return CheckpointDownload(model, checkpoint_id, link)
