"""SageMaker (BYOK): training jobs and real-time endpoints in the customer's AWS account.

tunelab reaches the account through the customer's IAM role (STS AssumeRole with the external id);
the training job runs `trainer/` in the Hugging Face PyTorch training container the way the SDK's
Hugging Face estimator runs a script (`sagemaker_program` and `sagemaker_submit_directory`);
endpoints serve the trained model with Text Generation Inference (TGI): `model.tar.gz`, or for LoRA not
merged the merged copy the trainer wrote into the job's `output.tar.gz` (`merged/`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from tunelab.adapters.aws_errors import (
    ACCESS_DENIED_CODES,
    aws_call,
    error_code,
    error_message,
    is_not_found,
)
from tunelab.adapters.providers.common import (
    archive_output,
    evaluation_of,
    event_time,
    final_metrics,
    output_archive_uri,
    resume_point_of,
)
from tunelab.adapters.providers.images import llm_inference_image, training_image
from tunelab.adapters.s3 import S3Objects
from tunelab.domain.catalog import BaseModelSpec
from tunelab.domain.checkpoints import (
    CheckpointList,
    by_step,
    checkpoint_info,
    checkpoint_step,
    unknown_checkpoint,
)
from tunelab.domain.errors import (
    NameTaken,
    ProviderError,
    ProviderTransientError,
    TunelabError,
    ValidationFailed,
)
from tunelab.domain.evaluation import REPORT_FILE, EvaluationReport, EvaluationSkipped
from tunelab.domain.hyperparameters import (
    ResolvedHyperparameters,
    ResolvedOptionalHyperparameters,
    to_trainer_hyperparameters,
)
from tunelab.domain.layout import (
    CONNECTOR_ROLE_PREFIX,
    MODEL_TAG,
    PROVIDER_RESOURCE_TAG,
    SAGEMAKER_TRAINING_LOG_GROUP,
    connector_prefix,
    connector_session_name,
    s3_split,
)
from tunelab.domain.providers import (
    ConnectionCheck,
    ConnectionCheckItem,
    DeploymentRef,
    DeploymentState,
    DeploymentStatus,
    DeployRequest,
    DownloadLink,
    InvokeParams,
    InvokeResult,
    ModelIdentity,
    ParentModel,
    ProviderName,
    ResumePoint,
    SageMakerConnection,
    TrainedModel,
    TrainedOutput,
    TrainingJobRef,
    TrainingRequest,
    TrainingState,
    TrainingStatus,
    UnhandledEventError,
    derived_name,
)
from tunelab.domain.training_logs import (
    TrainingLogLine,
    TrainingLogPage,
    bad_log_token,
    decode_position,
    encode_position,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sagemaker.literals import ProductionVariantInstanceTypeType, TrainingInstanceTypeType
    from mypy_boto3_sagemaker.type_defs import (
        ChannelTypeDef,
        CreateTrainingJobRequestTypeDef,
        ProductionVariantTypeDef,
        ResourceConfigTypeDef,
        TagTypeDef,
    )
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sts import STSClient


class SageMakerConfig(BaseModel):
    """A workspace's SageMaker: its connection, and the trainer's folder (`train.py`), repacked as
    sourcedir.tar.gz in the customer's bucket."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    connection: SageMakerConnection
    workspace_id: str
    trainer_dir: Path


TRAINING_EVENT = "SageMaker Training Job State Change"
ENDPOINT_EVENT = "SageMaker Endpoint State Change"

# The connector stack's role that jobs and endpoints run as (one per region), when the connection
# names none: `tunelab-sagemaker-execution-<region>`.
EXECUTION_ROLE_PREFIX = f"{CONNECTOR_ROLE_PREFIX}sagemaker-execution-"
# Marks a job as this model record's, so a retried start finds its own job; read back through
# DescribeTrainingJob (the connector's role may describe jobs but not list tags).
RECORD_ENV = "TUNELAB_RECORD"
TRAINER_PROGRAM = "train.py"
DEFAULT_MAX_RUNTIME_S = 48 * 3600
# How long the workflow waits for a job: its own limit plus time to queue, download and upload.
STARTUP_MARGIN_S = 2 * 3600
# SageMaker's own ceiling for MaxRuntimeInSeconds (28 days).
MAX_RUNTIME_LIMIT_S = 28 * 24 * 3600
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
DOWNLOAD_EXPIRES_S = 15 * 60
ASSUME_ROLE_SECONDS = 3600
# Credentials are renewed this long before they expire, so no call runs on dying credentials.
REFRESH_MARGIN_S = 5 * 60
# Where SageMaker unpacks a model's `ModelDataUrl` archive in the serving container.
MODEL_DATA_DIR = "/opt/ml/model"
# TGI loads large models slowly; SageMaker's default health-check wait is too short for them.
STARTUP_TIMEOUT_S = 1800
TRAINING_LOG_GROUP = SAGEMAKER_TRAINING_LOG_GROUP
# GetLogEvents may answer an empty page before a stream's end; a page asks a stream at most this often.
LOG_READS_PER_STREAM = 5

_TRAINING_STATUS: dict[str, TrainingStatus] = {
    "inprogress": "in_progress",
    "completed": "completed",
    "failed": "failed",
    "stopping": "stopping",
    "stopped": "stopped",
    "deleting": "stopped",
}
_ENDPOINT_STATUS: dict[str, DeploymentStatus] = {
    "creating": "creating",
    "inservice": "in_service",
    # An endpoint being updated by SageMaker keeps serving.
    "updating": "in_service",
    "systemupdating": "in_service",
    "rollingback": "in_service",
    "deleting": "deleting",
    "deleted": "gone",
    "failed": "failed",
    "outofservice": "failed",
    "updaterollbackfailed": "failed",
}
_TIME_LIMIT_STATUSES = {
    "MaxRuntimeExceeded": "MaxRuntimeInSeconds",
    "MaxWaitTimeExceeded": "MaxWaitTimeInSeconds",
}


# Read once per process: the shipped file never changes while it runs.
@cache
def metric_definitions() -> list[dict[str, str]]:
    """The trainer's log-line metrics as SageMaker MetricDefinitions (a copy of the trainer's file)."""
    text = (
        resources.files("tunelab")
        .joinpath("catalog_data", "trainer_metric_definitions.json")
        .read_text(encoding="utf-8")
    )
    data: list[dict[str, str]] = json.loads(text)
    return data


