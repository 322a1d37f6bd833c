"""The reconciler: asks providers about training jobs whose events may have been lost.

Every 15 minutes (`composition.stack_definitions.SCHEDULES`), `reconcile` takes the models that
train or stop with no news for a while (least recently heard of first), asks each one's provider how
the job stands, and applies the answer exactly as a provider event is applied
(`fine_tuned_models.apply_training_state`): a finished job's outcome goes to the waiting workflow,
news while it runs goes to the model's history. A model stuck stopping while the provider still runs
the job gets the stop again.

A job that ended while no workflow runs for it any more (the execution ended without recording it,
or — in the local runtime — was lost with a restart) is recorded directly, by the workflow's own last
steps (`fine_tuned_models.settle_training`). A model still training with no job and no running
workflow has its workflow started again.

Models that deploy are left to the deployment workflow, which polls the provider itself and has its
own time limit — except in a recovery sweep (`recover=True`, which the local runtime runs at each
start, its executions having been lost): there every model in a transient status is looked at,
whatever its last news, and a deployment whose workflow is gone has its workflow started again (a
deployment's execution is named by the model and the time it was asked for: the same one runs).
An email a status change owes (`ModelRecord.pending_email`, written with the change, cleared by the
Notify task once sent) that no workflow sent within `EMAIL_GRACE` — the workflow ended first — is sent
by the sweep (at once in a recovery sweep).
Each sweep also checks BYOK connections again (`connection_health.check_connections`): those a
refused provider call asked to check (a model's job or stop refused with access denied, here or in
FinishTraining), then those not checked for a day, a bounded few per sweep.
One model's failure is counted and logged; the sweep goes on.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from aws_lambda_powertools import Logger
from pydantic import BaseModel

from tunelab.application import announce, connection_health, fine_tuned_models
from tunelab.application.ports import Context
from tunelab.application.workflows import TrainingOutcome
from tunelab.domain.errors import ProviderPermissionDenied
from tunelab.domain.records import ModelRecord
from tunelab.domain.status import ModelStatus

logger = Logger(child=True)

# A job with no news for this long is asked about (SageMaker reports phases and metrics as it
# goes; Bedrock only its status changes, so long Bedrock jobs are asked every sweep).
STALE_AFTER = timedelta(minutes=30)
# Models asked about per sweep: the least recently heard of first; the rest wait for the next one.
SWEEP_LIMIT = 100
# An owed email is the workflow's to send for this long (Notify's retries take minutes at most).
EMAIL_GRACE = timedelta(minutes=15)
# A recovery sweep looks at every model in a transient status (a restart must leave none behind).
RECOVERY_LIMIT = 10_000


class ReconcileReport(BaseModel):
    """What one sweep did, in counts (logged and returned by the function)."""

    checked: int = 0
    outcomes_sent: int = 0  # finished jobs whose outcome reached the waiting workflow
    unanswered: int = 0  # finished jobs no workflow waits for any more (see the logs)
    still_running: int = 0
    stops_reissued: int = 0
    no_job: int = 0  # no provider job recorded yet (the workflow is still starting it)
    settled: int = 0  # finished jobs recorded directly: their workflow no longer runs
    redriven: int = 0  # workflows started again: the one that ran was lost
    emails_sent: int = 0  # emails owed that no workflow sent (`ModelRecord.pending_email`)
    errors: int = 0
    # BYOK connections checked again (`connection_health`): daily, and after a provider refused a call.
    connections_checked: int = 0
    connections_broken: int = 0  # checks that found a connected connection broken
    connections_recovered: int = 0  # checks that found a broken connection working again
    connections_emails_sent: int = 0  # to the connections' owners, one per change of status


def reconcile(
    ctx: Context,
    *,
    now: datetime | None = None,
    stale_after: timedelta = STALE_AFTER,
    limit: int = SWEEP_LIMIT,
    recover: bool = False,
) -> ReconcileReport:
    """One sweep over models that train or stop with no news since `now - stale_after`; with
    `recover`, over every model that trains, stops or deploys (up to `RECOVERY_LIMIT`)."""
    now = now or ctx.now()
    report = ReconcileReport()
    statuses = {ModelStatus.TRAINING, ModelStatus.STOPPING_TRAINING}
    if recover:
        statuses.add(ModelStatus.DEPLOYING)
    stale = ctx.models.stale(
        now if recover else now - stale_after, statuses=statuses, limit=RECOVERY_LIMIT if recover else limit
    )
    for model in stale:
        report.checked += 1
        try:
            _reconcile_one(ctx, model, now, report)
        except ProviderPermissionDenied:
            report.errors += 1
            logger.exception(
                "Reconciling was refused", extra={"workspace_id": model.workspace_id, "model": model.name}
            )
            connection_health.request_recheck(ctx, model)
        except Exception:
            report.errors += 1
            logger.exception(
                "Reconciling failed", extra={"workspace_id": model.workspace_id, "model": model.name}
            )
    _send_owed_emails(ctx, now, report, grace=timedelta(0) if recover else EMAIL_GRACE)
    try:
        health = connection_health.check_connections(ctx, now=now)
    except Exception:
        report.errors += 1
        logger.exception("Checking the connections failed")
    else:
        report.connections_checked = health.checked
        report.connections_broken = health.broken
        report.connections_recovered = health.recovered
        report.connections_emails_sent = health.emails_sent
        report.errors += health.errors
    logger.info("Reconciled", extra=report.model_dump())
    return report


def _reconcile_one(ctx: Context, model: ModelRecord, now: datetime, report: ReconcileReport) -> None:
    if model.status == ModelStatus.DEPLOYING:
        _redrive_deployment(ctx, model, report)
        return
    ref = model.refs.training_job
    if ref is None:
        if fine_tuned_models.workflow_running(ctx, model):
            report.no_job += 1
            return
        if model.status == ModelStatus.STOPPING_TRAINING:
            # Asked to stop before its job existed, and its workflow is gone: nothing to stop.
            fine_tuned_models.settle_training(
                ctx, model, TrainingOutcome(outcome="stopped"), correlation_id=f"reconcile-{model.uid}"
            )
            report.settled += 1
            return
        # The workflow was lost before it started the job: start it again (named by the model, so
        # this is the same execution; where that name is taken by one that ended, it cannot run).
        started = ctx.workflows.start_fine_tuning(model, correlation_id=f"reconcile-{model.uid}")
        if ctx.workflows.running(started):
            report.redriven += 1
            return
        fine_tuned_models.settle_training(
            ctx,
            model,
            TrainingOutcome(
                outcome="failed",
                reason=(
                    "The fine-tuning workflow ended before it started the training job. "
                    "Create the model again."
                ),
            ),
            correlation_id=f"reconcile-{model.uid}",
        )
        report.settled += 1
        return
    provider = ctx.providers.for_model(model)
    state = provider.describe_training(ref)
    result = fine_tuned_models.apply_training_state(ctx, model, state, at=now)
    if state.terminal:
        if result.settled:
            report.settled += 1
        elif result.applied:
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


def _redrive_deployment(ctx: Context, model: ModelRecord, report: ReconcileReport) -> None:
    deployment = model.deployment
    if deployment is None or deployment.requested_at is None:
        report.errors += 1
        logger.warning("A deploying model has no deployment request", extra={"model": model.name})
        return
    if deployment.execution_arn is not None and ctx.workflows.running(deployment.execution_arn):
        report.still_running += 1
        return
    ctx.workflows.start_deployment(
        model,
        requested_at=deployment.requested_at,
        correlation_id=f"reconcile-{model.uid}",
        auto_undeploy_at=deployment.auto_undeploy_at,
    )
    report.redriven += 1


def _send_owed_emails(ctx: Context, now: datetime, report: ReconcileReport, *, grace: timedelta) -> None:
    """Emails a status change owes and no workflow sent (it ended first: killed with the local
    runtime, or SES unavailable through Notify's retries), owed for longer than `grace`."""
    for model in ctx.models.unsent_emails(limit=SWEEP_LIMIT):
        owed = model.pending_email
        if owed is None or now - owed.since < grace:
            continue
        try:
            if announce.send_owed(ctx, model).sent:
                report.emails_sent += 1
        except Exception:
            report.errors += 1
            logger.exception("Sending an owed email failed", extra={"model": model.name, "kind": owed.kind})
