"""moto's DynamoDB made atomic, as DynamoDB is: one item operation at a time.

DynamoDB evaluates a write's condition and applies the write as one step, so two writers conditioned
on the same version cannot both succeed; tunelab's records rely on it (`adapters.dynamodb.table`'s
read-change-write conditioned on the version read). moto checks the condition and then writes, with
nothing between the two, and the local runtime calls it from many threads (the API, Lambda functions
run in-process, the scheduler): a writer could check the version, be paused, and overwrite a change
another thread wrote meanwhile — a lost update that real DynamoDB never makes (seen as a stopped model
written back to `stopping_training` by a late, older provider event).

`install_atomic_dynamodb()` wraps moto's DynamoDB backend operations that read or write items in one
reentrant lock: each runs whole before the next starts, as the service guarantees per item (and a
transaction runs whole against every other operation). Table management is left as it is.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

# The backend's item operations (moto 5.2.x, `moto.dynamodb.models.DynamoDBBackend`).
ITEM_OPERATIONS = (
    "put_item",
    "update_item",
    "delete_item",
    "get_item",
    "query",
    "scan",
    "transact_write_items",
    "execute_statement",
    "execute_transaction",
    "batch_execute_statement",
)

_LOCK = threading.RLock()
_INSTALLED: dict[str, Callable[..., Any]] = {}


def _serialised(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def one_at_a_time(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return method(*args, **kwargs)

    return one_at_a_time


def install_atomic_dynamodb() -> Callable[[], None]:
    """Serialise moto's DynamoDB item operations; returns the undo. Installing again while installed
    changes nothing (and its undo leaves the first installation in place)."""
    from moto.dynamodb.models import DynamoDBBackend  # noqa: PLC0415  # moto is the local runtime's

    if _INSTALLED:
        return lambda: None
    missing = [name for name in ITEM_OPERATIONS if not callable(getattr(DynamoDBBackend, name, None))]
    if missing:
        raise RuntimeError(f"moto's DynamoDB backend has no {', '.join(missing)}: the moto pin changed shape")
    for name in ITEM_OPERATIONS:
        original = getattr(DynamoDBBackend, name)
        _INSTALLED[name] = original
        setattr(DynamoDBBackend, name, _serialised(original))

    def uninstall() -> None:
        for name, original in _INSTALLED.items():
            setattr(DynamoDBBackend, name, original)
        _INSTALLED.clear()

    return uninstall


__all__ = ["ITEM_OPERATIONS", "install_atomic_dynamodb"]
