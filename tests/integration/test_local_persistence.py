"""The local runtime's kept state (`tunelab.local.persistence`) under moto: what was written is what
comes back, a torn last journal line (the process died mid-append) is skipped, removals stay removed."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tunelab.adapters.dynamodb import TABLE_DEFINITION
from tunelab.local.persistence import BucketMirror, DurableState, RestoreReport, TableJournal

pytestmark = pytest.mark.xdist_group("moto-server")

TABLE = "kept-records"
BUCKET = "kept-datasets"


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Clients of a moto server of this test's own (as the runtime's endpoint is: moto's in-process
    mock routes DynamoDB Streams' calls to DynamoDB)."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield lambda service: boto3.client(
            service, region_name="us-east-1", endpoint_url=f"http://{host}:{port}"
        )
    finally:
        server.stop()


def _item(pk: str, sk: str, note: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}, "note": {"S": note}}


def _fresh_table(clients: Any) -> None:
    dynamodb = clients("dynamodb")
    if TABLE in dynamodb.list_tables()["TableNames"]:
        dynamodb.delete_table(TableName=TABLE)
    dynamodb.create_table(TableName=TABLE, **TABLE_DEFINITION)


def _items(clients: Any) -> dict[tuple[str, str], str]:
    scanned = clients("dynamodb").scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return {(i["pk"]["S"], i["sk"]["S"]): i["note"]["S"] for i in scanned}


def test_the_journal_brings_back_every_write_and_skips_a_torn_last_line(clients: Any, tmp_path: Path) -> None:
    _fresh_table(clients)
    journal = TableJournal(tmp_path, clients, (TABLE,))
    journal.restore(RestoreReport())
    dynamodb = clients("dynamodb")
    dynamodb.put_item(TableName=TABLE, Item=_item("WS#a", "MODEL#one", "first"))
    journal.sync(TABLE)
    dynamodb.put_item(TableName=TABLE, Item=_item("WS#a", "MODEL#one", "changed"))
    dynamodb.put_item(TableName=TABLE, Item=_item("WS#a", "MODEL#two", "gone soon"))
    dynamodb.put_item(TableName=TABLE, Item=_item("WS#b", "DATASET#x", "kept"))
    dynamodb.delete_item(TableName=TABLE, Key={"pk": {"S": "WS#a"}, "sk": {"S": "MODEL#two"}})
    journal.sync()
    journal.close()
    written = _items(clients)
    with (tmp_path / "journal.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"t": "kept-records", "put": {"pk": {"S": "WS#a"}, "sk"')  # died mid-append

    _fresh_table(clients)  # a new start: an empty table
    report = RestoreReport()
    TableJournal(tmp_path, clients, (TABLE,)).restore(report)

    assert _items(clients) == written == {("WS#a", "MODEL#one"): "changed", ("WS#b", "DATASET#x"): "kept"}
    assert (report.items, report.journal_records, report.torn_lines) == (2, 5, 1)
    # Compacted: the snapshot holds the items, the journal starts empty; a third start is the same.
    assert (tmp_path / "journal.jsonl").read_text(encoding="utf-8") == ""
    _fresh_table(clients)
    again = RestoreReport()
    TableJournal(tmp_path, clients, (TABLE,)).restore(again)
    assert _items(clients) == written
    assert (again.items, again.journal_records) == (2, 0)


def test_the_mirror_keeps_a_buckets_objects_and_their_removal(clients: Any, tmp_path: Path) -> None:
    s3 = clients("s3")
    s3.create_bucket(Bucket=BUCKET)
    mirror = BucketMirror(tmp_path, clients, BUCKET)
    mirror.restore(RestoreReport())
    s3.put_object(
        Bucket=BUCKET, Key="datasets/ws/a.csv", Body=b"prompt,completion\nhi,there\n", ContentType="text/csv"
    )
    s3.put_object(Bucket=BUCKET, Key="uploads/ws/b.csv", Body=b"x")
    mirror.sync()
    s3.put_object(
        Bucket=BUCKET, Key="datasets/ws/a.csv", Body=b"prompt,completion\nnew,rows\n", ContentType="text/csv"
    )
    s3.delete_object(Bucket=BUCKET, Key="uploads/ws/b.csv")
    mirror.sync()

    s3.delete_object(Bucket=BUCKET, Key="datasets/ws/a.csv")  # a new start: an empty bucket
    report = RestoreReport()
    BucketMirror(tmp_path, clients, BUCKET).restore(report)

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert keys == ["datasets/ws/a.csv"]
    kept = s3.get_object(Bucket=BUCKET, Key="datasets/ws/a.csv")
    assert kept["Body"].read() == b"prompt,completion\nnew,rows\n"
    assert kept["ContentType"] == "text/csv"
    assert (report.objects, report.object_bytes) == (1, len(b"prompt,completion\nnew,rows\n"))


def test_writes_after_a_cancelled_transaction_are_kept_too(clients: Any, tmp_path: Path) -> None:
    """moto puts back a copy of the table (and of its stream) when a transaction is cancelled — a
    model name already taken, a lost version race: the writes after it must still reach the journal."""
    _fresh_table(clients)
    state = DurableState(
        data_dir=tmp_path, clients=clients, tables=(TABLE,), buckets=(), schedule_group="none"
    )
    state.restore_tables()
    state.activate()
    dynamodb = clients("dynamodb")

    def put(pk: str) -> None:
        dynamodb.put_item(TableName=TABLE, Item=_item(pk, "MODEL", pk))
        state.after_write("dynamodb", _environ("PutItem", {"TableName": TABLE}), 200)

    put("WS#one")
    taken = {
        "TransactItems": [
            {
                "Put": {
                    "TableName": TABLE,
                    "Item": _item("WS#one", "MODEL", "again"),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ]
    }
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        dynamodb.transact_write_items(**taken)
    state.after_write("dynamodb", _environ("TransactWriteItems", taken), 400)
    put("WS#two")
    written = {
        "TransactItems": [{"Put": {"TableName": TABLE, "Item": _item("WS#three", "MODEL", "WS#three")}}]
    }
    dynamodb.transact_write_items(**written)
    state.after_write("dynamodb", _environ("TransactWriteItems", written), 200)
    state.close()
    acknowledged = _items(clients)

    _fresh_table(clients)
    TableJournal(tmp_path / "state", clients, (TABLE,)).restore(RestoreReport())

    assert _items(clients) == acknowledged
    assert sorted(pk for pk, _ in acknowledged) == ["WS#one", "WS#three", "WS#two"]


def _environ(operation: str, body: dict[str, Any]) -> dict[str, Any]:
    """What the endpoint's guard hands the hook: the request's target and its body, kept readable."""
    return {
        "HTTP_X_AMZ_TARGET": f"DynamoDB_20120810.{operation}",
        "wsgi.input": io.BytesIO(json.dumps(body).encode()),
    }
