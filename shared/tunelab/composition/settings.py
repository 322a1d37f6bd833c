"""Configuration from environment variables, modelled once and read lazily.

Every Lambda function gets the same environment (the CDK app sets one dictionary for all), so one
model serves them all. Nothing is read at import time: `get_settings()` reads the environment on
first use and keeps the result; tests call `reset_settings()` after changing the environment.

A required variable that is missing or empty fails loudly with the variable's name; optional ones
say in their description what leaving them out means.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tunelab.domain.catalog import Runtime
from tunelab.domain.identity import Plan

# Required text: present and not blank, so an empty `TABLE_NAME=` fails at start instead of later.
_Required = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class Settings(BaseSettings):
    """The deployment's configuration; field names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    aws_region: _Required = Field(description="Region of the platform's resources (Lambda sets AWS_REGION).")
    runtime: Runtime = Field(
        default="aws", description="`aws` when deployed; `local` inside the embedded local runtime."
    )
    table_name: _Required = Field(
        description="The one DynamoDB table of records (adapters.dynamodb.TABLE_DEFINITION)."
    )
    idempotency_table_name: _Required = Field(
        description="DynamoDB table of Idempotency-Key records (key `id`)."
    )
    datasets_bucket: _Required = Field(
        description="S3 bucket of uploaded datasets and prepared training data."
    )
    artifacts_bucket: _Required = Field(
        description="S3 bucket of training outputs of the platform's providers."
    )
    fine_tuning_state_machine_arn: _Required = Field(
        description="Step Functions state machine of a fine-tuning job."
    )
    deployment_state_machine_arn: _Required = Field(
        description="Step Functions state machine of deploy/undeploy."
    )
    event_bus_name: _Required = Field(
        description="EventBridge bus on which tunelab publishes its domain events."
    )
    sender_email: _Required = Field(description="Verified SES identity that notification emails come from.")
    ses_configuration_set: str | None = Field(
        default=None, description="SES configuration set for sent emails; unset sends without one."
    )
    schedule_group: _Required = Field(description="EventBridge Scheduler group of auto-undeploy schedules.")
    scheduler_role_arn: _Required = Field(
        description="Role EventBridge Scheduler assumes to start the undeploy."
    )
    auto_undeploy_target_arn: _Required = Field(description="ARN the auto-undeploy schedule targets.")
    schedules_dlq_arn: _Required = Field(
        description=(
            "SQS queue EventBridge Scheduler sends an auto-undeploy schedule's event to when it cannot "
            "invoke the target (every schedule's DeadLetterConfig)."
        ),
    )
    bedrock_role_arn: _Required = Field(description="Service role Bedrock model customization jobs run with.")
    bedrock_data_buckets: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Bedrock regions besides `aws_region` this deployment trains in, each with the data bucket "
            'the CDK app made there, as a JSON object `{"us-west-2": "bucket"}` (the regional stacks\'); '
            "empty: Bedrock models train only where AWS fine-tunes them in `aws_region`."
        ),
    )
    platform_account_id: _Required = Field(
        pattern=r"^\d{12}$", description="AWS account id of the platform (the BYOK role trusts it)."
    )
    default_plan: Plan = Field(
        default="pay_as_you_go",
        description=(
            "Plan given to a workspace seen for the first time; an operator changes it with "
            "`tunelab-admin plan` (a token's claims never do)."
        ),
    )
    workspace_requests_per_minute: int = Field(
        default=1200,
        ge=1,
        description=(
            "API requests one workspace (all its users together) may send per minute; more answer 429 "
            "`throttled`, so one tenant cannot spend the stage's capacity for the others."
        ),
    )
    event_bus_arn: str | None = Field(
        default=None,
        description="ARN of tunelab's bus, a parameter of the BYOK connector; unset: not shown.",
    )
    connector_trusted_role_arns: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description=(
            "Roles of the platform that assume BYOK connector roles, comma-separated (the stack's "
            "`ConnectorTrustedRoleArns`); the connector's trust policy names exactly these."
        ),
    )
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description=(
            "Browser origins the API answers with CORS headers, comma-separated (the stack's "
            "`allowedOrigins`); empty: no browser origin is allowed."
        ),
    )
    log_level: str = Field(default="INFO", description="Log level of the Powertools logger.")
    deploy_poll_seconds: int = Field(
        default=30,
        ge=0,
        le=3600,
        description=(
            "Seconds the deployment workflow waits between two looks at a deployment that is still "
            "starting (a SageMaker endpoint or a Bedrock deployment takes minutes; a local one seconds)."
        ),
    )

    @property
    def provider_regions(self) -> tuple[str, ...]:
        """The regions besides `aws_region` where this deployment reaches the platform's regional
        provider (Bedrock's regional stacks)."""
        return tuple(sorted(self.bedrock_data_buckets))

    @field_validator("bedrock_data_buckets")
    @classmethod
    def _regional_buckets(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [
            f"{region}={bucket}"
            for region, bucket in value.items()
            if not (region.strip() and bucket.strip())
        ]
        if bad:
            raise ValueError(f"every Bedrock region needs its data bucket; got {bad}")
        return value

    @field_validator("allowed_origins", "connector_trusted_role_arns", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        # One comma-separated variable (as the stack sets it), not JSON; blanks between commas drop.
        # (Origins and the connector's trusted roles alike.)
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


@cache
def get_settings() -> Settings:
    """The settings, read from the environment on first call and kept for the process's life."""
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings so the next `get_settings()` reads the environment again (tests)."""
    get_settings.cache_clear()
