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

    def ensure(self, workspace: str, *, plan: Plan | None, default_plan: Plan) -> WorkspaceRecord:
        current = self.find(workspace)
        if current is None:
            now = self.table.clock()
            record = WorkspaceRecord(
                workspace_id=workspace, plan=plan or default_plan, created_at=now, updated_at=now, version=1
            )
            try:
                self.table.put(record, condition="attribute_not_exists(pk)")
                return record
            except ConditionFailed:
                current = self.get(workspace)  # created by a concurrent first request
        if plan is not None and current.plan != plan:
            return self.table.mutate(
                WorkspaceRecord,
                workspace_key(workspace),
                lambda w: w.model_copy(update={"plan": plan}),
                missing=lambda: workspace_not_found(workspace),
                describe=lambda _: "workspace",
            )
        return current
