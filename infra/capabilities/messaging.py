"""Events: tunelab's bus, the provider/upload rules, their queues with DLQs, and the consumers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Duration, Names
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.nag import acknowledge
from tunelab.composition.stack_definitions import (
    EVENT_RULES,
    QUEUES,
    EventRuleSpec,
    QueueSpec,
    function,
    render_pattern,
)

_PATTERN_FIELDS = {
    "source": "source",
    "detail-type": "detail_type",
    "detail": "detail",
    "account": "account",
    "region": "region",
    "resources": "resources",
    "id": "id",
    "time": "time",
    "version": "version",
}


def event_pattern(pattern: Mapping[str, Any]) -> events.EventPattern:
    """A CDK EventPattern from the JSON form EventBridge uses (`detail-type`, ...)."""
    unknown = set(pattern) - set(_PATTERN_FIELDS)
    if unknown:
        raise ValueError(f"unsupported event pattern fields: {sorted(unknown)}")
    return events.EventPattern(**{_PATTERN_FIELDS[key]: value for key, value in pattern.items()})


def secure_queue(scope: Construct, construct_id: str, **props: Any) -> sqs.Queue:
    """An SQS queue encrypted with SQS-managed keys that refuses requests without TLS."""
    return sqs.Queue(
        scope, construct_id, encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True, **props
    )


def dead_letter_alarm(queue: sqs.Queue) -> cloudwatch.Alarm:
    """In alarm while a dead-letter queue holds a message: something failed for good and waits."""
    return cloudwatch.Alarm(
        queue,
        "NotEmptyAlarm",
        alarm_description=f"Messages wait in a dead-letter queue ({queue.node.path}): inspect and redrive.",
        metric=queue.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(5), statistic="Maximum"
        ),
        threshold=1,
        evaluation_periods=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )


def acknowledge_dead_letter_queue(queue: sqs.IQueue, whose: str, *, redrive_target: bool = False) -> None:
    """A DLQ has no DLQ of its own; AwsSolutions recognises only DLQs named in a redrive policy."""
    reason = f"This queue is a dead-letter queue: {whose}."
    rules = (
        ("Serverless-SQSRedrivePolicy",)
        if redrive_target
        else ("AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy")
    )
    for rule in rules:
        acknowledge(queue, rule, reason)


class Messaging(Construct):
    """`queues[logical_id]`, `dead_letter_queues[logical_id]`, `rules[logical_id]`, `event_bus`."""

    def __init__(self, scope: Construct, construct_id: str, *, bus_name: str) -> None:
        super().__init__(scope, construct_id)
        self.event_bus = events.EventBus(self, "EventBus", event_bus_name=bus_name)
        # Where EventBridge puts an event it could not deliver to a rule's queue after its retries.
        self.delivery_dlq = secure_queue(self, "EventDeliveryDlq", retention_period=Duration.days(14))
        acknowledge_dead_letter_queue(
            self.delivery_dlq, "EventBridge's, for the rules' SQS targets (DeadLetterConfig)"
        )
        self.queues: dict[str, sqs.Queue] = {}
        self.dead_letter_queues: dict[str, sqs.Queue] = {}
        self.rules: dict[str, events.Rule] = {}

    def allow_forwarding_from(self, accounts: Sequence[str]) -> None:
        """Connected customer accounts may put their SageMaker events (their rules forward them) here."""
        if not accounts:
            return
        self.event_bus.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ConnectedAccountsForwardSageMakerEvents",
                principals=[iam.AccountPrincipal(account) for account in accounts],
                actions=["events:PutEvents"],
                resources=[self.event_bus.event_bus_arn],
                conditions={"StringEquals": {"events:source": "aws.sagemaker"}},
            )
        )

    def add_queues(
        self, consumers: Mapping[str, lambda_.IFunction], specs: Sequence[QueueSpec] = QUEUES
    ) -> None:
        for spec in specs:
            consumer_spec = function(spec.consumer)
            dlq = secure_queue(
                self, f"{spec.logical_id}Dlq", retention_period=Duration.days(spec.dlq_retention_days)
            )
            acknowledge_dead_letter_queue(dlq, f"the redrive target of {spec.name}", redrive_target=True)
            queue = secure_queue(
                self,
                spec.logical_id,
                retention_period=Duration.days(spec.retention_days),
                visibility_timeout=Duration.seconds(
                    spec.visibility_timeout_seconds(consumer_spec.timeout_seconds)
                ),
                dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=spec.max_receive_count),
            )
            consumers[spec.consumer].add_event_source(
                sources.SqsEventSource(
                    queue,
                    batch_size=spec.batch_size,
                    max_batching_window=Duration.seconds(spec.max_batching_window_seconds)
                    if spec.max_batching_window_seconds
                    else None,
                    report_batch_item_failures=True,
                )
            )
            acknowledge(
                consumers[spec.consumer].node.find_child(
                    f"SqsEventSource:{Names.node_unique_id(queue.node)}"
                ),
                "Serverless-LambdaEventSourceMappingDestination",
                "SQS event sources take no on-failure destination: failed messages go to the queue's DLQ "
                f"(redrive after {spec.max_receive_count} receives).",
            )
            self.queues[spec.logical_id] = queue
            self.dead_letter_queues[spec.logical_id] = dlq
        for dlq in (self.delivery_dlq, *self.dead_letter_queues.values()):
            dead_letter_alarm(dlq)

    def add_rules(self, values: Mapping[str, str], specs: Sequence[EventRuleSpec] = EVENT_RULES) -> None:
        """One rule per spec; `values` fills the patterns' `${Name}` placeholders."""
        for spec in specs:
            rule = events.Rule(
                self,
                spec.logical_id,
                description=spec.description,
                event_bus=self.event_bus if spec.bus == "tunelab" else None,
                event_pattern=event_pattern(render_pattern(spec.event_pattern, values)),
            )
            rule.add_target(
                targets.SqsQueue(
                    self.queues[spec.target_queue],
                    dead_letter_queue=self.delivery_dlq,
                    retry_attempts=spec.retry_attempts,
                    max_event_age=Duration.seconds(spec.max_event_age_seconds),
                )
            )
            self.rules[spec.logical_id] = rule
