"""The workflows' stack under moto: state machines that really execute, Lambda functions that run the
real handlers in this process, the buckets, tunelab's bus routed to a queue, SES and Scheduler.

Everything is created from the same data the CDK app reads (`stack_definitions.FUNCTIONS`,
`STATE_MACHINES`, the ASL files, `adapters.dynamodb.TABLE_DEFINITION` through the `aws` fixture).
A test module imports `stack_fixture` (which registers the fixture `stack`).
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.core.config import default_user_config
from moto.ses.models import ses_backends

from tests.integration import factories
from tests.integration.conftest import ACCOUNT, ENVIRONMENT, REGION, Aws
from tunelab.composition.settings import get_settings, reset_settings
from tunelab.composition.stack_definitions import FUNCTIONS, STATE_MACHINES, state_machine_variables
from tunelab.composition.state_machines import definition
from tunelab.composition.wiring import Services, reset_services, set_services
from tunelab.domain.records import DatasetRecord, ModelRecord
from tunelab.local.moto_dynamodb import install_atomic_dynamodb
from tunelab.local.moto_lambda import install_in_process_lambda

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "shared" / "tunelab" / "sample_data"
LAMBDA_ROLE = f"arn:aws:iam::{ACCOUNT}:role/tunelab-test-lambda"
STATES_ROLE = f"arn:aws:iam::{ACCOUNT}:role/tunelab-test-states"
STACK = "tunelab"


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("placeholder.py", "# the code runs in-process (tunelab.local.moto_lambda)\n")
    return buffer.getvalue()


@dataclass
class Stack:
    """What the `stack` fixture made, with helpers to drive and read it."""

    aws: Aws
    services: Services
    repo: Services
    fine_tuning_arn: str
    deployment_arn: str
    events_queue_url: str
    function_arns: dict[str, str] = field(default_factory=dict)

    @property
    def sfn(self) -> Any:
        return self.services.sfn

    def dataset(
        self, workspace: str = "ws-acme", name: str = "support-tickets", csv: str = "support-triage.csv"
    ) -> DatasetRecord:
        """A ready dataset whose CSV is in the datasets bucket."""
        body = (SAMPLE_DATA / csv).read_bytes()
        record = factories.dataset(
            workspace, name, s3_key=f"{workspace}/datasets/{name}.csv", size_bytes=len(body)
        )
        self.services.s3.put_object(Bucket=get_settings().datasets_bucket, Key=record.s3_key or "", Body=body)
        return self.repo.datasets.create(record)

    def model(self, dataset: DatasetRecord, **fields: Any) -> ModelRecord:
        """A model record in `training` (or the status given), stored as the API would."""
        fields.setdefault("dataset", {"id": dataset.dataset_id, "name": dataset.name, "rows": dataset.rows})
        return self.repo.models.create(
            factories.model(dataset.workspace_id, dataset_id=dataset.dataset_id, **fields)
        )

    def wait_execution(self, arn: str, timeout: float = 60.0) -> dict[str, Any]:
        """The execution once it has ended (fails the test if it runs past `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            described = self.sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                return dict(described)
            if time.monotonic() > deadline:
                history = self.sfn.get_execution_history(executionArn=arn)["events"]
                pytest.fail(f"execution still running after {timeout}s: {[e['type'] for e in history][-8:]}")
            time.sleep(0.05)

    def wait_for(self, check: Callable[[], Any], timeout: float = 40.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.05)

    def wait_for_token(self, record: ModelRecord, timeout: float = 40.0) -> str:
        token: str = self.wait_for(
            lambda: self.repo.task_tokens.get(record.workspace_id, record.name, "training"),
            timeout,
            "the training task token",
        )
        return token

    def history(self, arn: str) -> list[dict[str, Any]]:
        return list(self.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"])

    def states_entered(self, arn: str) -> list[str]:
        return [
            e["stateEnteredEventDetails"]["name"]
            for e in self.history(arn)
            if "stateEnteredEventDetails" in e
        ]

    def emails(self) -> list[Any]:
        """Messages sent through SES in this mock account (moto's SES backend)."""
        return list(ses_backends[ACCOUNT][REGION].sent_messages)

    def domain_events(self, wait_for: int = 0, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Events that reached tunelab's bus (routed to a queue by a rule on `source: tunelab`)."""
        sqs = boto3.client("sqs", region_name=REGION)
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            answer = sqs.receive_message(QueueUrl=self.events_queue_url, MaxNumberOfMessages=10)
            for message in answer.get("Messages", []):
                seen.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.events_queue_url, ReceiptHandle=message["ReceiptHandle"])
            if len(seen) >= wait_for or time.monotonic() > deadline:
                return seen
            time.sleep(0.05)


@pytest.fixture(name="stack")
def stack_fixture(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The workflows' resources in the `aws` fixture's mock account, state machines executing."""
    monkeypatch.setitem(default_user_config, "stepfunctions", {"execute_state_machine": True})
    # A deployment requested through the API is looked at again at once, not after 30 s.
    monkeypatch.setenv("DEPLOY_POLL_SECONDS", "0")
    reset_settings()
    settings = get_settings()
    uninstall_lambda = install_in_process_lambda()
    uninstall_atomic = install_atomic_dynamodb()  # Lambda tasks write from other threads

    def uninstall() -> None:
        uninstall_atomic()
        uninstall_lambda()

    try:
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (settings.datasets_bucket, settings.artifacts_bucket):
            s3.create_bucket(Bucket=bucket)
        iam = boto3.client("iam", region_name=REGION)
        trust = json.dumps({"Version": "2012-10-17", "Statement": []})
        for role in (LAMBDA_ROLE, STATES_ROLE):
            iam.create_role(RoleName=role.rsplit("/", 1)[1], AssumeRolePolicyDocument=trust)

        lam = boto3.client("lambda", region_name=REGION)
        code = _zip()
        arns: dict[str, str] = {}
        for spec in FUNCTIONS:
            created = lam.create_function(
                FunctionName=f"{STACK}-{spec.name_suffix}",
                Runtime="python3.12",
                Role=LAMBDA_ROLE,
                Handler=spec.handler,
                Code={"ZipFile": code},
                Timeout=spec.timeout_seconds,
                MemorySize=spec.memory_mb,
            )
            arns[spec.logical_id] = created["FunctionArn"]

        values = {name: arns[target] for name, target in state_machine_variables().items() if target in arns}
        values.update(
            TableName=aws.table_name,
            EventBusName=settings.event_bus_name,
            DatasetsBucketName=settings.datasets_bucket,
            ArtifactsBucketName=settings.artifacts_bucket,
        )
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine_arns = {}
        for machine in STATE_MACHINES:
            expected = getattr(settings, machine.settings_field)
            created_machine = sfn.create_state_machine(
                name=expected.rsplit(":", 1)[1],
                definition=definition(machine.asl_file, values),
                roleArn=STATES_ROLE,
            )
            assert created_machine["stateMachineArn"] == expected
            machine_arns[machine.logical_id] = expected

        events = boto3.client("events", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        events.create_event_bus(Name=settings.event_bus_name)
        queue_url = sqs.create_queue(QueueName="tunelab-domain-events")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events.put_rule(
            Name="tunelab-domain-events",
            EventBusName=settings.event_bus_name,
            EventPattern=json.dumps({"source": ["tunelab"]}),
        )
        events.put_targets(
            Rule="tunelab-domain-events",
            EventBusName=settings.event_bus_name,
            Targets=[{"Id": "queue", "Arn": queue_arn}],
        )

        boto3.client("ses", region_name=REGION).verify_email_identity(EmailAddress=settings.sender_email)
        boto3.client("scheduler", region_name=REGION).create_schedule_group(Name=settings.schedule_group)

        services = Services(settings)
        set_services(services)
        yield Stack(
            aws=aws,
            services=services,
            repo=services,
            fine_tuning_arn=machine_arns["FineTuningStateMachine"],
            deployment_arn=machine_arns["DeploymentStateMachine"],
            events_queue_url=queue_url,
            function_arns=arns,
        )
    finally:
        reset_services()
        uninstall()


__all__ = ["ENVIRONMENT", "Stack", "stack_fixture"]
