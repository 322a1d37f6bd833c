"""The health of BYOK connections: each one is checked again daily, and at the next sweep after a
provider call for its workspace was refused (access denied).

The reconciler runs `check_connections` every sweep: connections whose re-check was asked for
(`request_recheck`), then those not checked for `CHECK_EVERY`, at most `CHECKS_PER_SWEEP` of them. A
check is the one `PUT /v1/providers/sagemaker` runs (`Providers.verify_connection`). A failing check
sets the connection's status to `error` with what failed (shown by `GET /v1/providers`); a passing
one sets it back to `connected`. The result is written conditionally on the version read, so when
two sweeps check at once only one records the change, and only that one emails the person who made
the connection: one email per change of status, never one per check. A check that could not run
(the provider unreachable) changes nothing and is tried again an hour later.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta

from aws_lambda_powertools import Logger
from pydantic import BaseModel

from tunelab.application.ports import Context
from tunelab.application.workflows import TaskError
from tunelab.domain.catalog import provider_traits
from tunelab.domain.connection_health import connection_broken, connection_recovered
from tunelab.domain.errors import Conflict, ProviderPermissionDenied
from tunelab.domain.providers import SageMakerConnection
from tunelab.domain.records import ModelRecord, ProviderConnectionRecord

logger = Logger(child=True)

CHECK_EVERY = timedelta(hours=24)
# Each check assumes a role in a customer's account and makes a few calls: a sweep does a bounded few.
CHECKS_PER_SWEEP = 20
# A check that could not run is tried again this much later.
RETRY_AFTER = timedelta(hours=1)


class ConnectionHealthReport(BaseModel):
    checked: int = 0
    broken: int = 0  # went from connected to error
    recovered: int = 0  # went from error to connected
    emails_sent: int = 0
    errors: int = 0  # checks that could not run (tried again at the next sweep)


def check_connections(
    ctx: Context, *, now: datetime | None = None, limit: int = CHECKS_PER_SWEEP
) -> ConnectionHealthReport:
    """Check the connections that are due (asked for first, then the longest unchecked)."""
    now = now or ctx.now()
    report = ConnectionHealthReport()
    for record in ctx.connections.due_for_check(now - CHECK_EVERY, limit=limit):
        try:
            recheck(ctx, record, now=now, report=report)
        except Exception:
            report.errors += 1
            logger.exception("Checking a connection failed", extra={"workspace_id": record.workspace_id})
            # Tried again in RETRY_AFTER, behind the others due: one that cannot be checked never starves
            # the rest of a sweep's checks. Its status stays as it was.
            with contextlib.suppress(Exception):
                ctx.connections.put(
                    record.model_copy(
                        update={"checked_at": now - CHECK_EVERY + RETRY_AFTER, "recheck_requested_at": None}
                    ),
                    expected_version=record.version,
                )
    return report


def recheck(
    ctx: Context,
    record: ProviderConnectionRecord,
    *,
    now: datetime,
    report: ConnectionHealthReport | None = None,
) -> ProviderConnectionRecord | None:
    """Check one connection and record the result; None when it changed meanwhile (someone else's
    write wins; nothing is emailed)."""
    report = report if report is not None else ConnectionHealthReport()
    connection = SageMakerConnection(
        role_arn=record.role_arn,
        external_id=record.external_id,
        region=record.region,
        artifact_bucket=record.artifact_bucket,
        hf_token_secret_arn=record.hf_token_secret_arn,
    )
    check = ctx.providers.verify_connection(connection, record.workspace_id)
    report.checked += 1
    status = "connected" if check.ok else "error"
    changed = record.model_copy(
        update={
            "status": status,
            "message": None if check.ok else check.message,
            "checked_at": now,
            "verified_at": now if check.ok else record.verified_at,
            "recheck_requested_at": None,
        }
    )
    try:
        stored = ctx.connections.put(changed, expected_version=record.version)
    except Conflict:
        return None
    if record.status == status:
        return stored
    # What was made from the connection (sessions, clients) is made again from what works now.
    ctx.providers.forget(record.provider, record.workspace_id)
    if check.ok:
        report.recovered += 1
    else:
        report.broken += 1
    logger.info(
        "SageMaker connection status changed",
        extra={"workspace_id": record.workspace_id, "status": status, "check": stored.message},
    )
    owner = record.connected_by
    if owner is None:
        logger.warning(
            "No one to tell: the connection has no owner", extra={"workspace_id": record.workspace_id}
        )
        return stored
    email = connection_recovered(stored, owner, now) if check.ok else connection_broken(stored, owner, now)
    try:
        ctx.notifier.send(email)
        report.emails_sent += 1
    except Exception:  # the status is recorded; the email is not sent twice for it
        logger.exception("Could not send the connection email", extra={"workspace_id": record.workspace_id})
    return stored


@contextlib.contextmanager
def rechecked_if_refused(ctx: Context, model: ModelRecord) -> Iterator[None]:
    """Around a provider call for `model` made outside a workflow (invoke, undeploy — a user's or the
    auto-undeploy schedule's —, stop): a refusal (access denied) asks for its connection to be checked at
    the next sweep, then goes on to the caller. A workflow's refused task: `recheck_if_refused_task`."""
    try:
        yield
    except ProviderPermissionDenied:
        request_recheck(ctx, model)
        raise


def recheck_if_refused_task(ctx: Context, model: ModelRecord, error: TaskError | None) -> bool:
    """A workflow task for `model` (a training's or a deployment's) failed with `error` (None: it did
    not): where the customer's role refused the call, its connection is checked again at the next
    sweep."""
    if error is None or error.error_type() != ProviderPermissionDenied.__name__:
        return False
    return request_recheck(ctx, model)


def request_recheck(ctx: Context, model: ModelRecord) -> bool:
    """A provider call for `model` was refused (access denied): check its workspace's connection at the
    next sweep. False when its provider needs no connection or the workspace has none. Never raises
    (its callers are recording what failed): a failure is logged."""
    if not provider_traits(model.provider).requires_connection:
        return False
    try:
        record = ctx.connections.find(model.workspace_id, model.provider)
        if record is None:
            return False
        # An error already recorded is checked daily: a refused call adds nothing to that.
        if record.recheck_requested_at is None and record.status == "connected":
            # A connection changed meanwhile (verified again, or checked) is news enough.
            with contextlib.suppress(Conflict):
                ctx.connections.put(
                    record.model_copy(update={"recheck_requested_at": ctx.now()}),
                    expected_version=record.version,
                )
    except Exception:
        logger.exception(
            "Could not ask for a connection re-check", extra={"workspace_id": model.workspace_id}
        )
        return False
    logger.info("Connection re-check requested", extra={"workspace_id": model.workspace_id})
    return True
