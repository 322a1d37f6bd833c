"""The fine-tuning state machine, really executed by moto, its tasks running the real handlers."""

from __future__ import annotations

import json

import boto3
import pytest

from tests.integration.workflow_fixtures import Stack, stack_fixture  # noqa: F401  # the `stack` fixture
from tunelab.adapters.providers.bedrock import job_name
from tunelab.adapters.stepfunctions import table_key
from tunelab.application import fine_tuned_models
from tunelab.application.fine_tuned_models import prepare_data
from tunelab.application.workflows import PrepareDataEvent, TrainingOutcome, execution_name
from tunelab.domain.status import ModelStatus

pytestmark = pytest.mark.moto


def _start(stack: Stack, record, **kwargs) -> str:
    return stack.services.workflows.start_fine_tuning(record, correlation_id="corr-1", **kwargs)


def test_bedrock_job_completes_to_not_deployed_with_metrics_email_and_event(stack: Stack) -> None:
    # Given a ready dataset and a model in training on Bedrock
    dataset = stack.dataset()
    record = stack.model(dataset)

    # When the workflow runs and the provider's job completes (as the event handler reports it)
    arn = _start(stack, record)
    token = stack.wait_for_token(record)
    waiting = stack.repo.models.get(record.workspace_id, record.name)
    custom_model = "arn:aws:bedrock:us-east-1:123456789012:custom-model/meta.llama3-1-8b/abc123"
    sent = stack.services.workflows.send_training_outcome(
        token,
        TrainingOutcome(
            outcome="completed",
            model_ref=custom_model,
            artifacts_uri=waiting.training.output_uri,
            metrics={"train_loss": 0.42, "eval_loss": 0.51, "epoch": 3.0},
        ),
    )
    result = stack.wait_execution(arn)

    # Then the execution succeeded and the model is not deployed, with what training produced
    assert sent is True
    assert result["status"] == "SUCCEEDED", result
    model = stack.repo.models.get(record.workspace_id, record.name)
    assert model.status == ModelStatus.NOT_DEPLOYED
    assert (model.training.job_id or "").startswith("arn:aws:bedrock:")
    assert model.training.metrics is not None
    assert model.training.metrics.train_loss == pytest.approx(0.42)
    assert model.training.metrics.eval_loss == pytest.approx(0.51)
    assert model.training.ended_at is not None
    assert model.refs.model_ref == custom_model
    assert model.artifacts is not None
    assert (model.training.data_uri or "").endswith("/train.jsonl")
    assert stack.repo.task_tokens.get(record.workspace_id, record.name, "training") is None
    # the training data the job read: JSONL in the provider's format, split 90/10
    bucket, _, key = (model.training.data_uri or "")[5:].partition("/")
    lines = stack.services.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
    first = json.loads(lines[0])
    assert set(first) == {"prompt", "completion"}
    assert 160 <= len(lines) <= 195
    # the creator got an email naming the model, the status and the next step
    emails = stack.emails()
    assert len(emails) == 1
    assert emails[0].destinations["ToAddresses"] == ["ada@example.com"]
    assert record.name in emails[0].subject
    assert "Not deployed" in emails[0].body
    assert f"tunelab models deploy {record.name}" in emails[0].body
    # and the bus carried the status change
    events = stack.domain_events(wait_for=1)
    changed = [e for e in events if e["detail-type"] == "Fine-tuned Model Status Changed"]
    assert changed[-1]["source"] == "tunelab"
    assert changed[-1]["detail"]["data"]["status"] == "not_deployed"
    assert changed[-1]["detail"]["data"]["previous_status"] == "training"
    assert changed[-1]["detail"]["correlation_id"] == "corr-1"
    assert changed[-1]["detail"]["workspace"] == record.workspace_id


def test_execution_is_named_after_the_model_and_starting_twice_finds_it(stack: Stack) -> None:
    dataset = stack.dataset()
    record = stack.model(dataset)

    first = _start(stack, record)
    second = _start(stack, record)

    assert first == second
    assert first.rsplit(":", 1)[1] == execution_name(record.name, record.uid)
    assert first.rsplit(":", 1)[1].startswith(record.name)
    stack.wait_for_token(record)


def test_failed_job_is_training_failed_with_the_providers_reason_and_an_email(stack: Stack) -> None:
    dataset = stack.dataset()
    record = stack.model(dataset)
    arn = _start(stack, record)
    token = stack.wait_for_token(record)

    reason = "Insufficient training data: 3 rows after filtering, at least 8 are required."
    stack.services.workflows.send_training_outcome(token, TrainingOutcome(outcome="failed", reason=reason))
    result = stack.wait_execution(arn)

    assert result["status"] == "SUCCEEDED"
    model = stack.repo.models.get(record.workspace_id, record.name)
    assert model.status == ModelStatus.TRAINING_FAILED
    assert model.training.failure_reason == reason
    events = stack.repo.models.list_events(record.workspace_id, record.name).items
    assert events[-1].status == ModelStatus.TRAINING_FAILED
    assert events[-1].message == reason
    [email] = stack.emails()
    assert email.subject == f"[tunelab] Training of {record.name} failed"
    assert "Insufficient training data" in email.body


def test_stop_while_training_ends_training_stopped(stack: Stack) -> None:
    dataset = stack.dataset()
    record = stack.model(dataset)
    arn = _start(stack, record)
    token = stack.wait_for_token(record)
    # the user asked to stop (the API's transition), then the provider reports the job stopped
    stack.repo.models.transition(
        record.workspace_id, record.name, {ModelStatus.TRAINING}, ModelStatus.STOPPING_TRAINING
    )

    stack.services.workflows.send_training_outcome(
        token, TrainingOutcome(outcome="stopped", reason="Stopped by the user.")
    )
    result = stack.wait_execution(arn)

    assert result["status"] == "SUCCEEDED"
    model = stack.repo.models.get(record.workspace_id, record.name)
    assert model.status == ModelStatus.TRAINING_STOPPED
    [email] = stack.emails()
    assert "was stopped" in email.subject


