"""Training: the Bedrock customization service role and the trainer's source as an S3 asset."""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from infra.config import REPO_ROOT
from infra.nag import acknowledge, objects_finding


class Training(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        datasets_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        jobs = f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}:{Aws.ACCOUNT_ID}:model-customization-job/*"
        # Only Bedrock, only for this account's customization jobs (the confused-deputy guard).
        self.bedrock_role = iam.Role(
            self,
            "BedrockCustomizationRole",
            description="Role Bedrock model customization jobs of tunelab run with",
            assumed_by=iam.ServicePrincipal(
                "bedrock.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": jobs},
                },
            ),
        )
        self.bedrock_role.add_to_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[datasets_bucket.arn_for_objects("*")])
        )
        self.bedrock_role.add_to_policy(
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[artifacts_bucket.arn_for_objects("*")])
        )
        self.bedrock_role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"], resources=[datasets_bucket.bucket_arn, artifacts_bucket.bucket_arn]
            )
        )
        acknowledge(
            self.bedrock_role,
            "AwsSolutions-IAM5",
            "Bedrock reads the prepared training files and writes its outputs under per-model keys; "
            "the datasets (read) and artifacts (write) buckets are the scope.",
            applies_to=tuple(objects_finding(bucket) for bucket in (datasets_bucket, artifacts_bucket)),
        )
        self.trainer_source = s3_assets.Asset(
            self,
            "TrainerSource",
            path=str(REPO_ROOT / "trainer"),
            exclude=["__pycache__", "*.pyc", ".pytest_cache"],
        )
