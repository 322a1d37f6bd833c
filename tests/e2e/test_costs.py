"""Cost over HTTP on the local runtime, with real (tiny) training: a finished job's actual cost beside
its prediction (local training costs 0, and its ratio to a prediction of 0 is not applicable: null), the
deployment's running hours and cost, and moving and cancelling the automatic undeploy (the schedule in
the runtime's EventBridge Scheduler moves, then goes)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import LocalApi, wait_for
from tests.e2e.jobs import create, outbox_messages, quick_job, unique, upload, wait_status
from tunelab.domain.schedules import fire_time

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.slow]


def _schedules_of(local: LocalApi, name: str) -> dict[str, dict[str, Any]]:
    """The runtime scheduler's schedules of the model, by action ("undeploy", "remind")."""
    scheduler = local.client("scheduler")
    found: dict[str, dict[str, Any]] = {}
    for group in scheduler.list_schedule_groups()["ScheduleGroups"]:
        for summary in scheduler.list_schedules(GroupName=group["Name"])["Schedules"]:
            schedule: dict[str, Any] = scheduler.get_schedule(Name=summary["Name"], GroupName=group["Name"])
            order = json.loads(schedule["Target"].get("Input") or "{}")
            if order.get("model_name") == name:
                found[order["action"]] = schedule
    return found


def _at(moment: datetime) -> str:
    return f"at({moment:%Y-%m-%dT%H:%M:%S})"


def test_cost_of_a_local_job_and_of_its_deployment_and_moving_its_auto_undeploy(local: LocalApi) -> None:
    dataset = upload(local)
    name = unique("costed")
    created = create(local, quick_job(name, dataset["id"]))
    assert created["cost"]["actual"] is None

    # Training ends: what it cost beside the prediction; local training is free
    trained = wait_status(local, name, {"training", "stopping_training"})
    assert trained["status"] == "not_deployed", trained
    actual = trained["cost"]["actual"]
    assert actual["cost_usd"] == 0.0
    assert actual["basis"] == "free"
    assert actual["estimated"] is False
    assert actual["predicted_usd"] == trained["cost"]["predicted"]["training"]["cost_usd"] == 0.0
    assert actual["actual_vs_predicted"] is None  # 0 against a prediction of 0: not applicable
    mails = wait_for(
        lambda: [
            t
            for t in (p.read_text(encoding="utf-8", errors="replace") for p in outbox_messages(local))
            if name in t and "Training cost: $0.00 (predicted $0.00)" in t
        ],
        timeout=60,
        what="the training-finished email with its cost",
    )
    assert mails

    # Not deployed: nothing to move
    refused = local.call("PATCH", f"/v1/fine-tuned-models/{name}/deployment", json={"auto_undeploy": None})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "invalid_state"

    # Deployed with an automatic undeploy in 2 hours: its schedules exist, its running cost is shown
    deploy = local.call(
        "POST", f"/v1/fine-tuned-models/{name}/deploy", json={"auto_undeploy": {"after_hours": 2}}
    )
    assert deploy.status_code == 202, deploy.text
    deployed = wait_status(local, name, {"deploying"}, timeout=300)
    assert deployed["status"] == "deployed", deployed
    first = _schedules_of(local, name)
    assert set(first) == {"undeploy", "remind"}
    assert first["undeploy"]["ScheduleExpression"] == _at(
        datetime.fromisoformat(deployed["deployment"]["auto_undeploy_at"].replace("Z", "+00:00"))
    )
    running = deployed["cost"]["deployment"]
    assert running["hourly_usd"] == 0.0
    assert running["cost_usd"] == 0.0
    assert running["hours"] >= 0.0

    # Moved to 5 hours from now: the same schedules, at the new time
    target = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=5)
    moved = local.call(
        "PATCH",
        f"/v1/fine-tuned-models/{name}/deployment",
        json={"auto_undeploy": {"at": target.strftime("%Y-%m-%dT%H:%M:%SZ")}},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["deployment"]["auto_undeploy_at"] == fire_time(target).strftime("%Y-%m-%dT%H:%M:%SZ")
    after = _schedules_of(local, name)
    assert after["undeploy"]["Name"] == first["undeploy"]["Name"]
    assert after["undeploy"]["ScheduleExpression"] == _at(fire_time(target))
    assert after["undeploy"]["ScheduleExpression"] != first["undeploy"]["ScheduleExpression"]
    assert "remind" in after

    # A time in the past is refused, and nothing moves
    past = local.call(
        "PATCH",
        f"/v1/fine-tuned-models/{name}/deployment",
        json={"auto_undeploy": {"at": "2020-01-01T00:00:00Z"}},
    )
    assert past.status_code == 400
    assert past.json()["error"]["details"][0]["field"] == "auto_undeploy.at"
    assert _schedules_of(local, name)["undeploy"]["ScheduleExpression"] == _at(fire_time(target))

    # null cancels: no schedule left, still deployed
    cancelled = local.call("PATCH", f"/v1/fine-tuned-models/{name}/deployment", json={"auto_undeploy": None})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["deployment"]["auto_undeploy_at"] is None
    assert cancelled.json()["status"] == "deployed"
    assert _schedules_of(local, name) == {}

    # Undeployed: the deployment's hours and total are kept in the details and the history
    local.call("POST", f"/v1/fine-tuned-models/{name}/undeploy")
    undeployed = wait_status(local, name, {"deployed", "deploying"}, timeout=120)
    assert undeployed["status"] == "not_deployed"
    last = undeployed["cost"]["last_deployment"]
    assert last["undeployed_at"] is not None
    assert last["cost_usd"] == 0.0
    assert undeployed["cost"]["deployment"] is None
    events = local.call("GET", f"/v1/fine-tuned-models/{name}/events").json()["items"]
    messages = [e["message"] or "" for e in events]
    assert any("Automatic undeploy moved to" in m for m in messages), messages
    assert any("Automatic undeploy cancelled" in m for m in messages), messages
    assert any("It ran" in m and "cost $0.00" in m for m in messages), messages
    print(  # the figures the run returned, for the report
        "E2E-COST", actual, running, last, moved.json()["deployment"]["auto_undeploy_at"]
    )
    gone = local.call("DELETE", f"/v1/fine-tuned-models/{name}", params={"acknowledge": "true"})
    assert gone.status_code == 204
