"""Datasets on the fakes: uploads in the body and through a presigned URL, validation, deletion."""

from __future__ import annotations

import pytest

from tests.application.conftest import ADA, TRAINING_CSV, created_model, ready_dataset
from tests.fakes import FakeContext
from tunelab.application import datasets
from tunelab.domain.errors import InUse, NameTaken, ProviderPermissionDenied
from tunelab.domain.events import DATASET_VALIDATED
from tunelab.domain.layout import dataset_key, s3_uri, upload_key

BAD_CSV = b"prompt,completion\nhello,\n,world\n"


def test_a_good_csv_in_the_body_is_ready_and_its_file_kept(ctx: FakeContext) -> None:
    dataset = ready_dataset(ctx)

    assert dataset.rows == 200
    assert dataset.s3_key == dataset_key(ADA.workspace, dataset.dataset_id)
    assert ctx.files.objects[s3_uri("datasets", dataset.s3_key)] == TRAINING_CSV
    with pytest.raises(NameTaken):
        datasets.create_from_csv(ctx, ADA, "TICKETS", TRAINING_CSV)


def test_a_bad_csv_in_the_body_keeps_its_report_only(ctx: FakeContext) -> None:
    dataset = datasets.create_from_csv(ctx, ADA, "broken", BAD_CSV)

    assert dataset.status == "invalid"
    assert dataset.error_count == 2
    assert [e.row for e in dataset.errors] == [1, 2]
    assert dataset.s3_key is None
    assert ctx.files.objects == {}


def test_an_upload_is_validated_once_announced_and_cleaned_up(ctx: FakeContext) -> None:
    dataset, upload = datasets.create_upload(ctx, ADA, "uploaded")
    key = upload_key(ADA.workspace, dataset.dataset_id)
    assert key in upload.url
    ctx.files.put(s3_uri("datasets", key), TRAINING_CSV, content_type="text/csv")
    etag = ctx.files.etags[s3_uri("datasets", key)]

    first = datasets.validate_upload(ctx, bucket="datasets", key=key, etag=etag, correlation_id="s3-event-1")
    again = datasets.validate_upload(ctx, bucket="datasets", key=key, etag=etag, correlation_id="s3-event-1")

    assert (first.action, again.action) == ("validated", "ignored")
    stored = ctx.datasets.get(ADA.workspace, dataset.dataset_id)
    assert (stored.status, stored.rows) == ("ready", 200)
    lasting = s3_uri("datasets", dataset_key(ADA.workspace, dataset.dataset_id))
    assert ctx.files.objects[lasting] == TRAINING_CSV
    assert not ctx.files.exists(s3_uri("datasets", key))
    [event] = ctx.events.named(DATASET_VALIDATED)
    assert (event.correlation_id, event.data["status"], event.data["rows"]) == ("s3-event-1", "ready", 200)


def test_an_upload_replaced_since_its_event_is_left_to_the_newer_event(ctx: FakeContext) -> None:
    dataset, _ = datasets.create_upload(ctx, ADA, "uploaded")
    uri = s3_uri("datasets", upload_key(ADA.workspace, dataset.dataset_id))
    ctx.files.put(uri, BAD_CSV, content_type="text/csv")
    old = ctx.files.etags[uri]
    ctx.files.put(uri, TRAINING_CSV, content_type="text/csv")

    key = upload_key(ADA.workspace, dataset.dataset_id)
    result = datasets.validate_upload(ctx, bucket="datasets", key=key, etag=old, correlation_id="e")

    assert result.action == "ignored"
    assert ctx.datasets.get(ADA.workspace, dataset.dataset_id).status == "uploading"


def test_a_dataset_a_model_uses_cannot_be_deleted_and_its_files_go_with_it_after(ctx: FakeContext) -> None:
    model = created_model(ctx)
    uri = s3_uri("datasets", dataset_key(ADA.workspace, model.dataset.id))

    with pytest.raises(InUse, match="support-bot"):
        datasets.delete(ctx, ADA, model.dataset.id)
    assert ctx.files.exists(uri)

    other = ready_dataset(ctx, name="unused")
    datasets.delete(ctx, ADA, other.dataset_id)
    assert ctx.datasets.find(ADA.workspace, other.dataset_id) is None
    assert not ctx.files.exists(s3_uri("datasets", dataset_key(ADA.workspace, other.dataset_id)))


def test_a_dataset_whose_file_cannot_be_deleted_is_deleted_all_the_same(ctx: FakeContext) -> None:
    # The record goes first: a retry would answer 404, so a file S3 keeps is logged, not raised.
    dataset = ready_dataset(ctx)
    uri = s3_uri("datasets", dataset_key(ADA.workspace, dataset.dataset_id))
    ctx.files.fail_delete = ProviderPermissionDenied("Deleting the dataset's file was refused.")

    datasets.delete(ctx, ADA, dataset.dataset_id)

    assert ctx.datasets.find(ADA.workspace, dataset.dataset_id) is None
    assert ctx.files.exists(uri)
