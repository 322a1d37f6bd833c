"""Datasets in the records table (`application.ports.DatasetStore`): a dataset's item and its name lock,
written together, and the count of models using it (kept by the model store's transactions)."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from tunelab.adapters.dynamodb.table import (
    ConditionFailed,
    Expressions,
    ListSpec,
    RecordsTable,
    created_between,
    dataset_key,
    dataset_name_key,
    datasets_list_pk,
    name_begins,
    serialize,
    values,
    ws_pk,
)
from tunelab.domain.errors import Conflict
from tunelab.domain.listing import DatasetQuery
from tunelab.domain.records import (
    DatasetChanges,
    DatasetRecord,
    ModelRecord,
    RecordPage,
    dataset_ids,
    dataset_in_state,
    dataset_in_use,
    dataset_name_taken,
    dataset_not_found,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef


def dataset_refs_update(
    table: RecordsTable, workspace: str, dataset_id: str, delta: int
) -> TransactWriteItemTypeDef:
    """The transaction item that counts a model in (+1) or out (-1) of a dataset's users. Adding a user
    needs a ready dataset; releasing one needs only that it still exists."""
    condition = "attribute_exists(pk)" + (" AND #status = :ready" if delta > 0 else "")
    update: dict[str, Any] = {
        "TableName": table.table_name,
        "Key": serialize(dataset_key(workspace, dataset_id)),
        "UpdateExpression": "ADD model_refs :delta, version :one",
        "ConditionExpression": condition,
        "ExpressionAttributeValues": values(delta=delta, one=1, **({"ready": "ready"} if delta > 0 else {})),
    }
    if delta > 0:
        update["ExpressionAttributeNames"] = {"#status": "status"}
    return {"Update": update}  # type: ignore[typeddict-item]


def dataset_list_spec(workspace: str, query: DatasetQuery) -> ListSpec:
    """The query of a datasets list: by creation on the table (ids sort by creation time), by name on
    the list index (a name prefix narrows the key); the other filters filter."""
    e = Expressions()
    if query.statuses:
        e.one_of("status", query.statuses)
    created_between(e, query.created_after, query.created_before)
    forward = query.order == "asc"
    if query.sort == "created_at":
        name_begins(e, query.name_prefix)
        return e.spec("datasets", ws_pk(workspace), "DS#", forward=forward)
    condition = f"begins_with(list_sk, {e.value(query.name_prefix)})" if query.name_prefix else None
    return e.spec(
        "datasets@name",
        ws_pk(workspace),
        "DS#",
        index_pk=datasets_list_pk(workspace),
        range_condition=condition,
        forward=forward,
    )


class DynamoDatasets:
    def __init__(self, table: RecordsTable) -> None:
        self.table = table

    def create(self, record: DatasetRecord) -> DatasetRecord:
        record = record.model_copy(update={"version": 1, "model_refs": 0})
        lock = serialize(
            {**dataset_name_key(record.workspace_id, record.name), "dataset_id": record.dataset_id}
        )
        try:
            self.table.transact(
                [
                    {"Put": self.table.put_args(record, condition="attribute_not_exists(pk)")},
                    {
                        "Put": {
                            "TableName": self.table.table_name,
                            "Item": lock,
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except ConditionFailed as failed:
            if failed.reasons[1] == "ConditionalCheckFailed":
                raise dataset_name_taken(record.name) from None
            raise Conflict(f"A dataset with id {record.dataset_id} already exists.") from None
        return record

    def find(self, workspace: str, dataset_id: str) -> DatasetRecord | None:
        return self.table.get(DatasetRecord, dataset_key(workspace, dataset_id))

    def get(self, workspace: str, dataset_id: str) -> DatasetRecord:
        found = self.find(workspace, dataset_id)
        if found is None:
            raise dataset_not_found(dataset_id)
        return found

    def list(
        self,
        workspace: str,
        *,
        limit: int = 50,
        next_token: str | None = None,
        status: Collection[str] | None = None,
        query: DatasetQuery | None = None,
    ) -> RecordPage[DatasetRecord]:
        wanted = (query or DatasetQuery()).restricted_to(status)
        if wanted is None:  # the caller's statuses and the query's have none in common
            return RecordPage(items=[], next_token=None)
        return self.table.list(DatasetRecord, dataset_list_spec(workspace, wanted), limit, next_token)

    def update(
        self,
        workspace: str,
        dataset_id: str,
        changes: DatasetChanges,
        *,
        expected_version: int | None = None,
        expected_status: Collection[str] | None = None,
    ) -> DatasetRecord:
        def change(current: DatasetRecord) -> DatasetRecord:
            if expected_status is not None and current.status not in expected_status:
                raise dataset_in_state(current, expected_status)
            return changes.apply(current)

        return self.table.mutate(
            DatasetRecord,
            dataset_key(workspace, dataset_id),
            change,
            expected_version=expected_version,
            missing=lambda: dataset_not_found(dataset_id),
            describe=lambda d: f"dataset {d.dataset_id}",
        )

    def delete(self, workspace: str, dataset_id: str) -> None:
        current = self.get(workspace, dataset_id)
        try:
            self.table.transact(
                [
                    {
                        "Delete": {
                            "TableName": self.table.table_name,
                            "Key": serialize(dataset_key(workspace, dataset_id)),
                            "ConditionExpression": "attribute_exists(pk) AND "
                            "(attribute_not_exists(model_refs) OR model_refs = :zero)",
                            "ExpressionAttributeValues": values(zero=0),
                        }
                    },
                    {
                        "Delete": {
                            "TableName": self.table.table_name,
                            "Key": serialize(dataset_name_key(workspace, current.name)),
                        }
                    },
                ]
            )
        except ConditionFailed:
            if self.find(workspace, dataset_id) is None:
                raise dataset_not_found(dataset_id) from None
            users = sorted(
                m.name
                for m in self.table.query_all(ModelRecord, ws_pk(workspace), "MODEL#")
                if dataset_id in dataset_ids(m)
            )
            raise dataset_in_use(dataset_id, users) from None
