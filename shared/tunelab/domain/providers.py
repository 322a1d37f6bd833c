"""One protocol for every place a model trains and serves: Bedrock, SageMaker (BYOK), the local runtime.

The workflows and event handlers speak only these models; each provider turns them into its own
calls. Nothing here imports boto3: the local provider implements the same protocol without AWS.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, Self, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tunelab.composition.stack_definitions import PROVIDER_RESOURCE_TAG
from tunelab.domain.catalog import BaseModelSpec
from tunelab.domain.errors import Forbidden, TunelabError

ProviderName = Literal["bedrock", "sagemaker", "local"]
TrainingStatus = Literal["in_progress", "completed", "failed", "stopping", "stopped"]
DeploymentStatus = Literal["creating", "in_service", "failed", "deleting", "gone"]
DeploymentKind = Literal[
    "custom_model_deployment", "provisioned_throughput", "sagemaker_endpoint", "local_server"
]

# Tags on every provider resource: the workspace (the BYOK connector's role may change only
# resources that carry it) and the model.
WORKSPACE_TAG = PROVIDER_RESOURCE_TAG
MODEL_TAG = "tunelab-model"

TERMINAL_TRAINING: frozenset[TrainingStatus] = frozenset({"completed", "failed", "stopped"})


class ProviderTransientError(TunelabError):
    """A passing provider fault (throttling, a 5xx, a dropped connection): the workflow retries the step."""

    code = "provider_unavailable"
    status = 503
    retryable: ClassVar[bool] = True


class ProviderPermissionDenied(Forbidden):
    """A role (the platform's or the customer's) lacks a permission a step needs; the message names it."""


class UnhandledEventError(ValueError):
    """An EventBridge event this provider does not handle (another detail-type, or no status in it)."""


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


class ParentModel(_Model):
    """A fine-tuned model of this workspace that the new job continues from."""

    # Bedrock: the parent's custom model ARN.
    model_ref: str | None = None
    # SageMaker and local: the parent's `model.tar.gz`, fed to the job's `model` channel.
    artifacts_uri: str | None = None


class TrainingRequest(_Model):
    identity: ModelIdentity
    base_model: BaseModelSpec
    parent: ParentModel | None = None
    training_data_uri: str
    validation_data_uri: str | None = None
    # Already in the provider's names and formats (`hyperparameters.to_provider_params` for Bedrock,
    # `to_trainer_hyperparameters` for the trainer).
    hyperparameters: dict[str, str] = Field(default_factory=dict)
    resources: Resources | None = None
    # SageMaker's StoppingCondition; the provider's default when absent.
    max_runtime_s: int | None = Field(default=None, ge=3600)
    tags: dict[str, str] = Field(default_factory=dict)


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


def event_time(value: object) -> datetime | None:
    """A time as SageMaker-shaped job descriptions and events give it: a datetime (boto3), epoch
    seconds or milliseconds (events), as a number or numeric text, or ISO 8601 text; naive times
    are UTC. None for anything else (absent, zero, unreadable)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return None
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if number is None or number <= 0:
        return None
    return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, tz=UTC)


_METRIC_NAMES = frozenset(TrainingMetrics.model_fields)


def final_metrics(final: object) -> TrainingMetrics | None:
    """The metrics of a SageMaker-shaped `FinalMetricDataList` (`[{"MetricName", "Value"}]`, as
    DescribeTrainingJob, its state-change event and the local provider's events give it): the
    trainer's `train_loss`, `eval_loss`, `step` and `epoch`; None when none of them is there."""
    if not isinstance(final, list):
        return None
    values: dict[str, float] = {}
    for item in final:
        if isinstance(item, Mapping) and item.get("MetricName") in _METRIC_NAMES:
            value = item.get("Value")
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[str(item["MetricName"])] = float(value)
    if not values:
        return None
    step = values.get("step")
    return TrainingMetrics(
        train_loss=values.get("train_loss"),
        eval_loss=values.get("eval_loss"),
        step=int(step) if step is not None else None,
        epoch=values.get("epoch"),
    )