# --- names and places -----------------------------------------------------------------------------


def session_name(workspace_id: str) -> str:
    """The STS role session name (`tunelab-<workspace>`): the connector's trust policy requires it, and
    the customer's CloudTrail shows which workspace acted."""
    return connector_session_name(workspace_id)


def _arn_account(role_arn: str) -> tuple[str, str]:
    parts = role_arn.split(":")
    if len(parts) < 6 or not parts[4]:
        raise ValidationFailed.of("role_arn", f"{role_arn!r} is not an IAM role ARN.")
    return parts[1], parts[4]


def execution_role_arn(connection: SageMakerConnection) -> str:
    if connection.execution_role_arn:
        return connection.execution_role_arn
    partition, account = _arn_account(connection.role_arn)
    return f"arn:{partition}:iam::{account}:role/{EXECUTION_ROLE_PREFIX}{connection.region}"


def model_prefix(identity: ModelIdentity) -> str:
    return f"{connector_prefix(identity.workspace_id)}{identity.model_name}"


def job_name(identity: ModelIdentity, attempt: int = 0) -> str:
    """The training job's name: the model's name and a digest of its record (workspace, name, creation
    time), so no two workspaces' models, nor a model and the one made again under its name, share a job;
    a resume (`attempt` n) its own digest, as SageMaker never reuses a job's name."""
    parts = [f"attempt-{attempt}"] if attempt else []
    return derived_name(identity.model_name, identity.digest("sagemaker-job", *parts))


def job_id(job_arn: str) -> str:
    """What the record keeps to find its job from an event: the job's ARN (partition, region, account and
    name), lower-cased as SageMaker writes names in ARNs. A bare name would match another workspace's
    job of the same name; the ARN matches only the job in this account and region."""
    return job_arn.lower()


def model_data_path(folder: str | None) -> str:
    """Where the serving container finds the model: SageMaker unpacks `ModelDataUrl` into `/opt/ml/model`;
    `folder` is the model's folder inside that archive (None: its root)."""
    return f"{MODEL_DATA_DIR}/{folder.strip('/')}" if folder else MODEL_DATA_DIR


def endpoint_name(request: DeployRequest) -> str:
    """One name for the model, endpoint configuration and endpoint of one deploy request."""
    return derived_name(request.identity.model_name, request.deploy_digest(), digest_len=8)


def record_tag(identity: ModelIdentity) -> str:
    return identity.digest("record")[:32]


def _tags(identity: ModelIdentity, extra: Mapping[str, str]) -> list[TagTypeDef]:
    # The connector's role may create, change and delete only resources tagged PROVIDER_RESOURCE_TAG.
    tags = {**extra, PROVIDER_RESOURCE_TAG: identity.workspace_id, MODEL_TAG: identity.model_name}
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def _s3_channel(name: str, uri: str) -> ChannelTypeDef:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": uri,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
        "InputMode": "File",
    }


# --- the trainer's source ---------------------------------------------------------------------------

_SKIPPED = re.compile(r"(^|/)(__pycache__|\.pytest_cache|\.mypy_cache)(/|$)|\.pyc$")


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    return info


def build_trainer_archive(trainer_dir: Path) -> bytes:
    """`sourcedir.tar.gz` of the trainer: the same bytes for the same files (sorted, no timestamps)."""
    if not (trainer_dir / TRAINER_PROGRAM).is_file():
        raise ProviderError(f"The trainer is missing: {trainer_dir / TRAINER_PROGRAM} does not exist.")
    files = [
        (path.relative_to(trainer_dir).as_posix(), path.read_bytes())
        for path in trainer_dir.rglob("*")
        if path.is_file()
    ]
    return _pack(files)


