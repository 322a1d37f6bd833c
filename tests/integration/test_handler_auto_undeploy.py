"""Auto-undeploy: the schedules' own input (read back from moto's Scheduler) given to the function.

moto stores schedules but never fires them: each test takes the schedule's target input, as
EventBridge Scheduler would send it, and invokes the function with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest

from functions import auto_undeploy
from tests.integration.conftest import ENVIRONMENT, REGION, Aws
from tests.integration.handler_support import (
    CONTEXT,
    SCHEDULE_GROUP,
    WS,
    BusSpy,
    RecordingProvider,
    build_services,
    create_deployed_model,
    emails,
    schedules,
)
from tunelab.application.deployments import AUTO_UNDEPLOY_REASON
from tunelab.composition.wiring import Services, reset_services
from tunelab.domain.records import ModelRecord, utcnow
from tunelab.domain.status import ModelStatus


@pytest.fixture
def sagemaker() -> RecordingProvider:
    return RecordingProvider("sagemaker")


@pytest.fixture
def bus(aws: Aws) -> BusSpy:
    return BusSpy("tunelab-test")


@pytest.fixture
def services(aws: Aws, repo: Services, bus: BusSpy, sagemaker: RecordingProvider) -> Iterator[Services]:
    yield build_services(repo, sagemaker)
    reset_services()


def _input(model: ModelRecord, action: str) -> dict[str, Any]:
    """What Scheduler sends the function when the model's `action` schedule fires."""
    assert model.deployment is not None
    assert model.deployment.schedule_name is not None
    name = model.deployment.schedule_name.removesuffix("-undeploy") + f"-{action}"
    schedule = boto3.client("scheduler", region_name=REGION).get_schedule(Name=name, GroupName=SCHEDULE_GROUP)
    # An event Scheduler cannot deliver rests in the schedules dead-letter queue.
    assert schedule["Target"]["DeadLetterConfig"]["Arn"] == ENVIRONMENT["SCHEDULES_DLQ_ARN"]
    payload: dict[str, Any] = json.loads(schedule["Target"]["Input"])
    return payload


def test_the_undeploy_schedule_undeploys(
    services: Services, repo: Services, sagemaker: RecordingProvider, bus: BusSpy
) -> None:
    model = create_deployed_model(services, repo, requested_at=utcnow())
    payload = _input(model, "undeploy")

    result = auto_undeploy.handler(payload, CONTEXT)

    assert result["action"] == "undeployed"
    stored = repo.models.get(WS, model.name)
    assert stored.status == ModelStatus.NOT_DEPLOYED
    # the history gives the reason, then what the deployment ran and cost
    history = repo.models.list_events(WS, model.name, limit=100).items[-1].message
    assert history is not None
    assert history.startswith(AUTO_UNDEPLOY_REASON + " It ran ")
    assert stored.last_deployment is not None
    assert stored.last_deployment.undeployed_at is not None
    assert len(sagemaker.called("undeploy")) == 1
    assert schedules() == []  # the reminder too
    [email] = emails()
    assert email.subject == f"[tunelab] {model.name} was undeployed"
    assert AUTO_UNDEPLOY_REASON in email.body
    [published] = bus.published()
    assert published["detail"]["data"]["status"] == "not_deployed"
    # The undeploy's event carries the invocation that caused it.
    assert published["detail"]["correlation_id"] == CONTEXT.aws_request_id


def test_the_reminder_emails_and_leaves_the_model_deployed(
    services: Services, repo: Services, sagemaker: RecordingProvider
) -> None:
    model = create_deployed_model(services, repo, requested_at=utcnow())

    result = auto_undeploy.handler(_input(model, "remind"), CONTEXT)

    assert result["action"] == "reminded"
    assert repo.models.get(WS, model.name).status == ModelStatus.DEPLOYED
    [email] = emails()
    assert email.subject.startswith(f"[tunelab] {model.name} will be undeployed at ")
    assert sagemaker.calls == []


def test_a_schedule_of_an_earlier_deployment_changes_nothing(
    services: Services, repo: Services, sagemaker: RecordingProvider
) -> None:
    model = create_deployed_model(services, repo, requested_at=utcnow())
    stale = {
        **_input(model, "undeploy"),
        "deployment_requested_at": (utcnow() - timedelta(days=1)).isoformat(),
    }

    result = auto_undeploy.handler(stale, CONTEXT)

    assert result["action"] == "ignored"
    assert repo.models.get(WS, model.name) == model
    assert len(schedules()) == 2
    assert sagemaker.calls == []
    assert emails() == []


def test_a_schedule_of_a_deleted_model_whose_name_was_reused_changes_nothing(
    services: Services, repo: Services, sagemaker: RecordingProvider
) -> None:
    model = create_deployed_model(services, repo, requested_at=utcnow())
    other_life = {**_input(model, "undeploy"), "uid": "0123456789abcdef"}

    assert auto_undeploy.handler(other_life, CONTEXT)["action"] == "ignored"
    assert repo.models.get(WS, model.name).status == ModelStatus.DEPLOYED


def test_a_schedule_after_a_manual_undeploy_changes_nothing(
    services: Services, repo: Services, sagemaker: RecordingProvider
) -> None:
    model = create_deployed_model(services, repo, requested_at=utcnow())
    payload = _input(model, "undeploy")
    auto_undeploy.handler(payload, CONTEXT)

    again = auto_undeploy.handler(payload, CONTEXT)

    assert again["action"] == "ignored"
    assert len(sagemaker.called("undeploy")) == 1
    assert len(emails()) == 1
