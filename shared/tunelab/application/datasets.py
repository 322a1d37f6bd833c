"""Datasets: uploaded in the request's body (validated at once) or through a presigned URL (validated
when the upload lands), listed, read and deleted.

Validation of an upload (`validate_upload`, driven by S3's "Object Created" event):

1. the dataset is found from the key; nothing happens when it is gone;
2. a file over MAX_UPLOAD_BYTES is refused unread: the dataset becomes `invalid` with an error that
   says so, and the upload is deleted (a presigned PUT cannot bound its size; this check does);
3. exactly the object the event names is read (`etag`: a newer upload of the same key has its own
   event), streaming — the file is never held in memory;
4. an `uploading` dataset becomes `validating`, is validated in one pass, and on success its file is
   copied to its lasting place (objects under `uploads/` expire); rows, stats, errors and warnings are
   stored with the status `ready` or `invalid`;
5. "Dataset Validated" is published, then the upload deleted.

A `ready` dataset never changes (models may be using it). An `invalid` one is validated again when a
corrected file is uploaded to the same key. Duplicates change nothing: once the upload is deleted a
redelivery finds nothing to read; a redelivery that comes before (a failure between storing the
result and cleaning up) finishes the clean-up and announces the same event again (same id: it
derives from the dataset's state). A concurrent twin loses the conditional write.

Decisions a user will notice: only a `ready` dataset's CSV is kept (at `datasets/<ws>/<id>.csv`);
an `invalid` one keeps its report only. Names are unique in the workspace regardless of case.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO, Literal, cast

from aws_lambda_powertools import Logger

from tunelab.application import announce
from tunelab.application.ports import Context
from tunelab.domain.datasets import DatasetLimits, DatasetReport, validate_dataset
from tunelab.domain.errors import InvalidState, NotFound, TunelabError
from tunelab.domain.identity import Identity
from tunelab.domain.layout import dataset_key, parse_upload_key, s3_uri, upload_key
from tunelab.domain.listing import DatasetQuery
from tunelab.domain.records import (
    Creator,
    DatasetChanges,
    DatasetLongRow,
    DatasetRecord,
    DatasetRowError,
    DatasetStats,
    DatasetWarning,
    RecordPage,
    new_dataset_id,
)

logger = Logger(child=True)

# How long a presigned dataset upload URL stays valid.
UPLOAD_URL_SECONDS = 3600
UPLOAD_CONTENT_TYPE = "text/csv"
# The largest dataset file an upload may bring. Preparing a training job writes the dataset, converted,
# to the function's temporary storage (Lambda's /tmp: 512 MB): 256 MiB leaves room for the conversion.
MAX_UPLOAD_BYTES = 256 * 1024 * 1024


# --- requests ----------------------------------------------------------------------------------------


def get(ctx: Context, identity: Identity, dataset_id: str) -> DatasetRecord:
    return ctx.datasets.get(identity.workspace, dataset_id)


def list_datasets(
    ctx: Context, identity: Identity, *, limit: int, next_token: str | None, query: DatasetQuery | None = None
) -> RecordPage[DatasetRecord]:
    """The caller's workspace's datasets matching `query`, in its order."""
    return ctx.datasets.list(identity.workspace, limit=limit, next_token=next_token, query=query)


def create_from_csv(ctx: Context, identity: Identity, name: str, data: bytes) -> DatasetRecord:
    """`POST /v1/datasets?name=` with the CSV as the body: validated now; a ready one's CSV is kept."""
    report = validate_dataset(io.BytesIO(data))
    now = ctx.now()
    dataset_id = new_dataset_id(now)
    key = dataset_key(identity.workspace, dataset_id) if report.ready else None
    record = report_changes(report).apply(
        DatasetRecord(
            workspace_id=identity.workspace,
            dataset_id=dataset_id,
            name=name,
            status="uploading",
            created_at=now,
            updated_at=now,
            created_by=Creator(email=identity.email, sub=identity.sub),
            s3_key=key,
        )
    )
    uri = s3_uri(ctx.config.datasets_bucket, key) if key is not None else None
    if uri is not None:
        ctx.files.put(uri, data, content_type=UPLOAD_CONTENT_TYPE)
    try:
        return ctx.datasets.create(record)
    except Exception:
        if uri is not None:
            ctx.files.delete(uri)
        raise


