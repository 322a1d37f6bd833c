"""Workspaces in the records table (`application.ports.WorkspaceStore`)."""

from __future__ import annotations

from tunelab.adapters.dynamodb.table import ConditionFailed, RecordsTable, workspace_key
from tunelab.domain.identity import Plan
from tunelab.domain.records import WorkspaceRecord, workspace_not_found


class DynamoWorkspaces:
    def __init__(self, table: RecordsTable) -> None:
        self.table = table

    def find(self, workspace: str) -> WorkspaceRecord | None:
        return self.table.get(WorkspaceRecord, workspace_key(workspace))

    def get(self, workspace: str) -> WorkspaceRecord:
        found = self.find(workspace)
        if found is None:
            raise workspace_not_found(workspace)
        return found

    def ensure(self, workspace: str, *, default_plan: Plan) -> WorkspaceRecord:
        current = self.find(workspace)
        if current is not None:
            return current
        now = self.table.clock()
        record = WorkspaceRecord(
            workspace_id=workspace, plan=default_plan, created_at=now, updated_at=now, version=1
        )
        try:
            self.table.put(record, condition="attribute_not_exists(pk)")
        except ConditionFailed:
            return self.get(workspace)  # created by a concurrent first request
        return record

    def set_plan(self, workspace: str, plan: Plan, *, default_plan: Plan) -> WorkspaceRecord:
        current = self.ensure(workspace, default_plan=default_plan)
        if current.plan == plan:
            return current
        return self.table.mutate(
            WorkspaceRecord,
            workspace_key(workspace),
            lambda w: w.model_copy(update={"plan": plan}),
            missing=lambda: workspace_not_found(workspace),
            describe=lambda _: "workspace",
        )

    def ensure_connector_external_id(self, workspace: str, candidate: str) -> str:
        current = self.get(workspace)
        if current.connector_external_id:
            return current.connector_external_id

        def keep(w: WorkspaceRecord) -> WorkspaceRecord:
            # A concurrent first ask may have kept its own: the first one written stays.
            return w if w.connector_external_id else w.model_copy(update={"connector_external_id": candidate})

        kept = self.table.mutate(
            WorkspaceRecord,
            workspace_key(workspace),
            keep,
            missing=lambda: workspace_not_found(workspace),
            describe=lambda _: "workspace",
        )
        return kept.connector_external_id or candidate
