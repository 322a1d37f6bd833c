"""tunelab's domain events on its own bus: the envelope, routing by rules, and PutEvents failures."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from tests.integration import factories
from tests.integration.conftest import REGION, Aws
from tunelab.adapters.eventbridge import EventPublisher
from tunelab.domain.errors import ProviderTransientError
from tunelab.domain.events import (
    DATASET_VALIDATED,
    MODEL_STATUS_CHANGED,
    dataset_validated,
    model_status_changed,
)
from tunelab.domain.status import ModelStatus

pytestmark = pytest.mark.moto
BUS = "tunelab-test"


@pytest.fixture
def bus(aws: Aws) -> tuple[Any, str]:
    """tunelab's bus with a rule sending events of one workspace, status not_deployed, to a queue."""
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    events.create_event_bus(Name=BUS)
    url = sqs.create_queue(QueueName="automation")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {
        "source": ["tunelab"],
        "detail-type": [MODEL_STATUS_CHANGED, DATASET_VALIDATED],
        "detail": {"workspace": ["ws-acme"]},
    }
    events.put_rule(Name="automation", EventBusName=BUS, EventPattern=json.dumps(pattern))
    events.put_targets(Rule="automation", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])
    return events, url


def _received(url: str, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=REGION)
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(seen) < count and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            seen.append(json.loads(message["Body"]))
    return seen


def test_status_change_and_dataset_events_land_on_the_bus_in_one_envelope(bus: tuple[Any, str]) -> None:
    events, url = bus
    model = factories.model(status=ModelStatus.NOT_DEPLOYED)
    dataset = factories.dataset(status="ready", rows=200)
    other_workspace = factories.model(workspace="ws-other", status=ModelStatus.NOT_DEPLOYED)

    EventPublisher(events, BUS).publish(
        model_status_changed(model, previous_status="training", correlation_id="req-9"),
        dataset_validated(dataset),
        model_status_changed(other_workspace, previous_status="training"),
    )

    received = _received(url, 2)
    assert {e["detail-type"] for e in received} == {MODEL_STATUS_CHANGED, DATASET_VALIDATED}
    changed = next(e for e in received if e["detail-type"] == MODEL_STATUS_CHANGED)
    assert changed["source"] == "tunelab"
    detail = changed["detail"]
    assert set(detail) == {"name", "version", "id", "correlation_id", "time", "workspace", "data"}
    assert detail["name"] == MODEL_STATUS_CHANGED
    assert detail["version"] == "1"
    assert detail["correlation_id"] == "req-9"
    assert detail["time"].endswith("Z")
    assert detail["data"]["status"] == "not_deployed"
    assert detail["data"]["status_label"] == "Not deployed"
    assert detail["data"]["previous_status"] == "training"
    validated = next(e for e in received if e["detail-type"] == DATASET_VALIDATED)["detail"]["data"]
    assert validated == {
        "dataset_id": dataset.dataset_id,
        "dataset_name": dataset.name,
        "status": "ready",
        "rows": 200,
        "size_bytes": dataset.size_bytes,
        "error_count": 0,
        "warning_count": 0,
    }
    # the other workspace's event did not match this workspace's rule
    assert _received(url, 1, timeout=0.5) == []


def test_the_same_status_change_has_the_same_event_id() -> None:
    model = factories.model(status=ModelStatus.NOT_DEPLOYED)
    assert model_status_changed(model).id == model_status_changed(model, reason="again").id
    assert model_status_changed(model).id != model_status_changed(model.model_copy(update={"uid": "x"})).id


def _answer(codes: list[str | None]) -> dict[str, Any]:
    entries = [
        {"ErrorCode": c, "ErrorMessage": "busy"} if c else {"EventId": f"e{i}"} for i, c in enumerate(codes)
    ]
    return {"FailedEntryCount": sum(1 for c in codes if c), "Entries": entries}


def test_failed_entries_are_retried_alone_then_succeed() -> None:
    client = boto3.client("events", region_name=REGION)
    one, two = factories.model(name="a"), factories.model(name="b")
    publisher = EventPublisher(client, BUS, sleep=lambda _: None)
    with Stubber(client) as stub:
        stub.add_response("put_events", _answer([None, "ThrottlingException"]), {"Entries": ANY})
        # the retry carries only the entry that failed
        second = publisher.entry(model_status_changed(two))
        stub.add_response("put_events", _answer([None]), {"Entries": [second]})
        publisher.publish(model_status_changed(one), model_status_changed(two))
        stub.assert_no_pending_responses()


def test_entries_that_keep_failing_raise_a_transient_error() -> None:
    client = boto3.client("events", region_name=REGION)
    publisher = EventPublisher(client, BUS, attempts=3, sleep=lambda _: None)
    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_response("put_events", _answer(["InternalFailure"]), {"Entries": ANY})
        with pytest.raises(ProviderTransientError, match="InternalFailure"):
            publisher.publish(model_status_changed(factories.model()))
        stub.assert_no_pending_responses()


def test_more_than_ten_events_go_in_batches_of_ten() -> None:
    client = boto3.client("events", region_name=REGION)
    publisher = EventPublisher(client, BUS, sleep=lambda _: None)
    models = [factories.model(name=f"m{i}") for i in range(13)]
    with Stubber(client) as stub:
        stub.add_response("put_events", _answer([None] * 10), {"Entries": ANY})
        stub.add_response("put_events", _answer([None] * 3), {"Entries": ANY})
        publisher.publish(*(model_status_changed(m) for m in models))
        stub.assert_no_pending_responses()
