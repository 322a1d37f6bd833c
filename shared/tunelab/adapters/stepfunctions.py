"""The fine-tuning and deployment state machines in Step Functions (`application.ports.Workflows`):
starting executions named after the model, and answering the task the fine-tuning execution waits on."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from tunelab.adapters.aws_errors import aws_call, error_code
from tunelab.adapters.dynamodb.table import model_key
from tunelab.application.workflows import (
    DEFAULT_POLL_SECONDS,
    DeploymentInput,
    FineTuningInput,
    TableKey,
    TrainingOutcome,
    deployment_execution_name,
    execution_arn,
    execution_name,
)
from tunelab.domain.records import ModelRecord

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient
    from pydantic import BaseModel

_GONE_TOKEN_CODES = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})


def table_key(workspace_id: str, model_name: str) -> TableKey:
    """The model record's key in the records table, for the workflows' last-resort update."""
    return TableKey.model_validate(model_key(workspace_id, model_name))


class StepFunctionsWorkflows:
    def __init__(
        self,
        *,
        fine_tuning_arn: str,
        deployment_arn: str,
        client: SFNClient | None = None,
        client_factory: Callable[[], SFNClient] | None = None,
        poll_seconds: int = DEFAULT_POLL_SECONDS,
    ) -> None:
        if (client is None) == (client_factory is None):
            raise ValueError("give exactly one of client and client_factory")
        self.fine_tuning_machine = fine_tuning_arn
        self.deployment_machine = deployment_arn
        self.poll_seconds = poll_seconds
        self._client = client
        self._client_factory = client_factory

    @property
    def client(self) -> SFNClient:
        if self._client is None:
            assert self._client_factory is not None
            self._client = self._client_factory()
        return self._client

    def fine_tuning_arn(self, record: ModelRecord) -> str:
        return execution_arn(
            self.fine_tuning_machine, execution_name(record.name, record.uid, record.training.attempt)
        )

    def deployment_arn(self, record: ModelRecord, requested_at: datetime) -> str:
        return execution_arn(
            self.deployment_machine, deployment_execution_name(record.name, record.uid, requested_at)
        )

    def start_fine_tuning(
        self, record: ModelRecord, *, correlation_id: str, training_timeout_seconds: int | None = None
    ) -> str:
        body = FineTuningInput(
            workspace_id=record.workspace_id,
            model_name=record.name,
            uid=record.uid,
            correlation_id=correlation_id,
            table_key=table_key(record.workspace_id, record.name),
            training_timeout_seconds=training_timeout_seconds,
        )
        name = execution_name(record.name, record.uid, record.training.attempt)
        return self._start(self.fine_tuning_machine, name, body)

    def start_deployment(
        self,
        record: ModelRecord,
        *,
        requested_at: datetime,
        correlation_id: str,
        auto_undeploy_at: datetime | None,
    ) -> str:
        body = DeploymentInput(
            workspace_id=record.workspace_id,
            model_name=record.name,
            uid=record.uid,
            correlation_id=correlation_id,
            table_key=table_key(record.workspace_id, record.name),
            requested_at=requested_at,
            auto_undeploy_at=auto_undeploy_at,
            poll_seconds=self.poll_seconds,
        )
        name = deployment_execution_name(record.name, record.uid, requested_at)
        return self._start(self.deployment_machine, name, body)

    def send_training_outcome(self, token: str, outcome: TrainingOutcome) -> bool:
        try:
            self.client.send_task_success(taskToken=token, output=outcome.model_dump_json())
        except ClientError as error:
            if error_code(error) in _GONE_TOKEN_CODES:
                return False
            with aws_call("Answering the fine-tuning workflow", permission="states:SendTaskSuccess"):
                raise
        return True

    def send_training_heartbeat(self, token: str) -> bool:
        try:
            self.client.send_task_heartbeat(taskToken=token)
        except ClientError as error:
            if error_code(error) in _GONE_TOKEN_CODES:
                return False
            with aws_call(
                "Telling the fine-tuning workflow the job is alive", permission="states:SendTaskHeartbeat"
            ):
                raise
        return True

    def running(self, execution_arn: str) -> bool:
        try:
            status = self.client.describe_execution(executionArn=execution_arn)["status"]
        except ClientError as error:
            if error_code(error) == "ExecutionDoesNotExist":
                return False
            with aws_call("Looking up a workflow execution", permission="states:DescribeExecution"):
                raise
        return status == "RUNNING"

    def _start(self, machine: str, name: str, body: BaseModel) -> str:
        try:
            return self.client.start_execution(
                stateMachineArn=machine, name=name, input=body.model_dump_json()
            )["executionArn"]
        except ClientError as error:
            # Started before (a retried request): the execution of that name is this one.
            if error_code(error) == "ExecutionAlreadyExists":
                return execution_arn(machine, name)
            with aws_call(f"Starting the execution {name}", permission="states:StartExecution"):
                raise
