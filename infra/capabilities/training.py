"""Training: the service role Bedrock model customization jobs run with.

The jobs read the training (and validation) files PrepareData writes under `training-data/` and
write their output under `bedrock-output/` (Bedrock keeps the weights; the output holds the job's
metrics): in the artifacts bucket for jobs in the home region, in the regional stack's data bucket
(`infra.bedrock_region_stack`) for jobs in another Bedrock region, since Bedrock reads only from a
bucket in the job's region. IAM is global: one role serves every region. The buckets are encrypted
with S3-managed keys, so no KMS permission is needed. SageMaker jobs run in customers' accounts (the
connector stack); their trainer source is bundled with the Lambda code (`infra.bundling`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.nag import acknowledge, objects_finding
from tunelab.domain.layout import BEDROCK_OUTPUT_PREFIX, TRAINING_DATA_PREFIX


def customization_jobs_arn(region: str) -> str:
    """This account's Bedrock customization jobs in `region`."""
    return f"arn:{Aws.PARTITION}:bedrock:{region}:{Aws.ACCOUNT_ID}:model-customization-job/*"


class Training(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        artifacts_bucket: s3.IBucket,
        bedrock_regions: Sequence[str],
        regional_buckets: Mapping[str, s3.IBucket],
    ) -> None:
        """`bedrock_regions`: every region jobs run in (the home region first); `regional_buckets`: the
        data bucket of each of them but the home region."""
        super().__init__(scope, construct_id)
        # Only Bedrock, only for this account's customization jobs in tunelab's Bedrock regions (the
        # confused-deputy guard).
        self.bedrock_role = iam.Role(
            self,
            "BedrockCustomizationRole",
            description="Role Bedrock model customization jobs of tunelab run with",
            assumed_by=iam.ServicePrincipal(
                "bedrock.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": [customization_jobs_arn(r) for r in bedrock_regions]},
                },
            ),
        )
        buckets = [artifacts_bucket, *regional_buckets.values()]
        training_data = [bucket.arn_for_objects(f"{TRAINING_DATA_PREFIX}*") for bucket in buckets]
        output = [bucket.arn_for_objects(f"{BEDROCK_OUTPUT_PREFIX}*") for bucket in buckets]
        # What Bedrock's guide for a customization service role asks: read the training and
        # validation files, read and write the output folder, list the buckets they are in.
        self.bedrock_role.add_to_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=training_data)
        )
        self.bedrock_role.add_to_policy(
            iam.PolicyStatement(actions=["s3:GetObject", "s3:PutObject"], resources=output)
        )
        self.bedrock_role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"], resources=[bucket.bucket_arn for bucket in buckets]
            )
        )
        where = "the artifacts bucket's" + (
            f" (and, for jobs in {', '.join(regional_buckets)}, that region's data bucket's)"
            if regional_buckets
            else ""
        )
        acknowledge(
            self.bedrock_role,
            "AwsSolutions-IAM5",
            "Bedrock reads the training files PrepareData writes and writes its output under per-model "
            f"keys; the scope is {where} {TRAINING_DATA_PREFIX} (read) and {BEDROCK_OUTPUT_PREFIX} "
            "(read and write) folders.",
            applies_to=tuple(
                objects_finding(bucket, prefix)
                for bucket in buckets
                for prefix in (TRAINING_DATA_PREFIX, BEDROCK_OUTPUT_PREFIX)
            ),
        )
