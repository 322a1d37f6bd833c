"""cdk-nag: the rule packs the app runs and the one way this project acknowledges a finding.

Every acknowledgement names one construct, one rule (with its finding for wildcard rules, e.g.
`AwsSolutions-IAM5[Resource::*]`) and a reason; infra/NAG_ACKNOWLEDGEMENTS.md lists them all.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Stack, Validations
from aws_cdk.aws_s3 import IBucket
from cdk_nag import AwsSolutionsChecks, ServerlessChecks
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule: str, reason: str, *, applies_to: tuple[str, ...] = ()) -> None:
    """Acknowledge `rule` on `scope` (and its children); with `applies_to`, only those findings."""
    if not reason.strip():
        raise ValueError(f"acknowledging {rule} needs a reason")
    ids = [f"{rule}[{finding}]" for finding in applies_to] if applies_to else [rule]
    Validations.of(scope).acknowledge(*(Acknowledgment(id=rule_id, reason=reason) for rule_id in ids))


def add_rule_packs(app: App) -> None:
    """Run AwsSolutions and Serverless on every stack: an unacknowledged finding fails synth."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))


def objects_finding(bucket: IBucket) -> str:
    """The IAM5 finding cdk-nag reports for `bucket.arn_for_objects("*")` in a policy."""
    resolved = Stack.of(bucket).resolve(bucket.bucket_arn)
    return f"Resource::<{resolved['Fn::GetAtt'][0]}.Arn>/*"
