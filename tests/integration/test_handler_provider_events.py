"""Provider state changes applied to models: the AWS documentation events, varied only in their status.

The fine-tuning workflow's wait is real: a Step Functions execution (moto executes it) waits in a
`waitForTaskToken` task, so the tests see what the workflow receives, and that a second answer is
refused by Step Functions itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions import provider_events
from tests.integration import factories
from tests.integration.conftest import REGION, Aws
from tests.integration.handler_support import (
    CONTEXT,
    BusSpy,
    RecordingProvider,
    Workflow,
    build_services,
    connect_sagemaker,
    create_deployed_model,
    emails,
    event,
    message_ids,
    schedules,
    sqs_batch,
)
from tunelab.composition.stack_definitions import EVENT_RULES
from tunelab.composition.wiring import Services, reset_services, set_services
from tunelab.domain.layout import PROVIDER_RESOURCE_TAG
from tunelab.domain.records import ModelRecord, TrainingState, utcnow
from tunelab.domain.status import ModelStatus
from tunelab.entrypoints.messages import EventEnvelope, RetryLater, handle_provider_event

WS = "ws-acme"
BEDROCK_JOB = "arn:aws:bedrock:us-east-1:123456789012:model-customization-job/abcdefghwxyz"
SAGEMAKER_JOB = "support-bot-v1-3f9a1c2b7d"
CUSTOMER_ACCOUNT = "123456789012"  # the account of the documentation's SageMaker samples
SAGEMAKER_JOB_ARN = f"arn:aws:sagemaker:us-west-2:{CUSTOMER_ACCOUNT}:training-job/{SAGEMAKER_JOB}"
ARTIFACTS = "s3://customer-artifacts/tunelab/ws-acme/support-bot-v1/output/model.tar.gz"


@pytest.fixture
def services(aws: Aws, repo: Services) -> Iterator[Services]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        built = Services()
        set_services(built)
        yield built
        reset_services()


def _model(
    repo: Services,
    *,
    provider: str = "bedrock",
    job_id: str = BEDROCK_JOB,
    workspace: str = WS,
    account: str = CUSTOMER_ACCOUNT,
    **fields: Any,
) -> ModelRecord:
    dataset = repo.datasets.create(factories.dataset(workspace))
    hosting = fields.pop("hosting", "byok" if provider == "sagemaker" else "managed")
    record = factories.model(
        workspace,
        dataset_id=dataset.dataset_id,
        provider=provider,
        hosting=hosting,
        training=TrainingState(job_id=job_id),
        **fields,
    )
    model = repo.models.create(record)
    if provider == "sagemaker":
        connect_sagemaker(repo, account, workspace)
    return model


def _bedrock(status: str, **detail: Any) -> EventEnvelope:
    body = event(
        "bedrock_model_customization_job_state_change",
        time=utcnow(),
        jobArn=BEDROCK_JOB,
        jobStatus=status,
        **detail,
    )
    return EventEnvelope.model_validate(body)


def _sagemaker(status: str, secondary: str, **detail: Any) -> EventEnvelope:
    body = event(
        "sagemaker_training_job_state_change",
        time=detail.pop("time", utcnow()),
        TrainingJobName=SAGEMAKER_JOB,
        TrainingJobArn=SAGEMAKER_JOB_ARN,
        TrainingJobStatus=status,
        SecondaryStatus=secondary,
        Tags={PROVIDER_RESOURCE_TAG: WS},
        **detail,
    )
    return EventEnvelope.model_validate(body)


def _events(repo: Services, model: ModelRecord) -> list[tuple[str, str | None]]:
    items = repo.models.list_events(model.workspace_id, model.name, limit=100).items
    return [(e.type, e.message) for e in items]


# --- Bedrock: every status ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["InProgress", "Stopping"])
def test_bedrock_progress_is_a_message_and_the_workflow_keeps_waiting(
    services: Services, repo: Services, status: str
) -> None:
    model = _model(repo)
    workflow = Workflow(services, model)

    result = handle_provider_event(services, _bedrock(status))

    assert result.action == "applied"
    stored = repo.models.get(WS, model.name)
    assert stored.status == ModelStatus.TRAINING
    assert stored.training.phase == status
    assert ("message", f"Training phase: {status}.") in _events(repo, model)
    assert workflow.status() == "RUNNING"


def test_bedrock_completed_sends_the_workflow_the_custom_model(services: Services, repo: Services) -> None:
    model = _model(repo)
    workflow = Workflow(services, model)

    result = handle_provider_event(services, _bedrock("Completed"))

    assert result.action == "applied"
    assert workflow.output() == {
        "outcome": "completed",
        "reason": None,
        "artifacts_uri": "s3://bucket/key",
        "model_ref": "arn:aws:bedrock:us-east-1:123456789012:dummy-output-model-name",
        "metrics": None,
        # what the provider measured to bill the job: none of it in these events
        "billable_seconds": None,
        "trained_tokens": None,
    }
    # The workflow's FinishTraining task writes the final status, not the event handler.
    assert repo.models.get(WS, model.name).status == ModelStatus.TRAINING


def test_bedrock_failed_sends_the_providers_reason(services: Services, repo: Services) -> None:
    model = _model(repo)
    workflow = Workflow(services, model)

    handle_provider_event(services, _bedrock("Failed"))

    output = workflow.output()
    assert output["outcome"] == "failed"
    assert output["reason"] == "Failure Message here."


def test_bedrock_stopped_after_a_stop_request_says_so(services: Services, repo: Services) -> None:
    model = _model(repo, status=ModelStatus.STOPPING_TRAINING)
    workflow = Workflow(services, model)

    handle_provider_event(services, _bedrock("Stopped"))

    assert workflow.output() == {
        "outcome": "stopped",
        "reason": "The training job was stopped as requested.",
        "artifacts_uri": None,
        "model_ref": None,
        "metrics": None,
        # what the provider measured to bill the job: none of it in these events
        "billable_seconds": None,
        "trained_tokens": None,
    }


def test_a_job_stopped_outside_tunelab_is_reported_as_such(services: Services, repo: Services) -> None:
    model = _model(repo)
    workflow = Workflow(services, model)

    handle_provider_event(services, _bedrock("Stopped"))

    assert (
        workflow.output()["reason"]
        == "The training job was stopped outside tunelab (in the provider's console or API)."
    )


# --- SageMaker training: every status ----------------------------------------------------------------


def test_sagemaker_phases_and_metrics_become_the_models_history(services: Services, repo: Services) -> None:
    model = _model(repo, provider="sagemaker", job_id=SAGEMAKER_JOB_ARN)
    workflow = Workflow(services, model)
    start = utcnow()
    metrics = [
        {"MetricName": "train_loss", "Value": 1.23},
        {"MetricName": "eval_loss", "Value": 1.31},
        {"MetricName": "step", "Value": 120},
        {"MetricName": "epoch", "Value": 2.0},
    ]

    handle_provider_event(services, _sagemaker("InProgress", "Downloading", time=start))
    handle_provider_event(
        services,
        _sagemaker("InProgress", "Training", time=start + timedelta(seconds=1), FinalMetricDataList=metrics),
    )

    stored = repo.models.get(WS, model.name)
    assert stored.training.phase == "Training"
    assert stored.training.metrics is not None
    assert stored.training.metrics.model_dump() == {
        "train_loss": 1.23,
        "eval_loss": 1.31,
        "step": 120,
        "epoch": 2.0,
    }
    history = _events(repo, model)
    assert history[1:] == [
        ("message", "Training phase: Downloading."),
        ("message", "Training phase: Training."),
        ("metrics", None),
    ]
    assert workflow.status() == "RUNNING"


def test_sagemaker_completed_sends_artifacts_and_final_metrics(services: Services, repo: Services) -> None:
    model = _model(repo, provider="sagemaker", job_id=SAGEMAKER_JOB_ARN)
    workflow = Workflow(services, model)

    handle_provider_event(
        services,
        _sagemaker(
            "Completed",
            "Completed",
            ModelArtifacts={"S3ModelArtifacts": ARTIFACTS},
            FinalMetricDataList=[{"MetricName": "train_loss", "Value": 0.42}],
        ),
    )

    assert workflow.output() == {
        "outcome": "completed",
        "reason": None,
        "artifacts_uri": ARTIFACTS,
        "model_ref": None,
        "metrics": {"train_loss": 0.42, "eval_loss": None, "step": None, "epoch": None},
        # what the provider measured to bill the job: none of it in these events
        "billable_seconds": None,
        "trained_tokens": None,
    }


@pytest.mark.parametrize(
    ("status", "secondary", "failure", "expected"),
    [
        (
            "Failed",
            "Failed",
            "AlgorithmError: CUDA out of memory",
            ("failed", "AlgorithmError: CUDA out of memory"),
        ),
        ("Stopped", "MaxRuntimeExceeded", None, ("failed", "The training job ran past its time limit")),
        ("Stopped", "Stopped", None, ("stopped", "The training job was stopped outside tunelab")),
    ],
)
def test_sagemaker_endings_reach_the_workflow(
    services: Services,
    repo: Services,
    status: str,
    secondary: str,
    failure: str | None,
    expected: tuple[str, str],
) -> None:
    model = _model(repo, provider="sagemaker", job_id=SAGEMAKER_JOB_ARN)
    workflow = Workflow(services, model)
    extra = {"FailureReason": failure} if failure else {}

    handle_provider_event(services, _sagemaker(status, secondary, **extra))

    output = workflow.output()
    assert output["outcome"] == expected[0]
    assert output["reason"].startswith(expected[1])


def test_sagemaker_events_from_another_account_are_dropped(services: Services, repo: Services) -> None:
    model = _model(repo, provider="sagemaker", job_id=SAGEMAKER_JOB_ARN)
    workflow = Workflow(services, model)
    forged = _sagemaker("Failed", "Failed").model_copy(update={"account": "999999999999"})

    result = handle_provider_event(services, forged)

    assert result.action == "dropped"
    assert workflow.status() == "RUNNING"


def test_a_model_of_the_same_name_in_another_workspace_does_not_take_the_events(
    services: Services, repo: Services
) -> None:
    # Two tenants, one model name: each job is known by its account, region and name (its ARN), so the
    # newer model of the same name does not swallow the older one's events.
    ours = _model(repo, provider="sagemaker", job_id=SAGEMAKER_JOB_ARN)
    other_job = f"arn:aws:sagemaker:us-west-2:210987654321:training-job/{ours.name}-0a1b2c3d4e"
    theirs = _model(
        repo,
        provider="sagemaker",
        job_id=other_job,
        workspace="ws-globex",
        account="210987654321",
        name=ours.name,
    )
    workflow = Workflow(services, ours)

    result = handle_provider_event(services, _sagemaker("InProgress", "Training"))

    assert (result.action, result.workspace_id) == ("applied", WS)
    assert repo.models.get(WS, ours.name).training.phase == "Training"
    assert repo.models.get("ws-globex", theirs.name).training.phase is None
    assert workflow.status() == "RUNNING"
    # An event naming the other tenant's job reaches only that tenant's model.
    assert repo.models.find_by_job("sagemaker", other_job) == repo.models.get("ws-globex", theirs.name)


def test_a_job_recorded_by_its_bare_name_before_jobs_had_arns_still_gets_its_events(
    services: Services, repo: Services
) -> None:
    # Records written before jobs were known by their ARN keep the job's name: a job running across
    # the upgrade is still followed (from its own account only).
    legacy = _model(repo, provider="sagemaker", job_id=SAGEMAKER_JOB)
    workflow = Workflow(services, legacy)

    applied = handle_provider_event(services, _sagemaker("InProgress", "Training"))
    forged = handle_provider_event(
        services, _sagemaker("InProgress", "Uploading").model_copy(update={"account": "999999999999"})
    )

    assert (applied.action, applied.workspace_id) == ("applied", WS)
    assert forged.action == "dropped"
    assert repo.models.get(WS, legacy.name).training.phase == "Training"
    assert workflow.status() == "RUNNING"


def test_sagemaker_events_of_a_workspace_whose_connection_is_gone_are_dropped_not_retried(
    services: Services, repo: Services
) -> None:
    model = _model(repo, provider="sagemaker", job_id=SAGEMAKER_JOB_ARN)
    workflow = Workflow(services, model)
    repo.connections.delete(WS, "sagemaker")

    result = handle_provider_event(services, _sagemaker("Failed", "Failed"))

    assert result.action == "dropped"
    assert workflow.status() == "RUNNING"


# --- duplicates, stragglers and strangers ---------------------------------------------------------------


def test_a_second_completed_event_changes_nothing(services: Services, repo: Services) -> None:
    model = _model(repo)
    workflow = Workflow(services, model)
    handle_provider_event(services, _bedrock("Completed"))
    first = workflow.output()

    again = handle_provider_event(services, _bedrock("Completed"))

    assert again.action == "ignored"
    assert workflow.output() == first


def test_a_completed_event_after_the_model_left_training_is_ignored(
    services: Services, repo: Services
) -> None:
    model = _model(repo, status=ModelStatus.NOT_DEPLOYED)

    result = handle_provider_event(services, _bedrock("Completed"))

    assert result.action == "ignored"
    assert repo.models.get(WS, model.name).version == model.version


def test_a_terminal_event_with_no_waiting_workflow_is_ignored(services: Services, repo: Services) -> None:
    _model(repo)

    assert handle_provider_event(services, _bedrock("Completed")).action == "ignored"


def test_an_in_progress_event_after_completed_changes_nothing(services: Services, repo: Services) -> None:
    model = _model(repo, provider="sagemaker", job_id=SAGEMAKER_JOB_ARN)
    workflow = Workflow(services, model)
    later = utcnow()
    handle_provider_event(services, _sagemaker("InProgress", "Uploading", time=later))
    handle_provider_event(services, _sagemaker("Completed", "Completed", time=later + timedelta(seconds=5)))
    before = repo.models.get(WS, model.name)

    late = handle_provider_event(
        services, _sagemaker("InProgress", "Training", time=later - timedelta(seconds=30))
    )

    assert late.action == "ignored"
    assert repo.models.get(WS, model.name) == before
    assert workflow.output()["outcome"] == "completed"


def test_a_repeated_progress_event_adds_nothing_to_the_history(services: Services, repo: Services) -> None:
    model = _model(repo)
    handle_provider_event(services, _bedrock("InProgress"))
    history = _events(repo, model)

    assert handle_provider_event(services, _bedrock("InProgress")).action == "ignored"
    assert _events(repo, model) == history


def test_a_fresh_event_for_an_unknown_job_is_retried_and_an_old_one_dropped(services: Services) -> None:
    fresh = _bedrock("InProgress")
    with pytest.raises(RetryLater):
        handle_provider_event(services, fresh)

    old = fresh.model_copy(update={"time": utcnow() - timedelta(hours=1)})
    assert handle_provider_event(services, old).action == "dropped"


def test_events_of_other_sources_are_dropped(services: Services) -> None:
    body = event("s3_object_created", time=utcnow())

    assert handle_provider_event(services, EventEnvelope.model_validate(body)).action == "dropped"


# --- the Lambda function: batches ---------------------------------------------------------------------


def test_one_bad_message_fails_alone_and_the_good_ones_are_applied(
    services: Services, repo: Services
) -> None:
    model = _model(repo)
    workflow = Workflow(services, model)
    stranger = event(
        "bedrock_model_customization_job_state_change", time=utcnow(), jobArn="arn:aws:bedrock:x:1:job/other"
    )
    stranger["detail"]["jobStatus"] = "InProgress"
    long_gone = event("bedrock_model_customization_job_state_change", jobArn="arn:aws:bedrock:x:1:job/gone")
    batch = sqs_batch(
        _bedrock("InProgress").model_dump(by_alias=True, mode="json"),
        "this is not an event",
        stranger,  # fresh, job not recorded yet: received again
        long_gone,  # 2023's sample time, job unknown: dropped
        _bedrock("Completed").model_dump(by_alias=True, mode="json"),
    )
    ids = message_ids(batch)

    response = provider_events.handler(batch, CONTEXT)

    failed = [item["itemIdentifier"] for item in response["batchItemFailures"]]
    assert failed == [ids[1], ids[2]]
    assert repo.models.get(WS, model.name).training.phase == "InProgress"
    assert workflow.output()["outcome"] == "completed"


def test_sagemaker_rules_route_tagged_events_to_the_queue(services: Services, repo: Services) -> None:
    """The stack's rules on tunelab's bus let through only events of resources tunelab tagged."""
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="provider-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.create_event_bus(Name="tunelab-test")
    for rule in EVENT_RULES:
        if rule.target_queue == "ProviderEventsQueue" and rule.bus == "tunelab":
            events.put_rule(
                Name=rule.logical_id, EventBusName="tunelab-test", EventPattern=json.dumps(rule.event_pattern)
            )
            events.put_targets(
                Rule=rule.logical_id, EventBusName="tunelab-test", Targets=[{"Id": "queue", "Arn": queue_arn}]
            )
    model = _model(repo, provider="sagemaker", job_id=SAGEMAKER_JOB_ARN)
    tagged = _sagemaker("InProgress", "Downloading").model_dump(by_alias=True, mode="json")
    untagged = {**tagged, "detail": {**tagged["detail"], "Tags": {}}}
    for sample in (tagged, untagged):
        events.put_events(
            Entries=[
                {
                    "Source": sample["source"],
                    "DetailType": sample["detail-type"],
                    "Detail": json.dumps(sample["detail"]),
                    "EventBusName": "tunelab-test",
                }
            ]
        )
    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert len(received) == 1

    response = provider_events.handler(sqs_batch(*(m["Body"] for m in received)), CONTEXT)

    assert response == {"batchItemFailures": []}
    assert repo.models.get(WS, model.name).training.phase == "Downloading"


# --- endpoints after deployment -----------------------------------------------------------------------


@pytest.fixture
def sagemaker() -> RecordingProvider:
    return RecordingProvider("sagemaker")


@pytest.fixture
def bus(aws: Aws) -> BusSpy:
    return BusSpy("tunelab-test")


@pytest.fixture
def deployed_services(
    aws: Aws, repo: Services, bus: BusSpy, sagemaker: RecordingProvider
) -> Iterator[Services]:
    yield build_services(repo, sagemaker)
    reset_services()


def _endpoint(name: str, status: str, **detail: Any) -> EventEnvelope:
    body = event(
        "sagemaker_endpoint_state_change",
        time=utcnow(),
        EndpointName=name,
        EndpointStatus=status,
        Tags={PROVIDER_RESOURCE_TAG: WS},
        **detail,
    )
    return EventEnvelope.model_validate(body)


@pytest.mark.parametrize(
    ("status", "detail", "reason"),
    [
        (
            "FAILED",
            {"FailureReason": "Instance ml.g5.2xlarge failed health checks"},
            "failed: Instance ml.g5.2xlarge failed health checks",
        ),
        ("OUT_OF_SERVICE", {}, "failed."),
        ("DELETED", {}, "was deleted outside tunelab."),
        ("DELETING", {}, "is being deleted outside tunelab."),
    ],
)
def test_an_endpoint_lost_after_deployment_undeploys_the_model(
    deployed_services: Services,
    repo: Services,
    sagemaker: RecordingProvider,
    bus: BusSpy,
    status: str,
    detail: dict[str, Any],
    reason: str,
) -> None:
    connect_sagemaker(repo, CUSTOMER_ACCOUNT)
    model = create_deployed_model(deployed_services, repo, requested_at=utcnow())
    endpoint = str(model.deployment.endpoint if model.deployment else "")
    lost = _endpoint(endpoint, status, **detail)

    result = handle_provider_event(deployed_services, lost)

    assert result.action == "applied"
    stored = repo.models.get(WS, model.name)
    assert stored.status == ModelStatus.NOT_DEPLOYED
    assert stored.deployment is None
    last = repo.models.list_events(WS, model.name, limit=100).items[-1]
    assert last.type == "status_changed"
    # the reason, then what the deployment ran and cost
    assert last.message is not None
    assert last.message.startswith(
        f"The endpoint {endpoint} {reason} The model is no longer deployed. It ran "
    )
    assert [ref.deployment_id for ref in sagemaker.called("undeploy")] == [
        endpoint
    ]  # what is left is removed
    assert schedules() == []
    [email] = emails()
    assert email.subject == f"[tunelab] {model.name} was undeployed"
    assert reason in email.body
    # The status change carries the provider event that caused it.
    [published] = bus.published()
    assert published["detail"]["data"]["status"] == "not_deployed"
    assert published["detail"]["data"]["previous_status"] == "deployed"
    assert published["detail"]["correlation_id"] == lost.id


@pytest.mark.parametrize("status", ["IN_SERVICE", "UPDATING", "SYSTEM_UPDATING", "CREATING"])
def test_endpoint_events_that_change_nothing(
    deployed_services: Services, repo: Services, status: str
) -> None:
    connect_sagemaker(repo, CUSTOMER_ACCOUNT)
    model = create_deployed_model(deployed_services, repo, requested_at=utcnow())
    endpoint = str(model.deployment.endpoint if model.deployment else "")

    result = handle_provider_event(deployed_services, _endpoint(endpoint, status))

    assert result.action == "ignored"
    assert repo.models.get(WS, model.name) == model
    assert len(schedules()) == 2


def test_an_endpoint_failing_while_deploying_is_left_to_the_deployment_workflow(
    deployed_services: Services, repo: Services, sagemaker: RecordingProvider
) -> None:
    connect_sagemaker(repo, CUSTOMER_ACCOUNT)
    model = create_deployed_model(deployed_services, repo, requested_at=utcnow())
    endpoint = str(model.deployment.endpoint if model.deployment else "")
    repo.models.transition(WS, model.name, {ModelStatus.DEPLOYED}, ModelStatus.NOT_DEPLOYED)
    repo.models.transition(WS, model.name, {ModelStatus.NOT_DEPLOYED}, ModelStatus.DEPLOYING)

    result = handle_provider_event(
        deployed_services, _endpoint(endpoint, "FAILED", FailureReason="no capacity")
    )

    assert result.action == "applied"
    stored = repo.models.get(WS, model.name)
    assert stored.status == ModelStatus.DEPLOYING
    assert (
        repo.models.list_events(WS, model.name, limit=100).items[-1].message
        == f"The endpoint {endpoint} failed: no capacity"
    )
    assert sagemaker.called("undeploy") == []


def test_a_repeated_endpoint_failure_changes_nothing_more(
    deployed_services: Services, repo: Services, sagemaker: RecordingProvider
) -> None:
    connect_sagemaker(repo, CUSTOMER_ACCOUNT)
    model = create_deployed_model(deployed_services, repo, requested_at=utcnow())
    failed = _endpoint(str(model.deployment.endpoint if model.deployment else ""), "FAILED")
    handle_provider_event(deployed_services, failed)
    after = repo.models.get(WS, model.name)

    again = handle_provider_event(deployed_services, failed)

    assert again.action == "dropped"  # the endpoint no longer leads to the model
    assert repo.models.get(WS, model.name) == after
    assert len(emails()) == 1
    assert len(sagemaker.called("undeploy")) == 1


def test_the_deletion_of_a_deployment_that_never_came_into_service_is_ignored(
    deployed_services: Services, repo: Services, sagemaker: RecordingProvider
) -> None:
    connect_sagemaker(repo, CUSTOMER_ACCOUNT)
    model = create_deployed_model(deployed_services, repo, requested_at=utcnow())
    endpoint = str(model.deployment.endpoint if model.deployment else "")
    repo.models.transition(WS, model.name, {ModelStatus.DEPLOYED}, ModelStatus.NOT_DEPLOYED)
    repo.models.transition(WS, model.name, {ModelStatus.NOT_DEPLOYED}, ModelStatus.DEPLOYING)
    before = repo.models.get(WS, model.name)

    result = handle_provider_event(deployed_services, _endpoint(endpoint, "DELETING"))

    assert result.action == "ignored"
    assert repo.models.get(WS, model.name) == before
    assert sagemaker.calls == []


# --- the local runtime's jobs (SageMaker-shaped detail, source "tunelab.local") ------------------------


def test_progress_within_a_phase_updates_the_phase_without_a_message_each_time(
    services: Services, repo: Services
) -> None:
    # The local runtime registers its provider in the process it runs in; a double stands in for it.
    services.providers.set("local", RecordingProvider("local"))
    model = _model(repo, provider="local", job_id="local-job-1", hosting="local")
    start = utcnow()

    def local(secondary: str, step: int, seconds: int) -> EventEnvelope:
        sample = _sagemaker("InProgress", secondary, time=start + timedelta(seconds=seconds))
        detail = {
            **sample.detail,
            "TrainingJobName": "local-job-1",
            "Progress": {"step": step, "max_steps": 120, "eta_seconds": 120 - step},
        }
        return sample.model_copy(
            update={
                "source": "tunelab.local",
                "detail_type": "Local Training Job State Change",
                "detail": detail,
            }
        )

    for i, (secondary, step) in enumerate([("Training", 10), ("Training", 40), ("Uploading", 120)]):
        assert handle_provider_event(services, local(secondary, step, i)).action == "applied"
        if i == 1:
            assert repo.models.get(WS, model.name).training.phase == "Training 40/120 steps, ETA 1:20"

    assert repo.models.get(WS, model.name).training.phase == "Uploading"
    messages = [m for kind, m in _events(repo, model) if kind == "message"]
    assert messages == ["Training phase: Training.", "Training phase: Uploading."]


@pytest.mark.parametrize(("status", "outcome"), [("Stopped", "stopped"), ("Failed", "failed")])
def test_a_sagemaker_job_that_ended_early_sends_its_billable_time_with_the_outcome(
    services: Services, repo: Services, status: str, outcome: str
) -> None:
    # A stopped or failed job is billed for what it ran: the time goes to the workflow, which records
    # it as the attempt's cost (and carries it into a resume).
    model = _model(repo, provider="sagemaker", job_id=SAGEMAKER_JOB_ARN)
    workflow = Workflow(services, model)

    handle_provider_event(services, _sagemaker(status, status, BillableTimeInSeconds=1234))

    output = workflow.output()
    assert (output["outcome"], output["billable_seconds"]) == (outcome, 1234)
