"""A load test of the local runtime's API: N concurrent clients for a bounded time, then a check that
every resource they created is listed exactly once.

Each client is a thread with its own `httpx.Client` and, by default, its own workspace (client i uses
`ws-load-<run>-<i>`: a workspace may send 1200 requests a minute, and one per client keeps the
figures free of 429s; `--workspaces K` makes the clients share K workspaces instead). In a loop until
the time is up, a client:

1. creates a dataset: `POST /v1/datasets?name=` with a 16-row CSV of the shipped sample data (the
   upload is validated before the answer; a dataset still `validating` is read until it is `ready`);
2. while it has created fewer than `--models-per-client` models, fine-tunes one on that dataset
   (`local.tiny-llama`, 1 epoch, batch 8, no validation, the cost acknowledged) and stops it at once
   (`POST .../stop`): a model starts a real trainer subprocess, and a handful of them would drown a
   2-core machine;
3. lists its workspace's datasets and models, every page (`--page-size` items a page), checking that
   no page repeats an item of an earlier page of the same listing;
4. reads one of its datasets and one of its models by id / name.

Every request's latency, status and error code are recorded by operation. Afterwards every created
model is waited for until it rests (`training_stopped`, `training_failed` or `not_deployed`: no
trainer left running), the runtime's job folders are checked (every `job.json` ended, no pid) and,
when the outbox is on this machine, every model's training email is counted (exactly one each);
then each workspace is listed once more, and every dataset and model a client was told it created
must be there exactly once (none missing, none twice, none unknown). A "stop race" fails the run: a
model stopped through the API that ended `training_stopped` although the stop answered 409, or with
the reason "stopped outside tunelab" (the stop records `stopping_training` before it asks the provider,
so a job that stops at once is still the user's stop).

By hand, against a runtime this starts in a temporary data dir (and stops at the end):

    .venv/bin/python -m tests.faults.load --clients 8 --seconds 60

or against a running one (`--data-dir` mints a token per workspace; `--token` gives them instead,
one workspace per token, and without the data dir the job folders and the outbox are not checked):

    .venv/bin/python -m tests.faults.load --api-url http://127.0.0.1:8642 --data-dir ~/.tunelab/local

The exit status is 0 when nothing but the expected 4xx answers came back and every resource is listed
exactly once. `--json FILE` writes the figures as JSON too.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import itertools
import json
import math
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx

TINY = "local.tiny-llama"
SAMPLE = "support-triage.csv"
RESTING = frozenset({"training_stopped", "training_failed", "not_deployed"})
# 4xx answers a client of this load can get without anything being wrong, and why.
EXPECTED_4XX: dict[tuple[str, int, str], str] = {
    ("stop_model", 409, "invalid_state"): "the model's training ended before the stop was recorded "
    "(one that then ends training_stopped is a 'stop race', a failure)",
}
# The reason tunelab records when a job stopped although nobody asked tunelab to stop it.
STOPPED_OUTSIDE = "stopped outside tunelab"
EXPECTED_ANY_OP_4XX: dict[tuple[int, str], str] = {
    (429, "throttled"): "a shared workspace over its 1200 requests a minute",
}
REQUEST_TIMEOUT_S = 60.0
SETTLE_TIMEOUT_S = 120.0
EMAIL_TIMEOUT_S = 30.0


# --- what was measured -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    op: str
    status: int  # 0: no answer (a transport error)
    latency_s: float
    code: str  # the error body's code, the exception's name, or ""
    at: float  # seconds since the load started


class Recorder:
    """Every request's outcome, from every client thread."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.failures: list[str] = []  # non-4xx errors and checks that failed during the load, described
        self.client_error_texts: dict[tuple[str, int, str], list[str]] = defaultdict(list)  # 2 a kind
        self._lock = threading.Lock()
        self.started = time.monotonic()

    def add(self, sample: Sample, detail: str = "") -> None:
        with self._lock:
            self.samples.append(sample)
            if sample.status == 0 or sample.status >= 500 or sample.status < 200:
                self.failures.append(f"{sample.op}: {sample.status} {sample.code} {detail}"[:500])
            elif sample.status >= 400:
                texts = self.client_error_texts[(sample.op, sample.status, sample.code)]
                if len(texts) < 2:
                    texts.append(detail[:400])

    def problem(self, text: str) -> None:
        with self._lock:
            self.failures.append(text[:500])


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile `p` (0-100) of `values`; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


