"""tunelab's domain events, published on its own EventBridge bus so customers can automate on them.

Every event has one envelope: `source` "tunelab", the event's name as `detail-type`, and a detail
of `{"name", "version", "id", "correlation_id", "time", "workspace", "data"}`. A rule on the bus
matches e.g. `{"source": ["tunelab"], "detail-type": ["Fine-tuned Model Status Changed"],
"detail": {"workspace": ["ws-acme"], "data": {"status": ["not_deployed"]}}}`.

`id` is deterministic for a status change (the model's life, the status and the time of the
change), so a task retried after publishing sends the same id again and consumers can drop the
duplicate. `correlation_id` is the request's (API Gateway's request id), the workflow's, or the
provider event's id that caused the change. The bus adapter (`adapters.eventbridge`) publishes them.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tunelab.domain.records import DatasetRecord, ModelRecord
from tunelab.domain.status import ModelStatus

SOURCE: Final = "tunelab"
MODEL_STATUS_CHANGED: Final = "Fine-tuned Model Status Changed"
MODEL_DELETED: Final = "Fine-tuned Model Deleted"
DATASET_VALIDATED: Final = "Dataset Validated"
ENVELOPE_VERSION: Final = "1"


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


def model_deleted(
    record: ModelRecord, *, at: datetime, by: str, correlation_id: str | None = None
) -> DomainEvent:
    """ "Fine-tuned Model Deleted": the model, its provider resources and its history are gone; the
    name is free again. `model_uid` tells this life of the name from a later one."""
    return DomainEvent(
        name=MODEL_DELETED,
        id=_event_id(record.workspace_id, record.name, record.uid, "deleted"),
        correlation_id=correlation_id,
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
