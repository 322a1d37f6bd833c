"""What tunelab and the places models train and serve (Bedrock, SageMaker, the local runtime) say to
each other: requests, references to what a provider holds, and states. The provider port
(`application.ports.TrainingProvider`) speaks only these; each provider adapter turns them into its
own calls. Nothing here imports boto3.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tunelab.domain.catalog import BaseModelSpec, Provider

ProviderName = Provider
TrainingStatus = Literal["in_progress", "completed", "failed", "stopping", "stopped"]
DeploymentStatus = Literal["creating", "in_service", "failed", "deleting", "gone"]
DeploymentKind = Literal[
    "custom_model_deployment", "provisioned_throughput", "sagemaker_endpoint", "local_server"
]

TERMINAL_TRAINING: frozenset[TrainingStatus] = frozenset({"completed", "failed", "stopped"})


class UnhandledEventError(ValueError):
    """An EventBridge event no provider handles (another source or detail-type, or no status in it)."""


class _Model(BaseModel):
    # Validators are built on first use, not at import: a cold start builds only what it touches.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class ModelIdentity(_Model):
    """Whose resource it is: every provider name and idempotency token derives from these three fields."""

    workspace_id: str = Field(min_length=1)
    model_name: str = Field(min_length=1, max_length=63)
    # The model record's creation time: a model deleted and created again under the same name gets
    # new provider names, while a retry of the same step finds the same job.
    created_at: datetime

    def digest(self, *parts: str) -> str:
        """A stable hex digest of this identity and `parts` (64 characters)."""
        text = "\x1f".join([self.workspace_id, self.model_name, utc_iso(self.created_at), *parts])
        return hashlib.sha256(text.encode()).hexdigest()


class Resources(_Model):
    """Where a SageMaker job runs (the request's `resources`)."""

    instance_type: str
    instance_count: int = Field(default=1, ge=1)
    volume_size_gb: int = Field(ge=1, le=16384)
    # The trainer's `distribution`: sharded (fsdp) where one GPU cannot hold the job.
    distribution: Literal["single", "ddp", "fsdp"] | None = None


class ParentModel(_Model):
    """A fine-tuned model of this workspace that the new job continues from."""

    # Where the provider keeps the weights (Bedrock): the parent's custom model ARN.
    model_ref: str | None = None
    # Else the parent's `model.tar.gz`, fed to the job's `model` channel.
    artifacts_uri: str | None = None
    # A checkpoint (`checkpoint-<step>`) the parent's job kept, to start from instead of its final
    # weights, and that job's name: the provider finds the checkpoint's folder where it keeps them.
    checkpoint: str | None = None
    checkpoint_job: str | None = None


class TrainingRequest(_Model):
    identity: ModelIdentity
    base_model: BaseModelSpec
    parent: ParentModel | None = None
    training_data_uri: str
    validation_data_uri: str | None = None
    # Already in the provider's names and formats (`TrainingProvider.training_hyperparameters`).
    hyperparameters: dict[str, str] = Field(default_factory=dict)
    resources: Resources | None = None
    # SageMaker's StoppingCondition; the provider's default when absent.
    max_runtime_s: int | None = Field(default=None, ge=3600)
    tags: dict[str, str] = Field(default_factory=dict)
    # 0 for a model's first job; n for its n-th resume: a provider that needs unique job names gives
    # each attempt its own, and the job continues from the model's checkpoints.
    attempt: int = Field(default=0, ge=0)


class ResumePoint(_Model):
    """The checkpoint a resumed job of a model would continue from (the trainer's `checkpoint-<step>`)."""

    checkpoint: str
    step: int = Field(ge=0)
    # The run's step count, as the checkpoint records it (`max_steps`); None where it does not say.
    total_steps: int | None = Field(default=None, ge=0)


class TrainingJobRef(_Model):
    """What the record stores to find the job again; `job_id` is what provider events carry."""

    provider: ProviderName
    job_id: str
    job_name: str
    output_uri: str | None = None


class TrainingMetrics(_Model):
    train_loss: float | None = None
    eval_loss: float | None = None
    step: int | None = None
    epoch: float | None = None


class TrainingState(_Model):
    job_id: str
    # The id records written before `job_id`'s form kept for the same job (SageMaker: the bare job name,
    # before jobs were known by their ARN); only such records are found by it.
    former_job_id: str | None = None
    status: TrainingStatus
    # The provider's finer status while training (SageMaker's SecondaryStatus, e.g. "Downloading").
    phase: str | None = None
    failure_reason: str | None = None
    metrics: TrainingMetrics | None = None
    # Where the trained artifacts are (SageMaker's model.tar.gz; Bedrock's output folder).
    artifacts_uri: str | None = None
    # Bedrock: the custom model ARN, needed to deploy and delete.
    model_ref: str | None = None
    ended_at: datetime | None = None
    # What the provider measured to bill the job, where it says (SageMaker's BillableTimeInSeconds).
    billable_seconds: int | None = None
    trained_tokens: int | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_TRAINING


# A folder inside an archive, as the trainer names one (`merged/`): one plain name and a slash, so that
# neither a serving container's path nor an unpacked folder can be led outside the archive.
ARCHIVE_FOLDER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}/$"


