"""What handler and operations tests share: AWS documentation events, SQS batches, a recording provider."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunelab.providers.base import (
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
        raise NotImplementedError("events are parsed by tunelab.providers.parse_event")


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
        import boto3  # noqa: PLC0415

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
