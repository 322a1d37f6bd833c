"""Search and filters of the model and dataset lists, and the instance types, through the API under moto:
the query parameters, their 400s (the contract's error body, naming the parameter) and tenants."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.integration import factories
from tests.integration.api_support import OTHER_WS, WS, Api, api_fixture  # noqa: F401  # the `api` fixture
from tests.integration.apigw import api_event, call, claims_for
from tunelab.domain.records import new_dataset_id
from tunelab.domain.status import ModelStatus as S

pytestmark = pytest.mark.moto


def _seed(api: Api, workspace: str = WS) -> None:
    """Datasets and models stored directly (their statuses and times are the test's to choose)."""
    repo = api.repo
    for i, (name, status) in enumerate([("tickets", "ready"), ("faq", "invalid"), ("chat", "ready")]):
        created = factories.T0 + timedelta(hours=i)
        repo.datasets.create(
            factories.dataset(
                workspace, name, dataset_id=new_dataset_id(created), created_at=created, status=status
            )
        )
    data = repo.datasets.create(factories.dataset(workspace, "train-data"))
    for i, (name, provider) in enumerate([("bot-a", "bedrock"), ("bot-b", "local"), ("helper", "local")]):
        hosting = "local" if provider == "local" else "managed"
        record = factories.model(
            workspace,
            name,
            data.dataset_id,
            provider=provider,
            hosting=hosting,
            created_at=factories.T0 + timedelta(hours=i),
        )
        repo.models.create(record)
    repo.models.transition(workspace, "bot-b", {S.TRAINING}, S.TRAINING_FAILED)


def _names(api: Api, path: str, **kwargs: Any) -> list[str]:
    answer = api.call("GET", path, **kwargs)
    assert answer.status == 200, answer.body
    return [item["name"] for item in answer.body["items"]]


def test_models_filtered_and_sorted_by_query_parameters(api: Api) -> None:
    _seed(api)
    _seed(api, OTHER_WS)
    models = "/v1/fine-tuned-models"

    assert _names(api, models) == ["bot-a", "bot-b", "helper"]
    assert _names(api, f"{models}?status=training,training_failed&provider=local") == ["bot-b", "helper"]
    assert _names(api, f"{models}?status=training_failed") == ["bot-b"]
    assert _names(api, f"{models}?name_prefix=BOT&sort=name&order=desc") == ["bot-b", "bot-a"]
    assert _names(api, f"{models}?sort=created_at&order=desc") == ["helper", "bot-b", "bot-a"]
    assert _names(
        api, f"{models}?created_after=2026-11-28T13:00:00Z&created_before=2026-11-28T14:00:00Z"
    ) == ["bot-b"]
    assert _names(api, models, query={"created_after": "2026-11-28T14:00:00+01:00"}) == ["bot-b", "helper"]
    assert _names(
        api, f"{models}?creator=ada@example.com&base_model_id=meta.llama3-1-8b-instruct-v1:0:128k"
    ) == [
        "bot-a",
        "bot-b",
        "helper",
    ]
    assert _names(api, f"{models}?creator=nobody@example.com") == []


def test_a_repeated_status_parameter_means_any_of_them(api: Api) -> None:
    _seed(api)
    event = api_event("GET", "/v1/fine-tuned-models", claims=claims_for(WS), query={"status": "training"})
    event["multiValueQueryStringParameters"] = {
        "status": ["training_failed", "training"],
        "sort": ["created_at"],
    }
    answer = call(event)
    assert answer.status == 200, answer.body
    assert [m["name"] for m in answer.body["items"]] == ["bot-a", "bot-b", "helper"]


def test_datasets_filtered_and_sorted_by_query_parameters(api: Api) -> None:
    _seed(api)
    _seed(api, OTHER_WS)
    datasets = "/v1/datasets"

    assert _names(api, f"{datasets}?status=ready&sort=name") == ["chat", "tickets", "train-data"]
    assert _names(api, f"{datasets}?status=ready&sort=name&order=desc&name_prefix=t") == [
        "train-data",
        "tickets",
    ]
    assert _names(
        api, f"{datasets}?created_after=2026-11-28T12:30:00Z&created_before=2026-11-28T15:00:00Z"
    ) == [
        "faq",
        "chat",
    ]
    assert _names(api, f"{datasets}?created_before=2026-11-28&order=desc") == []


def test_a_filtered_list_pages_through_the_api(api: Api) -> None:
    _seed(api)
    first = api.call("GET", "/v1/fine-tuned-models?provider=local&sort=created_at&order=desc&limit=1").body
    second = api.call(
        "GET",
        f"/v1/fine-tuned-models?provider=local&sort=created_at&order=desc&limit=1&next_token={first['next_token']}",
    ).body
    assert [m["name"] for m in first["items"] + second["items"]] == ["helper", "bot-b"]
    assert second["next_token"] is None
    # A token of the list by creation time is not one of the list by name.
    by_name = api.call("GET", f"/v1/fine-tuned-models?limit=1&next_token={first['next_token']}")
    assert by_name.status == 400
    assert by_name.body["error"]["details"][0]["field"] == "next_token"


@pytest.mark.parametrize(
    ("path", "field", "words"),
    [
        ("/v1/fine-tuned-models?status=asleep", "status", "training_failed"),
        ("/v1/fine-tuned-models?status=training,asleep", "status", "asleep"),
        ("/v1/fine-tuned-models?provider=azure", "provider", "bedrock"),
        ("/v1/fine-tuned-models?dataset_id=not-an-id", "dataset_id", ""),
        ("/v1/fine-tuned-models?created_after=yesterday", "created_after", "ISO 8601"),
        ("/v1/fine-tuned-models?created_before=2026-13-01", "created_before", "ISO 8601"),
        (
            "/v1/fine-tuned-models?created_after=2026-11-29T00:00:00Z&created_before=2026-11-28T00:00:00Z",
            "created_after",
            "later than created_before",
        ),
        ("/v1/fine-tuned-models?sort=size", "sort", "created_at"),
        ("/v1/fine-tuned-models?order=up", "order", "asc"),
        ("/v1/fine-tuned-models?name_prefix=-bot", "name_prefix", "letter or digit"),
        ("/v1/datasets?status=training", "status", "ready"),
        ("/v1/datasets?sort=rows", "sort", "name"),
        (
            "/v1/datasets?created_after=2026-11-28T12:00:00Z&created_before=2026-11-27",
            "created_after",
            "later",
        ),
        ("/v1/datasets?name_prefix=a%20b", "name_prefix", "letter or digit"),
        ("/v1/instance-types?min_vram_gb=lots", "min_vram_gb", ""),
        ("/v1/instance-types?min_vram_gb=-1", "min_vram_gb", ""),
    ],
)
def test_every_bad_list_parameter_is_a_400_naming_it(api: Api, path: str, field: str, words: str) -> None:
    answer = api.call("GET", path)

    assert answer.status == 400, answer.body
    error = answer.body["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == [field]
    assert words in error["message"] + error["details"][0]["message"]


def test_instance_types_with_gpus_memory_storage_and_dated_prices(api: Api) -> None:
    every = api.call("GET", "/v1/instance-types").body
    large = api.call("GET", "/v1/instance-types?min_vram_gb=96").body

    assert every["next_token"] is None
    g5 = next(i for i in every["items"] if i["name"] == "ml.g5.12xlarge")
    assert (g5["gpus"], g5["gpu_model"], g5["vram_per_gpu_gb"], g5["vram_gb"]) == (4, "NVIDIA A10G", 24, 96)
    assert g5["vcpus"] > 0
    assert g5["memory_gb"] > 0
    assert g5["local_storage_gb"] > 0
    assert g5["price_per_hour_usd"] > 0
    assert g5["region"] == "us-east-1"
    assert g5["price_source"]["url"].startswith("https://")
    assert g5["price_source"]["as_of"]
    vram = [i["vram_gb"] for i in every["items"]]
    assert vram == sorted(vram)
    assert large["items"]
    assert all(i["vram_gb"] >= 96 for i in large["items"])
    assert len(large["items"]) < len(every["items"])
