"""Auto-undeploy schedules in EventBridge Scheduler (`application.ports.Scheduler`).

One-time schedules in tunelab's schedule group, targeting the AutoUndeploy function through the
scheduler's role, each with a retry policy and the stack's schedules dead-letter queue: an event
Scheduler could not deliver after its retries rests there, where an alarm shows it (an undeploy
that did not happen costs money until someone acts). What each schedule holds and when it fires is
the domain's (`domain.schedules.plan_auto_undeploy`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from tunelab.adapters.aws_errors import aws_call, error_code
from tunelab.domain.providers import ModelIdentity
from tunelab.domain.records import utcnow
from tunelab.domain.schedules import (
    MAX_EVENT_AGE_S,
    MAX_RETRY_ATTEMPTS,
    AutoUndeploy,
    ScheduleInput,
    at_expression,
    plan_auto_undeploy,
)

if TYPE_CHECKING:
    from mypy_boto3_scheduler import EventBridgeSchedulerClient
    from mypy_boto3_scheduler.type_defs import TargetTypeDef


class EventBridgeScheduler:
    """Creates and deletes a deployment's auto-undeploy schedules in tunelab's schedule group."""

    def __init__(
        self,
        client: EventBridgeSchedulerClient,
        *,
        group: str,
        role_arn: str,
        target_arn: str,
        dead_letter_arn: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if not dead_letter_arn:
            raise ValueError("every auto-undeploy schedule needs the schedules dead-letter queue")
        self.client = client
        self.group = group
        self.role_arn = role_arn
        self.target_arn = target_arn
        self.dead_letter_arn = dead_letter_arn
        self._clock = clock

    def create_auto_undeploy(
        self,
        identity: ModelIdentity,
        *,
        uid: str,
        requested_at: datetime,
        undeploy_at: datetime,
        deployed_at: datetime | None = None,
    ) -> AutoUndeploy:
        """Create (or find) the undeploy schedule and its reminder; returns their names and times."""
        plan, orders = plan_auto_undeploy(
            identity,
            uid=uid,
            requested_at=requested_at,
            undeploy_at=undeploy_at,
            now=self._clock(),
            deployed_at=deployed_at,
        )
        for name, order in orders.items():
            when = plan.undeploy_at if order.action == "undeploy" else plan.remind_at
            assert when is not None
            self._put(name, when, order)
        return plan

    def delete(self, *names: str) -> None:
        """Delete these schedules; those already gone (fired, or never made) are skipped."""
        for name in names:
            try:
                self.client.delete_schedule(Name=name, GroupName=self.group)
            except ClientError as error:
                if error_code(error) == "ResourceNotFoundException":
                    continue
                with aws_call(f"Deleting the schedule {name}", permission="scheduler:DeleteSchedule"):
                    raise

    def _put(self, name: str, when: datetime, order: ScheduleInput) -> None:
        target: TargetTypeDef = {
            "Arn": self.target_arn,
            "RoleArn": self.role_arn,
            "Input": order.model_dump_json(),
            "RetryPolicy": {
                "MaximumEventAgeInSeconds": MAX_EVENT_AGE_S,
                "MaximumRetryAttempts": MAX_RETRY_ATTEMPTS,
            },
            "DeadLetterConfig": {"Arn": self.dead_letter_arn},
        }
        model = order.model_name
        description = (
            f"Undeploys the fine-tuned model {model} (tunelab auto-undeploy)"
            if order.action == "undeploy"
            else f"Reminds that {model} will be undeployed (tunelab auto-undeploy)"
        )
        request = {
            "Name": name,
            "GroupName": self.group,
            "ScheduleExpression": at_expression(when),
            "ScheduleExpressionTimezone": "UTC",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": target,
            "ActionAfterCompletion": "DELETE",
            "State": "ENABLED",
            "Description": description,
        }
        action = f"Creating the schedule {name}"
        permission = "scheduler:CreateSchedule and iam:PassRole on the scheduler role"
        try:
            with aws_call(action, permission=permission):
                self.client.create_schedule(**request)  # type: ignore[arg-type]
        except Exception as error:
            # A retried step: the schedule of that name is this deployment's; make it say the same.
            cause = error.__cause__
            if isinstance(cause, ClientError) and error_code(cause) == "ConflictException":
                with aws_call(action, permission="scheduler:UpdateSchedule"):
                    self.client.update_schedule(**request)  # type: ignore[arg-type]
                return
            raise
