"""The local runtime's DynamoDB keeps DynamoDB's promise: a conditional write is checked and applied as
one step, so writers racing on the same version never both win (`tunelab.local.moto_dynamodb`)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from tests.integration.conftest import Aws
from tunelab.local.moto_dynamodb import install_atomic_dynamodb

pytestmark = pytest.mark.moto

KEY = {"pk": {"S": "WS#race"}, "sk": {"S": "COUNTER"}}


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Threads switch as often as the interpreter allows, so a race shows within a few hundred writes."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def _race(aws: Aws, threads: int = 6, attempts: int = 60) -> tuple[int, int]:
    """Each thread reads the counter and writes it back one higher, conditioned on the version it read.
    Returns (writes that succeeded, the counter's final value): equal when no update was lost."""
    client = aws.dynamodb
    client.put_item(TableName=aws.table_name, Item={**KEY, "version": {"N": "0"}})
    won = [0] * threads

    def writer(index: int) -> None:
        for _ in range(attempts):
            item = client.get_item(TableName=aws.table_name, Key=KEY, ConsistentRead=True)["Item"]
            version = int(item["version"]["N"])
            try:
                client.put_item(
                    TableName=aws.table_name,
                    Item={**KEY, "version": {"N": str(version + 1)}},
                    ConditionExpression="version = :read",
                    ExpressionAttributeValues={":read": {"N": str(version)}},
                )
            except client.exceptions.ConditionalCheckFailedException:
                continue
            won[index] += 1

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    final = client.get_item(TableName=aws.table_name, Key=KEY, ConsistentRead=True)["Item"]
    return sum(won), int(final["version"]["N"])


def test_racing_conditional_writes_never_both_win(aws: Aws, busy_switching: None) -> None:
    uninstall = install_atomic_dynamodb()
    try:
        won, final = _race(aws)
    finally:
        uninstall()

    assert won == final, f"{won - final} of {won} acknowledged writes were overwritten"
    assert won > 0
