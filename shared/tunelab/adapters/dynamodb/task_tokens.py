"""Step Functions task tokens in the records table, with a TTL (`application.ports.TaskTokens`)."""

from __future__ import annotations

from datetime import datetime

from tunelab.adapters.dynamodb.table import (
    TTL_ATTRIBUTE,
    RecordsTable,
    deserialize,
    serialize,
    task_token_key,
)
from tunelab.application.ports import TaskPurpose


class DynamoTaskTokens:
    def __init__(self, table: RecordsTable) -> None:
        self.table = table

    def put(self, workspace: str, name: str, purpose: TaskPurpose, token: str, *, until: datetime) -> None:
        item = {
            **task_token_key(workspace, name, purpose),
            "kind": "task_token",
            "token": token,
            TTL_ATTRIBUTE: int(until.timestamp()),
        }
        self.table.call(self.table.client.put_item, TableName=self.table.table_name, Item=serialize(item))

    def get(self, workspace: str, name: str, purpose: TaskPurpose) -> str | None:
        response = self.table.call(
            self.table.client.get_item,
            TableName=self.table.table_name,
            Key=serialize(task_token_key(workspace, name, purpose)),
            ConsistentRead=True,
        )
        item = response.get("Item")
        if not item:
            return None
        plain = deserialize(item)
        # DynamoDB deletes expired items lazily (within days): an expired token is treated as gone.
        if int(plain.get(TTL_ATTRIBUTE, 0)) <= self.table.clock().timestamp():
            return None
        token = plain.get("token")
        return token if isinstance(token, str) else None

    def delete(self, workspace: str, name: str, purpose: TaskPurpose) -> None:
        self.table.delete_item(task_token_key(workspace, name, purpose))
