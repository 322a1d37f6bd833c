"""The life of a fine-tuned model over HTTP on the local runtime, with real (tiny) training: upload,
train, deploy with an automatic undeploy, try, download, undeploy, delete; stopping; refused
transitions; other workspaces; the automatic undeploy firing; a trainer that crashes."""

from __future__ import annotations

import os
import signal
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LocalApi, wait_for
from tests.e2e.jobs import (
    TINY,
    create,
    get,
    job_record,
    outbox_messages,
    quick_job,
    unique,
    upload,
    wait_phase,
    wait_status,
)
from tunelab.domain.schedules import fire_time

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.slow]

TRAINING = {"training", "stopping_training"}


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def trained(local: LocalApi) -> Iterator[dict[str, Any]]:
    """A model of the default workspace, trained (not deployed), deleted at the end."""
    dataset = upload(local)
    name = unique("trained")
    create(local, quick_job(name, dataset["id"]))
    model = wait_status(local, name, TRAINING)
    assert model["status"] == "not_deployed", model
    yield model
    local.call("POST", f"/v1/fine-tuned-models/{name}/undeploy")
    wait_status(local, name, {"deploying", "deployed"}, timeout=120)
    local.call("DELETE", f"/v1/fine-tuned-models/{name}", params={"acknowledge": "true"})


