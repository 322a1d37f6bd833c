"""What handler and operations tests share: AWS documentation events, SQS batches, a recording provider."""

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

from tunelab.adapters.dynamodb import Repository
from tunelab.composition.wiring import Services, set_services
from tunelab.domain.providers import (
    DeploymentRef,
    DeploymentState,
    DeployRequest,
    DownloadLink,
    InvokeParams,
    InvokeResult,
    ProviderName,
    TrainedModel,
    TrainingJobRef,
    TrainingRequest,
    TrainingState,
)
from tunelab.domain.records import Artifacts, ModelRecord, ProviderConnectionRecord
from tunelab.domain.records import DeploymentState as DeploymentRecordState
from tunelab.domain.records import TrainingState as TrainingRecordState
from tunelab.domain.status import ModelStatus

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

    def _call(self, what: str, arg: Any) -> None:
        self.calls.append((what, arg))
        if self.fail_with is not None:
            raise self.fail_with

    def called(self, what: str) -> list[Any]:
        return [arg for name, arg in self.calls if name == what]

    def start_training(self, request: TrainingRequest) -> TrainingJobRef:
        self._call("start_training", request)
        return TrainingJobRef(provider=self.name, job_id="job", job_name="job")

    def stop_training(self, ref: TrainingJobRef) -> None:
        self._call("stop_training", ref)

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

    def parse_event(self, detail_type: str, detail: Mapping[str, Any]) -> TrainingState | DeploymentState:
        raise NotImplementedError("events are parsed by tunelab.adapters.providers.parse_event")


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


def build_services(repo: Repository, *providers: RecordingProvider) -> Services:
    """Services on the mock account, with these provider doubles; SES sender verified, schedule group made."""

    boto3.client("ses", region_name="us-east-1").verify_email_identity(EmailAddress=SENDER)
    boto3.client("scheduler", region_name="us-east-1").create_schedule_group(Name=SCHEDULE_GROUP)
    built = Services(repository=repo, providers={p.name: p for p in providers})
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
    repo: Repository, name: str = "support-bot-v1", *, provider: str = "bedrock", **fields: Any
) -> ModelRecord:
    """A model (and the ready dataset it was trained on) stored as the API would store it."""
    from tests.integration import factories  # noqa: PLC0415

    dataset = repo.create_dataset(factories.dataset(WS, name=f"data-{name}"))
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
        "provider_data": {"training_job": job.model_dump()},
    }
    values.update(fields)
    return repo.create_model(factories.model(WS, name, dataset_id=dataset.dataset_id, **values))


def create_deployed_model(
    services: Services,
    repo: Repository,
    name: str = "support-bot-v1",
    *,
    provider: str = "sagemaker",
    requested_at: datetime,
    undeploy_in: timedelta = timedelta(hours=4),
) -> ModelRecord:
    """A deployed model with its endpoint and the auto-undeploy schedules the deployment made."""
    from tunelab.application.operations import scheduler  # noqa: PLC0415
    from tunelab.composition.wiring import model_identity  # noqa: PLC0415

    endpoint = f"{name}-ep-{requested_at:%H%M%S}"
    model = create_model(
        repo,
        name,
        provider=provider,
        status=ModelStatus.DEPLOYED,
        artifacts=Artifacts(uri=f"s3://customer-artifacts/tunelab/{WS}/{name}/model.tar.gz"),
    )
    now = datetime.now(UTC)
    auto = scheduler(services).create_auto_undeploy(
        model_identity(model),
        uid=model.uid,
        requested_at=requested_at,
        undeploy_at=now + undeploy_in,
        deployed_at=now,
    )
    kind = "sagemaker_endpoint" if provider == "sagemaker" else "custom_model_deployment"
    ref = DeploymentRef(provider=provider, kind=kind, deployment_id=endpoint)  # type: ignore[arg-type]
    return repo.update_model(
        WS,
        name,
        {
            "deployment": DeploymentRecordState(
                endpoint=endpoint,
                deployed_at=now,
                auto_undeploy_at=auto.undeploy_at,
                schedule_name=auto.undeploy_name,
            ),
            "provider_data": {**model.provider_data, "deployment": ref.model_dump()},
        },
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
        services.repository.put_task_token(
            model.workspace_id, model.name, "training", self.token, ttl=timedelta(days=2)
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


def connect_sagemaker(repo: Repository, account: str = ACCOUNT) -> None:
    """The workspace's BYOK connection to a SageMaker account (whose events are then believed)."""
    now = datetime.now(UTC)
    repo.put_provider_connection(
        ProviderConnectionRecord(
            workspace_id=WS,
            role_arn=f"arn:aws:iam::{account}:role/tunelab-connector",
            external_id="ext-1234567890",
            region="us-west-2",
            artifact_bucket="customer-artifacts",
            status="connected",
            created_at=now,
            updated_at=now,
        )
    )
