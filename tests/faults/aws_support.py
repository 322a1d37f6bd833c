"""The AWS half of the fault suite: the integration tier's stack under moto, an installed `Injector`,
both lifecycles driven through the API and provider events, and the census taken after each case.

A test module imports `aws`, `stack_fixture` and `faults` from here (pytest finds fixtures by the
names in the module). botocore's and Step Functions' retry sleeps are shortened (their own modules'
`time`, never tunelab's), so a fault that outlasts every retry costs milliseconds, not minutes.
"""

from __future__ import annotations

import io
import re
import tarfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.endpoint
import pytest
from botocore.stub import Stubber
from moto.bedrock.models import bedrock_backends
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

import functions.provider_events as provider_events
from tests.faults.injection import Injector, install, uninstall
from tests.faults.tally import Tally
from tests.integration.api_support import GOOD_CSV, sagemaker_config
from tests.integration.apigw import ApiResponse, api_event, call, claims_for
from tests.integration.conftest import ACCOUNT, REGION, aws
from tests.integration.handler_support import CONTEXT, event, sqs_batch
from tests.integration.test_api_lifecycle_bedrock import DeployingBedrock
from tests.integration.test_api_lifecycle_sagemaker import CpuEndpoints
from tests.integration.workflow_fixtures import Stack, stack_fixture
from tunelab.adapters.providers.bedrock import BedrockConfig, custom_model_name
from tunelab.application.workspaces import set_plan
from tunelab.domain.records import ModelRecord
from tunelab.domain.schedules import schedule_names
from tunelab.domain.status import ModelStatus

WS = "ws-acme"
CUSTOMER_BUCKET = "acme-ml-artifacts"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/tunelab-connector"
CUSTOM_MODELS = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model/"
TRANSIENT = {ModelStatus.TRAINING, ModelStatus.STOPPING_TRAINING, ModelStatus.DEPLOYING}
FINISHED = {ModelStatus.NOT_DEPLOYED, ModelStatus.TRAINING_FAILED, ModelStatus.TRAINING_STOPPED}
_REAL_SLEEP = time.sleep


class _QuickTime:
    """A module's `time` whose sleeps are at most 5 ms (retry back-offs; everything else as `time`)."""

    @staticmethod
    def sleep(seconds: float) -> None:
        _REAL_SLEEP(min(seconds, 0.005))

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture(name="faults")
def faults_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[Injector]:
    """An installed injector (no rules yet), with botocore's and Step Functions' back-offs shortened."""
    monkeypatch.setattr(botocore.endpoint, "time", _QuickTime())
    monkeypatch.setattr(retrier_decl, "time", _QuickTime())
    injector = Injector()
    install(injector)
    try:
        yield injector
    finally:
        uninstall()


def record_faults(tally: Tally, injector: Injector) -> None:
    for kind, count in injector.injected.items():
        tally.injected(kind, count)


def api(method: str, path: str, body: Any = None, **kwargs: Any) -> ApiResponse:
    return call(api_event(method, path, body, claims=claims_for(WS), **kwargs))


def archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as packed:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            packed.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


MODEL_FILES = {"config.json": b"{}", "model.safetensors": b"\0" * 1024, "tokenizer.json": b"{}"}


# --- the two lifecycles -------------------------------------------------------------------------------


