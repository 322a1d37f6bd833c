"""Over HTTP in the local runtime: a tiny-model job stopped a few steps in ends `training_stopped`
with the checkpoint the trainer saved on the stop; resumed, it trains on from that checkpoint in a
job of its own (its folder holds a copy of the checkpoint) and completes the run's own step count,
under the same name and history."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e import jobs
from tests.e2e.conftest import LocalApi

# 96 rows, batches of 8: 12 steps an epoch, 600 steps in all. The tiny model trains about 60 steps a
# second on two busy cores, so the stop (sent once the trainer's log says step 4) lands seconds before
# the end even on a machine a few times faster.
ROWS, EPOCHS, STEPS = 96, 50, 600
MOVING = {"training", "stopping_training"}


def _jobs_of(local: LocalApi, name: str) -> list[dict[str, Any]]:
    """The local jobs of the model (`job.json`), oldest first."""
    found = []
    for path in (local.data_dir / "jobs").glob("*/job.json"):
        record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if record.get("model_name") == name:
            found.append(record)
    return sorted(found, key=lambda r: str(r["created_at"]))


def test_a_stopped_training_resumes_from_its_checkpoint_and_completes_the_run(local: LocalApi) -> None:
    dataset = jobs.upload(local, rows=ROWS)
    name = jobs.unique("resumed")
    jobs.create(local, jobs.quick_job(name, dataset["id"], epochs=EPOCHS))
    deadline = time.monotonic() + jobs.TRAINING_TIMEOUT_S
    while jobs.trainer_step(local, name) < 4:
        if time.monotonic() > deadline:
            pytest.fail(f"{name} never ran 4 steps:\n{local.log()[-4000:]}")
        time.sleep(0.05)
    stop = local.call("POST", f"/v1/fine-tuned-models/{name}/stop")
    assert stop.status_code == 202, stop.text
    stopped = jobs.wait_status(local, name, MOVING)
    assert stopped["status"] == "training_stopped", stopped
    [first] = _jobs_of(local, name)
    stopped_at = int(first["progress"]["step"])
    assert 4 <= stopped_at < STEPS, "the job ended before the stop reached its trainer"

    # Not acknowledged: the checkpoint, what the remaining steps cost, a quote; nothing started.
    answer = local.call("POST", f"/v1/fine-tuned-models/{name}/resume", json={})
    assert answer.status_code == 200, answer.text
    quote = answer.json()
    checkpoint = quote["checkpoint"]
    assert checkpoint == f"checkpoint-{quote['step']}"
    assert (quote["total_steps"], quote["model"]) == (STEPS, name)
    assert 4 <= quote["step"] <= stopped_at
    assert quote["total_usd"] == 0  # local training is free
    assert jobs.get(local, name)["status"] == "training_stopped"

    resumed = local.call(
        "POST",
        f"/v1/fine-tuned-models/{name}/resume",
        json={"acknowledge": True, "quote_id": quote["quote_id"]},
    )
    assert resumed.status_code == 202, resumed.text
    assert resumed.json()["status"] == "training"
    done = jobs.wait_status(local, name, MOVING)

    assert done["status"] == "not_deployed", done
    assert done["training"]["metrics"]["step"] == STEPS  # the run went on, not over from step 0
    first_job, second_job = _jobs_of(local, name)
    assert first_job["name"] != second_job["name"]  # the resume's job has a folder of its own
    assert (first_job["status"], second_job["status"]) == ("Stopped", "Completed")
    assert second_job["resumed_from"] == checkpoint
    assert second_job["metrics"]["step"] == STEPS
    log = (local.data_dir / "jobs" / second_job["name"] / "trainer.log").read_text(encoding="utf-8")
    assert f"resuming from checkpoint {checkpoint}" in log
    # Same model, same history: the request, the stop, the resume, the completion.
    events = local.call("GET", f"/v1/fine-tuned-models/{name}/events").json()["items"]
    messages = [e.get("message") or "" for e in events]
    assert any(m.startswith("Training requested by") for m in messages)
    resumed_by = [m for m in messages if m.startswith(f"Training resumed from {checkpoint} by ")]
    assert len(resumed_by) == 1
    print(
        f"stopped at step {stopped_at}; resumed from {checkpoint}; completed {second_job['metrics']['step']}"
    )
