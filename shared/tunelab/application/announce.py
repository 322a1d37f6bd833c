"""The one way a change is told: domain events on tunelab's bus, and emails to a model's creator.

Every event carries the correlation id of what caused it: the API request (API Gateway's request id),
the workflow execution, the provider event, the schedule or the reconciler's sweep.

Two modes, by who waits for the answer:

* `strict=True` (workflow tasks, the upload handler): a failure is raised, so the task (or the
  message) is retried; events have deterministic ids, so a retry that publishes again sends the
  same event, which consumers drop.
* `strict=False` (API requests, event handlers acting after the record changed): the change happened
  and a retry would only be refused by the status table, so a failure is logged, not raised.
"""

from __future__ import annotations

from datetime import datetime

from aws_lambda_powertools import Logger

from tunelab.application.ports import Context
from tunelab.application.workflows import NotifyEvent, NotifyResult
from tunelab.domain.events import dataset_validated, model_deleted, model_status_changed
from tunelab.domain.notifications import compose
from tunelab.domain.records import DatasetRecord, ModelChanges, ModelRecord
from tunelab.domain.status import ModelStatus, NotificationKind

logger = Logger(child=True)


def status_changed(
    ctx: Context,
    record: ModelRecord,
    *,
    previous: ModelStatus | None,
    reason: str | None,
    correlation_id: str,
    strict: bool = False,
) -> None:
    """Publish "Fine-tuned Model Status Changed" for the record's status."""
    event = model_status_changed(
        record, previous_status=previous, reason=reason, correlation_id=correlation_id
    )
    try:
        ctx.events.publish(event)
    except Exception:
        if strict:
            raise
        logger.exception("Could not publish the status change", extra={"model": record.name})


def deleted(ctx: Context, record: ModelRecord, *, by: str, correlation_id: str) -> None:
    """Publish "Fine-tuned Model Deleted" (after the fact: a failure is logged)."""
    try:
        ctx.events.publish(model_deleted(record, at=ctx.now(), by=by, correlation_id=correlation_id))
    except Exception:
        logger.exception("Could not publish the deletion", extra={"model": record.name})


def validated(ctx: Context, dataset: DatasetRecord, *, correlation_id: str) -> None:
    """Publish "Dataset Validated" (its id derives from the dataset's state: a repeat is the same event).
    Raised on failure: the upload handler's message is received again."""
    ctx.events.publish(dataset_validated(dataset, correlation_id=correlation_id))


def tell_creator(
    ctx: Context,
    kind: NotificationKind,
    record: ModelRecord,
    *,
    reason: str | None = None,
    at: datetime | None = None,
    strict: bool = False,
) -> str | None:
    """Email the model's creator about `kind`; the message id (None when a lenient send failed)."""
    try:
        message_id = ctx.notifier.send(compose(kind, record, reason=reason, at=at))
    except Exception:
        if strict:
            raise
        logger.exception("Could not send the email", extra={"model": record.name, "kind": kind})
        return None
    logger.info("Email sent", extra={"model": record.name, "kind": kind})
    return message_id


def notify(ctx: Context, event: NotifyEvent) -> NotifyResult:
    """The workflows' Notify task: email the model's creator about `event.notification` (raised on
    failure: the state retries it, then gives up without touching the model's status)."""
    record = ctx.models.find(event.workspace_id, event.model_name)
    if record is None or record.uid != event.uid:
        return NotifyResult(sent=False, why_not="the model no longer exists")
    message_id = tell_creator(ctx, event.notification, record, reason=event.reason, at=event.at, strict=True)
    if record.pending_email is not None and record.pending_email.kind == event.notification:
        try:
            ctx.models.update(record.workspace_id, record.name, ModelChanges(pending_email=None))
        except Exception:  # sent: a failure here may send it once more (the reconciler), never lose it
            logger.exception("Could not record the email as sent", extra={"model": record.name})
    return NotifyResult(sent=True, message_id=message_id)


def send_owed(ctx: Context, record: ModelRecord) -> NotifyResult:
    """Send the email a status change owes (`record.pending_email`) whose workflow did not: Notify's
    own work, for the reconciler."""
    owed = record.pending_email
    if owed is None:
        return NotifyResult(sent=False, why_not="no email is owed")
    return notify(
        ctx,
        NotifyEvent(
            workspace_id=record.workspace_id,
            model_name=record.name,
            uid=record.uid,
            notification=owed.kind,
            reason=owed.reason,
        ),
    )
