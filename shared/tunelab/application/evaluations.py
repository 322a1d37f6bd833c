"""Did the fine-tuning help? The trainer's evaluation of a model beside its base (`domain.evaluation`).

When a job completes, its summary is kept on the record (`training.evaluation`, or why there is none in
`training.evaluation_note`); `GET /v1/fine-tuned-models/{name}/evaluation` reads the whole report (with its
sample rows) from the provider, which keeps it with the job's output (`TrainingProvider.evaluation_report`).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from tunelab.application import redaction
from tunelab.application.ports import Context
from tunelab.domain.errors import NotFound, ProviderTransientError, TunelabError
from tunelab.domain.evaluation import EvaluationReport, EvaluationSkipped
from tunelab.domain.identity import Identity
from tunelab.domain.records import ModelRecord
from tunelab.domain.status import ModelStatus

logger = Logger(child=True)

_TRAINING = frozenset({ModelStatus.TRAINING, ModelStatus.STOPPING_TRAINING})
_NOT_TRAINED = frozenset({ModelStatus.TRAINING_FAILED, ModelStatus.TRAINING_STOPPED})


def recorded_evaluation(ctx: Context, record: ModelRecord) -> dict[str, Any]:
    """The fields of `training` a completed job sets: the evaluation summary, or why there is none. A
    report the provider cannot hand over now raises `ProviderTransientError` (the step is retried); one
    it cannot hand over at all is noted, since the model is usable without it."""
    ref = record.refs.training_job
    if ref is None:
        return _note(ctx, record, "The job left no reference to read its evaluation from.")
    try:
        report = ctx.providers.for_model(record).evaluation_report(ref)
    except ProviderTransientError:
        raise
    except TunelabError as error:
        logger.warning("Evaluation report unreadable", extra={"model": record.name, "error": str(error)})
        return _note(ctx, record, f"The evaluation report could not be read: {error.message}")
    if report is None:
        return _note(ctx, record, "The training job wrote no evaluation report.")
    if isinstance(report, EvaluationSkipped):
        return _note(ctx, record, report.skipped)
    return {"evaluation": report.summary(), "evaluation_note": None}


def _note(ctx: Context, record: ModelRecord, why: str) -> dict[str, Any]:
    # Trainer and provider text may name the platform's roles, buckets and files: shown without them.
    return {"evaluation": None, "evaluation_note": redaction.public_reason(ctx, record, why)}


def get_evaluation(ctx: Context, identity: Identity, name: str) -> EvaluationReport:
    """The whole report of the model's evaluation; `NotFound` saying why while there is none (still
    training, training did not complete, not evaluated and why, the report gone)."""
    model = ctx.models.get(identity.workspace, name)
    if model.status in _TRAINING:
        raise NotFound(
            f"'{name}' is still training; it is evaluated when training completes, where it has "
            "validation data."
        )
    if model.status in _NOT_TRAINED:
        raise NotFound(f"'{name}' has no evaluation: its training did not complete ({model.status.value}).")
    training = model.training
    ref = model.refs.training_job
    if training.evaluation is None or ref is None:
        why = training.evaluation_note or "it was trained before tunelab evaluated models after training"
        raise NotFound(f"'{name}' was not evaluated: {why.rstrip('.')}.")
    report = ctx.providers.for_model(model).evaluation_report(ref)
    if not isinstance(report, EvaluationReport):
        why = (
            redaction.public_reason(ctx, model, report.skipped)
            if report is not None
            else "the job's output no longer holds the report"
        )
        raise NotFound(f"The evaluation report of '{name}' cannot be read: {why.rstrip('.')}.")
    return report


__all__ = ["get_evaluation", "recorded_evaluation"]
