"""A trainer killed mid-step, on the local runtime over HTTP: the fault is a signal sent to the trainer
subprocess (its pid is in `<data dir>/jobs/<job>/job.json`), as the kernel's OOM killer or an operator
would send it — nothing of tunelab is patched.

* Killed while it trains: the model ends `training_failed`, saying the trainer was killed by a signal.
* Killed while a stop was asked for: the trainer is frozen (SIGSTOP) so that it cannot save, the stop
  is asked for over the API, then the trainer is killed (SIGKILL): the model ends `training_stopped`.

In both, once things settle: no record transient, the job folder ended with the kill's exit code and
no pid, no trainer process (nor child of it) left, and exactly one training email for the model.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.e2e.conftest import LocalApi, running_runtime, wait_for
from tests.e2e.jobs import create, get, job_record, quick_job, unique, upload, wait_status
from tests.faults.load import RESTING, list_everything, training_emails
from tests.faults.tally import Tally

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.slow]

TRAINING = {"training", "stopping_training"}
# The first job of a data dir also builds the tiny model; a busy 2-core machine is slow at it.
MID_TRAINING_TIMEOUT_S = 300.0
SETTLE_TIMEOUT_S = 120.0
EMAIL_TIMEOUT_S = 30.0
# After the first email, how long a second one is given to show up before it is counted as absent.
DUPLICATE_GRACE_S = 3.0
_PHASE = re.compile(r"^Training (\d+)/(\d+) steps")


@pytest.fixture(scope="module")
def runtime_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalApi]:
    """A runtime of this module's own (its own data dir, so its job folders and outbox are these cases')."""
    with running_runtime(tmp_path_factory.mktemp("faults-runtime")) as api:
        yield api


def _mid_training(local: LocalApi, name: str) -> dict[str, Any]:
    """Poll until the model's phase says training has run at least one step ("Training 3/1250 steps")."""
    deadline = time.monotonic() + MID_TRAINING_TIMEOUT_S
    while True:
        model = get(local, name)
        match = _PHASE.match((model.get("training") or {}).get("phase") or "")
        if match and int(match.group(1)) > 0:
            return model
        if model["status"] != "training":
            pytest.fail(f"{name} ended before it trained: {model}")
        if time.monotonic() > deadline:
            pytest.fail(f"{name} never trained a step:\n{local.log()[-4000:]}")
        time.sleep(0.3)


def _trainer(local: LocalApi, name: str) -> tuple[psutil.Process, list[psutil.Process]]:
    """The model's trainer process (checked to be `train.py` of its job) and its children."""
    pid = wait_for(lambda: job_record(local, name).get("pid"), timeout=60, what="the trainer's pid")
    process = psutil.Process(pid)
    assert any(part.endswith("train.py") for part in process.cmdline()), process.cmdline()
    return process, process.children(recursive=True)


def _job_folder(local: LocalApi, name: str) -> Path:
    record = job_record(local, name)
    return local.data_dir / "jobs" / str(record["name"])


@dataclass
class Settled:
    model: dict[str, Any]
    job: dict[str, Any]
    emails: int
    listed: int
    left_running: list[int]
    status_changes: list[str]


def _settle(local: LocalApi, name: str, processes: list[psutil.Process]) -> Settled:
    """Wait for the model to leave training and for its email; what there is then."""
    wait_status(local, name, TRAINING, timeout=SETTLE_TIMEOUT_S)
    # The job's thread ends the job's record once the trainer has exited.
    wait_for(
        lambda: job_record(local, name).get("status") in ("Failed", "Stopped", "Completed"),
        timeout=30,
        what="the job's record to end",
    )
    deadline = time.monotonic() + EMAIL_TIMEOUT_S
    while not training_emails(local.outbox, name) and time.monotonic() < deadline:
        time.sleep(0.3)
    time.sleep(DUPLICATE_GRACE_S)
    events = local.call("GET", f"/v1/fine-tuned-models/{name}/events", params={"limit": 100}).json()
    models = list_everything(local.http, local.token(), "fine-tuned-models")
    return Settled(
        model=get(local, name),
        job=job_record(local, name),
        emails=len(training_emails(local.outbox, name)),
        listed=sum(1 for m in models if m["name"] == name),
        left_running=[p.pid for p in processes if _alive(p)],
        status_changes=[e["status"] for e in events["items"] if e["type"] == "status_changed"],
    )


