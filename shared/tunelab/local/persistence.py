"""The local runtime's durable state: what its AWS endpoint acknowledged survives a stop or a kill.

moto keeps every service's state in memory. The runtime keeps on disk, under `<data dir>/state/`, the
state a restart cannot derive, and writes it before the endpoint answers the write that changed it:
the endpoint's guard (`tunelab.local.aws_guard`) calls `DurableState.after_write` once moto has applied
a write and before the answer leaves. So anything the API answered with a 2xx — and everything a
handler, a workflow or the local provider wrote before — is on disk, whatever kills the process next.

* **DynamoDB** (the records and idempotency tables) — DynamoDB Streams, AWS's own change log: each
  table's stream (view `NEW_IMAGE`) is read to its end and appended to `journal.jsonl` (the item as it
  is after each write, or its key when deleted; fsync'd). At start the snapshot (`tables.jsonl`) and the
  journal are replayed into the new, empty tables (`BatchWriteItem`), then compacted into a new
  snapshot; the streams are enabled only after that, so the replay is not journaled again. A torn last
  line (the process died while appending) was never acknowledged and is skipped.
* **S3** (the datasets and artifacts buckets) — after a write to a bucket, its listing is compared with
  the mirror (`s3/<bucket>/`, one file per object and its metadata) by ETag: new or changed objects are
  downloaded, removed ones deleted. Parts of a multipart upload are not objects yet: the completion
  is. At start the mirror is uploaded before the datasets bucket tells EventBridge about new objects,
  so a restored dataset is not validated again.
* **EventBridge Scheduler** (the auto-undeploy group) — after a write, the group's schedules are
  written to `schedules.json`; at start they are created again, and the runtime's schedule runner
  fires at once those whose time passed while it was down.
* **SES** — the outbox writes each sent email (and fsyncs it) before the send is answered.

Not kept, because they are work in flight rather than data: Step Functions executions, SQS messages
and events on their way, Lambda invocations. At start the local provider picks up its jobs and
deployments from their folders and the reconciler settles every model that a lost workflow left
in a transient status (`tunelab.local.runtime`).

Why a journal of the stream rather than a snapshot after each write: a snapshot costs the whole table
each time (1,000 models are tens of thousands of items); an appended stream record costs the item.
moto's streams keep every record since the stream was enabled, in memory: a long-running runtime
grows by about one item's size per write until it restarts (which compacts).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from tunelab.local.files import PRIVATE_FILE_MODE

logger = logging.getLogger("tunelab.local")

STATE_DIR = "state"
SNAPSHOT_FILE = "tables.jsonl"
JOURNAL_FILE = "journal.jsonl"
SCHEDULES_FILE = "schedules.json"
S3_DIR = "s3"
STREAM_VIEW = "NEW_IMAGE"
BATCH_WRITE_LIMIT = 25  # DynamoDB's BatchWriteItem limit
# DynamoDB operations that write (the JSON protocol POSTs reads too: the target says which it is).
DYNAMODB_WRITES = frozenset(
    {
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "ExecuteStatement",
        "BatchExecuteStatement",
        "ExecuteTransaction",
    }
)
SINGLE_TABLE_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
TRANSACTIONS = frozenset({"TransactWriteItems", "ExecuteTransaction"})
STREAM_READ_LIMIT = 1000  # GetRecords' largest page
# What a schedule is made of, as GetSchedule answers and CreateSchedule takes it.
SCHEDULE_FIELDS = (
    "Name",
    "GroupName",
    "ScheduleExpression",
    "ScheduleExpressionTimezone",
    "FlexibleTimeWindow",
    "Target",
    "State",
    "Description",
    "ActionAfterCompletion",
    "StartDate",
    "EndDate",
    "KmsKeyArn",
)

Clients = Callable[[str], Any]


def _fsync(path: Path) -> None:
    """fsync a file, or a folder (so that names made or replaced in it last)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, lines: Iterator[str] | list[str]) -> None:
    """Write `path` whole or not at all: a temporary file, fsync'd, renamed over it."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)
    _fsync(path.parent)


@dataclass
class RestoreReport:
    """What a start restored, and how long it took."""

    items: int = 0
    journal_records: int = 0
    torn_lines: int = 0
    objects: int = 0
    object_bytes: int = 0
    schedules: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        return (
            f"restored {self.items} items ({self.journal_records} from the journal), {self.objects} objects "
            f"({self.object_bytes / 1e6:.1f} MB) and {self.schedules} schedules in {self.seconds:.1f} s"
        )


def _item_key(item: dict[str, Any], key_names: tuple[str, ...]) -> str:
    return json.dumps([item.get(name) for name in key_names], sort_keys=True)


class TableJournal:
    """The tables' items on disk: a snapshot and the journal of their streams since."""

    def __init__(self, folder: Path, clients: Clients, tables: tuple[str, ...]) -> None:
        self.folder = folder
        self.tables = tables
        self._dynamodb = clients("dynamodb")
        self._streams = clients("dynamodbstreams")
        self._iterators: dict[str, str] = {}
        self._lock = threading.Lock()
        self._tickets = threading.Lock()
        self._journal: Any = None
        # Group commit: a write waits only for a drain that began after it was applied.
        self._applied = 0
        self._durable = 0
        self.records = 0

    @property
    def snapshot_path(self) -> Path:
        return self.folder / SNAPSHOT_FILE

    @property
    def journal_path(self) -> Path:
        return self.folder / JOURNAL_FILE

    def _key_names(self, table: str) -> tuple[str, ...]:
        schema = self._dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
        return tuple(part["AttributeName"] for part in schema)

    def load(self, report: RestoreReport) -> dict[str, dict[str, dict[str, Any]]]:
        """The tables' items as the snapshot and the journal leave them: table → key → item."""
        keys = {table: self._key_names(table) for table in self.tables}
        state: dict[str, dict[str, dict[str, Any]]] = {table: {} for table in self.tables}
        if self.snapshot_path.is_file():
            with self.snapshot_path.open(encoding="utf-8") as handle:
                for line in handle:
                    entry = json.loads(line)
                    table = entry["t"]
                    if table in state:
                        state[table][_item_key(entry["item"], keys[table])] = entry["item"]
        if self.journal_path.is_file():
            with self.journal_path.open(encoding="utf-8") as handle:
                for line in handle:
                    try:
                        entry = json.loads(line)
                    except ValueError:  # a torn last line: the write it held was never answered
                        report.torn_lines += 1
                        continue
                    table = entry.get("t")
                    if table not in state:
                        continue
                    report.journal_records += 1
                    if entry.get("reset"):  # the table was journaled whole from here
                        state[table] = {}
                    elif "put" in entry:
                        state[table][_item_key(entry["put"], keys[table])] = entry["put"]
                    else:
                        state[table].pop(_item_key(entry["del"], keys[table]), None)
        return state

    def restore(self, report: RestoreReport) -> None:
        """Put the kept items into the (new, empty) tables, compact, then start the streams."""
        state = self.load(report)
        for table, items in state.items():
            values = list(items.values())
            for start in range(0, len(values), BATCH_WRITE_LIMIT):
                requests: dict[str, Any] = {
                    table: [
                        {"PutRequest": {"Item": item}} for item in values[start : start + BATCH_WRITE_LIMIT]
                    ]
                }
                while requests:
                    answer = self._dynamodb.batch_write_item(RequestItems=requests)
                    requests = answer.get("UnprocessedItems") or {}
            report.items += len(values)
        _write_atomically(
            self.snapshot_path,
            (
                json.dumps({"t": table, "item": item}) + "\n"
                for table, items in state.items()
                for item in items.values()
            ),
        )
        # The snapshot holds the journal now: start the journal again (a kill before this replays the
        # journal onto the snapshot that already holds it, which changes nothing).
        _write_atomically(self.journal_path, [])
        for table in self.tables:
            self._dynamodb.update_table(
                TableName=table, StreamSpecification={"StreamEnabled": True, "StreamViewType": STREAM_VIEW}
            )
            self._iterators[table] = self._stream_iterator(table, "TRIM_HORIZON")
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE_MODE)
        self._journal = os.fdopen(fd, "a", encoding="utf-8")

    def _stream_iterator(self, table: str, position: str) -> str:
        """An iterator over the table's current stream (its one shard) from `position`."""
        arn = self._dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        shard = self._streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        return str(
            self._streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType=position)[
                "ShardIterator"
            ]
        )

    def sync(self, table: str | None = None) -> None:
        """Append what the streams hold beyond the journal, and fsync: every write applied before this
        call is on disk when it returns. `table`: only that table was written (one read, not one per
        table)."""
        with self._tickets:
            self._applied += 1
            ticket = self._applied
        with self._lock:
            if self._durable >= ticket or self._journal is None:
                return
            with self._tickets:
                drained_up_to = self._applied
            wrote = 0
            # A drain for one table covers only that table's writes: the ticket is not advanced then.
            drained = [table] if table in self._iterators else list(self._iterators)
            for name in drained:
                iterator = self._iterators[name]
                while True:
                    answer = self._streams.get_records(ShardIterator=iterator, Limit=STREAM_READ_LIMIT)
                    iterator = answer["NextShardIterator"]
                    records = answer.get("Records") or []
                    for record in records:
                        image = record["dynamodb"]
                        if record["eventName"] == "REMOVE":
                            line = {"t": name, "del": image["Keys"]}
                        else:
                            line = {"t": name, "put": image["NewImage"]}
                        self._journal.write(json.dumps(line) + "\n")
                        wrote += 1
                    if len(records) < STREAM_READ_LIMIT:  # the end of the shard, as of this read
                        break
                self._iterators[name] = iterator
            if wrote:
                self._journal.flush()
                os.fsync(self._journal.fileno())
                self.records += wrote
            if len(drained) == len(self._iterators):
                self._durable = drained_up_to

    def reset(self, table: str) -> None:
        """Journal `table` whole — a "reset" line, then every item it holds — and read its stream from
        now on: for when the table itself was replaced (a cancelled transaction in moto). The iterator
        is taken before the scan, so a write racing the scan is in the scan, the stream, or both
        (replayed in order: the same item)."""
        if table not in self._iterators:
            return
        with self._lock:
            if self._journal is None:
                return
            iterator = self._stream_iterator(table, "LATEST")
            self._journal.write(json.dumps({"t": table, "reset": True}) + "\n")
            for page in self._dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
                for item in page.get("Items", []):
                    self._journal.write(json.dumps({"t": table, "put": item}) + "\n")
                    self.records += 1
            self._journal.flush()
            os.fsync(self._journal.fileno())
            self._iterators[table] = iterator

    def close(self) -> None:
        with self._lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None