@dataclass(frozen=True)
class Upload:
    """Where and how to upload a dataset's file: a presigned PUT."""

    url: str
    headers: dict[str, str]
    expires_at: datetime


def create_upload(ctx: Context, identity: Identity, name: str) -> tuple[DatasetRecord, Upload]:
    """`POST /v1/datasets` with `{"name"}`: the dataset `uploading` and a presigned PUT for its file."""
    now = ctx.now()
    stored = ctx.datasets.create(
        DatasetRecord(
            workspace_id=identity.workspace,
            dataset_id=new_dataset_id(now),
            name=name,
            status="uploading",
            created_at=now,
            updated_at=now,
            created_by=Creator(email=identity.email, sub=identity.sub),
        )
    )
    url = ctx.files.upload_url(
        s3_uri(ctx.config.datasets_bucket, upload_key(identity.workspace, stored.dataset_id)),
        content_type=UPLOAD_CONTENT_TYPE,
        expires_in_s=UPLOAD_URL_SECONDS,
    )
    return stored, Upload(
        url=url,
        headers={"Content-Type": UPLOAD_CONTENT_TYPE},
        expires_at=now + timedelta(seconds=UPLOAD_URL_SECONDS),
    )


def delete(ctx: Context, identity: Identity, dataset_id: str) -> None:
    """`DELETE /v1/datasets/{id}`: the record (refused with `InUse` while a model uses it), then its files."""
    dataset = ctx.datasets.get(identity.workspace, dataset_id)
    ctx.datasets.delete(identity.workspace, dataset_id)
    bucket = ctx.config.datasets_bucket
    keys = {upload_key(identity.workspace, dataset_id), *([dataset.s3_key] if dataset.s3_key else [])}
    uris = [s3_uri(bucket, key) for key in sorted(keys)]
    try:
        ctx.files.delete(*uris)
    except TunelabError:
        # The dataset is gone (a retry would answer 404): its file left behind is logged for an operator.
        logger.exception("Could not delete the files of a deleted dataset", extra={"uris": uris})


def report_changes(report: DatasetReport) -> DatasetChanges:
    """What a validation report sets on the dataset: its status and findings."""
    return DatasetChanges(
        status="ready" if report.ready else "invalid",
        size_bytes=report.size_bytes,
        rows=report.rows,
        stats=DatasetStats(**report.stats.model_dump()),
        errors=[DatasetRowError(row=e.row, column=e.column, message=e.message) for e in report.errors],
        error_count=report.error_count,
        warnings=[DatasetWarning(row=w.row, message=w.message) for w in report.warnings],
        longest_rows=[DatasetLongRow(row=r.row, tokens=r.tokens) for r in report.longest_rows],
    )


# --- uploads ---------------------------------------------------------------------------------------------

UploadAction = Literal["validated", "republished", "ignored"]


@dataclass(frozen=True)
class UploadResult:
    """What became of one upload: `validated` (the dataset as stored), `republished` (a validation that
    had finished before is announced again and cleaned up) or `ignored` (why)."""

    action: UploadAction
    reason: str
    dataset: DatasetRecord | None = None


