"""moto's DynamoDB made atomic, as DynamoDB is: one request at a time.

DynamoDB evaluates a write's condition and applies the write as one step, so two writers conditioned
on the same version cannot both succeed; tunelab's records rely on it (`adapters.dynamodb.table`'s
read-change-write conditioned on the version read). moto checks the condition and then writes, with
nothing between the two, and the local runtime calls it from many threads (the API, Lambda functions
run in-process, the scheduler): a writer could check the version, be paused, and overwrite a change
another thread wrote meanwhile — a lost update that real DynamoDB never makes (seen as a stopped model
written back to `stopping_training` by a late, older provider event). moto also changes an item in
place on `UpdateItem`, so a read answered meanwhile could see half of an update.

`install_atomic_dynamodb()` runs each DynamoDB request moto answers (`DynamoHandler.call_action`: the
operation and the serialising of its answer) under one reentrant lock: each runs whole before the next
starts, as the service guarantees per item and per transaction. moto's DynamoDB Streams are another
service and are not held up.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_LOCK = threading.RLock()
_INSTALLED: list[Callable[..., Any]] = []


def install_atomic_dynamodb() -> Callable[[], None]:
    """Serialise moto's DynamoDB requests; returns the undo. Installing again while installed changes
    nothing (and its undo leaves the first installation in place)."""
    from moto.dynamodb.responses import DynamoHandler  # noqa: PLC0415  # moto is the local runtime's

    if _INSTALLED:
        return lambda: None
    original = DynamoHandler.call_action
    if not callable(original):
        raise RuntimeError("moto's DynamoHandler has no call_action: the moto pin changed shape")

    @functools.wraps(original)
    def one_at_a_time(self: Any) -> Any:
        with _LOCK:
            return original(self)

    _INSTALLED.append(original)
    DynamoHandler.call_action = one_at_a_time  # type: ignore[method-assign]

    def uninstall() -> None:
        if _INSTALLED:
            DynamoHandler.call_action = _INSTALLED.pop()  # type: ignore[method-assign]

    return uninstall


__all__ = ["install_atomic_dynamodb"]