@dataclass
class Life:
    """One provider's model driven through the API; what the user was told is kept for the census."""

    stack: Stack
    provider: str
    name: str
    acknowledged_models: set[str] = field(default_factory=set)
    acknowledged_datasets: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    finished: set[str] = field(default_factory=set)  # models whose training ended (one email each)
    bedrock: DeployingBedrock | None = None
    sagemaker: CpuEndpoints | None = None

    @property
    def base(self) -> str:
        return f"/v1/fine-tuned-models/{self.name}"

    def record(self) -> ModelRecord:
        return self.stack.repo.models.get(WS, self.name)

    def dataset(self) -> str:
        answer = api("POST", "/v1/datasets?name=tickets", raw_body=GOOD_CSV.decode(), content_type="text/csv")
        assert answer.status == 201, answer.body
        self.acknowledged_datasets.add(answer.body["id"])
        return str(answer.body["id"])

    def create_request(self, dataset_id: str) -> ApiResponse:
        body: dict[str, Any] = {
            "name": self.name,
            "dataset_id": dataset_id,
            "validation": {"mode": "split", "percent": 20},
            "hyperparameters": {"epochs": 2},
            "acknowledge": True,
        }
        if self.provider == "sagemaker":
            body.update(
                base_model_id="sagemaker.qwen2-5-7b-instruct",
                resources={"instance_type": "ml.g6e.2xlarge", "instance_count": 1, "volume_size_gb": 100},
                optional_hyperparameters={"use_lora": True, "merge_adapters": True},
            )
        else:
            body["base_model_id"] = "amazon.nova-micro-v1:0:128k"
        return api("POST", "/v1/fine-tuned-models", body)

    def create(self, dataset_id: str | None = None) -> ApiResponse:
        created = self.create_request(dataset_id or self.dataset())
        assert created.status == 202, created.body
        self.acknowledged_models.add(self.name)
        return created

    def wait_training(self) -> ModelRecord:
        self.stack.wait_for_token(self.record())
        self.stack.wait_for(lambda: self.record().training.job_id, what="the job's id")
        return self.record()

    def job_name(self) -> str:
        job = self.record().refs.training_job
        assert job is not None
        return job.job_name

    def wait_workflow(self) -> ModelRecord:
        arn = self.record().training.execution_arn
        assert arn is not None
        self.stack.wait_execution(arn)
        record = self.record()
        if record.status in FINISHED:
            self.finished.add(self.name)
        return record

    # provider events --------------------------------------------------------------------------------

    def job_event(self, status: str, *, at: datetime | None = None, **detail: Any) -> dict[str, Any]:
        """The provider's state-change event for the model's job (not yet delivered)."""
        record = self.record()
        ref = record.refs.training_job
        assert ref is not None
        if self.provider == "sagemaker":
            fields: dict[str, Any] = {
                "TrainingJobName": ref.job_name,
                "TrainingJobArn": ref.job_id,
                "TrainingJobStatus": status,
                "SecondaryStatus": status,
            }
            if status == "Completed":
                fields["ModelArtifacts"] = {"S3ModelArtifacts": self.put_artifacts()}
            sample = event("sagemaker_training_job_state_change", time=at, **{**fields, **detail})
            sample["account"] = ACCOUNT
            sample["region"] = REGION
            return sample
        fields = {
            "jobArn": record.training.job_id,
            "jobName": ref.job_name,
            "jobStatus": status,
            "outputModelName": custom_model_name(record.identity),
            "outputModelArn": f"{CUSTOM_MODELS}{custom_model_name(record.identity)}",
            "outputDataConfig": {"s3Uri": record.training.output_uri or "s3://tunelab-test-artifacts/x/"},
            **detail,
        }
        sample = event("bedrock_model_customization_job_state_change", time=at, **fields)
        if status != "Failed":
            sample["detail"].pop("failureMessage", None)
        return sample

    def put_artifacts(self) -> str:
        key = f"tunelab/{WS}/{self.name}/output/{self.job_name()}/output/model.tar.gz"
        self.stack.services.s3.put_object(Bucket=CUSTOMER_BUCKET, Key=key, Body=archive(MODEL_FILES))
        return f"s3://{CUSTOMER_BUCKET}/{key}"

    def deliver(self, *events: dict[str, Any]) -> dict[str, Any]:
        """The provider-events function's answer to one SQS batch of `events`."""
        answer: dict[str, Any] = provider_events.handler(sqs_batch(*events), CONTEXT)
        return answer

    def provider_says(self, status: str) -> None:
        """The job's state at the provider (what `describe` answers), without any event."""
        if self.provider == "bedrock":
            bedrock_backends[ACCOUNT][REGION].model_customization_jobs[self.job_name()].status = status
            return
        from moto.sagemaker.models import sagemaker_backends  # noqa: PLC0415

        job = sagemaker_backends[ACCOUNT][REGION].training_jobs[self.job_name()]
        job.training_job_status = status
        if status == "Completed":
            job.model_artifacts = {"S3ModelArtifacts": self.put_artifacts()}

    # the rest of the life ---------------------------------------------------------------------------

    def train(self) -> ModelRecord:
        """The job completes and says so; the workflow records it."""
        self.wait_training()
        self.provider_says("Completed")
        assert self.deliver(self.job_event("Completed")) == {"batchItemFailures": []}
        return self.wait_workflow()

    def deploy(self) -> ModelRecord:
        deploying = api("POST", f"{self.base}/deploy", {"auto_undeploy": {"after_hours": 4}})
        assert deploying.status == 202, deploying.body
        arn = self.record().deployment
        assert arn is not None
        assert arn.execution_arn is not None
        self.stack.wait_execution(arn.execution_arn)
        return self.record()

    def undeploy(self) -> ApiResponse:
        return api("POST", f"{self.base}/undeploy")

    def delete(self) -> ApiResponse:
        if self.sagemaker is not None:  # moto lacks DeleteTrainingJob: Stubber answers it
            stub = Stubber(self.sagemaker.sagemaker)
            stub.add_response("delete_training_job", {}, {"TrainingJobName": self.job_name()})
            with stub:
                deleted = api("DELETE", f"{self.base}?acknowledge=true")
        else:
            deleted = api("DELETE", f"{self.base}?acknowledge=true")
        if deleted.status == 204:
            self.deleted.add(self.name)
        return deleted

    def whole_life(self) -> None:
        """create → trained → deployed → undeployed → deleted, each step checked as a user sees it."""
        self.create()
        trained = self.train()
        assert trained.status == ModelStatus.NOT_DEPLOYED, trained.training.failure_reason
        deployed = self.deploy()
        assert deployed.status == ModelStatus.DEPLOYED
        assert deployed.deployment is not None
        assert deployed.deployment.schedule_name in schedules(self.stack)
        undeployed = self.undeploy()
        assert undeployed.status == 202, undeployed.body
        assert undeployed.body["status"] == "not_deployed"
        deleted = self.delete()
        assert deleted.status == 204, deleted.body
        assert api("GET", self.base).status == 404