def validate_upload(
    ctx: Context,
    *,
    bucket: str,
    key: str,
    etag: str | None,
    correlation_id: str,
    limits: DatasetLimits | None = None,
    max_bytes: int | None = None,
) -> UploadResult:
    """Validate the dataset an uploaded object belongs to (see the module's description); a file over
    `max_bytes` (default MAX_UPLOAD_BYTES) makes it `invalid` unread.

    Raises only for what a retry may fix (a dependency's error, publishing, a lost race); what no
    retry can fix is an `ignored` result with its reason.
    """
    max_bytes = MAX_UPLOAD_BYTES if max_bytes is None else max_bytes
    if bucket != ctx.config.datasets_bucket:
        return _ignored(f"bucket {bucket} is not the datasets bucket")
    parsed = parse_upload_key(key)
    if parsed is None:
        return _ignored(f"{key} is not a dataset upload key")
    workspace, dataset_id = parsed
    uri = s3_uri(bucket, key)
    dataset = ctx.datasets.find(workspace, dataset_id)
    if dataset is None:
        return _ignored(f"dataset {dataset_id} of workspace {workspace} does not exist (deleted?)")
    if dataset.status == "ready":
        # A ready dataset never changes (models may use it). The upload is still there only when an
        # earlier delivery stopped between storing the result and cleaning up: finish that.
        if not ctx.files.exists(uri, etag=etag):
            return _ignored(f"dataset {dataset_id} is ready and its upload is gone")
        return _settle(ctx, dataset, uri, "republished", correlation_id)

    try:
        size = ctx.files.size(uri)
    except NotFound:
        return _ignored(f"{key} is gone (another event covers it)")
    body: BinaryIO | None = None
    if size <= max_bytes:
        body = ctx.files.open(uri, etag=etag)
        if body is None:
            return _ignored(f"{key} is gone or was replaced since this event (another event covers it)")
    try:
        if dataset.status == "uploading":
            dataset = ctx.datasets.update(
                workspace, dataset_id, DatasetChanges(status="validating"), expected_status={"uploading"}
            )
        changes = too_large(size, max_bytes) if body is None else _validated(body, max_bytes, limits)
    finally:
        if body is not None:
            body.close()

    if dataset.status == "invalid" and changes.matches(dataset):
        # The same file again (or a redelivery after a partial failure): nothing to change.
        return _settle(ctx, dataset, uri, "republished", correlation_id)
    if changes.status == "ready":
        lasting = dataset_key(workspace, dataset_id)
        ctx.files.copy(uri, s3_uri(bucket, lasting))
        changes = changes.model_copy(update={"s3_key": lasting})
    try:
        stored = ctx.datasets.update(workspace, dataset_id, changes, expected_status={dataset.status})
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
    return _settle(ctx, stored, uri, "validated", correlation_id)


class _TooLargeError(Exception):
    """The file grew past the limit while it was read (replaced by a larger one since its size was read)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"more than {size} bytes")
        self.size = size


class _Capped:
    """A stream that refuses to be read past `limit` bytes (`_TooLargeError`)."""

    def __init__(self, source: BinaryIO, limit: int) -> None:
        self._source = source
        self._limit = limit
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._read += len(data)
        if self._read > self._limit:
            raise _TooLargeError(self._read)
        return data


def _validated(body: BinaryIO, max_bytes: int, limits: DatasetLimits | None) -> DatasetChanges:
    try:
        return report_changes(validate_dataset(cast("BinaryIO", _Capped(body, max_bytes)), limits=limits))
    except _TooLargeError as error:
        return too_large(error.size, max_bytes)


def too_large(size: int, max_bytes: int) -> DatasetChanges:
    """What an upload over the limit sets on its dataset: `invalid`, with the reason as its one error."""
    logger.warning(
        "Dataset upload over the limit refused", extra={"size_bytes": size, "max_bytes": max_bytes}
    )
    message = (
        f"The file is {_mib(size)}; the limit for a dataset is {_mib(max_bytes)}. Upload a smaller file "
        "(for example, fewer or shorter rows)."
    )
    return DatasetChanges(
        status="invalid",
        size_bytes=size,
        rows=0,
        stats=DatasetStats(prompt_tokens=0, completion_tokens=0, max_row_tokens=0),
        errors=[DatasetRowError(message=message)],
        error_count=1,
        warnings=[],
        longest_rows=[],
    )


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):,.1f} MiB" if size >= 1024 * 1024 else f"{size:,} bytes"


def _settle(
    ctx: Context, dataset: DatasetRecord, upload: str, action: UploadAction, correlation_id: str
) -> UploadResult:
    # Announce first, then drop the upload: a failure in between is finished by the next delivery.
    announce.validated(ctx, dataset, correlation_id=correlation_id)
    ctx.files.delete(upload)
    return UploadResult(action=action, reason=dataset.status, dataset=dataset)


def _ignored(reason: str) -> UploadResult:
    logger.info("Upload event ignored", extra={"reason": reason})
    return UploadResult(action="ignored", reason=reason)
