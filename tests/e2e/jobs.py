"""Helpers of the end-to-end tests that train: small datasets from the sample data, quick jobs on the
tiny local model, waiting for statuses, finding a job's trainer process."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LocalApi
from tunelab.client.demo import sample_rows
from tunelab.local.provider import PROGRESS_PREFIX

TINY = "local.tiny-llama"
_counter = itertools.count(1)
# Training on a shared CPU: the first job also builds the tiny model (tens of seconds when busy).
TRAINING_TIMEOUT_S = 600.0


def unique(prefix: str) -> str:
    return f"{prefix}-{int(time.time()) % 100000}-{next(_counter)}"


def csv_of(rows: list[tuple[str, str]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["prompt", "completion"])
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def upload(local: LocalApi, rows: int = 24, token: str = "") -> dict[str, Any]:
    """A ready dataset of the first `rows` sample rows."""
    answer = local.call(
        "POST",
        "/v1/datasets",
        token=token,
        params={"name": unique("triage")},
        content=csv_of(sample_rows("support-triage.csv")[:rows]),
        headers={"Content-Type": "text/csv"},
    )
    assert answer.status_code == 201, answer.text
    dataset: dict[str, Any] = answer.json()
    assert dataset["status"] == "ready", dataset
    return dataset


def quick_job(name: str, dataset_id: str, *, epochs: int = 1, **extra: Any) -> dict[str, Any]:
    """A request for a job of a few steps on the tiny model."""
    return {
        "name": name,
        "base_model_id": TINY,
        "dataset_id": dataset_id,
        "validation": {"mode": "none"},
        "hyperparameters": {"epochs": epochs, "learning_rate": 0.01, "batch_size": 8},
        # A loss line every 2 steps: a job of a few steps reports its losses too.
        "optional_hyperparameters": {"sft_config": {"logging_strategy": "steps", "logging_steps": 2}},
        "acknowledge": True,
        **extra,
    }


def create(local: LocalApi, body: dict[str, Any], token: str = "") -> dict[str, Any]:
    answer = local.call("POST", "/v1/fine-tuned-models", token=token, json=body)
    assert answer.status_code == 202, answer.text
    created: dict[str, Any] = answer.json()
    assert created["status"] == "training"
    return created


def get(local: LocalApi, name: str, token: str = "") -> dict[str, Any]:
    answer = local.call("GET", f"/v1/fine-tuned-models/{name}", token=token)
    assert answer.status_code == 200, answer.text
    model: dict[str, Any] = answer.json()
    return model


def wait_status(
    local: LocalApi, name: str, leaves: set[str], timeout: float = TRAINING_TIMEOUT_S, token: str = ""
) -> dict[str, Any]:
    """Poll until the model's status is not in `leaves`; the model then."""
    deadline = time.monotonic() + timeout
    while True:
        model = get(local, name, token)
        if model["status"] not in leaves:
            return model
        if time.monotonic() > deadline:
            pytest.fail(f"{name} still {model['status']} after {timeout}s:\n{local.log()[-4000:]}")
        time.sleep(0.5)


def wait_phase(
    local: LocalApi, name: str, starts: str, timeout: float = TRAINING_TIMEOUT_S
) -> dict[str, Any]:
    """Poll until the training phase starts with `starts` (e.g. "Training 1/" once steps run)."""
    deadline = time.monotonic() + timeout
    while True:
        model = get(local, name)
        phase = (model.get("training") or {}).get("phase") or ""
        if phase.startswith(starts) or model["status"] != "training":
            return model
        if time.monotonic() > deadline:
            pytest.fail(f"{name} never reached phase {starts!r} (now {phase!r}):\n{local.log()[-4000:]}")
        time.sleep(0.3)


def job_record(local: LocalApi, name: str) -> dict[str, Any]:
    """The local provider's `job.json` of the model's training job."""
    for path in (local.data_dir / "jobs").glob("*/job.json"):
        record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if record.get("model_name") == name:
            return record
    pytest.fail(f"no local job for {name} under {local.data_dir / 'jobs'}")


def trainer_step(local: LocalApi, name: str) -> int:
    """The step the newest trainer of the model last reported in its log (its progress lines reach
    `trainer.log` as it prints them; `job.json` is written only every few seconds, by which time a
    tiny model may have trained hundreds of steps); 0 before the trainer has started."""
    folders = []
    for path in (local.data_dir / "jobs").glob("*/job.json"):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:  # being written
            continue
        if record.get("model_name") == name:
            folders.append((str(record.get("created_at")), path.parent))
    if not folders:
        return 0
    log = max(folders)[1] / "trainer.log"
    step = 0
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return 0
    for line in text.splitlines():
        _, _, rest = line.partition(" ")
        if rest.startswith(PROGRESS_PREFIX):
            with contextlib.suppress(ValueError, AttributeError):
                step = int(json.loads(rest[len(PROGRESS_PREFIX) :]).get("step") or 0)
    return step


def outbox_messages(local: LocalApi) -> list[Path]:
    return sorted(local.outbox.glob("*.eml")) if local.outbox.is_dir() else []
