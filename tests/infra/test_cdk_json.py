"""cdk.json: the CLI runs the app with the project's Python, and its context is valid configuration."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from infra.config import REPO_ROOT, ConnectorConfig, PlatformConfig, load_cdk_json_context

pytestmark = pytest.mark.xdist_group("infra")


def test_the_cli_runs_the_app_with_the_projects_python() -> None:
    cdk_json = json.loads((REPO_ROOT / "cdk.json").read_text())
    assert cdk_json["app"] == ".venv/bin/python infra/app.py"
    assert cdk_json["output"] == "cdk.out"


def test_every_context_key_of_cdk_json_is_a_setting_of_a_stack() -> None:
    context = load_cdk_json_context()
    aliases = {
        field.alias for model in (PlatformConfig, ConnectorConfig) for field in model.model_fields.values()
    }
    settings = {key for key in context if not key.startswith("@aws-cdk")}
    assert settings <= aliases
    platform = PlatformConfig.model_validate(context)
    assert platform.stack_name == "Tunelab"
    assert platform.skip_bundling is False
    ConnectorConfig.model_validate(context)


def test_command_line_values_are_parsed_and_bad_ones_refused() -> None:
    config = PlatformConfig.model_validate(
        {"allowedOrigins": "https://a.example, https://b.example", "skipBundling": "true"}
    )
    assert config.allowed_origins == ("https://a.example", "https://b.example")
    assert config.skip_bundling is True
    assert PlatformConfig.model_validate({"connectedAccounts": '["111122223333"]'}).connected_accounts == (
        "111122223333",
    )
    with pytest.raises(ValidationError, match="12-digit"):
        PlatformConfig.model_validate({"connectedAccounts": "1234"})
    with pytest.raises(ValidationError, match="allowedOrigins"):
        PlatformConfig.model_validate({"allowedOrigins": "*"})
    with pytest.raises(ValidationError):
        ConnectorConfig.model_validate({"platformEventBusArn": "not-an-arn"})