def _pack(files: list[tuple[str, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in sorted(files):
            if not _SKIPPED.search(name):
                tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as archive:
        archive.write(raw.getvalue())
    return packed.getvalue()


# --- reading SageMaker's answers and events -----------------------------------------------------------


def _key(status: str) -> str:
    # Events spell statuses both "InService" and "IN_SERVICE".
    return status.replace("_", "").lower()


def training_state(job: Mapping[str, Any]) -> TrainingState:
    """A TrainingState from DescribeTrainingJob or the "Training Job State Change" event's detail."""
    raw = job.get("TrainingJobStatus")
    if not isinstance(raw, str):
        raise UnhandledEventError("no TrainingJobStatus in the event")
    try:
        status = _TRAINING_STATUS[_key(raw)]
    except KeyError:
        raise UnhandledEventError(f"unknown SageMaker training status {raw!r}") from None
    secondary = job.get("SecondaryStatus") if isinstance(job.get("SecondaryStatus"), str) else None
    failure = job.get("FailureReason") or None
    if status == "stopped" and secondary in _TIME_LIMIT_STATUSES:
        # Nobody asked for this stop: the job ran out of time, which the user sees as a failure.
        status = "failed"
        limit = _TIME_LIMIT_STATUSES[secondary]
        failure = failure or f"The training job ran past its time limit ({limit}) and was stopped."
    artifacts = job.get("ModelArtifacts") or {}
    terminal = status in ("completed", "failed", "stopped")
    return TrainingState(
        job_id=str(job.get("TrainingJobName", "")),
        status=status,
        phase=secondary,
        failure_reason=str(failure) if failure and status == "failed" else None,
        metrics=final_metrics(job.get("FinalMetricDataList")),
        artifacts_uri=artifacts.get("S3ModelArtifacts") if status == "completed" else None,
        ended_at=event_time(job.get("TrainingEndTime")) if terminal else None,
        billable_seconds=_billable_seconds(job.get("BillableTimeInSeconds")) if terminal else None,
    )


def _billable_seconds(value: Any) -> int | None:
    # Wall-clock seconds per instance (the bill multiplies by the instance count); absent until it ends.
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def endpoint_state(endpoint: Mapping[str, Any]) -> DeploymentState:
    """A DeploymentState from DescribeEndpoint or the "Endpoint State Change" event's detail."""
    raw = endpoint.get("EndpointStatus")
    if not isinstance(raw, str):
        raise UnhandledEventError("no EndpointStatus in the event")
    try:
        status = _ENDPOINT_STATUS[_key(raw)]
    except KeyError:
        raise UnhandledEventError(f"unknown SageMaker endpoint status {raw!r}") from None
    reason = endpoint.get("FailureReason") if status == "failed" else None
    return DeploymentState(deployment_id=str(endpoint.get("EndpointName", "")), status=status, reason=reason)


def sagemaker_training_state(job: Mapping[str, Any]) -> TrainingState:
    """`training_state` of a SageMaker job, its `job_id` the job's ARN (`job_id`): events and
    DescribeTrainingJob both carry `TrainingJobArn`."""
    arn = job.get("TrainingJobArn")
    if not isinstance(arn, str) or not arn.startswith("arn:"):
        raise UnhandledEventError("no TrainingJobArn in the SageMaker training job's detail")
    state = training_state(job)
    # Records made before jobs were known by their ARN keep the bare name (their jobs had the model's
    # name, and every new job's name carries a digest, so only those old records can match it).
    return state.model_copy(update={"job_id": job_id(arn), "former_job_id": state.job_id or None})


def parse_event(detail_type: str, detail: Mapping[str, Any]) -> TrainingState | DeploymentState:
    """SageMaker's EventBridge events: "Training Job State Change" and "Endpoint State Change"."""
    if detail_type == TRAINING_EVENT:
        return sagemaker_training_state(detail)
    if detail_type == ENDPOINT_EVENT:
        return endpoint_state(detail)
    raise UnhandledEventError(f"SageMaker events of type {detail_type!r} are not handled")


# --- the customer's credentials -------------------------------------------------------------------------


def _assume(
    base: boto3.Session, connection: SageMakerConnection, name: str
) -> tuple[boto3.Session, datetime]:
    sts: STSClient = base.client("sts", region_name=connection.region)
    with aws_call(
        f"Assuming the role {connection.role_arn}", permission="sts:AssumeRole (trust policy, external id)"
    ):
        answer = sts.assume_role(
            RoleArn=connection.role_arn,
            RoleSessionName=name,
            ExternalId=connection.external_id,
            DurationSeconds=ASSUME_ROLE_SECONDS,
        )
    creds = answer["Credentials"]
    session = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=connection.region,
    )
    return session, creds["Expiration"]


# --- the provider --------------------------------------------------------------------------------------


class SageMakerProvider:
    """SageMaker in the customer's account, behind `TrainingProvider`."""

    name: ProviderName = "sagemaker"
    training_timeout_s = DEFAULT_MAX_RUNTIME_S + STARTUP_MARGIN_S

    def __init__(
        self,
        config: SageMakerConfig,
        *,
        session: boto3.Session | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.connection = config.connection
        self._base = session
        self._now = now
        self._lock = threading.Lock()
        # The customer's credentials, kept until shortly before they expire: the composition root
        # keeps one provider per workspace, so a warm Lambda assumes the role once an hour, not per call.
        self._session: boto3.Session | None = None
        self._expires: datetime | None = None
        self._clients: dict[str, Any] = {}
        self._clients_of: boto3.Session | None = None
        self._storage: S3Objects | None = None

    def session(self) -> boto3.Session:
        """A session in the customer's account (the role assumed with the external id)."""
        with self._lock:
            if (
                self._session is None
                or self._expires is None
                or self._expires - self._now() <= timedelta(seconds=REFRESH_MARGIN_S)
            ):
                self._session, self._expires = _assume(
                    self._base or boto3.Session(), self.connection, session_name(self.config.workspace_id)
                )
            return self._session

    def _client(self, service: str) -> Any:
        session = self.session()
        if session is not self._clients_of:
            # New credentials: clients made with the old ones must not be reused.
            self._clients = {}
            self._clients_of = session
        if service not in self._clients:
            # SigV4 for S3: presigned download links then carry an explicit expiry (X-Amz-Expires).
            config = Config(signature_version="s3v4") if service == "s3" else None
            self._clients[service] = session.client(  # type: ignore[call-overload]
                service, region_name=self.connection.region, config=config
            )
        return self._clients[service]

    @property
    def sagemaker(self) -> SageMakerClient:
        client: SageMakerClient = self._client("sagemaker")
        return client

    @property
    def runtime(self) -> SageMakerRuntimeClient:
        client: SageMakerRuntimeClient = self._client("sagemaker-runtime")
        return client

    @property
    def s3(self) -> S3Client:
        client: S3Client = self._client("s3")
        return client

    @property
    def secrets(self) -> SecretsManagerClient:
        client: SecretsManagerClient = self._client("secretsmanager")
        return client

    @property
    def logs(self) -> Any:
        """CloudWatch Logs in the customer's account (no stubs for it are installed: untyped)."""
        return self._client("logs")

    # --- training ---

    def _bucket_uri(self, key: str) -> str:
        return f"s3://{self.connection.artifact_bucket}/{key}"

    def trainer_archive(self) -> bytes:
        """The trainer as sourcedir.tar.gz, from its folder."""
        return _trainer_archive(self.config.trainer_dir)

    def ensure_trainer_source(self) -> str:
        """Upload the trainer's sourcedir.tar.gz once per version (named by its digest); its S3 URI."""
        archive = self.trainer_archive()
        digest = hashlib.sha256(archive).hexdigest()[:16]
        key = f"{connector_prefix(self.config.workspace_id)}trainer/{digest}/sourcedir.tar.gz"
        bucket = self.connection.artifact_bucket
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if not is_not_found(error) and error_code(error) != "403":
                with aws_call("Checking the trainer in the artifact bucket", permission="s3:GetObject"):
                    raise
            with aws_call(
                "Uploading the trainer to the artifact bucket", permission=f"s3:PutObject on {bucket}"
            ):
                self.s3.put_object(Bucket=bucket, Key=key, Body=archive, ContentType="application/gzip")
        return self._bucket_uri(key)

    @property
    def storage(self) -> S3Objects:
        """The customer's artifact bucket, through their role: the job in their account reads only there.

        Over the current S3 client: when the role's credentials are renewed, so is the storage's client
        (one made with the old credentials would fail once they expire)."""
        client = self.s3
        if self._storage is None or self._storage.client is not client:
            self._storage = S3Objects(client)
        return self._storage

    def training_data_folder(self, identity: ModelIdentity, uid: str, base_model: BaseModelSpec) -> str:
        return self._bucket_uri(f"{model_prefix(identity)}/data/{uid}/")

    def check_new_job(self, identity: ModelIdentity) -> None:
        """`NameTaken` when a training job of the model's job name exists in the customer's account and
        region and is not this model's: checked when the model is created, before any workflow starts."""
        self._existing_job(job_name(identity), identity)

    def training_hyperparameters(
        self,
        spec: BaseModelSpec,
        hyperparameters: ResolvedHyperparameters,
        optional: ResolvedOptionalHyperparameters | None,
        *,
        provider_split_percent: float | None,
    ) -> dict[str, str]:
        """The trainer's hyperparameters (`trainer/`'s contract: tunelab's names, as strings)."""
        return to_trainer_hyperparameters(hyperparameters, optional)

    def trained_output(
        self,
        ref: TrainingJobRef | None,
        *,
        artifacts_uri: str | None,
        model_ref: str | None,
        merged: bool,
    ) -> TrainedOutput:
        """The job's `model.tar.gz` in the customer's bucket, listed; for LoRA not merged, the merged copy
        the trainer wrote to the job's `output.tar.gz` (`<S3OutputPath>/<job>/output/`), checked and
        listed."""
        # Described once for what the outcome may lack: the archive, and the billable time.
        described = self.describe_training(ref) if ref is not None else None
        if artifacts_uri is None and described is not None:
            artifacts_uri = described.artifacts_uri
        output = archive_output(
            self.storage,
            artifacts_uri,
            model_ref=None,
            merged=merged,
            output_uri=output_archive_uri(ref, artifacts_uri),
        )
        if described is None or described.billable_seconds is None:
            return output
        return output.model_copy(update={"billable_seconds": described.billable_seconds})

    def speaks_for(self, account: str | None) -> bool:
        """Only the customer's own account may speak for its models (forwarded events name it; moto,
        the local runtime's AWS, names none)."""
        return account is None or account == self.connection.account

    def _existing_job(self, name: str, identity: ModelIdentity) -> TrainingJobRef | None:
        """The job of that name if it is this model's (a retry); NameTaken if someone else's."""
        try:
            job = self.sagemaker.describe_training_job(TrainingJobName=name)
        except ClientError as error:
            if is_not_found(error):
                return None
            with aws_call(f"Looking for the training job {name}", permission="sagemaker:DescribeTrainingJob"):
                raise
        if job.get("Environment", {}).get(RECORD_ENV) == record_tag(identity):
            return TrainingJobRef(
                provider="sagemaker",
                job_id=job_id(job["TrainingJobArn"]),
                job_name=name,
                output_uri=job["OutputDataConfig"]["S3OutputPath"],
            )
        raise NameTaken(
            f"A SageMaker training job named '{name}' already exists in your AWS account "
            f"({self.connection.region}); choose another name for the fine-tuned model.",
        )

    def training_job_request(
        self, request: TrainingRequest, source_uri: str
    ) -> CreateTrainingJobRequestTypeDef:
        """The CreateTrainingJob request for `request` (no call made)."""
        spec = request.base_model
        identity = request.identity
        if spec.provider != "sagemaker" or not spec.hf_id:
            raise ValidationFailed.of("base_model_id", f"{spec.id} is not a SageMaker model.")
        if request.resources is None:
            raise ValidationFailed.of(
                "resources",
                "A SageMaker job needs resources: instance_type, instance_count and volume_size_gb.",
            )
        secret = self.connection.hf_token_secret_arn
        if spec.gated and not secret:
            raise ValidationFailed.of(
                "base_model_id",
                f"{spec.name} is a gated Hugging Face model: accept its license on huggingface.co, store "
                "your Hugging Face token as a secret in Secrets Manager in your AWS account, and add the "
                "secret's ARN to the SageMaker connection (hf_token_secret_arn).",
            )
        region = self.connection.region
        name = job_name(identity, request.attempt)
        hyperparameters = dict(request.hyperparameters)
        hyperparameters.setdefault("base_model", spec.hf_id)
        if request.resources.distribution == "fsdp":
            # The memory model found that one GPU cannot hold the job: the trainer shards it.
            hyperparameters["distribution"] = "fsdp"
        if spec.gated and secret:
            hyperparameters["hf_token_secret_arn"] = secret
        # The training toolkit's own parameters, JSON-encoded as the SDK's estimators send them.
        hyperparameters.update(
            {
                "sagemaker_program": json.dumps(TRAINER_PROGRAM),
                "sagemaker_submit_directory": json.dumps(source_uri),
                "sagemaker_region": json.dumps(region),
                "sagemaker_job_name": json.dumps(name),
                "sagemaker_container_log_level": "20",
            }
        )
        channels = [_s3_channel("training", request.training_data_uri)]
        if request.validation_data_uri:
            channels.append(_s3_channel("validation", request.validation_data_uri))
        if request.parent and request.parent.checkpoint:
            channels.append(_s3_channel("model", self._parent_checkpoint_uri(request.parent)))
        elif request.parent and request.parent.artifacts_uri:
            channels.append(_s3_channel("model", request.parent.artifacts_uri))
        prefix = model_prefix(identity)
        resource_config: ResourceConfigTypeDef = {
            "InstanceType": cast("TrainingInstanceTypeType", request.resources.instance_type),
            "InstanceCount": request.resources.instance_count,
            "VolumeSizeInGB": request.resources.volume_size_gb,
        }
        runtime = min(request.max_runtime_s or DEFAULT_MAX_RUNTIME_S, MAX_RUNTIME_LIMIT_S)
        return {
            "TrainingJobName": name,
            "HyperParameters": hyperparameters,
            "AlgorithmSpecification": {
                "TrainingImage": training_image(region),
                "TrainingInputMode": "File",
                "MetricDefinitions": [{"Name": m["Name"], "Regex": m["Regex"]} for m in metric_definitions()],
                "EnableSageMakerMetricsTimeSeries": True,
            },
            "RoleArn": execution_role_arn(self.connection),
            "InputDataConfig": channels,
            "OutputDataConfig": {"S3OutputPath": self._bucket_uri(f"{prefix}/output")},
            "ResourceConfig": resource_config,
            "StoppingCondition": {"MaxRuntimeInSeconds": runtime},
            "CheckpointConfig": {
                "S3Uri": self.checkpoint_uri(identity),
                "LocalPath": CHECKPOINT_LOCAL_PATH,
            },
            "EnableManagedSpotTraining": False,
            "Environment": {RECORD_ENV: record_tag(identity)},
            "Tags": _tags(identity, request.tags),
        }

    def start_training(self, request: TrainingRequest) -> TrainingJobRef:
        # A resume's job (`attempt` > 0) has the same CheckpointConfig: SageMaker copies the model's
        # checkpoints to /opt/ml/checkpoints before the trainer starts, and the trainer resumes.
        name = job_name(request.identity, request.attempt)
        # Checked before anything is uploaded: a bad request costs no S3 write.
        self.training_job_request(request, "s3://placeholder/sourcedir.tar.gz")
        existing = self._existing_job(name, request.identity)
        if existing:
            return existing
        params = self.training_job_request(request, self.ensure_trainer_source())
        try:
            created = self.sagemaker.create_training_job(**params)
        except ClientError as error:
            if error_code(error) in {"ResourceInUse", "ResourceInUseException"}:
                # Created between our look and our call: ours (a concurrent retry) or someone else's.
                existing = self._existing_job(name, request.identity)
                if existing:
                    return existing
            with aws_call(
                f"Starting the SageMaker training job {name}",
                permission="sagemaker:CreateTrainingJob and iam:PassRole on the execution role",
            ):
                raise
        return TrainingJobRef(
            provider="sagemaker",
            job_id=job_id(created["TrainingJobArn"]),
            job_name=name,
            output_uri=params["OutputDataConfig"]["S3OutputPath"],
        )

    def checkpoint_uri(self, identity: ModelIdentity) -> str:
        """Where every job of the model syncs /opt/ml/checkpoints (the CheckpointConfig's S3Uri)."""
        return self._bucket_uri(f"{model_prefix(identity)}/checkpoints/")

    def resume_point(self, identity: ModelIdentity, attempt: int) -> ResumePoint | None:
        """The newest complete checkpoint (`checkpoint-<step>/trainer_state.json`) under the model's
        checkpoint location, which all its jobs share."""
        bucket, prefix = s3_split(self.checkpoint_uri(identity))
        found: list[tuple[int, str]] = []
        with aws_call(
            f"Listing the checkpoints in {self.checkpoint_uri(identity)}", permission="s3:ListBucket"
        ):
            for key in self._keys(bucket, prefix):
                parts = key[len(prefix) :].split("/")
                if len(parts) == 2 and parts[1] == "trainer_state.json":
                    step = parts[0].removeprefix("checkpoint-")
                    if parts[0].startswith("checkpoint-") and step.isdigit():
                        found.append((int(step), parts[0]))
        if not found:
            return None
        _, checkpoint = max(found)
        with aws_call(f"Reading the checkpoint {checkpoint}", permission="s3:GetObject"):
            body = self.s3.get_object(Bucket=bucket, Key=f"{prefix}{checkpoint}/trainer_state.json")["Body"]
            try:
                state = json.loads(body.read())
            except ValueError:
                state = {}
        return resume_point_of(checkpoint, state if isinstance(state, dict) else {})

    def stop_training(self, ref: TrainingJobRef) -> None:
        try:
            self.sagemaker.stop_training_job(TrainingJobName=ref.job_name)
        except ClientError as error:
            # A job that already ended cannot be stopped (ValidationException): nothing to do.
            if error_code(error) == "ValidationException" and self.describe_training(ref).terminal:
                return
            with aws_call(
                f"Stopping the training job {ref.job_name}", permission="sagemaker:StopTrainingJob"
            ):
                raise

    def describe_training(self, ref: TrainingJobRef) -> TrainingState:
        with aws_call(f"Reading the training job {ref.job_name}", permission="sagemaker:DescribeTrainingJob"):
            job = self.sagemaker.describe_training_job(TrainingJobName=ref.job_name)
        return sagemaker_training_state(dict(job))

    # --- the training log ---

    def _log_streams(self, job: str) -> list[str]:
        """The job's log streams (one per instance) by name; none before SageMaker made its group."""
        names: list[str] = []
        try:
            pages = self.logs.get_paginator("describe_log_streams").paginate(
                logGroupName=TRAINING_LOG_GROUP, logStreamNamePrefix=f"{job}/"
            )
            for page in pages:
                names.extend(s["logStreamName"] for s in page.get("logStreams", []) if "logStreamName" in s)
        except ClientError as error:
            if is_not_found(error):
                return []
            with aws_call(
                f"Reading the log streams of the training job {job}",
                permission=f"logs:DescribeLogStreams on {TRAINING_LOG_GROUP}",
            ):
                raise
        return sorted(names)

    def training_log(self, ref: TrainingJobRef, *, position: str | None, limit: int) -> TrainingLogPage:
        """The job's CloudWatch log in the customer's account, stream by stream (one per instance, in
        name order); the position keeps each stream's forward token, so each line is read once, and a
        stream that grows after the next one was read is read on from where it was."""
        read = _stream_tokens(position)
        streams = self._log_streams(ref.job_name)
        lines: list[TrainingLogLine] = []
        for stream in streams:
            token = read.get(stream)
            for _ in range(LOG_READS_PER_STREAM):
                if len(lines) >= limit:
                    break
                request: dict[str, Any] = {
                    "logGroupName": TRAINING_LOG_GROUP,
                    "logStreamName": stream,
                    "startFromHead": True,
                    "limit": limit - len(lines),
                }
                if token is not None:
                    request["nextToken"] = token
                with aws_call(
                    f"Reading the log of the training job {ref.job_name}",
                    permission=f"logs:GetLogEvents on {TRAINING_LOG_GROUP}",
                ):
                    answer = self.logs.get_log_events(**request)
                lines.extend(
                    TrainingLogLine(
                        at=datetime.fromtimestamp(event["timestamp"] / 1000, UTC),
                        message=event.get("message", "").rstrip("\n"),
                    )
                    for event in answer.get("events", [])
                    if "timestamp" in event
                )
                following = answer.get("nextForwardToken")
                # The same token back means the stream's end (for now).
                done = following is None or following == token
                token = following or token
                if token is not None:
                    read[stream] = token
                if done:
                    break
            if len(lines) >= limit:
                break
        message = None if streams else "SageMaker has not written this job's log yet."
        return TrainingLogPage(lines=tuple(lines), position=encode_position(read), message=message)

    # --- deployment ---

    def _create(self, what: str, permission: str, create: Callable[[], object]) -> None:
        try:
            create()
        except ClientError as error:
            # A retry finds what the first attempt made.
            if error_code(error) == "ValidationException" and "already exist" in error_message(error).lower():
                return
            with aws_call(f"Creating the {what}", permission=permission):
                raise

    def deploy(self, request: DeployRequest) -> DeploymentRef:
        if not request.artifacts_uri:
            raise ValidationFailed(
                "A SageMaker deployment needs the model.tar.gz of a finished training job."
            )
        instance_type = request.instance_type or request.base_model.deployment.default_instance_type
        if not instance_type:
            raise ValidationFailed.of("instance_type", "Choose an instance type for the endpoint.")
        name = endpoint_name(request)
        tags = _tags(request.identity, request.tags)
        variant: ProductionVariantTypeDef = {
            "VariantName": "AllTraffic",
            "ModelName": name,
            "InstanceType": cast("ProductionVariantInstanceTypeType", instance_type),
            "InitialInstanceCount": request.instance_count,
            "ContainerStartupHealthCheckTimeoutInSeconds": STARTUP_TIMEOUT_S,
            "ModelDataDownloadTimeoutInSeconds": STARTUP_TIMEOUT_S,
        }
        region = self.connection.region
        self._create(
            f"SageMaker model {name}",
            "sagemaker:CreateModel and iam:PassRole on the execution role",
            lambda: self.sagemaker.create_model(
                ModelName=name,
                PrimaryContainer={
                    "Image": llm_inference_image(region),
                    "ModelDataUrl": request.artifacts_uri or "",
                    "Environment": {
                        # TGI serves the weights SageMaker unpacks from the archive into /opt/ml/model
                        # (for an unmerged LoRA model: the merged copy, in a folder of its output archive).
                        "HF_MODEL_ID": model_data_path(request.artifacts_path),
                        "SM_NUM_GPUS": str(request.gpus_per_instance),
                    },
                },
                ExecutionRoleArn=execution_role_arn(self.connection),
                Tags=tags,
            ),
        )
        self._create(
            f"endpoint configuration {name}",
            "sagemaker:CreateEndpointConfig",
            lambda: self.sagemaker.create_endpoint_config(
                EndpointConfigName=name,
                ProductionVariants=[variant],
                Tags=tags,
            ),
        )
        self._create(
            f"endpoint {name}",
            "sagemaker:CreateEndpoint",
            lambda: self.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name, Tags=tags),
        )
        return DeploymentRef(
            provider="sagemaker",
            kind="sagemaker_endpoint",
            deployment_id=name,
            parts={"model": name, "endpoint_config": name},
        )

    def describe_deployment(self, ref: DeploymentRef) -> DeploymentState:
        try:
            endpoint = self.sagemaker.describe_endpoint(EndpointName=ref.deployment_id)
        except ClientError as error:
            if is_not_found(error):
                return DeploymentState(deployment_id=ref.deployment_id, status="gone")
            with aws_call(
                f"Reading the endpoint {ref.deployment_id}", permission="sagemaker:DescribeEndpoint"
            ):
                raise
        return endpoint_state(dict(endpoint))

    def undeploy(self, ref: DeploymentRef) -> None:
        steps: list[tuple[str, Callable[[], object]]] = [
            ("DeleteEndpoint", lambda: self.sagemaker.delete_endpoint(EndpointName=ref.deployment_id)),
        ]
        if "endpoint_config" in ref.parts:
            config = ref.parts["endpoint_config"]
            steps.append(
                (
                    "DeleteEndpointConfig",
                    lambda: self.sagemaker.delete_endpoint_config(EndpointConfigName=config),
                )
            )
        if "model" in ref.parts:
            model = ref.parts["model"]
            steps.append(("DeleteModel", lambda: self.sagemaker.delete_model(ModelName=model)))
        for operation, delete in steps:
            try:
                delete()
            except ClientError as error:
                if is_not_found(error):
                    continue
                with aws_call(f"Undeploying {ref.deployment_id}", permission=f"sagemaker:{operation}"):
                    raise

    def invoke(self, ref: DeploymentRef, params: InvokeParams) -> InvokeResult:
        parameters: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "return_full_text": False,
            "details": True,
            "decoder_input_details": True,
        }
        # TGI refuses temperature 0 and top_p 1: greedy decoding and "no nucleus cut" are spelled by omission.
        if params.temperature > 0:
            parameters.update(do_sample=True, temperature=params.temperature)
        if params.top_p < 1:
            parameters["top_p"] = params.top_p
        body = json.dumps({"inputs": params.prompt, "parameters": parameters})
        started = time.perf_counter()
        with aws_call(
            f"The sandbox call to the endpoint {ref.deployment_id}", permission="sagemaker:InvokeEndpoint"
        ):
            response = self.runtime.invoke_endpoint(
                EndpointName=ref.deployment_id,
                ContentType="application/json",
                Accept="application/json",
                Body=body,
            )
            payload = response["Body"].read()
        latency_ms = round((time.perf_counter() - started) * 1000)
        return parse_generation(payload, latency_ms)

    # --- artifacts ---

    def download(self, artifacts_uri: str, *, expires_in_s: int = DOWNLOAD_EXPIRES_S) -> DownloadLink:
        bucket, key = s3_split(artifacts_uri)
        with aws_call(f"Reading {artifacts_uri}", permission=f"s3:GetObject on {bucket}"):
            head = self.s3.head_object(Bucket=bucket, Key=key)
            url = self.s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in_s
            )
        return DownloadLink(
            url=url,
            expires_at=datetime.now(UTC) + timedelta(seconds=expires_in_s),
            size_bytes=int(head.get("ContentLength", 0)),
        )

    def _checkpoint_folder(self, job_name: str) -> tuple[str, str] | None:
        """Where the job syncs its checkpoints (its CheckpointConfig), as bucket and key prefix."""
        with aws_call(f"Reading the training job {job_name}", permission="sagemaker:DescribeTrainingJob"):
            job = self.sagemaker.describe_training_job(TrainingJobName=job_name)
        uri = (job.get("CheckpointConfig") or {}).get("S3Uri")
        if not uri:
            return None
        bucket, key = s3_split(uri)
        return bucket, key if not key or key.endswith("/") else f"{key}/"

    def _parent_checkpoint_uri(self, parent: ParentModel) -> str:
        """The S3 folder of the parent job's checkpoint (where its CheckpointConfig synced it)."""
        folder = self._checkpoint_folder(parent.checkpoint_job or "")
        if folder is None:
            raise ProviderError(
                f"The training job {parent.checkpoint_job} kept no checkpoints to start from."
            )
        return f"s3://{folder[0]}/{folder[1]}{parent.checkpoint}/"

    def evaluation_report(self, ref: TrainingJobRef) -> EvaluationReport | EvaluationSkipped | None:
        """The trainer's `tunelab-evaluation.json` where the job synced its checkpoint folder (a plain object
        in the customer's bucket: one GetObject through the connector role, whatever the model's size)."""
        folder = self._checkpoint_folder(ref.job_name)
        if folder is None:
            return None
        bucket, prefix = folder
        key = f"{prefix}{REPORT_FILE}"
        with aws_call(f"Reading s3://{bucket}/{key}", permission=f"s3:GetObject on {bucket}"):
            try:
                body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError as error:
                if is_not_found(error):
                    return None
                raise
        return evaluation_of(body, f"s3://{bucket}/{key}")

    def checkpoints(self, ref: TrainingJobRef) -> CheckpointList:
        """The `checkpoint-<step>/` folders the job synced to the customer's bucket (its CheckpointConfig),
        each read from its `trainer_state.json`, through the connector role."""
        folder = self._checkpoint_folder(ref.job_name)
        if folder is None:
            return CheckpointList(message="This training job was started without a checkpoint folder.")
        bucket, prefix = folder
        sizes: dict[str, int] = {}
        states: dict[str, datetime | None] = {}
        with aws_call(f"Listing s3://{bucket}/{prefix}", permission=f"s3:ListBucket on {bucket}"):
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    name, _, rest = item["Key"][len(prefix) :].partition("/")
                    if checkpoint_step(name) is None or not rest:
                        continue
                    sizes[name] = sizes.get(name, 0) + int(item.get("Size", 0))
                    if rest == "trainer_state.json":
                        states[name] = item.get("LastModified")
        found = []
        for name, saved_at in states.items():
            key = f"{prefix}{name}/trainer_state.json"
            with aws_call(f"Reading s3://{bucket}/{key}", permission=f"s3:GetObject on {bucket}"):
                body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            info = checkpoint_info(name, body, saved_at=saved_at, size_bytes=sizes[name])
            if info is not None:
                found.append(info)
        message = None if found else "The training job has not synced a checkpoint to your bucket yet."
        return CheckpointList(items=by_step(found), message=message)

    def checkpoint_download(
        self, ref: TrainingJobRef, checkpoint_id: str, *, expires_in_s: int = DOWNLOAD_EXPIRES_S
    ) -> DownloadLink:
        """Not offered: a SageMaker checkpoint is a folder of objects in the customer's own bucket, which
        tunelab does not pack into one archive; the folder is named in the message."""
        if not any(item.id == checkpoint_id for item in self.checkpoints(ref).items):
            raise unknown_checkpoint(checkpoint_id)
        folder = self._checkpoint_folder(ref.job_name)
        where = f"s3://{folder[0]}/{folder[1]}{checkpoint_id}/" if folder else "your bucket"
        raise ValidationFailed(
            "tunelab does not pack SageMaker checkpoints into an archive: the checkpoint is a folder in "
            f"your own bucket, {where}; copy it from there (e.g. aws s3 cp --recursive)."
        )

    def _keys(self, bucket: str, prefix: str) -> Iterator[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"]

    def delete_model(self, model: TrainedModel) -> None:
        """Delete what the job wrote (output and checkpoints) and the job itself, freeing its name.

        Only the job the record names is deleted: a model whose job was never recorded has none here
        (a name alone could be another workspace's job in a shared account)."""
        bucket = self.connection.artifact_bucket
        base = model_prefix(model.identity)
        job = model.job.job_name if model.job else None
        # The jobs of the attempts before a resume: named from the record, as the latest one is.
        earlier = [job_name(model.identity, attempt) for attempt in range(model.attempt)] if job else []
        prefixes = [f"{base}/checkpoints/"] + [f"{base}/output/{name}/" for name in [*earlier, job] if name]
        with aws_call(
            f"Deleting the artifacts of {model.identity.model_name}",
            permission=f"s3:ListBucket and s3:DeleteObject on {bucket}",
        ):
            for prefix in prefixes:
                batch: list[str] = []
                for key in self._keys(bucket, prefix):
                    batch.append(key)
                    if len(batch) == 1000:
                        self._delete_keys(bucket, batch)
                        batch = []
                if batch:
                    self._delete_keys(bucket, batch)
        if job is None:
            return
        for name in [*earlier, job]:
            try:
                self.sagemaker.delete_training_job(TrainingJobName=name)
            except ClientError as error:
                if is_not_found(error):
                    continue
                with aws_call(f"Deleting the training job {name}", permission="sagemaker:DeleteTrainingJob"):
                    raise

    def _delete_keys(self, bucket: str, keys: list[str]) -> None:
        answer = self.s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
        )
        errors = answer.get("Errors", [])
        if errors:
            first = errors[0]
            raise ProviderError(f"Could not delete s3://{bucket}/{first.get('Key')}: {first.get('Message')}")