# --- one client ------------------------------------------------------------------------------------------


def sample_csv(rows: int, salt: str) -> bytes:
    """`rows` rows of the shipped sample data, the last prompt salted so each upload differs."""
    from tunelab.client.demo import sample_rows  # noqa: PLC0415  # the package is on the path here

    chosen = list(sample_rows(SAMPLE)[:rows])
    prompt, completion = chosen[-1]
    chosen[-1] = (f"{prompt} ({salt})", completion)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["prompt", "completion"])
    writer.writerows(chosen)
    return buffer.getvalue().encode("utf-8")


@dataclass
class Workspace:
    label: str
    token: str
    email: str = ""
    datasets: set[str] = field(default_factory=set)  # ids whose create answered 201
    models: set[str] = field(default_factory=set)  # names whose create answered 202
    stop_answers: dict[str, int] = field(default_factory=dict)  # model name: the stop's HTTP status
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class LoadConfig:
    clients: int = 8
    seconds: float = 20.0
    models_per_client: int = 1
    workspaces: int | None = None  # None: one per client
    rows: int = 16
    page_size: int = 10


class Client(threading.Thread):
    def __init__(
        self,
        index: int,
        api_url: str,
        workspace: Workspace,
        config: LoadConfig,
        recorder: Recorder,
        deadline: float,
        run_id: str,
    ) -> None:
        super().__init__(name=f"load-client-{index}", daemon=True)
        self.index = index
        self.api_url = api_url
        self.workspace = workspace
        self.config = config
        self.recorder = recorder
        self.deadline = deadline
        self.run_id = run_id
        self.counter = itertools.count(1)
        self.datasets: list[str] = []
        self.models: list[str] = []
        self.random = random.Random(index)  # choosing what to read, not security

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.workspace.token}"}
        with httpx.Client(base_url=self.api_url, headers=headers, timeout=REQUEST_TIMEOUT_S) as http:
            while time.monotonic() < self.deadline:
                try:
                    self.iteration(http)
                except Exception as error:  # a client never dies silently: the report says why
                    self.recorder.problem(f"client {self.index}: {type(error).__name__}: {error}")
                    time.sleep(0.2)

    def call(
        self, http: httpx.Client, op: str, method: str, path: str, **options: Any
    ) -> httpx.Response | None:
        started = time.monotonic()
        try:
            answer = http.request(method, path, **options)
        except httpx.HTTPError as error:
            self.recorder.add(
                Sample(
                    op, 0, time.monotonic() - started, type(error).__name__, started - self.recorder.started
                ),
                f"{method} {path}: {error}",
            )
            return None
        elapsed = time.monotonic() - started
        code = ""
        if answer.status_code >= 400:
            try:
                code = str(answer.json()["error"]["code"])
            except (ValueError, KeyError, TypeError):
                code = "(no error body)"
        self.recorder.add(
            Sample(op, answer.status_code, elapsed, code, started - self.recorder.started),
            f"{method} {path}: {answer.text[:300]}",
        )
        return answer

    def iteration(self, http: httpx.Client) -> None:
        dataset_id = self.create_dataset(http)
        if time.monotonic() >= self.deadline:
            return
        if dataset_id is not None and len(self.models) < self.config.models_per_client:
            self.create_and_stop_model(http, dataset_id)
        for kind in ("datasets", "fine-tuned-models"):
            if time.monotonic() >= self.deadline:
                return
            self.list_all(http, kind)
        if self.datasets:
            self.call(http, "get_dataset", "GET", f"/v1/datasets/{self.random.choice(self.datasets)}")
        if self.models:
            self.call(http, "get_model", "GET", f"/v1/fine-tuned-models/{self.random.choice(self.models)}")

    def create_dataset(self, http: httpx.Client) -> str | None:
        name = f"load-{self.run_id}-c{self.index}-d{next(self.counter)}"
        answer = self.call(
            http,
            "create_dataset",
            "POST",
            "/v1/datasets",
            params={"name": name},
            content=sample_csv(self.config.rows, name),
            headers={"Content-Type": "text/csv"},
        )
        if answer is None or answer.status_code != 201:
            return None
        dataset = answer.json()
        dataset_id = str(dataset["id"])
        with self.workspace.lock:
            self.workspace.datasets.add(dataset_id)
        self.datasets.append(dataset_id)
        # A CSV in the body is validated before the answer; wait for a dataset still validating.
        status = dataset.get("status")
        while status == "validating" and time.monotonic() < self.deadline + 30:
            time.sleep(0.2)
            read = self.call(http, "get_dataset", "GET", f"/v1/datasets/{dataset_id}")
            status = read.json().get("status") if read is not None and read.status_code == 200 else status
        if status != "ready":
            self.recorder.problem(f"dataset {dataset_id} ({name}) is {status}, not ready")
            return None
        return dataset_id

    def create_and_stop_model(self, http: httpx.Client, dataset_id: str) -> None:
        name = f"load-{self.run_id}-c{self.index}-m{len(self.models) + 1}"
        body = {
            "name": name,
            "base_model_id": TINY,
            "dataset_id": dataset_id,
            "validation": {"mode": "none"},
            "hyperparameters": {"epochs": 1, "learning_rate": 0.01, "batch_size": 8},
            "acknowledge": True,
        }
        answer = self.call(http, "create_model", "POST", "/v1/fine-tuned-models", json=body)
        if answer is None or answer.status_code != 202:
            # Counted against the limit all the same: a client never starts more trainers than that.
            self.models.append(name)
            return
        with self.workspace.lock:
            self.workspace.models.add(name)
        self.models.append(name)
        stopped = self.call(http, "stop_model", "POST", f"/v1/fine-tuned-models/{name}/stop")
        with self.workspace.lock:
            self.workspace.stop_answers[name] = 0 if stopped is None else stopped.status_code

    def list_all(self, http: httpx.Client, kind: str) -> None:
        op = "list_datasets" if kind == "datasets" else "list_models"
        key = "id" if kind == "datasets" else "name"
        seen: Counter[str] = Counter()
        token: str | None = None
        while True:
            params: dict[str, Any] = {"limit": self.config.page_size}
            if token:
                params["next_token"] = token
            answer = self.call(http, op, "GET", f"/v1/{kind}", params=params)
            if answer is None or answer.status_code != 200:
                return
            page = answer.json()
            seen.update(str(item[key]) for item in page["items"])
            token = page.get("next_token")
            if not token:
                break
        repeated = sorted(k for k, n in seen.items() if n > 1)
        if repeated:
            self.recorder.problem(f"client {self.index}: one listing of {kind} repeated {repeated}")


