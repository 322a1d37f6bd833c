"""Training: the service role Bedrock model customization jobs run with.

The jobs read the training (and validation) files PrepareData writes under `training-data/` in
the artifacts bucket, and write their output under `bedrock-output/` there (Bedrock keeps the
weights; the output holds the job's metrics). The bucket is encrypted with S3-managed keys, so no
KMS permission is needed. SageMaker jobs run in customers' accounts (the connector stack); their
trainer source is bundled with the Lambda code (`infra.bundling`).
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.nag import acknowledge, objects_finding
from tunelab.domain.layout import BEDROCK_OUTPUT_PREFIX, TRAINING_DATA_PREFIX


class Training(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, artifacts_bucket: s3.IBucket) -> None:
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
        training_data = artifacts_bucket.arn_for_objects(f"{TRAINING_DATA_PREFIX}*")
        output = artifacts_bucket.arn_for_objects(f"{BEDROCK_OUTPUT_PREFIX}*")
        # What Bedrock's guide for a customization service role asks: read the training and
        # validation files, read and write the output folder, list the buckets they are in.
        self.bedrock_role.add_to_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[training_data])
        )
        self.bedrock_role.add_to_policy(
            iam.PolicyStatement(actions=["s3:GetObject", "s3:PutObject"], resources=[output])
        )
        self.bedrock_role.add_to_policy(
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[artifacts_bucket.bucket_arn])
        )
        acknowledge(
            self.bedrock_role,
            "AwsSolutions-IAM5",
            "Bedrock reads the training files PrepareData writes and writes its output under per-model "
            f"keys; the scope is the artifacts bucket's {TRAINING_DATA_PREFIX} (read) and "
            f"{BEDROCK_OUTPUT_PREFIX} (read and write) folders.",
            applies_to=tuple(
                objects_finding(artifacts_bucket, prefix)
                for prefix in (TRAINING_DATA_PREFIX, BEDROCK_OUTPUT_PREFIX)
            ),
        )
