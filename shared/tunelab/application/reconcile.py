"""The reconciler: asks providers about training jobs whose events may have been lost.

Every 15 minutes (`composition.stack_definitions.SCHEDULES`), `reconcile` takes the models that
train or stop with no news for a while (least recently heard of first), asks each one's provider how
the job stands, and applies the answer exactly as a provider event is applied
(`fine_tuned_models.apply_training_state`): a finished job's outcome goes to the waiting workflow,
news while it runs goes to the model's history. A model stuck stopping while the provider still runs
the job gets the stop again.

Models that deploy are left to the deployment workflow, which polls the provider itself and has its
own time limit. One model's failure is counted and logged; the sweep goes on.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from aws_lambda_powertools import Logger
from pydantic import BaseModel

from tunelab.application import fine_tuned_models
from tunelab.application.ports import Context
from tunelab.domain.records import ModelRecord
from tunelab.domain.status import ModelStatus

logger = Logger(child=True)

# A job with no news for this long is asked about (SageMaker reports phases and metrics as it
# goes; Bedrock only its status changes, so long Bedrock jobs are asked every sweep).
STALE_AFTER = timedelta(minutes=30)
# Models asked about per sweep: the least recently heard of first; the rest wait for the next one.
SWEEP_LIMIT = 100


class ReconcileReport(BaseModel):
    """What one sweep did, in counts (logged and returned by the function)."""

    checked: int = 0
    outcomes_sent: int = 0  # finished jobs whose outcome reached the waiting workflow
    unanswered: int = 0  # finished jobs no workflow waits for any more (see the logs)
    still_running: int = 0
    stops_reissued: int = 0
    no_job: int = 0  # no provider job recorded yet (the workflow is still starting it)
    errors: int = 0


def reconcile(
    ctx: Context,
    *,
    now: datetime | None = None,
    stale_after: timedelta = STALE_AFTER,
    limit: int = SWEEP_LIMIT,
) -> ReconcileReport:
    """One sweep over models that train or stop with no news since `now - stale_after`."""
    now = now or ctx.now()
    report = ReconcileReport()
    stale = ctx.models.stale(
        now - stale_after, statuses={ModelStatus.TRAINING, ModelStatus.STOPPING_TRAINING}, limit=limit
    )
    for model in stale:
        report.checked += 1
        try:
            _reconcile_one(ctx, model, now, report)
        except Exception:
            report.errors += 1
            logger.exception(
                "Reconciling failed", extra={"workspace_id": model.workspace_id, "model": model.name}
            )
    logger.info("Reconciled", extra=report.model_dump())
    return report


def _reconcile_one(ctx: Context, model: ModelRecord, now: datetime, report: ReconcileReport) -> None:
    ref = model.refs.training_job
    if ref is None:
        report.no_job += 1
        return
    provider = ctx.providers.for_model(model)
    state = provider.describe_training(ref)
    result = fine_tuned_models.apply_training_state(ctx, model, state, at=now)
    if state.terminal:
        if result.applied:
            report.outcomes_sent += 1
        else:
            report.unanswered += 1
            logger.warning(
                "A finished job's outcome has no workflow to go to",
                extra={"workspace_id": model.workspace_id, "model": model.name, "reason": result.reason},
            )
        return
    report.still_running += 1
    if model.status == ModelStatus.STOPPING_TRAINING and state.status == "in_progress":
        # The stop was lost (or asked before the job existed): ask again.
        provider.stop_training(ref)
        report.stops_reissued += 1
