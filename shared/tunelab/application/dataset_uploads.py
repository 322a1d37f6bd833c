"""Validation of datasets uploaded to S3 through a presigned URL.

The API creates the dataset (`uploading`) and hands out a presigned PUT for
`uploads/<workspace>/<dataset id>.csv` in the datasets bucket (`upload_key`). S3 tells EventBridge
("Object Created"), a rule sends the event to the dataset-uploads queue, and `handle_upload`:

1. finds the dataset from the key, and does nothing when it is gone;
2. reads exactly the object the event names (`IfMatch` its ETag: a newer upload of the same key
   has its own event), streaming it — the file is never held in memory;
3. marks an `uploading` dataset `validating`, validates in one pass, and on success copies the
   file to its lasting place (`dataset_key`; objects under `uploads/` expire) — then stores rows,
   stats, errors and warnings with the status `ready` or `invalid`;
4. publishes "Dataset Validated", then deletes the upload.

A `ready` dataset never changes (models may be using it). An `invalid` one is validated again when
a corrected file is uploaded to the same key. Duplicates change nothing: once the upload is deleted
a redelivery finds nothing to read; a redelivery that comes before (a failure between storing the
result and cleaning up) finishes the cleanup and announces the same event again (same id, since
the event's id derives from the dataset's state). A concurrent twin loses the conditional write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from tunelab.application import operations
from tunelab.composition.stack_definitions import UPLOADS_PREFIX
from tunelab.domain.datasets import DatasetLimits, DatasetReport, validate_dataset
from tunelab.domain.errors import InvalidState, NotFound
from tunelab.domain.events import dataset_validated
from tunelab.domain.records import (
    DatasetLongRow,
    DatasetRecord,
    DatasetRowError,
    DatasetStats,
    DatasetWarning,
)
from tunelab.entrypoints.messages import EventEnvelope

if TYPE_CHECKING:
    from tunelab.composition.wiring import Services

logger = Logger(child=True)

OBJECT_CREATED = "Object Created"
# Where a ready dataset's CSV lives for good (the synchronous upload of the API uses the same key).
DATASETS_PREFIX = "datasets/"

_UPLOAD_KEY = re.compile(
    "^" + re.escape(UPLOADS_PREFIX) + r"(?P<workspace>[^/]+)/(?P<dataset_id>ds_[0-9a-z]{26})\.csv$"
)
_GONE = {"NoSuchKey", "404", "NotFound"}
_REPLACED = {"PreconditionFailed", "412"}


def upload_key(workspace: str, dataset_id: str) -> str:
    """The key a presigned upload of this dataset writes: `uploads/<workspace>/<dataset id>.csv`."""
    return f"{UPLOADS_PREFIX}{workspace}/{dataset_id}.csv"


def dataset_key(workspace: str, dataset_id: str) -> str:
    """The key a validated dataset's CSV is kept at: `datasets/<workspace>/<dataset id>.csv`."""
    return f"{DATASETS_PREFIX}{workspace}/{dataset_id}.csv"


def parse_upload_key(key: str) -> tuple[str, str] | None:
    """(workspace, dataset id) of an upload key, or None when the key is not one tunelab hands out."""
    match = _UPLOAD_KEY.match(key)
    return (match["workspace"], match["dataset_id"]) if match else None


# Built on first use (`defer_build`): the API imports this module for its key layout only.
class _Bucket(BaseModel):
    model_config = ConfigDict(defer_build=True)

    name: str


class _Object(BaseModel):
    model_config = ConfigDict(populate_by_name=True, defer_build=True)

    key: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = Field(default=None, alias="version-id")