def parse_generation(payload: bytes, latency_ms: int) -> InvokeResult:
    """TGI's answer (a list or one object with `generated_text` and `details`) as an InvokeResult."""
    try:
        data = json.loads(payload)
    except ValueError:
        raise ProviderError("The endpoint answered with something that is not JSON.") from None
    item = data[0] if isinstance(data, list) and data else data
    if not isinstance(item, Mapping) or not isinstance(item.get("generated_text"), str):
        raise ProviderError(
            "The endpoint's answer has no generated_text; is it serving a text-generation model?"
        )
    details = item.get("details") if isinstance(item.get("details"), Mapping) else {}
    assert isinstance(details, Mapping)
    prefill = details.get("prefill")
    return InvokeResult(
        completion=item["generated_text"],
        input_tokens=len(prefill) if isinstance(prefill, list) else 0,
        output_tokens=int(details.get("generated_tokens", 0) or 0),
        latency_ms=latency_ms,
    )


# One archive per version of the trainer's files (a warm Lambda packs it once; the key changes with them).
@cache
def _trainer_archive_cached(path: str, stamp: tuple[tuple[str, float], ...]) -> bytes:
    return build_trainer_archive(Path(path))


def _trainer_archive(trainer_dir: Path) -> bytes:
    # Rebuilt when a file changes (the local runtime edits the trainer while running).
    stamp = tuple(sorted((p.as_posix(), p.stat().st_mtime) for p in trainer_dir.rglob("*") if p.is_file()))
    return _trainer_archive_cached(str(trainer_dir), stamp)


