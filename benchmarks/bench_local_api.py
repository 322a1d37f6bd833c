"""Benchmark: `GET /v1/fine-tuned-models/{name}` through the local runtime, against a direct DynamoDB read.

Starts the embedded local runtime in this process (loopback, a free port; data dir under
benchmarks/.data, gitignored, so the tiny base model is built once), creates one fine-tuned model
through the API and stops its training at once (so no trainer competes for the CPU), then measures,
one after the other, on one kept-alive connection each:

- api: `GET /v1/fine-tuned-models/{name}` over HTTP — the HTTP front (token check, API Gateway proxy
  event), the API handler (routing, validation, the repository's consistent read, the response
  model) and the embedded DynamoDB (moto server) behind it;
- direct: boto3 `get_item` (consistent read) of the same item on the same embedded endpoint.

Prints requests per second and p50 / p99 latency of each, and the ratios (what the API adds on top
of the read it does). One bounded run: `--requests N` each (default 500) after `--warmup` requests.
Run: `python benchmarks/bench_local_api.py [--requests 1000]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
WORKSPACE = "bench"
EMAIL = "bench@example.com"
SAMPLE = "support-triage.csv"


def measure(call: Callable[[], object], requests: int, warmup: int) -> tuple[float, list[float]]:
    """Requests per second and each request's latency in ms."""
    for _ in range(warmup):
        call()
    latencies = []
    started = time.perf_counter()
    for _ in range(requests):
        begun = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - begun) * 1000)
    elapsed = time.perf_counter() - started
    return requests / elapsed, latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def prepare_model(api: httpx.Client) -> str:
    """One fine-tuned model of the workspace, its training stopped: the item both sides read."""
    from tunelab.client.demo import sample_rows, to_csv  # noqa: PLC0415

    name = f"bench-{int(time.time())}"
    dataset = api.post(
        "/v1/datasets",
        params={"name": name},
        content=to_csv(sample_rows(SAMPLE)[:16]),
        headers={"Content-Type": "text/csv"},
    )
    dataset.raise_for_status()
    created = api.post(
        "/v1/fine-tuned-models",
        json={
            "name": name,
            "base_model_id": "local.tiny-llama",
            "dataset_id": dataset.json()["id"],
            "hyperparameters": {"epochs": 1},
            "acknowledge": True,
        },
    )
    if created.status_code != 202:
        sys.exit(f"creating the model failed: {created.status_code} {created.text}")
    api.post(f"/v1/fine-tuned-models/{name}/stop").raise_for_status()
    deadline = time.monotonic() + 300
    while api.get(f"/v1/fine-tuned-models/{name}").json()["status"] == "stopping_training":
        if time.monotonic() > deadline:
            sys.exit("the model's training did not stop within 300 s")
        time.sleep(0.5)
    return name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="requests per side (default 500)")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured requests first (default 30)")
    parser.add_argument("--data-dir", type=Path, default=HERE / ".data" / "local-runtime")
    args = parser.parse_args()

    from tunelab.local.runtime import LocalRuntime  # noqa: PLC0415  # heavy
    from tunelab.local.tokens import issue_token  # noqa: PLC0415

    runtime = LocalRuntime(args.data_dir, port=0)
    runtime.start()
    try:
        token = issue_token(runtime.data_dir, workspace=WORKSPACE, email=EMAIL)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=runtime.base_url, headers=headers, timeout=60) as api:
            name = prepare_model(api)
            path = f"/v1/fine-tuned-models/{name}"
            dynamodb = runtime.client("dynamodb")
            key = {"pk": {"S": f"WS#{WORKSPACE}"}, "sk": {"S": f"MODEL#{name.lower()}"}}
            table = runtime.names.table

            def via_api() -> object:
                answer = api.get(path)
                if answer.status_code != 200:
                    raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text}")
                return answer

            def direct() -> object:
                item = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)
                if "Item" not in item:
                    raise RuntimeError("the model's item is not in the table")
                return item

            # Both read the same item (and the API answers the model the table holds).
            assert via_api().json()["name"] == name  # type: ignore[attr-defined]
            assert direct()["Item"]["name"]["S"] == name  # type: ignore[index]

            direct_rps, direct_ms = measure(direct, args.requests, args.warmup)
            api_rps, api_ms = measure(via_api, args.requests, args.warmup)
    finally:
        runtime.stop()

    print(f"{args.requests} requests each, one after the other, loopback, one process")
    print(f"{'':8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for label, rps, ms in (("api", api_rps, api_ms), ("direct", direct_rps, direct_ms)):
        print(
            f"{label:8} {rps:8.1f} {percentile(ms, 0.5):8.2f} {percentile(ms, 0.99):8.2f} "
            f"{statistics.fmean(ms):8.2f}"
        )
    print(
        f"ratio: the API serves {api_rps / direct_rps:.2f}x the direct read's requests per second; "
        f"p50 {percentile(api_ms, 0.5) / percentile(direct_ms, 0.5):.2f}x, "
        f"p99 {percentile(api_ms, 0.99) / percentile(direct_ms, 0.99):.2f}x its latency"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