class ObjectCreated(BaseModel):
    """The `detail` of S3's EventBridge "Object Created" event (the fields tunelab reads)."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    bucket: _Bucket
    object: _Object
    reason: str | None = None


UploadAction = Literal["validated", "republished", "ignored"]


@dataclass(frozen=True)
class UploadResult:
    """What became of one upload event: `validated` (the dataset as stored), `republished` (a
    validation that had finished before is announced again and cleaned up) or `ignored` (why)."""

    action: UploadAction
    reason: str
    dataset: DatasetRecord | None = None


def handle_upload(
    services: Services,
    event: EventEnvelope,
    *,
    limits: DatasetLimits | None = None,
) -> UploadResult:
    """Validate the dataset an "Object Created" event names (see the module's description).

    Raises only for what a retry may fix (AWS errors, publishing, a lost race); what no retry can
    fix is an `ignored` result with its reason.
    """
    if event.source != "aws.s3" or event.detail_type != OBJECT_CREATED:
        return _ignored(f"not an S3 Object Created event ({event.source}, {event.detail_type})")
    detail = ObjectCreated.model_validate(event.detail)
    bucket, key, etag = detail.bucket.name, detail.object.key, detail.object.etag
    if bucket != services.settings.datasets_bucket:
        return _ignored(f"bucket {bucket} is not the datasets bucket")
    parsed = parse_upload_key(key)
    if parsed is None:
        return _ignored(f"{key} is not a dataset upload key")
    workspace, dataset_id = parsed
    repository = services.repository
    dataset = repository.find_dataset(workspace, dataset_id)
    if dataset is None:
        return _ignored(f"dataset {dataset_id} of workspace {workspace} does not exist (deleted?)")
    if dataset.status == "ready":
        # A ready dataset never changes (models may use it). The upload is still there only when an
        # earlier delivery stopped between storing the result and cleaning up: finish that.
        if not _exists(services, bucket, key, etag):
            return _ignored(f"dataset {dataset_id} is ready and its upload is gone")
        return _settle(services, dataset, bucket, key, "republished")

    body = _open(services, bucket, key, etag)
    if body is None:
        return _ignored(f"{key} is gone or was replaced since this event (another event covers it)")
    try:
        if dataset.status == "uploading":
            dataset = repository.update_dataset(
                workspace, dataset_id, {"status": "validating"}, expected_status={"uploading"}
            )
        report = validate_dataset(body, limits=limits)
    finally:
        body.close()

    changes = _changes(report)
    if dataset.status == "invalid" and _same(dataset, changes):
        # The same file again (or a redelivery after a partial failure): nothing to change.
        return _settle(services, dataset, bucket, key, "republished")
    if report.ready:
        lasting = dataset_key(workspace, dataset_id)
        # Managed copy: multipart for objects over 5 GB, where CopyObject alone would refuse.
        services.s3.copy({"Bucket": bucket, "Key": key}, bucket, lasting)
        changes["s3_key"] = lasting
    try:
        stored = repository.update_dataset(workspace, dataset_id, changes, expected_status={dataset.status})
    except (InvalidState, NotFound):
        # A twin delivery finished first, or the dataset was deleted meanwhile: nothing to add.
        return _ignored(f"dataset {dataset_id} was settled or deleted while this validation ran")
    logger.info(
        "Dataset validated",
        extra={
            "workspace_id": workspace,
            "dataset_id": dataset_id,
            "status": stored.status,
            "rows": stored.rows,
            "error_count": stored.error_count,
            "size_bytes": stored.size_bytes,
        },
    )
    return _settle(services, stored, bucket, key, "validated")


def publish_validated(services: Services, dataset: DatasetRecord) -> None:
    """Publish "Dataset Validated" (its id derives from the dataset's state: a repeat is the same event)."""
    operations.publisher(services).publish(dataset_validated(dataset))


def _settle(
    services: Services, dataset: DatasetRecord, bucket: str, key: str, action: UploadAction
) -> UploadResult:
    # Announce first, then drop the upload: a failure in between is finished by the next delivery.
    publish_validated(services, dataset)
    services.s3.delete_object(Bucket=bucket, Key=key)
    return UploadResult(action=action, reason=dataset.status, dataset=dataset)


def _same(dataset: DatasetRecord, changes: dict[str, Any]) -> bool:
    return all(getattr(dataset, field) == value for field, value in changes.items())


def _ignored(reason: str) -> UploadResult:
    logger.info("Upload event ignored", extra={"reason": reason})
    return UploadResult(action="ignored", reason=reason)


def _object_args(bucket: str, key: str, etag: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if etag:
        args["IfMatch"] = etag if etag.startswith('"') else f'"{etag}"'
    return args


def _gone_or_replaced(error: ClientError) -> bool:
    code = str(error.response.get("Error", {}).get("Code", ""))
    return code in _GONE or code in _REPLACED


def _open(services: Services, bucket: str, key: str, etag: str | None) -> Any:
    """The object's streaming body, or None when it is gone or is no longer the version named."""
    try:
        return services.s3.get_object(**_object_args(bucket, key, etag))["Body"]
    except ClientError as error:
        if _gone_or_replaced(error):
            return None
        raise


def _exists(services: Services, bucket: str, key: str, etag: str | None) -> bool:
    try:
        services.s3.head_object(**_object_args(bucket, key, etag))
    except ClientError as error:
        if _gone_or_replaced(error):
            return False
        raise
    return True


def _changes(report: DatasetReport) -> dict[str, Any]:
    return {
        "status": "ready" if report.ready else "invalid",
        "size_bytes": report.size_bytes,
        "rows": report.rows,
        "stats": DatasetStats(**report.stats.model_dump()),
        "errors": [DatasetRowError(row=e.row, column=e.column, message=e.message) for e in report.errors],
        "error_count": report.error_count,
        "warnings": [DatasetWarning(row=w.row, message=w.message) for w in report.warnings],
        "longest_rows": [DatasetLongRow(row=r.row, tokens=r.tokens) for r in report.longest_rows],
    }
