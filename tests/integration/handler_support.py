"""What handler and model-action tests share: AWS documentation events, SQS batches, a recording provider."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from tunelab.adapters.s3 import S3Objects
from tunelab.composition.wiring import Services, set_services
from tunelab.domain.catalog import BaseModelSpec
from tunelab.domain.checkpoints import CheckpointList, unknown_checkpoint
from tunelab.domain.evaluation import EvaluationReport, EvaluationSkipped
from tunelab.domain.hyperparameters import (
    ResolvedHyperparameters,
    ResolvedOptionalHyperparameters,
    to_trainer_hyperparameters,
)
from tunelab.domain.providers import (
    DeploymentRef,
    DeploymentState,
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
    TrainingRequest,
    TrainingState,
)
from tunelab.domain.records import (
    Artifacts,
    ModelChanges,
    ModelRecord,
    ProviderConnectionRecord,
    ProviderRefs,
)
from tunelab.domain.records import DeploymentState as DeploymentRecordState
from tunelab.domain.records import TrainingState as TrainingRecordState
from tunelab.domain.status import ModelStatus
from tunelab.domain.training_logs import TrainingLogPage

REGION = "us-east-1"
ACCOUNT = "123456789012"
EVENTS = Path(__file__).resolve().parents[1] / "fixtures" / "events"
SAMPLE_DATA = Path(__file__).resolve().parents[2] / "shared" / "tunelab" / "sample_data"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event(name: str, *, time: datetime | None = None, **detail: Any) -> dict[str, Any]:
    """The AWS documentation sample `<name>.json` with `detail` fields replaced (a fresh event id)."""
    data: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    data.pop("_source", None)
    data = copy.deepcopy(data)
    data["id"] = str(uuid.uuid4())
    if time is not None:
        data["time"] = iso(time)
    for key, value in detail.items():
        data["detail"][key] = value
    return data


def sqs_batch(*bodies: Mapping[str, Any] | str, queue: str = "provider-events") -> dict[str, Any]:
    """The event Lambda receives from an SQS event source mapping, one record per body."""
    records = []
    for i, body in enumerate(bodies):
        records.append(
            {
                "messageId": f"m-{i}-{uuid.uuid4()}",
                "receiptHandle": f"handle-{i}",
                "body": body if isinstance(body, str) else json.dumps(body),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1764331200000",
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1764331200000",
                },
                "messageAttributes": {},
                "md5OfBody": "0" * 32,
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{queue}",
                "awsRegion": "us-east-1",
            }
        )
    return {"Records": records}


def message_ids(batch: Mapping[str, Any]) -> list[str]:
    return [r["messageId"] for r in batch["Records"]]


class RecordingProvider:
    """A provider double: answers from what the test set, and records every call it gets."""

    def __init__(self, name: ProviderName = "bedrock") -> None:
        self.name: ProviderName = name
        self.calls: list[tuple[str, Any]] = []
        self.training: dict[str, TrainingState] = {}
        self.gone_deployments: set[str] = set()
        self.fail_with: Exception | None = None
        # The checkpoint each model's jobs saved, by model name (what the test says they saved).
        self.resume_points: dict[str, ResumePoint] = {}

    def _call(self, what: str, arg: Any) -> None:
        self.calls.append((what, arg))
        if self.fail_with is not None:
            raise self.fail_with

    def called(self, what: str) -> list[Any]:
        return [arg for name, arg in self.calls if name == what]

    training_timeout_s = 3600

    @property
    def storage(self) -> S3Objects:
        """The platform's artifacts bucket in the mock account (a double keeps its files there)."""
        return S3Objects(boto3.client("s3", region_name=REGION))

    def training_data_folder(self, identity: ModelIdentity, uid: str, base_model: BaseModelSpec) -> str:
        """Where the Bedrock provider keeps a model's training data (the conftest's ARTIFACTS_BUCKET)."""
        return (
            f"s3://tunelab-test-artifacts/training-data/{identity.workspace_id}/{identity.model_name}/{uid}/"
        )

    def check_new_job(self, identity: ModelIdentity) -> None:
        self._call("check_new_job", identity)

    def training_hyperparameters(
        self,
        spec: BaseModelSpec,
        hyperparameters: ResolvedHyperparameters,
        optional: ResolvedOptionalHyperparameters | None,
        *,
        provider_split_percent: float | None,
    ) -> dict[str, str]:
        return to_trainer_hyperparameters(hyperparameters, optional)

    def trained_output(
        self, ref: TrainingJobRef | None, *, artifacts_uri: str | None, model_ref: str | None, merged: bool
    ) -> TrainedOutput:
        self._call("trained_output", ref)
        return TrainedOutput(model_ref=model_ref, artifacts_uri=artifacts_uri, merged=merged)

    def speaks_for(self, account: str | None) -> bool:
        return True

    def training_log(self, ref: TrainingJobRef, *, position: str | None, limit: int) -> TrainingLogPage:
        self._call("training_log", ref)
        return TrainingLogPage(position=position)

    def evaluation_report(self, ref: TrainingJobRef) -> EvaluationReport | EvaluationSkipped | None:
        self._call("evaluation_report", ref)
        return None

    def checkpoints(self, ref: TrainingJobRef) -> CheckpointList:
        self._call("checkpoints", ref)
        return CheckpointList()

    def checkpoint_download(
        self, ref: TrainingJobRef, checkpoint_id: str, *, expires_in_s: int = 900
    ) -> DownloadLink:
        self._call("checkpoint_download", checkpoint_id)
        raise unknown_checkpoint(checkpoint_id)

    def start_training(self, request: TrainingRequest) -> TrainingJobRef:
        self._call("start_training", request)
        return TrainingJobRef(provider=self.name, job_id="job", job_name="job")

    def stop_training(self, ref: TrainingJobRef) -> None:
        self._call("stop_training", ref)

    def resume_point(self, identity: ModelIdentity, attempt: int) -> ResumePoint | None:
        self._call("resume_point", (identity, attempt))
        return self.resume_points.get(identity.model_name)

    def describe_training(self, ref: TrainingJobRef) -> TrainingState:
        self._call("describe_training", ref)
        return self.training.get(ref.job_id) or TrainingState(job_id=ref.job_id, status="in_progress")

    def deploy(self, request: DeployRequest) -> DeploymentRef:
        self._call("deploy", request)
        raise NotImplementedError("not used by these tests")

    def describe_deployment(self, ref: DeploymentRef) -> DeploymentState:
        self._call("describe_deployment", ref)
        gone = ref.deployment_id in self.gone_deployments
        return DeploymentState(deployment_id=ref.deployment_id, status="gone" if gone else "in_service")

    def undeploy(self, ref: DeploymentRef) -> None:
        self._call("undeploy", ref)
        self.gone_deployments.add(ref.deployment_id)

    def invoke(self, ref: DeploymentRef, params: InvokeParams) -> InvokeResult:
        self._call("invoke", (ref, params))
        raise NotImplementedError("not used by these tests")

    def download(self, artifacts_uri: str, *, expires_in_s: int = 900) -> DownloadLink:
        self._call("download", artifacts_uri)
        raise NotImplementedError("not used by these tests")

    def delete_model(self, model: TrainedModel) -> None:
        self._call("delete_model", model)


