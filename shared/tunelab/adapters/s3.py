"""Objects in S3 by `s3://bucket/key` URI (`application.ports.ObjectStore`), through one client: the
platform's (its datasets and artifacts buckets) or a provider's (a customer's bucket, through the
customer's role)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from botocore.exceptions import ClientError

from tunelab.adapters.aws_errors import aws_call, error_code
from tunelab.domain.errors import ProviderError
from tunelab.domain.layout import s3_split

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_GONE = frozenset({"NoSuchKey", "404", "NotFound"})
_REPLACED = frozenset({"PreconditionFailed", "412"})
# DeleteObjects takes at most this many keys.
_DELETE_BATCH = 1000


class S3Objects:
    """An `ObjectStore` over one S3 client (made on first use when given as a factory); the buckets in
    `bucket_clients` (a bucket in another region) through their own client, made on first use."""

    def __init__(
        self,
        client: S3Client | None = None,
        *,
        client_factory: Callable[[], S3Client] | None = None,
        bucket_clients: Mapping[str, Callable[[], S3Client]] | None = None,
    ) -> None:
        if (client is None) == (client_factory is None):
            raise ValueError("give exactly one of client and client_factory")
        self._client = client
        self._client_factory = client_factory
        self._bucket_factories = dict(bucket_clients or {})
        self._bucket_clients: dict[str, S3Client] = {}

    @property
    def client(self) -> S3Client:
        if self._client is None:
            assert self._client_factory is not None
            self._client = self._client_factory()
        return self._client

    def _client_of(self, bucket: str) -> S3Client:
        """The client for `bucket`: its own (a bucket in another region), else the store's."""
        factory = self._bucket_factories.get(bucket)
        if factory is None:
            return self.client
        client = self._bucket_clients.get(bucket)
        if client is None:
            client = self._bucket_clients[bucket] = factory()
        return client

    def put(self, uri: str, body: bytes | BinaryIO, *, content_type: str) -> None:
        bucket, key = s3_split(uri)
        with aws_call(f"Writing {uri}", permission=f"s3:PutObject on {bucket}"):
            if isinstance(body, bytes):
                self._client_of(bucket).put_object(
                    Bucket=bucket, Key=key, Body=body, ContentType=content_type
                )
            else:
                # Multipart for large bodies, read in chunks: never held in memory whole.
                self._client_of(bucket).upload_fileobj(
                    body, bucket, key, ExtraArgs={"ContentType": content_type}
                )

    def open(self, uri: str, *, etag: str | None = None) -> BinaryIO | None:
        bucket, key = s3_split(uri)
        try:
            answer = self._client_of(bucket).get_object(**_object_args(bucket, key, etag))
        except ClientError as error:
            if error_code(error) in _GONE | _REPLACED:
                return None
            with aws_call(f"Reading {uri}", permission=f"s3:GetObject on {bucket}"):
                raise
        return cast("BinaryIO", answer["Body"])

    def exists(self, uri: str, *, etag: str | None = None) -> bool:
        bucket, key = s3_split(uri)
        try:
            self._client_of(bucket).head_object(**_object_args(bucket, key, etag))
        except ClientError as error:
            if error_code(error) in _GONE | _REPLACED:
                return False
            with aws_call(f"Reading {uri}", permission=f"s3:GetObject on {bucket}"):
                raise
        return True

    def size(self, uri: str) -> int:
        bucket, key = s3_split(uri)
        with aws_call(f"Reading {uri}", permission=f"s3:GetObject on {bucket}"):
            return int(self._client_of(bucket).head_object(Bucket=bucket, Key=key)["ContentLength"])

    def copy(self, source: str, target: str) -> None:
        source_bucket, source_key = s3_split(source)
        bucket, key = s3_split(target)
        with aws_call(
            f"Copying {source} to {target}", permission=f"s3:GetObject and s3:PutObject on {bucket}"
        ):
            # Managed copy: multipart for objects over 5 GB, where CopyObject alone would refuse.
            self._client_of(bucket).copy({"Bucket": source_bucket, "Key": source_key}, bucket, key)

    def delete(self, *uris: str) -> None:
        by_bucket: dict[str, list[str]] = {}
        for uri in uris:
            bucket, key = s3_split(uri)
            by_bucket.setdefault(bucket, []).append(key)
        for bucket, keys in by_bucket.items():
            self._delete_keys(bucket, keys)

    def delete_folder(self, folder: str) -> None:
        bucket, prefix = s3_split(folder)
        if not prefix.endswith("/"):
            prefix += "/"
        with aws_call(f"Deleting {folder}", permission=f"s3:ListBucket and s3:DeleteObject on {bucket}"):
            pages = (
                self._client_of(bucket)
                .get_paginator("list_objects_v2")
                .paginate(Bucket=bucket, Prefix=prefix)
            )
            keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        self._delete_keys(bucket, keys)

    def upload_url(self, uri: str, *, content_type: str, expires_in_s: int) -> str:
        bucket, key = s3_split(uri)
        return self._client_of(bucket).generate_presigned_url(
            "put_object",
            Params={"Bucket": bucket, "Key": key, "ContentType": content_type},
            ExpiresIn=expires_in_s,
        )

    def _delete_keys(self, bucket: str, keys: list[str]) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            with aws_call(f"Deleting objects in {bucket}", permission=f"s3:DeleteObject on {bucket}"):
                answer = self._client_of(bucket).delete_objects(
                    Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            errors = answer.get("Errors", [])
            if errors:
                first = errors[0]
                raise ProviderError(
                    f"Could not delete s3://{bucket}/{first.get('Key')}: {first.get('Message')}"
                )


def _object_args(bucket: str, key: str, etag: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if etag:
        args["IfMatch"] = etag if etag.startswith('"') else f'"{etag}"'
    return args