def test_the_whole_life_of_a_model(local: LocalApi, tmp_path: Path) -> None:
    # Given a dataset
    dataset = upload(local, rows=32)
    name = unique("life")

    # When it is fine-tuned
    created = create(local, quick_job(name, dataset["id"], epochs=2))
    assert created["base_model"]["id"] == TINY
    assert created["dataset"] == {"id": dataset["id"], "name": dataset["name"], "rows": 32}
    trained = wait_status(local, name, TRAINING)

    # Then it is trained, with artifacts and metrics
    assert trained["status"] == "not_deployed", trained["training"]
    assert trained["status_label"] == "Not deployed"
    assert trained["training"]["ended_at"] is not None
    assert trained["training"]["metrics"]["train_loss"] > 0
    assert any(f.endswith(".safetensors") for f in trained["artifacts"]["files"])
    assert "config.json" in trained["artifacts"]["files"]
    # Without validation data there is nothing to evaluate on, and the evaluation says so.
    evaluation = local.call("GET", f"/v1/fine-tuned-models/{name}/evaluation")
    assert evaluation.status_code == 404
    assert "no validation data" in evaluation.json()["error"]["message"]
    assert "no validation data" in trained["evaluation_note"]

    # When it is deployed with an automatic undeploy four hours on
    asked_at = datetime.now(UTC)
    deploying = local.call(
        "POST", f"/v1/fine-tuned-models/{name}/deploy", json={"auto_undeploy": {"after_hours": 4}}
    )
    assert deploying.status_code == 202, deploying.text
    assert deploying.json()["status"] in ("deploying", "deployed")
    deployed = wait_status(local, name, {"deploying"}, timeout=300)
    assert deployed["status"] == "deployed", deployed
    undeploy_at = _time(deployed["deployment"]["auto_undeploy_at"])
    # Rounded up to the minute Scheduler fires in: never earlier, at most a minute later (plus latency).
    assert timedelta(0) <= undeploy_at - (asked_at + timedelta(hours=4)) < timedelta(minutes=2)

    # Then the sandbox answers
    answer = local.call(
        "POST",
        f"/v1/fine-tuned-models/{name}/invoke",
        json={"prompt": "Triage this support ticket.", "max_tokens": 8, "temperature": 0},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert isinstance(body["completion"], str)
    assert body["usage"]["input_tokens"] > 0
    assert 1 <= body["usage"]["output_tokens"] <= 8

    # And the download is a .tar.gz whose model loads and generates
    link = local.call("GET", f"/v1/fine-tuned-models/{name}/download")
    assert link.status_code == 200, link.text
    archive = tmp_path / "model.tar.gz"
    fetched = httpx.get(link.json()["url"], timeout=120)
    assert fetched.status_code == 200
    archive.write_bytes(fetched.content)
    assert len(fetched.content) == link.json()["size_bytes"]
    folder = tmp_path / "model"
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(folder, filter="data")
        members = {m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()}
    assert set(link.json()["files"]) <= members
    loaded = _generate(folder)
    assert isinstance(loaded, str)

    # When it is undeployed, then deleted
    undeploy = local.call("POST", f"/v1/fine-tuned-models/{name}/undeploy")
    assert undeploy.status_code == 202
    assert wait_status(local, name, {"deploying", "deployed"}, timeout=120)["status"] == "not_deployed"
    deleted = local.call("DELETE", f"/v1/fine-tuned-models/{name}", params={"acknowledge": "true"})
    assert deleted.status_code == 204

    # Then it is gone, and its history had every status in order
    assert local.call("GET", f"/v1/fine-tuned-models/{name}").status_code == 404
    assert name not in [m["name"] for m in local.call("GET", "/v1/fine-tuned-models").json()["items"]]
    # The runtime's log has its own lines and the handlers' at the chosen level (WARNING): no
    # handler's INFO line under a service-less logger name, no progress bar of the model's loading.
    log = local.log()
    assert "service_undefined" not in log
    assert "Loading weights" not in log


def test_an_unmerged_lora_model_deploys_and_downloads_its_merged_copy(
    local: LocalApi, tmp_path: Path
) -> None:
    # Given a LoRA model whose adapter was not merged into the weights
    dataset = upload(local, rows=16)
    name = unique("lora")
    body = quick_job(name, dataset["id"])
    body["optional_hyperparameters"] = {
        **body["optional_hyperparameters"],
        "use_lora": True,
        "merge_adapters": False,
    }
    create(local, body)
    trained = wait_status(local, name, TRAINING)
    assert trained["status"] == "not_deployed", trained["training"]
    artifacts = trained["artifacts"]
    assert artifacts["merged"] is False
    assert "config.json" not in artifacts["files"]  # model.tar.gz: the adapter alone
    assert artifacts["merged_archive"]["path"] == "merged/"
    assert artifacts["download_variants"] == ["merged", "adapter"]

    # When it is downloaded (the merged variant, the default)
    link = local.call("GET", f"/v1/fine-tuned-models/{name}/download")
    assert link.status_code == 200, link.text
    assert (link.json()["variant"], link.json()["model_path"]) == ("merged", "merged/")
    fetched = httpx.get(link.json()["url"], timeout=120)
    assert fetched.status_code == 200
    archive = tmp_path / "merged.tar.gz"
    archive.write_bytes(fetched.content)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(tmp_path / "merged-download", filter="data")
        members = {m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()}

    # Then the archive holds a whole model under merged/ that transformers loads and runs
    assert "merged/config.json" in members
    assert any(m.startswith("merged/") and m.endswith(".safetensors") for m in members)
    assert isinstance(_generate(tmp_path / "merged-download" / "merged"), str)
    # And the adapter alone is the other variant
    adapter = local.call("GET", f"/v1/fine-tuned-models/{name}/download", params={"variant": "adapter"})
    assert adapter.status_code == 200, adapter.text
    assert "adapter/adapter_config.json" in adapter.json()["files"]

    # When it is deployed, it is served (from the merged copy) and answers
    deploying = local.call("POST", f"/v1/fine-tuned-models/{name}/deploy", json={"auto_undeploy": None})
    assert deploying.status_code == 202, deploying.text
    deployed = wait_status(local, name, {"deploying"}, timeout=300)
    assert deployed["status"] == "deployed", deployed
    answer = local.call(
        "POST", f"/v1/fine-tuned-models/{name}/invoke", json={"prompt": "Reset my password", "max_tokens": 4}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["output_tokens"] >= 1

    local.call("POST", f"/v1/fine-tuned-models/{name}/undeploy")
    wait_status(local, name, {"deploying", "deployed"}, timeout=120)
    deleted = local.call("DELETE", f"/v1/fine-tuned-models/{name}", params={"acknowledge": "true"})
    assert deleted.status_code == 204


def _generate(folder: Path) -> str:
    """Load the downloaded model with transformers and generate a few tokens."""
    import torch  # noqa: PLC0415
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    root = next(p.parent for p in folder.rglob("config.json"))
    model = AutoModelForCausalLM.from_pretrained(str(root))
    tokenizer = AutoTokenizer.from_pretrained(str(root))
    inputs = tokenizer("Triage this support ticket.", return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    return str(tokenizer.decode(output[0], skip_special_tokens=True))


def test_history_lists_each_status_change_in_order(local: LocalApi, trained: dict[str, Any]) -> None:
    events = local.call("GET", f"/v1/fine-tuned-models/{trained['name']}/events").json()["items"]

    statuses = [e["status"] for e in events if e["type"] == "status_changed"]
    assert statuses[0] == "training"
    assert statuses[-1] == "not_deployed"
    times = [_time(e["at"]) for e in events]
    assert times == sorted(times)


def test_stop_while_training_ends_training_stopped_and_refuses_what_training_forbids(
    local: LocalApi,
) -> None:
    dataset = upload(local, rows=200)
    name = unique("stop")
    create(local, quick_job(name, dataset["id"], epochs=50))
    running = wait_phase(local, name, "Training")
    assert running["status"] == "training", running

    # While training: no deploy, invoke, download or delete (409 invalid_state, naming the status)
    for method, path, extra in (
        ("POST", "deploy", {"json": {"auto_undeploy": None}}),
        ("POST", "invoke", {"json": {"prompt": "hi"}}),
        ("GET", "download", {}),
        ("DELETE", "", {"params": {"acknowledge": "true"}}),
    ):
        refused = local.call(method, f"/v1/fine-tuned-models/{name}/{path}".rstrip("/"), **extra)
        assert refused.status_code == 409, (path, refused.text)
        assert refused.json()["error"]["code"] == "invalid_state"
        assert (
            "Training" in refused.json()["error"]["message"]
            or "training" in refused.json()["error"]["message"]
        )

    stopping = local.call("POST", f"/v1/fine-tuned-models/{name}/stop")
    assert stopping.status_code == 202, stopping.text
    assert stopping.json()["status"] == "stopping_training"
    again = local.call("POST", f"/v1/fine-tuned-models/{name}/stop")
    assert again.status_code == 409  # stopping already (or stopped by now)
    assert again.json()["error"]["code"] == "invalid_state"

    stopped = wait_status(local, name, TRAINING, timeout=300)
    assert stopped["status"] == "training_stopped", stopped
    assert stopped["status_label"] == "Training stopped"

    # A stopped model cannot be deployed or stopped again; it can be deleted
    assert local.call("POST", f"/v1/fine-tuned-models/{name}/deploy", json={}).status_code == 409
    assert local.call("POST", f"/v1/fine-tuned-models/{name}/stop").status_code == 409
    deleted = local.call("DELETE", f"/v1/fine-tuned-models/{name}", params={"acknowledge": "true"})
    assert deleted.status_code == 204


def test_actions_a_trained_model_does_not_allow_are_409(local: LocalApi, trained: dict[str, Any]) -> None:
    name = trained["name"]
    for method, path, body in (
        ("POST", "stop", None),
        ("POST", "undeploy", None),
        ("POST", "invoke", {"prompt": "hi"}),
    ):
        refused = local.call(method, f"/v1/fine-tuned-models/{name}/{path}", json=body)
        assert refused.status_code == 409, (path, refused.text)
        assert refused.json()["error"]["code"] == "invalid_state"
        assert "Not deployed" in refused.json()["error"]["message"]
    without_ack = local.call("DELETE", f"/v1/fine-tuned-models/{name}")
    assert without_ack.status_code == 400
    assert get(local, name)["status"] == "not_deployed"


def test_another_workspace_gets_404_on_every_model_route(local: LocalApi, trained: dict[str, Any]) -> None:
    name = trained["name"]
    other = local.token(workspace="ws-other", email="eve@example.com")
    routes: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "", {}),
        ("GET", "/events", {}),
        ("POST", "/stop", {}),
        ("POST", "/deploy", {"json": {"auto_undeploy": None}}),
        ("POST", "/undeploy", {}),
        ("POST", "/invoke", {"json": {"prompt": "hi"}}),
        ("GET", "/download", {}),
        ("DELETE", "", {"params": {"acknowledge": "true"}}),
    ]
    for method, suffix, extra in routes:
        answer = local.call(method, f"/v1/fine-tuned-models/{name}{suffix}", token=other, **extra)
        assert answer.status_code == 404, (method, suffix, answer.text)
        assert answer.json()["error"]["code"] == "not_found"

    listed = local.call("GET", "/v1/fine-tuned-models", token=other).json()["items"]
    assert name not in [m["name"] for m in listed]
    dataset_id = trained["dataset"]["id"]
    assert local.call("GET", f"/v1/datasets/{dataset_id}", token=other).status_code == 404
    # Nothing the other workspace did touched the model
    assert get(local, name)["status"] == "not_deployed"
    # And its own model of the same name is its own
    own = create(local, quick_job(name, upload(local, rows=8, token=other)["id"]), token=other)
    assert own["dataset"]["id"] != dataset_id
    wait_status(local, name, TRAINING, token=other)
    gone = local.call("DELETE", f"/v1/fine-tuned-models/{name}", token=other, params={"acknowledge": "true"})
    assert gone.status_code == 204
    assert get(local, name)["status"] == "not_deployed"


def test_the_automatic_undeploy_fires_by_itself_and_emails(local: LocalApi, trained: dict[str, Any]) -> None:
    name = trained["name"]
    too_soon = (datetime.now(UTC) + timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    refused = local.call(
        "POST", f"/v1/fine-tuned-models/{name}/deploy", json={"auto_undeploy": {"at": too_soon}}
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["details"][0]["field"] == "auto_undeploy.at"

    at = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5, seconds=30)
    deploy = local.call(
        "POST",
        f"/v1/fine-tuned-models/{name}/deploy",
        json={"auto_undeploy": {"at": at.strftime("%Y-%m-%dT%H:%M:%SZ")}},
    )
    assert deploy.status_code == 202, deploy.text
    deployed = wait_status(local, name, {"deploying"}, timeout=300)
    assert deployed["status"] == "deployed"
    # Scheduler fires within a whole minute, so the stored time is `at` rounded up to the next minute:
    # never earlier than asked, and what the schedule really does.
    assert _time(deployed["deployment"]["auto_undeploy_at"]) == fire_time(at)
    assert fire_time(at) >= at
    emails_before = set(outbox_messages(local))

    # The API's minimum lead is 5 minutes: bring the schedule it made forward to a few seconds from now,
    # in the embedded EventBridge Scheduler, and let the runtime's schedule runner fire it.
    schedule = _bring_forward(local, name, seconds=3)
    assert schedule["Name"]

    undeployed = wait_status(local, name, {"deployed", "deploying"}, timeout=120)
    assert undeployed["status"] == "not_deployed"
    events = local.call("GET", f"/v1/fine-tuned-models/{name}/events").json()["items"]
    assert any(
        e["type"] == "status_changed"
        and e["status"] == "not_deployed"
        and "auto-undeploy" in (e["message"] or "")
        for e in events
    ), events
    new = wait_for(lambda: set(outbox_messages(local)) - emails_before, timeout=30, what="an email")
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in new]
    assert any(name in text and "undeploy" in text.lower() for text in texts), texts


def _bring_forward(local: LocalApi, name: str, seconds: int) -> dict[str, Any]:
    scheduler = local.client("scheduler")
    for group in scheduler.list_schedule_groups()["ScheduleGroups"]:
        for summary in scheduler.list_schedules(GroupName=group["Name"])["Schedules"]:
            schedule: dict[str, Any] = scheduler.get_schedule(Name=summary["Name"], GroupName=group["Name"])
            payload = schedule["Target"].get("Input") or ""
            if name in payload and '"undeploy"' in payload:
                when = datetime.now(UTC) + timedelta(seconds=seconds)
                scheduler.update_schedule(
                    Name=schedule["Name"],
                    GroupName=group["Name"],
                    ScheduleExpression=f"at({when:%Y-%m-%dT%H:%M:%S})",
                    ScheduleExpressionTimezone="UTC",
                    FlexibleTimeWindow={"Mode": "OFF"},
                    Target=schedule["Target"],
                    ActionAfterCompletion=schedule.get("ActionAfterCompletion", "NONE"),
                )
                return schedule
    pytest.fail(f"no auto-undeploy schedule for {name}")


def test_a_trainer_that_crashes_fails_the_job_with_the_reason(local: LocalApi) -> None:
    dataset = upload(local, rows=200)
    name = unique("crash")
    create(local, quick_job(name, dataset["id"], epochs=50))
    wait_phase(local, name, "Training")
    pid = wait_for(lambda: job_record(local, name).get("pid"), timeout=60, what="the trainer's pid")

    os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would

    failed = wait_status(local, name, TRAINING, timeout=120)
    assert failed["status"] == "training_failed"
    assert failed["status_label"] == "Training failed"
    assert "killed by signal 9" in failed["training"]["failure_reason"]
    events = local.call("GET", f"/v1/fine-tuned-models/{name}/events").json()["items"]
    assert [e["status"] for e in events if e["type"] == "status_changed"][-1] == "training_failed"
    assert (
        local.call("DELETE", f"/v1/fine-tuned-models/{name}", params={"acknowledge": "true"}).status_code
        == 204
    )
