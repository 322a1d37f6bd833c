"""The local runtime killed with SIGKILL at the worst moments, then started again on the same data dir.

Each case drives `tunelab local up` over HTTP (its own process, the tiny model), kills it with SIGKILL
— a fault injected through the runtime, nothing of tunelab patched — and starts it again, then checks
what a user would: everything the API acknowledged is there, every record rests in a status consistent
with the provider, nothing is left at the provider without a record, and each finished job or
deployment sent its email exactly once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e import jobs
from tests.e2e.conftest import LocalApi, api_of, start_runtime, wait_for
from tests.faults.tally import Tally
from tunelab.client.demo import sample_rows

pytestmark = [pytest.mark.xdist_group("restart"), pytest.mark.slow]

TRANSIENT = {"training", "stopping_training", "deploying"}
SETTLE_TIMEOUT_S = 300.0


class Restartable:
    """One data dir, run by a `tunelab local up` process at a time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.runs = 0
        self.api: LocalApi | None = None

    def up(self) -> LocalApi:
        self.runs += 1
        self.api = api_of(start_runtime(self.data_dir, self.root / f"runtime-{self.runs}.log"))
        return self.api

    def kill(self) -> None:
        """SIGKILL the runtime (no handler runs, nothing is flushed), and wait until the trainers it
        started have ended (they are told by the kernel and save a checkpoint)."""
        assert self.api is not None
        pids = [
            record["pid"]
            for path in (self.data_dir / "jobs").glob("*/job.json")
            if (record := json.loads(path.read_text(encoding="utf-8"))).get("pid")
        ]
        self.api.runtime.process.send_signal(signal.SIGKILL)
        self.api.runtime.process.wait(30)
        self.api.http.close()
        for pid in pids:
            wait_for(partial(_ended, pid), timeout=60, what=f"trainer {pid} to end")
        self.api = None

    def down(self) -> None:
        if self.api is not None:
            self.api.runtime.interrupt()
            self.api.http.close()
            self.api = None


def _ended(pid: int) -> bool:
    return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Restartable]:
    restartable = Restartable(tmp_path)
    try:
        yield restartable
    finally:
        if restartable.api is not None:
            # Whatever the test left running stops with the runtime.
            restartable.down()


def subjects(local: LocalApi) -> list[str]:
    return [
        str(message_from_bytes(path.read_bytes()).get("Subject", "")) for path in jobs.outbox_messages(local)
    ]


def emails_about(local: LocalApi, name: str, *words: str) -> int:
    return sum(
        1 for subject in subjects(local) if f" {name} " in f" {subject} " and all(w in subject for w in words)
    )


def models(local: LocalApi) -> list[dict[str, Any]]:
    answer = local.call("GET", "/v1/fine-tuned-models", params={"limit": 100})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def datasets(local: LocalApi) -> list[dict[str, Any]]:
    answer = local.call("GET", "/v1/datasets", params={"limit": 100})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def wait_resting(local: LocalApi, timeout: float = SETTLE_TIMEOUT_S) -> list[dict[str, Any]]:
    def resting() -> list[dict[str, Any]] | None:
        found = models(local)
        return found if not any(m["status"] in TRANSIENT for m in found) else None

    try:
        result: list[dict[str, Any]] = wait_for(resting, timeout=timeout, what="every model to rest")
    except BaseException:
        print(local.log()[-6000:])
        raise
    return result


