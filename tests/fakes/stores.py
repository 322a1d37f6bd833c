"""In-memory stores: the records ports (`application.ports`) kept in dictionaries.

They apply the same domain rules as the DynamoDB stores (`domain.records`: transitions, event order,
versions, dataset users) and answer with the same errors; `tests/integration/test_stores.py` runs one
suite against both, so a use-case test on these fakes means what it says.
"""

from __future__ import annotations

import base64
import builtins
import json
import threading
from collections.abc import Callable, Collection
from datetime import datetime
from typing import TypeVar

from tunelab.application.ports import TASK_PURPOSES, TaskPurpose
from tunelab.domain.errors import Conflict, InvalidState, ValidationFailed
from tunelab.domain.identity import Plan
from tunelab.domain.listing import DatasetQuery, ModelQuery
from tunelab.domain.records import (
    DatasetChanges,
    DatasetRecord,
    Metrics,
    ModelChanges,
    ModelEventRecord,
    ModelRecord,
    ProviderConnectionRecord,
    RecordPage,
    WorkspaceRecord,
    bad_page_token,
    changed_since_read,
    check_transitions,
    dataset_ids,
    dataset_in_state,
    dataset_in_use,
    dataset_name_taken,
    dataset_not_found,
    dataset_unusable,
    invalid_state,
    lost_race,
    model_name_taken,
    model_not_found,
    role_taken,
    status_change,
    utcnow,
    with_history,
    workspace_not_found,
    written,
)
from tunelab.domain.status import TRANSIENT, ModelStatus

_TRAINING = frozenset({ModelStatus.TRAINING, ModelStatus.STOPPING_TRAINING})
T = TypeVar("T")


def _page(
    items: builtins.list[T],
    key: Callable[[T], str],
    kind: str,
    scope: str,
    limit: int,
    token: str | None,
    descending: bool = False,
) -> RecordPage[T]:
    """A page of `items` (already in list order) after the key a token names, like the DynamoDB store."""
    if not 1 <= limit <= 100:
        raise ValidationFailed.of("limit", "limit must be between 1 and 100.")
    start = ""
    if token:
        try:
            plain = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        except ValueError:
            raise bad_page_token() from None
        if not (
            isinstance(plain, dict)
            and plain.get("l") == kind
            and plain.get("s") == scope
            and plain.get("o") == ("desc" if descending else "asc")
        ):
            raise bad_page_token()
        start = str(plain.get("k", ""))
    rest = [item for item in items if not start or (key(item) < start if descending else key(item) > start)]
    page, more = rest[:limit], len(rest) > limit
    next_token = None
    if more and page:
        plain = {"l": kind, "s": scope, "o": "desc" if descending else "asc", "k": key(page[-1])}
        next_token = base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")
    return RecordPage(items=page, next_token=next_token)


class MemoryTable:
    """What the stores share: the records, one lock, the clock."""

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.workspaces: dict[str, WorkspaceRecord] = {}
        self.connections: dict[tuple[str, str], ProviderConnectionRecord] = {}
        self.datasets: dict[tuple[str, str], DatasetRecord] = {}
        self.dataset_names: dict[tuple[str, str], str] = {}
        self.models: dict[tuple[str, str], ModelRecord] = {}
        self.events: dict[tuple[str, str, str], builtins.list[ModelEventRecord]] = {}
        self.tokens: dict[tuple[str, str, str], tuple[str, datetime]] = {}
        self.role_claims: dict[str, str] = {}


class MemoryWorkspaces:
    def __init__(self, table: MemoryTable) -> None:
        self.table = table

    def find(self, workspace: str) -> WorkspaceRecord | None:
        return self.table.workspaces.get(workspace)

    def get(self, workspace: str) -> WorkspaceRecord:
        found = self.find(workspace)
        if found is None:
            raise workspace_not_found(workspace)
        return found

    def ensure(self, workspace: str, *, default_plan: Plan) -> WorkspaceRecord:
        with self.table.lock:
            current = self.find(workspace)
            if current is None:
                now = self.table.clock()
                current = WorkspaceRecord(
                    workspace_id=workspace, plan=default_plan, created_at=now, updated_at=now, version=1
                )
                self.table.workspaces[workspace] = current
            return current

    def set_plan(self, workspace: str, plan: Plan, *, default_plan: Plan) -> WorkspaceRecord:
        with self.table.lock:
            current = self.ensure(workspace, default_plan=default_plan)
            if current.plan != plan:
                current = written(current.model_copy(update={"plan": plan}), current, now=self.table.clock())
                self.table.workspaces[workspace] = current
            return current

    def ensure_connector_external_id(self, workspace: str, candidate: str) -> str:
        with self.table.lock:
            current = self.get(workspace)
            if current.connector_external_id:
                return current.connector_external_id
            kept = current.model_copy(update={"connector_external_id": candidate})
            self.table.workspaces[workspace] = written(kept, current, now=self.table.clock())
            return candidate


