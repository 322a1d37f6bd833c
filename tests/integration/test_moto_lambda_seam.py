"""The in-process Lambda seam: moto's Lambda backend runs the handler named by `Handler`, here.

Checked the ways tunelab reaches its functions: a Step Functions task (with a task token answered
later, Retry on tunelab's transient error, Catch by the exception's class name), an SQS
event-source mapping, and a direct Invoke.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.core.config import default_user_config

from tests.integration.conftest import ACCOUNT, REGION, Aws
from tunelab.domain.errors import ProviderTransientError
from tunelab.local.moto_lambda import LambdaContext, install_in_process_lambda, is_installed

pytestmark = pytest.mark.moto

ROLE = f"arn:aws:iam::{ACCOUNT}:role/seam-test"
THIS = __name__

# What the handlers below saw, per test (reset by the fixture).
SEEN: dict[str, list[Any]] = {}


def remember_token(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    SEEN.setdefault("tokens", []).append(event["token"])
    SEEN.setdefault("contexts", []).append(context)
    return {"ignored": True}


def flaky(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    calls = SEEN.setdefault("flaky", [])
    calls.append(event)
    if len(calls) < 2:
        raise ProviderTransientError("the provider is busy")
    return {"attempts": len(calls), "echo": event["value"]}


def broken(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    raise LookupError("no such thing")


def consume(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    SEEN.setdefault("records", []).extend(record["body"] for record in event["Records"])
    return {"batchItemFailures": []}


def echo(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return {
        "event": event,
        "function": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }


@pytest.fixture
def seam(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setitem(default_user_config, "stepfunctions", {"execute_state_machine": True})
    SEEN.clear()
    # The seam runs only the handlers it is told to (tunelab's own by default): these test ones here.
    uninstall = install_in_process_lambda(
        handlers=[f"{THIS}.{name}" for name in ("remember_token", "flaky", "broken", "consume", "echo")]
    )
    boto3.client("iam", region_name=REGION).create_role(RoleName="seam-test", AssumeRolePolicyDocument="{}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.py", "")
    lam = boto3.client("lambda", region_name=REGION)

    def function(name: str) -> str:
        created = lam.create_function(
            FunctionName=name, Runtime="python3.12", Role=ROLE, Handler=f"{THIS}.{name}",
            Code={"ZipFile": buffer.getvalue()}, Timeout=30,
        )  # fmt: skip
        return str(created["FunctionArn"])

    try:
        yield function
    finally:
        uninstall()
    assert not is_installed()


def _wait(sfn: Any, arn: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution still running"
        time.sleep(0.05)
    return dict(described)


def test_a_state_machine_task_waits_on_the_token_the_handler_received(seam: Any) -> None:
    arn = seam("remember_token")
    sfn = boto3.client("stepfunctions", region_name=REGION)
    definition = {
        "StartAt": "Wait",
        "States": {
            "Wait": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": arn, "Payload": {"token.$": "$$.Task.Token"}},
                "TimeoutSeconds": 30,
                "End": True,
            }
        },
    }
    machine = sfn.create_state_machine(name="seam", definition=json.dumps(definition), roleArn=ROLE)
    execution = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input="{}")["executionArn"]

    deadline = time.monotonic() + 20
    while not SEEN.get("tokens"):
        assert time.monotonic() < deadline, "the handler never ran"
        time.sleep(0.05)
    sfn.send_task_success(taskToken=SEEN["tokens"][0], output=json.dumps({"outcome": "completed"}))

    result = _wait(sfn, execution)
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {"outcome": "completed"}
    context = SEEN["contexts"][0]
    assert context.function_name == "remember_token"
    assert context.invoked_function_arn == arn


def test_errors_reach_retry_and_catch_by_their_class_name(seam: Any) -> None:
    flaky_arn, broken_arn = seam("flaky"), seam("broken")
    sfn = boto3.client("stepfunctions", region_name=REGION)
    definition = {
        "StartAt": "Flaky",
        "States": {
            "Flaky": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": flaky_arn, "Payload": {"value": 7}},
                "ResultSelector": {"Payload.$": "$.Payload"},
                "ResultPath": "$.flaky",
                "Retry": [
                    {"ErrorEquals": ["ProviderTransientError"], "IntervalSeconds": 1, "MaxAttempts": 2}
                ],
                "Next": "Broken",
            },
            "Broken": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": broken_arn, "Payload": {}},
                "Catch": [{"ErrorEquals": ["LookupError"], "ResultPath": "$.caught", "Next": "Done"}],
                "End": True,
            },
            "Done": {"Type": "Succeed"},
        },
    }
    machine = sfn.create_state_machine(name="errors", definition=json.dumps(definition), roleArn=ROLE)
    execution = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input="{}")["executionArn"]

    result = _wait(sfn, execution)
    assert result["status"] == "SUCCEEDED"
    output = json.loads(result["output"])
    assert output["flaky"]["Payload"] == {"attempts": 2, "echo": 7}
    assert output["caught"]["Error"] == "LookupError"
    cause = json.loads(output["caught"]["Cause"])
    assert cause["errorType"] == "LookupError"
    assert cause["errorMessage"] == "no such thing"


def test_an_sqs_event_source_mapping_runs_the_handler(seam: Any) -> None:
    arn = seam("consume")
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="seam-queue")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("lambda", region_name=REGION).create_event_source_mapping(
        EventSourceArn=queue_arn, FunctionName=arn, BatchSize=1
    )

    sqs.send_message(QueueUrl=url, MessageBody='{"hello": "tunelab"}')

    assert SEEN["records"] == ['{"hello": "tunelab"}']


def test_a_direct_invoke_returns_the_handlers_result_or_its_error(seam: Any) -> None:
    seam("echo")
    seam("broken")
    lam = boto3.client("lambda", region_name=REGION)

    ok = lam.invoke(FunctionName="echo", Payload=json.dumps({"a": 1}))
    failed = lam.invoke(FunctionName="broken", Payload="{}")

    body = json.loads(ok["Payload"].read())
    assert body["event"] == {"a": 1}
    assert body["function"] == "echo"
    assert 0 < body["remaining_ms"] <= 30_000
    assert "FunctionError" not in ok
    assert failed["FunctionError"] == "Handled"
    assert json.loads(failed["Payload"].read())["errorType"] == "LookupError"
