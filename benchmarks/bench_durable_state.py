"""Benchmark: what the local runtime's durable state costs — keeping each write, and restoring a big store.

The local runtime keeps what its AWS endpoint acknowledges on disk before it answers
(`tunelab.local.persistence`: the tables through a DynamoDB Streams journal, the buckets in a mirror).
The machine this runs on is shared and noisy, so every figure is a ratio against a baseline measured
side by side in the same process, never an absolute time alone. Two parts, in this process, one
runtime at a time (data dirs under benchmarks/.data/durable-state, gitignored, removed first):

A. **Keeping writes.** One started runtime; `--rounds` rounds, each side `--requests` requests a
   round, the order of the sides alternating from round to round: `POST /v1/datasets?name=...` (a
   16-row inline CSV: the dataset and its name lock in the table, its file in the datasets bucket)
   with keeping on (as started) and off (the guard's `keep_writes(None)` for the off rounds, then
   `durable_state.after_write` again); `GET /v1/datasets/{id}` on and off as the control. A GET
   writes nothing but the workspace's request counter (one `UpdateItem`, `application.workspaces`),
   so its ratio is what keeping one small write costs. Each (round, side) has its own workspace (the
   request budget is per workspace and minute) and starts with 2 unmeasured requests: they create the
   workspace and, on a keeping side, drain what the streams gathered while keeping was off.
   Prints p50 / p99 latency and requests per second of each side and the ratios on / off.

B. **Restoring `--models` models and `--datasets` datasets.** A runtime gets one dataset and one
   fine-tuned model through the API (training stopped at once, until its status rests); then every
   item of the records table that is the model's (the model, its events, its workspace) is cloned
   `--models` times and every item that is the dataset's (the dataset, its name lock) `--datasets`
   times, each clone in its own workspace (`bench0000`, ...: the original workspace id replaced in
   the item's JSON — it is in every cloned item's key), written with `BatchWriteItem` through the
   runtime's endpoint, so they are journaled; the dataset's file is copied (`CopyObject`) for each
   dataset clone. Then, `--starts` times, alternately: a start (and stop) on an empty data dir (the
   baseline) and a start on the populated one. The first populated start replays the journal (and
   compacts it into a snapshot), the later ones load the snapshot. Before each populated start stops,
   a few clone workspaces list their model and dataset through the API, and the restored item and
   object counts must equal those the store held when the runtime before it stopped.

Exit 1 when a check fails. Takes about 2-4 minutes on 2 cores with the defaults.
Run: `python benchmarks/bench_durable_state.py [--models 1000 --datasets 100 --requests 20 --rounds 5]`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from tunelab.local.persistence import RestoreReport
    from tunelab.local.runtime import LocalRuntime

HERE = Path(__file__).resolve().parent
EMAIL = "bench@example.com"
SAMPLE = "support-triage.csv"
SOURCE_WORKSPACE = "benchsource"  # replaced by each clone's workspace id wherever it appears
MODEL_NAME = "restore-model"
DATASET_NAME = "restore-dataset"
RESTING = ("training_stopped", "training_failed")
BATCH = 25  # BatchWriteItem's limit
WARMUP = 2


class BenchCheckError(Exception):
    """A check of the benchmark failed: exit 1."""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def csv_body(rows: int = 16) -> bytes:
    from tunelab.client.demo import sample_rows, to_csv  # noqa: PLC0415

    return to_csv(sample_rows(SAMPLE)[:rows])


def headers_for(runtime: LocalRuntime, workspace: str) -> dict[str, str]:
    from tunelab.local.tokens import issue_token  # noqa: PLC0415

    return {"Authorization": f"Bearer {issue_token(runtime.data_dir, workspace=workspace, email=EMAIL)}"}


def expect(answer: httpx.Response, status: int, what: str) -> dict[str, Any]:
    if answer.status_code != status:
        raise BenchCheckError(f"{what}: {answer.status_code} {answer.text[:400]}")
    body: dict[str, Any] = answer.json()
    return body


# --- A: what keeping writes costs ---------------------------------------------------------------


@dataclass
class Side:
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


def timed(side: Side, call: Callable[[int], object], requests: int) -> None:
    started = time.perf_counter()
    for index in range(requests):
        begun = time.perf_counter()
        call(index)
        side.latencies.append((time.perf_counter() - begun) * 1000)
    side.seconds += time.perf_counter() - started


def bench_keeping(data_dir: Path, rounds: int, requests: int) -> list[str]:
    from tunelab.local.runtime import LocalRuntime  # noqa: PLC0415  # heavy

    body = csv_body()
    sides = {(kind, keep): Side() for kind in ("POST", "GET") for keep in (True, False)}
    runtime = LocalRuntime(data_dir, port=0)
    runtime.start()
    try:
        assert runtime._moto is not None
        assert runtime.durable_state is not None
        guard = runtime._moto.guard
        keep = runtime.durable_state.after_write
        with httpx.Client(base_url=runtime.base_url, timeout=60) as api:
            for round_ in range(rounds):
                order = (True, False) if round_ % 2 == 0 else (False, True)
                for kind in ("POST", "GET"):
                    for keeping in order:
                        guard.keep_writes(keep if keeping else None)
                        try:
                            workspace = f"keep{round_}-{kind.lower()}-{'on' if keeping else 'off'}"
                            headers = headers_for(runtime, workspace)
                            prefix = f"r{round_}-{'on' if keeping else 'off'}"

                            def post(
                                index: int, headers: dict[str, str] = headers, prefix: str = prefix
                            ) -> str:
                                answer = api.post(
                                    "/v1/datasets",
                                    params={"name": f"{prefix}-{index}"},
                                    content=body,
                                    headers={**headers, "Content-Type": "text/csv"},
                                )
                                return str(expect(answer, 201, "POST /v1/datasets")["id"])

                            if kind == "POST":
                                for index in range(WARMUP):
                                    post(-1 - index)
                                timed(sides[kind, keeping], post, requests)
                            else:
                                dataset = post(-1)
                                path = f"/v1/datasets/{dataset}"

                                def get(
                                    _: int, headers: dict[str, str] = headers, path: str = path
                                ) -> object:
                                    return expect(api.get(path, headers=headers), 200, f"GET {path}")

                                for index in range(WARMUP - 1):
                                    get(index)
                                timed(sides[kind, keeping], get, requests)
                        finally:
                            guard.keep_writes(keep)
    finally:
        runtime.stop()

    lines = [
        f"A. keeping writes: {rounds} rounds x {requests} requests a side, sides alternating, one runtime",
        f"{'':24} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}",
    ]
    for kind, label in (("POST", "POST /v1/datasets"), ("GET", "GET /v1/datasets/{id}")):
        for keeping in (True, False):
            side = sides[kind, keeping]
            lines.append(
                f"{label + (' on' if keeping else ' off'):24} {percentile(side.latencies, 0.5):8.2f} "
                f"{percentile(side.latencies, 0.99):8.2f} {side.rps():8.1f}"
            )
    for kind, label in (("POST", "POST (writes)"), ("GET", "GET (control)")):
        on, off = sides[kind, True], sides[kind, False]
        p50 = percentile(on.latencies, 0.5) / percentile(off.latencies, 0.5)
        p99 = percentile(on.latencies, 0.99) / percentile(off.latencies, 0.99)
        lines.append(
            f"ratio on/off {label}: p50 {p50:.2f}x, p99 {p99:.2f}x, req/s {on.rps() / off.rps():.2f}x"
        )
    return lines


# --- B: restoring a big store -------------------------------------------------------------------


def scan(runtime: LocalRuntime, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in runtime.client("dynamodb").get_paginator("scan").paginate(TableName=table):
        items.extend(page.get("Items", []))
    return items


def store_counts(runtime: LocalRuntime) -> tuple[int, int]:
    """All items of the kept tables and all objects of the kept buckets, as the store holds them now."""
    names = runtime.names
    items = sum(len(scan(runtime, table)) for table in (names.table, names.idempotency_table))
    s3 = runtime.client("s3")
    objects = 0
    for bucket in (names.datasets_bucket, names.artifacts_bucket):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            objects += len(page.get("Contents", []))
    return items, objects


def clone_workspace(index: int) -> str:
    return f"bench{index:04d}"


def create_originals(runtime: LocalRuntime) -> str:
    """One dataset and one fine-tuned model (training stopped at once, resting) of SOURCE_WORKSPACE."""
    with httpx.Client(
        base_url=runtime.base_url, headers=headers_for(runtime, SOURCE_WORKSPACE), timeout=60
    ) as api:
        dataset = expect(
            api.post(
                "/v1/datasets",
                params={"name": DATASET_NAME},
                content=csv_body(),
                headers={"Content-Type": "text/csv"},
            ),
            201,
            "creating the dataset",
        )["id"]
        expect(
            api.post(
                "/v1/fine-tuned-models",
                json={
                    "name": MODEL_NAME,
                    "base_model_id": "local.tiny-llama",
                    "dataset_id": dataset,
                    "validation": {"mode": "none"},
                    "hyperparameters": {"epochs": 1, "learning_rate": 0.01, "batch_size": 8},
                    "acknowledge": True,
                },
            ),
            202,
            "creating the model",
        )
        expect(api.post(f"/v1/fine-tuned-models/{MODEL_NAME}/stop"), 202, "stopping the training")
        deadline = time.monotonic() + 120
        while True:
            status = expect(api.get(f"/v1/fine-tuned-models/{MODEL_NAME}"), 200, "the model")["status"]
            if status in RESTING:
                return str(dataset)
            if time.monotonic() > deadline:
                raise BenchCheckError(f"the model's status did not rest within 120 s (still {status})")
            time.sleep(0.3)


def classify(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """The model's items (the model, its events, its workspace), the dataset's (the dataset and its
    name lock), and how many items were left out (request counters and the like)."""
    model: list[dict[str, Any]] = []
    dataset: list[dict[str, Any]] = []
    left = 0
    for item in items:
        pk, sk = item["pk"]["S"], item["sk"]["S"]
        own = pk == f"WS#{SOURCE_WORKSPACE}"
        if (own and (sk.startswith("MODEL#") or sk == "WORKSPACE")) or pk.startswith(
            f"EVENTS#{SOURCE_WORKSPACE}#"
        ):
            model.append(item)
        elif pk == f"WS#{SOURCE_WORKSPACE}" and sk.startswith(("DS#", "DSNAME#")):
            dataset.append(item)
        else:
            left += 1
    for item in (*model, *dataset):
        if SOURCE_WORKSPACE not in item["pk"]["S"] + item["sk"]["S"]:
            raise BenchCheckError(f"the workspace id is not in the key of {item['pk']} {item['sk']}")
    return model, dataset, left


def batch_write(runtime: LocalRuntime, table: str, items: list[dict[str, Any]]) -> None:
    dynamodb = runtime.client("dynamodb")
    for start in range(0, len(items), BATCH):
        requests: dict[str, Any] = {
            table: [{"PutRequest": {"Item": item}} for item in items[start : start + BATCH]]
        }
        while requests:
            requests = dynamodb.batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}


def clones(items: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    texts = [json.dumps(item) for item in items]
    return [
        json.loads(text.replace(SOURCE_WORKSPACE, clone_workspace(i))) for i in range(count) for text in texts
    ]


@dataclass
class Populated:
    model_items: int
    dataset_items: int
    cloned_items: int
    cloned_objects: int
    items: int  # what the store held when the runtime stopped
    objects: int
    seconds: float


def populate(data_dir: Path, models: int, datasets: int) -> Populated:
    from tunelab.local.runtime import LocalRuntime  # noqa: PLC0415

    started = time.perf_counter()
    runtime = LocalRuntime(data_dir, port=0)
    runtime.start()
    try:
        create_originals(runtime)
        table = runtime.names.table
        model_items, dataset_items, _ = classify(scan(runtime, table))
        if not model_items or not dataset_items:
            raise BenchCheckError(f"no model ({len(model_items)}) or dataset ({len(dataset_items)}) items")
        written = clones(model_items, models) + clones(dataset_items, datasets)
        batch_write(runtime, table, written)
        s3 = runtime.client("s3")
        bucket = runtime.names.datasets_bucket
        sources = [
            entry["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for entry in page.get("Contents", [])
            if SOURCE_WORKSPACE in entry["Key"]
        ]
        if not sources:
            raise BenchCheckError("the dataset's file is not in the datasets bucket")
        for i in range(datasets):
            for key in sources:
                s3.copy_object(
                    Bucket=bucket,
                    Key=key.replace(SOURCE_WORKSPACE, clone_workspace(i)),
                    CopySource={"Bucket": bucket, "Key": key},
                )
        items, objects = store_counts(runtime)
    finally:
        runtime.stop()
    return Populated(
        model_items=len(model_items),
        dataset_items=len(dataset_items),
        cloned_items=len(written),
        cloned_objects=datasets * len(sources),
        items=items,
        objects=objects,
        seconds=time.perf_counter() - started,
    )


def verify_clones(runtime: LocalRuntime, models: int, datasets: int) -> None:
    """A few clone workspaces list their model and their dataset through the API."""
    with httpx.Client(base_url=runtime.base_url, timeout=60) as api:
        for index in sorted({0, models // 2, models - 1}):
            headers = headers_for(runtime, clone_workspace(index))
            listed = expect(api.get("/v1/fine-tuned-models", headers=headers), 200, "listing models")
            names = [model["name"] for model in listed["items"]]
            if names != [MODEL_NAME]:
                raise BenchCheckError(
                    f"{clone_workspace(index)} lists the models {names}, not [{MODEL_NAME}]"
                )
        for index in sorted({0, datasets // 2, datasets - 1}):
            headers = headers_for(runtime, clone_workspace(index))
            listed = expect(api.get("/v1/datasets", headers=headers), 200, "listing datasets")
            found = [(dataset["name"], dataset["status"]) for dataset in listed["items"]]
            if found != [(DATASET_NAME, "ready")]:
                raise BenchCheckError(f"{clone_workspace(index)} lists the datasets {found}")


@dataclass
class Start:
    kind: str
    seconds: float
    report: RestoreReport


def start_stop(data_dir: Path, check: Callable[[LocalRuntime], None] | None = None) -> Start:
    from tunelab.local.runtime import LocalRuntime  # noqa: PLC0415

    runtime = LocalRuntime(data_dir, port=0)
    begun = time.perf_counter()
    runtime.start()
    seconds = time.perf_counter() - begun
    try:
        assert runtime.durable_state is not None
        report = runtime.durable_state.report
        if check is not None:
            check(runtime)
    finally:
        runtime.stop()
    return Start("", seconds, report)


def bench_restore(base: Path, models: int, datasets: int, starts: int, lines: list[str]) -> None:
    """Part B; its table goes to `lines` as it is made (a failed check prints what came before)."""
    populated_dir, empty_dir = base / "populated", base / "empty"
    store = populate(populated_dir, models, datasets)
    lines += [
        f"B. restoring {models} models and {datasets} datasets",
        f"populated in {store.seconds:.1f} s: cloned {store.model_items} model items x {models} + "
        f"{store.dataset_items} dataset items x {datasets} = {store.cloned_items} items (BatchWriteItem) and "
        f"{store.cloned_objects} objects (CopyObject); the store then held {store.items} items and "
        f"{store.objects} objects",
    ]
    expected = {"items": store.items, "objects": store.objects}

    def check(runtime: LocalRuntime) -> None:
        assert runtime.durable_state is not None
        report = runtime.durable_state.report
        if (report.items, report.objects) != (expected["items"], expected["objects"]):
            raise BenchCheckError(
                f"restored {report.items} items and {report.objects} objects, the store held "
                f"{expected['items']} items and {expected['objects']} objects"
            )
        verify_clones(runtime, models, datasets)
        # The next start must restore what the store holds now (the checks wrote request counters).
        expected["items"], expected["objects"] = store_counts(runtime)

    pairs: list[tuple[Start, Start]] = []
    for repeat in range(starts):
        shutil.rmtree(empty_dir, ignore_errors=True)
        empty = start_stop(empty_dir)
        empty.kind = "empty"
        full = start_stop(populated_dir, check)
        full.kind = "journal replay" if repeat == 0 else "snapshot"
        pairs.append((empty, full))
    lines.append(
        f"{'#':>2} {'empty s':>8} {'populated s':>12} {'ratio':>6} {'kind':>15} {'items':>6} "
        f"{'journal':>8} {'objects':>8} {'report s':>9} {'empty report s':>15}"
    )
    for index, (empty, full) in enumerate(pairs, start=1):
        report = full.report
        lines.append(
            f"{index:>2} {empty.seconds:8.2f} {full.seconds:12.2f} {full.seconds / empty.seconds:6.2f} "
            f"{full.kind:>15} {report.items:6d} {report.journal_records:8d} {report.objects:8d} "
            f"{report.seconds:9.2f} {empty.report.seconds:15.2f}"
        )
    # The start's ratio, and what the restore adds to the report's seconds (which also cover creating
    # the stack between the tables and the schedules) over the empty start's.
    replay, later = pairs[0], pairs[1:]
    summary = f"ratio populated/empty start: journal replay {replay[1].seconds / replay[0].seconds:.2f}x"
    if later:
        ratio = statistics.median(full.seconds / empty.seconds for empty, full in later)
        summary += f", snapshot {ratio:.2f}x (median of {len(later)})"
    summary += f"; restoring adds {replay[1].report.seconds - replay[0].report.seconds:+.2f} s (journal)"
    if later:
        added = statistics.median(full.report.seconds - empty.report.seconds for empty, full in later)
        summary += f", {added:+.2f} s (snapshot)"
    lines.append(summary)
    lines.append(
        "(report s: durable_state.report.seconds, from restoring the tables to restoring the schedules,"
        " creating the stack in between; journal: journal records replayed onto the snapshot)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", type=int, default=1000, help="model clones (default 1000)")
    parser.add_argument("--datasets", type=int, default=100, help="dataset clones (default 100)")
    parser.add_argument("--requests", type=int, default=20, help="requests per side and round (default 20)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of A (default 5)")
    parser.add_argument("--starts", type=int, default=3, help="starts of each kind in B (default 3)")
    parser.add_argument("--part", choices=("a", "b", "both"), default="both")
    parser.add_argument("--data-dir", type=Path, default=HERE / ".data" / "durable-state")
    args = parser.parse_args()
    if min(args.models, args.datasets, args.requests, args.rounds, args.starts) < 1:
        parser.error("every count must be at least 1")

    shutil.rmtree(args.data_dir, ignore_errors=True)
    args.data_dir.mkdir(parents=True)
    began = time.perf_counter()
    lines: list[str] = []
    try:
        if args.part in ("a", "both"):
            lines += bench_keeping(args.data_dir / "keep", args.rounds, args.requests)
        if args.part in ("b", "both"):
            lines.append("")
            bench_restore(args.data_dir, args.models, args.datasets, args.starts, lines)
    except BenchCheckError as failure:
        print("\n".join(lines))
        print(f"CHECK FAILED: {failure}", file=sys.stderr)
        return 1
    print("\n".join(lines).strip())
    print(f"all checks passed; {time.perf_counter() - began:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
