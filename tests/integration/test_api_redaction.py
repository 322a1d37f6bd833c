"""Through the API under moto: AWS's words that name the platform's role ARNs, account and buckets reach
no tenant, neither in a model's failure reason (the real workflow, Bedrock's event) nor in an error answer.
The full text stays in the logs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.api_support import GOOD_CSV
from tests.integration.conftest import ACCOUNT
from tests.integration.test_api_lifecycle_bedrock import (
    BASE,
    _call,
    _create,
    _job_event,
    _wait_training,
    bedrock,  # noqa: F401  # the `bedrock` fixture
)
from tests.integration.workflow_fixtures import Stack, stack_fixture  # noqa: F401  # the `stack` fixture
from tunelab.adapters.aws_errors import aws_call
from tunelab.adapters.s3 import S3Objects

pytestmark = pytest.mark.moto

DATASETS = "tunelab-test-datasets"
ARTIFACTS = "tunelab-test-artifacts"
PLATFORM_ROLE = f"arn:aws:sts::{ACCOUNT}:assumed-role/tunelab-test-bedrock/BedrockSession"


def _contract_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The whole model: its job id and execution ARN too (the API masks the platform's account in them)."""
    return body


def _assert_no_platform_names(text: str) -> None:
    for leak in (ACCOUNT, PLATFORM_ROLE, "tunelab-test-bedrock", ARTIFACTS, DATASETS, "s3://"):
        assert leak not in text, (leak, text)


@pytest.mark.usefixtures("bedrock")
def test_a_bedrock_failure_naming_the_platform_role_and_bucket_is_shown_without_them(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    created = _create(stack)
    _wait_training(stack)
    failure = (
        f"User: {PLATFORM_ROLE} is not authorized to perform: s3:GetObject on resource: "
        f"arn:aws:s3:::{ARTIFACTS}/ws-acme/support-bot-v1/training/train.jsonl. "
        f"Check that the training data at s3://{ARTIFACTS}/ws-acme/support-bot-v1/training/ is readable."
    )

    _job_event(stack, "Failed", failureMessage=failure)
    execution = stack.repo.models.get("ws-acme", created["name"]).training.execution_arn
    assert execution is not None
    stack.wait_execution(execution)

    model = _call("GET", BASE).body
    events = _call("GET", f"{BASE}/events").body
    assert model["status"] == "training_failed"
    reason = model["training"]["failure_reason"]
    assert reason == (
        "User: [tunelab role] is not authorized to perform: s3:GetObject on resource: [tunelab storage]. "
        "Check that the training data at [tunelab storage] is readable."
    )
    _assert_no_platform_names(json.dumps(_contract_fields(model)))
    _assert_no_platform_names(json.dumps(events))
    assert stack.repo.models.get("ws-acme", "support-bot-v1").training.failure_reason == reason
    # The operator still reads the whole of it.
    assert any(PLATFORM_ROLE in str(getattr(r, "full_reason", "")) for r in caplog.records)


@pytest.fixture
def s3_refuses_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes to S3 refused as AWS refuses them, naming the platform's role and bucket."""

    def refused(self: S3Objects, uri: str, body: object, *, content_type: str) -> None:
        error = ClientError(
            {
                "Error": {
                    "Code": "AccessDenied",
                    "Message": f"User: {PLATFORM_ROLE} is not authorized to perform: s3:PutObject on "
                    f"resource: arn:aws:s3:::{DATASETS}/datasets/ws-acme/x.csv with an explicit deny",
                },
            },
            "PutObject",
        )
        with aws_call(f"Writing {uri}", permission=f"s3:PutObject on {DATASETS}"):
            raise error

    monkeypatch.setattr(S3Objects, "put", refused)


def test_an_aws_refusal_in_an_api_answer_is_told_without_platform_names(
    stack: Stack, s3_refuses_writes: None
) -> None:
    answer = _call(
        "POST", "/v1/datasets?name=support-tickets", raw_body=GOOD_CSV.decode(), content_type="text/csv"
    )

    assert answer.status == 403, answer.body
    message = answer.body["error"]["message"]
    assert message.startswith(
        "Writing [tunelab storage] was refused: the role lacks the permission s3:PutObject"
    )
    assert "User: [tunelab role] is not authorized" in message
    _assert_no_platform_names(answer.text)
