"""`GET /v1/providers/sagemaker/connector`, `PUT` and `DELETE /v1/providers/sagemaker` under moto: tunelab
makes the connector's parameters (its external id) per workspace; the connection is verified against
the customer's account (reached by assuming the role, as in production) before it is stored."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.integration import factories
from tests.integration.api_support import (
    OTHER_WS,
    WS,
    Api,
    api_fixture,  # noqa: F401  # the `api` fixture
    customer_session,
)
from tunelab.composition.settings import reset_settings
from tunelab.composition.wiring import Services, set_services
from tunelab.domain.providers import SageMakerConnection
from tunelab.domain.status import ModelStatus

pytestmark = pytest.mark.moto

CUSTOMER = "111122223333"
REGION = "eu-west-1"
ROLE = f"arn:aws:iam::{CUSTOMER}:role/tunelab-platform-access"
BUCKET = "acme-tunelab-artifacts"


def _body(**changes: Any) -> dict[str, Any]:
    # No external id: the workspace's own (made by tunelab) is used.
    body = {"role_arn": ROLE, "region": REGION, "artifact_bucket": BUCKET}
    body.update(changes)
    return body


@pytest.fixture
def customer(api: Api) -> Any:
    """The customer's account, reached through the role, with its artifact bucket."""
    session = customer_session(
        SageMakerConnection(role_arn=ROLE, external_id="ext-7f3a2b", region=REGION, artifact_bucket=BUCKET),
        WS,
    )
    s3: Any = session.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return session


def _sagemaker(api: Api, workspace: str = WS) -> dict[str, Any]:
    items = api.call("GET", "/v1/providers", workspace=workspace).body["items"]
    return dict(next(p for p in items if p["provider"] == "sagemaker"))


def _secret(customer: Any) -> str:
    return str(customer.client("secretsmanager").create_secret(Name="hf-token", SecretString="hf_x")["ARN"])


def test_put_verifies_then_stores_the_connection(api: Api, customer: Any) -> None:
    secret = _secret(customer)

    answer = api.call("PUT", "/v1/providers/sagemaker", _body(hf_token_secret_arn=secret))

    assert answer.status == 200, answer.body
    assert answer.body["provider"] == "sagemaker"
    assert answer.body["status"] == "connected"
    assert answer.body["role_arn"] == ROLE
    assert answer.body["region"] == REGION
    assert answer.body["hf_token_secret_arn"] == secret
    assert answer.body["verified_at"].endswith("Z")
    listed = api.call("GET", "/v1/providers").body["items"]
    assert {"provider": "sagemaker", "status": "connected"}.items() <= next(
        p for p in listed if p["provider"] == "sagemaker"
    ).items()
    # the check wrote its marker in the customer's bucket, through the role
    keys = [o["Key"] for o in customer.client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert keys == [f"tunelab/{WS}/.connection-check"]
    # the connection holds the external id tunelab made for the workspace
    made = api.call("GET", "/v1/providers/sagemaker/connector").body["external_id"]
    stored = api.repo.connections.find(WS)
    assert stored is not None
    assert stored.external_id == made


def test_the_connector_parameters_are_made_per_workspace(api: Api) -> None:
    ours = api.call("GET", "/v1/providers/sagemaker/connector")
    again = api.call("GET", "/v1/providers/sagemaker/connector")
    theirs = api.call("GET", "/v1/providers/sagemaker/connector", workspace=OTHER_WS)
    refused = api.call("GET", "/v1/providers/sagemaker/connector", workspace="ws-trial", plan="trial")

    assert ours.status == 200, ours.body
    body = ours.body
    assert re.fullmatch(r"tunelab-[0-9a-f]{32}", body["external_id"])
    assert again.body["external_id"] == body["external_id"]
    assert theirs.body["external_id"] != body["external_id"]
    assert (body["workspace_id"], body["role_session_name"]) == (WS, f"tunelab-{WS}")
    assert body["parameters"]["WorkspaceId"] == WS
    assert body["parameters"]["ExternalId"] == body["external_id"]
    assert f"WorkspaceId={WS}" in body["deploy_command"]
    # The test deployment's settings name no trusted roles or bus ARN: the answer says so, and offers
    # no value for them.
    assert "PlatformRoleArns" not in body["parameters"]
    assert "PlatformRoleArns" in body["message"]
    assert "CONNECTOR_TRUSTED_ROLE_ARNS" in body["message"]
    assert (refused.status, refused.error_code) == (403, "forbidden")


def test_the_connector_parameters_name_the_platforms_roles_and_bus(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    roles = "arn:aws:iam::123456789012:role/tunelab-api,arn:aws:iam::123456789012:role/tunelab-start"
    bus = "arn:aws:events:us-east-1:123456789012:event-bus/tunelab"
    monkeypatch.setenv("CONNECTOR_TRUSTED_ROLE_ARNS", roles)
    monkeypatch.setenv("EVENT_BUS_ARN", bus)
    reset_settings()
    set_services(Services())

    body = api.call("GET", "/v1/providers/sagemaker/connector").body

    assert body["parameters"]["PlatformRoleArns"] == roles
    assert body["parameters"]["PlatformEventBusArn"] == bus
    assert body["message"] is None
    assert f"PlatformRoleArns={roles}" in body["deploy_command"]


def test_a_connection_with_another_external_id_is_refused(api: Api, customer: Any) -> None:
    # The confused deputy: a customer-chosen (or another workspace's) external id is never accepted.
    theirs = api.call("GET", "/v1/providers/sagemaker/connector", workspace=OTHER_WS).body["external_id"]
    for external_id in ("ext-7f3a2b", theirs):
        answer = api.call("PUT", "/v1/providers/sagemaker", _body(external_id=external_id))
        assert (answer.status, answer.error_code) == (400, "validation_error")
        assert answer.body["error"]["details"][0]["field"] == "external_id"
    assert api.repo.connections.find(WS) is None
    ours = api.call("GET", "/v1/providers/sagemaker/connector").body["external_id"]
    assert api.call("PUT", "/v1/providers/sagemaker", _body(external_id=ours)).status == 200


def test_one_role_cannot_be_connected_by_two_workspaces(api: Api, customer: Any) -> None:
    assert api.call("PUT", "/v1/providers/sagemaker", _body()).status == 200

    second = api.call("PUT", "/v1/providers/sagemaker", _body(), workspace=OTHER_WS)

    assert (second.status, second.error_code) == (409, "in_use")
    assert "another tunelab workspace" in second.body["error"]["message"]
    assert api.repo.connections.find(OTHER_WS) is None


def test_a_failed_check_is_400_naming_it_and_stores_nothing(api: Api, customer: Any) -> None:
    missing_bucket = api.call("PUT", "/v1/providers/sagemaker", _body(artifact_bucket="no-such-bucket"))
    missing_secret = api.call(
        "PUT",
        "/v1/providers/sagemaker",
        _body(hf_token_secret_arn=f"arn:aws:secretsmanager:{REGION}:{CUSTOMER}:secret:gone-AbCdEf"),
    )

    assert missing_bucket.status == 400
    assert missing_bucket.error_code == "validation_error"
    assert "no-such-bucket does not exist" in missing_bucket.body["error"]["message"]
    assert missing_bucket.body["error"]["details"][0]["field"] == "artifact_bucket"
    assert missing_secret.status == 400
    assert missing_secret.body["error"]["details"][0]["field"] == "hf_token_secret_arn"
    assert api.repo.connections.find(WS) is None
    sagemaker = next(
        p for p in api.call("GET", "/v1/providers").body["items"] if p["provider"] == "sagemaker"
    )
    assert sagemaker["status"] == "not_connected"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"role_arn": "arn:aws:iam::1:role/x"}, "role_arn"),
        ({"region": "mars-1"}, "region"),
        ({"artifact_bucket": "Bad_Bucket"}, "artifact_bucket"),
        ({"external_id": ""}, "external_id"),
        ({"hf_token_secret_arn": "hf_plain_token"}, "hf_token_secret_arn"),
        ({"extra": 1}, "extra"),
    ],
)
def test_a_malformed_body_is_400_naming_the_field(api: Api, changes: dict[str, Any], field: str) -> None:
    answer = api.call("PUT", "/v1/providers/sagemaker", _body(**changes))
    assert answer.status == 400
    assert answer.body["error"]["details"][0]["field"] == field


