"""Notification emails: what each one says, HTML escaping, and the SESv2 request as SES receives it."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber
from moto.ses.models import ses_backends

from tests.integration import factories
from tests.integration.conftest import ACCOUNT, REGION, Aws
from tunelab.adapters.ses import Notifier
from tunelab.domain.costs import CostEstimate, TrainingCost
from tunelab.domain.errors import ProviderError
from tunelab.domain.notifications import compose
from tunelab.domain.records import DeploymentState, Metrics, TrainingState
from tunelab.domain.status import ModelStatus

SENDER = "tunelab@example.com"


def _cost() -> CostEstimate:
    training = TrainingCost(
        tokens_per_epoch=130_000,
        epochs=3,
        trained_tokens=390_000,
        cost_usd=1.56,
        low_usd=1.33,
        high_usd=1.79,
        hours=None,
    )
    return CostEstimate(
        training=training, storage_per_month_usd=1.95, deployment_per_hour_usd=7.10, total_usd=3.51, notes=[]
    )


def test_training_completed_names_the_model_status_costs_and_the_next_step() -> None:
    record = factories.model(
        status=ModelStatus.NOT_DEPLOYED,
        predicted_cost=_cost(),
        training=TrainingState(metrics=Metrics(train_loss=0.4213, eval_loss=0.5)),
    )

    email = compose("training_completed", record)

    assert email.to == "ada@example.com"
    assert email.subject == "[tunelab] support-bot-v1 is ready: training completed"
    for text in (email.text, email.html):
        assert "Not deployed" in text
        assert "tunelab models deploy support-bot-v1" in text
        assert "$1.56" in text  # predicted training cost
        assert "$1.95 per month" in text  # storage
        assert "$7.10 per hour" in text  # what a deployment costs
        assert "0.4213" in text


@pytest.mark.parametrize(
    ("kind", "subject"),
    [
        ("training_failed", "[tunelab] Training of support-bot-v1 failed"),
        ("training_stopped", "[tunelab] Training of support-bot-v1 was stopped"),
        ("deploy_failed", "[tunelab] Deployment of support-bot-v1 failed"),
        ("undeployed", "[tunelab] support-bot-v1 was undeployed"),
    ],
)
def test_every_failure_and_end_says_the_reason(kind: str, subject: str) -> None:
    record = factories.model(status=ModelStatus.TRAINING_FAILED)
    email = compose(kind, record, reason="Quota of ml.g5 instances reached.")  # type: ignore[arg-type]
    assert email.subject == subject
    assert "Quota of ml.g5 instances reached." in email.text
    assert "Quota of ml.g5 instances reached." in email.html


@pytest.mark.parametrize("kind", ["training_failed", "training_stopped"])
def test_an_ended_bedrock_job_is_offered_a_clone_never_a_resume_it_cannot_have(kind: str) -> None:
    record = factories.model(status=ModelStatus(kind))  # the factory's model trains on Bedrock
    email = compose(kind, record, reason="The job was stopped.")  # type: ignore[arg-type]
    for text in (email.text, email.html):
        assert "/resume" not in text
        assert "tunelab models resume" not in text
        assert "keeps no checkpoints, so this job cannot be resumed." in text
        assert "tunelab models clone support-bot-v1 NEW_NAME" in text


@pytest.mark.parametrize("provider", ["sagemaker", "local"])
def test_an_ended_job_that_kept_checkpoints_is_offered_the_resume(provider: str) -> None:
    hosting = "byok" if provider == "sagemaker" else "local"
    record = factories.model(status=ModelStatus.TRAINING_STOPPED, provider=provider, hosting=hosting)
    email = compose("training_stopped", record).text
    assert "tunelab models resume support-bot-v1   (or POST /v1/fine-tuned-models/support-bot-v1/resume)" in (
        email
    )
    assert "tunelab models clone support-bot-v1 NEW_NAME" in email


def test_deployed_and_reminder_say_when_it_will_be_undeployed() -> None:
    at = datetime(2026, 11, 28, 16, 0, tzinfo=UTC)
    record = factories.model(
        status=ModelStatus.DEPLOYED,
        predicted_cost=_cost(),
        deployment=DeploymentState(endpoint="support-bot-v1-abc", auto_undeploy_at=at),
    )

    deployed = compose("deployed", record)
    reminder = compose("undeploy_reminder", record, at=at)

    assert "2026-11-28 16:00 UTC" in deployed.text
    assert "$7.10 per hour" in deployed.text
    assert "tunelab models undeploy support-bot-v1" in deployed.text
    assert reminder.subject == "[tunelab] support-bot-v1 will be undeployed at 2026-11-28 16:00 UTC"
    assert "tunelab models undeploy support-bot-v1" in reminder.text


def test_values_are_escaped_in_the_html() -> None:
    record = factories.model(status=ModelStatus.TRAINING_FAILED)
    email = compose("training_failed", record, reason='<script>alert("x")</script> & more')
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in email.html
    assert '<script>alert("x")</script> & more' in email.text


@pytest.mark.moto
def test_sent_email_is_read_back_from_ses(aws: Aws) -> None:
    boto3.client("ses", region_name=REGION).verify_email_identity(EmailAddress=SENDER)
    notifier = Notifier(boto3.client("sesv2", region_name=REGION), sender=SENDER)
    email = compose(
        "training_failed", factories.model(status=ModelStatus.TRAINING_FAILED), reason="Bad data."
    )

    message_id = notifier.send(email)

    [sent] = ses_backends[ACCOUNT][REGION].sent_messages
    assert message_id == sent.id
    assert sent.source == SENDER
    assert sent.destinations["ToAddresses"] == ["ada@example.com"]
    assert sent.subject == email.subject
    assert sent.body == email.html


def test_the_request_is_a_simple_utf8_message_with_the_configuration_set() -> None:
    client = boto3.client("sesv2", region_name=REGION)
    notifier = Notifier(client, sender=SENDER, configuration_set="tunelab-mail")
    email = compose("undeployed", factories.model(status=ModelStatus.NOT_DEPLOYED))
    expected = {
        "FromEmailAddress": SENDER,
        "Destination": {"ToAddresses": ["ada@example.com"]},
        "Content": {
            "Simple": {
                "Subject": {"Data": email.subject, "Charset": "UTF-8"},
                "Body": {
                    "Text": {"Data": email.text, "Charset": "UTF-8"},
                    "Html": {"Data": email.html, "Charset": "UTF-8"},
                },
            }
        },
        "EmailTags": [{"Name": "notification", "Value": "undeployed"}],
        "ConfigurationSetName": "tunelab-mail",
    }
    with Stubber(client) as stub:
        stub.add_response("send_email", {"MessageId": "m-1"}, expected)
        assert notifier.send(email) == "m-1"


@pytest.mark.moto
def test_a_refused_sender_is_an_error_the_workflow_can_catch(aws: Aws) -> None:
    notifier = Notifier(boto3.client("sesv2", region_name=REGION), sender="unverified@example.com")
    with pytest.raises(ProviderError, match="Sending the 'training_failed' email"):
        notifier.send(compose("training_failed", factories.model(status=ModelStatus.TRAINING_FAILED)))
