"""Deterministic names of executions and schedules; reminder timing; ASL placeholders."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import pytest

from tunelab.adapters.scheduler import EventBridgeScheduler
from tunelab.adapters.stepfunctions import table_key
from tunelab.application.workflows import (
    TaskError,
    deployment_execution_name,
    execution_arn,
    execution_name,
)
from tunelab.composition.stack_definitions import STATE_MACHINES, placeholders, state_machine_variables
from tunelab.composition.state_machines import definition, definition_text
from tunelab.domain.providers import ModelIdentity
from tunelab.domain.schedules import at_expression, reminder_time, schedule_names

if TYPE_CHECKING:
    from mypy_boto3_scheduler import EventBridgeSchedulerClient

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
# Step Functions execution names: 1-80 characters, none of whitespace, brackets, wildcards and
# the punctuation the StartExecution reference lists.
EXECUTION_NAME = re.compile(r"^[^\s<>{}\[\]?*\"#%\\^|~`$&,;:/]{1,80}$")
# https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html
LAMBDA_SERVICE_ERRORS = {
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}
SCHEDULE_NAME = re.compile(r"^[0-9a-zA-Z\-_.]{1,64}$")


@pytest.mark.parametrize("name", ["a", "support-bot-v1", "x" * 63, "Mixed-Case-9"])
def test_execution_names_are_valid_deterministic_and_per_model_life(name: str) -> None:
    first = execution_name(name, "0123456789abcdef")
    assert EXECUTION_NAME.match(first)
    assert first.startswith(name[:60])
    assert first == execution_name(name, "0123456789abcdef")
    assert first != execution_name(name, "fedcba9876543210")
    deploy = deployment_execution_name(name, "0123456789abcdef", T0)
    assert EXECUTION_NAME.match(deploy)
    assert deploy != deployment_execution_name(name, "0123456789abcdef", T0 + timedelta(seconds=1))


@pytest.mark.parametrize("name", ["a", "support-bot-v1", "x" * 63])
def test_each_resume_of_a_training_has_its_own_execution_name(name: str) -> None:
    uid = "0123456789abcdef"
    names = [execution_name(name, uid, attempt) for attempt in (0, 1, 2, 99)]
    assert names[0] == execution_name(name, uid)  # the first run keeps the name it always had
    assert len(set(names)) == len(names)
    assert all(EXECUTION_NAME.match(n) for n in names)
    assert names[1].endswith("-r1")
    assert names[1] == execution_name(name, uid, 1)  # a retried resume finds its execution


def test_execution_arn_follows_the_state_machine() -> None:
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:tunelab-fine-tuning"
    assert (
        execution_arn(machine, "m-1")
        == "arn:aws:states:us-east-1:123456789012:execution:tunelab-fine-tuning:m-1"
    )


def test_schedule_names_are_valid_and_differ_per_deploy_request() -> None:
    identity = ModelIdentity(workspace_id="ws-acme", model_name="x" * 63, created_at=T0)
    undeploy, remind = schedule_names(identity, T0)
    assert SCHEDULE_NAME.match(undeploy)
    assert SCHEDULE_NAME.match(remind)
    assert undeploy.endswith("-undeploy")
    assert remind.endswith("-remind")
    assert schedule_names(identity, T0) == (undeploy, remind)
    assert schedule_names(identity, T0 + timedelta(hours=1))[0] != undeploy


def test_at_expression_is_utc_rounded_up_to_the_minute() -> None:
    # Scheduler fires anywhere in the expression's minute: 18:30 could run at 18:30:00, before 18:30:45.
    moment = datetime(2026, 11, 28, 18, 30, 45, tzinfo=UTC)
    assert at_expression(moment) == "at(2026-11-28T18:31:00)"
    assert at_expression(moment.astimezone(datetime.now().astimezone().tzinfo)) == "at(2026-11-28T18:31:00)"
    assert at_expression(datetime(2026, 11, 28, 23, 59, 0, 1, tzinfo=UTC)) == "at(2026-11-29T00:00:00)"
    assert at_expression(datetime(2026, 11, 28, 18, 30, tzinfo=UTC)) == "at(2026-11-28T18:30:00)"


class _RecordingSchedulerClient:
    def __init__(self) -> None:
        self.created: dict[str, dict[str, Any]] = {}

    def create_schedule(self, **request: Any) -> dict[str, str]:
        self.created[request["Name"]] = request
        return {"ScheduleArn": f"arn:aws:scheduler:::schedule/{request['Name']}"}


def test_the_stored_undeploy_time_is_when_the_schedule_fires_never_earlier() -> None:
    # Given a deploy request asking for an undeploy at 20:30:45
    client = _RecordingSchedulerClient()
    scheduler = EventBridgeScheduler(
        cast("EventBridgeSchedulerClient", client),
        group="tunelab",
        role_arn="arn:aws:iam::123456789012:role/scheduler",
        target_arn="arn:aws:lambda:us-east-1:123456789012:function:auto-undeploy",
        dead_letter_arn="arn:aws:sqs:us-east-1:123456789012:schedules-dlq",
        clock=lambda: T0,
    )
    identity = ModelIdentity(workspace_id="ws-acme", model_name="bot", created_at=T0)
    asked = T0 + timedelta(hours=8, minutes=30, seconds=45)
    # When the schedules are made
    made = scheduler.create_auto_undeploy(identity, uid="u1", requested_at=T0, undeploy_at=asked)
    # Then the returned (stored) time is the whole minute after, the one the expression names
    assert made.undeploy_at == datetime(2026, 11, 28, 20, 31, tzinfo=UTC)
    undeploy = client.created[made.undeploy_name]
    assert undeploy["ScheduleExpression"] == "at(2026-11-28T20:31:00)"
    assert json.loads(undeploy["Target"]["Input"])["undeploy_at"].startswith("2026-11-28T20:31:00")
    assert made.remind_at is not None
    assert made.remind_at.second == 0
    assert made.remind_at < made.undeploy_at
    reminder = client.created[cast("str", made.reminder_name)]
    assert reminder["ScheduleExpression"] == at_expression(made.remind_at)
    # And a schedule Scheduler could not deliver goes to the dead-letter queue, the reminder's too
    dead_letters = {"Arn": "arn:aws:sqs:us-east-1:123456789012:schedules-dlq"}
    for request in (undeploy, reminder):
        assert request["Target"]["DeadLetterConfig"] == dead_letters


@pytest.mark.parametrize(
    ("window", "lead"),
    [
        (timedelta(hours=24), timedelta(hours=1)),  # capped at an hour
        (timedelta(hours=4), timedelta(minutes=24)),  # 10% of the window
        (timedelta(minutes=60), timedelta(minutes=6)),
        (timedelta(minutes=40), None),  # too short to be worth a reminder
    ],
)
def test_reminder_comes_a_tenth_of_the_window_before_at_most_an_hour(
    window: timedelta, lead: timedelta | None
) -> None:
    remind = reminder_time(T0, T0 + window)
    assert (None if remind is None else T0 + window - remind) == lead


def test_every_placeholder_of_the_definitions_is_known_and_every_task_has_a_timeout() -> None:
    known = set(state_machine_variables())
    for machine in STATE_MACHINES:
        text = definition_text(machine.asl_file)
        assert placeholders(text) <= known, machine.asl_file
        rendered = json.loads(definition(machine.asl_file, dict.fromkeys(placeholders(text), "arn:x")))
        for name, state in rendered["States"].items():
            if state["Type"] == "Task":
                assert "TimeoutSeconds" in state or "TimeoutSecondsPath" in state, name
                assert state.get("Catch"), f"{name} catches nothing"
            if state["Type"] == "Task" and state["Resource"].startswith("arn:aws:states:::lambda:"):
                retried = {error for rule in state["Retry"] for error in rule["ErrorEquals"]}
                assert LAMBDA_SERVICE_ERRORS | {"ProviderTransientError"} <= retried, name


def test_definition_refuses_a_missing_value() -> None:
    with pytest.raises(KeyError, match="PrepareDataFunctionArn"):
        definition("fine_tuning.asl.json", {})


def test_table_key_is_the_records_table_layout() -> None:
    assert table_key("ws-acme", "Support-Bot").model_dump() == {"pk": "WS#ws-acme", "sk": "MODEL#support-bot"}


def test_task_error_reads_a_lambda_error_cause() -> None:
    error = TaskError(
        Error="ValidationFailed", Cause=json.dumps({"errorType": "ValidationFailed", "errorMessage": "bad"})
    )
    assert error.error_type() == "ValidationFailed"
    assert error.message() == "bad"
    timeout = TaskError(Error="States.Timeout", Cause=None)
    assert timeout.error_type() == "States.Timeout"
    assert timeout.message() is None
