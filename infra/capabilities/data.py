"""Data: the records table, the idempotency table and the S3 buckets."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from tunelab.composition.stack_definitions import (
    ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS,
    ACCESS_LOGS_EXPIRE_AFTER_DAYS,
    IDEMPOTENCY_KEY_ATTRIBUTE,
    IDEMPOTENCY_TTL_ATTRIBUTE,
    UPLOADS_EXPIRE_AFTER_DAYS,
    TableDefinition,
)
from tunelab.domain.layout import UPLOADS_PREFIX

_STRING = dynamodb.AttributeType.STRING


def _key(name: str | None) -> dynamodb.Attribute | None:
    return dynamodb.Attribute(name=name, type=_STRING) if name else None


class Data(Construct):
    """DynamoDB on demand with point-in-time recovery; private, encrypted, TLS-only buckets."""

    def __init__(self, scope: Construct, construct_id: str, *, table_definition: TableDefinition) -> None:
        super().__init__(scope, construct_id)
        pitr = dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True)

        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=table_definition.partition_key, type=_STRING),
            sort_key=_key(table_definition.sort_key),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=pitr,
            time_to_live_attribute=table_definition.ttl_attribute,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        for index in table_definition.global_indexes:
            self.table.add_global_secondary_index(
                index_name=index.name,
                partition_key=dynamodb.Attribute(name=index.partition_key, type=_STRING),
                sort_key=_key(index.sort_key),
                projection_type=dynamodb.ProjectionType[index.projection],
                non_key_attributes=list(index.non_key_attributes) or None,
            )

        # Powertools' idempotency records: a day's worth, removed by TTL, nothing worth keeping.
        self.idempotency_table = dynamodb.Table(
            self,
            "IdempotencyTable",
            partition_key=dynamodb.Attribute(name=IDEMPOTENCY_KEY_ATTRIBUTE, type=_STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=pitr,
            time_to_live_attribute=IDEMPOTENCY_TTL_ATTRIBUTE,
            removal_policy=RemovalPolicy.DESTROY,
        )

        self.access_logs_bucket = access_logs_bucket(self, "AccessLogsBucket")
        self.datasets_bucket = self._bucket(
            "DatasetsBucket",
            "datasets/",
            [
                abort_incomplete_uploads(),
                # Presigned uploads land under uploads/; validation copies them out, so leftovers expire.
                s3.LifecycleRule(
                    id="ExpireAbandonedUploads",
                    prefix=UPLOADS_PREFIX,
                    expiration=Duration.days(UPLOADS_EXPIRE_AFTER_DAYS),
                ),
            ],
        )
        # EventBridge notifications straight on the bucket (no notification custom resource).
        cfn_datasets = self.datasets_bucket.node.default_child
        assert isinstance(cfn_datasets, s3.CfnBucket)
        cfn_datasets.add_property_override(
            "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
        )
        self.artifacts_bucket = self._bucket("ArtifactsBucket", "artifacts/", artifacts_lifecycle())

    def _bucket(self, construct_id: str, log_prefix: str, rules: list[s3.LifecycleRule]) -> s3.Bucket:
        return private_bucket(
            self, construct_id, logs=self.access_logs_bucket, log_prefix=log_prefix, rules=rules
        )


def abort_incomplete_uploads() -> s3.LifecycleRule:
    return s3.LifecycleRule(
        id="AbortIncompleteUploads",
        abort_incomplete_multipart_upload_after=Duration.days(ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS),
    )


def artifacts_lifecycle() -> list[s3.LifecycleRule]:
    """The lifecycle of the artifacts bucket and of each regional Bedrock data bucket (its counterpart)."""
    return [abort_incomplete_uploads()]


def access_logs_bucket(scope: Construct, construct_id: str) -> s3.Bucket:
    """Where a region's buckets log access. Server access logs must be SSE-S3 encrypted; S3's logging
    service writes them (bucket policy)."""
    return s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(ACCESS_LOGS_EXPIRE_AFTER_DAYS))],
        removal_policy=RemovalPolicy.RETAIN,
    )


def private_bucket(
    scope: Construct,
    construct_id: str,
    *,
    logs: s3.IBucket,
    log_prefix: str,
    rules: list[s3.LifecycleRule],
    bucket_name: str | None = None,
) -> s3.Bucket:
    """A private, SSE-S3 encrypted, TLS-only, access-logged bucket, kept when its stack is deleted."""
    return s3.Bucket(
        scope,
        construct_id,
        bucket_name=bucket_name,
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        server_access_logs_bucket=logs,
        server_access_logs_prefix=log_prefix,
        lifecycle_rules=rules,
        removal_policy=RemovalPolicy.RETAIN,
    )
