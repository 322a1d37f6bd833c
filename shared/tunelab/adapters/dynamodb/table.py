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

Models and datasets also hold the list index's keys (`list_pk`, `list_sk`) and `name_lower`.

Global secondary indexes (all sparse; keys only but the list index):

* `job-index` — `job_key` = `<provider>#<job id>`: a provider event finds its model.
* `endpoint-index` — `endpoint_key` = `<provider>#<endpoint or deployment>`: the same for endpoint events.
* `transient-index` — `transient_status` (set only while training, stopping or deploying, or to
  `pending_email` while a resting model still owes its creator an email) and `last_news_at`: the
  reconciler's "in a transient status with no news since T" and "emails owed"; BYOK connections are
  there too (`connection_check`, by their last check): "connections not checked since T".
* `list-index` (projects every attribute) — each list's second order, in the workspace's own
  partition of the index: `list_pk` = `MODELS#<ws>` with `list_sk` = `<created at>#<lower-case
  name>` (models by creation time), and `list_pk` = `DATASETS#<ws>` with `list_sk` = `<lower-case
  name>` (datasets by name). The table's own keys give the first order: models by name, datasets by
  id (ids sort by creation time). One index for both, as CloudFormation adds one index per update.
  Both kinds also hold `name_lower`, which a name-prefix filter reads. Items written before this
  index get its keys at their next write, or from `tunelab-admin lists backfill`.

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
from dataclasses import dataclass, field
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
LIST_INDEX = "list-index"
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
        {"AttributeName": "list_pk", "AttributeType": "S"},
        {"AttributeName": "list_sk", "AttributeType": "S"},
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
        {
            # Every attribute, so a page's filters and its items come from the index in one query.
            "IndexName": LIST_INDEX,
            "KeySchema": [
                {"AttributeName": "list_pk", "KeyType": "HASH"},
                {"AttributeName": "list_sk", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
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


def models_list_pk(workspace: str) -> str:
    return f"MODELS#{workspace}"


def datasets_list_pk(workspace: str) -> str:
    return f"DATASETS#{workspace}"


def model_list_sk(created_at: datetime, name: str = "") -> str:
    """The list index's range key of a model: creation time, then name (times have one width)."""
    return f"{stored_time(created_at)}#{name_key(name)}"


def derived(record: BaseModel) -> dict[str, Any]:
    """Index attributes computed from a record (absent when empty: the indexes are sparse)."""
    if isinstance(record, ProviderConnectionRecord):
        # The reconciler's "connections not checked since T": a re-check asked for sorts first.
        due = EPOCH if record.recheck_requested_at is not None else record.last_checked_at
        return {"transient_status": CONNECTION_CHECK, "last_news_at": stored_time(due)}
    if isinstance(record, DatasetRecord):
        return {
            "list_pk": datasets_list_pk(record.workspace_id),
            "list_sk": name_key(record.name),
            "name_lower": name_key(record.name),
        }
    if not isinstance(record, ModelRecord):
        return {}
    attributes: dict[str, Any] = {
        "kind": "model",
        "list_pk": models_list_pk(record.workspace_id),
        "list_sk": model_list_sk(record.created_at, record.name),
        "name_lower": name_key(record.name),
    }
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


# --- lists: what to read, and pagination tokens -----------------------------------------------


@dataclass(frozen=True)
class ListSpec:
    """One list query over a workspace's items: its partition of the table (or of the list index),
    the key condition, the filter and the order. `kind` names the list (and its order) in tokens;
    `sk_prefix` is what every item of the list has in `sk`."""

    kind: str
    pk: str
    sk_prefix: str
    # None: the table, whose `sk` begins with `key_prefix` (default `sk_prefix`).
    index_pk: str | None = None
    key_prefix: str | None = None
    # On the list index: a condition on `list_sk` (e.g. `list_sk >= :after`), if any.
    range_condition: str | None = None
    filters: tuple[str, ...] = ()
    names: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, Any] = field(default_factory=dict)
    forward: bool = True

    def query(self, table_name: str) -> dict[str, Any]:
        if self.index_pk is None:
            condition = "pk = :pk AND begins_with(sk, :prefix)"
            plain: dict[str, Any] = {"pk": self.pk, "prefix": self.key_prefix or self.sk_prefix}
            query: dict[str, Any] = {"ConsistentRead": True}
        else:
            condition = "list_pk = :list_pk"
            if self.range_condition:
                condition += f" AND {self.range_condition}"
            plain = {"list_pk": self.index_pk}
            query = {"IndexName": LIST_INDEX}  # a global index reads eventually consistently
        query.update(
            TableName=table_name,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values(**plain, **self.values),
            ScanIndexForward=self.forward,
        )
        if self.filters:
            query["FilterExpression"] = " AND ".join(f"({f})" for f in self.filters)
        if self.names:
            query["ExpressionAttributeNames"] = dict(self.names)
        return query


class Expressions:
    """The parts of a key condition or filter, with their attribute names (`#status`) and values
    (`:f0`, `:f1`, ...), for a `ListSpec`."""

    def __init__(self) -> None:
        self.filters: list[str] = []
        self.names: dict[str, str] = {}
        self.plain: dict[str, Any] = {}

    def path(self, dotted: str) -> str:
        """`created_by.email` as `#created_by.#email` (any name may be a reserved word)."""
        aliases = []
        for part in dotted.split("."):
            self.names[f"#{part}"] = part
            aliases.append(f"#{part}")
        return ".".join(aliases)

    def value(self, value: Any) -> str:
        name = f"f{len(self.plain)}"
        self.plain[name] = value
        return f":{name}"

    def where(self, expression: str) -> None:
        self.filters.append(expression)

    def equals(self, dotted: str, value: Any) -> None:
        self.where(f"{self.path(dotted)} = {self.value(value)}")

    def one_of(self, dotted: str, options: Collection[Any]) -> None:
        listed = ", ".join(self.value(o) for o in sorted(options))
        self.where(f"{self.path(dotted)} IN ({listed})")

    def spec(self, kind: str, pk: str, sk_prefix: str, **extra: Any) -> ListSpec:
        return ListSpec(
            kind=kind,
            pk=pk,
            sk_prefix=sk_prefix,
            filters=tuple(self.filters),
            names=self.names,
            values=self.plain,
            **extra,
        )


def created_between(e: Expressions, after: datetime | None, before: datetime | None) -> None:
    """Filter on `created_at` (stored with one width, so text order is time order)."""
    if after is not None:
        e.where(f"{e.path('created_at')} >= {e.value(stored_time(after))}")
    if before is not None:
        e.where(f"{e.path('created_at')} < {e.value(stored_time(before))}")


def name_begins(e: Expressions, prefix: str | None) -> None:
    if prefix:
        e.where(f"begins_with({e.path('name_lower')}, {e.value(prefix)})")


def encode_token(kind: str, key: Mapping[str, Any], *, indexed: bool = False, forward: bool = True) -> str:
    """The token of the page that ends at `key` (an item; `indexed`: read from the list index), in the
    order the list was read (`forward`: ascending)."""
    plain: dict[str, Any] = {
        "v": 1,
        "l": kind,
        "o": "asc" if forward else "desc",
        "k": {"pk": key["pk"]["S"], "sk": key["sk"]["S"]},
    }
    if indexed:
        plain["i"] = key["list_sk"]["S"]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(
    token: str | None,
    kind: str,
    pk: str,
    sk_prefix: str,
    index_pk: str | None = None,
    *,
    forward: bool = True,
) -> dict[str, Any] | None:
    """The start key of a list page, from a token this list returned; else `ValidationFailed`.

    The token is checked against the list it is used on (same list and order, same workspace
    partition, same key prefix), so a token cannot read another workspace's items or another list,
    nor go on in the other direction from where a page ended. (Tokens made before they said their
    order have no `o`, and are taken in the order asked for.)
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
        and (index_pk is None) == ("i" not in plain)
        and (index_pk is None or isinstance(plain["i"], str))
        and plain.get("o", "asc" if forward else "desc") == ("asc" if forward else "desc")
    ):
        raise bad_page_token()
    start = {"pk": {"S": pk}, "sk": {"S": plain["k"]["sk"]}}
    if index_pk is not None:
        start.update(list_pk={"S": index_pk}, list_sk={"S": plain["i"]})
    return start


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

    def list(self, cls: type[R], spec: ListSpec, limit: int, next_token: str | None) -> RecordPage[R]:
        """A page of `spec`'s items: read on until the page is full or the list ends, so a filtered
        page never comes back short while more matches exist; the token follows the page's last item."""
        if not 1 <= limit <= 100:
            raise ValidationFailed.of("limit", "limit must be between 1 and 100.")
        start = decode_token(
            next_token, spec.kind, spec.pk, spec.sk_prefix, spec.index_pk, forward=spec.forward
        )
        wanted = limit + 1  # one more than asked tells whether there is a next page
        raw: list[dict[str, Any]] = []
        query = spec.query(self.table_name)
        while len(raw) < wanted:
            # Filtered, a read of N items may keep none: read a full batch each time.
            page_args = {**query, "Limit": 100 if spec.filters else wanted - len(raw)}
            if start:
                page_args["ExclusiveStartKey"] = start
            response = self.call(self.client.query, **page_args)
            raw.extend(response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start:
                break
        page, more = raw[:limit], len(raw) > limit
        indexed = spec.index_pk is not None
        token = (
            encode_token(spec.kind, page[-1], indexed=indexed, forward=spec.forward)
            if more and page
            else None
        )
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

    def backfill_list_keys(self) -> int:
        """Give the items written before an index existed the keys `derived` makes now: models and
        datasets their list-index keys, BYOK connections their place among the connections the
        reconciler re-checks. The count given. A one-off for an operator (it scans the whole table); an
        item changed meanwhile is skipped, as its new write holds them."""
        given = 0
        start: dict[str, Any] | None = None
        while True:
            args: dict[str, Any] = {
                "TableName": self.table_name,
                "FilterExpression": "(attribute_not_exists(list_pk) AND "
                "(begins_with(sk, :model) OR begins_with(sk, :dataset))) OR "
                "(begins_with(sk, :provider) AND attribute_not_exists(transient_status))",
                "ExpressionAttributeValues": values(model="MODEL#", dataset="DS#", provider="PROVIDER#"),
            }
            if start:
                args["ExclusiveStartKey"] = start
            response = self.call(self.client.scan, **args)
            for item in response.get("Items", []):
                sk = item["sk"]["S"]
                cls: type[BaseModel] = (
                    ModelRecord
                    if sk.startswith("MODEL#")
                    else DatasetRecord
                    if sk.startswith("DS#")
                    else ProviderConnectionRecord
                )
                record = record_of(cls, item)
                missing = "transient_status" if cls is ProviderConnectionRecord else "list_pk"
                wanted = (
                    {"transient_status", "last_news_at"}
                    if cls is ProviderConnectionRecord
                    else {"list_pk", "list_sk", "name_lower"}
                )
                keys = {k: v for k, v in derived(record).items() if k in wanted}
                try:
                    self.call(
                        self.client.update_item,
                        TableName=self.table_name,
                        Key={"pk": item["pk"], "sk": item["sk"]},
                        UpdateExpression="SET " + ", ".join(f"{k} = :{k}" for k in keys),
                        ConditionExpression=f"attribute_not_exists({missing}) AND version = :version",
                        ExpressionAttributeValues=values(**keys, version=getattr(record, "version")),  # noqa: B009
                    )
                    given += 1
                except ConditionFailed:
                    continue
            start = response.get("LastEvaluatedKey")
            if not start:
                return given

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