@pytest.mark.heavy  # about 50 s: `make faults` runs it, `make test` leaves it out (CI's time)
def test_a_kill_mid_training_loses_nothing_acknowledged_and_the_job_resumes_from_its_checkpoint(
    runtime: Restartable, tally: Tally
) -> None:
    local = runtime.up()
    kept = jobs.upload(local, rows=48)
    other = jobs.upload(local, rows=384)
    # 2,400 steps that are never run to the end, then 300: both still train when killed. The long job
    # starts first, so the short one is killed a few steps in however slowly the machine starts a
    # trainer (started together, the short one could finish while the other one loaded).
    jobs.create(local, jobs.quick_job("stopping", other["id"], epochs=50))
    wait_for(
        lambda: jobs.trainer_step(local, "stopping") >= 2,
        timeout=jobs.TRAINING_TIMEOUT_S,
        what="steps to run",
    )
    jobs.create(local, jobs.quick_job("resumes", kept["id"], epochs=50))
    wait_for(
        lambda: jobs.trainer_step(local, "resumes") >= 4, timeout=jobs.TRAINING_TIMEOUT_S, what="steps to run"
    )
    stop = local.call("POST", "/v1/fine-tuned-models/stopping/stop")
    assert stop.status_code == 202, stop.text
    assert jobs.trainer_step(local, "resumes") < 300, (
        "the job ended before the runtime was killed: nothing to resume"
    )
    acknowledged = {"datasets": {kept["id"], other["id"]}, "models": {"resumes", "stopping"}}
    runtime.kill()
    tally.injected("runtime sigkill mid-training")
    tally.injected("runtime sigkill while stopping")

    local = runtime.up()
    # What the API acknowledged is there at once, before anything settles.
    assert {d["id"] for d in datasets(local)} == acknowledged["datasets"]
    assert {m["name"] for m in models(local)} == acknowledged["models"]
    settled = {m["name"]: m for m in wait_resting(local)}

    resumed = jobs.get(local, "resumes")
    assert settled["resumes"]["status"] == "not_deployed", resumed
    assert settled["stopping"]["status"] == "training_stopped", jobs.get(local, "stopping")
    record = jobs.job_record(local, "resumes")
    # It went on from the checkpoint the trainer saved when the kernel told it the runtime had died.
    assert record["resumed"] == 1, record
    assert record["resumed_from"], record
    assert record["metrics"]["step"] == 300
    log = (runtime.data_dir / "jobs" / record["name"] / "trainer.log").read_text(encoding="utf-8")
    assert f"resuming from checkpoint {record['resumed_from']}" in log
    assert resumed["training"]["metrics"]["step"] == 300
    # Every model rests; each finished job told its creator once.
    completed = emails_about(local, "resumes", "training completed")
    stopped = emails_about(local, "stopping", "stopped")
    lost = len(acknowledged["datasets"] - {d["id"] for d in datasets(local)}) + len(
        acknowledged["models"] - set(settled)
    )
    transient = sum(1 for m in settled.values() if m["status"] in TRANSIENT)
    running_jobs = [
        path.parent.name
        for path in (runtime.data_dir / "jobs").glob("*/job.json")
        if json.loads(path.read_text(encoding="utf-8"))["status"] in ("InProgress", "Stopping")
    ]
    tally.outcome(
        transient=transient,
        lost=lost,
        orphaned=len(running_jobs),
        duplicate_emails=max(completed - 1, 0) + max(stopped - 1, 0),
        missing_emails=int(completed == 0) + int(stopped == 0),
    )
    assert (transient, lost, running_jobs) == (0, 0, [])
    assert (completed, stopped) == (1, 1), subjects(local)
    runtime.down()


def _deploy(local: LocalApi, name: str, **body: Any) -> None:
    answer = local.call("POST", f"/v1/fine-tuned-models/{name}/deploy", json=body)
    assert answer.status_code == 202, answer.text


def _move_undeploy_schedule(local: LocalApi, model: str, *, seconds: int) -> datetime:
    """Move the model's auto-undeploy schedule (through the runtime's AWS endpoint) to `seconds` from now."""
    scheduler = local.client("scheduler")
    group = "tunelab-auto-undeploy"
    names = [s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"] if model in s["Name"]]
    name = next(n for n in names if n.endswith("undeploy"))
    schedule = scheduler.get_schedule(Name=name, GroupName=group)
    due = (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)
    scheduler.update_schedule(
        Name=name,
        GroupName=group,
        ScheduleExpression=f"at({due:%Y-%m-%dT%H:%M:%S})",
        ScheduleExpressionTimezone="UTC",
        FlexibleTimeWindow=schedule["FlexibleTimeWindow"],
        Target=schedule["Target"],
        ActionAfterCompletion=schedule.get("ActionAfterCompletion", "NONE"),
    )
    return due


def _answered(local: LocalApi, name: str) -> httpx.Response | None:
    answer = _invoke(local, name)
    return answer if answer.status_code == 200 else None


def _invoke(local: LocalApi, name: str) -> httpx.Response:
    return local.call(
        "POST", f"/v1/fine-tuned-models/{name}/invoke", json={"prompt": "hello", "max_tokens": 4}
    )


@pytest.mark.heavy  # about 55 s: `make faults` runs it, `make test` leaves it out (CI's time)
def test_a_kill_mid_deploy_redeploys_served_models_come_back_and_a_missed_auto_undeploy_fires(
    runtime: Restartable, tally: Tally
) -> None:
    local = runtime.up()
    dataset = jobs.upload(local, rows=16)
    names = ("expires", "served", "deploying")
    for name in names:
        jobs.create(local, jobs.quick_job(name, dataset["id"]))
    for name in names:
        assert jobs.wait_status(local, name, {"training"})["status"] == "not_deployed"
    _deploy(local, "expires", auto_undeploy={"after_hours": 0.1})
    _deploy(local, "served")
    for name in ("expires", "served"):
        assert jobs.wait_status(local, name, {"deploying"})["status"] == "deployed"
    assert _invoke(local, "served").status_code == 200
    # The operator moves the auto-undeploy to 8 s from now (the API allows 5 minutes at the least):
    # that time passes while the runtime is down.
    due = _move_undeploy_schedule(local, "expires", seconds=8)
    _deploy(local, "deploying")
    runtime.kill()
    tally.injected("runtime sigkill mid-deploy")
    tally.injected("runtime sigkill while deployed", 2)
    tally.injected("auto-undeploy missed while down")
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds() + 1))

    local = runtime.up()
    settled = {m["name"]: m for m in wait_resting(local)}
    # The missed auto-undeploy fired at start; the served model is served again; the interrupted
    # deployment ran again to the end.
    wait_for(
        lambda: jobs.get(local, "expires")["status"] == "not_deployed",
        timeout=60,
        what="the missed auto-undeploy",
    )
    assert settled["served"]["status"] == "deployed"
    assert settled["deploying"]["status"] == "deployed", jobs.get(local, "deploying")
    for name in ("served", "deploying"):
        answer = wait_for(partial(_answered, local, name), timeout=120, what=f"{name} to answer")
        assert answer.json()["completion"] is not None
    deployed_emails = Counter(
        name for name in names for subject in subjects(local) if subject == f"[tunelab] {name} is deployed"
    )
    undeployed = emails_about(local, "expires", "was undeployed")
    assert deployed_emails == {"expires": 1, "served": 1, "deploying": 1}, subjects(local)
    assert undeployed == 1, subjects(local)

    # Nothing left behind once they are undeployed and deleted.
    for name in ("served", "deploying"):
        assert local.call("POST", f"/v1/fine-tuned-models/{name}/undeploy").status_code == 202
        assert jobs.wait_status(local, name, {"deployed", "deploying"})["status"] == "not_deployed"
    for name in names:
        deleted = local.call("DELETE", f"/v1/fine-tuned-models/{name}", params={"acknowledge": "true"})
        assert deleted.status_code in (200, 202, 204), deleted.text
    schedules = local.client("scheduler").list_schedules(GroupName="tunelab-auto-undeploy")["Schedules"]
    leftovers = [p.name for p in (runtime.data_dir / "deployments").glob("*")] + [
        s["Name"] for s in schedules
    ]
    tally.outcome(
        transient=sum(1 for m in settled.values() if m["status"] in TRANSIENT),
        orphaned=len(leftovers),
        duplicate_emails=sum(max(count - 1, 0) for count in deployed_emails.values())
        + max(undeployed - 1, 0),
        missing_emails=sum(1 for name in names if deployed_emails[name] == 0) + int(undeployed == 0),
    )
    assert leftovers == []
    runtime.down()


