"""Fine-tuned models and their history in the records table (`application.ports.ModelStore`).

A model's item and its events are written in one transaction (the model's new version orders the
events); creating and deleting a model counts it in and out of its datasets' users in the same
transaction, so a dataset in use cannot be deleted.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection
from datetime import datetime
from typing import TYPE_CHECKING

from tunelab.adapters.dynamodb.datasets import DynamoDatasets, dataset_refs_update
from tunelab.adapters.dynamodb.table import (
    ENDPOINT_INDEX,
    JOB_INDEX,
    MAX_ATTEMPTS,
    PENDING_EMAIL,
    TRANSIENT_INDEX,
    ConditionFailed,
    Expressions,
    ListSpec,
    RecordsTable,
    created_between,
    events_pk,
    model_key,
    models_list_pk,
    name_begins,
    provider_id_key,
    serialize,
    stored_time,
    values,
    ws_pk,
)
from tunelab.adapters.dynamodb.task_tokens import DynamoTaskTokens
from tunelab.application.ports import TASK_PURPOSES
from tunelab.domain.errors import InvalidState
from tunelab.domain.listing import ModelQuery
from tunelab.domain.records import (
    Metrics,
    ModelChanges,
    ModelEventRecord,
    ModelRecord,
    RecordPage,
    check_transitions,
    dataset_ids,
    dataset_unusable,
    invalid_state,
    lost_race,
    model_name_taken,
    model_not_found,
    status_change,
)
from tunelab.domain.status import TRANSIENT, ModelStatus

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

_TRAINING = frozenset({ModelStatus.TRAINING, ModelStatus.STOPPING_TRAINING})


def model_list_spec(workspace: str, query: ModelQuery) -> ListSpec:
    """The query of a models list: by name on the table (a name prefix narrows the key), by creation
    time on the list index (the time range narrows the key); the other filters filter."""
    e = Expressions()
    if query.statuses:
        e.one_of("status", {s.value for s in query.statuses})
    if query.provider is not None:
        e.equals("provider", query.provider)
    if query.base_model_id is not None:
        e.equals("base_model_id", query.base_model_id)
    if query.dataset_id is not None:
        dataset = e.value(query.dataset_id)
        e.where(f"{e.path('dataset.id')} = {dataset} OR {e.path('validation.dataset.id')} = {dataset}")
    if query.creator is not None:
        e.equals("created_by.email", query.creator)
    forward = query.order == "asc"
    if query.sort == "name":
        created_between(e, query.created_after, query.created_before)
        prefix = "MODEL#" + (query.name_prefix or "")
        return e.spec("models", ws_pk(workspace), "MODEL#", key_prefix=prefix, forward=forward)
    # `list_sk` is `<time>#<name>`: at or after `<after>`, before `<before>` (never equal to it).
    after, before = query.created_after, query.created_before
    low = None if after is None else e.value(stored_time(after))
    high = None if before is None else e.value(stored_time(before))
    if low and high:
        condition: str | None = f"list_sk BETWEEN {low} AND {high}"
    else:
        condition = f"list_sk >= {low}" if low else f"list_sk < {high}" if high else None
    name_begins(e, query.name_prefix)
    return e.spec(
        "models@created",
        ws_pk(workspace),
        "MODEL#",
        index_pk=models_list_pk(workspace),
        range_condition=condition,
        forward=forward,
    )


class DynamoModels:
    def __init__(self, table: RecordsTable) -> None:
        self.table = table

    # --- reads ---

    def find(self, workspace: str, name: str) -> ModelRecord | None:
        return self.table.get(ModelRecord, model_key(workspace, name))

    def get(self, workspace: str, name: str) -> ModelRecord:
        found = self.find(workspace, name)
        if found is None:
            raise model_not_found(name)
        return found

    def list(
        self,
        workspace: str,
        *,
        limit: int = 50,
        next_token: str | None = None,
        status: Collection[ModelStatus] | None = None,
        query: ModelQuery | None = None,
    ) -> RecordPage[ModelRecord]:
        wanted = (query or ModelQuery()).restricted_to(status)
        if wanted is None:  # the caller's statuses and the query's have none in common
            return RecordPage(items=[], next_token=None)
        return self.table.list(ModelRecord, model_list_spec(workspace, wanted), limit, next_token)

    def list_events(
        self, workspace: str, name: str, *, limit: int = 50, next_token: str | None = None
    ) -> RecordPage[ModelEventRecord]:
        model = self.get(workspace, name)
        spec = ListSpec(kind="events", pk=events_pk(workspace, name, model.uid), sk_prefix="EV#")
        return self.table.list(ModelEventRecord, spec, limit, next_token)

    def find_by_job(self, provider: str, job_id: str) -> ModelRecord | None:
        return self.table.find_by_index(JOB_INDEX, "job_key", provider_id_key(provider, job_id))

    def find_by_endpoint(self, provider: str, endpoint: str) -> ModelRecord | None:
        # Releases before the provider-qualified key stored the bare endpoint name.
        return self.table.find_by_index(
            ENDPOINT_INDEX, "endpoint_key", provider_id_key(provider, endpoint), written_before_as=endpoint
        )

    def stale(
        self, no_news_since: datetime, *, statuses: Collection[ModelStatus], limit: int = 100
    ) -> builtins.list[ModelRecord]:
        found: builtins.list[ModelRecord] = []
        for status in sorted(ModelStatus(s).value for s in statuses):
            if ModelStatus(status) not in TRANSIENT:
                raise ValueError(f"{status} is not a transient status; only those are indexed")
            for key in self.table.query_keys(
                IndexName=TRANSIENT_INDEX,
                KeyConditionExpression="transient_status = :s AND last_news_at < :t",
                ExpressionAttributeValues=values(s=status, t=stored_time(no_news_since)),
            ):
                record = self.table.get(ModelRecord, key)
                if (
                    record is not None
                    and record.status.value == status
                    and record.last_news_at < no_news_since
                ):
                    found.append(record)
        found.sort(key=lambda m: m.last_news_at)
        return found[:limit]

    def unsent_emails(self, *, limit: int = 100) -> builtins.list[ModelRecord]:
        found: builtins.list[ModelRecord] = []
        for key in self.table.query_keys(
            IndexName=TRANSIENT_INDEX,
            KeyConditionExpression="transient_status = :s",
            ExpressionAttributeValues=values(s=PENDING_EMAIL),
        ):
            record = self.table.get(ModelRecord, key)
            if record is not None and record.pending_email is not None:
                found.append(record)
        found.sort(key=lambda m: m.pending_email.since if m.pending_email else m.updated_at)
        return found[:limit]

    def using_dataset(self, workspace: str, dataset_id: str) -> builtins.list[ModelRecord]:
        return [
            m
            for m in self.table.query_all(ModelRecord, ws_pk(workspace), "MODEL#")
            if dataset_id in dataset_ids(m)
        ]

    # --- writes ---

    def create(self, record: ModelRecord, *, message: str | None = None) -> ModelRecord:
        now = self.table.clock()
        record = record.model_copy(
            update={"version": 1, "last_news_at": now, "last_event_at": now, "updated_at": now}
        )
        event = ModelEventRecord(at=now, type="status_changed", status=record.status, message=message)
        used = sorted(dataset_ids(record))
        items: list[TransactWriteItemTypeDef] = [
            {"Put": self.table.put_args(record, condition="attribute_not_exists(pk)")},
            {"Put": self.table.event_put_args(record, event)},
        ]
        items += [dataset_refs_update(self.table, record.workspace_id, d, +1) for d in used]
        try:
            self.table.transact(items)
        except ConditionFailed as failed:
            if failed.reasons[0] == "ConditionalCheckFailed":
                raise model_name_taken(record.name) from None
            for dataset_id, reason in zip(used, failed.reasons[2:], strict=True):
                if reason == "ConditionalCheckFailed":
                    found = DynamoDatasets(self.table).find(record.workspace_id, dataset_id)
                    raise dataset_unusable(dataset_id, found) from None
            raise
        return record

    def update(
        self,
        workspace: str,
        name: str,
        changes: ModelChanges,
        *,
        expected_version: int | None = None,
        expected_status: Collection[ModelStatus] | None = None,
    ) -> ModelRecord:
        allowed = None if expected_status is None else set(expected_status)

        def change(current: ModelRecord) -> ModelRecord:
            if allowed is not None and current.status not in allowed:
                raise invalid_state(current, allowed)
            return changes.apply(current)

        return self._mutate(workspace, name, change, expected_version=expected_version)

    def transition(
        self,
        workspace: str,
        name: str,
        expected_from: Collection[ModelStatus],
        to: ModelStatus,
        changes: ModelChanges | None = None,
        *,
        message: str | None = None,
        expected_version: int | None = None,
    ) -> ModelRecord:
        sources = set(expected_from)
        check_transitions(sources, to)
        events: list[ModelEventRecord] = []

        def change(current: ModelRecord) -> ModelRecord:
            moved, event = status_change(
                current, sources, to, changes, now=self.table.clock(), message=message
            )
            events[:] = [event]
            return moved

        return self._mutate(workspace, name, change, expected_version=expected_version, events=events)

    def try_transition(
        self,
        workspace: str,
        name: str,
        expected_from: Collection[ModelStatus],
        to: ModelStatus,
        changes: ModelChanges | None = None,
        *,
        message: str | None = None,
    ) -> ModelRecord | None:
        try:
            return self.transition(workspace, name, expected_from, to, changes, message=message)
        except InvalidState:
            return None

    def record_metrics(
        self, workspace: str, name: str, metrics: Metrics, *, at: datetime | None = None
    ) -> ModelRecord | None:
        events: list[ModelEventRecord] = []

        def change(current: ModelRecord) -> ModelRecord:
            if current.status not in _TRAINING:
                raise InvalidState("not training")
            now = self.table.clock()
            events[:] = [ModelEventRecord(at=at or now, type="metrics", metrics=metrics)]
            training = current.training.model_copy(update={"metrics": metrics})
            return current.model_copy(update={"training": training, "last_news_at": now})

        try:
            return self._mutate(workspace, name, change, events=events)
        except InvalidState:
            return None

    def add_message(
        self, workspace: str, name: str, message: str, *, at: datetime | None = None
    ) -> ModelRecord:
        events: list[ModelEventRecord] = []

        def change(current: ModelRecord) -> ModelRecord:
            now = self.table.clock()
            events[:] = [ModelEventRecord(at=at or now, type="message", message=message)]
            return current.model_copy(update={"last_news_at": now})

        return self._mutate(workspace, name, change, events=events)

    def delete(self, workspace: str, name: str, *, allowed: Collection[ModelStatus]) -> ModelRecord:
        sources = set(allowed)
        for _ in range(MAX_ATTEMPTS):
            current = self.get(workspace, name)
            if current.status not in sources:
                raise invalid_state(current, sources)
            items: list[TransactWriteItemTypeDef] = [
                {
                    "Delete": {
                        "TableName": self.table.table_name,
                        "Key": serialize(model_key(workspace, name)),
                        "ConditionExpression": "version = :v",
                        "ExpressionAttributeValues": values(v=current.version),
                    }
                }
            ]
            items += [dataset_refs_update(self.table, workspace, d, -1) for d in sorted(dataset_ids(current))]
            try:
                self.table.transact(items)
            except ConditionFailed:
                continue
            self.table.delete_partition(events_pk(workspace, name, current.uid))
            tokens = DynamoTaskTokens(self.table)
            for purpose in TASK_PURPOSES:
                tokens.delete(workspace, name, purpose)
            return current
        raise lost_race(f"fine-tuned model '{name}'")

    def _mutate(
        self,
        workspace: str,
        name: str,
        change: Callable[[ModelRecord], ModelRecord],
        *,
        expected_version: int | None = None,
        events: builtins.list[ModelEventRecord] | None = None,
    ) -> ModelRecord:
        return self.table.mutate(
            ModelRecord,
            model_key(workspace, name),
            change,
            expected_version=expected_version,
            missing=lambda: model_not_found(name),
            describe=lambda m: f"fine-tuned model '{m.name}'",
            events=events,
        )