class MergedArchive(_Model):
    """The merged copy of an unmerged LoRA job: full weights and configuration in a folder (`path`) of an
    archive of its own (SageMaker's `output.tar.gz`, next to the adapter's `model.tar.gz`)."""

    uri: str
    path: str = Field(default="merged/", pattern=ARCHIVE_FOLDER_PATTERN)
    # The archive's size and files, when they could be read (None / empty otherwise).
    size_bytes: int | None = None
    files: list[str] = Field(default_factory=list)


class TrainedOutput(_Model):
    """What a finished job left: the provider's model (where it keeps the weights) and the archive."""

    model_ref: str | None = None
    artifacts_uri: str | None = None
    # The archive's size and files, when they could be read (None / empty otherwise).
    size_bytes: int | None = None
    files: list[str] = Field(default_factory=list)
    merged: bool = False
    # LoRA not merged: where the trainer's merged copy is (None for full and merged models, and for
    # jobs of a trainer that wrote none).
    merged_archive: MergedArchive | None = None
    # What the provider measured to bill the job, where it says (None: it did not say).
    billable_seconds: int | None = None
    trained_tokens: int | None = None


class DeployRequest(_Model):
    identity: ModelIdentity
    # When this deploy was asked for: a deploy after an undeploy gets its own names and tokens.
    requested_at: datetime
    base_model: BaseModelSpec
    model_ref: str | None = None
    # The archive to serve, and the folder inside it that holds the model (None: the archive's root;
    # `merged/` for the merged copy of an unmerged LoRA model).
    artifacts_uri: str | None = None
    artifacts_path: str | None = Field(default=None, pattern=ARCHIVE_FOLDER_PATTERN)
    instance_type: str | None = None
    instance_count: int = Field(default=1, ge=1)
    gpus_per_instance: int = Field(default=1, ge=1)
    tags: dict[str, str] = Field(default_factory=dict)

    def deploy_digest(self) -> str:
        return self.identity.digest("deploy", utc_iso(self.requested_at))


class DeploymentRef(_Model):
    provider: ProviderName
    kind: DeploymentKind
    # What is invoked: Bedrock's deployment or provisioned-throughput ARN, SageMaker's endpoint name.
    deployment_id: str
    # Provider-specific parts the deployment is made of, deleted by `undeploy` (e.g. SageMaker's
    # model and endpoint configuration names).
    parts: dict[str, str] = Field(default_factory=dict)


class DeploymentState(_Model):
    deployment_id: str
    status: DeploymentStatus
    reason: str | None = None


ProviderState = TrainingState | DeploymentState


class ProviderEvent(_Model):
    """A provider's EventBridge event, parsed: whose it is, the account it came from, what it says."""

    provider: ProviderName
    # The event's source account (a customer's, for forwarded BYOK events); None where none is given.
    account: str | None = None
    state: ProviderState


class InvokeParams(_Model):
    prompt: str = Field(min_length=1)
    max_tokens: int = Field(default=256, ge=1, le=32768)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)


class InvokeResult(_Model):
    completion: str
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    latency_ms: int = Field(ge=0)


class DownloadLink(_Model):
    url: str
    expires_at: datetime
    size_bytes: int = Field(ge=0)


class TrainedModel(_Model):
    """A finished model, for `delete_model`."""

    identity: ModelIdentity
    job: TrainingJobRef | None = None
    model_ref: str | None = None
    artifacts_uri: str | None = None
    # The latest attempt (resumes): each earlier one left a job and its output too.
    attempt: int = 0


class SageMakerConnection(_Model):
    """A workspace's connection to its own AWS account (`PUT /v1/providers/sagemaker`)."""

    role_arn: str
    external_id: str = Field(min_length=2, max_length=1224)
    region: str
    artifact_bucket: str
    hf_token_secret_arn: str | None = None
    # The role SageMaker jobs and endpoints run as; the connector stack's role when absent.
    execution_role_arn: str | None = None

    @property
    def account(self) -> str:
        """The account of the role (the fifth field of its ARN)."""
        parts = self.role_arn.split(":")
        return parts[4] if len(parts) > 4 else ""


class ConnectionCheckItem(_Model):
    name: str
    ok: bool
    message: str


class ConnectionCheck(_Model):
    ok: bool
    # One sentence a person can act on: what works, or the first thing that failed and what to do.
    message: str
    checks: list[ConnectionCheckItem]


def utc_iso(moment: datetime) -> str:
    """One spelling of a moment, whatever its time zone (naive means UTC), for digests."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- names ---------------------------------------------------------------------------------------

_NOT_ALNUM_HYPHEN = re.compile(r"[^A-Za-z0-9-]+")
_HYPHENS = re.compile(r"-{2,}")


def derived_name(base: str, digest: str, *, max_len: int = 63, digest_len: int = 10) -> str:
    """`<base>-<digest prefix>` in at most `max_len` characters, letters, digits and single hyphens.

    Fits the name rules Bedrock and SageMaker share: starts alphanumeric, no double hyphens.
    """
    slug = _HYPHENS.sub("-", _NOT_ALNUM_HYPHEN.sub("-", base)).strip("-") or "m"
    room = max_len - digest_len - 1
    return f"{slug[:room].rstrip('-')}-{digest[:digest_len]}"
