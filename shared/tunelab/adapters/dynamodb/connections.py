"""Provider connections in the records table (`application.ports.ConnectionStore`)."""

from __future__ import annotations

from tunelab.adapters.dynamodb.table import MAX_ATTEMPTS, ConditionFailed, RecordsTable, provider_key
from tunelab.domain.records import ProviderConnectionRecord, lost_race


class DynamoConnections:
    def __init__(self, table: RecordsTable) -> None:
        self.table = table

    def find(self, workspace: str, provider: str = "sagemaker") -> ProviderConnectionRecord | None:
        return self.table.get(ProviderConnectionRecord, provider_key(workspace, provider))

    def put(self, record: ProviderConnectionRecord) -> ProviderConnectionRecord:
        for _ in range(MAX_ATTEMPTS):
            current = self.find(record.workspace_id, record.provider)
            new = record.model_copy(
                update={
                    "version": (current.version if current else 0) + 1,
                    "created_at": current.created_at if current else record.created_at,
                    "updated_at": self.table.clock(),
                }
            )
            try:
                self.table.put(new, **self.table.version_condition(current))
                return new
            except ConditionFailed:
                continue
        raise lost_race("provider connection")

    def delete(self, workspace: str, provider: str = "sagemaker") -> bool:
        response = self.table.delete_item(provider_key(workspace, provider), ReturnValues="ALL_OLD")
        return bool(response.get("Attributes"))