def _stream_tokens(position: str | None) -> dict[str, str]:
    """Each stream's forward token from a position `training_log` made."""
    if position is None:
        return {}
    read = decode_position(position)
    if not isinstance(read, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in read.items()
    ):
        raise bad_log_token()
    return dict(read)


# --- verifying a connection -------------------------------------------------------------------------------


def _check(
    name: str, run: Callable[[], object], explain: Callable[[ClientError], str]
) -> ConnectionCheckItem:
    try:
        run()
    except ClientError as error:
        return ConnectionCheckItem(name=name, ok=False, message=explain(error))
    return ConnectionCheckItem(name=name, ok=True, message="ok")


def _denied(error: ClientError) -> bool:
    return error_code(error) in ACCESS_DENIED_CODES


def verify_connection(
    connection: SageMakerConnection, workspace_id: str, *, base: boto3.Session | None = None
) -> ConnectionCheck:
    """Assume the role and check each permission the jobs need; says what failed and what to do.

    It never reads the hf_token secret's value (DescribeSecret only). A region without tunelab's
    training image (or no region of AWS at all) is `ValidationFailed` on `region` before any call.
    """
    training_image(connection.region)
    checks: list[ConnectionCheckItem] = []
    try:
        session, _ = _assume(base or boto3.Session(), connection, session_name(workspace_id))
    except ProviderTransientError:
        raise
    except TunelabError as error:
        message = (
            f"tunelab could not assume the role {connection.role_arn}: {error.message} Check that the "
            "connector stack was deployed with the parameters GET /v1/providers/sagemaker/connector "
            "shows for this workspace (workspace id, external id, tunelab's role ARNs)."
        )
        checks.append(ConnectionCheckItem(name="sts:AssumeRole", ok=False, message=message))
        return ConnectionCheck(ok=False, message=message, checks=checks)
    checks.append(ConnectionCheckItem(name="sts:AssumeRole", ok=True, message="ok"))

    region = connection.region
    bucket = connection.artifact_bucket
    folder = connector_prefix(workspace_id)
    s3: S3Client = session.client("s3", region_name=region)
    sagemaker: SageMakerClient = session.client("sagemaker", region_name=region)

    def bucket_problem(error: ClientError) -> str:
        if error_code(error) in {"404", "NoSuchBucket", "NotFound"}:
            return f"The artifact bucket {bucket} does not exist; create it in {region} or fix its name."
        if _denied(error):
            return (
                f"The role cannot read the artifact bucket {bucket}: it needs s3:ListBucket on "
                f"arn:aws:s3:::{bucket} for the prefix {folder}."
            )
        return f"The artifact bucket {bucket} cannot be used: {error_message(error)}"

    def list_bucket() -> None:
        # Listing the workspace's folder only: the connector allows s3:ListBucket with that prefix
        # (HeadBucket would need it unconditioned).
        s3.list_objects_v2(Bucket=bucket, Prefix=folder, MaxKeys=1)

    checks.append(_check("s3:ListBucket", list_bucket, bucket_problem))
    if checks[-1].ok:
        checks.append(
            _check(
                "s3:PutObject",
                lambda: s3.put_object(Bucket=bucket, Key=f"{folder}.connection-check", Body=b"ok"),
                lambda e: (
                    f"The role cannot write to the artifact bucket {bucket}: it needs s3:PutObject on "
                    f"arn:aws:s3:::{bucket}/{folder}*."
                    if _denied(e)
                    else f"Writing to the artifact bucket {bucket} failed: {error_message(e)}"
                ),
            )
        )

    def describe_probe() -> None:
        # A name no job has: allowed answers "not found", a missing permission "access denied".
        try:
            sagemaker.describe_training_job(TrainingJobName="tunelab-connection-check")
        except ClientError as error:
            if not is_not_found(error):
                raise

    checks.append(
        _check(
            "sagemaker:DescribeTrainingJob",
            describe_probe,
            lambda e: (
                f"The role cannot use SageMaker in {region}: it needs sagemaker:DescribeTrainingJob "
                "(and the other SageMaker permissions of the connector stack)."
                if _denied(e)
                else f"SageMaker in {region} cannot be used: {error_message(e)}"
            ),
        )
    )
    secret = connection.hf_token_secret_arn
    if secret:
        secrets: SecretsManagerClient = session.client("secretsmanager", region_name=region)
        checks.append(
            _check(
                "secretsmanager:DescribeSecret",
                lambda: secrets.describe_secret(SecretId=secret),
                lambda e: (
                    f"The hf_token secret {secret} does not exist; store your Hugging Face token there "
                    "or fix the ARN."
                    if is_not_found(e)
                    else (
                        "The role cannot see the hf_token secret: it needs secretsmanager:DescribeSecret "
                        f"on {secret}."
                    )
                    if _denied(e)
                    else f"The hf_token secret {secret} cannot be used: {error_message(e)}"
                ),
            )
        )
    failed = [c for c in checks if not c.ok]
    if failed:
        more = (
            f" ({len(failed) - 1} more problem{'s' if len(failed) > 2 else ''} below.)"
            if len(failed) > 1
            else ""
        )
        return ConnectionCheck(ok=False, message=failed[0].message + more, checks=checks)
    secret_part = " and can see the hf_token secret" if secret else ""
    return ConnectionCheck(
        ok=True,
        message=(
            f"Connected: tunelab can assume the role, use the artifact bucket {bucket} and SageMaker in "
            f"{region}{secret_part}."
        ),
        checks=checks,
    )
