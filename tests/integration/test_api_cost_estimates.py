"""`POST /v1/cost-estimates` under moto: the body of a create, checked the same way, nothing started."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.integration.api_support import (
    OTHER_WS,
    WS,
    Api,
    api_fixture,  # noqa: F401  # the `api` fixture
)
from tunelab.composition.settings import reset_settings
from tunelab.composition.wiring import Services, set_services
from tunelab.domain.catalog import load_catalog
from tunelab.domain.costs import usd
from tunelab.domain.datasets import SplitPlan
from tunelab.domain.records import ProviderConnectionRecord

pytestmark = pytest.mark.moto

NOVA = "amazon.nova-micro-v1:0:128k"


def _connect(api: Api) -> None:
    now = datetime.now(UTC)
    api.repo.connections.put(
        ProviderConnectionRecord(
            workspace_id=WS,
            role_arn="arn:aws:iam::111122223333:role/tunelab-connector",
            external_id="ext-1234567890",
            region="us-west-2",
            artifact_bucket="acme-tunelab-artifacts",
            status="connected",
            created_at=now,
            updated_at=now,
        )
    )
    # what the services made from an earlier connection must not outlive it
    api.services.providers.forget("sagemaker", WS)


def test_a_bedrock_estimate_prices_the_trained_tokens_and_stores_nothing(api: Api) -> None:
    dataset_id = api.dataset()
    dataset = api.repo.datasets.get(WS, dataset_id)
    body = {"base_model_id": NOVA, "dataset_id": dataset_id, "validation": {"mode": "split", "percent": 10}}

    answer = api.call("POST", "/v1/cost-estimates", {**body, "hyperparameters": {"epochs": 3}})

    assert answer.status == 200, answer.body
    estimate = answer.body
    assert dataset.stats is not None
    assert dataset.rows is not None
    tokens = dataset.stats.prompt_tokens + dataset.stats.completion_tokens
    training_rows = dataset.rows - SplitPlan(dataset.rows, 10).validation_rows()
    spec = load_catalog().model(NOVA)
    assert estimate["currency"] == "USD"
    assert estimate["training"]["tokens_per_epoch"] == round(tokens * training_rows / dataset.rows)
    assert estimate["training"]["epochs"] == 3
    assert estimate["training"]["trained_tokens"] == 3 * estimate["training"]["tokens_per_epoch"]
    expected = estimate["training"]["trained_tokens"] / 1000 * spec.pricing.training_per_1k_tokens_usd
    assert estimate["training"]["cost_usd"] == usd(expected)
    assert (
        estimate["training"]["low_usd"]
        <= estimate["training"]["cost_usd"]
        <= estimate["training"]["high_usd"]
    )
    assert estimate["training"]["hours"] is None
    assert estimate["total_usd"] == usd(estimate["training"]["cost_usd"] + estimate["storage_per_month_usd"])
    assert any("estimated" in note for note in estimate["notes"])
    # nothing was created, and the dataset is not in use
    assert api.call("GET", "/v1/fine-tuned-models").body["items"] == []
    assert api.repo.datasets.get(WS, dataset_id).model_refs == 0


def test_more_epochs_cost_more(api: Api) -> None:
    dataset_id = api.dataset()
    costs = [
        api.call(
            "POST",
            "/v1/cost-estimates",
            {"base_model_id": NOVA, "dataset_id": dataset_id, "hyperparameters": {"epochs": epochs}},
        ).body["training"]["cost_usd"]
        for epochs in (1, 4)
    ]
    assert costs[1] > costs[0]


def test_a_sagemaker_estimate_predicts_hours_and_warns_about_resources(api: Api) -> None:
    dataset_id = api.dataset()
    _connect(api)
    body = {
        "base_model_id": "sagemaker.qwen2-5-32b-instruct",
        "dataset_id": dataset_id,
        "resources": {"instance_type": "ml.g6e.xlarge", "instance_count": 1, "volume_size_gb": 200},
        "hyperparameters": {"epochs": 1},
    }

    answer = api.call("POST", "/v1/cost-estimates", body)

    assert answer.status == 200, answer.body
    training = answer.body["training"]
    assert training["hours"] > 0
    assert training["cost_usd"] > 0
    # a 32B model fully fine-tuned on one 48 GB GPU: the advice says it does not fit
    assert any("may run out of memory" in note for note in answer.body["notes"]), answer.body["notes"]


def test_an_estimate_is_checked_like_a_create(api: Api) -> None:
    dataset_id = api.dataset()
    theirs = api.dataset("theirs", workspace=OTHER_WS)
    sagemaker = {
        "base_model_id": "sagemaker.qwen2-5-7b-instruct",
        "dataset_id": dataset_id,
        "resources": {"instance_type": "ml.g6e.2xlarge"},
    }
    cases = [
        ({"base_model_id": NOVA}, 400, "dataset_id"),
        ({"dataset_id": dataset_id}, 400, "base_model_id"),
        ({"base_model_id": NOVA, "dataset_id": theirs}, 400, "dataset_id"),
        ({"base_model_id": NOVA, "dataset_id": dataset_id, "hyperparameters": {"epochs": 0}}, 400, None),
        (sagemaker, 400, "base_model_id"),  # no connection yet
    ]
    for body, status, field in cases:
        answer = api.call("POST", "/v1/cost-estimates", body)
        assert answer.status == status, (body, answer.body)
        if field:
            assert field in [d.get("field") for d in answer.body["error"]["details"]], answer.body
    trial = api.call(
        "POST",
        "/v1/cost-estimates",
        {**sagemaker, "dataset_id": api.dataset(workspace="ws-trial")},
        workspace="ws-trial",
        plan="trial",
    )
    assert trial.status == 403
    assert trial.error_code == "forbidden"


def test_the_acknowledgement_is_not_needed_but_accepted(api: Api) -> None:
    dataset_id = api.dataset()
    for extra in ({}, {"acknowledge": True}, {"acknowledge": False}, {"name": "support-bot-v1"}):
        body = {"base_model_id": NOVA, "dataset_id": dataset_id, **extra}
        assert api.call("POST", "/v1/cost-estimates", body).status == 200, extra


def test_a_cloud_model_is_priced_in_the_local_runtime_but_not_runnable_and_cannot_start(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset_id = api.dataset()
    monkeypatch.setenv("RUNTIME", "local")
    reset_settings()
    set_services(Services())  # over the same table, with the local runtime's settings
    body = {"base_model_id": NOVA, "dataset_id": dataset_id}

    answer = api.call("POST", "/v1/cost-estimates", body)

    assert answer.status == 200, answer.body
    assert answer.body["runnable"] is False
    assert "local runtime" in answer.body["unrunnable_reason"]
    assert answer.body["quote_id"] is None
    assert answer.body["training"]["cost_usd"] > 0  # Bedrock's price per token, all the same
    started = api.call("POST", "/v1/fine-tuned-models", {**body, "name": "nova-bot", "acknowledge": True})
    assert started.status == 400
    assert started.body["error"]["details"][0]["field"] == "base_model_id"
