"""`GET /v1/workspace` and `GET /v1/providers`: the caller's workspace, made on first sight."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.integration.apigw import api_event, call, claims_for
from tests.integration.conftest import Aws
from tunelab.application.workspaces import set_plan
from tunelab.composition.settings import reset_settings
from tunelab.composition.wiring import Services
from tunelab.domain.errors import ValidationFailed
from tunelab.domain.records import ProviderConnectionRecord
from tunelab.entrypoints.api.deps import reset as reset_services

pytestmark = pytest.mark.moto


def test_first_request_creates_the_workspace_on_the_default_plan(aws: Aws) -> None:
    response = call(api_event("GET", "/v1/workspace", claims=claims_for("ws-new")))

    assert response.status == 200, response.text
    assert response.body == {"id": "ws-new", "plan": "pay_as_you_go", "byok_allowed": False}
    assert Services().workspaces.get("ws-new").plan == "pay_as_you_go"


def test_a_plan_claim_does_not_change_the_workspaces_plan(aws: Aws) -> None:
    # One user's token must not rewrite the plan of everyone in the workspace: the claim is ignored.
    first = call(api_event("GET", "/v1/workspace", claims=claims_for("ws-1")))
    claimed = call(
        api_event(
            "GET", "/v1/workspace", claims=claims_for("ws-1", **{"custom:plan": "enterprise_usage_credit"})
        )
    )
    unknown = call(
        api_event("GET", "/v1/workspace", claims=claims_for("ws-1", **{"custom:plan": "platinum"}))
    )

    assert (first.body["plan"], first.body["byok_allowed"]) == ("pay_as_you_go", False)
    assert (claimed.status, claimed.body["plan"], claimed.body["byok_allowed"]) == (
        200,
        "pay_as_you_go",
        False,
    )
    assert (unknown.status, unknown.body["plan"]) == (200, "pay_as_you_go")
    assert Services().workspaces.get("ws-1").plan == "pay_as_you_go"
    # Nor does it open a door the plan keeps shut.
    connector = call(
        api_event(
            "GET",
            "/v1/providers/sagemaker/connector",
            claims=claims_for("ws-1", **{"custom:plan": "subscription"}),
        )
    )
    assert (connector.status, connector.body["error"]["code"]) == (403, "forbidden")


def test_the_operator_sets_a_plan_and_every_user_of_the_workspace_sees_it(aws: Aws) -> None:
    services = Services()
    set_plan(services.workspaces, "ws-back", "trial", default_plan="pay_as_you_go")
    assert call(api_event("GET", "/v1/workspace", claims=claims_for("ws-back"))).body["plan"] == "trial"

    set_plan(services.workspaces, "ws-back", "subscription", default_plan="pay_as_you_go")
    for email in ("ada@example.com", "bob@example.com"):
        answer = call(api_event("GET", "/v1/workspace", claims=claims_for("ws-back", email=email)))
        assert (answer.body["plan"], answer.body["byok_allowed"]) == ("subscription", True)
    assert services.workspaces.get("ws-back").plan == "subscription"


def test_the_operator_path_refuses_unknown_plans_and_workspace_ids(aws: Aws) -> None:
    services = Services()
    with pytest.raises(ValidationFailed, match="not a plan"):
        set_plan(services.workspaces, "ws-1", "platinum", default_plan="pay_as_you_go")
    with pytest.raises(ValidationFailed, match="not a workspace id"):
        set_plan(services.workspaces, "ws 1/../x", "trial", default_plan="pay_as_you_go")
    assert services.workspaces.find("ws-1") is None


def test_each_token_sees_its_own_workspace(aws: Aws) -> None:
    set_plan(Services().workspaces, "ws-globex", "internal", default_plan="pay_as_you_go")
    acme = call(api_event("GET", "/v1/workspace", claims=claims_for("ws-acme")))
    globex = call(api_event("GET", "/v1/workspace", claims=claims_for("ws-globex")))

    assert (acme.body["id"], acme.body["plan"]) == ("ws-acme", "pay_as_you_go")
    assert (globex.body["id"], globex.body["plan"]) == ("ws-globex", "internal")


def test_a_workspace_over_its_requests_per_minute_is_throttled_and_others_are_not(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKSPACE_REQUESTS_PER_MINUTE", "5")
    reset_settings()
    reset_services()
    busy = claims_for("ws-busy")

    answers = [call(api_event("GET", "/v1/workspace", claims=busy)).status for _ in range(5)]
    over = call(api_event("GET", "/v1/workspace", claims=claims_for("ws-busy", email="bob@example.com")))
    other = call(api_event("GET", "/v1/workspace", claims=claims_for("ws-quiet")))
    health = call(api_event("GET", "/v1/health", claims=None))

    assert answers == [200] * 5
    # All users of the workspace share its budget; another tenant and the health check are untouched.
    assert (over.status, over.body["error"]["code"]) == (429, "throttled")
    assert "5 requests" in over.body["error"]["message"]
    assert other.status == 200
    assert health.status == 200


def test_providers_without_a_connection(aws: Aws) -> None:
    response = call(api_event("GET", "/v1/providers"))

    assert response.status == 200, response.text
    items = {p["provider"]: p for p in response.body["items"]}
    assert items["bedrock"]["status"] == "connected"
    assert items["sagemaker"]["status"] == "not_connected"
    assert "PUT /v1/providers/sagemaker" in items["sagemaker"]["message"]
    assert "GET /v1/providers/sagemaker/connector" in items["sagemaker"]["message"]


def _stored_connection(workspace: str, external_id: str, role: str) -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    Services().connections.put(
        ProviderConnectionRecord(
            workspace_id=workspace,
            role_arn=role,
            external_id=external_id,
            region="eu-west-1",
            artifact_bucket="acme-tunelab",
            status="connected",
            verified_at=now,
            created_at=now,
            updated_at=now,
        )
    )


def test_a_connection_made_with_an_external_id_tunelab_did_not_make_is_flagged(aws: Aws) -> None:
    # Connections made before tunelab made external ids carry the customer's choice: they keep working
    # for the models that use them, but the workspace is told to connect again.
    _stored_connection("ws-old", "ext-123", "arn:aws:iam::210987654321:role/tunelab-old")

    items = {
        p["provider"]: p
        for p in call(api_event("GET", "/v1/providers", claims=claims_for("ws-old"))).body["items"]
    }

    assert items["sagemaker"]["status"] == "error"
    assert "external id tunelab did not make" in items["sagemaker"]["message"]
    assert items["sagemaker"]["role_arn"] == "arn:aws:iam::210987654321:role/tunelab-old"


def test_providers_show_the_stored_sagemaker_connection(aws: Aws) -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    services = Services()
    services.workspaces.ensure("ws-acme", default_plan="subscription")
    made = services.workspaces.ensure_connector_external_id("ws-acme", "tunelab-" + "0" * 32)
    services.connections.put(
        ProviderConnectionRecord(
            workspace_id="ws-acme",
            role_arn="arn:aws:iam::210987654321:role/tunelab-byok",
            external_id=made,
            region="eu-west-1",
            artifact_bucket="acme-tunelab",
            status="connected",
            verified_at=now,
            created_at=now,
            updated_at=now,
        )
    )

    items = {p["provider"]: p for p in call(api_event("GET", "/v1/providers")).body["items"]}
    other = {
        p["provider"]: p
        for p in call(api_event("GET", "/v1/providers", claims=claims_for("ws-x"))).body["items"]
    }

    sagemaker = items["sagemaker"]
    assert sagemaker["status"] == "connected"
    assert (sagemaker["role_arn"], sagemaker["region"]) == (
        "arn:aws:iam::210987654321:role/tunelab-byok",
        "eu-west-1",
    )
    assert sagemaker["verified_at"] == "2026-11-28T12:00:00Z"
    assert other["sagemaker"]["status"] == "not_connected"


def test_providers_in_the_local_runtime(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME", "local")
    reset_settings()
    reset_services()

    items = {p["provider"]: p for p in call(api_event("GET", "/v1/providers")).body["items"]}

    assert items["local"]["status"] == "connected"
    assert items["bedrock"]["status"] == "not_connected"
