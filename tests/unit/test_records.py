"""Records map to the API's models as the contract shows them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from tests.integration import factories
from tunelab.domain.providers import ParentModel
from tunelab.domain.records import (
    Artifacts,
    DeploymentState,
    Metrics,
    ModelRecord,
    ProviderRefs,
    TrainingState,
    new_dataset_id,
)
from tunelab.domain.status import ModelStatus
from tunelab.entrypoints.api.contracts import FineTunedModelOut, rfc3339
from tunelab.entrypoints.api.views import dataset_out, model_out


def test_model_record_to_the_contracts_fine_tuned_model() -> None:
    record = factories.model(
        status=ModelStatus.DEPLOYED,
        training=TrainingState(
            job_id="arn:aws:bedrock:us-east-1:123456789012:model-customization-job/abc",
            started_at=datetime(2026, 11, 28, 12, 0, 1, 250_000, tzinfo=UTC),
            metrics=Metrics(train_loss=1.23, step=120, epoch=2.0),
            data_uri="s3://bucket/ws-acme/support-bot-v1/train.jsonl",
        ),
        artifacts=Artifacts(
            uri="s3://bucket/out/", size_bytes=123, files=["adapter_model.safetensors"], merged=True
        ),
        deployment=DeploymentState(endpoint="support-bot-v1", deployed_at=factories.T0, hourly_usd=7.10),
    )

    out = model_out(record, now=factories.T0 + timedelta(hours=1, minutes=30)).model_dump(mode="json")

    assert FineTunedModelOut.model_validate(out)
    assert (out["status"], out["status_label"]) == ("deployed", "Deployed")
    assert out["base_model"] == {"id": record.base_model_id, "name": "Meta Llama 3.1 8B Instruct"}
    assert out["dataset"] == {"id": record.dataset.id, "name": "support-tickets", "rows": 200}
    assert out["validation"] == {"mode": "split", "percent": 10, "dataset": None}
    assert out["created_at"] == "2026-11-28T12:00:00Z"
    assert out["training"]["started_at"] == "2026-11-28T12:00:01.250Z"
    assert out["training"]["metrics"] == {"train_loss": 1.23, "eval_loss": None, "step": 120, "epoch": 2.0}
    assert out["cost"] == {
        "predicted": None,
        "storage_per_month_usd": 1.95,
        "actual": None,
        # Deployed: its running hours and cost so far, counted when read.
        "deployment": {
            "deployed_at": "2026-11-28T12:00:00Z",
            "undeployed_at": None,
            "hours": 1.5,
            "hourly_usd": 7.1,
            "cost_usd": 10.65,
        },
        "last_deployment": None,
        "deployments_total_usd": 0.0,
    }
    assert out["hyperparameters"]["epochs"] == 3
    # Internal locations stay internal.
    assert "s3://" not in str(out)
    assert out["deployment"]["endpoint"] == "support-bot-v1"


def test_dataset_record_to_the_contracts_dataset() -> None:
    out = dataset_out(factories.dataset()).model_dump(mode="json")
    assert out["created_by"] == {"email": "ada@example.com", "sub": None}
    assert out["status"] == "ready"
    assert out["errors"] == []
    assert out["error_count"] == 0
    assert "s3_key" not in out


def test_dataset_ids_sort_by_creation_time() -> None:
    earlier = new_dataset_id(datetime(2026, 1, 1, tzinfo=UTC))
    later = new_dataset_id(datetime(2026, 1, 1, 0, 0, 0, 1000, tzinfo=UTC))
    assert earlier < later
    assert len(earlier) == 29
    assert earlier.startswith("ds_")


def test_rfc3339_is_utc_with_z() -> None:
    paris = timezone(timedelta(hours=1))
    assert rfc3339(datetime(2026, 11, 28, 13, 0, tzinfo=paris)) == "2026-11-28T12:00:00Z"


def test_a_record_written_with_the_untyped_provider_data_reads_as_typed_references() -> None:
    # Items stored before `refs` kept the provider's references in a `provider_data` map.
    stored = factories.model().model_dump(mode="json", exclude={"refs"})
    stored["provider_data"] = {
        "training_job": {
            "provider": "bedrock",
            "job_id": "arn:job/1",
            "job_name": "bot-job",
            "output_uri": None,
        },
        "model_ref": "arn:aws:bedrock:us-east-1:123456789012:custom-model/x",
        "deployment": {
            "provider": "bedrock",
            "kind": "custom_model_deployment",
            "deployment_id": "arn:dep/1",
        },
        "last_event_at": "2026-11-28T12:05:00+00:00",
    }

    record = ModelRecord.model_validate(stored)

    assert record.refs.training_job is not None
    assert record.refs.training_job.job_name == "bot-job"
    assert record.refs.model_ref == "arn:aws:bedrock:us-east-1:123456789012:custom-model/x"
    assert record.refs.deployment is not None
    assert record.refs.deployment.kind == "custom_model_deployment"
    assert record.refs.last_event_at == datetime(2026, 11, 28, 12, 5, tzinfo=UTC)


def test_a_continued_model_reads_the_weights_where_its_provider_keeps_them() -> None:
    archive = Artifacts(uri="s3://artifacts/ws-acme/bot/output/")
    custom_model = "arn:aws:bedrock:us-east-1:123456789012:custom-model/x"
    trained: dict[str, Any] = {"status": ModelStatus.NOT_DEPLOYED, "artifacts": archive}

    # Bedrock keeps the weights: its custom model, never the output folder (which holds metrics only).
    bedrock = factories.model(provider="bedrock", **trained, refs=ProviderRefs(model_ref=custom_model))
    assert bedrock.weights() == ParentModel(model_ref=custom_model)
    assert factories.model(provider="bedrock", **trained).weights() is None
    # SageMaker and the local trainer leave an archive to start from.
    sagemaker = factories.model(provider="sagemaker", hosting="byok", **trained)
    assert sagemaker.weights() == ParentModel(artifacts_uri=archive.uri)
    # Nothing to continue from before training succeeded.
    assert factories.model(provider="sagemaker", hosting="byok", artifacts=archive).weights() is None
