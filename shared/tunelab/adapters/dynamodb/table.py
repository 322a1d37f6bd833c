"""The one DynamoDB table every record of tunelab lives in: its definition, its key layout, how records
are written as items, and the read-modify-write every store shares.

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
| BYOK role claim | `ROLE#<lower-case role ARN>` | `ROLE` | `workspace_id` |
| request count | `BUDGET#<ws>` | `<window start, epoch seconds>` | TTL `expires_at_epoch` |

Global secondary indexes (all sparse, keys only):

* `job-index` — `job_key` = `<provider>#<job id>`: a provider event finds its model.
* `endpoint-index` — `endpoint_key` = `<provider>#<endpoint or deployment>`: the same for endpoint events.
* `transient-index` — `transient_status` (set only while training, stopping or deploying, or to
  `pending_email` while a resting model still owes its creator an email) and `last_news_at`: the
  reconciler's "in a transient status with no news since T" and "emails owed"; BYOK connections are
  there too (`connection_check`, by their last check): "connections not checked since T".

Every key starts with the workspace, so one workspace never reads another's items: looking up
another workspace's model answers `NotFound`. The exceptions: a role claim, which exists to say
"this role is another workspace's" (one customer role belongs to one workspace), and request
counts, keyed by workspace too. Names are unique case-insensitively.

Writes: create-if-absent (`attribute_not_exists`, a clash is `NameTaken`); every change is a
read-modify-write conditioned on the `version` read, so a lost race is `Conflict` and never an
overwrite. Where the caller does not pin a version (event handlers), a lost race is retried on the
fresh record; the status condition is checked again on every try. Every store raises only the
domain's errors.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from pydantic import BaseModel

from tunelab.domain.errors import Conflict, Throttled, ValidationFailed
from tunelab.domain.records import (
    DatasetRecord,
    ModelEventRecord,
    ModelRecord,
    ProviderConnectionRecord,
    RecordPage,
    WorkspaceRecord,
    bad_page_token,
    changed_since_read,
    lost_race,
    utcnow,
    with_history,
    written,
)
from tunelab.domain.status import TRANSIENT

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

# --- the table, as data ---------------------------------------------------------------------------

JOB_INDEX = "job-index"
ENDPOINT_INDEX = "endpoint-index"
TRANSIENT_INDEX = "transient-index"
# The transient index's key for a resting model that still owes its creator an email.
PENDING_EMAIL = "pending_email"
# The transient index's key for BYOK connections, by their last check (`ConnectionStore.due_for_check`).
CONNECTION_CHECK = "connection_check"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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

R = TypeVar("R", bound=BaseModel)

MAX_ATTEMPTS = 4
_THROTTLING = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
}
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class ConditionFailed(Exception):  # noqa: N818  # a condition of a write, not an error to show
    """A condition of one write (or one item of a transaction) did not hold."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(reasons)
        self.reasons = reasons


# --- keys -------------------------------------------------------------------------------------


def ws_pk(workspace: str) -> str:
    return f"WS#{workspace}"


def name_key(name: str) -> str:
    return name.lower()


def model_key(workspace: str, name: str) -> dict[str, str]:
    """The key of a fine-tuned model's item (the workflows' last-resort update writes it too)."""
    return {"pk": ws_pk(workspace), "sk": f"MODEL#{name_key(name)}"}


def dataset_key(workspace: str, dataset_id: str) -> dict[str, str]:
    return {"pk": ws_pk(workspace), "sk": f"DS#{dataset_id}"}


def dataset_name_key(workspace: str, name: str) -> dict[str, str]:
    return {"pk": ws_pk(workspace), "sk": f"DSNAME#{name_key(name)}"}


def workspace_key(workspace: str) -> dict[str, str]:
    return {"pk": ws_pk(workspace), "sk": "WORKSPACE"}


def provider_key(workspace: str, provider: str) -> dict[str, str]:
    return {"pk": ws_pk(workspace), "sk": f"PROVIDER#{provider}"}


def role_claim_key(role_arn: str) -> dict[str, str]:
    """The item saying which workspace's connection holds a customer's role (ARNs compare as IAM
    does: role names are case-insensitive)."""
    return {"pk": f"ROLE#{role_arn.lower()}", "sk": "ROLE"}


def budget_key(workspace: str, window_start: int) -> dict[str, str]:
    return {"pk": f"BUDGET#{workspace}", "sk": str(window_start)}