class MemoryConnections:
    def __init__(self, table: MemoryTable) -> None:
        self.table = table

    def find(self, workspace: str, provider: str = "sagemaker") -> ProviderConnectionRecord | None:
        return self.table.connections.get((workspace, provider))

    def put(
        self, record: ProviderConnectionRecord, *, expected_version: int | None = None
    ) -> ProviderConnectionRecord:
        with self.table.lock:
            holder = self.table.role_claims.get(record.role_arn.lower())
            if holder not in (None, record.workspace_id):
                raise role_taken(record.role_arn)
            current = self.find(record.workspace_id, record.provider)
            if expected_version is not None and (current.version if current else 0) != expected_version:
                raise lost_race("provider connection")
            if current is not None:
                self.table.role_claims.pop(current.role_arn.lower(), None)
            self.table.role_claims[record.role_arn.lower()] = record.workspace_id
            new = record.model_copy(
                update={
                    "version": (current.version if current else 0) + 1,
                    "created_at": current.created_at if current else record.created_at,
                    "updated_at": self.table.clock(),
                }
            )
            self.table.connections[(record.workspace_id, record.provider)] = new
            return new

    def due_for_check(
        self, checked_before: datetime, *, limit: int = 20
    ) -> builtins.list[ProviderConnectionRecord]:
        with self.table.lock:
            due = [
                c
                for c in self.table.connections.values()
                if c.recheck_requested_at is not None or c.last_checked_at < checked_before
            ]
        due.sort(key=lambda c: (c.recheck_requested_at is None, c.last_checked_at))
        return due[:limit]

    def delete(self, workspace: str, provider: str = "sagemaker") -> bool:
        with self.table.lock:
            old = self.table.connections.pop((workspace, provider), None)
            if old is not None and self.table.role_claims.get(old.role_arn.lower()) == workspace:
                del self.table.role_claims[old.role_arn.lower()]
            return old is not None


