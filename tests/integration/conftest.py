"""moto fixtures: each test gets its own `mock_aws`, so tests run in parallel (pytest -n) safely.

The table is created from `tunelab.adapters.dynamodb.TABLE_DEFINITION`, the same data the CDK app reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import boto3
import pytest
from moto import mock_aws

from tunelab.adapters.dynamodb import (
    IDEMPOTENCY_TABLE_DEFINITION,
    IDEMPOTENCY_TTL_ATTRIBUTE,
    TABLE_DEFINITION,
    TTL_ATTRIBUTE,
)
from tunelab.composition.wiring import Services
from tunelab.entrypoints.api.deps import reset as reset_services

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

REGION = "us-east-1"
ACCOUNT = "123456789012"
TABLE_NAME = "tunelab-test"
# As the CDK app deploys a platform in us-east-1: a regional Bedrock stack in us-west-2 (Llama trains
# only there), whose data bucket the `aws` fixture makes.
BEDROCK_REGION: Literal["us-west-2"] = "us-west-2"
BEDROCK_DATA_BUCKET = "tunelab-test-bedrock-us-west-2"
IDEMPOTENCY_TABLE_NAME = "tunelab-test-idempotency"

# Every variable `tunelab.composition.settings.Settings` requires, with test values.
ENVIRONMENT = {
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "RUNTIME": "aws",
    "TABLE_NAME": TABLE_NAME,
    "IDEMPOTENCY_TABLE_NAME": IDEMPOTENCY_TABLE_NAME,
    "DATASETS_BUCKET": "tunelab-test-datasets",
    "ARTIFACTS_BUCKET": "tunelab-test-artifacts",
    "FINE_TUNING_STATE_MACHINE_ARN": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:tunelab-fine-tuning",
    "DEPLOYMENT_STATE_MACHINE_ARN": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:tunelab-deployment",
    "EVENT_BUS_NAME": "tunelab-test",
    "SENDER_EMAIL": "tunelab@example.com",
    "SCHEDULE_GROUP": "tunelab-test",
    "SCHEDULER_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/tunelab-scheduler",
    "SCHEDULES_DLQ_ARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:tunelab-test-schedules-dlq",
    "AUTO_UNDEPLOY_TARGET_ARN": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:tunelab-deployment",
    "BEDROCK_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/tunelab-bedrock",
    "BEDROCK_DATA_BUCKETS": json.dumps({BEDROCK_REGION: BEDROCK_DATA_BUCKET}),
    "PLATFORM_ACCOUNT_ID": ACCOUNT,
    "POWERTOOLS_SERVICE_NAME": "tunelab-api",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "tunelab",
}


@dataclass
class Aws:
    """What the `aws` fixture set up inside its `mock_aws`."""

    dynamodb: DynamoDBClient
    table_name: str = TABLE_NAME
    idempotency_table_name: str = IDEMPOTENCY_TABLE_NAME
    region: str = REGION


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """A fresh mock AWS account with the tunelab tables, and the settings' environment set."""
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    reset_services()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(TableName=TABLE_NAME, **TABLE_DEFINITION)
        dynamodb.update_time_to_live(
            TableName=TABLE_NAME,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )
        boto3.client("s3", region_name=BEDROCK_REGION).create_bucket(
            Bucket=BEDROCK_DATA_BUCKET, CreateBucketConfiguration={"LocationConstraint": BEDROCK_REGION}
        )
        dynamodb.create_table(TableName=IDEMPOTENCY_TABLE_NAME, **IDEMPOTENCY_TABLE_DEFINITION)
        dynamodb.update_time_to_live(
            TableName=IDEMPOTENCY_TABLE_NAME,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": IDEMPOTENCY_TTL_ATTRIBUTE},
        )
        yield Aws(dynamodb=dynamodb)
    reset_services()


@pytest.fixture
def repo(aws: Aws) -> Services:
    """The records stores (`.models`, `.datasets`, ...) over the mock account's table."""
    return Services()
