"""Bedrock ("served by the platform"): model customization, deployments and the Converse sandbox.

Everything runs in the platform's own AWS account, so names must be unique across workspaces:
they carry a digest of the model record. Request shapes follow the Bedrock API reference
(CreateModelCustomizationJob, CreateCustomModelDeployment, CreateProvisionedModelThroughput,
Converse).

AWS fine-tunes each model in a few regions only (Nova in us-east-1, Llama in us-west-2), so a job runs
in the model's training region (`BaseModelSpec.training_region`): the platform's own region where the
model trains there, else a region whose stack the CDK app deployed (`BedrockConfig.regional_buckets`).
The prepared data and the job's output go to a bucket in the job's region; everything after the job —
the custom model, its deployment, the Converse calls, the deletion — happens in the region its ARN
names, so a record written before a region was added is still found where it is.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from tunelab.adapters.aws_errors import CONFLICT_CODES, aws_call, error_code, is_not_found
from tunelab.adapters.s3 import S3Objects
from tunelab.domain.catalog import BaseModelSpec
from tunelab.domain.checkpoints import CheckpointList
from tunelab.domain.errors import Conflict, ValidationFailed
from tunelab.domain.evaluation import EvaluationReport, EvaluationSkipped
from tunelab.domain.hyperparameters import (
    ResolvedHyperparameters,
    ResolvedOptionalHyperparameters,
    to_provider_params,
)
from tunelab.domain.layout import (
    BEDROCK_OUTPUT_PREFIX,
    MODEL_TAG,
    PROVIDER_RESOURCE_TAG,
    TRAINING_DATA_PREFIX,
)
from tunelab.domain.providers import (
    DeploymentRef,
    DeploymentState,
    DeploymentStatus,
    DeployRequest,
    DownloadLink,
    InvokeParams,
    InvokeResult,
    ModelIdentity,
    ProviderName,
    ResumePoint,
    TrainedModel,
    TrainedOutput,
    TrainingJobRef,
    TrainingMetrics,
    TrainingRequest,
    TrainingState,
    TrainingStatus,
    UnhandledEventError,
    derived_name,
)
from tunelab.domain.training_logs import TrainingLogPage

if TYPE_CHECKING:
    from mypy_boto3_bedrock import BedrockClient
    from mypy_boto3_bedrock.type_defs import CreateModelCustomizationJobRequestTypeDef, TagTypeDef
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

# Why a Bedrock model has no evaluation (GET .../evaluation says it).
NOT_EVALUATED = (
    "Bedrock trains the model itself, so no tunelab trainer runs after the job to compare the model with "
    "its base, and tunelab does not evaluate Bedrock models through Converse yet; deploy it and compare "
    "answers in the sandbox. Models trained on SageMaker (BYOK) or locally are evaluated after training."
)
_NO_CHECKPOINTS = (
    "Bedrock keeps no checkpoints of its customization jobs that tunelab could list or download; models "
    "trained on SageMaker (BYOK) or locally keep theirs."
)


JOB_EVENT = "Model Customization Job State Change"
# Bedrock states no limit on a customization job: the workflow waits a week.
TRAINING_TIMEOUT_S = 7 * 24 * 3600


class BedrockConfig(BaseModel):
    """The platform's own account: the service role Bedrock assumes to read training data and write
    output, the artifacts bucket in the platform's region, and a data bucket in each other region the
    deployment trains in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    region: str
    service_role_arn: str
    output_bucket: str
    output_prefix: str = BEDROCK_OUTPUT_PREFIX.rstrip("/")
    # Bedrock regions besides `region`, each with its data bucket (the CDK app's regional stacks).
    regional_buckets: dict[str, str] = Field(default_factory=dict)

    @property
    def other_regions(self) -> tuple[str, ...]:
        return tuple(sorted(self.regional_buckets))

    def bucket_in(self, region: str) -> str:
        """The bucket a job in `region` reads its data from and writes its output to."""
        if region == self.region:
            return self.output_bucket
        try:
            return self.regional_buckets[region]
        except KeyError:
            reached = ", ".join((self.region, *self.other_regions))
            raise ValidationFailed(
                f"This deployment no longer reaches Bedrock in {region} (it does in {reached}); its "
                "operator must add the region again to use what is there."
            ) from None