def test_a_region_without_the_training_image_is_400_naming_it(api: Api, customer: Any) -> None:
    # Shaped like a region, but not one (found by the API fuzzer: it reached AWS and answered 500).
    answer = api.call("PUT", "/v1/providers/sagemaker", _body(region="aa-a-0"))

    assert (answer.status, answer.error_code) == (400, "validation_error")
    assert answer.body["error"]["details"][0]["field"] == "region"
    assert "not offered in aa-a-0" in answer.body["error"]["message"]
    assert api.repo.connections.find(WS) is None


def test_plans_without_byok_are_403(api: Api, customer: Any) -> None:
    for plan in ("trial", "pay_as_you_go"):
        answer = api.call("PUT", "/v1/providers/sagemaker", _body(), workspace=f"ws-{plan}", plan=plan)
        assert answer.status == 403, plan
        assert answer.error_code == "forbidden"
        assert (
            "BYOK" in answer.body["error"]["message"]
            or "bring-your-own-key" in answer.body["error"]["message"]
        )
    assert api.call("PUT", "/v1/providers/sagemaker", _body(), plan="enterprise_usage_credit").status == 200


def test_delete_forgets_the_connection_and_is_refused_while_models_run(api: Api, customer: Any) -> None:
    assert api.call("PUT", "/v1/providers/sagemaker", _body()).status == 200
    dataset = api.repo.datasets.create(factories.dataset(WS))
    api.repo.models.create(
        factories.model(WS, "byok-bot", dataset_id=dataset.dataset_id, provider="sagemaker", hosting="byok")
    )

    busy = api.call("DELETE", "/v1/providers/sagemaker")
    moved = api.call("PUT", "/v1/providers/sagemaker", _body(role_arn="arn:aws:iam::444455556666:role/other"))
    api.repo.models.transition(WS, "byok-bot", {ModelStatus.TRAINING}, ModelStatus.TRAINING_FAILED)
    deleted = api.call("DELETE", "/v1/providers/sagemaker")
    again = api.call("DELETE", "/v1/providers/sagemaker")

    assert busy.status == 409
    assert busy.error_code == "in_use"
    assert "byok-bot" in busy.body["error"]["message"]
    assert moved.status == 409
    assert deleted.status == 204
    assert again.status == 204
    assert api.repo.connections.find(WS) is None


def test_a_connection_is_the_workspaces_own(api: Api, customer: Any) -> None:
    assert api.call("PUT", "/v1/providers/sagemaker", _body()).status == 200

    theirs = next(
        p
        for p in api.call("GET", "/v1/providers", workspace=OTHER_WS).body["items"]
        if p["provider"] == "sagemaker"
    )
    assert api.call("DELETE", "/v1/providers/sagemaker", workspace=OTHER_WS).status == 204

    assert theirs["status"] == "not_connected"
    assert api.repo.connections.find(WS) is not None
