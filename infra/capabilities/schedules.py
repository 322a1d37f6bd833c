"""Schedules: the auto-undeploy schedule group with its role, and the reconciler's schedule."""

from __future__ import annotations

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from tunelab.composition.stack_definitions import SCHEDULES, ScheduleSpec


def scheduler_role(
    scope: Construct, construct_id: str, *, source_arn: str, function_arn: str, dlq: sqs.IQueue
) -> iam.Role:
    """A role EventBridge Scheduler assumes for schedules of `source_arn`: it may invoke one function."""
    role = iam.Role(
        scope,
        construct_id,
        assumed_by=iam.ServicePrincipal(
            "scheduler.amazonaws.com",
            conditions={
                "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                "ArnLike": {"aws:SourceArn": source_arn},
            },
        ),
    )
    role.add_to_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[function_arn]))
    # Scheduler sends an event it could not deliver to the target's DLQ with this role.
    role.add_to_policy(iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[dlq.queue_arn]))
    return role


class Schedules(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, group_name: str, auto_undeploy_arn: str, dlq: sqs.IQueue
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.group_name = group_name
        self.dlq = dlq
        self.group = scheduler.CfnScheduleGroup(self, "AutoUndeployGroup", name=group_name)
        group_arn = stack.format_arn(service="scheduler", resource="schedule-group", resource_name=group_name)
        self.auto_undeploy_role = scheduler_role(
            self, "AutoUndeployRole", source_arn=group_arn, function_arn=auto_undeploy_arn, dlq=dlq
        )

    def add_recurring(
        self, function_arns: dict[str, str], specs: tuple[ScheduleSpec, ...] = SCHEDULES
    ) -> None:
        stack = Stack.of(self)
        default_group = stack.format_arn(
            service="scheduler", resource="schedule-group", resource_name="default"
        )
        for spec in specs:
            target_arn = function_arns[spec.target_function]
            role = scheduler_role(
                self,
                f"{spec.logical_id}Role",
                source_arn=default_group,
                function_arn=target_arn,
                dlq=self.dlq,
            )
            scheduler.CfnSchedule(
                self,
                spec.logical_id,
                description=spec.description,
                schedule_expression=spec.expression,
                flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
                target=scheduler.CfnSchedule.TargetProperty(
                    arn=target_arn,
                    role_arn=role.role_arn,
                    retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                        maximum_event_age_in_seconds=900, maximum_retry_attempts=2
                    ),
                    dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(arn=self.dlq.queue_arn),
                ),
            )
