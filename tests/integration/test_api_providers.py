"""`PUT` and `DELETE /v1/providers/sagemaker` under moto: the connection is verified against the customer's
account (reached by assuming the role, as in production) before it is stored."""

from __future__ import annotations

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
from tunelab.domain.providers import SageMakerConnection
from tunelab.domain.status import ModelStatus

pytestmark = pytest.mark.moto

CUSTOMER = "111122223333"
REGION = "eu-west-1"
ROLE = f"arn:aws:iam::{CUSTOMER}:role/tunelab-platform-access"
BUCKET = "acme-tunelab-artifacts"


def _body(**changes: Any) -> dict[str, Any]:
    body = {"role_arn": ROLE, "external_id": "ext-7f3a2b", "region": REGION, "artifact_bucket": BUCKET}
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
    assert keys == ["tunelab/.connection-check"]
    # the external id is never shown back
    assert "ext-7f3a2b" not in answer.text


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
