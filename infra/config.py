"""The app's settings, read from CDK context (`cdk.json` and `-c key=value`) into one model."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tunelab.composition.stack_definitions import AWS_REGION_PATTERN, bedrock_training_regions

REPO_ROOT = Path(__file__).resolve().parent.parent

_ACCOUNT = r"^\d{12}$"
# The BYOK connector's parameters (the application side writes and checks the same shapes).
WORKSPACE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,55}$"  # `tunelab-<id>` fits STS's 64 characters
EXTERNAL_ID_PATTERN = r"^tunelab-[0-9a-f]{32}$"  # tunelab generates one per workspace
ROLE_ARN_PATTERN = r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]+$"
# The periods WAF's rate-based rules count over (EvaluationWindowSec).
WAF_WINDOWS = (60, 120, 300, 600)


def _as_list(value: Any) -> Any:
    # `-c allowedOrigins=...` arrives as a string: accept a JSON list or comma-separated values.
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _home_region() -> str:
    # What the CDK CLI resolves from the profile, else the SDK's variable, else us-east-1.
    return os.environ.get("CDK_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"


def _as_bool(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return value


class PlatformConfig(BaseModel):
    """Context of the platform stack."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    stack_name: str = Field(default="Tunelab", alias="stackName", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,40}$")
    # The home region: the platform stack's; Bedrock jobs of models fine-tuned elsewhere run in theirs.
    region: str = Field(default_factory=_home_region, alias="region", validate_default=True)
    # Where Bedrock may fine-tune (the home region aside, a regional stack each); default: every region a
    # model of the catalog trains in. Fewer keeps the data in fewer regions (those models then refused).
    bedrock_regions: tuple[str, ...] = Field(
        default_factory=bedrock_training_regions, alias="bedrockRegions", validate_default=True
    )
    allowed_origins: tuple[str, ...] = Field(default=(), alias="allowedOrigins")
    connected_accounts: tuple[str, ...] = Field(default=(), alias="connectedAccounts")
    sender_email: str = Field(
        default="tunelab@example.com", alias="senderEmail", pattern=r"^[^@\s]+@[^@\s]+$"
    )
    log_level: str = Field(default="INFO", alias="logLevel")
    default_plan: str = Field(default="pay_as_you_go", alias="defaultPlan")
    # Stage-wide throttling: a guard for the whole account, not a caller's budget (the web ACL's).
    api_rate_limit: float = Field(default=500, alias="apiRateLimit", gt=0)
    api_burst_limit: int = Field(default=1000, alias="apiBurstLimit", gt=0)
    # The web ACL's rate-based rules: requests per `rateWindowSeconds` (WAF's minimum limit is 10).
    caller_rate_limit: int = Field(default=300, alias="callerRateLimit", ge=10, le=2_000_000_000)
    health_rate_limit: int = Field(default=60, alias="healthRateLimit", ge=10, le=2_000_000_000)
    ip_rate_limit: int = Field(default=1500, alias="ipRateLimit", ge=10, le=2_000_000_000)
    rate_window_seconds: int = Field(default=60, alias="rateWindowSeconds")
    skip_bundling: bool = Field(default=False, alias="skipBundling")
    workflows_dir: Path = Field(
        default=REPO_ROOT / "shared" / "tunelab" / "composition" / "state_machines", alias="workflowsDir"
    )

    @field_validator("allowed_origins", "connected_accounts", "bedrock_regions", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not re.fullmatch(AWS_REGION_PATTERN, value):
            raise ValueError(f"region must be an AWS region's name, such as us-east-1; got {value!r}")
        return value

    @field_validator("bedrock_regions")
    @classmethod
    def _bedrock_regions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = bedrock_training_regions()
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(
                f"bedrockRegions must be regions where Bedrock fine-tunes a model of tunelab's catalog "
                f"({', '.join(known)}); got {unknown}"
            )
        return tuple(sorted(set(value)))

    @property
    def regional_bedrock_regions(self) -> tuple[str, ...]:
        """The Bedrock regions besides the home region: one regional stack (data bucket, events) each."""
        return tuple(region for region in self.bedrock_regions if region != self.region)

    @property
    def all_bedrock_regions(self) -> tuple[str, ...]:
        """Every region the platform calls Bedrock in: the home region and the regional ones."""
        return (self.region, *self.regional_bedrock_regions)

    @field_validator("rate_window_seconds")
    @classmethod
    def _window(cls, value: int) -> int:
        if value not in WAF_WINDOWS:
            raise ValueError(f"rateWindowSeconds must be one of {WAF_WINDOWS}; got {value}")
        return value

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
    """Context of the BYOK connector stack (defaults of its CloudFormation parameters).

    Empty (the default) leaves the parameter without a default: the customer must give it.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    stack_name: str = Field(default="TunelabConnector", alias="connectorStackName")
    platform_event_bus_arn: str = Field(
        default="",
        alias="platformEventBusArn",
        pattern=r"^$|^arn:aws[a-z-]*:events:[a-z0-9-]+:\d{12}:event-bus/.+$",
    )
    workspace_id: str = Field(default="", alias="workspaceId", pattern=f"^$|{WORKSPACE_ID_PATTERN}")
    external_id: str = Field(default="", alias="externalId", pattern=f"^$|{EXTERNAL_ID_PATTERN}")
    platform_role_arns: tuple[str, ...] = Field(default=(), alias="platformRoleArns")
    hf_token_secret_arn: str = Field(
        default="",
        alias="hfTokenSecretArn",
        pattern=r"^$|^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$",
    )

    @field_validator("platform_role_arns", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("platform_role_arns")
    @classmethod
    def _roles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [arn for arn in value if not re.fullmatch(ROLE_ARN_PATTERN, arn)]
        if bad:
            raise ValueError(f"platformRoleArns must be IAM role ARNs; got {bad}")
        return value


def load_cdk_json_context(path: Path = REPO_ROOT / "cdk.json") -> dict[str, Any]:
    """The `context` of cdk.json, so an app built in-process (tests) sees what `cdk synth` sees."""
    if not path.exists():
        return {}
    context = json.loads(path.read_text())["context"]
    assert isinstance(context, dict)
    return context
