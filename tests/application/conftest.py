"""The fast tier: the use cases on in-memory fakes of every port (`tests.fakes`), no AWS, no moto.

Each test builds what it needs with the helpers below and drives one use case the way its entry point
(a route, a workflow task, a message handler) would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes import FakeContext
from tunelab.application import datasets, fine_tuned_models
from tunelab.application.commands import CreateFineTunedModelIn
from tunelab.domain.identity import Identity
from tunelab.domain.records import DatasetRecord, ModelRecord

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "shared" / "tunelab" / "sample_data"
TRAINING_CSV = (SAMPLE_DATA / "support-triage.csv").read_bytes()
VALIDATION_CSV = (SAMPLE_DATA / "support-triage-validation.csv").read_bytes()
ADA = Identity(sub="sub-ada", email="ada@example.com", workspace="ws-acme")
BEDROCK_MODEL = "amazon.nova-micro-v1:0:128k"
SAGEMAKER_MODEL = "sagemaker.qwen2-5-7b-instruct"


@pytest.fixture
def ctx() -> FakeContext:
    context = FakeContext()
    context.workspaces.set_plan(ADA.workspace, "subscription", default_plan="pay_as_you_go")
    return context


def ready_dataset(ctx: FakeContext, name: str = "tickets", data: bytes = TRAINING_CSV) -> DatasetRecord:
    dataset = datasets.create_from_csv(ctx, ADA, name, data)
    assert dataset.status == "ready", dataset.errors
    return dataset


def create_request(dataset: DatasetRecord, **fields: object) -> CreateFineTunedModelIn:
    body: dict[str, object] = {
        "name": "support-bot",
        "base_model_id": BEDROCK_MODEL,
        "dataset_id": dataset.dataset_id,
        "validation": {"mode": "split", "percent": 10},
        "hyperparameters": {"epochs": 2},
        "acknowledge": True,
    }
    body.update(fields)
    return CreateFineTunedModelIn.model_validate(body)


def created_model(ctx: FakeContext, **fields: object) -> ModelRecord:
    """A model created through the use case (status `training`, its workflow started)."""
    dataset = ready_dataset(ctx, name=f"data-{len(ctx.table.datasets)}")
    return fine_tuned_models.create(ctx, ADA, create_request(dataset, **fields), correlation_id="req-create")


def workflow_input(model: ModelRecord, correlation_id: str, **more: object) -> dict[str, object]:
    """What a workflow execution of `model` carries into each task (the fields every task event has)."""
    return {
        "workspace_id": model.workspace_id,
        "model_name": model.name,
        "uid": model.uid,
        "correlation_id": correlation_id,
        "table_key": {"pk": f"WS#{model.workspace_id}", "sk": f"MODEL#{model.name.lower()}"},
        **more,
    }