@dataclass
class _Kept:
    key: str
    etag: str
    size: int


class BucketMirror:
    """A bucket's objects on disk, kept equal to the bucket after each write to it."""

    def __init__(self, folder: Path, clients: Clients, bucket: str) -> None:
        self.folder = folder
        self.bucket = bucket
        self._s3 = clients("s3")
        self._lock = threading.Lock()
        self._kept: dict[str, _Kept] = {}

    @staticmethod
    def _stem(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8")).hexdigest()

    def _files(self, key: str) -> tuple[Path, Path]:
        stem = self._stem(key)
        return self.folder / f"{stem}.object", self.folder / f"{stem}.json"

    def load(self) -> list[dict[str, Any]]:
        """The kept objects' metadata (an object file without its metadata file was never complete)."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        kept = []
        for meta in sorted(self.folder.glob("*.json")):
            try:
                data = json.loads(meta.read_text(encoding="utf-8"))
            except ValueError:
                continue
            if meta.with_suffix(".object").is_file():
                kept.append(data)
        return kept

    def restore(self, report: RestoreReport) -> None:
        """Upload the kept objects into the (new, empty) bucket."""
        for data in self.load():
            key = data["key"]
            body, _ = self._files(key)
            extra: dict[str, Any] = {}
            if data.get("content_type"):
                extra["ContentType"] = data["content_type"]
            if data.get("metadata"):
                extra["Metadata"] = data["metadata"]
            self._s3.upload_file(str(body), self.bucket, key, ExtraArgs=extra)
            etag = self._s3.head_object(Bucket=self.bucket, Key=key)["ETag"]
            size = body.stat().st_size
            self._kept[key] = _Kept(key, etag, size)
            # Remember the ETag S3 gave the upload (a multipart upload's differs from the original's).
            if etag != data.get("etag"):
                self._write_meta(key, etag, data.get("content_type"), data.get("metadata"))
            report.objects += 1
            report.object_bytes += size

    def _write_meta(
        self, key: str, etag: str, content_type: str | None, metadata: dict[str, str] | None
    ) -> None:
        _, meta = self._files(key)
        _write_atomically(
            meta,
            [
                json.dumps(
                    {"key": key, "etag": etag, "content_type": content_type, "metadata": metadata or {}}
                )
            ],
        )

    def sync(self) -> None:
        """Make the mirror what the bucket holds now."""
        with self._lock:
            listed: dict[str, tuple[str, int]] = {}
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
                for entry in page.get("Contents", []):
                    listed[entry["Key"]] = (entry["ETag"], int(entry["Size"]))
            for key, (etag, size) in listed.items():
                kept = self._kept.get(key)
                if kept is not None and kept.etag == etag:
                    continue
                body, meta = self._files(key)
                partial = body.with_name(body.name + ".partial")
                # The kept version stays until the new body is whole on disk; then body, then metadata.
                head = self._s3.head_object(Bucket=self.bucket, Key=key)
                self._s3.download_file(self.bucket, key, str(partial))
                _fsync(partial)
                partial.replace(body)
                self._write_meta(key, head["ETag"], head.get("ContentType"), head.get("Metadata"))
                self._kept[key] = _Kept(key, head["ETag"], size)
            for key in [key for key in self._kept if key not in listed]:
                body, meta = self._files(key)
                for path in (meta, body):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                del self._kept[key]
            _fsync(self.folder)


class ScheduleKeeper:
    """A schedule group's schedules on disk, written again after each write to the Scheduler."""

    def __init__(self, path: Path, clients: Clients, group: str) -> None:
        self.path = path
        self.group = group
        self._scheduler = clients("scheduler")
        self._lock = threading.Lock()

    def restore(self, report: RestoreReport) -> None:
        if not self.path.is_file():
            return
        try:
            schedules = json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError:
            logger.warning("the kept schedules (%s) are unreadable; none restored", self.path)
            return
        for schedule in schedules:
            arguments = {name: schedule[name] for name in SCHEDULE_FIELDS if schedule.get(name) is not None}
            try:
                self._scheduler.create_schedule(**arguments)
            except self._scheduler.exceptions.ConflictException:
                continue
            report.schedules += 1

    def sync(self) -> None:
        with self._lock:
            schedules = []
            for page in self._scheduler.get_paginator("list_schedules").paginate(GroupName=self.group):
                for summary in page.get("Schedules", []):
                    try:
                        schedule = self._scheduler.get_schedule(Name=summary["Name"], GroupName=self.group)
                    except self._scheduler.exceptions.ResourceNotFoundException:
                        continue  # deleted since it was listed
                    schedules.append({name: schedule[name] for name in SCHEDULE_FIELDS if name in schedule})
            _write_atomically(self.path, [json.dumps(schedules, default=str, indent=1)])


@dataclass
class DurableState:
    """The runtime's kept state (see the module's description): `restore_*` at start, in the order the
    runtime creates its stack, then `after_write` from the guard for every write it lets through."""

    data_dir: Path
    clients: Clients
    tables: tuple[str, ...]
    buckets: tuple[str, ...]
    schedule_group: str
    flush_outbox: Callable[[], object] | None = None
    report: RestoreReport = field(default_factory=RestoreReport)
    _journal: TableJournal | None = None
    _mirrors: dict[str, BucketMirror] = field(default_factory=dict)
    _schedules: ScheduleKeeper | None = None
    _active: bool = False
    _started_at: float = field(default_factory=time.monotonic)

    @property
    def folder(self) -> Path:
        return self.data_dir / STATE_DIR

    def restore_tables(self) -> None:
        """After the tables are created: their items back, then their streams on."""
        self._started_at = time.monotonic()
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._journal = TableJournal(self.folder, self.clients, self.tables)
        self._journal.restore(self.report)

    def restore_buckets(self) -> None:
        """After the buckets are created, before the datasets bucket's notifications are on."""
        for bucket in self.buckets:
            mirror = BucketMirror(self.folder / S3_DIR / bucket, self.clients, bucket)
            mirror.restore(self.report)
            self._mirrors[bucket] = mirror

    def restore_schedules(self) -> None:
        """After the schedule group and the target functions exist."""
        self._schedules = ScheduleKeeper(self.folder / SCHEDULES_FILE, self.clients, self.schedule_group)
        self._schedules.restore(self.report)
        self.report.seconds = time.monotonic() - self._started_at

    def activate(self) -> None:
        """From now on every write the guard lets through is kept before it is answered."""
        self._active = True

    def after_write(self, service: str, environ: dict[str, Any], status: int = 200) -> None:
        """The guard's hook: moto answered a write of `service` with `status` (2xx: applied; 4xx:
        refused); keep what it changed now."""
        if not self._active:
            return
        if service == "dynamodb" and self._journal is not None:
            operation = str(environ.get("HTTP_X_AMZ_TARGET", "")).rsplit(".", 1)[-1]
            if operation in TRANSACTIONS and status >= 400:
                # moto undoes a cancelled transaction by putting back a copy of each table it touched,
                # taken when it began — with a copy of the table's stream: journal those tables whole.
                for table in _tables_of(environ) or self.tables:
                    self._journal.reset(table)
            elif operation in DYNAMODB_WRITES and status < 300:
                self._journal.sync(_table_of(environ) if operation in SINGLE_TABLE_WRITES else None)
            return
        if status >= 300:
            return
        if service == "s3":
            bucket = _bucket_of(environ)
            mirror = self._mirrors.get(bucket or "")
            if mirror is not None and not _is_part(environ):
                mirror.sync()
        elif service == "scheduler":
            if self._schedules is not None:
                self._schedules.sync()
        elif service in ("ses", "email") and self.flush_outbox is not None:
            self.flush_outbox()

    def close(self) -> None:
        self._active = False
        if self._journal is not None:
            self._journal.close()


def _json_body(environ: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB request's JSON body (the guard kept it readable); empty when it is not there."""
    body = environ.get("wsgi.input")
    if not isinstance(body, io.BytesIO):
        return {}
    try:
        data = json.loads(body.getvalue() or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _table_of(environ: dict[str, Any]) -> str | None:
    """The table a single-table DynamoDB write names."""
    name = _json_body(environ).get("TableName")
    return name if isinstance(name, str) else None


def _tables_of(environ: dict[str, Any]) -> list[str]:
    """The tables a transaction names; empty when unreadable."""
    items = _json_body(environ).get("TransactItems") or []
    names = {
        str(action["TableName"])
        for item in items
        if isinstance(item, dict)
        for action in item.values()
        if isinstance(action, dict) and "TableName" in action
    }
    return sorted(names)


def _bucket_of(environ: dict[str, Any]) -> str | None:
    """The bucket an S3 request names: `<bucket>.localhost:<port>`, else the path's first segment."""
    host = str(environ.get("HTTP_HOST") or "")
    name = host.split(":", 1)[0]
    if name.endswith(".localhost"):
        return name[: -len(".localhost")]
    path = unquote(str(environ.get("PATH_INFO") or "")).lstrip("/")
    return path.split("/", 1)[0] or None


def _is_part(environ: dict[str, Any]) -> bool:
    """A part of a multipart upload, or its start: no object changed yet."""
    query = str(environ.get("QUERY_STRING") or "")
    pairs = {pair.split("=", 1)[0] for pair in query.split("&") if pair}
    method = str(environ.get("REQUEST_METHOD") or "").upper()
    return (method == "PUT" and "uploadId" in pairs) or (method == "POST" and "uploads" in pairs)


__all__ = ["DurableState", "RestoreReport"]