class MemoryRequestBudget:
    """Requests per workspace and window, counted as the DynamoDB adapter counts them."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.counts: dict[tuple[str, int], int] = {}

    def spend(self, workspace: str, *, limit: int, window_s: int) -> bool:
        now = int(self.clock().timestamp())
        key = (workspace, now - now % window_s)
        if self.counts.get(key, 0) >= limit:
            return False
        self.counts[key] = self.counts.get(key, 0) + 1
        return True


class MemoryDatasets:
    def __init__(self, table: MemoryTable) -> None:
        self.table = table

    def create(self, record: DatasetRecord) -> DatasetRecord:
        with self.table.lock:
            lock = (record.workspace_id, record.name.lower())
            if lock in self.table.dataset_names:
                raise dataset_name_taken(record.name)
            if (record.workspace_id, record.dataset_id) in self.table.datasets:
                raise Conflict(f"A dataset with id {record.dataset_id} already exists.")
            record = record.model_copy(update={"version": 1, "model_refs": 0})
            self.table.datasets[(record.workspace_id, record.dataset_id)] = record
            self.table.dataset_names[lock] = record.dataset_id
            return record

    def find(self, workspace: str, dataset_id: str) -> DatasetRecord | None:
        return self.table.datasets.get((workspace, dataset_id))

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
        found = (
            []
            if wanted is None
            else [d for (ws, _), d in self.table.datasets.items() if ws == workspace and wanted.matches(d)]
        )
        q = wanted or DatasetQuery()
        items = sorted(found, key=q.sort_key, reverse=q.order == "desc")
        kind = f"datasets@{q.sort}"
        return _page(items, q.sort_key, kind, workspace, limit, next_token, q.order == "desc")

    def update(
        self,
        workspace: str,
        dataset_id: str,
        changes: DatasetChanges,
        *,
        expected_version: int | None = None,
        expected_status: Collection[str] | None = None,
    ) -> DatasetRecord:
        with self.table.lock:
            current = self.get(workspace, dataset_id)
            if expected_version is not None and current.version != expected_version:
                raise changed_since_read(f"dataset {dataset_id}")
            if expected_status is not None and current.status not in expected_status:
                raise dataset_in_state(current, expected_status)
            new = written(changes.apply(current), current, now=self.table.clock())
            self.table.datasets[(workspace, dataset_id)] = new
            return new

    def delete(self, workspace: str, dataset_id: str) -> None:
        with self.table.lock:
            current = self.get(workspace, dataset_id)
            if current.model_refs:
                users = sorted(
                    m.name
                    for (ws, _), m in self.table.models.items()
                    if ws == workspace and dataset_id in dataset_ids(m)
                )
                raise dataset_in_use(dataset_id, users)
            del self.table.datasets[(workspace, dataset_id)]
            self.table.dataset_names.pop((workspace, current.name.lower()), None)

    def count_user(self, workspace: str, dataset_id: str, delta: int) -> None:
        current = self.table.datasets[(workspace, dataset_id)]
        self.table.datasets[(workspace, dataset_id)] = current.model_copy(
            update={"model_refs": current.model_refs + delta, "version": current.version + 1}
        )


class MemoryModels:
    def __init__(self, table: MemoryTable, datasets: MemoryDatasets) -> None:
        self.table = table
        self._datasets = datasets

    # --- reads ---

    def find(self, workspace: str, name: str) -> ModelRecord | None:
        return self.table.models.get((workspace, name.lower()))

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
        found = (
            []
            if wanted is None
            else [m for (ws, _), m in self.table.models.items() if ws == workspace and wanted.matches(m)]
        )
        q = wanted or ModelQuery()
        items = sorted(found, key=q.sort_key, reverse=q.order == "desc")
        kind = f"models@{q.sort}"
        return _page(items, q.sort_key, kind, workspace, limit, next_token, q.order == "desc")

    def list_events(
        self, workspace: str, name: str, *, limit: int = 50, next_token: str | None = None
    ) -> RecordPage[ModelEventRecord]:
        model = self.get(workspace, name)
        events = self.table.events.get((workspace, name.lower(), model.uid), [])
        numbered = [(f"{i:012d}", e) for i, e in enumerate(events)]
        page = _page(
            numbered, lambda pair: pair[0], "events", f"{workspace}#{name.lower()}", limit, next_token
        )
        return RecordPage(items=[e for _, e in page.items], next_token=page.next_token)

    def find_by_job(self, provider: str, job_id: str) -> ModelRecord | None:
        found = [
            m for m in self.table.models.values() if m.provider == provider and m.training.job_id == job_id
        ]
        return max(found, key=lambda m: m.created_at) if found else None

    def find_by_endpoint(self, provider: str, endpoint: str) -> ModelRecord | None:
        found = [
            m
            for m in self.table.models.values()
            if m.provider == provider and m.deployment is not None and m.deployment.endpoint == endpoint
        ]
        return max(found, key=lambda m: m.created_at) if found else None

    def stale(
        self, no_news_since: datetime, *, statuses: Collection[ModelStatus], limit: int = 100
    ) -> builtins.list[ModelRecord]:
        for status in statuses:
            if status not in TRANSIENT:
                raise ValueError(f"{status} is not a transient status; only those are indexed")
        found = [
            m for m in self.table.models.values() if m.status in statuses and m.last_news_at < no_news_since
        ]
        return sorted(found, key=lambda m: m.last_news_at)[:limit]

    def unsent_emails(self, *, limit: int = 100) -> builtins.list[ModelRecord]:
        found = [m for m in self.table.models.values() if m.pending_email is not None]
        return sorted(found, key=lambda m: m.pending_email.since if m.pending_email else m.updated_at)[:limit]

    def using_dataset(self, workspace: str, dataset_id: str) -> builtins.list[ModelRecord]:
        return [
            m
            for (ws, _), m in sorted(self.table.models.items())
            if ws == workspace and dataset_id in dataset_ids(m)
        ]

    # --- writes ---

    def create(self, record: ModelRecord, *, message: str | None = None) -> ModelRecord:
        with self.table.lock:
            now = self.table.clock()
            key = (record.workspace_id, record.name.lower())
            if key in self.table.models:
                raise model_name_taken(record.name)
            used = sorted(dataset_ids(record))
            for dataset_id in used:
                found = self._datasets.find(record.workspace_id, dataset_id)
                if found is None or found.status != "ready":
                    raise dataset_unusable(dataset_id, found)
            record = record.model_copy(
                update={"version": 1, "last_news_at": now, "last_event_at": now, "updated_at": now}
            )
            self.table.models[key] = record
            event = ModelEventRecord(at=now, type="status_changed", status=record.status, message=message)
            self.table.events[(*key, record.uid)] = [event]
            for dataset_id in used:
                self._datasets.count_user(record.workspace_id, dataset_id, +1)
            return record

    def _write(
        self,
        workspace: str,
        name: str,
        change: Callable[[ModelRecord], ModelRecord],
        *,
        expected_version: int | None = None,
        events: builtins.list[ModelEventRecord] | None = None,
    ) -> ModelRecord:
        with self.table.lock:
            current = self.get(workspace, name)
            if expected_version is not None and current.version != expected_version:
                raise changed_since_read(f"fine-tuned model '{current.name}'")
            new = written(change(current), current, now=self.table.clock())
            if events:
                new, events[:] = with_history(new, events)
                self.table.events.setdefault((workspace, name.lower(), new.uid), []).extend(events)
            self.table.models[(workspace, name.lower())] = new
            return new

    def update(
        self,
        workspace: str,
        name: str,
        changes: ModelChanges,
        *,
        expected_version: int | None = None,
        expected_status: Collection[ModelStatus] | None = None,
    ) -> ModelRecord:
        def change(current: ModelRecord) -> ModelRecord:
            if expected_status is not None and current.status not in expected_status:
                raise invalid_state(current, expected_status)
            return changes.apply(current)

        return self._write(workspace, name, change, expected_version=expected_version)

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
        events: builtins.list[ModelEventRecord] = []

        def change(current: ModelRecord) -> ModelRecord:
            moved, event = status_change(
                current, sources, to, changes, now=self.table.clock(), message=message
            )
            events[:] = [event]
            return moved

        return self._write(workspace, name, change, expected_version=expected_version, events=events)

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
        events: builtins.list[ModelEventRecord] = []

        def change(current: ModelRecord) -> ModelRecord:
            if current.status not in _TRAINING:
                raise InvalidState("not training")
            now = self.table.clock()
            events[:] = [ModelEventRecord(at=at or now, type="metrics", metrics=metrics)]
            training = current.training.model_copy(update={"metrics": metrics})
            return current.model_copy(update={"training": training, "last_news_at": now})

        try:
            return self._write(workspace, name, change, events=events)
        except InvalidState:
            return None

    def add_message(
        self, workspace: str, name: str, message: str, *, at: datetime | None = None
    ) -> ModelRecord:
        events: builtins.list[ModelEventRecord] = []

        def change(current: ModelRecord) -> ModelRecord:
            now = self.table.clock()
            events[:] = [ModelEventRecord(at=at or now, type="message", message=message)]
            return current.model_copy(update={"last_news_at": now})

        return self._write(workspace, name, change, events=events)

    def delete(self, workspace: str, name: str, *, allowed: Collection[ModelStatus]) -> ModelRecord:
        with self.table.lock:
            current = self.get(workspace, name)
            if current.status not in allowed:
                raise invalid_state(current, allowed)
            key = (workspace, name.lower())
            used = dataset_ids(current)
            if any(self._datasets.find(workspace, d) is None for d in used):
                # DynamoDB's transaction releasing a dataset that is gone never succeeds either.
                raise lost_race(f"fine-tuned model '{name}'")
            del self.table.models[key]
            self.table.events.pop((*key, current.uid), None)
            for dataset_id in used:
                self._datasets.count_user(workspace, dataset_id, -1)
            for purpose in TASK_PURPOSES:
                self.table.tokens.pop((workspace, name.lower(), purpose), None)
            return current


class MemoryTaskTokens:
    def __init__(self, table: MemoryTable) -> None:
        self.table = table

    def put(self, workspace: str, name: str, purpose: TaskPurpose, token: str, *, until: datetime) -> None:
        self.table.tokens[(workspace, name.lower(), purpose)] = (token, until)

    def get(self, workspace: str, name: str, purpose: TaskPurpose) -> str | None:
        found = self.table.tokens.get((workspace, name.lower(), purpose))
        if found is None or found[1] <= self.table.clock():
            return None
        return found[0]

    def delete(self, workspace: str, name: str, purpose: TaskPurpose) -> None:
        self.table.tokens.pop((workspace, name.lower(), purpose), None)
