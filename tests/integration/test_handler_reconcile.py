"""The reconciler: jobs whose events were lost are asked about; fresh ones are left alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from moto import mock_aws

from functions import reconciler
from tests.integration.conftest import Aws
from tests.integration.handler_support import (
    CONTEXT,
    WS,
    RecordingProvider,
    Workflow,
    build_services,
    create_model,
    emails,
)
from tunelab.application.reconcile import EMAIL_GRACE, STALE_AFTER, reconcile
from tunelab.application.workflows import execution_name
from tunelab.composition.wiring import Services, reset_services
from tunelab.domain.errors import ProviderTransientError
from tunelab.domain.providers import TrainingMetrics, TrainingState
from tunelab.domain.records import ModelChanges, ModelRecord, PendingEmail, ProviderRefs, utcnow
from tunelab.domain.records import TrainingState as TrainingRecord
from tunelab.domain.status import ModelStatus

ARTIFACTS = "s3://tunelab-test-artifacts/bedrock-output/ws-acme/support-bot-v1/0a1b2c3d4e/"


@pytest.fixture
def bedrock() -> RecordingProvider:
    return RecordingProvider("bedrock")


@pytest.fixture
def services(aws: Aws, repo: Services, bedrock: RecordingProvider) -> Iterator[Services]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield build_services(repo, bedrock)
        reset_services()


def _silent_for(aws: Aws, repo: Services, silence: timedelta, name: str, **fields: object) -> ModelRecord:
    """A model last heard of `silence` ago."""
    past = Services(clock=lambda: utcnow() - silence)
    return create_model(past, name, **fields)  # type: ignore[arg-type]


def _job_id(model: ModelRecord) -> str:
    ref = model.refs.training_job
    assert ref is not None
    return ref.job_id


def test_a_stale_finished_job_reaches_its_workflow_and_a_fresh_one_is_left_alone(
    aws: Aws, services: Services, repo: Services, bedrock: RecordingProvider
) -> None:
    stale = _silent_for(aws, repo, STALE_AFTER + timedelta(minutes=5), "stale-bot")
    fresh = _silent_for(aws, repo, timedelta(minutes=2), "fresh-bot")
    workflow = Workflow(services, stale)
    bedrock.training[_job_id(stale)] = TrainingState(
        job_id=_job_id(stale),
        status="completed",
        artifacts_uri=ARTIFACTS,
        model_ref="arn:aws:bedrock:us-east-1:123456789012:custom-model/stale-bot",
        metrics=TrainingMetrics(train_loss=0.5),
    )
    bedrock.training[_job_id(fresh)] = TrainingState(job_id=_job_id(fresh), status="completed")

    report = reconcile(services)

    assert report.checked == 1
    assert report.outcomes_sent == 1
    assert [ref.job_id for ref in bedrock.called("describe_training")] == [_job_id(stale)]
    assert workflow.output() == {
        "outcome": "completed",
        "reason": None,
        "artifacts_uri": ARTIFACTS,
        "model_ref": "arn:aws:bedrock:us-east-1:123456789012:custom-model/stale-bot",
        "metrics": {"train_loss": 0.5, "eval_loss": None, "step": None, "epoch": None},
        # what the provider measured to bill the job: none of it in these events
        "billable_seconds": None,
        "trained_tokens": None,
    }


def test_a_stale_running_job_keeps_waiting_and_its_news_is_recorded(
    aws: Aws, services: Services, repo: Services, bedrock: RecordingProvider
) -> None:
    stale = _silent_for(aws, repo, timedelta(hours=2), "slow-bot")
    workflow = Workflow(services, stale)
    bedrock.training[_job_id(stale)] = TrainingState(
        job_id=_job_id(stale), status="in_progress", phase="InProgress"
    )

    report = reconcile(services)

    assert (report.checked, report.still_running, report.outcomes_sent) == (1, 1, 0)
    assert repo.models.get(WS, stale.name).training.phase == "InProgress"
    assert workflow.status() == "RUNNING"


def test_a_lost_stop_is_issued_again(
    aws: Aws, services: Services, repo: Services, bedrock: RecordingProvider
) -> None:
    stopping = _silent_for(aws, repo, timedelta(hours=1), "stop-bot", status=ModelStatus.STOPPING_TRAINING)
    bedrock.training[_job_id(stopping)] = TrainingState(job_id=_job_id(stopping), status="in_progress")

    report = reconcile(services)

    assert report.stops_reissued == 1
    assert [ref.job_id for ref in bedrock.called("stop_training")] == [_job_id(stopping)]


def test_a_finished_job_no_workflow_waits_for_is_counted(
    aws: Aws, services: Services, repo: Services, bedrock: RecordingProvider
) -> None:
    orphan = _silent_for(aws, repo, timedelta(hours=1), "orphan-bot")
    bedrock.training[_job_id(orphan)] = TrainingState(
        job_id=_job_id(orphan), status="failed", failure_reason="x"
    )

    report = reconcile(services)

    assert (report.outcomes_sent, report.unanswered) == (0, 1)


def test_one_failing_model_does_not_stop_the_sweep(
    aws: Aws, services: Services, repo: Services, bedrock: RecordingProvider
) -> None:
    _silent_for(aws, repo, timedelta(hours=1), "first-bot")
    _silent_for(aws, repo, timedelta(hours=1), "second-bot", training=TrainingRecord(), refs=ProviderRefs())
    bedrock.fail_with = ProviderTransientError("Bedrock is busy; try again shortly.")

    report = reconcile(services)

    assert (report.checked, report.errors, report.no_job) == (2, 1, 1)


def test_the_function_returns_the_counts(aws: Aws, services: Services, repo: Services) -> None:
    _silent_for(aws, repo, timedelta(hours=1), "quiet-bot")

    counts = reconciler.handler({"source": "aws.scheduler"}, CONTEXT)

    assert counts == {
        "checked": 1,
        "outcomes_sent": 0,
        "unanswered": 0,
        "still_running": 1,
        "stops_reissued": 0,
        "no_job": 0,
        "settled": 0,
        "redriven": 0,
        "emails_sent": 0,
        "errors": 0,
        "connections_checked": 0,
        "connections_broken": 0,
        "connections_recovered": 0,
        "connections_emails_sent": 0,
    }


GONE_EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:Tunelab-fine-tuning:gone-bot-0a1b2c3d"


def test_a_finished_job_whose_workflow_ended_is_recorded_and_told_once(
    aws: Aws, services: Services, repo: Services, bedrock: RecordingProvider
) -> None:
    """The execution that waited for the job is gone (ended without recording it, or lost with a
    restart of the local runtime): the sweep records the outcome itself and emails the creator."""
    gone = _silent_for(
        aws, repo, timedelta(hours=1), "gone-bot", training=TrainingRecord(execution_arn=GONE_EXECUTION)
    )
    bedrock.training[_job_id(gone)] = TrainingState(
        job_id=_job_id(gone), status="failed", failure_reason="The training data has a row that is too long."
    )
    services.client("events").create_event_bus(Name=services.settings.event_bus_name)
    services.client("ses").verify_email_identity(EmailAddress=services.settings.sender_email)

    report = reconcile(services)
    again = reconcile(services)

    model = repo.models.get(WS, gone.name)
    assert model.status == ModelStatus.TRAINING_FAILED
    assert model.training.failure_reason == "The training data has a row that is too long."
    assert (report.settled, report.unanswered, report.errors) == (1, 0, 0)
    assert again.checked == 0
    subjects = [message.subject for message in emails()]
    assert subjects == ["[tunelab] Training of gone-bot failed"]


def test_a_model_whose_workflow_was_lost_before_the_job_started_has_it_started_again(
    aws: Aws, services: Services, repo: Services, bedrock: RecordingProvider
) -> None:
    lost = _silent_for(
        aws,
        repo,
        timedelta(minutes=1),
        "lost-bot",
        training=TrainingRecord(execution_arn=GONE_EXECUTION),
        refs=ProviderRefs(),
    )

    machine = services.settings.fine_tuning_state_machine_arn
    services.client("stepfunctions").create_state_machine(
        name=machine.rsplit(":", 1)[-1],
        definition=json.dumps(
            {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 60, "End": True}}}
        ),
        roleArn="arn:aws:iam::123456789012:role/tunelab-states",
    )

    quiet = reconcile(services)
    report = reconcile(services, recover=True)

    assert quiet.checked == 0  # heard of a minute ago: a normal sweep leaves it
    assert (report.checked, report.redriven) == (1, 1)
    executions = services.client("stepfunctions").list_executions(
        stateMachineArn=services.settings.fine_tuning_state_machine_arn
    )["executions"]
    assert [e["name"] for e in executions] == [execution_name(lost.name, lost.uid)]


def test_an_email_no_workflow_sent_is_sent_once_after_its_grace(
    aws: Aws, services: Services, repo: Services, bedrock: RecordingProvider
) -> None:
    """FinishTraining recorded the end and the email it owes; the workflow ended before Notify sent it
    (the local runtime was killed, SES stayed down through Notify's retries): the sweep sends it once."""
    services.client("ses").verify_email_identity(EmailAddress=services.settings.sender_email)
    owed_since = utcnow() - EMAIL_GRACE - timedelta(minutes=1)
    done = _silent_for(aws, repo, timedelta(hours=1), "done-bot")
    fresh = _silent_for(aws, repo, timedelta(hours=1), "fresh-bot")
    for model, since in ((done, owed_since), (fresh, utcnow())):
        repo.models.transition(
            WS,
            model.name,
            {ModelStatus.TRAINING},
            ModelStatus.NOT_DEPLOYED,
            ModelChanges(pending_email=PendingEmail(kind="training_completed", since=since)),
        )

    first = reconcile(services)
    second = reconcile(services)
    recovering = reconcile(services, recover=True)

    assert (first.emails_sent, second.emails_sent, recovering.emails_sent) == (1, 0, 1)
    assert [m.subject for m in emails()] == [
        "[tunelab] done-bot is ready: training completed",
        "[tunelab] fresh-bot is ready: training completed",
    ]
    assert repo.models.unsent_emails() == []
