"""Provider connections: a workspace's own AWS account for SageMaker (bring your own key).

Decisions a user will notice: replacing the connection with another account or region, or deleting
it, is refused (409 `in_use`) while a model of that provider trains, stops, deploys or is deployed —
tunelab would lose the way to stop what bills in the customer's account. Re-verifying the same
account is allowed. Nothing is stored when a check fails (400 naming it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from aws_lambda_powertools import Logger

from tunelab.application.commands import PutSageMakerProviderIn
from tunelab.application.ports import Context
from tunelab.domain.catalog import Provider, provider_traits
from tunelab.domain.errors import ErrorDetail, Forbidden, InUse, ValidationFailed
from tunelab.domain.identity import Identity, byok_allowed
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
        # Served by the platform in its own account: always there.
        items.append(ProviderStatus(provider="bedrock", status="connected", region=ctx.config.aws_region))
    connection = ctx.connections.find(identity.workspace, SAGEMAKER)
    if connection is not None:
        items.append(ProviderStatus(provider=SAGEMAKER, status=connection.status, connection=connection))
    else:
        items.append(
            ProviderStatus(
                provider=SAGEMAKER,
                status="not_connected",
                message="Connect your AWS account with PUT /v1/providers/sagemaker (plans with BYOK).",
            )
        )
    return items


def connect_sagemaker(
    ctx: Context, identity: Identity, request: PutSageMakerProviderIn
) -> ProviderConnectionRecord:
    """`PUT /v1/providers/sagemaker`: verify the connection (assume the role, check each permission the
    jobs need) and store it; nothing is stored when a check fails (400 naming it)."""
    workspace = identity.workspace
    plan = ctx.workspaces.get(workspace).plan
    if not byok_allowed(plan):
        raise Forbidden(
            f"The {plan.replace('_', ' ')} plan does not include bring-your-own-key providers; SageMaker "
            "connections need a Subscription, Enterprise Usage Credit or Internal plan."
        )
    connection = SageMakerConnection(
        role_arn=request.role_arn,
        external_id=request.external_id,
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
            external_id=request.external_id,
            region=request.region,
            artifact_bucket=request.artifact_bucket,
            hf_token_secret_arn=request.hf_token_secret_arn,
            status="connected",
            message=None,
            verified_at=now,
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
