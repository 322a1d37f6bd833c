"""The DynamoDB repository: every record of tunelab in ONE table, with optimistic locking.

Layout (`TABLE_DEFINITION` is the table; the CDK app and the tests create it from this data):

| item | pk | sk | other keys |
|---|---|---|---|
| workspace | `WS#<ws>` | `WORKSPACE` | |
| provider connection | `WS#<ws>` | `PROVIDER#<provider>` | |
| dataset | `WS#<ws>` | `DS#<dataset id>` | |
| dataset name lock | `WS#<ws>` | `DSNAME#<lower-case name>` | |
| fine-tuned model | `WS#<ws>` | `MODEL#<lower-case name>` | `job_key`, `endpoint_key`, `transient_status` |
| model event | `EVENTS#<ws>#<lower-case name>#<uid>` | `EV#<model version>#<n>` | |
| task token | `WS#<ws>` | `TASKTOKEN#<lower-case name>#<purpose>` | TTL `expires_at_epoch` |

Global secondary indexes (all sparse, keys only):

* `job-index` — `job_key` = `<provider>#<job id>`: a provider event finds its model.
* `endpoint-index` — `endpoint_key` = the endpoint (or deployment) name: the same for endpoint events.
* `transient-index` — `transient_status` (set only while training, stopping or deploying) and
  `last_news_at`: the reconciler's "in a transient status with no news since T".

Every key starts with the workspace, so one workspace never reads another's items: looking up
another workspace's model answers `NotFound`. Names are unique case-insensitively.

Writes: create-if-absent (`attribute_not_exists`, a clash is `NameTaken`); every change is a
read-modify-write conditioned on the `version` read, so a lost race is `Conflict` and never an
overwrite. Where the caller does not pin a version (event handlers), a lost race is retried on
the fresh record; the status condition of `transition` is checked again on every try.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from pydantic import BaseModel

from tunelab.domain.errors import (
    Conflict,
    InUse,
    InvalidState,
    NameTaken,
    NotFound,
    Throttled,
    ValidationFailed,
)
from tunelab.domain.identity import Plan
from tunelab.domain.records import (
    DatasetRecord,
    Metrics,
    ModelEventRecord,
    ModelRecord,
    ProviderConnectionRecord,
    WorkspaceRecord,
    utcnow,
)
from tunelab.domain.status import TRANSIENT, ModelStatus, can_transition

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

    from tunelab.composition.settings import Settings

# --- the table, as data ---------------------------------------------------------------------------

JOB_INDEX = "job-index"
ENDPOINT_INDEX = "endpoint-index"
TRANSIENT_INDEX = "transient-index"
TTL_ATTRIBUTE = "expires_at_epoch"

# Keyword arguments of `create_table` (add `TableName`); the CDK app builds the same table from it.
TABLE_DEFINITION: dict[str, Any] = {
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
        {"AttributeName": "job_key", "AttributeType": "S"},
        {"AttributeName": "endpoint_key", "AttributeType": "S"},
        {"AttributeName": "transient_status", "AttributeType": "S"},
        {"AttributeName": "last_news_at", "AttributeType": "S"},
    ],
    "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": JOB_INDEX,
            "KeySchema": [{"AttributeName": "job_key", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        },
        {
            "IndexName": ENDPOINT_INDEX,
            "KeySchema": [{"AttributeName": "endpoint_key", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        },
        {
            "IndexName": TRANSIENT_INDEX,
            "KeySchema": [
                {"AttributeName": "transient_status", "KeyType": "HASH"},
                {"AttributeName": "last_news_at", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        },
    ],
    "BillingMode": "PAY_PER_REQUEST",
}

# The Idempotency-Key table (Powertools' DynamoDBPersistenceLayer defaults: key `id`, TTL `expiration`).
IDEMPOTENCY_TTL_ATTRIBUTE = "expiration"
IDEMPOTENCY_TABLE_DEFINITION: dict[str, Any] = {
    "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
    "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
    "BillingMode": "PAY_PER_REQUEST",
}

TaskPurpose = Literal["training", "deployment", "undeployment"]
R = TypeVar("R", bound=BaseModel)

_MAX_ATTEMPTS = 4
_THROTTLING = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
}
_BAD_TOKEN = "This next_token was not returned by this list; start again without it."  # noqa: S105
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


@dataclass(frozen=True)
class RecordPage(Generic[R]):
    """One page of a list; `next_token` is opaque and None on the last page."""

    items: list[R]
    next_token: str | None


class _ConditionFailedError(Exception):
    """A condition of one write (or one item of a transaction) did not hold."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(reasons)
        self.reasons = reasons


# --- keys -------------------------------------------------------------------------------------


def _ws_pk(workspace: str) -> str:
    return f"WS#{workspace}"


def _name_key(name: str) -> str:
    return name.lower()


def _model_key(workspace: str, name: str) -> dict[str, str]:
    return {"pk": _ws_pk(workspace), "sk": f"MODEL#{_name_key(name)}"}


def _dataset_key(workspace: str, dataset_id: str) -> dict[str, str]:
    return {"pk": _ws_pk(workspace), "sk": f"DS#{dataset_id}"}


