"""Checkpoints over HTTP in the local runtime: a real tiny-model job that saves every few steps lists
the checkpoints it kept (step, epoch, losses), and one downloads as a .tar.gz of its folder."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import LocalApi
from tests.e2e.jobs import create, quick_job, unique, upload, wait_status


def test_a_jobs_checkpoints_are_listed_and_one_downloads(local: LocalApi, tmp_path: Path) -> None:
    dataset = upload(local, rows=48)
    name = unique("saved")
    body = quick_job(name, dataset["id"], epochs=2)
    body["optional_hyperparameters"]["sft_config"].update(
        {"save_strategy": "steps", "save_steps": 4, "save_total_limit": 3}
    )
    create(local, body)
    model = wait_status(local, name, {"training"})
    assert model["status"] == "not_deployed", model

    answer = local.call("GET", f"/v1/fine-tuned-models/{name}/checkpoints")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    assert items, answer.json()
    steps = [item["step"] for item in items]
    assert steps == sorted(steps)
    assert all(step % 4 == 0 for step in steps[:-1]), steps  # every 4 steps (and the last, at the end)
    for item in items:
        assert item["id"] == f"checkpoint-{item['step']}"
        assert item["epoch"] is not None
        assert item["epoch"] > 0
        assert item["train_loss"] is not None
        assert item["saved_at"]
        assert item["size_bytes"] > 0

    last = items[-1]
    link = local.call("GET", f"/v1/fine-tuned-models/{name}/checkpoints/{last['id']}/download")
    assert link.status_code == 200, link.text
    fetched = httpx.get(link.json()["url"], timeout=120)
    assert fetched.status_code == 200
    assert len(fetched.content) == link.json()["size_bytes"]
    archive = tmp_path / "checkpoint.tar.gz"
    archive.write_bytes(fetched.content)
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()}
    assert "trainer_state.json" in members, members
    assert any(m.endswith(".safetensors") for m in members), members
    # What only a resume reads is gone once the job completed.
    assert "optimizer.pt" not in members

    missing = local.call("GET", f"/v1/fine-tuned-models/{name}/checkpoints/checkpoint-99999/download")
    assert missing.status_code == 404
    print(f"{len(items)} checkpoints: {items}; archive of {last['id']}: {sorted(members)}")
