"""Faults that outlast botocore's own retries, one service at a time, so tunelab's error paths run:
the workflow's Retry, the provider-events message received again, the API's 429/503 the caller
retries, or — a fault that never ends, or an error no retry cures — the job ending `training_failed`
with a reason and exactly one email. A Lambda task raising mid-workflow is one of these: an AWS call
of the task refused for good.
"""

from __future__ import annotations

import pytest

from tests.faults.aws_support import (
    CUSTOMER_BUCKET,
    Life,
    aws,  # noqa: F401  # fixture
    bedrock_life,
    census,
    connect,
    faults_fixture,  # noqa: F401  # the `faults` fixture
    models,
    record_faults,
    sagemaker_life,
    stack_fixture,  # noqa: F401  # fixture
    training_emails,
)
from tests.faults.injection import Injector
from tests.faults.tally import Tally
from tests.integration.workflow_fixtures import Stack
from tunelab.application.workspaces import set_plan
from tunelab.domain.status import ModelStatus

pytestmark = pytest.mark.moto

CLIENTS = {"eventbridge": "events"}


def beyond_botocore(stack: Stack, service: str) -> int:
    """One fault more than botocore's attempts at a call (standard mode: 3; legacy: 5, DynamoDB 10):
    the first call fails after botocore's retries, tunelab's own retry gets through."""
    retries = stack.services.client(CLIENTS.get(service, service)).meta.config.retries
    attempts = retries.get("total_max_attempts")
    if attempts is None:
        attempts = 3 if retries.get("mode") != "legacy" else (10 if service == "dynamodb" else 5)
    return int(attempts) + 1


def _settle(life: Life, faults: Injector, tally: Tally) -> None:
    record_faults(tally, faults)
    census(life).report(tally)


@pytest.mark.parametrize(
    ("provider", "service", "operation", "kind"),
    [
        ("bedrock", "bedrock", "CreateModelCustomizationJob", "throttling"),
        ("sagemaker", "sagemaker", "CreateTrainingJob", "5xx"),
    ],
)
def test_a_provider_that_never_takes_the_job_ends_it_failed_with_one_email(
    stack: Stack, faults: Injector, tally: Tally, provider: str, service: str, operation: str, kind: str
) -> None:
    life = sagemaker_life(stack) if provider == "sagemaker" else bedrock_life(stack)
    dataset = life.dataset()
    (faults.throttle if kind == "throttling" else faults.fail)(service, operation, times=None)

    life.create(dataset)
    ended = life.wait_workflow()

    # botocore's and the workflow's retries
    assert faults.injected[f"{service} {kind}"] > beyond_botocore(stack, service)
    assert ended.status == ModelStatus.TRAINING_FAILED
    assert "stayed unavailable after several retries" in (ended.training.failure_reason or "")
    assert training_emails(stack)[life.name] == 1
    _settle(life, faults, tally)


@pytest.mark.parametrize(
    ("service", "operation", "kind", "when"),
    [
        ("s3", "PutObject", "5xx", "preparing"),
        ("eventbridge", "PutEvents", "throttling", "finishing"),
        ("sesv2", "SendEmail", "throttling", "finishing"),
        ("scheduler", "CreateSchedule", "throttling", "deploying"),
    ],
)
def test_a_fault_outlasting_botocore_is_retried_by_the_workflow(
    stack: Stack, faults: Injector, tally: Tally, service: str, operation: str, kind: str, when: str
) -> None:
    life = bedrock_life(stack)
    dataset = life.dataset()
    add = faults.throttle if kind == "throttling" else faults.fail
    # EventBridge: beyond the publisher's own three attempts too, so FinishTraining itself fails.
    times = beyond_botocore(stack, service)
    if service == "eventbridge":
        times = 3 * (times - 1) + 1
    if when == "preparing":
        add(service, operation, times=times)
    life.create(dataset)
    life.wait_training()
    life.provider_says("Completed")
    if when == "finishing":
        add(service, operation, times=times)
    assert life.deliver(life.job_event("Completed")) == {"batchItemFailures": []}
    trained = life.wait_workflow()
    assert trained.status == ModelStatus.NOT_DEPLOYED, trained.training.failure_reason
    if when == "deploying":
        add(service, operation, times=times)
        deployed = life.deploy()
        assert deployed.status == ModelStatus.DEPLOYED
        assert deployed.deployment is not None
        assert deployed.deployment.auto_undeploy_at is not None
        assert [s.subject for s in stack.emails()].count(f"[tunelab] {life.name} is deployed") == 1

    assert faults.injected[f"{service} {kind}"] == times
    assert training_emails(stack)[life.name] == 1
    _settle(life, faults, tally)


