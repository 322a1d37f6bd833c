"""Provider connections in the records table (`application.ports.ConnectionStore`).

A connection's role is claimed by a second item (`role_claim_key`) written in the same transaction:
one customer role belongs to one workspace, so two workspaces can never share the cross-account
role (and with it each other's jobs and data in the customer's account).
"""

from __future__ import annotations

import builtins
import contextlib
from datetime import datetime
from typing import Any

from tunelab.adapters.dynamodb.table import (
    CONNECTION_CHECK,
    MAX_ATTEMPTS,
    TRANSIENT_INDEX,
    ConditionFailed,
    RecordsTable,
    provider_key,
    role_claim_key,
    serialize,
    stored_time,
    values,
)
from tunelab.domain.records import ProviderConnectionRecord, lost_race, role_taken


class DynamoConnections:
    def __init__(self, table: RecordsTable) -> None:
        self.table = table

    def find(self, workspace: str, provider: str = "sagemaker") -> ProviderConnectionRecord | None:
        return self.table.get(ProviderConnectionRecord, provider_key(workspace, provider))

    def _claim(self, workspace: str, role_arn: str) -> dict[str, Any]:
        return {
            "TableName": self.table.table_name,
            "Item": serialize({**role_claim_key(role_arn), "workspace_id": workspace, "role_arn": role_arn}),
            "ConditionExpression": "attribute_not_exists(pk) OR workspace_id = :ws",
            "ExpressionAttributeValues": values(ws=workspace),
        }

    def _release(self, workspace: str, role_arn: str) -> dict[str, Any]:
        return {
            "TableName": self.table.table_name,
            "Key": serialize(role_claim_key(role_arn)),
            "ConditionExpression": "attribute_not_exists(pk) OR workspace_id = :ws",
            "ExpressionAttributeValues": values(ws=workspace),
        }

    def put(
        self, record: ProviderConnectionRecord, *, expected_version: int | None = None
    ) -> ProviderConnectionRecord:
        for _ in range(MAX_ATTEMPTS):
            current = self.find(record.workspace_id, record.provider)
            if expected_version is not None and (current.version if current else 0) != expected_version:
                raise lost_race("provider connection")
            new = record.model_copy(
                update={
                    "version": (current.version if current else 0) + 1,
                    "created_at": current.created_at if current else record.created_at,
                    "updated_at": self.table.clock(),
                }
            )
            items: list[Any] = [
                {"Put": self.table.put_args(new, **self.table.version_condition(current))},
                {"Put": self._claim(record.workspace_id, record.role_arn)},
            ]
            if current is not None and current.role_arn.lower() != record.role_arn.lower():
                items.append({"Delete": self._release(record.workspace_id, current.role_arn)})
            try:
                self.table.transact(items)
                return new
            except ConditionFailed as failed:
                if len(failed.reasons) > 1 and failed.reasons[1] == "ConditionalCheckFailed":
                    raise role_taken(record.role_arn) from None
                continue
        raise lost_race("provider connection")

    def due_for_check(
        self, checked_before: datetime, *, limit: int = 20
    ) -> builtins.list[ProviderConnectionRecord]:
        found: builtins.list[ProviderConnectionRecord] = []
        for key in self.table.query_keys(
            IndexName=TRANSIENT_INDEX,
            KeyConditionExpression="transient_status = :s AND last_news_at < :t",
            ExpressionAttributeValues=values(s=CONNECTION_CHECK, t=stored_time(checked_before)),
        ):
            record = self.table.get(ProviderConnectionRecord, key)
            # The index is eventually consistent: confirm on the item itself.
            if record is not None and (
                record.recheck_requested_at is not None or record.last_checked_at < checked_before
            ):
                found.append(record)
            if len(found) >= limit:
                break
        return found

    def delete(self, workspace: str, provider: str = "sagemaker") -> bool:
        response = self.table.delete_item(provider_key(workspace, provider), ReturnValues="ALL_OLD")
        old = response.get("Attributes")
        if not old:
            return False
        role = old.get("role_arn", {}).get("S")
        if role:
            # Held by another workspace since: not ours to release.
            with contextlib.suppress(ConditionFailed):
                self.table.call(self.table.client.delete_item, **self._release(workspace, role))
        return True