def sagemaker_life(stack: Stack, name: str = "byok-bot-v1") -> Life:
    """The workspace connected to its SageMaker account through the API (verified for real)."""
    set_plan(stack.repo.workspaces, WS, "subscription", default_plan="pay_as_you_go")
    stack.services.s3.create_bucket(Bucket=CUSTOMER_BUCKET)
    life = Life(stack, "sagemaker", name)
    connect(life)
    return life


def connect(life: Life) -> ApiResponse:
    connected = api(
        "PUT",
        "/v1/providers/sagemaker",
        {"role_arn": ROLE, "region": REGION, "artifact_bucket": CUSTOMER_BUCKET},
    )
    if connected.status == 200:
        stack = life.stack
        config = sagemaker_config(stack.services.sagemaker_connection(WS), WS)
        life.sagemaker = CpuEndpoints(config, session=stack.services.session)
        stack.services.providers.set("sagemaker", life.sagemaker)
    return connected


def bedrock_life(stack: Stack, name: str = "support-bot-v1") -> Life:
    settings = stack.services.settings
    config = BedrockConfig(
        region=settings.aws_region,
        service_role_arn=settings.bedrock_role_arn,
        output_bucket=settings.artifacts_bucket,
    )
    provider = DeployingBedrock(config, session=stack.services.session)
    stack.services.providers.set("bedrock", provider)
    return Life(stack, "bedrock", name, bedrock=provider)


# --- the census ---------------------------------------------------------------------------------------


def schedules(stack: Stack) -> list[str]:
    group = stack.services.settings.schedule_group
    listed = stack.services.scheduler_client.list_schedules(GroupName=group)["Schedules"]
    return [s["Name"] for s in listed]


def models(stack: Stack) -> list[ModelRecord]:
    found: list[ModelRecord] = []
    token: str | None = None
    while True:
        page = stack.repo.models.list(WS, limit=100, next_token=token)
        found += page.items
        token = page.next_token
        if token is None:
            return found


_END_SUBJECT = re.compile(
    r"\[tunelab\] (?:(?P<a>\S+) is ready: training completed|Training of (?P<b>\S+) (?:failed|was stopped))"
)


def training_emails(stack: Stack) -> Counter[str]:
    """Emails about a training's end, by model name."""
    seen: Counter[str] = Counter()
    for email in stack.emails():
        matched = _END_SUBJECT.match(email.subject)
        if matched:
            seen[matched.group("a") or matched.group("b")] += 1
    return seen


@dataclass
class Census:
    transient: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    duplicate_emails: list[str] = field(default_factory=list)
    missing_emails: list[str] = field(default_factory=list)

    def report(self, tally: Tally) -> None:
        """Add the figures to the tally, then fail on any (with what was found)."""
        tally.outcome(
            transient=len(self.transient),
            lost=len(self.lost),
            orphaned=len(self.orphaned),
            duplicate_emails=len(self.duplicate_emails),
            missing_emails=len(self.missing_emails),
        )
        assert self.transient == [], f"records left transient: {self.transient}"
        assert self.lost == [], f"acknowledged writes lost: {self.lost}"
        assert self.orphaned == [], f"orphaned provider resources: {self.orphaned}"
        assert self.duplicate_emails == [], f"duplicate emails: {self.duplicate_emails}"
        assert self.missing_emails == [], f"finished jobs without their email: {self.missing_emails}"


