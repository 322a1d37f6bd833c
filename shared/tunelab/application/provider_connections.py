"""Provider connections: a workspace's own AWS account for SageMaker (bring your own key).

Decisions a user will notice: replacing the connection with another account or region, or deleting
it, is refused (409 `in_use`) while a model of that provider trains, stops, deploys or is deployed —
tunelab would lose the way to stop what bills in the customer's account. Re-verifying the same
account is allowed. Nothing is stored when a check fails (400 naming it).

Against the confused deputy: tunelab, not the customer, makes the external id — one per workspace,
random, shown with the connector's other parameters (`connector`) before the customer deploys the
connector; a connection with any other external id is refused. The connector is deployed for one
workspace: its role trusts only tunelab's own roles, with that external id and the role session
name `tunelab-<workspace>`, and touches only resources tagged with, and objects under, that
workspace. One role belongs to one workspace (the store refuses a role another workspace holds).
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from aws_lambda_powertools import Logger

from tunelab.application.commands import PutSageMakerProviderIn
from tunelab.application.ports import Context
from tunelab.domain.catalog import Provider, provider_traits
from tunelab.domain.errors import ErrorDetail, Forbidden, InUse, ValidationFailed
from tunelab.domain.identity import Identity, byok_allowed
from tunelab.domain.layout import connector_session_name
from tunelab.domain.providers import SageMakerConnection
from tunelab.domain.records import ModelRecord, ProviderConnectionRecord
from tunelab.domain.status import ModelStatus

logger = Logger(child=True)

# Statuses in which a model runs or bills in the customer's account.
_ACTIVE = frozenset(
    {ModelStatus.TRAINING, ModelStatus.STOPPING_TRAINING, ModelStatus.DEPLOYING, ModelStatus.DEPLOYED}
)
# Which request field each check of the verification is about.
_CHECK_FIELDS = {
    "sts:AssumeRole": "role_arn",
    "s3:ListBucket": "artifact_bucket",
    "s3:PutObject": "artifact_bucket",
    "sagemaker:DescribeTrainingJob": "role_arn",
    "secretsmanager:DescribeSecret": "hf_token_secret_arn",
}
SAGEMAKER: Provider = "sagemaker"
# STS role session names have at most 64 characters: `tunelab-` and the workspace id must fit.
MAX_SESSION_NAME = 64
# What the connector template is called where tunelab ships it (`make synth` writes it).
CONNECTOR_TEMPLATE = "cdk.out/tunelab-connector.template.json"


@dataclass(frozen=True)
class ConnectorSetup:
    """What a customer deploys the BYOK connector with, for one workspace (its stack's parameters)."""

    workspace_id: str
    external_id: str
    role_session_name: str
    parameters: dict[str, str] = field(default_factory=dict)
    deploy_command: str = ""
    message: str | None = None


@dataclass(frozen=True)
class ProviderStatus:
    """Where fine-tuning can run for a workspace: one provider and whether it can be used."""

    provider: Provider
    status: Literal["connected", "not_connected", "error"]
    region: str | None = None
    message: str | None = None
    connection: ProviderConnectionRecord | None = None


def list_providers(ctx: Context, identity: Identity) -> list[ProviderStatus]:
    """`GET /v1/providers`: the platform's own provider(s) for this deployment, and the BYOK connection."""
    items: list[ProviderStatus] = []
    if ctx.config.runtime == "local":
        items.append(ProviderStatus(provider="local", status="connected"))
        items.append(
            ProviderStatus(
                provider="bedrock",
                status="not_connected",
                message="Bedrock is not available in the local runtime; deploy tunelab to AWS to use it.",
            )
        )
    else:
        # Served by the platform in its own account: always there, in its region and the regional stacks'.
        others = ctx.config.provider_regions
        items.append(
            ProviderStatus(
                provider="bedrock",
                status="connected",
                region=ctx.config.aws_region,
                message=(
                    f"This deployment reaches Bedrock in {ctx.config.aws_region} and {', '.join(others)}; "
                    "each model trains in its `training_region` (GET /v1/base-models)."
                    if others
                    else None
                ),
            )
        )
    connection = ctx.connections.find(identity.workspace, SAGEMAKER)
    made = ctx.workspaces.get(identity.workspace).connector_external_id
    if connection is not None and connection.external_id != made:
        # Made before tunelab made external ids (the customer chose it): models keep running, but the
        # connector must be deployed again with the workspace's parameters and connected again.
        items.append(
            ProviderStatus(
                provider=SAGEMAKER,
                status="error",
                region=connection.region,
                message=(
                    "This connection was made with an external id tunelab did not make: deploy the connector "
                    "again with the parameters GET /v1/providers/sagemaker/connector gives, then PUT "
                    "/v1/providers/sagemaker again."
                ),
                connection=connection,
            )
        )
    elif connection is not None:
        items.append(ProviderStatus(provider=SAGEMAKER, status=connection.status, connection=connection))
    else:
        items.append(
            ProviderStatus(
                provider=SAGEMAKER,
                status="not_connected",
                message=(
                    "Connect your AWS account (plans with BYOK): deploy the connector with the parameters "
                    "GET /v1/providers/sagemaker/connector gives, then PUT /v1/providers/sagemaker."
                ),
            )
        )
    return items


def _check_byok(ctx: Context, workspace: str) -> None:
    plan = ctx.workspaces.get(workspace).plan
    if not byok_allowed(plan):
        raise Forbidden(
            f"The {plan.replace('_', ' ')} plan does not include bring-your-own-key providers; SageMaker "
            "connections need a Subscription, Enterprise Usage Credit or Internal plan."
        )
    if len(connector_session_name(workspace)) > MAX_SESSION_NAME:
        raise Forbidden(
            f"The workspace id '{workspace}' is longer than {MAX_SESSION_NAME - len('tunelab-')} characters, "
            "too long for the role session name a connector requires; ask your operator for a shorter one."
        )


def _external_id(ctx: Context, workspace: str) -> str:
    """The workspace's external id, made (random, unguessable) on first ask and kept."""
    return ctx.workspaces.ensure_connector_external_id(workspace, f"tunelab-{secrets.token_hex(16)}")


def connector(ctx: Context, identity: Identity) -> ConnectorSetup:
    """`GET /v1/providers/sagemaker/connector`: the parameters to deploy the BYOK connector with, for
    this workspace (its external id is made here the first time)."""
    workspace = identity.workspace
    _check_byok(ctx, workspace)
    external_id = _external_id(ctx, workspace)
    parameters = {"WorkspaceId": workspace, "ExternalId": external_id}
    missing: list[str] = []
    roles = ctx.config.connector_trusted_role_arns
    if roles:
        parameters["PlatformRoleArns"] = ",".join(roles)
    else:
        missing.append("PlatformRoleArns")
    if ctx.config.event_bus_arn:
        parameters["PlatformEventBusArn"] = ctx.config.event_bus_arn
    else:
        missing.append("PlatformEventBusArn")
    overrides = " ".join(shlex.quote(f"{k}={v}") for k, v in parameters.items())
    # One stack per workspace: deploying another workspace's parameters must never update this one's
    # (its roles' names are fixed per region, so a second connector in the same account and region
    # fails to create instead of taking the first one over).
    stack = "tunelab-connector-" + re.sub(r"[^A-Za-z0-9-]", "-", workspace)
    command = (
        f"aws cloudformation deploy --template-file {CONNECTOR_TEMPLATE} --stack-name {stack} "
        f"--capabilities CAPABILITY_NAMED_IAM --region <your region> --parameter-overrides {overrides}"
    )
    message = (
        f"This deployment does not know {' and '.join(missing)} (its settings "
        "CONNECTOR_TRUSTED_ROLE_ARNS / EVENT_BUS_ARN): ask your operator for the platform stack's outputs."
        if missing
        else None
    )
    return ConnectorSetup(
        workspace_id=workspace,
        external_id=external_id,
        role_session_name=connector_session_name(workspace),
        parameters=parameters,
        deploy_command=command,
        message=message,
    )


def connect_sagemaker(
    ctx: Context, identity: Identity, request: PutSageMakerProviderIn
) -> ProviderConnectionRecord:
    """`PUT /v1/providers/sagemaker`: verify the connection (assume the role, check each permission the
    jobs need) and store it; nothing is stored when a check fails (400 naming it)."""
    workspace = identity.workspace
    _check_byok(ctx, workspace)
    external_id = _external_id(ctx, workspace)
    if request.external_id is not None and request.external_id != external_id:
        raise ValidationFailed.of(
            "external_id",
            "The external id is not this workspace's: tunelab makes it (GET "
            "/v1/providers/sagemaker/connector shows it with the connector's other parameters); deploy the "
            "connector with that one, and leave external_id out or send that one.",
        )
    connection = SageMakerConnection(
        role_arn=request.role_arn,
        external_id=external_id,
        region=request.region,
        artifact_bucket=request.artifact_bucket,
        hf_token_secret_arn=request.hf_token_secret_arn,
    )
    current = ctx.connections.find(workspace, SAGEMAKER)
    if current is not None and (current.account != connection.account or current.region != request.region):
        _refuse_while_active(ctx, workspace, "moved to another account or region")
    check = ctx.providers.verify_connection(connection, workspace)
    if not check.ok:
        raise ValidationFailed(
            check.message,
            [
                ErrorDetail(field=_CHECK_FIELDS.get(c.name), message=c.message)
                for c in check.checks
                if not c.ok
            ],
        )
    now = ctx.now()
    stored = ctx.connections.put(
        ProviderConnectionRecord(
            workspace_id=workspace,
            role_arn=request.role_arn,
            external_id=external_id,
            region=request.region,
            artifact_bucket=request.artifact_bucket,
            hf_token_secret_arn=request.hf_token_secret_arn,
            status="connected",
            message=None,
            verified_at=now,
            checked_at=now,
            connected_by=identity.email,
            created_at=now,
            updated_at=now,
        )
    )
    # What was made from the old connection (sessions, clients) must not outlive it.
    ctx.providers.forget(SAGEMAKER, workspace)
    logger.info("SageMaker connected", extra={"workspace_id": workspace, "region": request.region})
    return stored


def disconnect_sagemaker(ctx: Context, identity: Identity) -> None:
    """`DELETE /v1/providers/sagemaker`: forget the connection (refused while its models run)."""
    _refuse_while_active(ctx, identity.workspace, "deleted")
    ctx.connections.delete(identity.workspace, SAGEMAKER)
    ctx.providers.forget(SAGEMAKER, identity.workspace)


def _active_models(ctx: Context, workspace: str) -> Iterator[ModelRecord]:
    """The workspace's models that run or bill in its own account now."""
    token: str | None = None
    while True:
        page = ctx.models.list(workspace, limit=100, next_token=token, status=_ACTIVE)
        yield from (m for m in page.items if provider_traits(m.provider).requires_connection)
        token = page.next_token
        if not token:
            return


def _refuse_while_active(ctx: Context, workspace: str, what: str) -> None:
    active = list(_active_models(ctx, workspace))
    if not active:
        return
    shown = ", ".join(f"'{m.name}' ({m.status.label})" for m in active[:5]) + (
        " and more" if len(active) > 5 else ""
    )
    raise InUse(
        f"The SageMaker connection cannot be {what} while models use it: {shown}. Stop or undeploy them "
        "first, so nothing keeps billing in your account unseen."
    )
