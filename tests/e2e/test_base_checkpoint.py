"""A checkpoint as the base of a new model over HTTP in the local runtime: a full fine-tune of the tiny
model saves every 4 steps; a new model starts from its `checkpoint-4` (not its final weights), trains to
`not_deployed`, and its job's model channel is that checkpoint's folder."""

from __future__ import annotations

import os
from pathlib import Path

from tests.e2e.conftest import LocalApi
from tests.e2e.jobs import create, job_record, quick_job, unique, upload, wait_status


def test_a_new_model_starts_from_a_checkpoint_of_another(local: LocalApi) -> None:
    dataset = upload(local, rows=48)
    parent = unique("parent")
    body = quick_job(parent, dataset["id"], epochs=2)
    body["optional_hyperparameters"]["use_lora"] = False
    body["optional_hyperparameters"]["sft_config"].update(
        {"save_strategy": "steps", "save_steps": 4, "save_total_limit": 5}
    )
    create(local, body)
    model = wait_status(local, parent, {"training"})
    assert model["status"] == "not_deployed", model
    kept = local.call("GET", f"/v1/fine-tuned-models/{parent}/checkpoints").json()["items"]
    assert "checkpoint-4" in [item["id"] for item in kept], kept

    child = unique("child")
    start = {
        "name": child,
        "base_fine_tuned_model": parent,
        "base_checkpoint": "checkpoint-4",
        "dataset_id": dataset["id"],
        "validation": {"mode": "none"},
        "hyperparameters": {"epochs": 1, "learning_rate": 0.01, "batch_size": 8},
        "acknowledge": True,
    }
    missing = local.call(
        "POST", "/v1/cost-estimates", json={**start, "name": None, "base_checkpoint": "checkpoint-99999"}
    )
    assert missing.status_code == 400, missing.text
    assert "base_checkpoint" in missing.text

    estimate = local.call("POST", "/v1/cost-estimates", json={**start, "name": None})
    assert estimate.status_code == 200, estimate.text
    assert estimate.json()["plan"]["base_checkpoint"] == "checkpoint-4"

    create(local, start)
    done = wait_status(local, child, {"training"})
    assert done["status"] == "not_deployed", done
    assert done["base_checkpoint"] == "checkpoint-4"
    assert done["base_fine_tuned_model"] == parent

    parent_job = job_record(local, parent)["name"]
    record = job_record(local, child)
    started_from = Path(record["started_from"])
    assert (started_from.parent.parent.name, started_from.parent.name, started_from.name) == (
        parent_job,
        "checkpoints",
        "checkpoint-4",
    ), record
    channel = local.data_dir / "jobs" / record["name"] / "input" / "data" / "model"
    assert (channel / "model.safetensors").is_file(), sorted(p.name for p in channel.iterdir())
    assert not (channel / "optimizer.pt").exists()
    print(f"{child} started from {started_from}; its model channel: {sorted(os.listdir(channel))}")


def test_a_new_model_starts_from_a_lora_checkpoint_its_adapter_on_the_base(local: LocalApi) -> None:
    dataset = upload(local, rows=48)
    parent = unique("lora-parent")
    body = quick_job(parent, dataset["id"], epochs=2)
    body["optional_hyperparameters"]["use_lora"] = True
    body["optional_hyperparameters"]["sft_config"].update(
        {"save_strategy": "steps", "save_steps": 4, "save_total_limit": 5}
    )
    create(local, body)
    assert wait_status(local, parent, {"training"})["status"] == "not_deployed"

    child = unique("lora-child")
    create(
        local,
        {
            "name": child,
            "base_fine_tuned_model": parent,
            "base_checkpoint": "checkpoint-4",
            "dataset_id": dataset["id"],
            "validation": {"mode": "none"},
            "hyperparameters": {"epochs": 1, "learning_rate": 0.01, "batch_size": 8},
            "acknowledge": True,
        },
    )
    done = wait_status(local, child, {"training"})
    assert done["status"] == "not_deployed", done
    record = job_record(local, child)
    assert Path(record["started_from"]).name == "checkpoint-4", record
    channel = local.data_dir / "jobs" / record["name"] / "input" / "data" / "model"
    # A LoRA checkpoint holds only the adapter: the trainer applied it to the base model.
    assert (channel / "adapter_config.json").is_file(), sorted(os.listdir(channel))
    assert not (channel / "model.safetensors").exists()