_JOB_STATUS: dict[str, TrainingStatus] = {
    "InProgress": "in_progress",
    "Completed": "completed",
    "Failed": "failed",
    "Stopping": "stopping",
    "Stopped": "stopped",
}
_DEPLOYMENT_STATUS: dict[str, DeploymentStatus] = {
    "Creating": "creating",
    "Active": "in_service",
    "Failed": "failed",
}
_THROUGHPUT_STATUS: dict[str, DeploymentStatus] = {
    "Creating": "creating",
    "InService": "in_service",
    # Changing model units keeps serving the old ones; tunelab never asks for a change.
    "Updating": "in_service",
    "Failed": "failed",
}


def job_name(identity: ModelIdentity) -> str:
    """The customization job's name: unique in the platform account, the same on every retry."""
    return derived_name(identity.model_name, identity.digest("job"))


def custom_model_name(identity: ModelIdentity) -> str:
    return derived_name(identity.model_name, identity.digest("model"))


def client_token(identity: ModelIdentity, *parts: str) -> str:
    return identity.digest("token", *parts)


def deployment_name(request: DeployRequest) -> str:
    return derived_name(request.identity.model_name, request.deploy_digest())


def arn_region(arn: str | None) -> str | None:
    """The region an ARN names (`arn:aws:bedrock:us-west-2:...`); None for anything else."""
    parts = (arn or "").split(":")
    if len(parts) > 4 and parts[0] == "arn" and parts[3]:
        return parts[3]
    return None


def _tags(identity: ModelIdentity, extra: Mapping[str, str]) -> list[TagTypeDef]:
    tags = {**extra, PROVIDER_RESOURCE_TAG: identity.workspace_id, MODEL_TAG: identity.model_name}
    return [{"key": k, "value": v} for k, v in sorted(tags.items())]


def _status(mapping: Mapping[str, Any], key: str) -> str:
    value = mapping.get(key)
    if not isinstance(value, str):
        raise UnhandledEventError(f"no {key} in the event")
    return value


def _time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def training_state(job: Mapping[str, Any], *, status_key: str = "status") -> TrainingState:
    """A TrainingState from a GetModelCustomizationJob response or a state-change event's detail."""
    raw = _status(job, status_key)
    try:
        status = _JOB_STATUS[raw]
    except KeyError:
        raise UnhandledEventError(f"unknown Bedrock job status {raw!r}") from None
    train = job.get("trainingMetrics") or {}
    validation = job.get("validationMetrics") or []
    train_loss = train.get("trainingLoss") if isinstance(train, Mapping) else None
    eval_loss = None
    if isinstance(validation, list) and validation and isinstance(validation[-1], Mapping):
        eval_loss = validation[-1].get("validationLoss")
    metrics = None
    if train_loss is not None or eval_loss is not None:
        metrics = TrainingMetrics(
            train_loss=float(train_loss) if train_loss is not None else None,
            eval_loss=float(eval_loss) if eval_loss is not None else None,
        )
    output = job.get("outputDataConfig") or {}
    terminal = status in ("completed", "failed", "stopped")
    return TrainingState(
        job_id=str(job.get("jobArn") or job.get("jobName")),
        status=status,
        phase=raw,
        failure_reason=(job.get("failureMessage") or None) if status == "failed" else None,
        metrics=metrics,
        artifacts_uri=output.get("s3Uri") if isinstance(output, Mapping) else None,
        model_ref=(job.get("outputModelArn") or None) if status == "completed" else None,
        ended_at=_time(job.get("endTime")) if terminal else None,
    )


def parse_event(detail_type: str, detail: Mapping[str, Any]) -> TrainingState:
    """Bedrock's EventBridge "Model Customization Job State Change" (status in `detail.jobStatus`)."""
    if detail_type != JOB_EVENT:
        raise UnhandledEventError(f"Bedrock events of type {detail_type!r} are not handled")
    return training_state(detail, status_key="jobStatus")


