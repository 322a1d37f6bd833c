"""Auto-undeploy schedules send what Scheduler could not deliver to the stack's schedules DLQ (moto)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from tests.integration.conftest import ACCOUNT, REGION, Aws
from tunelab.adapters.scheduler import EventBridgeScheduler
from tunelab.composition.settings import reset_settings
from tunelab.composition.wiring import Services
from tunelab.domain.providers import ModelIdentity

pytestmark = pytest.mark.moto

GROUP = "tunelab-test"
DLQ_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:Tunelab-SchedulesDlq"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
IDENTITY = ModelIdentity(workspace_id="ws-1", model_name="support-bot", created_at=NOW - timedelta(days=1))


def _schedules(scheduler: EventBridgeScheduler) -> list[Any]:
    names = [s["Name"] for s in scheduler.client.list_schedules(GroupName=GROUP)["Schedules"]]
    assert len(names) == 2  # the undeploy and its reminder
    return [scheduler.client.get_schedule(Name=name, GroupName=GROUP)["Target"] for name in sorted(names)]


def _scheduler(dead_letter_arn: str) -> EventBridgeScheduler:
    client = boto3.client("scheduler", region_name=REGION)
    client.create_schedule_group(Name=GROUP)
    return EventBridgeScheduler(
        client,
        group=GROUP,
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/tunelab-scheduler",
        target_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:Tunelab-auto-undeploy",
        dead_letter_arn=dead_letter_arn,
        clock=lambda: NOW,
    )


def test_both_schedules_name_the_dead_letter_queue(aws: Aws) -> None:
    scheduler = _scheduler(DLQ_ARN)
    scheduler.create_auto_undeploy(IDENTITY, uid="u1", requested_at=NOW, undeploy_at=NOW + timedelta(hours=8))
    for target in _schedules(scheduler):
        assert target["DeadLetterConfig"] == {"Arn": DLQ_ARN}


def test_a_scheduler_without_a_queue_is_refused(aws: Aws) -> None:
    # The dead-letter queue is required now (an undeploy Scheduler could not deliver must not vanish):
    # no scheduler is made without one, so no schedule can lack a DeadLetterConfig.
    with pytest.raises(ValueError, match="dead-letter queue"):
        _scheduler("")
    assert boto3.client("scheduler", region_name=REGION).list_schedules(GroupName=GROUP)["Schedules"] == []


def test_start_deployment_makes_its_schedules_with_the_settings_queue(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stack sets SCHEDULES_DLQ_ARN for every function; StartDeployment creates the schedules
    # through the services' scheduler, which the settings give the queue.
    monkeypatch.setenv("SCHEDULES_DLQ_ARN", DLQ_ARN)
    reset_settings()
    services = Services()
    boto3.client("scheduler", region_name=REGION).create_schedule_group(Name=services.settings.schedule_group)
    made = services.scheduler.create_auto_undeploy(
        IDENTITY, uid="u1", requested_at=NOW, undeploy_at=datetime.now(UTC) + timedelta(days=1)
    )
    target = services.scheduler_client.get_schedule(
        Name=made.undeploy_name, GroupName=services.settings.schedule_group
    )["Target"]
    assert target["DeadLetterConfig"] == {"Arn": DLQ_ARN}