class LambdaContextStub:
    """What Powertools reads from a Lambda context (the functions' logger injects it)."""

    function_name = "tunelab-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:tunelab-test"
    aws_request_id = "6f1a2b3c-0000-4000-8000-000000000000"
    log_group_name = "/aws/lambda/tunelab-test"
    log_stream_name = "2026/11/28/[$LATEST]0000"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


CONTEXT: Any = LambdaContextStub()


class BusSpy:
    """Creates tunelab's event bus with a catch-all rule into a queue, and reads what was published."""

    def __init__(self, bus: str, region: str = "us-east-1") -> None:

        self.events = boto3.client("events", region_name=region)
        self.sqs = boto3.client("sqs", region_name=region)
        self.events.create_event_bus(Name=bus)
        self.queue = self.sqs.create_queue(QueueName=f"{bus}-spy")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.events.put_rule(Name="spy", EventBusName=bus, EventPattern=json.dumps({"source": ["tunelab"]}))
        self.events.put_targets(Rule="spy", EventBusName=bus, Targets=[{"Id": "spy", "Arn": arn}])
        self.seen: list[dict[str, Any]] = []

    def published(self) -> list[dict[str, Any]]:
        """Every event published so far, oldest first (as EventBridge delivered them)."""
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return self.seen
            for message in got:
                self.seen.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])


# --- models in given states, and the services around them ------------------------------------------------

WS = "ws-acme"
SENDER = "tunelab@example.com"  # the conftest's SENDER_EMAIL
SCHEDULE_GROUP = "tunelab-test"  # the conftest's SCHEDULE_GROUP


def build_services(repo: Services, *providers: RecordingProvider) -> Services:
    """Services on the mock account, with these provider doubles; SES sender verified, schedule group made."""

    boto3.client("ses", region_name="us-east-1").verify_email_identity(EmailAddress=SENDER)
    boto3.client("scheduler", region_name="us-east-1").create_schedule_group(Name=SCHEDULE_GROUP)
    built = Services(providers={p.name: p for p in providers})
    set_services(built)
    return built


def emails() -> list[Any]:
    """Messages sent through SES in the mock account (moto's SES backend)."""
    from moto.ses.models import ses_backends  # noqa: PLC0415

    return list(ses_backends["123456789012"]["us-east-1"].sent_messages)


def schedules() -> list[str]:

    listed = boto3.client("scheduler", region_name="us-east-1").list_schedules(GroupName=SCHEDULE_GROUP)
    return sorted(s["Name"] for s in listed["Schedules"])