def events_pk(workspace: str, name: str, uid: str) -> str:
    return f"EVENTS#{workspace}#{name_key(name)}#{uid}"


def task_token_key(workspace: str, name: str, purpose: str) -> dict[str, str]:
    return {"pk": ws_pk(workspace), "sk": f"TASKTOKEN#{name_key(name)}#{purpose}"}


def provider_id_key(provider: str, provider_id: str) -> str:
    """An index key for a provider's id (a job, an endpoint): ids repeat across providers."""
    return f"{provider}#{provider_id}"


def record_key(record: BaseModel) -> dict[str, str]:
    if isinstance(record, ModelRecord):
        return model_key(record.workspace_id, record.name)
    if isinstance(record, DatasetRecord):
        return dataset_key(record.workspace_id, record.dataset_id)
    if isinstance(record, WorkspaceRecord):
        return workspace_key(record.workspace_id)
    if isinstance(record, ProviderConnectionRecord):
        return provider_key(record.workspace_id, record.provider)
    raise TypeError(f"not a stored record: {type(record).__name__}")


def derived(record: BaseModel) -> dict[str, Any]:
    """Index attributes computed from a record (absent when empty: the indexes are sparse)."""
    if isinstance(record, ProviderConnectionRecord):
        # The reconciler's "connections not checked since T": a re-check asked for sorts first.
        due = EPOCH if record.recheck_requested_at is not None else record.last_checked_at
        return {"transient_status": CONNECTION_CHECK, "last_news_at": stored_time(due)}
    if not isinstance(record, ModelRecord):
        return {}
    attributes: dict[str, Any] = {"kind": "model"}
    if record.training.job_id:
        attributes["job_key"] = provider_id_key(record.provider, record.training.job_id)
    if record.deployment and record.deployment.endpoint:
        attributes["endpoint_key"] = provider_id_key(record.provider, record.deployment.endpoint)
    if record.status in TRANSIENT:
        attributes["transient_status"] = record.status.value
    elif record.pending_email is not None:
        attributes["transient_status"] = PENDING_EMAIL
    return attributes


# --- values -----------------------------------------------------------------------------------


def stored_time(value: datetime) -> str:
    # One fixed width, so stored times sort as text (the transient index's range key).
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_dynamo(value: Any) -> Any:
    if isinstance(value, Enum):
        return to_dynamo(value.value)
    if isinstance(value, datetime):
        return stored_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool) or value is None or isinstance(value, str | int | Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, BaseModel):
        return to_dynamo(value.model_dump())
    if isinstance(value, Mapping):
        return {str(k): to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_dynamo(v) for v in value]
    raise TypeError(f"cannot store {type(value).__name__}")


def from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return (
            int(value)
            if value == value.to_integral_value() and value.as_tuple().exponent == 0
            else float(value)
        )
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [from_dynamo(v) for v in value]
    return value


def serialize(plain: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in plain.items()}


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: from_dynamo(_deserializer.deserialize(v)) for k, v in item.items()}


def item_of(record: BaseModel) -> dict[str, Any]:
    """The DynamoDB item (attribute values) of a record: keys, derived index keys and its fields."""
    fields = {k: v for k, v in to_dynamo(record.model_dump()).items() if v is not None}
    return serialize({**fields, **derived(record), **record_key(record)})


def record_of(cls: type[R], item: Mapping[str, Any]) -> R:
    return cls.model_validate(deserialize(item))


def values(**named: Any) -> dict[str, Any]:
    """ExpressionAttributeValues: `values(v=3)` is `{":v": {"N": "3"}}`."""
    return serialize({f":{k}": to_dynamo(v) for k, v in named.items()})


# --- pagination tokens --------------------------------------------------------------------------


def encode_token(kind: str, key: Mapping[str, Any]) -> str:
    plain = {"v": 1, "l": kind, "k": {"pk": key["pk"]["S"], "sk": key["sk"]["S"]}}
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str | None, kind: str, pk: str, sk_prefix: str) -> dict[str, Any] | None:
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
        raise bad_page_token() from None
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
        raise bad_page_token()
    return {"pk": {"S": pk}, "sk": {"S": plain["k"]["sk"]}}


# --- the table every store shares ---------------------------------------------------------------