def _alive(process: psutil.Process) -> bool:
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _record(tally: Tally, settled: Settled) -> None:
    tally.outcome(
        transient=0 if settled.model["status"] in RESTING and settled.job["pid"] is None else 1,
        lost=1 - min(settled.listed, 1),
        orphaned=len(settled.left_running),
        duplicate_emails=max(settled.emails - 1, 0),
        missing_emails=1 if settled.emails == 0 else 0,
    )


def test_a_trainer_killed_mid_step_fails_the_model_saying_so(runtime_api: LocalApi, tally: Tally) -> None:
    local = runtime_api
    dataset = upload(local, rows=200)
    name = unique("killed")
    create(local, quick_job(name, dataset["id"], epochs=50))  # 1250 steps: minutes of training
    _mid_training(local, name)
    trainer, children = _trainer(local, name)

    os.kill(trainer.pid, signal.SIGKILL)  # as the kernel's OOM killer would
    tally.injected("trainer killed mid-step")

    settled = _settle(local, name, [trainer, *children])
    _record(tally, settled)
    model, job = settled.model, settled.job
    assert model["status"] == "training_failed", model
    reason = model["training"]["failure_reason"]
    assert "killed by signal 9 (SIGKILL)" in reason, reason
    assert job["failure_reason"] == reason
    assert settled.status_changes.count("training_failed") == 1, settled.status_changes
    assert settled.status_changes[-1] == "training_failed", settled.status_changes
    # The job folder: ended by the kill, no pid, nothing uploaded, the trainer's log kept.
    assert (job["status"], job["secondary"], job["exit_code"], job["pid"]) == ("Failed", "Failed", -9, None)
    assert job["ended_at"] is not None
    assert job["artifacts_uri"] is None
    folder = _job_folder(local, name)
    assert (folder / "trainer.log").stat().st_size > 0
    assert not (folder / "output" / "model.tar.gz").exists()
    assert json.loads((folder / "request.json").read_text(encoding="utf-8"))["identity"]["model_name"] == name
    assert settled.left_running == []
    assert (settled.emails, settled.listed) == (1, 1)


def test_a_trainer_killed_while_stopping_ends_the_model_stopped(runtime_api: LocalApi, tally: Tally) -> None:
    local = runtime_api
    dataset = upload(local, rows=200)
    name = unique("killed-stopping")
    create(local, quick_job(name, dataset["id"], epochs=50))
    _mid_training(local, name)
    trainer, children = _trainer(local, name)

    # Frozen, the trainer cannot act on the stop's SIGTERM (it stays pending): the kill lands while
    # the stop is asked for, before the trainer saved anything.
    trainer.suspend()
    try:
        stopping = local.call("POST", f"/v1/fine-tuned-models/{name}/stop")
        assert stopping.status_code == 202, stopping.text
        assert stopping.json()["status"] == "stopping_training"
        wait_for(lambda: job_record(local, name).get("stop_requested"), timeout=30, what="the stop")
    finally:
        os.kill(trainer.pid, signal.SIGKILL)
    tally.injected("trainer killed while stopping")

    settled = _settle(local, name, [trainer, *children])
    _record(tally, settled)
    model, job = settled.model, settled.job
    assert model["status"] == "training_stopped", model
    assert settled.status_changes[-2:] == ["stopping_training", "training_stopped"], settled.status_changes
    assert (job["status"], job["exit_code"], job["pid"]) == ("Stopped", -9, None)
    assert job["ended_at"] is not None
    assert settled.left_running == []
    assert (settled.emails, settled.listed) == (1, 1)