def test_a_sagemaker_endpoint_refused_beyond_botocore_is_created_once(
    stack: Stack, faults: Injector, tally: Tally
) -> None:
    life = sagemaker_life(stack)
    life.create()
    life.train()
    times = beyond_botocore(stack, "sagemaker")
    faults.fail("sagemaker", "CreateEndpoint", times=times)

    deployed = life.deploy()

    assert deployed.status == ModelStatus.DEPLOYED
    assert faults.injected["sagemaker 5xx"] == times
    endpoints = stack.services.client("sagemaker").list_endpoints()["Endpoints"]
    assert [e["EndpointName"] for e in endpoints] == [
        deployed.deployment.endpoint if deployed.deployment else None
    ]
    _settle(life, faults, tally)


def test_provider_events_meeting_a_throttled_table_are_received_again(
    stack: Stack, faults: Injector, tally: Tally
) -> None:
    life = bedrock_life(stack)
    life.create()
    life.wait_training()
    life.provider_says("Completed")
    completed = life.job_event("Completed")
    faults.throttle("dynamodb", times=beyond_botocore(stack, "dynamodb"))

    first = life.deliver(completed)
    again = life.deliver(completed)  # SQS hands the failed message out again

    assert len(first["batchItemFailures"]) == 1
    assert again == {"batchItemFailures": []}
    assert life.wait_workflow().status == ModelStatus.NOT_DEPLOYED
    _settle(life, faults, tally)


def test_a_create_refused_by_a_throttled_table_leaves_nothing_and_can_be_retried(
    stack: Stack, faults: Injector, tally: Tally
) -> None:
    life = bedrock_life(stack)
    dataset = life.dataset()
    faults.throttle("dynamodb", "TransactWriteItems", times=None)

    refused = life.create_request(dataset)

    assert refused.status == 429, refused.body
    assert models(stack) == []
    assert stack.sfn.list_executions(stateMachineArn=stack.fine_tuning_arn)["executions"] == []
    faults.clear()
    life.create(dataset)
    assert life.train().status == ModelStatus.NOT_DEPLOYED
    _settle(life, faults, tally)


def test_a_connection_refused_by_a_throttled_sts_is_not_kept_and_can_be_retried(
    stack: Stack, faults: Injector, tally: Tally
) -> None:
    set_plan(stack.repo.workspaces, "ws-acme", "subscription", default_plan="pay_as_you_go")
    stack.services.s3.create_bucket(Bucket=CUSTOMER_BUCKET)
    life = Life(stack, "sagemaker", "byok-bot-v1")
    faults.throttle("sts", "AssumeRole", times=None)

    refused = connect(life)

    assert refused.status in {429, 503}, refused.body
    kept = stack.repo.connections.find("ws-acme")
    assert kept is None or kept.status != "connected"
    assert faults.injected["sts throttling"] == beyond_botocore(stack, "sts") - 1  # botocore gave up
    faults.clear()
    assert connect(life).status == 200
    assert life.sagemaker is not None
    life.create()
    assert life.train().status == ModelStatus.NOT_DEPLOYED
    _settle(life, faults, tally)


@pytest.mark.parametrize(
    ("service", "operation", "task"),
    [("s3", "GetObject", "PrepareData"), ("bedrock", "CreateModelCustomizationJob", "StartTraining")],
)
def test_a_task_that_raises_mid_workflow_ends_the_job_failed_with_one_email(
    stack: Stack, faults: Injector, tally: Tally, service: str, operation: str, task: str
) -> None:
    life = bedrock_life(stack)
    dataset = life.dataset()
    faults.deny(service, operation, times=None)

    life.create(dataset)
    ended = life.wait_workflow()

    tally.injected("lambda task raised")
    arn = ended.training.execution_arn
    assert arn is not None
    failed = [e for e in stack.history(arn) if e["type"] in {"TaskFailed", "LambdaFunctionFailed"}]
    assert failed, f"{task} did not raise"
    assert ended.status == ModelStatus.TRAINING_FAILED
    assert ended.training.failure_reason
    assert training_emails(stack)[life.name] == 1
    _settle(life, faults, tally)
