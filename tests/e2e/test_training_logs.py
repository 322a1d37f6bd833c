"""The training log over HTTP in the local runtime: a real tiny-model job's trainer lines (steps and
losses), read while it trains and after, each line once, with its time."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from tests.e2e.conftest import LocalApi
from tests.e2e.jobs import TRAINING_TIMEOUT_S, create, get, quick_job, unique, upload, wait_phase


def _page(local: LocalApi, name: str, token: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": 20}
    if token:
        params["next_token"] = token
    answer = local.call("GET", f"/v1/fine-tuned-models/{name}/logs", params=params)
    assert answer.status_code == 200, answer.text
    page: dict[str, Any] = answer.json()
    return page


def test_a_jobs_log_is_read_while_it_trains_and_after(local: LocalApi) -> None:
    dataset = upload(local, rows=48)
    name = unique("logged")
    create(local, quick_job(name, dataset["id"], epochs=4))
    wait_phase(local, name, "Training")

    lines: list[dict[str, Any]] = []
    token: str | None = None
    read_while_training = 0
    deadline = time.monotonic() + TRAINING_TIMEOUT_S
    while time.monotonic() < deadline:
        training = get(local, name)["status"] == "training"
        page = _page(local, name, token)
        lines += page["items"]
        if training:
            read_while_training = len(lines)
        if page["next_token"] is None and token is not None:
            break
        token = page["next_token"] or token
        if not page["items"]:
            time.sleep(0.5)
    model = get(local, name)
    assert model["status"] == "not_deployed", model

    messages = [line["message"] for line in lines]
    # The trainer's loss lines, as it printed them, each once.
    losses = [m for m in messages if m.startswith("train_loss=")]
    assert losses, messages[-20:]
    assert len(set(losses)) == len(losses)
    times = [datetime.fromisoformat(line["at"].replace("Z", "+00:00")) for line in lines]
    assert times == sorted(times)
    # The log file holds exactly what was read, no line twice, none left out.
    log = next((local.data_dir / "jobs").glob(f"{name}-*/trainer.log")).read_text(encoding="utf-8")
    assert len(lines) == log.count("\n")
    assert read_while_training > 0, "no line was read while the job trained"
    # After the end: the whole log again from the start, and the last page has no token.
    again: list[dict[str, Any]] = []
    token = None
    while True:
        page = _page(local, name, token)
        again += page["items"]
        token = page["next_token"]
        if token is None:
            break
    assert again == lines
    print(f"{len(lines)} lines, {read_while_training} read while training; e.g.:")
    for line in [lines[0], *[x for x in lines if x["message"].startswith("train_loss=")][:3]]:
        print(f"  {line['at']} {line['message']}")
