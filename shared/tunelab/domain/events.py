"""tunelab's domain events, published on its own EventBridge bus so customers can automate on them.

Every event has one envelope: `source` "tunelab", the event's name as `detail-type`, and a detail
of `{"name", "version", "id", "correlation_id", "time", "workspace", "data"}`. A rule on the bus
matches e.g. `{"source": ["tunelab"], "detail-type": ["Fine-tuned Model Status Changed"],
"detail": {"workspace": ["ws-acme"], "data": {"status": ["not_deployed"]}}}`.

`id` is deterministic for a status change (the model's life, the status and the time of the
change), so a task retried after publishing sends the same id again and consumers can drop the
duplicate. PutEvents answers per entry: failed entries are retried a bounded number of times,
then `ProviderTransientError` is raised (the workflow's Retry runs the task again).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tunelab.adapters.aws_errors import aws_call
from tunelab.domain.providers import ProviderTransientError
from tunelab.domain.records import DatasetRecord, ModelRecord
from tunelab.domain.status import ModelStatus

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

SOURCE: Final = "tunelab"
MODEL_STATUS_CHANGED: Final = "Fine-tuned Model Status Changed"
MODEL_DELETED: Final = "Fine-tuned Model Deleted"
DATASET_VALIDATED: Final = "Dataset Validated"
ENVELOPE_VERSION: Final = "1"

# PutEvents takes at most 10 entries per call.
_BATCH = 10
DEFAULT_ATTEMPTS = 3


class DomainEvent(BaseModel):
    """One domain event: the envelope's fields and the event's own `data`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str = ENVELOPE_VERSION
    id: str
    correlation_id: str | None = None
    time: AwareDatetime
    workspace: str
    data: dict[str, Any] = Field(default_factory=dict)

    def detail(self) -> dict[str, Any]:
        """The EventBridge detail (the whole envelope), with times as RFC 3339 strings."""
        detail: dict[str, Any] = json.loads(self.model_dump_json())
        detail["time"] = _rfc3339(self.time)
        return detail


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _event_id(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def model_status_changed(
    record: ModelRecord,
    *,
    previous_status: ModelStatus | str | None = None,
    reason: str | None = None,
    correlation_id: str | None = None,
    at: datetime | None = None,
) -> DomainEvent:
    """ "Fine-tuned Model Status Changed" for the record's current status."""
    when = at or record.updated_at
    status = ModelStatus(record.status)
    data: dict[str, Any] = {
        "model_name": record.name,
        "model_uid": record.uid,
        "status": status.value,
        "status_label": status.label,
        "previous_status": ModelStatus(previous_status).value if previous_status else None,
        "reason": reason,
        "provider": record.provider,
        "base_model_id": record.base_model_id,
    }
    if status == ModelStatus.DEPLOYED and record.deployment is not None:
        data["endpoint"] = record.deployment.endpoint
        data["auto_undeploy_at"] = (
            _rfc3339(record.deployment.auto_undeploy_at) if record.deployment.auto_undeploy_at else None
        )
    return DomainEvent(
        name=MODEL_STATUS_CHANGED,
        id=_event_id(record.workspace_id, record.name, record.uid, status.value, _rfc3339(when)),
        correlation_id=correlation_id,
        time=when,
        workspace=record.workspace_id,
        data=data,
    )


def model_deleted(record: ModelRecord, *, at: datetime, by: str) -> DomainEvent:
    """ "Fine-tuned Model Deleted": the model, its provider resources and its history are gone; the
    name is free again. `model_uid` tells this life of the name from a later one."""
    return DomainEvent(
        name=MODEL_DELETED,
        id=_event_id(record.workspace_id, record.name, record.uid, "deleted"),
        time=at,
        workspace=record.workspace_id,
        data={
            "model_name": record.name,
            "model_uid": record.uid,
            "last_status": ModelStatus(record.status).value,
            "provider": record.provider,
            "base_model_id": record.base_model_id,
            "deleted_by": by,
        },
    )


def dataset_validated(dataset: DatasetRecord, *, correlation_id: str | None = None) -> DomainEvent:
    """ "Dataset Validated": the dataset is `ready` or `invalid`, with its row and error counts."""
    return DomainEvent(
        name=DATASET_VALIDATED,
        id=_event_id(dataset.workspace_id, dataset.dataset_id, dataset.status, _rfc3339(dataset.updated_at)),
        correlation_id=correlation_id,
        time=dataset.updated_at,
        workspace=dataset.workspace_id,
        data={
            "dataset_id": dataset.dataset_id,
            "dataset_name": dataset.name,
            "status": dataset.status,
            "rows": dataset.rows,
            "size_bytes": dataset.size_bytes,
            "error_count": dataset.error_count,
            "warning_count": len(dataset.warnings),
        },
    )


class EventPublisher:
    """Puts domain events on tunelab's bus; failed entries are retried, then raised as transient."""

    def __init__(
        self,
        client: EventBridgeClient,
        bus_name: str,
        *,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff_s: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.bus_name = bus_name
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self._sleep = sleep

    def entry(self, event: DomainEvent) -> PutEventsRequestEntryTypeDef:
        return {
            "Source": SOURCE,
            "DetailType": event.name,
            "Detail": json.dumps(event.detail(), separators=(",", ":")),
            "EventBusName": self.bus_name,
            "Time": event.time,
        }

    def publish(self, *events: DomainEvent) -> None:
        """Publish `events`; `ProviderTransientError` naming the first failure if some never land."""
        for start in range(0, len(events), _BATCH):
            self._put([self.entry(e) for e in events[start : start + _BATCH]])

    def _put(self, entries: Sequence[PutEventsRequestEntryTypeDef]) -> None:
        pending = list(entries)
        failure: Mapping[str, Any] = {}
        for attempt in range(self.attempts):
            if attempt:
                self._sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                with aws_call("Publishing tunelab's events", permission="events:PutEvents"):
                    answer = self.client.put_events(Entries=pending)
            except ProviderTransientError:
                if attempt == self.attempts - 1:
                    raise
                continue
            if not answer.get("FailedEntryCount"):
                return
            # Entries answer in request order; the failed ones carry an ErrorCode.
            results = answer.get("Entries", [])
            retry = [
                entry for entry, result in zip(pending, results, strict=False) if result.get("ErrorCode")
            ]
            failure = next((r for r in results if r.get("ErrorCode")), {})
            pending = retry or pending
        raise ProviderTransientError(
            f"{len(pending)} of tunelab's events could not be published on {self.bus_name} "
            f"({failure.get('ErrorCode')}: {failure.get('ErrorMessage')}); try again shortly."
        )