def _dataset_name_key(workspace: str, name: str) -> dict[str, str]:
    return {"pk": _ws_pk(workspace), "sk": f"DSNAME#{_name_key(name)}"}


def _workspace_key(workspace: str) -> dict[str, str]:
    return {"pk": _ws_pk(workspace), "sk": "WORKSPACE"}


def _provider_key(workspace: str, provider: str) -> dict[str, str]:
    return {"pk": _ws_pk(workspace), "sk": f"PROVIDER#{provider}"}


def _events_pk(workspace: str, name: str, uid: str) -> str:
    return f"EVENTS#{workspace}#{_name_key(name)}#{uid}"


def _task_token_key(workspace: str, name: str, purpose: str) -> dict[str, str]:
    return {"pk": _ws_pk(workspace), "sk": f"TASKTOKEN#{_name_key(name)}#{purpose}"}


def _job_key(provider: str, job_id: str) -> str:
    return f"{provider}#{job_id}"


def _record_key(record: BaseModel) -> dict[str, str]:
    if isinstance(record, ModelRecord):
        return _model_key(record.workspace_id, record.name)
    if isinstance(record, DatasetRecord):
        return _dataset_key(record.workspace_id, record.dataset_id)
    if isinstance(record, WorkspaceRecord):
        return _workspace_key(record.workspace_id)
    if isinstance(record, ProviderConnectionRecord):
        return _provider_key(record.workspace_id, record.provider)
    raise TypeError(f"not a stored record: {type(record).__name__}")


def _derived(record: BaseModel) -> dict[str, Any]:
    """Index attributes computed from a record (absent when empty: the indexes are sparse)."""
    if not isinstance(record, ModelRecord):
        return {}
    attributes: dict[str, Any] = {"kind": "model"}
    if record.training.job_id:
        attributes["job_key"] = _job_key(record.provider, record.training.job_id)
    if record.deployment and record.deployment.endpoint:
        attributes["endpoint_key"] = record.deployment.endpoint
    if record.status in TRANSIENT:
        attributes["transient_status"] = record.status.value
    return attributes


# --- values -----------------------------------------------------------------------------------


def _time(value: datetime) -> str:
    # One fixed width, so stored times sort as text (the transient index's range key).
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, Enum):
        return _to_dynamo(value.value)
    if isinstance(value, datetime):
        return _time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool) or value is None or isinstance(value, str | int | Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, BaseModel):
        return _to_dynamo(value.model_dump())
    if isinstance(value, Mapping):
        return {str(k): _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_to_dynamo(v) for v in value]
    raise TypeError(f"cannot store {type(value).__name__}")


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return (
            int(value)
            if value == value.to_integral_value() and value.as_tuple().exponent == 0
            else float(value)
        )
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_from_dynamo(v) for v in value]
    return value


def _serialize(plain: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in plain.items()}


def _deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _from_dynamo(_deserializer.deserialize(v)) for k, v in item.items()}


def _item(record: BaseModel) -> dict[str, Any]:
    """The DynamoDB item (attribute values) of a record: keys, derived index keys and its fields."""
    fields = {k: v for k, v in _to_dynamo(record.model_dump()).items() if v is not None}
    return _serialize({**fields, **_derived(record), **_record_key(record)})


def _record(cls: type[R], item: Mapping[str, Any]) -> R:
    return cls.model_validate(_deserialize(item))


def _values(**values: Any) -> dict[str, Any]:
    """ExpressionAttributeValues: `_values(v=3)` is `{":v": {"N": "3"}}`."""
    return _serialize({f":{k}": _to_dynamo(v) for k, v in values.items()})


# --- pagination tokens --------------------------------------------------------------------------


def _encode_token(kind: str, key: Mapping[str, Any]) -> str:
    plain = {"v": 1, "l": kind, "k": {"pk": key["pk"]["S"], "sk": key["sk"]["S"]}}
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_token(token: str | None, kind: str, pk: str, sk_prefix: str) -> dict[str, Any] | None:
    """The start key of a list page, from a token this list returned; else `ValidationFailed`.

    The token is checked against the list it is used on (same list, same workspace partition,
    same key prefix), so a token cannot read another workspace's items or another list.
    """
    if token is None or token == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        plain = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed.of("next_token", _BAD_TOKEN) from None
    if not (
        isinstance(plain, dict)
        and plain.get("v") == 1
        and plain.get("l") == kind
        and isinstance(plain.get("k"), dict)
        and plain["k"].get("pk") == pk
        and isinstance(plain["k"].get("sk"), str)
        and plain["k"]["sk"].startswith(sk_prefix)
        and set(plain["k"]) == {"pk", "sk"}
    ):
        raise ValidationFailed.of("next_token", _BAD_TOKEN)
    return {"pk": {"S": pk}, "sk": {"S": plain["k"]["sk"]}}


# --- the repository -----------------------------------------------------------------------------


