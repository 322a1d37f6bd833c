"""The API's own behaviour: health, OpenAPI, auth, and the contract's error body for every failure."""

from __future__ import annotations

import json

import pytest

from tests.integration.apigw import api_event, assert_error, call
from tests.integration.conftest import Aws
from tunelab.adapters.dynamodb.workspaces import DynamoWorkspaces

pytestmark = pytest.mark.moto


def test_health_needs_no_token(aws: Aws) -> None:
    response = call(api_event("GET", "/v1/health", claims=None))
    assert (response.status, response.body) == (200, {"status": "ok"})


def test_no_claims_is_401_in_the_error_shape(aws: Aws) -> None:
    error = assert_error(call(api_event("GET", "/v1/workspace", claims=None)), 401, "unauthorized")
    assert "Bearer" in error["message"]


def test_claims_without_a_workspace_are_401(aws: Aws) -> None:
    claims = {"sub": "abc", "email": "ada@example.com"}
    error = assert_error(call(api_event("GET", "/v1/workspace", claims=claims)), 401, "unauthorized")
    assert "custom:workspace" in error["message"]


def test_unknown_route_is_404_in_the_error_shape(aws: Aws) -> None:
    error = assert_error(call(api_event("GET", "/v1/no-such-thing")), 404, "not_found")
    assert "/v1/no-such-thing" in error["message"]


def test_openapi_lists_the_routes_and_the_contract_schemas(aws: Aws) -> None:
    response = call(api_event("GET", "/v1/openapi.json", claims=None))

    assert response.status == 200
    document = response.body
    assert document["openapi"].startswith("3.1")
    for path in (
        "/v1/health",
        "/v1/workspace",
        "/v1/base-models",
        "/v1/base-models/{model_id}",
        "/v1/providers",
    ):
        assert path in document["paths"], path
    schemas = document["components"]["schemas"]
    assert {"ErrorBody", "BaseModelOut", "WorkspaceOut", "ProviderOut"} <= set(schemas)
    # Errors are documented as the contract's 400, never Powertools' 422.
    text = json.dumps(document)
    assert '"422"' not in text
    assert "HTTPValidationError" not in text
    workspace = document["paths"]["/v1/workspace"]["get"]
    assert workspace["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorBody"
    )
    assert document["paths"]["/v1/health"]["get"]["security"] == []
    assert "description" in schemas["WorkspaceOut"]["properties"]["byok_allowed"]


def test_invalid_field_is_400_with_its_path(aws: Aws) -> None:
    response = call(api_event("POST", "/v1/resource-estimates", {"parameter_count": 7e9, "batch_size": 0}))

    error = assert_error(response, 400, "validation_error")
    assert error["details"] == [
        {"field": "batch_size", "message": "Input should be greater than or equal to 1."}
    ]
    assert error["message"].startswith("batch_size:")


def test_unknown_field_is_400_naming_it(aws: Aws) -> None:
    response = call(api_event("POST", "/v1/resource-estimates", {"parameter_count": 7e9, "batch": 4}))
    error = assert_error(response, 400, "validation_error")
    assert [d["field"] for d in error["details"]] == ["batch"]


def test_malformed_json_is_400(aws: Aws) -> None:
    response = call(api_event("POST", "/v1/resource-estimates", raw_body='{"parameter_count": 7e9,'))
    error = assert_error(response, 400, "validation_error")
    assert "not valid JSON" in error["message"]


def test_missing_body_is_400(aws: Aws) -> None:
    error = assert_error(call(api_event("POST", "/v1/resource-estimates")), 400, "validation_error")
    assert "body" in error["message"].lower()


def test_body_over_5_mib_is_413(aws: Aws) -> None:
    big = "x" * (5 * 1024 * 1024 + 1)
    response = call(api_event("POST", "/v1/resource-estimates", raw_body=big, content_type="text/csv"))
    assert_error(response, 413, "payload_too_large")


def test_a_route_with_a_body_answers(aws: Aws) -> None:
    response = call(api_event("POST", "/v1/resource-estimates", {"parameter_count": 7e9, "method": "lora"}))

    assert response.status == 200, response.text
    assert response.body["vram_gb"]["total"] > 0
    assert any(i["fits"] for i in response.body["instances"])


def test_resource_advice_names_the_plan_and_how_the_trainer_runs_on_each_instance(aws: Aws) -> None:
    response = call(
        api_event("POST", "/v1/resource-estimates", {"base_model_id": "sagemaker.qwen2-5-32b-instruct"})
    )
    assert response.status == 200, response.text
    body = response.body
    # Nothing but the model: its default plan (LoRA: a full fine-tune does not fit its default instance).
    assert (body["plan"]["method"], body["plan"]["precision"], body["plan"]["sequence_length"]) == (
        "lora",
        "bf16",
        2048,
    )
    assert body["plan"]["architecture"] == {
        "layers": 64,
        "hidden_size": 5120,
        "intermediate_size": 27648,
        "attention_heads": 40,
        "kv_heads": 8,
        "vocab_size": 152064,
        "source": "catalog",
    }
    by_type = {i["instance_type"]: i for i in body["instances"]}
    # The default instance (4 × 48 GB) fits by sharding: no single 48 GB GPU holds 32B's weights.
    assert (by_type["ml.g6e.12xlarge"]["fits"], by_type["ml.g6e.12xlarge"]["strategy"]) == (True, "fsdp")
    assert by_type["ml.g6e.12xlarge"]["memory_per_gpu_gb"] <= 48


def test_options_the_trainer_cannot_run_are_refused(aws: Aws) -> None:
    for body, field, words in (
        ({"parameter_count": 7e9, "precision": "int4"}, "precision", "quantised"),
        ({"parameter_count": 7e9, "optimizer": "adamw_8bit"}, "optimizer", "AdamW only"),
        ({"parameter_count": 7e9, "trainable_fraction": 0.2}, "trainable_fraction", None),
    ):
        error = assert_error(call(api_event("POST", "/v1/resource-estimates", body)), 400, "validation_error")
        assert [d["field"] for d in error["details"]] == [field]
        if words:
            assert words in error["details"][0]["message"]


def test_unexpected_error_is_500_without_internals(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret internals /var/task/tunelab")

    monkeypatch.setattr(DynamoWorkspaces, "get", boom)
    event = api_event("GET", "/v1/workspace")
    error = assert_error(call(event), 500, "internal_error")
    assert "internals" not in error["message"]
    assert event["requestContext"]["requestId"] in error["message"]


def test_base64_body_is_measured_decoded(aws: Aws) -> None:
    limit = 5 * 1024 * 1024
    over = call(
        api_event("POST", "/v1/resource-estimates", raw_body=b"x" * (limit + 1), content_type="text/csv")
    )
    at_limit = call(
        api_event("POST", "/v1/resource-estimates", raw_body=b"x" * limit, content_type="text/csv")
    )

    assert_error(over, 413, "payload_too_large")
    assert at_limit.status != 413


def test_a_json_route_refuses_another_content_type_with_400(aws: Aws) -> None:
    response = call(
        api_event("POST", "/v1/resource-estimates", raw_body="prompt,completion\n", content_type="text/csv")
    )
    error = assert_error(response, 400, "validation_error")
    assert error["details"][0]["field"] == "Content-Type"
