"""`GET /v1/workspace` and `GET /v1/providers`: the caller's workspace, made on first sight."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.integration.apigw import api_event, call, claims_for
from tests.integration.conftest import Aws
from tunelab.composition.settings import reset_settings
from tunelab.composition.wiring import Services
from tunelab.domain.records import ProviderConnectionRecord
from tunelab.entrypoints.api.deps import reset as reset_services

pytestmark = pytest.mark.moto


def test_first_request_creates_the_workspace_on_the_default_plan(aws: Aws) -> None:
    response = call(api_event("GET", "/v1/workspace", claims=claims_for("ws-new")))

    assert response.status == 200, response.text
    assert response.body == {"id": "ws-new", "plan": "pay_as_you_go", "byok_allowed": False}
    assert Services().workspaces.get("ws-new").plan == "pay_as_you_go"


def test_the_plan_claim_sets_the_plan(aws: Aws) -> None:
    first = call(api_event("GET", "/v1/workspace", claims=claims_for("ws-1", **{"custom:plan": "trial"})))
    then = call(
        api_event("GET", "/v1/workspace", claims=claims_for("ws-1", **{"custom:plan": "subscription"}))
    )
    without = call(api_event("GET", "/v1/workspace", claims=claims_for("ws-1")))

    assert (first.body["plan"], first.body["byok_allowed"]) == ("trial", False)
    assert (then.body["plan"], then.body["byok_allowed"]) == ("subscription", True)
    assert without.body["plan"] == "subscription"


def test_a_plan_claim_going_back_to_an_earlier_plan_reaches_the_workspace(aws: Aws) -> None:
    def workspace_with(plan: str) -> dict[str, object]:
        claims = claims_for("ws-back", **{"custom:plan": plan})
        answer = call(api_event("GET", "/v1/workspace", claims=claims))
        assert answer.status == 200, answer.text
        return dict(answer.body)

    # Given a workspace that was on trial, then subscribed
    assert workspace_with("trial")["plan"] == "trial"
    assert workspace_with("subscription")["plan"] == "subscription"
    # When its token claims trial again
    again = workspace_with("trial")
    # Then the workspace is on trial again, in the answer and in its record
    assert (again["plan"], again["byok_allowed"]) == ("trial", False)
    assert Services().workspaces.get("ws-back").plan == "trial"


def test_an_unknown_plan_claim_is_401(aws: Aws) -> None:
    response = call(
        api_event("GET", "/v1/workspace", claims=claims_for("ws-1", **{"custom:plan": "platinum"}))
    )
    assert (response.status, response.body["error"]["code"]) == (401, "unauthorized")


def test_each_token_sees_its_own_workspace(aws: Aws) -> None:
    acme = call(api_event("GET", "/v1/workspace", claims=claims_for("ws-acme")))
    globex = call(
        api_event("GET", "/v1/workspace", claims=claims_for("ws-globex", **{"custom:plan": "internal"}))
    )

    assert (acme.body["id"], acme.body["plan"]) == ("ws-acme", "pay_as_you_go")
    assert (globex.body["id"], globex.body["plan"]) == ("ws-globex", "internal")


def test_providers_without_a_connection(aws: Aws) -> None:
    response = call(api_event("GET", "/v1/providers"))

    assert response.status == 200, response.text
    items = {p["provider"]: p for p in response.body["items"]}
    assert items["bedrock"]["status"] == "connected"
    assert items["sagemaker"]["status"] == "not_connected"
    assert "PUT /v1/providers/sagemaker" in items["sagemaker"]["message"]


def test_providers_show_the_stored_sagemaker_connection(aws: Aws) -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    Services().connections.put(
        ProviderConnectionRecord(
            workspace_id="ws-acme",
            role_arn="arn:aws:iam::210987654321:role/tunelab-byok",
            external_id="ext-123",
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