def create_model(
    repo: Services, name: str = "support-bot-v1", *, provider: str = "bedrock", **fields: Any
) -> ModelRecord:
    """A model (and the ready dataset it was trained on) stored as the API would store it."""
    from tests.integration import factories  # noqa: PLC0415

    dataset = repo.datasets.create(factories.dataset(WS, name=f"data-{name}"))
    job_id = (
        f"{name}-job"
        if provider == "sagemaker"
        else f"arn:aws:bedrock:us-east-1:123456789012:model-customization-job/{name}"
    )
    job = TrainingJobRef(provider=provider, job_id=job_id, job_name=f"{name}-job")  # type: ignore[arg-type]
    values: dict[str, Any] = {
        "provider": provider,
        "hosting": "byok" if provider == "sagemaker" else "managed",
        "training": TrainingRecordState(job_id=job_id),
        "refs": ProviderRefs(training_job=job),
    }
    values.update(fields)
    return repo.models.create(factories.model(WS, name, dataset_id=dataset.dataset_id, **values))


def create_deployed_model(
    services: Services,
    repo: Services,
    name: str = "support-bot-v1",
    *,
    provider: str = "sagemaker",
    requested_at: datetime,
    undeploy_in: timedelta = timedelta(hours=4),
) -> ModelRecord:
    """A deployed model with its endpoint and the auto-undeploy schedules the deployment made."""
    endpoint = f"{name}-ep-{requested_at:%H%M%S}"
    model = create_model(
        repo,
        name,
        provider=provider,
        status=ModelStatus.DEPLOYED,
        artifacts=Artifacts(uri=f"s3://customer-artifacts/tunelab/{WS}/{name}/model.tar.gz"),
    )
    now = datetime.now(UTC)
    auto = services.scheduler.create_auto_undeploy(
        model.identity,
        uid=model.uid,
        requested_at=requested_at,
        undeploy_at=now + undeploy_in,
        deployed_at=now,
    )
    kind = "sagemaker_endpoint" if provider == "sagemaker" else "custom_model_deployment"
    ref = DeploymentRef(provider=provider, kind=kind, deployment_id=endpoint)  # type: ignore[arg-type]
    return repo.models.update(
        WS,
        name,
        ModelChanges(
            deployment=DeploymentRecordState(
                endpoint=endpoint,
                requested_at=requested_at,
                deployed_at=now,
                auto_undeploy_at=auto.undeploy_at,
                schedule_name=auto.undeploy_name,
            ),
            refs=model.refs.model_copy(update={"deployment": ref}),
        ),
    )


# --- a workflow waiting on its training task token -------------------------------------------------------

WAITING_MACHINE = {
    "Comment": "Stands in for the StartTraining task: waits for its token, outputs what it receives",
    "StartAt": "StartTraining",
    "States": {
        "StartTraining": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {"QueueUrl": "${QueueUrl}", "MessageBody": {"token.$": "$$.Task.Token"}},
            "End": True,
        }
    },
}


class Workflow:
    """A running execution waiting on a task token stored the way the fine-tuning workflow stores it."""

    def __init__(self, services: Services, model: ModelRecord) -> None:
        self.sfn = services.sfn
        sqs = boto3.client("sqs", region_name=REGION)
        queue = sqs.create_queue(QueueName=f"tokens-{model.name}")["QueueUrl"]
        definition = json.dumps(WAITING_MACHINE).replace("${QueueUrl}", queue)
        machine = self.sfn.create_state_machine(
            name=f"waiting-{model.name}",
            definition=definition,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/tunelab-states",
        )["stateMachineArn"]
        self.arn = self.sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
        self.token = json.loads(
            _poll(lambda: sqs.receive_message(QueueUrl=queue).get("Messages"))[0]["Body"]
        )["token"]
        services.task_tokens.put(
            model.workspace_id,
            model.name,
            "training",
            self.token,
            until=datetime.now(UTC) + timedelta(days=2),
        )

    def status(self) -> str:
        return str(self.sfn.describe_execution(executionArn=self.arn)["status"])

    def output(self) -> dict[str, Any]:
        _poll(lambda: self.status() != "RUNNING")
        described = self.sfn.describe_execution(executionArn=self.arn)
        assert described["status"] == "SUCCEEDED"
        result: dict[str, Any] = json.loads(described["output"])
        return result


def _poll(probe: Any, seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("timed out")


def connect_sagemaker(repo: Services, account: str = ACCOUNT, workspace: str = WS) -> None:
    """The workspace's BYOK connection to a SageMaker account (whose events are then believed)."""
    now = datetime.now(UTC)
    repo.connections.put(
        ProviderConnectionRecord(
            workspace_id=workspace,
            role_arn=f"arn:aws:iam::{account}:role/tunelab-connector",
            external_id="ext-1234567890",
            region="us-west-2",
            artifact_bucket="customer-artifacts",
            status="connected",
            created_at=now,
            updated_at=now,
        )
    )