class TrainingState(_Model):
    job_id: str
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

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_TRAINING


class DeployRequest(_Model):
    identity: ModelIdentity
    # When this deploy was asked for: a deploy after an undeploy gets its own names and tokens.
    requested_at: datetime
    base_model: BaseModelSpec
    model_ref: str | None = None
    artifacts_uri: str | None = None
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


class ConnectionCheckItem(_Model):
    name: str
    ok: bool
    message: str


class ConnectionCheck(_Model):
    ok: bool
    # One sentence a person can act on: what works, or the first thing that failed and what to do.
    message: str
    checks: list[ConnectionCheckItem]


# --- configuration of each provider (built by the caller from settings or the stored connection) ---


class BedrockConfig(_Model):
    region: str
    # The platform's service role that Bedrock assumes to read training data and write output.
    service_role_arn: str
    output_bucket: str
    output_prefix: str = "bedrock-output"


class SageMakerConnection(_Model):
    """The customer's connection (`PUT /v1/providers/sagemaker`)."""

    role_arn: str
    external_id: str = Field(min_length=2, max_length=1224)
    region: str
    artifact_bucket: str
    hf_token_secret_arn: str | None = None
    # The role SageMaker jobs and endpoints run as; the connector stack's role when absent.
    execution_role_arn: str | None = None


class SageMakerConfig(_Model):
    connection: SageMakerConnection
    workspace_id: str
    # Where the trainer comes from, one of the two: its folder (the local runtime, tests), or the
    # packaged `trainer/` in the platform's bucket (Settings.trainer_source_s3_uri: the CDK asset,
    # a .zip, or a .tar.gz). Either is repacked as sourcedir.tar.gz in the customer's bucket.
    trainer_dir: Path | None = None
    trainer_source_uri: str | None = None

    @model_validator(mode="after")
    def _one_trainer_source(self) -> Self:
        if (self.trainer_dir is None) == (self.trainer_source_uri is None):
            raise ValueError("give exactly one of trainer_dir and trainer_source_uri")
        return self


class LocalConfig(_Model):
    """Left open for the local provider; it defines its own fields."""

    model_config = ConfigDict(frozen=True, extra="allow")


@runtime_checkable
class TrainingProvider(Protocol):
    """Trains, serves, and removes fine-tuned models in one place (Bedrock, SageMaker, local)."""

    name: ProviderName

    def start_training(self, request: TrainingRequest) -> TrainingJobRef:
        """Start the job; calling it again for the same request finds the same job."""
        ...

    def stop_training(self, ref: TrainingJobRef) -> None:
        """Ask the job to stop; a job that already ended is left as it is."""
        ...

    def describe_training(self, ref: TrainingJobRef) -> TrainingState: ...

    def deploy(self, request: DeployRequest) -> DeploymentRef:
        """Start serving the model; calling it again for the same request finds the same deployment."""
        ...

    def describe_deployment(self, ref: DeploymentRef) -> DeploymentState: ...

    def undeploy(self, ref: DeploymentRef) -> None:
        """Delete the deployment; parts already gone are skipped, so a retry completes."""
        ...

    def invoke(self, ref: DeploymentRef, params: InvokeParams) -> InvokeResult: ...

    def download(self, artifacts_uri: str, *, expires_in_s: int = 900) -> DownloadLink: ...

    def delete_model(self, model: TrainedModel) -> None:
        """Remove the trained model (and what the provider stored for it); already gone is fine."""
        ...

    def parse_event(self, detail_type: str, detail: Mapping[str, Any]) -> TrainingState | DeploymentState:
        """Turn the provider's EventBridge event into a state; `UnhandledEventError` when not ours."""
        ...


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


def s3_split(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` → (bucket, key)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"not an S3 URI: {uri}")
    return bucket, key
