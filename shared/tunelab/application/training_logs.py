"""`GET /v1/fine-tuned-models/{name}/logs`: the model's training log, oldest first, paged.

The provider reads its own log (`TrainingProvider.training_log`); this use case only wraps the
provider's position into the API's opaque `next_token` (bound to the model) and decides when the
log has ended: `next_token` is given while more lines may come — the model still trains or stops, or
the page was full — and is null once the training ended and the last line was read. A client that
follows a training keeps asking with the last `next_token` it got.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.application.ports import Context
from tunelab.domain.identity import Identity
from tunelab.domain.status import ModelStatus
from tunelab.domain.training_logs import TrainingLogLine, unwrap_token, wrap_token

# While the model is in these, its job may still write lines.
_WRITING = frozenset({ModelStatus.TRAINING, ModelStatus.STOPPING_TRAINING})


@dataclass(frozen=True)
class TrainingLog:
    lines: tuple[TrainingLogLine, ...]
    next_token: str | None
    message: str | None = None


def training_log(
    ctx: Context, identity: Identity, name: str, *, limit: int, next_token: str | None
) -> TrainingLog:
    """Up to `limit` lines of the model's training log after `next_token` (from the first line without
    one); `ValidationFailed` on `next_token` for a token this model's log did not return."""
    model = ctx.models.get(identity.workspace, name)
    position = unwrap_token(model.uid, next_token)
    writing = model.status in _WRITING
    ref = model.refs.training_job
    if ref is None:
        message = (
            "The training job has not started yet; its log appears once it runs."
            if writing
            else "This model has no training job, so it has no training log."
        )
        return TrainingLog(lines=(), next_token=None, message=message)
    page = ctx.providers.for_model(model).training_log(ref, position=position, limit=limit)
    more = page.position is not None and (writing or len(page.lines) >= limit)
    return TrainingLog(
        lines=page.lines,
        next_token=wrap_token(model.uid, page.position) if more and page.position else None,
        message=page.message,
    )