class BedrockProvider:
    """Bedrock customization in the platform account, behind `TrainingProvider`."""

    name: ProviderName = "bedrock"
    training_timeout_s = TRAINING_TIMEOUT_S

    def __init__(self, config: BedrockConfig, *, session: boto3.Session | None = None) -> None:
        self.config = config
        self._session = session or boto3.Session(region_name=config.region)
        self._bedrock: dict[str, BedrockClient] = {}
        self._runtime: dict[str, BedrockRuntimeClient] = {}
        self._storage = S3Objects(
            client_factory=lambda: self._session.client("s3", region_name=config.region),
            bucket_clients={
                bucket: partial(self._session.client, "s3", region_name=region)
                for region, bucket in config.regional_buckets.items()
            },
        )

    @property
    def storage(self) -> S3Objects:
        """The platform's artifacts bucket and the regional data buckets (each through a client of its
        region): training data and the jobs' output."""
        return self._storage

    @property
    def bedrock(self) -> BedrockClient:
        """Bedrock in the platform's own region."""
        return self.bedrock_in(self.config.region)

    @property
    def runtime(self) -> BedrockRuntimeClient:
        """Bedrock Runtime in the platform's own region."""
        return self.runtime_in(self.config.region)

    def bedrock_in(self, region: str) -> BedrockClient:
        client = self._bedrock.get(region)
        if client is None:
            client = self._bedrock[region] = self._session.client("bedrock", region_name=region)
        return client

    def runtime_in(self, region: str) -> BedrockRuntimeClient:
        client = self._runtime.get(region)
        if client is None:
            client = self._runtime[region] = self._session.client("bedrock-runtime", region_name=region)
        return client

    def region_of(self, arn: str | None) -> str:
        """Where the resource of `arn` lives: the region the ARN names, else the platform's own."""
        return arn_region(arn) or self.config.region

    def training_region(self, spec: BaseModelSpec) -> str:
        """Where this deployment trains `spec`; `ValidationFailed` where it reaches none of its regions
        (the create check refuses such a model first, with the same reason)."""
        region = spec.training_region(self.config.region, self.config.other_regions)
        if region is None:
            _, reason = spec.availability(
                runtime="aws", region=self.config.region, regions=self.config.other_regions
            )
            raise ValidationFailed.of("base_model_id", f"{spec.name} cannot be fine-tuned here: {reason}")
        return region

    # --- training ---

    def output_uri(self, identity: ModelIdentity, region: str | None = None) -> str:
        """The job's output folder, in the bucket of its region (the platform's own by default)."""
        prefix = self.config.output_prefix.strip("/")
        return (
            f"s3://{self.config.bucket_in(region or self.config.region)}/{prefix}/{identity.workspace_id}/"
            f"{identity.model_name}/{identity.digest('job')[:10]}/"
        )

    def training_data_folder(self, identity: ModelIdentity, uid: str, base_model: BaseModelSpec) -> str:
        """In the bucket of the region the model trains in: Bedrock reads a job's data in its region."""
        bucket = self.config.bucket_in(self.training_region(base_model))
        return f"s3://{bucket}/{TRAINING_DATA_PREFIX}{identity.workspace_id}/{identity.model_name}/{uid}/"

    def check_new_job(self, identity: ModelIdentity) -> None:
        """Nothing to check: job names carry a digest of the model record, unique in the account."""

    def training_hyperparameters(
        self,
        spec: BaseModelSpec,
        hyperparameters: ResolvedHyperparameters,
        optional: ResolvedOptionalHyperparameters | None,
        *,
        provider_split_percent: float | None,
    ) -> dict[str, str]:
        """Bedrock's own names and formats (`HyperparameterSpec.provider_names`)."""
        return to_provider_params(hyperparameters, spec, provider_split_percent=provider_split_percent)

    def start_training(self, request: TrainingRequest) -> TrainingJobRef:
        spec = request.base_model
        if spec.provider != "bedrock":
            raise ValidationFailed.of("base_model_id", f"{spec.id} is not a Bedrock model.")
        identity = request.identity
        name = job_name(identity)
        token = client_token(identity, "train")
        parent = request.parent.model_ref if request.parent and request.parent.model_ref else None
        # A continuation trains where its parent custom model is; a new model in its training region.
        region = self.region_of(parent) if parent else self.training_region(spec)
        bucket = self.config.bucket_in(region)
        for uri in filter(None, (request.training_data_uri, request.validation_data_uri)):
            if not uri.startswith(f"s3://{bucket}/"):
                # Bedrock reads a job's data only in its region: say so rather than fail in Bedrock.
                raise ValidationFailed(
                    f"The training data ({uri}) is not in {region}, where this job must run (its base "
                    f"model is there); create the model again to prepare its data in {region}."
                )
        base = parent or spec.id
        output = self.output_uri(identity, region)
        bedrock = self.bedrock_in(region)
        params: CreateModelCustomizationJobRequestTypeDef = {
            "jobName": name,
            "customModelName": custom_model_name(identity),
            "roleArn": self.config.service_role_arn,
            "clientRequestToken": token,
            "baseModelIdentifier": base,
            "customizationType": "FINE_TUNING",
            "trainingDataConfig": {"s3Uri": request.training_data_uri},
            "outputDataConfig": {"s3Uri": output},
            "hyperParameters": dict(request.hyperparameters),
            "jobTags": _tags(identity, request.tags),
            "customModelTags": _tags(identity, request.tags),
        }
        if request.validation_data_uri:
            params["validationDataConfig"] = {"validators": [{"s3Uri": request.validation_data_uri}]}
        action = f"Starting the Bedrock customization job {name} in {region}"
        try:
            with aws_call(action, permission="bedrock:CreateModelCustomizationJob and iam:PassRole"):
                arn = bedrock.create_model_customization_job(**params)["jobArn"]
        except Conflict as clash:
            # A retry after a lost response: the job with our name and token is ours.
            with aws_call(action):
                job = bedrock.get_model_customization_job(jobIdentifier=name)
            if job.get("clientRequestToken") not in (None, token):
                raise clash
            arn = job["jobArn"]
        return TrainingJobRef(provider="bedrock", job_id=arn, job_name=name, output_uri=output)

    def resume_point(self, identity: ModelIdentity, attempt: int) -> ResumePoint | None:
        """Bedrock keeps no checkpoint a new job could continue from."""
        raise ValidationFailed.of("name", "Bedrock cannot resume a job; clone it instead.")

    def stop_training(self, ref: TrainingJobRef) -> None:
        try:
            self.bedrock_in(self.region_of(ref.job_id)).stop_model_customization_job(
                jobIdentifier=ref.job_name
            )
        except ClientError as error:
            # Already ended (or stopping): nothing left to stop; the job's state says how it ended.
            if (
                error_code(error) in {"ValidationException", *CONFLICT_CODES}
                and self.describe_training(ref).terminal
            ):
                return
            with aws_call(
                f"Stopping the Bedrock job {ref.job_name}", permission="bedrock:StopModelCustomizationJob"
            ):
                raise

    def trained_output(
        self,
        ref: TrainingJobRef | None,
        *,
        artifacts_uri: str | None,
        model_ref: str | None,
        merged: bool,
    ) -> TrainedOutput:
        """The custom model a completed job made (Bedrock keeps the weights; its output folder holds
        only the job's metrics, nothing to list)."""
        if (model_ref is None or artifacts_uri is None) and ref is not None:
            state = self.describe_training(ref)
            model_ref = model_ref or state.model_ref
            artifacts_uri = artifacts_uri or state.artifacts_uri
        if not model_ref:
            raise ValidationFailed(
                "The job completed, but Bedrock reported no custom model; it cannot be used."
            )
        return TrainedOutput(model_ref=model_ref, artifacts_uri=artifacts_uri, merged=False)

    def describe_training(self, ref: TrainingJobRef) -> TrainingState:
        with aws_call(
            f"Reading the Bedrock job {ref.job_name}", permission="bedrock:GetModelCustomizationJob"
        ):
            job = self.bedrock_in(self.region_of(ref.job_id)).get_model_customization_job(
                jobIdentifier=ref.job_name
            )
        return training_state(dict(job))

    # --- deployment ---

    def deploy(self, request: DeployRequest) -> DeploymentRef:
        if not request.model_ref:
            raise ValidationFailed("A Bedrock deployment needs the custom model ARN of a finished job.")
        name = deployment_name(request)
        token = client_token(request.identity, "deploy", request.deploy_digest())
        tags = _tags(request.identity, request.tags)
        # Served where the custom model is.
        bedrock = self.bedrock_in(self.region_of(request.model_ref))
        if request.base_model.deployment.method == "on_demand":
            with aws_call(f"Deploying {name} on demand", permission="bedrock:CreateCustomModelDeployment"):
                created = bedrock.create_custom_model_deployment(
                    modelDeploymentName=name,
                    modelArn=request.model_ref,
                    description=f"tunelab model {request.identity.model_name}",
                    tags=tags,
                    clientRequestToken=token,
                )
            return DeploymentRef(
                provider="bedrock",
                kind="custom_model_deployment",
                deployment_id=created["customModelDeploymentArn"],
            )
        # No commitmentDuration: hourly, no-commitment provisioned throughput that can be deleted any time.
        with aws_call(
            f"Buying provisioned throughput {name}", permission="bedrock:CreateProvisionedModelThroughput"
        ):
            bought = bedrock.create_provisioned_model_throughput(
                modelUnits=1,
                provisionedModelName=name,
                modelId=request.model_ref,
                tags=tags,
                clientRequestToken=token,
            )
        return DeploymentRef(
            provider="bedrock", kind="provisioned_throughput", deployment_id=bought["provisionedModelArn"]
        )

    def describe_deployment(self, ref: DeploymentRef) -> DeploymentState:
        action = f"Reading the Bedrock deployment {ref.deployment_id}"
        bedrock = self.bedrock_in(self.region_of(ref.deployment_id))
        try:
            if ref.kind == "custom_model_deployment":
                got = bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=ref.deployment_id)
                status = _DEPLOYMENT_STATUS.get(got["status"], "creating")
            else:
                pt = bedrock.get_provisioned_model_throughput(provisionedModelId=ref.deployment_id)
                status = _THROUGHPUT_STATUS.get(pt["status"], "creating")
                got = pt  # type: ignore[assignment]
        except ClientError as error:
            if is_not_found(error):
                return DeploymentState(deployment_id=ref.deployment_id, status="gone")
            with aws_call(action):
                raise
        reason = got.get("failureMessage") if status == "failed" else None
        return DeploymentState(deployment_id=ref.deployment_id, status=status, reason=reason)

    def undeploy(self, ref: DeploymentRef) -> None:
        bedrock = self.bedrock_in(self.region_of(ref.deployment_id))
        try:
            if ref.kind == "custom_model_deployment":
                bedrock.delete_custom_model_deployment(customModelDeploymentIdentifier=ref.deployment_id)
            else:
                bedrock.delete_provisioned_model_throughput(provisionedModelId=ref.deployment_id)
        except ClientError as error:
            if is_not_found(error):
                return
            with aws_call(f"Deleting the Bedrock deployment {ref.deployment_id}"):
                raise

    def invoke(self, ref: DeploymentRef, params: InvokeParams) -> InvokeResult:
        started = time.perf_counter()
        with aws_call("The sandbox call to Bedrock", permission="bedrock:InvokeModel"):
            response = self.runtime_in(self.region_of(ref.deployment_id)).converse(
                modelId=ref.deployment_id,
                messages=[{"role": "user", "content": [{"text": params.prompt}]}],
                inferenceConfig={
                    "maxTokens": params.max_tokens,
                    "temperature": params.temperature,
                    "topP": params.top_p,
                },
            )
        latency_ms = round((time.perf_counter() - started) * 1000)
        content = response.get("output", {}).get("message", {}).get("content", [])
        completion = "".join(block.get("text", "") for block in content)
        usage = response.get("usage", {})
        return InvokeResult(
            completion=completion,
            input_tokens=int(usage.get("inputTokens", 0)),
            output_tokens=int(usage.get("outputTokens", 0)),
            latency_ms=latency_ms,
        )

    # --- artifacts ---

    def download(self, artifacts_uri: str, *, expires_in_s: int = 900) -> DownloadLink:
        raise ValidationFailed(
            "Bedrock models cannot be downloaded: Bedrock keeps the weights. Models trained on SageMaker "
            "(BYOK) or locally can be."
        )

    def delete_model(self, model: TrainedModel) -> None:
        """Delete the custom model (by the name tunelab gave it, in the region it is in), then the job's
        output folder: if Bedrock refuses, the model's record and files stay, so nothing is left behind
        unseen."""
        name = custom_model_name(model.identity)
        region = self.region_of(model.model_ref or (model.job.job_id if model.job else None))
        try:
            self.bedrock_in(region).delete_custom_model(modelIdentifier=name)
        except ClientError as error:
            if not is_not_found(error):
                with aws_call(
                    f"Deleting the Bedrock custom model {name}", permission="bedrock:DeleteCustomModel"
                ):
                    raise
        # Where the job wrote, as recorded when it started; else where it would have.
        output = model.job.output_uri if model.job and model.job.output_uri else None
        self.storage.delete_folder(output or self.output_uri(model.identity, region))

    def speaks_for(self, account: str | None) -> bool:
        """Bedrock's events come from the platform's own account, the only one its rules hear."""
        return True

    def training_log(self, ref: TrainingJobRef, *, position: str | None, limit: int) -> TrainingLogPage:
        """Bedrock keeps no log of a customization job (its metrics go to the job's output folder)."""
        return TrainingLogPage(
            message="Bedrock keeps no training log of its customization jobs; the model's events "
            "(GET /v1/fine-tuned-models/{name}/events) show its status changes."
        )

    def evaluation_report(self, ref: TrainingJobRef) -> EvaluationReport | EvaluationSkipped | None:
        """Bedrock trains the model itself: no tunelab trainer runs to compare it with its base."""
        return EvaluationSkipped(skipped=NOT_EVALUATED)

    def checkpoints(self, ref: TrainingJobRef) -> CheckpointList:
        """Bedrock keeps no checkpoints of a customization job that could be listed."""
        return CheckpointList(message=_NO_CHECKPOINTS)

    def checkpoint_download(
        self, ref: TrainingJobRef, checkpoint_id: str, *, expires_in_s: int = 900
    ) -> DownloadLink:
        raise ValidationFailed(_NO_CHECKPOINTS)
