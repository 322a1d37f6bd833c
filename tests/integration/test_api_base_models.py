"""`GET /v1/base-models` and `GET /v1/base-models/{id}` over the shipped catalog."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import boto3
import pytest

from tests.integration.apigw import api_event, call
from tests.integration.conftest import REGION, TABLE_NAME, Aws
from tunelab.adapters.dynamodb import TABLE_DEFINITION
from tunelab.composition.settings import reset_settings
from tunelab.entrypoints.api.deps import reset as reset_services

pytestmark = pytest.mark.moto

NOVA_MICRO = "amazon.nova-micro-v1:0:128k"
LLAMA_8B = "meta.llama3-1-8b-instruct-v1:0:128k"


def test_list_shows_every_model_with_its_availability(aws: Aws) -> None:
    response = call(api_event("GET", "/v1/base-models"))

    assert response.status == 200, response.text
    items = {m["id"]: m for m in response.body["items"]}
    assert response.body["next_token"] is None
    assert items[NOVA_MICRO]["available"] is True
    assert items[NOVA_MICRO]["unavailable_reason"] is None
    # The platform runs in us-east-1; Bedrock fine-tunes Llama 3.1 only in us-west-2, which the
    # deployment reaches through its regional stack.
    assert (items[NOVA_MICRO]["training_region"], items[LLAMA_8B]["training_region"]) == (
        "us-east-1",
        "us-west-2",
    )
    assert items[LLAMA_8B]["available"] is True
    # A model AWS no longer fine-tunes stays listed, unavailable, saying so.
    retired = items["amazon.titan-text-express-v1:0:8k"]
    assert retired["available"] is False
    assert "no longer offered" in retired["unavailable_reason"]
    # Available ones first.
    flags = [m["available"] for m in response.body["items"]]
    assert flags == sorted(flags, reverse=True)


def _platform_in(region: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The platform's records table in `region`, and the functions' region set to it."""
    if region != REGION:
        boto3.client("dynamodb", region_name=region).create_table(TableName=TABLE_NAME, **TABLE_DEFINITION)
    monkeypatch.setenv("AWS_REGION", region)
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)


@pytest.mark.parametrize(
    ("home", "regional"),
    [("us-east-1", ["us-west-2"]), ("us-west-2", ["us-east-1"]), ("eu-west-1", ["us-east-1", "us-west-2"])],
)
def test_with_the_regional_stacks_every_bedrock_model_aws_fine_tunes_is_available_wherever_the_platform_is(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, home: str, regional: list[str]
) -> None:
    # The CDK app deploys a regional stack in every Bedrock region other than the platform's.
    _platform_in(home, monkeypatch)
    monkeypatch.setenv("BEDROCK_DATA_BUCKETS", json.dumps({r: f"tunelab-bedrock-{r}" for r in regional}))
    reset_settings()
    reset_services()

    items = call(api_event("GET", "/v1/base-models")).body["items"]

    bedrock = [m for m in items if m["provider"] == "bedrock"]
    offered = [
        m
        for m in bedrock
        if m["unavailable_reason"] is None or "no longer offered" not in m["unavailable_reason"]
    ]
    assert len(offered) >= 7  # Nova Micro, Lite, Pro, 2 Lite; Llama 3.1 8B, 70B, 3.3 70B
    assert [m["id"] for m in offered if not m["available"]] == []
    by_id = {m["id"]: m for m in bedrock}
    assert by_id[NOVA_MICRO]["training_region"] == "us-east-1"
    assert by_id[LLAMA_8B]["training_region"] == "us-west-2"
    assert by_id[LLAMA_8B]["regions"] == ["us-west-2"]
    # Retired ones stay listed, unavailable, saying why.
    retired = [m for m in bedrock if m not in offered]
    assert retired
    assert all(m["available"] is False and m["training_region"] is None for m in retired)