# --- after the load ----------------------------------------------------------------------------------------


def list_everything(http: httpx.Client, token: str, kind: str, page_size: int = 100) -> list[dict[str, Any]]:
    """Every item of one workspace's `/v1/<kind>`, page after page (raises on anything but 200)."""
    items: list[dict[str, Any]] = []
    next_token: str | None = None
    while True:
        params: dict[str, Any] = {"limit": page_size}
        if next_token:
            params["next_token"] = next_token
        answer = http.get(f"/v1/{kind}", params=params, headers={"Authorization": f"Bearer {token}"})
        answer.raise_for_status()
        page = answer.json()
        items += page["items"]
        next_token = page.get("next_token")
        if not next_token:
            return items


@dataclass
class ListingCheck:
    workspace: str
    kind: str
    created: int
    listed: int
    missing: list[str]
    duplicated: list[str]
    unknown: list[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicated or self.unknown)


def check_listings(http: httpx.Client, workspaces: Sequence[Workspace]) -> list[ListingCheck]:
    checks = []
    for workspace in workspaces:
        for kind, key, created in (
            ("datasets", "id", workspace.datasets),
            ("fine-tuned-models", "name", workspace.models),
        ):
            listed = Counter(str(item[key]) for item in list_everything(http, workspace.token, kind))
            checks.append(
                ListingCheck(
                    workspace=workspace.label,
                    kind=kind,
                    created=len(created),
                    listed=sum(listed.values()),
                    missing=sorted(created - set(listed)),
                    duplicated=sorted(k for k, n in listed.items() if n > 1),
                    unknown=sorted(set(listed) - created),
                )
            )
    return checks