def census(*lives: Life) -> Census:
    """What the stack holds once settled (no fault injected any more: uninstall first)."""
    stack = lives[0].stack
    uninstall()
    records = {m.name: m for m in models(stack)}
    found = Census()
    live_endpoints = _live_endpoints(stack, lives)
    for record in records.values():
        if record.status in TRANSIENT:
            found.transient.append(f"{record.name}: {record.status.value}")
        elif record.status == ModelStatus.DEPLOYED:
            endpoint = record.deployment.endpoint if record.deployment else None
            if endpoint not in live_endpoints:
                found.transient.append(f"{record.name}: deployed on {endpoint}, which the provider lacks")
    for life in lives:
        for name in life.acknowledged_models - life.deleted:
            if name not in records:
                found.lost.append(f"model {name}")
        for dataset_id in life.acknowledged_datasets:
            if stack.repo.datasets.find(WS, dataset_id) is None:
                found.lost.append(f"dataset {dataset_id}")
    found.orphaned = _orphans(stack, lives, records)
    emails = training_emails(stack)
    for name, count in emails.items():
        if count > 1:
            found.duplicate_emails.append(f"{name}: {count}")
    finished = {n for life in lives for n in life.finished}
    finished |= {r.name for r in records.values() if r.status in FINISHED or r.status == ModelStatus.DEPLOYED}
    found.missing_emails = sorted(n for n in finished if emails[n] == 0)
    return found


def _live_endpoints(stack: Stack, lives: tuple[Life, ...]) -> set[str]:
    live: set[str] = set()
    for life in lives:
        if life.bedrock is not None:
            live |= set(life.bedrock.live)
    sagemaker = stack.services.client("sagemaker")
    live |= {e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]}
    return live


def _orphans(stack: Stack, lives: tuple[Life, ...], records: dict[str, ModelRecord]) -> list[str]:
    orphans: list[str] = []
    training = {
        r.refs.training_job.job_name
        for r in records.values()
        if r.refs.training_job is not None
        and r.status in {ModelStatus.TRAINING, ModelStatus.STOPPING_TRAINING}
    }
    deployed = {
        r.deployment.endpoint
        for r in records.values()
        if r.deployment is not None
        and r.deployment.endpoint
        and r.status in {ModelStatus.DEPLOYING, ModelStatus.DEPLOYED}
    }
    owned_schedules = {
        name
        for r in records.values()
        if r.deployment is not None
        and r.deployment.requested_at is not None
        and r.status == ModelStatus.DEPLOYED
        for name in schedule_names(r.identity, r.deployment.requested_at)
    }
    sagemaker = stack.services.client("sagemaker")
    for job in sagemaker.list_training_jobs()["TrainingJobSummaries"]:
        if job["TrainingJobStatus"] in {"InProgress", "Stopping"} and job["TrainingJobName"] not in training:
            orphans.append(f"sagemaker training job {job['TrainingJobName']} ({job['TrainingJobStatus']})")
    for endpoint in sagemaker.list_endpoints()["Endpoints"]:
        if endpoint["EndpointName"] not in deployed:
            orphans.append(f"sagemaker endpoint {endpoint['EndpointName']}")
    for config in sagemaker.list_endpoint_configs()["EndpointConfigs"]:
        if config["EndpointConfigName"] not in deployed:
            orphans.append(f"sagemaker endpoint config {config['EndpointConfigName']}")
    for model in sagemaker.list_models()["Models"]:
        if model["ModelName"] not in deployed:
            orphans.append(f"sagemaker model {model['ModelName']}")
    backend = bedrock_backends[ACCOUNT][REGION]
    for job in backend.model_customization_jobs.values():
        if job.status in {"InProgress", "Stopping"} and job.job_name not in training:
            orphans.append(f"bedrock job {job.job_name} ({job.status})")
    owners = {custom_model_name(r.identity) for r in records.values()}
    for custom in backend.custom_models:
        if custom not in owners:
            orphans.append(f"bedrock custom model {custom}")
    for life in lives:
        if life.bedrock is not None:
            orphans += [f"bedrock deployment {arn}" for arn in life.bedrock.live if arn not in deployed]
    orphans += [f"schedule {name}" for name in schedules(stack) if name not in owned_schedules]
    return orphans


def later(hours: float = 1) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


__all__ = [
    "Census",
    "Life",
    "api",
    "aws",
    "bedrock_life",
    "census",
    "faults_fixture",
    "later",
    "record_faults",
    "sagemaker_life",
    "stack_fixture",
]
