"""Auto-undeploy: EventBridge Scheduler one-time schedules that undeploy a model (and remind before).

When a deployment with an auto-undeploy time is created (StartDeployment; a deployment that then
fails deletes them again), tunelab creates two one-time schedules in its schedule group, both
targeting the AutoUndeploy function (settings `AUTO_UNDEPLOY_TARGET_ARN`) through the scheduler's
role:

* `<model>-<digest>-undeploy` at the chosen time, input `{"action": "undeploy", ...}`;
* `<model>-<digest>-remind` some time before (10% of the window, at most an hour, none for a
  window under 50 minutes), input `{"action": "remind", ...}` — the creator gets an email.

Names derive from the model and the deploy request's time, so a retried step finds its own
schedules (a deploy after an undeploy gets new ones). Both delete themselves after they ran
(`ActionAfterCompletion: DELETE`); undeploying earlier deletes them.

Every schedule names the stack's schedules dead-letter queue: an event Scheduler could not deliver
after its retries goes there (settings `SCHEDULES_DLQ_ARN`; the scheduler's role may send to it),
where an alarm shows it: an undeploy that did not happen costs money until someone acts.

Expression format `at(yyyy-mm-ddThh:mm:ss)` in UTC (`ScheduleExpressionTimezone: "UTC"`), per the
EventBridge Scheduler user guide, "Schedule types" (one-time schedules). Scheduler invokes with
60-second precision (a schedule set for 1:00 runs between 1:00:00 and 1:00:59), so every time is
rounded UP to a whole minute (`fire_time`): the undeploy never runs before the time tunelab stores
and shows as `auto_undeploy_at`, and at most a minute after it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from tunelab.domain.providers import ModelIdentity, derived_name, utc_iso

# EventBridge Scheduler's limit on schedule names (letters, digits, - _ .).
SCHEDULE_NAME_MAX = 64
REMINDER_MAX_LEAD = timedelta(hours=1)
REMINDER_FRACTION = 0.1
REMINDER_MIN_LEAD = timedelta(minutes=5)
# Scheduler invokes with one-minute precision; a time already past is moved this far ahead.
MIN_DELAY = timedelta(minutes=1)
# How long Scheduler keeps retrying the target if the function cannot be invoked.
MAX_EVENT_AGE_S = 24 * 3600
MAX_RETRY_ATTEMPTS = 20

ScheduleAction = Literal["undeploy", "remind"]


class ScheduleInput(BaseModel):
    """What the AutoUndeploy function receives from a schedule."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    action: ScheduleAction
    workspace_id: str
    model_name: str
    uid: str
    # The deploy request this schedule belongs to: a later deployment's schedules differ, and an
    # old schedule that fires late must not undeploy a newer deployment.
    deployment_requested_at: AwareDatetime
    undeploy_at: AwareDatetime


class AutoUndeploy(BaseModel):
    """The schedules made for one deployment."""

    model_config = ConfigDict(frozen=True)

    undeploy_name: str
    undeploy_at: AwareDatetime
    reminder_name: str | None
    remind_at: AwareDatetime | None


def schedule_names(identity: ModelIdentity, requested_at: datetime) -> tuple[str, str]:
    """(undeploy, reminder) schedule names for the deployment requested at `requested_at`."""
    digest = identity.digest("auto-undeploy", utc_iso(requested_at))
    base = derived_name(identity.model_name, digest, max_len=SCHEDULE_NAME_MAX - len("-undeploy"))
    return f"{base}-undeploy", f"{base}-remind"


def fire_time(moment: datetime) -> datetime:
    """`moment` rounded up to the next whole minute in UTC (unchanged if already whole).

    Scheduler fires anywhere within the expression's minute, so a time with seconds is moved to
    the following minute rather than truncated, which could fire up to 59 s early.
    """
    utc = moment.astimezone(UTC)
    whole = utc.replace(second=0, microsecond=0)
    return whole if whole == utc else whole + timedelta(minutes=1)


def at_expression(moment: datetime) -> str:
    """`at(yyyy-mm-ddThh:mm:ss)` in UTC for `fire_time(moment)` (never earlier than `moment`)."""
    return f"at({fire_time(moment).strftime('%Y-%m-%dT%H:%M:%S')})"


def reminder_time(deployed_at: datetime, undeploy_at: datetime) -> datetime | None:
    """When to remind before undeploying: 10% of the window before, at most an hour; None if too short."""
    window = undeploy_at - deployed_at
    lead = min(REMINDER_MAX_LEAD, window * REMINDER_FRACTION)
    if lead < REMINDER_MIN_LEAD:
        return None
    return undeploy_at - lead


def plan_auto_undeploy(
    identity: ModelIdentity,
    *,
    uid: str,
    requested_at: datetime,
    undeploy_at: datetime,
    now: datetime,
    deployed_at: datetime | None = None,
) -> tuple[AutoUndeploy, dict[str, ScheduleInput]]:
    """The schedules of one deployment (names, times) and what each delivers: the undeploy at the
    whole minute it fires (never before `undeploy_at`, at least a minute from `now`) and, when the
    window allows, a reminder before it."""
    undeploy_at = fire_time(max(undeploy_at, now + MIN_DELAY))
    undeploy_name, reminder_name = schedule_names(identity, requested_at)
    remind_at = reminder_time(deployed_at or now, undeploy_at)
    if remind_at is not None:
        remind_at = fire_time(remind_at)
        if remind_at < now + MIN_DELAY or remind_at >= undeploy_at:
            remind_at = None

    def order(action: ScheduleAction) -> ScheduleInput:
        return ScheduleInput(
            action=action,
            workspace_id=identity.workspace_id,
            model_name=identity.model_name,
            uid=uid,
            deployment_requested_at=requested_at,
            undeploy_at=undeploy_at,
        )

    orders = {undeploy_name: order("undeploy")}
    if remind_at is not None:
        orders[reminder_name] = order("remind")
    plan = AutoUndeploy(
        undeploy_name=undeploy_name,
        undeploy_at=undeploy_at,
        reminder_name=reminder_name if remind_at is not None else None,
        remind_at=remind_at,
    )
    return plan, orders
