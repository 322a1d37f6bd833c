"""Requests per workspace and minute in the records table (`application.ports.RequestBudget`).

One conditional `UpdateItem` per request: the window's counter goes up by one while it is under the
limit; a full window fails the condition and the request is refused. Counters expire with the
table's TTL a few windows later. Cost: one write request unit per API request ($1.25 per million
on-demand writes where this was written).
"""

from __future__ import annotations

from collections.abc import Callable

from tunelab.adapters.dynamodb.table import ConditionFailed, RecordsTable, budget_key, serialize, values

# Counters are kept this many windows after their own, then expire (TTL deletes within days; an
# expired one is never read again: every window has its own key).
_KEPT_WINDOWS = 2


class DynamoRequestBudget:
    def __init__(self, table: RecordsTable, *, clock: Callable[[], float] | None = None) -> None:
        self.table = table
        self._clock = clock or (lambda: table.clock().timestamp())

    def spend(self, workspace: str, *, limit: int, window_s: int) -> bool:
        now = int(self._clock())
        start = now - now % window_s
        try:
            self.table.call(
                self.table.client.update_item,
                TableName=self.table.table_name,
                Key=serialize(budget_key(workspace, start)),
                UpdateExpression="ADD requests :one SET expires_at_epoch = :expires",
                ConditionExpression="attribute_not_exists(requests) OR requests < :limit",
                ExpressionAttributeValues=values(
                    one=1, limit=limit, expires=start + window_s * (_KEPT_WINDOWS + 1)
                ),
            )
        except ConditionFailed:
            return False
        return True