def test_a_kill_mid_upload_keeps_the_acknowledged_dataset_and_validates_it_at_start(
    runtime: Restartable, tally: Tally
) -> None:
    local = runtime.up()
    created = local.call("POST", "/v1/datasets", json={"name": "presigned"})
    assert created.status_code == 201, created.text
    dataset, upload = created.json()["dataset"], created.json()["upload"]
    body = jobs.csv_of(sample_rows("support-triage.csv")[:40])
    # The file reaches S3 (its PUT is answered), and the runtime dies before — or while — the upload's
    # event is delivered and the dataset validated.
    stored = httpx.put(upload["url"], content=body, headers=upload["headers"], timeout=30)
    assert stored.status_code == 200, stored.text
    runtime.kill()
    tally.injected("runtime sigkill mid-upload")

    # A second upload cut off mid-body: never acknowledged, so it may be gone; the dataset stays.
    local = runtime.up()
    second = local.call("POST", "/v1/datasets", json={"name": "cut-off"}).json()
    second_id = second["dataset"]["id"]
    stop_sending = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield body[:100]
        stop_sending.wait(30)
        yield body[100:]

    sender = threading.Thread(
        target=lambda: _quietly(
            lambda: httpx.put(
                second["upload"]["url"],
                content=slow_body(),
                headers={**second["upload"]["headers"], "Content-Length": str(len(body))},
                timeout=30,
            )
        ),
        daemon=True,
    )
    sender.start()
    time.sleep(1.0)
    runtime.kill()
    stop_sending.set()
    sender.join(30)
    tally.injected("runtime sigkill mid-upload body")

    local = runtime.up()
    # The start says what it restored; what it keeps is its owner's only.
    assert "restored:" in local.log()
    assert os.stat(runtime.data_dir / "state").st_mode & 0o077 == 0
    ready = wait_for(
        lambda: (d := local.call("GET", f"/v1/datasets/{dataset['id']}").json())["status"] == "ready" and d,
        timeout=60,
        what="the uploaded dataset to be validated after the restart",
    )
    assert ready["rows"] == 40
    cut = local.call("GET", f"/v1/datasets/{second_id}").json()
    # Its file never arrived: it waits for one (a new run's credentials: a new upload replaces it).
    assert cut["status"] == "uploading", cut
    listed = [d["id"] for d in datasets(local)]
    tally.outcome(
        transient=sum(1 for d in datasets(local) if d["status"] == "validating"),
        lost=len({dataset["id"], second_id} - set(listed)),
    )
    assert sorted(listed) == sorted([dataset["id"], second_id])
    assert local.call("DELETE", f"/v1/datasets/{second_id}").status_code in (200, 202, 204)
    runtime.down()


def _quietly(call: Any) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the runtime died under it
        call()
