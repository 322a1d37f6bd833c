"""Records for tests, with sensible defaults; override any field by keyword."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tunelab.domain.records import (
    Creator,
    DatasetRecord,
    DatasetRef,
    ModelRecord,
    ProviderConnectionRecord,
    ValidationChoice,
    new_dataset_id,
)
from tunelab.domain.status import ModelStatus

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
ADA = Creator(email="ada@example.com", sub="7d8ca528-4931-4254-9273-ea5ee853f271")


def dataset(workspace: str = "ws-acme", name: str = "support-tickets", **fields: Any) -> DatasetRecord:
    values: dict[str, Any] = {
        "workspace_id": workspace,
        "dataset_id": new_dataset_id(),
        "name": name,
        "status": "ready",
        "created_at": T0,
        "updated_at": T0,
        "created_by": ADA,
        "s3_key": f"{workspace}/datasets/{name}.csv",
        "size_bytes": 12_345,
        "rows": 200,
    }
    values.update(fields)
    return DatasetRecord(**values)


def model(
    workspace: str = "ws-acme",
    name: str = "support-bot-v1",
    dataset_id: str = "ds_00000000000000000000000000",
    **fields: Any,
) -> ModelRecord:
    values: dict[str, Any] = {
        "workspace_id": workspace,
        "name": name,
        "status": ModelStatus.TRAINING,
        "provider": "bedrock",
        "hosting": "managed",
        "base_model_id": "meta.llama3-1-8b-instruct-v1:0:128k",
        "base_model_name": "Meta Llama 3.1 8B Instruct",
        "dataset": DatasetRef(id=dataset_id, name="support-tickets", rows=200),
        "validation": ValidationChoice(mode="split", percent=10),
        "hyperparameters": {"epochs": 3, "learning_rate": 0.0001, "batch_size": 1},
        "storage_per_month_usd": 1.95,
        "created_by": ADA,
        "created_at": T0,
        "updated_at": T0,
        "last_news_at": T0,
    }
    values.update(fields)
    return ModelRecord(**values)


def connection(workspace: str = "ws-acme", **fields: Any) -> ProviderConnectionRecord:
    values: dict[str, Any] = {
        "workspace_id": workspace,
        "role_arn": "arn:aws:iam::210987654321:role/tunelab-connector",
        "external_id": "ext-1234567890",
        "region": "us-west-2",
        "artifact_bucket": "customer-artifacts",
        "status": "connected",
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return ProviderConnectionRecord(**values)