class Repository:
    """Records of workspaces, provider connections, datasets, fine-tuned models, their events and
    Step Functions task tokens. Raises only the domain's errors (`tunelab.domain.errors`)."""

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.table_name = table_name
        self._client = client
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> Repository:
        return cls(settings.table_name)

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = boto3.client("dynamodb")
        return self._client

    # --- workspaces ---------------------------------------------------------------------------

    def find_workspace(self, workspace: str) -> WorkspaceRecord | None:
        return self._get(WorkspaceRecord, _workspace_key(workspace))

    def get_workspace(self, workspace: str) -> WorkspaceRecord:
        found = self.find_workspace(workspace)
        if found is None:
            raise NotFound(f"There is no workspace '{workspace}'.")
        return found

    def ensure_workspace(self, workspace: str, *, plan: Plan | None, default_plan: Plan) -> WorkspaceRecord:
        """The workspace's record, created on first sight. `plan` (the token's claim) wins when given:
        the record follows it; else a new workspace gets `default_plan` and an old one keeps its own."""
        current = self.find_workspace(workspace)
        if current is None:
            now = self._clock()
            record = WorkspaceRecord(
                workspace_id=workspace, plan=plan or default_plan, created_at=now, updated_at=now, version=1
            )
            try:
                self._put(record, condition="attribute_not_exists(pk)")
                return record
            except _ConditionFailedError:
                current = self.get_workspace(workspace)  # created by a concurrent first request
        if plan is not None and current.plan != plan:
            return self._mutate(
                WorkspaceRecord,
                _workspace_key(workspace),
                lambda w: _apply(w, {"plan": plan}),
                missing=lambda: NotFound(f"There is no workspace '{workspace}'."),
            )
        return current

    # --- provider connections -----------------------------------------------------------------

    def find_provider_connection(
        self, workspace: str, provider: str = "sagemaker"
    ) -> ProviderConnectionRecord | None:
        return self._get(ProviderConnectionRecord, _provider_key(workspace, provider))

    def put_provider_connection(self, record: ProviderConnectionRecord) -> ProviderConnectionRecord:
        """Create or replace the workspace's connection (the latest verification wins)."""
        for _ in range(_MAX_ATTEMPTS):
            current = self.find_provider_connection(record.workspace_id, record.provider)
            now = self._clock()
            new = _apply(
                record,
                {
                    "version": (current.version if current else 0) + 1,
                    "created_at": current.created_at if current else record.created_at,
                    "updated_at": now,
                },
            )
            try:
                self._put(new, **self._version_condition(current))
                return new
            except _ConditionFailedError:
                continue
        raise _lost_race("provider connection")

    def delete_provider_connection(self, workspace: str, provider: str = "sagemaker") -> bool:
        """Forget the connection; False when there was none."""
        response = self._call(
            self.client.delete_item,
            TableName=self.table_name,
            Key=_serialize(_provider_key(workspace, provider)),
            ReturnValues="ALL_OLD",
        )
        return bool(response.get("Attributes"))

    # --- datasets -----------------------------------------------------------------------------

    def create_dataset(self, record: DatasetRecord) -> DatasetRecord:
        """Store a new dataset; `NameTaken` when the workspace has one of that name (any case)."""
        record = _apply(record, {"version": 1, "model_refs": 0})
        lock = _serialize(
            {**_dataset_name_key(record.workspace_id, record.name), "dataset_id": record.dataset_id}
        )
        try:
            self._transact(
                [
                    {"Put": self._put_args(record, condition="attribute_not_exists(pk)")},
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": lock,
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except _ConditionFailedError as failed:
            if failed.reasons[1] == "ConditionalCheckFailed":
                raise NameTaken(
                    f"A dataset named '{record.name}' already exists in this workspace; choose another name.",
                ) from None
            raise Conflict(f"A dataset with id {record.dataset_id} already exists.") from None
        return record

    def find_dataset(self, workspace: str, dataset_id: str) -> DatasetRecord | None:
        return self._get(DatasetRecord, _dataset_key(workspace, dataset_id))

    def get_dataset(self, workspace: str, dataset_id: str) -> DatasetRecord:
        found = self.find_dataset(workspace, dataset_id)
        if found is None:
            raise _dataset_not_found(dataset_id)
        return found

    def list_datasets(
        self,
        workspace: str,
        *,
        limit: int = 50,
        next_token: str | None = None,
        status: Collection[str] | None = None,
    ) -> RecordPage[DatasetRecord]:
        """The workspace's datasets, oldest first (ids sort by creation time)."""
        return self._list(DatasetRecord, "datasets", _ws_pk(workspace), "DS#", limit, next_token, status)

    def update_dataset(
        self,
        workspace: str,
        dataset_id: str,
        changes: Mapping[str, Any],
        *,
        expected_version: int | None = None,
        expected_status: Collection[str] | None = None,
    ) -> DatasetRecord:
        """Apply `changes` (field → value) to the dataset. `expected_version`: fail with `Conflict` if
        it changed since the caller read it; `expected_status`: `InvalidState` unless it is in one of
        these statuses (checked again on every retry)."""
        _refuse(changes, {"workspace_id", "dataset_id", "name", "created_at", "version", "model_refs"})

        def mutate(current: DatasetRecord) -> DatasetRecord:
            if expected_status is not None and current.status not in expected_status:
                raise InvalidState(
                    f"Dataset {dataset_id} is {current.status}; this needs it to be "
                    f"{' or '.join(sorted(expected_status))}."
                )
            return _apply(current, changes)

        return self._mutate(
            DatasetRecord,
            _dataset_key(workspace, dataset_id),
            mutate,
            expected_version=expected_version,
            missing=lambda: _dataset_not_found(dataset_id),
        )

    def delete_dataset(self, workspace: str, dataset_id: str) -> None:
        """Delete the dataset's record (its S3 objects are the caller's); `InUse` naming the models
        that use it, `NotFound` when there is none."""
        current = self.get_dataset(workspace, dataset_id)
        try:
            self._transact(
                [
                    {
                        "Delete": {
                            "TableName": self.table_name,
                            "Key": _serialize(_dataset_key(workspace, dataset_id)),
                            "ConditionExpression": "attribute_exists(pk) AND "
                            "(attribute_not_exists(model_refs) OR model_refs = :zero)",
                            "ExpressionAttributeValues": _values(zero=0),
                        }
                    },
                    {
                        "Delete": {
                            "TableName": self.table_name,
                            "Key": _serialize(_dataset_name_key(workspace, current.name)),
                        }
                    },
                ]
            )
        except _ConditionFailedError:
            if self.find_dataset(workspace, dataset_id) is None:
                raise _dataset_not_found(dataset_id) from None
            users = sorted(m.name for m in self.models_using_dataset(workspace, dataset_id))
            shown = ", ".join(f"'{n}'" for n in users[:5]) + (" and others" if len(users) > 5 else "")
            raise InUse(
                f"Dataset {dataset_id} is used by the fine-tuned model{'s' if len(users) != 1 else ''} "
                f"{shown or '(being created)'}; delete {'them' if len(users) != 1 else 'it'} first."
            ) from None

    def models_using_dataset(self, workspace: str, dataset_id: str) -> list[ModelRecord]:
        """The workspace's fine-tuned models trained or validated on this dataset."""
        return [
            m
            for m in self._query_all(ModelRecord, _ws_pk(workspace), "MODEL#")
            if dataset_id in _dataset_ids(m)
        ]

    # --- fine-tuned models --------------------------------------------------------------------

    def create_model(self, record: ModelRecord, *, message: str | None = None) -> ModelRecord:
        """Store a new fine-tuned model with its first `status_changed` event, and count it as a user
        of its datasets, in one transaction. `NameTaken` when the workspace has a model of that name
        (any case); `ValidationFailed` (`dataset_id`) when a dataset is gone or not ready."""
        now = self._clock()
        record = _apply(record, {"version": 1, "last_news_at": now, "last_event_at": now, "updated_at": now})
        event = ModelEventRecord(at=now, type="status_changed", status=record.status, message=message)
        dataset_ids = sorted(_dataset_ids(record))
        items: list[TransactWriteItemTypeDef] = [
            {"Put": self._put_args(record, condition="attribute_not_exists(pk)")},
            {"Put": self._event_put_args(record, event)},
        ]
        items += [self._dataset_refs_update(record.workspace_id, d, +1) for d in dataset_ids]
        try:
            self._transact(items)
        except _ConditionFailedError as failed:
            if failed.reasons[0] == "ConditionalCheckFailed":
                raise NameTaken(
                    f"A fine-tuned model named '{record.name}' already exists in this workspace; "
                    "choose another name."
                ) from None
            for dataset_id, reason in zip(dataset_ids, failed.reasons[2:], strict=True):
                if reason == "ConditionalCheckFailed":
                    found = self.find_dataset(record.workspace_id, dataset_id)
                    state = "does not exist" if found is None else f"is {found.status}"
                    raise ValidationFailed.of(
                        "dataset_id",
                        f"Dataset {dataset_id} {state}; a fine-tuning job needs a ready dataset.",
                    ) from None
            raise
        return record

    def find_model(self, workspace: str, name: str) -> ModelRecord | None:
        return self._get(ModelRecord, _model_key(workspace, name))

    def get_model(self, workspace: str, name: str) -> ModelRecord:
        found = self.find_model(workspace, name)
        if found is None:
            raise _model_not_found(name)
        return found

    def list_models(
        self,
        workspace: str,
        *,
        limit: int = 50,
        next_token: str | None = None,
        status: Collection[ModelStatus | str] | None = None,
    ) -> RecordPage[ModelRecord]:
        """The workspace's fine-tuned models by name, optionally only those in `status`."""
        statuses = None if status is None else {ModelStatus(s).value for s in status}
        return self._list(ModelRecord, "models", _ws_pk(workspace), "MODEL#", limit, next_token, statuses)

    def update_model(
        self,
        workspace: str,
        name: str,
        changes: Mapping[str, Any],
        *,
        expected_version: int | None = None,
        expected_status: Collection[ModelStatus | str] | None = None,
    ) -> ModelRecord:
        """Apply `changes` (field → value; nested records as records or dicts) without a status change.
        `expected_version` pins the version the caller read (`Conflict` if it moved);
        `expected_status` refuses with `InvalidState` unless the status is one of these."""
        _refuse(changes, _MODEL_FIXED | {"status"})
        allowed = None if expected_status is None else {ModelStatus(s) for s in expected_status}

        def mutate(current: ModelRecord) -> ModelRecord:
            if allowed is not None and current.status not in allowed:
                raise _invalid_state(current, allowed)
            return _apply(current, changes)

        return self._mutate(
            ModelRecord,
            _model_key(workspace, name),
            mutate,
            expected_version=expected_version,
            missing=lambda: _model_not_found(name),
        )

    def transition(
        self,
        workspace: str,
        name: str,
        expected_from: Collection[ModelStatus | str],
        to: ModelStatus | str,
        changes: Mapping[str, Any] | None = None,
        *,
        message: str | None = None,
        expected_version: int | None = None,
    ) -> ModelRecord:
        """Move the model to `to` if its status is one of `expected_from`, applying `changes` and
        appending a `status_changed` event, atomically. `InvalidState` (naming the current status)
        when it is in another status; `NotFound`; `Conflict` when `expected_version` moved.

        Every `expected_from` → `to` must be an edge of `tunelab.domain.status.TRANSITIONS`.
        """
        target = ModelStatus(to)
        sources = {ModelStatus(s) for s in expected_from}
        for source in sources:
            if not can_transition(source, target):
                raise ValueError(
                    f"{source.value} -> {target.value} is not a transition of tunelab.domain.status"
                )
        _refuse(changes or {}, _MODEL_FIXED)
        events: list[ModelEventRecord] = []

        def mutate(current: ModelRecord) -> ModelRecord:
            if current.status not in sources:
                raise _invalid_state(current, sources)
            now = self._clock()
            events[:] = [ModelEventRecord(at=now, type="status_changed", status=target, message=message)]
            return _apply(current, {**(changes or {}), "status": target, "last_news_at": now})

        return self._mutate(
            ModelRecord,
            _model_key(workspace, name),
            mutate,
            expected_version=expected_version,
            missing=lambda: _model_not_found(name),
            events=events,
        )

    def try_transition(
        self,
        workspace: str,
        name: str,
        expected_from: Collection[ModelStatus | str],
        to: ModelStatus | str,
        changes: Mapping[str, Any] | None = None,
        *,
        message: str | None = None,
    ) -> ModelRecord | None:
        """`transition`, or None when the model is not in `expected_from` (a duplicate or late event):
        what event handlers use to apply provider events idempotently."""
        try:
            return self.transition(workspace, name, expected_from, to, changes, message=message)
        except InvalidState:
            return None

    def record_metrics(
        self, workspace: str, name: str, metrics: Metrics, *, at: datetime | None = None
    ) -> ModelRecord | None:
        """Keep the latest training metrics on the model and append a `metrics` event; ignored (None)
        unless the model is training or stopping (late metrics never overwrite the final ones)."""
        events: list[ModelEventRecord] = []

        def mutate(current: ModelRecord) -> ModelRecord:
            if current.status not in {ModelStatus.TRAINING, ModelStatus.STOPPING_TRAINING}:
                raise InvalidState("not training")
            when = at or self._clock()
            events[:] = [ModelEventRecord(at=when, type="metrics", metrics=metrics)]
            training = current.training.model_copy(update={"metrics": metrics})
            return _apply(current, {"training": training, "last_news_at": self._clock()})

        try:
            return self._mutate(
                ModelRecord,
                _model_key(workspace, name),
                mutate,
                missing=lambda: _model_not_found(name),
                events=events,
            )
        except InvalidState:
            return None

    def add_message(
        self, workspace: str, name: str, message: str, *, at: datetime | None = None
    ) -> ModelRecord:
        """Append a `message` event (e.g. the provider's progress note) and count it as news."""
        events: list[ModelEventRecord] = []

        def mutate(current: ModelRecord) -> ModelRecord:
            events[:] = [ModelEventRecord(at=at or self._clock(), type="message", message=message)]
            return _apply(current, {"last_news_at": self._clock()})

        return self._mutate(
            ModelRecord,
            _model_key(workspace, name),
            mutate,
            missing=lambda: _model_not_found(name),
            events=events,
        )

    def delete_model(
        self, workspace: str, name: str, *, allowed: Collection[ModelStatus | str]
    ) -> ModelRecord:
        """Delete the model if its status is one of `allowed` (`InvalidState` naming the status if not),
        release its datasets, then remove its events and task tokens. Returns what was deleted."""
        sources = {ModelStatus(s) for s in allowed}
        for _ in range(_MAX_ATTEMPTS):
            current = self.get_model(workspace, name)
            if current.status not in sources:
                raise _invalid_state(current, sources)
            items: list[TransactWriteItemTypeDef] = [
                {
                    "Delete": {
                        "TableName": self.table_name,
                        "Key": _serialize(_model_key(workspace, name)),
                        "ConditionExpression": "version = :v",
                        "ExpressionAttributeValues": _values(v=current.version),
                    }
                }
            ]
            items += [self._dataset_refs_update(workspace, d, -1) for d in sorted(_dataset_ids(current))]
            try:
                self._transact(items)
            except _ConditionFailedError:
                continue
            self._delete_partition(_events_pk(workspace, name, current.uid))
            for purpose in ("training", "deployment", "undeployment"):
                self.delete_task_token(workspace, name, purpose)
            return current
        raise _lost_race(f"fine-tuned model '{name}'")

    def find_model_by_job(self, provider: str, job_id: str) -> ModelRecord | None:
        """The model whose `training.job_id` is `job_id` at `provider` (any workspace)."""
        return self._find_by_index(JOB_INDEX, "job_key", _job_key(provider, job_id))

    def find_model_by_endpoint(self, endpoint: str) -> ModelRecord | None:
        """The model whose `deployment.endpoint` is `endpoint` (any workspace)."""
        return self._find_by_index(ENDPOINT_INDEX, "endpoint_key", endpoint)

    def stale_models(
        self,
        no_news_since: datetime,
        *,
        statuses: Collection[ModelStatus | str] = TRANSIENT,
        limit: int = 100,
    ) -> list[ModelRecord]:
        """Models (any workspace) in a transient status with no news since `no_news_since`, least
        recently heard of first: the reconciler asks their providers what became of them."""
        found: list[ModelRecord] = []
        for status in sorted(ModelStatus(s).value for s in statuses):
            if ModelStatus(status) not in TRANSIENT:
                raise ValueError(f"{status} is not a transient status; only those are indexed")
            for key in self._query_keys(
                IndexName=TRANSIENT_INDEX,
                KeyConditionExpression="transient_status = :s AND last_news_at < :t",
                ExpressionAttributeValues=_values(s=status, t=_time(no_news_since)),
            ):
                record = self._get(ModelRecord, key)
                if (
                    record is not None
                    and record.status.value == status
                    and record.last_news_at < no_news_since
                ):
                    found.append(record)
        found.sort(key=lambda m: m.last_news_at)
        return found[:limit]

    # --- events -------------------------------------------------------------------------------

    def list_events(
        self, workspace: str, name: str, *, limit: int = 50, next_token: str | None = None
    ) -> RecordPage[ModelEventRecord]:
        """The model's events, oldest first."""
        model = self.get_model(workspace, name)
        return self._list(
            ModelEventRecord, "events", _events_pk(workspace, name, model.uid), "EV#", limit, next_token, None
        )

    # --- task tokens --------------------------------------------------------------------------

    def put_task_token(
        self, workspace: str, name: str, purpose: TaskPurpose, token: str, *, ttl: timedelta
    ) -> None:
        """Keep the Step Functions task token a workflow waits on, until `ttl` from now."""
        expires = self._clock() + ttl
        item = {
            **_task_token_key(workspace, name, purpose),
            "kind": "task_token",
            "token": token,
            TTL_ATTRIBUTE: int(expires.timestamp()),
        }
        self._call(self.client.put_item, TableName=self.table_name, Item=_serialize(item))

    def get_task_token(self, workspace: str, name: str, purpose: TaskPurpose) -> str | None:
        """The waiting task token, or None when there is none or it expired."""
        response = self._call(
            self.client.get_item,
            TableName=self.table_name,
            Key=_serialize(_task_token_key(workspace, name, purpose)),
            ConsistentRead=True,
        )
        item = response.get("Item")
        if not item:
            return None
        plain = _deserialize(item)
        # DynamoDB deletes expired items lazily (within days): an expired token is treated as gone.
        if int(plain.get(TTL_ATTRIBUTE, 0)) <= self._clock().timestamp():
            return None
        token = plain.get("token")
        return token if isinstance(token, str) else None

    def delete_task_token(self, workspace: str, name: str, purpose: str) -> None:
        self._call(
            self.client.delete_item,
            TableName=self.table_name,
            Key=_serialize(_task_token_key(workspace, name, purpose)),
        )

    # --- internals ----------------------------------------------------------------------------

    def _call(self, operation: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return operation(**kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise _ConditionFailedError(["ConditionalCheckFailed"]) from error
            if code == "TransactionCanceledException":
                reasons = [r.get("Code", "None") for r in error.response.get("CancellationReasons", [])]
                if "ConditionalCheckFailed" in reasons:
                    raise _ConditionFailedError(reasons) from error
                if "TransactionConflict" in reasons:
                    raise Conflict(
                        "Another request changed the same records at the same time; try again."
                    ) from error
                if {"ThrottlingError", "ProvisionedThroughputExceeded"} & set(reasons):
                    raise Throttled("The service is busy; try again in a few seconds.") from error
            if code in _THROTTLING:
                raise Throttled("The service is busy; try again in a few seconds.") from error
            raise

    def _get(self, cls: type[R], key: Mapping[str, str]) -> R | None:
        response = self._call(
            self.client.get_item, TableName=self.table_name, Key=_serialize(key), ConsistentRead=True
        )
        item = response.get("Item")
        return _record(cls, item) if item else None

    def _put_args(self, record: BaseModel, *, condition: str | None = None, **extra: Any) -> Any:
        args: dict[str, Any] = {"TableName": self.table_name, "Item": _item(record), **extra}
        if condition:
            args["ConditionExpression"] = condition
        return args

    def _put(self, record: BaseModel, *, condition: str | None = None, **extra: Any) -> None:
        self._call(self.client.put_item, **self._put_args(record, condition=condition, **extra))

    def _event_put_args(self, model: ModelRecord, event: ModelEventRecord, index: int = 0) -> Any:
        # Every event is written with a write of its model, so the model's new version orders the
        # events as they happened, whatever the writers' clocks say.
        pk = _events_pk(model.workspace_id, model.name, model.uid)
        sk = f"EV#{model.version:012d}#{index:02d}"
        fields = {k: v for k, v in _to_dynamo(event.model_dump()).items() if v is not None}
        return {
            "TableName": self.table_name,
            "Item": _serialize({**fields, "pk": pk, "sk": sk, "kind": "event"}),
            "ConditionExpression": "attribute_not_exists(pk)",
        }

    def _dataset_refs_update(self, workspace: str, dataset_id: str, delta: int) -> TransactWriteItemTypeDef:
        # Adding a user needs a ready dataset; releasing one needs only that it still exists.
        condition = "attribute_exists(pk)" + (" AND #status = :ready" if delta > 0 else "")
        values = _values(delta=delta, one=1, **({"ready": "ready"} if delta > 0 else {}))
        update: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": _serialize(_dataset_key(workspace, dataset_id)),
            "UpdateExpression": "ADD model_refs :delta, version :one",
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        if delta > 0:
            update["ExpressionAttributeNames"] = {"#status": "status"}
        return {"Update": update}  # type: ignore[typeddict-item]

    @staticmethod
    def _version_condition(current: BaseModel | None) -> dict[str, Any]:
        if current is None:
            return {"condition": "attribute_not_exists(pk)"}
        return {
            "condition": "version = :v",
            "ExpressionAttributeValues": _values(v=getattr(current, "version")),  # noqa: B009
        }

    def _transact(self, items: list[TransactWriteItemTypeDef]) -> None:
        self._call(self.client.transact_write_items, TransactItems=items)

    def _mutate(
        self,
        cls: type[R],
        key: Mapping[str, str],
        mutate: Callable[[R], R],
        *,
        missing: Callable[[], Exception],
        expected_version: int | None = None,
        events: list[ModelEventRecord] | None = None,
    ) -> R:
        """Read, change, write back conditioned on the version read; retried on a lost race unless
        the caller pinned `expected_version`. `events` (filled by `mutate`) are written with it."""
        for _ in range(_MAX_ATTEMPTS):
            current = self._get(cls, key)
            if current is None:
                raise missing()
            version = int(getattr(current, "version"))  # noqa: B009
            if expected_version is not None and version != expected_version:
                raise _changed(current)
            new = _apply(mutate(current), {"version": version + 1, "updated_at": self._clock()})
            if events and isinstance(current, ModelRecord):
                events[:] = _in_order(events, current.last_event_at)
                new = _apply(new, {"last_event_at": events[-1].at})
            put = self._put_args(new, **self._version_condition(current))
            try:
                if events and isinstance(new, ModelRecord):
                    items: list[TransactWriteItemTypeDef] = [{"Put": put}]
                    items += [{"Put": self._event_put_args(new, e, i)} for i, e in enumerate(events)]
                    self._transact(items)
                else:
                    self._call(self.client.put_item, **put)
                return new
            except _ConditionFailedError:
                if expected_version is not None:
                    raise _changed(current) from None
        raise _lost_race(_describe(key))

    def _list(  # noqa: PLR0917
        self,
        cls: type[R],
        kind: str,
        pk: str,
        sk_prefix: str,
        limit: int,
        next_token: str | None,
        status: Collection[str] | None,
    ) -> RecordPage[R]:
        if not 1 <= limit <= 100:
            raise ValidationFailed.of("limit", "limit must be between 1 and 100.")
        start = _decode_token(next_token, kind, pk, sk_prefix)
        wanted = limit + 1  # one more than asked tells whether there is a next page
        raw: list[dict[str, Any]] = []
        query: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": _values(pk=pk, prefix=sk_prefix),
            "ConsistentRead": True,
        }
        if status is not None:
            query["FilterExpression"] = "#status IN (" + ", ".join(f":s{i}" for i in range(len(status))) + ")"
            query["ExpressionAttributeNames"] = {"#status": "status"}
            query["ExpressionAttributeValues"].update(_values(**{f"s{i}": s for i, s in enumerate(status)}))
        while len(raw) < wanted:
            page_args = {**query, "Limit": wanted - len(raw) if status is None else 100}
            if start:
                page_args["ExclusiveStartKey"] = start
            response = self._call(self.client.query, **page_args)
            raw.extend(response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start:
                break
        page, more = raw[:limit], len(raw) > limit
        token = _encode_token(kind, page[-1]) if more and page else None
        return RecordPage(items=[_record(cls, item) for item in page], next_token=token)

    def _query_all(self, cls: type[R], pk: str, sk_prefix: str) -> Iterator[R]:
        start: dict[str, Any] | None = None
        while True:
            args: dict[str, Any] = {
                "TableName": self.table_name,
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
                "ExpressionAttributeValues": _values(pk=pk, prefix=sk_prefix),
                "ConsistentRead": True,
            }
            if start:
                args["ExclusiveStartKey"] = start
            response = self._call(self.client.query, **args)
            for item in response.get("Items", []):
                yield _record(cls, item)
            start = response.get("LastEvaluatedKey")
            if not start:
                return

    def _query_keys(self, **query: Any) -> Iterator[dict[str, str]]:
        start: dict[str, Any] | None = None
        while True:
            args = {"TableName": self.table_name, **query}
            if start:
                args["ExclusiveStartKey"] = start
            response = self._call(self.client.query, **args)
            for item in response.get("Items", []):
                yield {"pk": item["pk"]["S"], "sk": item["sk"]["S"]}
            start = response.get("LastEvaluatedKey")
            if not start:
                return

    def _find_by_index(self, index: str, attribute: str, value: str) -> ModelRecord | None:
        records = [
            record
            for key in self._query_keys(
                IndexName=index,
                KeyConditionExpression=f"{attribute} = :v",
                ExpressionAttributeValues=_values(v=value),
            )
            if (record := self._get(ModelRecord, key)) is not None
        ]
        # The index is eventually consistent: confirm on the item itself.
        records = [r for r in records if _derived(r).get(attribute) == value]
        return max(records, key=lambda r: r.created_at) if records else None

    def _delete_partition(self, pk: str) -> None:
        keys = list(
            self._query_keys(KeyConditionExpression="pk = :pk", ExpressionAttributeValues=_values(pk=pk))
        )
        for i in range(0, len(keys), 25):
            requests: list[Any] = [{"DeleteRequest": {"Key": _serialize(k)}} for k in keys[i : i + 25]]
            pending: Any = {self.table_name: requests}
            for _ in range(_MAX_ATTEMPTS):
                response = self._call(self.client.batch_write_item, RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}
                if not pending:
                    break


# --- helpers --------------------------------------------------------------------------------

_MODEL_FIXED = frozenset(
    {"workspace_id", "name", "uid", "created_at", "version", "provider", "hosting", "dataset", "validation"}
)


def _refuse(changes: Mapping[str, Any], fixed: Collection[str]) -> None:
    wrong = sorted(set(changes) & set(fixed))
    if wrong:
        raise ValueError(f"these fields cannot be changed this way: {', '.join(wrong)}")


def _apply(record: R, changes: Mapping[str, Any]) -> R:
    """A validated copy of `record` with `changes` (field → value) applied."""
    unknown = sorted(set(changes) - set(type(record).model_fields))
    if unknown:
        raise ValueError(f"{type(record).__name__} has no fields {', '.join(unknown)}")
    data = dict(record)
    data.update(changes)
    return type(record).model_validate(data)


def _in_order(events: list[ModelEventRecord], floor: datetime | None) -> list[ModelEventRecord]:
    """`events` with no time before `floor` (the newest time already in the history) or before the
    one ahead of it: a provider's whole-second stamp for something learned after an event stamped
    to the millisecond is shown at that event's time, never before it."""
    ordered: list[ModelEventRecord] = []
    for event in events:
        kept = event if floor is None or event.at >= floor else event.model_copy(update={"at": floor})
        ordered.append(kept)
        floor = kept.at
    return ordered


def _dataset_ids(model: ModelRecord) -> set[str]:
    ids = {model.dataset.id}
    if model.validation.dataset is not None:
        ids.add(model.validation.dataset.id)
    return ids


def _invalid_state(current: ModelRecord, needed: Collection[ModelStatus]) -> InvalidState:
    labels = " or ".join(s.label for s in ModelStatus if s in needed)
    return InvalidState(
        f"Fine-tuned model '{current.name}' is {current.status.label}; this needs it to be {labels}."
    )


def _model_not_found(name: str) -> NotFound:
    return NotFound(f"There is no fine-tuned model '{name}' in this workspace.")


def _dataset_not_found(dataset_id: str) -> NotFound:
    return NotFound(f"There is no dataset {dataset_id} in this workspace.")


def _changed(current: BaseModel) -> Conflict:
    return Conflict(f"The {_what(current)} changed since it was read; read it again and retry.")


def _lost_race(what: str) -> Conflict:
    return Conflict(f"The {what} kept changing while this request was applied; try again.")


def _what(record: BaseModel) -> str:
    if isinstance(record, ModelRecord):
        return f"fine-tuned model '{record.name}'"
    if isinstance(record, DatasetRecord):
        return f"dataset {record.dataset_id}"
    if isinstance(record, WorkspaceRecord):
        return "workspace"
    return "provider connection"


def _describe(key: Mapping[str, str]) -> str:
    sk = key["sk"]
    if sk.startswith("MODEL#"):
        return f"fine-tuned model '{sk.removeprefix('MODEL#')}'"
    if sk.startswith("DS#"):
        return f"dataset {sk.removeprefix('DS#')}"
    return "record"
