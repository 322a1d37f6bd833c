"""Bounded processing of what users and jobs leave in S3, under moto: a presigned dataset upload over the
size limit is refused unread (the dataset `invalid`, the file deleted), and a trained `model.tar.gz` is
listed up to a number of files, its trainer summary read only when it is small."""

from __future__ import annotations

import io
import json
import tarfile

import boto3
import pytest
import requests

from functions import dataset_uploaded
from tests.integration.api_support import (
    GOOD_CSV,
    WS,
    Api,
    api_fixture,  # noqa: F401  # the `api` fixture
)
from tests.integration.conftest import REGION, Aws
from tests.integration.handler_support import CONTEXT, event, sqs_batch
from tunelab.adapters.providers import common
from tunelab.adapters.s3 import S3Objects
from tunelab.application import datasets
from tunelab.composition.settings import get_settings
from tunelab.domain.events import DATASET_VALIDATED
from tunelab.domain.providers import TrainedOutput

pytestmark = pytest.mark.moto

ARTIFACTS = "tunelab-test-artifacts"


# --- presigned dataset uploads ------------------------------------------------------------------------


def _presigned_upload(api: Api, data: bytes) -> tuple[str, str]:
    """A dataset created for a presigned upload, `data` PUT to its URL as a client does, and S3's
    "Object Created" event for it delivered to the upload handler; the dataset's id and upload key."""
    created = api.call("POST", "/v1/datasets", {"name": "big-tickets"})
    assert created.status == 201, created.body
    dataset, upload = created.body["dataset"], created.body["upload"]
    put = requests.put(upload["url"], data=data, headers=upload["headers"], timeout=10)
    assert put.status_code == 200
    bucket = get_settings().datasets_bucket
    key = f"uploads/{WS}/{dataset['id']}.csv"
    head = api.services.s3.head_object(Bucket=bucket, Key=key)
    obj = {"key": key, "size": len(data), "etag": head["ETag"].strip('"')}
    s3_event = event("s3_object_created", bucket={"name": bucket}, object=obj)
    answer = dataset_uploaded.handler(sqs_batch(s3_event, queue="dataset-uploads"), CONTEXT)
    assert answer == {"batchItemFailures": []}
    return str(dataset["id"]), key


def _keys(api: Api) -> list[str]:
    listed = api.services.s3.list_objects_v2(Bucket=get_settings().datasets_bucket)
    return [item["Key"] for item in listed.get("Contents", [])]


def test_an_upload_over_the_limit_is_refused_unread_and_deleted(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets, "MAX_UPLOAD_BYTES", len(GOOD_CSV) - 1)

    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a file over the limit is not read")

    monkeypatch.setattr(S3Objects, "open", never)

    dataset_id, _key = _presigned_upload(api, GOOD_CSV)

    shown = api.call("GET", f"/v1/datasets/{dataset_id}").body
    assert shown["status"] == "invalid"
    assert shown["rows"] == 0
    assert shown["size_bytes"] == len(GOOD_CSV)
    assert shown["error_count"] == 1
    [error] = shown["errors"]
    assert "limit" in error["message"]
    assert f"{len(GOOD_CSV) - 1:,} bytes" in error["message"]
    # Nothing of the file is kept: neither the upload nor a lasting copy.
    assert _keys(api) == []
    [validated] = api.published(DATASET_VALIDATED)
    assert validated["data"]["status"] == "invalid"


def test_an_upload_at_the_limit_is_validated(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "MAX_UPLOAD_BYTES", len(GOOD_CSV))

    dataset_id, _key = _presigned_upload(api, GOOD_CSV)

    shown = api.call("GET", f"/v1/datasets/{dataset_id}").body
    assert shown["status"] == "ready"
    assert shown["rows"] == 200


def test_a_file_that_grows_past_the_limit_while_read_is_refused(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The size read first says it fits; the stream says otherwise (replaced by a larger file since).
    monkeypatch.setattr(datasets, "MAX_UPLOAD_BYTES", 1024)
    monkeypatch.setattr(S3Objects, "size", lambda _self, _uri: 100)

    dataset_id, _key = _presigned_upload(api, GOOD_CSV)

    shown = api.call("GET", f"/v1/datasets/{dataset_id}").body
    assert shown["status"] == "invalid"
    assert "limit" in shown["errors"][0]["message"]
    assert _keys(api) == []


# --- trained archives -------------------------------------------------------------------------------


def _archive(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def artifacts(aws: Aws) -> S3Objects:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=ARTIFACTS)
    return S3Objects(s3)


def _output(objects: S3Objects, members: list[tuple[str, bytes]]) -> TrainedOutput:
    uri = f"s3://{ARTIFACTS}/ws-acme/support-bot/output/model.tar.gz"
    objects.put(uri, _archive(members), content_type="application/gzip")
    return common.archive_output(objects, uri, model_ref=None, merged=False)


def _summary(merged: bool, padding: int = 0) -> bytes:
    return json.dumps({"artifacts": {"merged": merged}, "notes": "x" * padding}).encode()


def test_a_small_summary_says_whether_the_adapter_was_merged(artifacts: S3Objects) -> None:
    output = _output(
        artifacts, [("./adapter_model.safetensors", b"w"), ("./tunelab-training.json", _summary(True))]
    )

    assert output.merged is True
    assert output.files == ["adapter_model.safetensors", "tunelab-training.json"]


def test_a_summary_over_1_mib_is_ignored(artifacts: S3Objects, caplog: pytest.LogCaptureFixture) -> None:
    big = _summary(True, padding=common.SUMMARY_MAX_BYTES)
    assert len(big) > common.SUMMARY_MAX_BYTES

    output = _output(artifacts, [("model.safetensors", b"w"), ("tunelab-training.json", big)])

    assert output.merged is False  # as the record said: the summary was not read
    assert output.files == ["model.safetensors", "tunelab-training.json"]
    assert "it is ignored" in caplog.text


@pytest.mark.parametrize(
    "summary",
    [b"[1, 2, 3]", b'{"artifacts": [true]}', b"[" * 100_000 + b"]" * 100_000, b"not json"],
    ids=["a-list", "artifacts-a-list", "nested-100000-deep", "not-json"],
)
def test_a_summary_of_another_shape_leaves_merged_as_it_was(artifacts: S3Objects, summary: bytes) -> None:
    output = _output(artifacts, [("model.safetensors", b"w"), ("tunelab-training.json", summary)])

    assert output.merged is False
    assert output.size_bytes is not None
    assert output.files == ["model.safetensors", "tunelab-training.json"]


def test_the_file_list_stops_at_10_000(artifacts: S3Objects, caplog: pytest.LogCaptureFixture) -> None:
    many = [(f"shard-{i:05d}.bin", b"") for i in range(common.LIST_ARCHIVE_MAX_FILES + 50)]
    # The summary comes after the cut: it is not reached.
    output = _output(artifacts, [*many, ("tunelab-training.json", _summary(True))])

    assert common.LIST_ARCHIVE_MAX_FILES == 10_000
    assert len(output.files) == common.LIST_ARCHIVE_MAX_FILES
    assert output.files[-1] == f"shard-{common.LIST_ARCHIVE_MAX_FILES - 1:05d}.bin"
    assert output.merged is False
    assert output.size_bytes is not None
    assert "only the first are listed" in caplog.text
