"""CORS: allowed browser origins (settings `ALLOWED_ORIGINS`) get CORS headers, other origins none."""

from __future__ import annotations

import pytest

from tests.integration.apigw import api_event, call, claims_for
from tests.integration.conftest import Aws
from tunelab.composition.settings import reset_settings
from tunelab.entrypoints.api.deps import reset as reset_services

pytestmark = pytest.mark.moto

APP = "https://app.example.com"


def _origins(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("ALLOWED_ORIGINS", raising=False)
    else:
        monkeypatch.setenv("ALLOWED_ORIGINS", value)
    reset_settings()
    reset_services()


def _get(origin: str) -> dict[str, str]:
    answer = call(api_event("GET", "/v1/workspace", claims=claims_for("ws-cors"), headers={"Origin": origin}))
    assert answer.status == 200, answer.text
    return answer.headers


def test_an_allowed_origin_gets_cors_headers_another_does_not(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    _origins(monkeypatch, f"{APP}, http://localhost:5173")

    allowed = _get(APP)
    second = _get("http://localhost:5173")
    other = _get("https://evil.example.com")

    assert allowed["Access-Control-Allow-Origin"] == APP
    assert "Idempotency-Key" in allowed["Access-Control-Allow-Headers"]
    assert second["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert not any(name.lower().startswith("access-control-") for name in other)


def test_a_preflight_from_an_allowed_origin_is_answered_without_credentials(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    _origins(monkeypatch, APP)
    event = api_event("OPTIONS", "/v1/datasets", claims=None, headers={"Origin": APP})
    event["headers"].pop("Authorization", None)
    event["multiValueHeaders"].pop("Authorization", None)

    answer = call(event)

    assert answer.status == 204, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == APP
    assert "POST" in answer.headers["Access-Control-Allow-Methods"]


def test_without_allowed_origins_no_origin_gets_cors_headers(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    _origins(monkeypatch, None)

    headers = _get(APP)

    assert not any(name.lower().startswith("access-control-") for name in headers)
