"""cdk.json: the CLI runs the app with the project's Python, and its context is valid configuration."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from infra.config import REPO_ROOT, ConnectorConfig, PlatformConfig, load_cdk_json_context
from tunelab.composition.stack_definitions import bedrock_training_regions

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


def test_the_home_region_comes_from_context_else_the_cli_else_the_sdk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CDK_DEFAULT_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_REGION", "ap-southeast-2")
    assert PlatformConfig.model_validate({"region": "us-west-2"}).region == "us-west-2"
    assert PlatformConfig.model_validate({}).region == "eu-central-1"
    monkeypatch.delenv("CDK_DEFAULT_REGION")
    assert PlatformConfig.model_validate({}).region == "ap-southeast-2"
    monkeypatch.delenv("AWS_REGION")
    assert PlatformConfig.model_validate({}).region == "us-east-1"
    for bad in ("EU", "us_east_1", "us-east", ""):
        with pytest.raises(ValidationError, match="region must be an AWS region"):
            PlatformConfig.model_validate({"region": bad})


def test_bedrock_regions_default_to_the_catalogs_and_may_only_narrow_them() -> None:
    trained_in = bedrock_training_regions()
    home = PlatformConfig.model_validate({"region": "eu-west-1"})
    assert home.bedrock_regions == trained_in
    assert home.regional_bedrock_regions == trained_in
    assert home.all_bedrock_regions == ("eu-west-1", *trained_in)
    # A home region where models train is no regional stack of its own
    in_us_east_1 = PlatformConfig.model_validate({"region": "us-east-1"})
    assert in_us_east_1.regional_bedrock_regions == tuple(r for r in trained_in if r != "us-east-1")
    assert in_us_east_1.all_bedrock_regions[0] == "us-east-1"
    # Narrowed from the command line (comma-separated or JSON), or to none: the home region only
    for value in ("us-west-2", '["us-west-2"]', ["us-west-2", "us-west-2"]):
        narrowed = PlatformConfig.model_validate({"region": "eu-west-1", "bedrockRegions": value})
        assert narrowed.regional_bedrock_regions == ("us-west-2",)
    none = PlatformConfig.model_validate({"region": "eu-west-1", "bedrockRegions": ""})
    assert none.all_bedrock_regions == ("eu-west-1",)
    with pytest.raises(ValidationError, match=r"bedrockRegions must be regions .*\['eu-west-1'\]"):
        PlatformConfig.model_validate({"bedrockRegions": "us-west-2,eu-west-1"})
