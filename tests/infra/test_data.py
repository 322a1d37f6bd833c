"""Data: the records table from its stores' definition, the idempotency table, private buckets."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.conftest import REGIONAL_STACKS, Synthesized, as_list, only, render, resources
from tunelab.adapters import dynamodb
from tunelab.composition.stack_definitions import UPLOADS_EXPIRE_AFTER_DAYS
from tunelab.domain.layout import UPLOADS_PREFIX

pytestmark = pytest.mark.xdist_group("infra")


def table(synthesized: Synthesized, prefix: str) -> dict[str, Any]:
    props: dict[str, Any] = only(synthesized.platform, "AWS::DynamoDB::Table", prefix)[1]["Properties"]
    return props


def test_records_table_is_the_repositorys_on_demand_with_recovery_and_ttl(synthesized: Synthesized) -> None:
    props = table(synthesized, "DataTable")
    definition = dynamodb.TABLE_DEFINITION
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["TimeToLiveSpecification"] == {"AttributeName": dynamodb.TTL_ATTRIBUTE, "Enabled": True}
    assert props["DeletionProtectionEnabled"] is True
    assert props["KeySchema"] == definition["KeySchema"]
    expected = {
        i["IndexName"]: (i["KeySchema"], i["Projection"]) for i in definition["GlobalSecondaryIndexes"]
    }
    actual = {i["IndexName"]: (i["KeySchema"], i["Projection"]) for i in props["GlobalSecondaryIndexes"]}
    assert actual == expected
    assert sorted(props["AttributeDefinitions"], key=str) == sorted(
        definition["AttributeDefinitions"], key=str
    )


def test_idempotency_table_has_powertools_key_and_ttl(synthesized: Synthesized) -> None:
    props = table(synthesized, "DataIdempotencyTable")
    assert props["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def bucket_policies(template: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {
        render(policy["Properties"]["Bucket"]): policy["Properties"]["PolicyDocument"]["Statement"]
        for policy in resources(template, "AWS::S3::BucketPolicy").values()
    }


@pytest.mark.parametrize("stack", ["Tunelab", "TunelabConnector", *REGIONAL_STACKS])
def test_every_bucket_is_encrypted_private_and_refuses_plain_http(
    synthesized: Synthesized, stack: str
) -> None:
    template = synthesized.templates[stack]
    policies = bucket_policies(template)
    buckets = resources(template, "AWS::S3::Bucket")
    assert buckets
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        denies_http = [
            s
            for s in policies["${" + logical_id + "}"]
            if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert denies_http, f"{logical_id} accepts requests without TLS"
        assert as_list(denies_http[0]["Action"]) == ["s3:*"]


def test_data_buckets_log_access_and_clean_up_abandoned_uploads(synthesized: Synthesized) -> None:
    logs_id, _ = only(synthesized.platform, "AWS::S3::Bucket", "DataAccessLogsBucket")
    for prefix in ("DataDatasetsBucket", "DataArtifactsBucket"):
        props = only(synthesized.platform, "AWS::S3::Bucket", prefix)[1]["Properties"]
        assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": logs_id}
        rules = props["LifecycleConfiguration"]["Rules"]
        assert any(r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") == 1 for r in rules)
    datasets = only(synthesized.platform, "AWS::S3::Bucket", "DataDatasetsBucket")[1]["Properties"]
    (uploads,) = [r for r in datasets["LifecycleConfiguration"]["Rules"] if r.get("Prefix") == UPLOADS_PREFIX]
    assert uploads["ExpirationInDays"] == UPLOADS_EXPIRE_AFTER_DAYS
    assert datasets["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}


def test_no_custom_resource_lambdas_are_created_behind_the_scenes(synthesized: Synthesized) -> None:
    # Bucket notifications and log retention are set natively, not by CDK's helper functions.
    assert not resources(synthesized.platform, "Custom::S3BucketNotifications")
    assert not resources(synthesized.platform, "Custom::LogRetention")
    functions = resources(synthesized.platform, "AWS::Lambda::Function")
    assert all(f["Properties"].get("FunctionName", "").startswith("Tunelab-") for f in functions.values())
