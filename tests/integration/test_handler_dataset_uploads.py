"""Datasets uploaded through a presigned URL: S3 "Object Created" → validation → ready | invalid.

Events are the AWS documentation sample (tests/fixtures/events/s3_object_created.json) with the
bucket, key and ETag of the object each test uploads to moto's S3.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from functions import dataset_uploaded
from tests.integration import factories
from tests.integration.conftest import REGION, Aws
from tests.integration.handler_support import CONTEXT, SAMPLE_DATA, BusSpy, event, sqs_batch
from tunelab.composition.stack_definitions import EVENT_RULES, render_pattern
from tunelab.composition.wiring import Services, reset_services, set_services
from tunelab.domain.layout import dataset_key, parse_upload_key, upload_key
from tunelab.domain.records import DatasetRecord
from tunelab.entrypoints.messages import EventEnvelope, handle_upload

BUCKET = "tunelab-test-datasets"
WS = "ws-acme"
GOOD_CSV = (SAMPLE_DATA / "support-triage.csv").read_bytes()
BAD_CSV = (
    b"prompt,completion\n"
    b"My invoice is wrong,billing\n"
    b",account\n"  # row 2: empty prompt
    b"The app crashes on start,\n"  # row 3: empty completion
    b"Where is my parcel,shipping\n"
)


@pytest.fixture
def bus(aws: Aws) -> BusSpy:
    return BusSpy("tunelab-test")


@pytest.fixture
def services(aws: Aws, repo: Services, bus: BusSpy) -> Iterator[Services]:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    built = Services()
    set_services(built)
    yield built
    reset_services()


def _dataset(repo: Services, **fields: Any) -> DatasetRecord:
    record = factories.dataset(
        WS, name=fields.pop("name", "support-tickets"), status="uploading", s3_key=None, **fields
    )
    return repo.datasets.create(record)


def _upload(services: Services, dataset: DatasetRecord, body: bytes) -> dict[str, Any]:
    """PUT the file where the presigned URL points, and the event S3 sends for it."""
    key = upload_key(WS, dataset.dataset_id)
    put = services.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    bucket = {"name": BUCKET}
    obj = {"key": key, "size": len(body), "etag": put["ETag"].strip('"'), "sequencer": "617f08299329d189"}
    return event("s3_object_created", bucket=bucket, object=obj)


def test_upload_keys_round_trip() -> None:
    key = upload_key(WS, "ds_01jdqz8k3m4n5p6q7r8s9t0v1w")
    assert key == "uploads/ws-acme/ds_01jdqz8k3m4n5p6q7r8s9t0v1w.csv"
    assert parse_upload_key(key) == (WS, "ds_01jdqz8k3m4n5p6q7r8s9t0v1w")
    assert parse_upload_key("uploads/ws-acme/notes.txt") is None
    assert parse_upload_key("datasets/ws-acme/ds_01jdqz8k3m4n5p6q7r8s9t0v1w.csv") is None


def test_a_good_upload_becomes_ready_with_stats(services: Services, repo: Services, bus: BusSpy) -> None:
    dataset = _dataset(repo)
    body = _upload(services, dataset, GOOD_CSV)

    result = handle_upload(services, EventEnvelope.model_validate(body))

    assert result.action == "validated"
    stored = repo.datasets.get(WS, dataset.dataset_id)
    assert stored.status == "ready"
    assert stored.rows == 200
    assert stored.size_bytes == len(GOOD_CSV)
    assert stored.stats is not None
    assert stored.stats.prompt_tokens > 0
    assert stored.stats.completion_tokens > 0
    assert stored.error_count == 0
    # The file now lives where a fine-tuning job reads it; the expiring upload is gone.
    assert stored.s3_key == dataset_key(WS, dataset.dataset_id)
    kept = services.s3.get_object(Bucket=BUCKET, Key=stored.s3_key)["Body"].read()
    assert kept == GOOD_CSV
    listed = services.s3.list_objects_v2(Bucket=BUCKET, Prefix="uploads/")
    assert listed.get("KeyCount", 0) == 0
    [announced] = bus.published()
    assert announced["detail-type"] == "Dataset Validated"
    assert announced["detail"]["data"]["dataset_id"] == dataset.dataset_id
    assert announced["detail"]["data"]["status"] == "ready"
    assert announced["detail"]["data"]["rows"] == 200
    # The announcement carries the S3 event that caused it.
    assert announced["detail"]["correlation_id"] == body["id"]


def test_a_bad_csv_becomes_invalid_with_row_errors(services: Services, repo: Services) -> None:
    dataset = _dataset(repo)
    body = _upload(services, dataset, BAD_CSV)

    handle_upload(services, EventEnvelope.model_validate(body))

    stored = repo.datasets.get(WS, dataset.dataset_id)
    assert stored.status == "invalid"
    assert stored.rows == 2
    assert stored.error_count == 2
    assert [(e.row, e.column) for e in stored.errors] == [(2, "prompt"), (3, "completion")]
    assert all(e.message for e in stored.errors)
    assert stored.s3_key is None


def test_a_corrected_file_uploaded_again_makes_an_invalid_dataset_ready(
    services: Services, repo: Services
) -> None:
    dataset = _dataset(repo)
    handle_upload(services, EventEnvelope.model_validate(_upload(services, dataset, BAD_CSV)))
    assert repo.datasets.get(WS, dataset.dataset_id).status == "invalid"

    handle_upload(services, EventEnvelope.model_validate(_upload(services, dataset, GOOD_CSV)))

    stored = repo.datasets.get(WS, dataset.dataset_id)
    assert stored.status == "ready"
    assert stored.rows == 200
    assert stored.errors == []
    assert stored.error_count == 0


def test_a_duplicate_event_changes_nothing(services: Services, repo: Services, bus: BusSpy) -> None:
    dataset = _dataset(repo)
    body = _upload(services, dataset, GOOD_CSV)
    handle_upload(services, EventEnvelope.model_validate(body))
    first = repo.datasets.get(WS, dataset.dataset_id)

    again = handle_upload(services, EventEnvelope.model_validate(body))

    assert again.action == "ignored"
    assert repo.datasets.get(WS, dataset.dataset_id) == first
    assert len(bus.published()) == 1


def test_a_redelivery_after_a_failed_cleanup_finishes_it_with_the_same_event(
    services: Services, repo: Services, bus: BusSpy
) -> None:
    """The result was stored but publishing failed: the next delivery announces it, same event id."""
    dataset = _dataset(repo)
    body = _upload(services, dataset, GOOD_CSV)
    real_put = services.eventbridge.put_events
    services.eventbridge.put_events = lambda **_: (_ for _ in ()).throw(RuntimeError("bus down"))  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        handle_upload(services, EventEnvelope.model_validate(body))
    services.eventbridge.put_events = real_put  # type: ignore[method-assign]
    stored = repo.datasets.get(WS, dataset.dataset_id)
    assert stored.status == "ready"

    again = handle_upload(services, EventEnvelope.model_validate(body))

    assert again.action == "republished"
    assert repo.datasets.get(WS, dataset.dataset_id) == stored
    [announced] = bus.published()
    assert announced["detail"]["data"]["status"] == "ready"
    assert announced["detail"]["correlation_id"] == body["id"]
    assert services.s3.list_objects_v2(Bucket=BUCKET, Prefix="uploads/").get("KeyCount", 0) == 0


def test_a_duplicate_of_an_invalid_upload_changes_nothing(services: Services, repo: Services) -> None:
    dataset = _dataset(repo)
    body = _upload(services, dataset, BAD_CSV)
    handle_upload(services, EventEnvelope.model_validate(body))
    first = repo.datasets.get(WS, dataset.dataset_id)

    again = handle_upload(services, EventEnvelope.model_validate(body))

    assert again.action == "ignored"
    assert repo.datasets.get(WS, dataset.dataset_id).version == first.version


def test_the_same_bad_file_uploaded_again_changes_nothing(services: Services, repo: Services) -> None:
    dataset = _dataset(repo)
    handle_upload(services, EventEnvelope.model_validate(_upload(services, dataset, BAD_CSV)))
    first = repo.datasets.get(WS, dataset.dataset_id)

    again = handle_upload(services, EventEnvelope.model_validate(_upload(services, dataset, BAD_CSV)))

    assert again.action == "republished"
    assert repo.datasets.get(WS, dataset.dataset_id) == first


def test_an_event_for_a_replaced_object_is_left_to_the_newer_event(
    services: Services, repo: Services
) -> None:
    dataset = _dataset(repo)
    old = _upload(services, dataset, BAD_CSV)
    _upload(services, dataset, GOOD_CSV)  # the user uploaded again before the first event arrived

    result = handle_upload(services, EventEnvelope.model_validate(old))

    assert result.action == "ignored"
    assert repo.datasets.get(WS, dataset.dataset_id).status == "uploading"


def test_a_ready_dataset_never_changes(services: Services, repo: Services) -> None:
    dataset = _dataset(repo)
    handle_upload(services, EventEnvelope.model_validate(_upload(services, dataset, GOOD_CSV)))
    ready = repo.datasets.get(WS, dataset.dataset_id)

    result = handle_upload(services, EventEnvelope.model_validate(_upload(services, dataset, BAD_CSV)))

    assert result.action != "validated"
    assert repo.datasets.get(WS, dataset.dataset_id) == ready
    assert services.s3.get_object(Bucket=BUCKET, Key=str(ready.s3_key))["Body"].read() == GOOD_CSV
    assert services.s3.list_objects_v2(Bucket=BUCKET, Prefix="uploads/").get("KeyCount", 0) == 0


@pytest.mark.parametrize(
    ("bucket", "key"),
    [
        ("someone-elses-bucket", "uploads/ws-acme/ds_01jdqz8k3m4n5p6q7r8s9t0v1w.csv"),
        (BUCKET, "uploads/ws-acme/holiday.jpg"),
        (BUCKET, "uploads/ws-acme/ds_01jdqz8k3m4n5p6q7r8s9t0v1w.csv"),  # no such dataset
    ],
)
def test_what_is_not_a_known_upload_is_ignored(services: Services, bucket: str, key: str) -> None:
    body = event("s3_object_created", bucket={"name": bucket}, object={"key": key, "size": 5})

    assert handle_upload(services, EventEnvelope.model_validate(body)).action == "ignored"


def test_the_lambda_validates_through_the_rule_and_the_queue(services: Services, repo: Services) -> None:
    """The stack's rule routes the upload event to the queue; the function reports no failures."""
    rule = next(r for r in EVENT_RULES if r.logical_id == "DatasetUploadedRule")
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="dataset-uploads")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    pattern = render_pattern(rule.event_pattern, {"DatasetsBucketName": BUCKET})
    events.put_rule(Name="dataset-uploaded", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="dataset-uploaded", Targets=[{"Id": "queue", "Arn": queue_arn}])
    dataset = _dataset(repo)
    sample = _upload(services, dataset, GOOD_CSV)
    elsewhere = {**sample, "detail": {**sample["detail"], "object": {"key": "exports/report.csv"}}}
    for entry in (sample, elsewhere):
        events.put_events(
            Entries=[
                {
                    "Source": entry["source"],
                    "DetailType": entry["detail-type"],
                    "Detail": json.dumps(entry["detail"]),
                    "Resources": entry["resources"],
                }
            ]
        )
    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert len(received) == 1  # the object outside uploads/ did not match the rule

    response = dataset_uploaded.handler(sqs_batch(*(m["Body"] for m in received)), CONTEXT)

    assert response == {"batchItemFailures": []}
    assert repo.datasets.get(WS, dataset.dataset_id).status == "ready"