def wait_until_resting(
    http: httpx.Client,
    workspaces: Sequence[Workspace],
    timeout: float = SETTLE_TIMEOUT_S,
    reasons: dict[str, str] | None = None,
) -> dict[str, str]:
    """Each created model's status once it rests (or as it was when `timeout` ran out); `reasons`
    gets each model's training reason (`training.failure_reason`)."""
    pending = {(w.label, name): w for w in workspaces for name in w.models}
    statuses: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while pending:
        for (label, name), workspace in list(pending.items()):
            answer = http.get(
                f"/v1/fine-tuned-models/{name}", headers={"Authorization": f"Bearer {workspace.token}"}
            )
            status = (
                answer.json().get("status", f"HTTP {answer.status_code}")
                if answer.is_success
                else (f"HTTP {answer.status_code}")
            )
            statuses[f"{label}/{name}"] = status
            if reasons is not None and answer.is_success:
                reasons[f"{label}/{name}"] = str((answer.json().get("training") or {}).get("failure_reason"))
            if status in RESTING:
                del pending[(label, name)]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return statuses


def unfinished_jobs(data_dir: Path) -> list[str]:
    """Job folders whose `job.json` has not ended, or still names a trainer pid."""
    left = []
    for path in sorted((data_dir / "jobs").glob("*/job.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("status") not in ("Completed", "Failed", "Stopped") or record.get("pid") is not None:
            left.append(f"{path.parent.name}: {record.get('status')} pid={record.get('pid')}")
    return left


TRAINING_SUBJECTS = (
    "[tunelab] Training of {name} failed",
    "[tunelab] Training of {name} was stopped",
    "[tunelab] {name} is ready: training completed",
)


def training_emails(outbox: Path, name: str) -> list[Path]:
    """The outbox's training-finished emails about model `name`."""
    subjects = {template.format(name=name) for template in TRAINING_SUBJECTS}
    found = []
    for path in sorted(outbox.glob("*.eml")) if outbox.is_dir() else []:
        message = message_from_bytes(path.read_bytes(), policy=default_policy)
        if str(message.get("Subject", "")).strip() in subjects:
            found.append(path)
    return found


def count_emails(outbox: Path, names: Sequence[str], timeout: float = EMAIL_TIMEOUT_S) -> dict[str, int]:
    """Each model's training emails, once every model has at least one (or `timeout` ran out)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = {name: len(training_emails(outbox, name)) for name in names}
        if all(counts.values()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


# --- the report --------------------------------------------------------------------------------------------


@dataclass
class Report:
    config: LoadConfig
    workspace_mode: str
    duration_s: float
    samples: list[Sample]
    failures: list[str]
    listings: list[ListingCheck]
    model_statuses: dict[str, str]
    unfinished_jobs: list[str] | None
    emails: dict[str, int] | None
    stop_races: list[str] = field(default_factory=list)
    client_error_texts: dict[tuple[str, int, str], list[str]] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.samples)

    @property
    def throughput(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def by_op(self) -> dict[str, list[Sample]]:
        grouped: dict[str, list[Sample]] = defaultdict(list)
        for sample in self.samples:
            grouped[sample.op].append(sample)
        return dict(sorted(grouped.items()))

    def client_errors(self) -> Counter[tuple[str, int, str]]:
        return Counter((s.op, s.status, s.code) for s in self.samples if 400 <= s.status < 500)

    @staticmethod
    def expected_why(op: str, status: int, code: str) -> str | None:
        return EXPECTED_4XX.get((op, status, code)) or EXPECTED_ANY_OP_4XX.get((status, code))

    def unexpected_4xx(self) -> int:
        return sum(
            n for (op, st, code), n in self.client_errors().items() if not self.expected_why(op, st, code)
        )

    def non_4xx_errors(self) -> int:
        return sum(1 for s in self.samples if s.status == 0 or s.status >= 500 or s.status < 200)

    def not_resting(self) -> dict[str, str]:
        return {name: status for name, status in self.model_statuses.items() if status not in RESTING}

    def email_problems(self) -> dict[str, int]:
        return {name: n for name, n in (self.emails or {}).items() if n != 1}

    @property
    def ok(self) -> bool:
        return (
            self.non_4xx_errors() == 0
            and self.unexpected_4xx() == 0
            and not self.failures
            and all(check.ok for check in self.listings)
            and not self.not_resting()
            and not self.unfinished_jobs
            and not self.email_problems()
            and not self.stop_races
        )

    def lines(self) -> list[str]:
        c = self.config
        ms = 1000.0
        latencies = [s.latency_s for s in self.samples]
        lines = [
            f"load: {c.clients} clients for {self.duration_s:.1f} s, {self.workspace_mode}; "
            f"{c.models_per_client} model(s) a client (created, then stopped at once), "
            f"{c.rows}-row datasets, pages of {c.page_size}",
            f"requests {self.requests}, throughput {self.throughput:.1f} req/s, latency p50 "
            f"{percentile(latencies, 50) * ms:.0f} ms, p99 {percentile(latencies, 99) * ms:.0f} ms, "
            f"max {max(latencies, default=0) * ms:.0f} ms",
            f"  {'operation':<15} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  statuses",
        ]
        for op, samples in self.by_op().items():
            values = [s.latency_s for s in samples]
            statuses = ", ".join(f"{k}: {n}" for k, n in sorted(Counter(s.status for s in samples).items()))
            lines.append(
                f"  {op:<15} {len(samples):>8} {percentile(values, 50) * ms:>8.0f} "
                f"{percentile(values, 99) * ms:>8.0f} {max(values) * ms:>8.0f}  {statuses}"
            )
        client_errors = self.client_errors()
        lines.append(
            f"errors: 4xx {sum(client_errors.values())} (unexpected {self.unexpected_4xx()}), "
            f"non-4xx {self.non_4xx_errors()}"
        )
        for (op, status, code), n in sorted(client_errors.items()):
            why = self.expected_why(op, status, code)
            lines.append(f"  {op} {status} {code}: {n} ({'expected: ' + why if why else 'UNEXPECTED'})")
            lines += [f"    e.g. {text}" for text in self.client_error_texts.get((op, status, code), [])]
        lines += [f"  problem: {text}" for text in self.failures[:20]]
        if len(self.failures) > 20:
            lines.append(f"  ... and {len(self.failures) - 20} more problems")
        created_ds = sum(ch.created for ch in self.listings if ch.kind == "datasets")
        created_models = sum(ch.created for ch in self.listings if ch.kind != "datasets")
        bad = [ch for ch in self.listings if not ch.ok]
        lines.append(
            f"listed afterwards: {created_ds} datasets and {created_models} models created in "
            f"{len({ch.workspace for ch in self.listings})} workspaces; "
            + ("each listed exactly once" if not bad else f"{len(bad)} listings wrong")
        )
        for ch in bad:
            lines.append(
                f"  {ch.workspace} {ch.kind}: created {ch.created}, listed {ch.listed}, "
                f"missing {ch.missing}, twice {ch.duplicated}, unknown {ch.unknown}"
            )
        if self.stop_races:
            lines.append(
                f"stop races: {len(self.stop_races)} model(s) stopped through the API were told otherwise "
                "(the stop records stopping_training before it asks the provider: none should be)"
            )
            lines += [f"  {text}" for text in self.stop_races]
        resting = Counter(self.model_statuses.values())
        lines.append(
            "models at the end: " + (", ".join(f"{k} {n}" for k, n in sorted(resting.items())) or "none")
        )
        if self.unfinished_jobs is not None:
            lines.append(
                f"job folders not ended: {len(self.unfinished_jobs)} {self.unfinished_jobs or ''}".rstrip()
            )
        if self.emails is not None:
            counts = Counter(self.emails.values())
            lines.append(
                "training emails a model: "
                + (", ".join(f"{k}: {n} models" for k, n in sorted(counts.items())) or "no models")
            )
        lines.append("result: " + ("OK" if self.ok else "FAILED"))
        return lines

    def to_json(self) -> dict[str, Any]:
        latencies = [s.latency_s for s in self.samples]
        return {
            "clients": self.config.clients,
            "seconds": self.duration_s,
            "workspace_mode": self.workspace_mode,
            "requests": self.requests,
            "throughput_rps": round(self.throughput, 2),
            "p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 99) * 1000, 1),
            "by_operation": {
                op: {
                    "requests": len(samples),
                    "p50_ms": round(percentile([s.latency_s for s in samples], 50) * 1000, 1),
                    "p99_ms": round(percentile([s.latency_s for s in samples], 99) * 1000, 1),
                    "max_ms": round(max(s.latency_s for s in samples) * 1000, 1),
                }
                for op, samples in self.by_op().items()
            },
            "errors_4xx": {f"{op} {st} {code}": n for (op, st, code), n in self.client_errors().items()},
            "unexpected_4xx": self.unexpected_4xx(),
            "non_4xx_errors": self.non_4xx_errors(),
            "problems": self.failures,
            "listings_wrong": [vars(ch) for ch in self.listings if not ch.ok],
            "model_statuses": dict(Counter(self.model_statuses.values())),
            "unfinished_jobs": self.unfinished_jobs,
            "emails_not_one": self.email_problems(),
            "stop_races": self.stop_races,
            "ok": self.ok,
        }


# --- running it --------------------------------------------------------------------------------------------


def make_workspaces(
    config: LoadConfig,
    run_id: str,
    *,
    data_dir: Path | None = None,
    tokens: Sequence[str] = (),
) -> list[Workspace]:
    """The workspaces the clients use: one per token given, else `config.workspaces` (default one per
    client) with tokens minted from the runtime's data dir."""
    if tokens:
        return [Workspace(label=f"token-{i + 1}", token=t) for i, t in enumerate(tokens)]
    if data_dir is None:
        raise ValueError("give the runtime's data dir (to mint tokens) or tokens")
    from tunelab.local.tokens import issue_token  # noqa: PLC0415

    count = config.workspaces or config.clients
    workspaces = []
    for i in range(count):
        label, email = f"ws-load-{run_id}-{i}", f"load{i}@example.com"
        token = issue_token(data_dir, workspace=label, email=email)
        workspaces.append(Workspace(label=label, token=token, email=email))
    return workspaces


def run_load(
    api_url: str,
    config: LoadConfig,
    *,
    data_dir: Path | None = None,
    tokens: Sequence[str] = (),
    settle_timeout: float = SETTLE_TIMEOUT_S,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Run the load on the runtime at `api_url`, wait until it settles, and check what it left."""
    run_id = uuid.uuid4().hex[:6]
    workspaces = make_workspaces(config, run_id, data_dir=data_dir, tokens=tokens)
    shared = len(workspaces) < config.clients
    mode = f"{len(workspaces)} workspace(s) shared by the clients" if shared else "one workspace per client"
    recorder = Recorder()
    deadline = time.monotonic() + config.seconds
    clients = [
        Client(i, api_url, workspaces[i % len(workspaces)], config, recorder, deadline, run_id)
        for i in range(config.clients)
    ]
    for client in clients:
        client.start()
    for client in clients:
        client.join(config.seconds + REQUEST_TIMEOUT_S * 2)
        if client.is_alive():
            recorder.problem(f"{client.name} still running {REQUEST_TIMEOUT_S * 2:.0f} s after the deadline")
    duration = time.monotonic() - recorder.started
    if progress:
        progress(f"load done: {len(recorder.samples)} requests in {duration:.1f} s; settling")
    reasons: dict[str, str] = {}
    with httpx.Client(base_url=api_url, timeout=REQUEST_TIMEOUT_S) as http:
        statuses = wait_until_resting(http, workspaces, settle_timeout, reasons)
        listings = check_listings(http, workspaces)
    races = stop_races(workspaces, statuses, reasons)
    jobs = emails = None
    if data_dir is not None:
        jobs = unfinished_jobs(data_dir)
        names = [name for w in workspaces for name in sorted(w.models)]
        emails = count_emails(data_dir / "outbox", names)
    return Report(
        config=config,
        workspace_mode=mode,
        duration_s=duration,
        samples=list(recorder.samples),
        failures=list(recorder.failures),
        listings=listings,
        model_statuses=statuses,
        unfinished_jobs=jobs,
        emails=emails,
        stop_races=races,
        client_error_texts=dict(recorder.client_error_texts),
    )


def stop_races(
    workspaces: Sequence[Workspace], statuses: dict[str, str], reasons: dict[str, str]
) -> list[str]:
    """Models a client stopped through the API that ended `training_stopped` all the same, though the
    stop answered 409, or whose reason says they were stopped outside tunelab."""
    found = []
    for workspace in workspaces:
        for name, answer in sorted(workspace.stop_answers.items()):
            key = f"{workspace.label}/{name}"
            status, reason = statuses.get(key), reasons.get(key, "")
            if status != "training_stopped":
                continue
            if answer != 202:
                found.append(
                    f"{key}: the stop answered {answer}, yet the model ended training_stopped ({reason})"
                )
            elif STOPPED_OUTSIDE in reason:
                found.append(f"{key}: stopped through the API (202), yet its reason says: {reason}")
    return found


@contextlib.contextmanager
def own_runtime(root: Path) -> Iterator[tuple[str, Path]]:
    """A `tunelab local up` in a data dir under `root` (the end-to-end tests' helper), stopped after."""
    from tests.e2e.conftest import start_runtime  # noqa: PLC0415  # pytest is in the dev venv

    runtime = start_runtime(root / "data", root / "runtime.log")
    try:
        yield runtime.ready["api_url"], Path(runtime.ready["data_dir"])
    finally:
        code = runtime.interrupt()
        print(f"runtime stopped (exit {code}); its log: {root / 'runtime.log'}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--models-per-client", type=int, default=1)
    parser.add_argument(
        "--workspaces", type=int, default=None, help="shared workspaces (default: one a client)"
    )
    parser.add_argument("--rows", type=int, default=16, help="rows of each dataset")
    parser.add_argument("--page-size", type=int, default=10)
    parser.add_argument("--api-url", help="a running runtime (default: start one in a temporary data dir)")
    parser.add_argument("--data-dir", type=Path, help="the running runtime's data dir (tokens, jobs, outbox)")
    parser.add_argument("--token", action="append", default=[], help="a token: one workspace each")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    config = LoadConfig(
        clients=args.clients,
        seconds=args.seconds,
        models_per_client=args.models_per_client,
        workspaces=args.workspaces,
        rows=args.rows,
        page_size=args.page_size,
    )

    def say(text: str) -> None:
        print(text, file=sys.stderr)

    if args.api_url:
        if not args.token and args.data_dir is None:
            parser.error("with --api-url, give --data-dir (to mint tokens) or --token")
        report = run_load(args.api_url, config, data_dir=args.data_dir, tokens=args.token, progress=say)
    else:
        with (
            tempfile.TemporaryDirectory(prefix="tunelab-load-") as root,
            own_runtime(Path(root)) as (api_url, data_dir),
        ):
            say(f"runtime at {api_url}, data dir {data_dir}")
            report = run_load(api_url, config, data_dir=data_dir, progress=say)
    print("\n".join(report.lines()))
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2), encoding="utf-8")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
