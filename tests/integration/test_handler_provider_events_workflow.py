"""End to end under moto: a Bedrock job's events finish the real fine-tuning workflow.

The fine-tuning state machine executes (its tasks run the real handlers in this process), the
Bedrock job is moto's, the stack's Bedrock rule routes the job's state change from the default bus
to the provider-events queue, and the queue's event source mapping invokes the ProviderEvents
function — which answers the workflow's waiting task.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.integration.conftest import REGION
from tests.integration.workflow_fixtures import Stack, stack_fixture  # noqa: F401  # the `stack` fixture
from tunelab.composition.stack_definitions import EVENT_RULES, QUEUES
from tunelab.domain.records import ModelRecord
from tunelab.domain.status import ModelStatus

pytestmark = pytest.mark.moto

SAMPLE = (
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "events"
    / "bedrock_model_customization_job_state_change.json"
)
CUSTOM_MODEL = "arn:aws:bedrock:us-east-1:123456789012:custom-model/meta.llama3-1-8b/abc123"


def _wire_provider_events(stack: Stack) -> None:
    """The provider-events queue, the Bedrock rule into it, and the function consuming it."""
    sqs = boto3.client("sqs", region_name=REGION)
    spec = next(q for q in QUEUES if q.logical_id == "ProviderEventsQueue")
    url = sqs.create_queue(QueueName=spec.name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = next(r for r in EVENT_RULES if r.logical_id == "BedrockCustomizationRule")
    events = boto3.client("events", region_name=REGION)
    events.put_rule(Name=rule.logical_id, EventPattern=json.dumps(rule.event_pattern))
    events.put_targets(Rule=rule.logical_id, Targets=[{"Id": "queue", "Arn": arn}])
    boto3.client("lambda", region_name=REGION).create_event_source_mapping(
        EventSourceArn=arn, FunctionName=stack.function_arns[spec.consumer], BatchSize=spec.batch_size
    )


def _bedrock_says(model: ModelRecord, status: str, **detail: Any) -> None:
    """Bedrock puts its job's state change on the default bus (the documentation's sample)."""
    sample = json.loads(open(SAMPLE).read())  # noqa: SIM115
    body = {**sample["detail"], "jobArn": model.training.job_id, "jobStatus": status, **detail}
    boto3.client("events", region_name=REGION).put_events(
        Entries=[{"Source": "aws.bedrock", "DetailType": sample["detail-type"], "Detail": json.dumps(body)}]
    )


def test_a_completed_event_finishes_the_workflow_and_a_duplicate_changes_nothing(stack: Stack) -> None:
    # Given a model training on Bedrock, its workflow waiting for the job
    _wire_provider_events(stack)
    record = stack.model(stack.dataset())
    execution = stack.services.workflows.start_fine_tuning(record, correlation_id="corr-e2e")
    waiting = stack.wait_for(
        lambda: (m := stack.repo.models.get(record.workspace_id, record.name)).training.job_id and m,
        20.0,
        "the job's id on the record",
    )

    # When Bedrock reports progress, then completion
    _bedrock_says(waiting, "InProgress")
    assert stack.repo.models.get(record.workspace_id, record.name).training.phase == "InProgress"
    _bedrock_says(waiting, "Completed", outputModelArn=CUSTOM_MODEL)
    result = stack.wait_execution(execution)

    # Then the workflow ended the training: not deployed, the custom model kept, the creator told
    assert result["status"] == "SUCCEEDED", result
    done = stack.repo.models.get(record.workspace_id, record.name)
    assert done.status == ModelStatus.NOT_DEPLOYED
    assert done.refs.model_ref == CUSTOM_MODEL
    assert len(stack.emails()) == 1
    # and the bus heard of it with the workflow's correlation id
    changed = [
        e for e in stack.domain_events(wait_for=1) if e["detail-type"] == "Fine-tuned Model Status Changed"
    ]
    assert [e["detail"]["data"]["status"] for e in changed] == ["not_deployed"]
    assert changed[-1]["detail"]["correlation_id"] == "corr-e2e"

    # And the same event delivered again changes nothing
    _bedrock_says(waiting, "Completed", outputModelArn=CUSTOM_MODEL)
    assert stack.repo.models.get(record.workspace_id, record.name) == done
    assert len(stack.emails()) == 1
    assert stack.domain_events(timeout=0.5) == []