def test_without_a_regional_stack_a_model_trained_elsewhere_says_how_to_add_its_region(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    _platform_in("eu-west-1", monkeypatch)
    monkeypatch.setenv("BEDROCK_DATA_BUCKETS", json.dumps({"us-east-1": "tunelab-bedrock-us-east-1"}))
    reset_settings()
    reset_services()

    llama = call(api_event("GET", f"/v1/base-models/{LLAMA_8B}")).body

    assert llama["available"] is False
    assert llama["training_region"] is None
    assert llama["unavailable_reason"] == (
        "Bedrock fine-tunes this model only in us-west-2, and this deployment reaches Bedrock in "
        "eu-west-1, us-east-1; the operator of this tunelab deployment can add the region (`bedrockRegions`)."
    )
    nova = call(api_event("GET", f"/v1/base-models/{NOVA_MICRO}")).body
    assert (nova["available"], nova["training_region"]) == (True, "us-east-1")


def test_get_one_by_an_id_with_colons_and_dots(aws: Aws) -> None:
    response = call(api_event("GET", f"/v1/base-models/{NOVA_MICRO}"))

    assert response.status == 200, response.text
    model = response.body
    assert (model["id"], model["provider"], model["hosting"]) == (NOVA_MICRO, "bedrock", "managed")
    assert set(model["hyperparameters"]) == {
        "epochs",
        "learning_rate",
        "batch_size",
        "warmup_steps",
        "early_stopping",
    }
    epochs = model["hyperparameters"]["epochs"]
    assert epochs["min"] <= epochs["default"] <= epochs["max"]
    assert model["supports_download"] is False
    assert model["pricing"]["as_of"].count("-") == 2


def test_percent_encoded_id_is_found(aws: Aws) -> None:
    response = call(api_event("GET", "/v1/base-models/amazon.nova-micro-v1%3A0%3A128k"))
    assert (response.status, response.body["id"]) == (200, NOVA_MICRO)


def test_unknown_id_is_404_in_the_error_shape(aws: Aws) -> None:
    response = call(api_event("GET", "/v1/base-models/acme.nothing-v1:0"))

    assert response.status == 404
    assert response.body["error"]["code"] == "not_found"
    assert "acme.nothing-v1:0" in response.body["error"]["message"]


def test_cloud_models_are_unavailable_in_the_local_runtime(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME", "local")
    reset_settings()
    reset_services()

    response = call(api_event("GET", "/v1/base-models"))

    cloud = [m for m in response.body["items"] if m["provider"] != "local"]
    assert cloud
    assert all(m["available"] is False and "local runtime" in m["unavailable_reason"] for m in cloud)


def test_a_registered_model_folder_is_listed_through_the_catalog_extension(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a Hugging Face folder (the trainer's tiny model) registered in a local data dir
    from trainer.tiny_model import build_tiny_model  # noqa: PLC0415  # torch: only this test
    from tunelab.composition import wiring  # noqa: PLC0415
    from tunelab.local.models import register_model_folder, registered_models  # noqa: PLC0415

    folder = build_tiny_model([("Where is my order?", "category=shipping")], tmp_path / "tiny-folder")
    data_dir = tmp_path / "data"
    register_model_folder("my-tiny", folder, data_dir)
    monkeypatch.setenv("RUNTIME", "local")
    reset_settings()
    reset_services()
    extension = partial(registered_models, data_dir)
    wiring.register_catalog_extension(extension)
    try:
        # When the API lists and reads base models
        listed = call(api_event("GET", "/v1/base-models"))
        one = call(api_event("GET", "/v1/base-models/local.my-tiny"))
    finally:
        wiring.unregister_catalog_extension(extension)
    after = call(api_event("GET", "/v1/base-models/local.my-tiny"))

    # Then the folder is a local base model, available in the local runtime, until unregistered
    assert listed.status == 200, listed.text
    items = {m["id"]: m for m in listed.body["items"]}
    assert items["local.my-tiny"]["provider"] == "local"
    assert items["local.my-tiny"]["available"] is True
    assert (one.status, one.body["id"]) == (200, "local.my-tiny")
    assert after.status == 404
