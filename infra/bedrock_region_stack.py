"""A Bedrock region of the platform besides its home region: where AWS fine-tunes models it does not
fine-tune at home (Amazon Nova only in us-east-1, Meta Llama only in us-west-2).

The platform's functions, in the home region, create each customization job, custom model,
deployment and Converse call of such a model in its region; Bedrock reads a job's training data and
writes its output only in a bucket of the job's region. This stack holds, in that region:
* the data bucket (`stack_definitions.bedrock_data_bucket_name`, derived from names so the home stack
  grants on it and names it to the functions without a cross-region reference): the prepared
  training files under `training-data/`, the jobs' output under `bedrock-output/`; private,
  encrypted, TLS-only, access-logged, kept when the stack is deleted;
* a rule on the region's default bus that forwards Bedrock's job state changes to the home region's
  default bus, where the platform's own rule (`EVENT_RULES`) queues them like the home region's.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Duration, Environment, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.capabilities.data import access_logs_bucket, artifacts_lifecycle, private_bucket
from infra.capabilities.messaging import (
    acknowledge_dead_letter_queue,
    dead_letter_alarm,
    event_pattern,
    secure_queue,
)
from tunelab.composition.stack_definitions import (
    BEDROCK_JOB_STATE_CHANGE_PATTERN,
    EVENT_RULES,
    bedrock_data_bucket_name,
)

# The home stack's rule for these events: the forwarding target retries as its queue target does.
(_HOME_RULE,) = [rule for rule in EVENT_RULES if rule.event_pattern == BEDROCK_JOB_STATE_CHANGE_PATTERN]


def regional_stack_name(platform_stack_name: str, region: str) -> str:
    return f"{platform_stack_name}-Bedrock-{region}"


def home_default_bus_arn(home_region: str) -> str:
    """The default event bus of this account in the home region (tokens of the stack it is used in)."""
    return f"arn:{Aws.PARTITION}:events:{home_region}:{Aws.ACCOUNT_ID}:event-bus/default"


class BedrockRegionStack(Stack):
    """`data_bucket`, `rule` (forwarding the job state changes home) and its `dead_letter_queue`."""

    def __init__(self, scope: Construct, *, platform_stack_name: str, home_region: str, region: str) -> None:
        name = regional_stack_name(platform_stack_name, region)
        super().__init__(
            scope,
            name,
            stack_name=name,
            env=Environment(region=region),
            description=(
                f"tunelab: Bedrock fine-tuning in {region} for {platform_stack_name} in {home_region} "
                "(data bucket; job state changes forwarded home)"
            ),
        )
        self.access_logs_bucket = access_logs_bucket(self, "AccessLogsBucket")
        # The artifacts bucket's counterpart here, with its lifecycle: a model's files go with the model.
        self.data_bucket = private_bucket(
            self,
            "DataBucket",
            bucket_name=bedrock_data_bucket_name(platform_stack_name, Aws.ACCOUNT_ID, region),
            logs=self.access_logs_bucket,
            log_prefix="bedrock-data/",
            rules=artifacts_lifecycle(),
        )

        # Where EventBridge puts an event it could not forward home after its retries.
        self.dead_letter_queue = secure_queue(self, "ForwardingDlq", retention_period=Duration.days(14))
        dead_letter_alarm(self.dead_letter_queue)
        acknowledge_dead_letter_queue(
            self.dead_letter_queue,
            f"EventBridge's, for Bedrock job state changes it could not forward to {home_region}",
        )
        home_bus_arn = home_default_bus_arn(home_region)
        # Same account: the role's PutEvents on the home bus is all a cross-region target needs.
        self.forwarding_role = iam.Role(
            self,
            "ForwardingRole",
            description=f"EventBridge forwards Bedrock job state changes from {region} to {home_region}",
            assumed_by=iam.ServicePrincipal(
                "events.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
            ),
        )
        self.forwarding_role.add_to_policy(
            iam.PolicyStatement(actions=["events:PutEvents"], resources=[home_bus_arn])
        )
        self.rule = events.Rule(
            self,
            "ForwardBedrockCustomizationRule",
            description=f"Forward to {home_region}: {_HOME_RULE.description}",
            event_pattern=event_pattern(BEDROCK_JOB_STATE_CHANGE_PATTERN),
        )
        self.rule.add_target(
            targets.EventBus(
                events.EventBus.from_event_bus_arn(self, "HomeDefaultBus", home_bus_arn),
                role=self.forwarding_role,
                dead_letter_queue=self.dead_letter_queue,
            )
        )
        # The EventBus target takes no retry policy (aws-cdk#28735): set the home rule's on the target.
        cfn_rule = self.rule.node.default_child
        assert isinstance(cfn_rule, events.CfnRule)
        cfn_rule.add_property_override(
            "Targets.0.RetryPolicy",
            {
                "MaximumRetryAttempts": _HOME_RULE.retry_attempts,
                "MaximumEventAgeInSeconds": _HOME_RULE.max_event_age_seconds,
            },
        )

        CfnOutput(
            self,
            "DataBucketName",
            value=self.data_bucket.bucket_name,
            description=f"Bedrock's training data and output for jobs in {region}",
        )
