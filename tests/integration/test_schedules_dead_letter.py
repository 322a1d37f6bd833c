"""Auto-undeploy schedules send what Scheduler could not deliver to the stack's schedules DLQ (moto)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from tests.integration.conftest import ACCOUNT, REGION, Aws
from tunelab.application import workflow_tasks as tasks
from tunelab.composition.settings import reset_settings
from tunelab.composition.wiring import Services
from tunelab.domain.providers import ModelIdentity
from tunelab.domain.schedules import Scheduler

pytestmark = pytest.mark.moto

GROUP = "tunelab-test"
DLQ_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:Tunelab-SchedulesDlq"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
IDENTITY = ModelIdentity(workspace_id="ws-1", model_name="support-bot", created_at=NOW - timedelta(days=1))


def _schedules(scheduler: Scheduler) -> list[Any]:
    names = [s["Name"] for s in scheduler.client.list_schedules(GroupName=GROUP)["Schedules"]]
    assert len(names) == 2  # the undeploy and its reminder
    return [scheduler.client.get_schedule(Name=name, GroupName=GROUP)["Target"] for name in sorted(names)]


def _scheduler(dead_letter_arn: str | None) -> Scheduler:
    client = boto3.client("scheduler", region_name=REGION)
    client.create_schedule_group(Name=GROUP)
    return Scheduler(
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


def test_without_a_queue_the_schedules_have_no_dead_letter_config(aws: Aws) -> None:
    scheduler = _scheduler(None)
    scheduler.create_auto_undeploy(IDENTITY, uid="u1", requested_at=NOW, undeploy_at=NOW + timedelta(hours=8))
    for target in _schedules(scheduler):
        assert "DeadLetterConfig" not in target


def test_start_deployment_makes_its_schedules_with_the_settings_queue(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stack sets SCHEDULES_DLQ_ARN for every function; StartDeployment creates the schedules
    monkeypatch.setenv("SCHEDULES_DLQ_ARN", DLQ_ARN)
    reset_settings()
    services = Services()
    boto3.client("scheduler", region_name=REGION).create_schedule_group(Name=services.settings.schedule_group)
    made = tasks._scheduler(services).create_auto_undeploy(
        IDENTITY, uid="u1", requested_at=NOW, undeploy_at=datetime.now(UTC) + timedelta(days=1)
    )
    target = services.scheduler.get_schedule(
        Name=made.undeploy_name, GroupName=services.settings.schedule_group
    )["Target"]
    assert target["DeadLetterConfig"] == {"Arn": DLQ_ARN}
