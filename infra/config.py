"""The app's settings, read from CDK context (`cdk.json` and `-c key=value`) into one model."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

REPO_ROOT = Path(__file__).resolve().parent.parent

_ACCOUNT = r"^\d{12}$"


def _as_list(value: Any) -> Any:
    # `-c allowedOrigins=...` arrives as a string: accept a JSON list or comma-separated values.
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _as_bool(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return value


class PlatformConfig(BaseModel):
    """Context of the platform stack."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    stack_name: str = Field(default="Tunelab", alias="stackName", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,40}$")
    allowed_origins: tuple[str, ...] = Field(default=(), alias="allowedOrigins")
    connected_accounts: tuple[str, ...] = Field(default=(), alias="connectedAccounts")
    sender_email: str = Field(
        default="tunelab@example.com", alias="senderEmail", pattern=r"^[^@\s]+@[^@\s]+$"
    )
    log_level: str = Field(default="INFO", alias="logLevel")
    default_plan: str = Field(default="pay_as_you_go", alias="defaultPlan")
    api_rate_limit: float = Field(default=50, alias="apiRateLimit", gt=0)
    api_burst_limit: int = Field(default=100, alias="apiBurstLimit", gt=0)
    skip_bundling: bool = Field(default=False, alias="skipBundling")
    workflows_dir: Path = Field(
        default=REPO_ROOT / "shared" / "tunelab" / "composition" / "state_machines", alias="workflowsDir"
    )

    @field_validator("allowed_origins", "connected_accounts", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("skip_bundling", mode="before")
    @classmethod
    def _bool(cls, value: Any) -> Any:
        return _as_bool(value)

    @field_validator("connected_accounts")
    @classmethod
    def _accounts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [account for account in value if not re.fullmatch(_ACCOUNT, account)]
        if bad:
            raise ValueError(f"connectedAccounts must be 12-digit account ids; got {bad}")
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [origin for origin in value if not origin.startswith(("https://", "http://localhost"))]
        if bad or "*" in value:
            raise ValueError(f"allowedOrigins must be https:// origins (or http://localhost...); got {bad}")
        return value

    @field_validator("workflows_dir")
    @classmethod
    def _relative_to_repo(cls, value: Path) -> Path:
        return value if value.is_absolute() else REPO_ROOT / value


class ConnectorConfig(BaseModel):
    """Context of the BYOK connector stack (defaults of its CloudFormation parameters)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    stack_name: str = Field(default="TunelabConnector", alias="connectorStackName")
    platform_event_bus_arn: str = Field(
        default="",
        alias="platformEventBusArn",
        pattern=r"^$|^arn:aws[a-z-]*:events:[a-z0-9-]+:\d{12}:event-bus/.+$",
    )
    external_id: str = Field(
        default="", alias="externalId", max_length=1224, pattern=r"^$|^[A-Za-z0-9+=,.@:/_-]{2,}$"
    )
    hf_token_secret_arn: str = Field(
        default="",
        alias="hfTokenSecretArn",
        pattern=r"^$|^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$",
    )


def load_cdk_json_context(path: Path = REPO_ROOT / "cdk.json") -> dict[str, Any]:
    """The `context` of cdk.json, so an app built in-process (tests) sees what `cdk synth` sees."""
    if not path.exists():
        return {}
    context = json.loads(path.read_text())["context"]
    assert isinstance(context, dict)
    return context