def test_a_task_that_fails_for_good_ends_training_failed_with_a_readable_reason(stack: Stack) -> None:
    # Given a dataset whose file disappeared from the bucket after it was validated
    dataset = stack.dataset()
    stack.services.s3.delete_object(Bucket=stack.services.settings.datasets_bucket, Key=dataset.s3_key or "")
    record = stack.model(dataset)

    result = stack.wait_execution(_start(stack, record))

    # Then the model is never left in training: it failed, saying what was missing
    assert result["status"] == "SUCCEEDED"
    model = stack.repo.models.get(record.workspace_id, record.name)
    assert model.status == ModelStatus.TRAINING_FAILED
    assert model.training.failure_reason is not None
    assert "The file of dataset 'support-tickets' is gone" in model.training.failure_reason
    assert "StartTraining" not in stack.states_entered(result["executionArn"])


def test_a_job_that_outlives_its_time_limit_is_stopped_and_failed(stack: Stack) -> None:
    dataset = stack.dataset()
    record = stack.model(dataset)

    # The wait on the provider is limited to 2 seconds; nobody reports the job's end.
    arn = _start(stack, record, training_timeout_seconds=2)
    result = stack.wait_execution(arn, timeout=60)

    assert result["status"] == "SUCCEEDED"
    model = stack.repo.models.get(record.workspace_id, record.name)
    assert model.status == ModelStatus.TRAINING_FAILED
    assert "did not finish within" in (model.training.failure_reason or "")
    # and the Bedrock job was stopped (in the region it runs in), so nothing keeps running and billing
    assert model.training.job_id is not None
    region = model.training.job_id.split(":")[3]
    bedrock = boto3.client("bedrock", region_name=region)
    job = bedrock.get_model_customization_job(jobIdentifier=job_name(model.identity))
    assert job["jobArn"] == model.training.job_id
    assert job["status"] in {"Stopping", "Stopped"}


def test_an_email_that_cannot_be_sent_does_not_block_the_status(stack: Stack) -> None:
    dataset = stack.dataset()
    record = stack.model(dataset)
    # SES refuses the sender (no longer verified)
    stack.services.client("ses").delete_identity(Identity=stack.services.settings.sender_email)
    arn = _start(stack, record)
    token = stack.wait_for_token(record)

    stack.services.workflows.send_training_outcome(
        token, TrainingOutcome(outcome="failed", reason="Out of capacity.")
    )
    result = stack.wait_execution(arn)

    assert result["status"] == "SUCCEEDED"
    assert stack.repo.models.get(record.workspace_id, record.name).status == ModelStatus.TRAINING_FAILED
    assert stack.emails() == []
    assert "NotificationNotSent" in stack.states_entered(arn)


def test_when_finish_training_itself_cannot_run_the_record_is_still_marked_failed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug in FinishTraining")

    # What the FinishTraining function calls
    monkeypatch.setattr(fine_tuned_models, "finish_training", broken)
    dataset = stack.dataset()
    record = stack.model(dataset)
    arn = _start(stack, record)
    token = stack.wait_for_token(record)

    stack.services.workflows.send_training_outcome(token, TrainingOutcome(outcome="completed"))
    result = stack.wait_execution(arn)

    # The execution shows the failure, and the record left training through the last-resort update
    assert result["status"] == "FAILED"
    model = stack.repo.models.get(record.workspace_id, record.name)
    assert model.status == ModelStatus.TRAINING_FAILED
    assert "could not record how the training ended" in (model.training.failure_reason or "")
    assert model.version > record.version


def test_a_stop_before_the_job_started_ends_training_stopped_without_a_job(stack: Stack) -> None:
    dataset = stack.dataset()
    record = stack.model(dataset)
    stack.repo.models.transition(
        record.workspace_id, record.name, {ModelStatus.TRAINING}, ModelStatus.STOPPING_TRAINING
    )

    result = stack.wait_execution(_start(stack, record))

    assert result["status"] == "SUCCEEDED"
    model = stack.repo.models.get(record.workspace_id, record.name)
    assert model.status == ModelStatus.TRAINING_STOPPED
    assert model.training.job_id is None
    assert model.training.failure_reason == "Training was stopped before the job started."
    assert "StartTraining" not in stack.states_entered(result["executionArn"])


def test_prepare_data_uses_the_validation_dataset_when_one_is_chosen(stack: Stack) -> None:
    train = stack.dataset()
    validation = stack.dataset(name="support-validation", csv="support-triage-validation.csv")
    record = stack.model(
        train,
        validation={
            "mode": "dataset",
            "dataset": {"id": validation.dataset_id, "name": validation.name, "rows": validation.rows},
        },
    )
    event = PrepareDataEvent(
        workspace_id=record.workspace_id,
        model_name=record.name,
        uid=record.uid,
        correlation_id="corr-p",
        table_key=table_key(record.workspace_id, record.name),
    )

    prepared = prepare_data(stack.services, event)

    assert prepared.training_rows == 200
    assert prepared.validation_rows == 40
    assert prepared.validation_data_uri is not None
    bucket, _, key = prepared.validation_data_uri[5:].partition("/")
    lines = stack.services.s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()
    assert len(lines) == 40
    assert prepared.training_timeout_seconds == 7 * 24 * 3600  # Bedrock: a week