class RecordsTable:
    """The records table and the reads and writes every store shares (one per process: clients and
    the table are shared by the stores the composition root makes)."""

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient | None = None,
        *,
        client_factory: Callable[[], DynamoDBClient] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """`client`, or `client_factory` to make it on first use (a cold start that never reads the
        table makes none)."""
        if (client is None) == (client_factory is None):
            raise ValueError("give exactly one of client and client_factory")
        self.table_name = table_name
        self._client = client
        self._client_factory = client_factory
        self.clock = clock

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            assert self._client_factory is not None
            self._client = self._client_factory()
        return self._client

    def call(self, operation: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return operation(**kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise ConditionFailed(["ConditionalCheckFailed"]) from error
            if code == "TransactionCanceledException":
                reasons = [r.get("Code", "None") for r in error.response.get("CancellationReasons", [])]
                if "ConditionalCheckFailed" in reasons:
                    raise ConditionFailed(reasons) from error
                if "TransactionConflict" in reasons:
                    raise Conflict(
                        "Another request changed the same records at the same time; try again."
                    ) from error
                if {"ThrottlingError", "ProvisionedThroughputExceeded"} & set(reasons):
                    raise Throttled("The service is busy; try again in a few seconds.") from error
            if code in _THROTTLING:
                raise Throttled("The service is busy; try again in a few seconds.") from error
            raise

    def get(self, cls: type[R], key: Mapping[str, str]) -> R | None:
        response = self.call(
            self.client.get_item, TableName=self.table_name, Key=serialize(key), ConsistentRead=True
        )
        item = response.get("Item")
        return record_of(cls, item) if item else None

    def put_args(self, record: BaseModel, *, condition: str | None = None, **extra: Any) -> Any:
        args: dict[str, Any] = {"TableName": self.table_name, "Item": item_of(record), **extra}
        if condition:
            args["ConditionExpression"] = condition
        return args

    def put(self, record: BaseModel, *, condition: str | None = None, **extra: Any) -> None:
        self.call(self.client.put_item, **self.put_args(record, condition=condition, **extra))

    def delete_item(self, key: Mapping[str, str], **extra: Any) -> Any:
        return self.call(self.client.delete_item, TableName=self.table_name, Key=serialize(key), **extra)

    def transact(self, items: list[TransactWriteItemTypeDef]) -> None:
        self.call(self.client.transact_write_items, TransactItems=items)

    def event_put_args(self, model: ModelRecord, event: ModelEventRecord, index: int = 0) -> Any:
        # Every event is written with a write of its model, so the model's new version orders the
        # events as they happened, whatever the writers' clocks say.
        pk = events_pk(model.workspace_id, model.name, model.uid)
        sk = f"EV#{model.version:012d}#{index:02d}"
        fields = {k: v for k, v in to_dynamo(event.model_dump()).items() if v is not None}
        return {
            "TableName": self.table_name,
            "Item": serialize({**fields, "pk": pk, "sk": sk, "kind": "event"}),
            "ConditionExpression": "attribute_not_exists(pk)",
        }

    @staticmethod
    def version_condition(current: BaseModel | None) -> dict[str, Any]:
        if current is None:
            return {"condition": "attribute_not_exists(pk)"}
        return {
            "condition": "version = :v",
            "ExpressionAttributeValues": values(v=getattr(current, "version")),  # noqa: B009  # every record has one
        }

    def mutate(
        self,
        cls: type[R],
        key: Mapping[str, str],
        change: Callable[[R], R],
        *,
        missing: Callable[[], Exception],
        describe: Callable[[R], str],
        expected_version: int | None = None,
        events: list[ModelEventRecord] | None = None,
    ) -> R:
        """Read, change, write back conditioned on the version read; retried on a lost race unless the
        caller pinned `expected_version`. `events` (filled by `change`) are written with it, in order
        after the model's history."""
        for _ in range(MAX_ATTEMPTS):
            current = self.get(cls, key)
            if current is None:
                raise missing()
            if expected_version is not None and int(getattr(current, "version")) != expected_version:  # noqa: B009
                raise changed_since_read(describe(current))
            new = written(change(current), current, now=self.clock())
            if events and isinstance(new, ModelRecord):
                new, events[:] = with_history(new, events)  # type: ignore[assignment]
            put = self.put_args(new, **self.version_condition(current))
            try:
                if events and isinstance(new, ModelRecord):
                    items: list[TransactWriteItemTypeDef] = [{"Put": put}]
                    items += [{"Put": self.event_put_args(new, e, i)} for i, e in enumerate(events)]
                    self.transact(items)
                else:
                    self.call(self.client.put_item, **put)
                return new
            except ConditionFailed:
                if expected_version is not None:
                    raise changed_since_read(describe(current)) from None
        raise lost_race(describe_key(key))

    def list(  # noqa: PLR0917
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
        start = decode_token(next_token, kind, pk, sk_prefix)
        wanted = limit + 1  # one more than asked tells whether there is a next page
        raw: list[dict[str, Any]] = []
        query: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": values(pk=pk, prefix=sk_prefix),
            "ConsistentRead": True,
        }
        if status is not None:
            query["FilterExpression"] = "#status IN (" + ", ".join(f":s{i}" for i in range(len(status))) + ")"
            query["ExpressionAttributeNames"] = {"#status": "status"}
            query["ExpressionAttributeValues"].update(values(**{f"s{i}": s for i, s in enumerate(status)}))
        while len(raw) < wanted:
            page_args = {**query, "Limit": wanted - len(raw) if status is None else 100}
            if start:
                page_args["ExclusiveStartKey"] = start
            response = self.call(self.client.query, **page_args)
            raw.extend(response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start:
                break
        page, more = raw[:limit], len(raw) > limit
        token = encode_token(kind, page[-1]) if more and page else None
        return RecordPage(items=[record_of(cls, item) for item in page], next_token=token)

    def query_all(self, cls: type[R], pk: str, sk_prefix: str) -> Iterator[R]:
        start: dict[str, Any] | None = None
        while True:
            args: dict[str, Any] = {
                "TableName": self.table_name,
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
                "ExpressionAttributeValues": values(pk=pk, prefix=sk_prefix),
                "ConsistentRead": True,
            }
            if start:
                args["ExclusiveStartKey"] = start
            response = self.call(self.client.query, **args)
            for item in response.get("Items", []):
                yield record_of(cls, item)
            start = response.get("LastEvaluatedKey")
            if not start:
                return

    def query_keys(self, **query: Any) -> Iterator[dict[str, str]]:
        start: dict[str, Any] | None = None
        while True:
            args = {"TableName": self.table_name, **query}
            if start:
                args["ExclusiveStartKey"] = start
            response = self.call(self.client.query, **args)
            for item in response.get("Items", []):
                yield {"pk": item["pk"]["S"], "sk": item["sk"]["S"]}
            start = response.get("LastEvaluatedKey")
            if not start:
                return

    def find_by_index(
        self, index: str, attribute: str, value: str, *, written_before_as: str | None = None
    ) -> ModelRecord | None:
        """The newest model whose `attribute` is `value`. `written_before_as` is the value an item
        written by an earlier release holds instead (found when nothing holds `value`; the item
        gets `value` the next time it is written)."""
        records = self._indexed(index, attribute, value)
        if not records and written_before_as is not None:
            records = self._indexed(index, attribute, written_before_as)
        # The index is eventually consistent: confirm on the item itself.
        records = [r for r in records if derived(r).get(attribute) == value]
        return max(records, key=lambda r: r.created_at) if records else None

    def _indexed(self, index: str, attribute: str, value: str) -> builtins.list[ModelRecord]:
        return [
            record
            for key in self.query_keys(
                IndexName=index,
                KeyConditionExpression=f"{attribute} = :v",
                ExpressionAttributeValues=values(v=value),
            )
            if (record := self.get(ModelRecord, key)) is not None
        ]

    def delete_partition(self, pk: str) -> None:
        keys = list(
            self.query_keys(KeyConditionExpression="pk = :pk", ExpressionAttributeValues=values(pk=pk))
        )
        for i in range(0, len(keys), 25):
            requests: list[Any] = [{"DeleteRequest": {"Key": serialize(k)}} for k in keys[i : i + 25]]
            pending: Any = {self.table_name: requests}
            for _ in range(MAX_ATTEMPTS):
                response = self.call(self.client.batch_write_item, RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}
                if not pending:
                    break


def describe_key(key: Mapping[str, str]) -> str:
    sk = key["sk"]
    if sk.startswith("MODEL#"):
        return f"fine-tuned model '{sk.removeprefix('MODEL#')}'"
    if sk.startswith("DS#"):
        return f"dataset {sk.removeprefix('DS#')}"
    if sk == "WORKSPACE":
        return "workspace"
    if sk.startswith("PROVIDER#"):
        return "provider connection"
    return "record"
