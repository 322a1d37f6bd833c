"""The load test (`tests/faults/load.py`) in the suite: 8 clients for 15 s on a runtime of its own.

Each client has its own workspace, creates 16-row datasets, one tiny-model fine-tune that it stops at
once, and lists (every page) and reads the rest of the time. The figures are printed and attached to
the test's report (`pytest -rP` shows them under pytest-xdist, which keeps workers' output); the test
fails on any answer that is neither a success nor an expected 4xx, on a resource not listed exactly
once afterwards, on a model that does not come to rest (no trainer left running), or on a model
without exactly one training email.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.conftest import start_runtime
from tests.faults.load import RESTING, LoadConfig, run_load

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.slow]

CLIENTS = 8
LOAD_SECONDS = 15.0


def test_concurrent_clients_get_no_server_errors_and_every_resource_is_listed_once(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    started = time.monotonic()
    runtime = start_runtime(tmp_path / "data", tmp_path / "runtime.log")
    try:
        report = run_load(
            runtime.ready["api_url"],
            LoadConfig(clients=CLIENTS, seconds=LOAD_SECONDS, models_per_client=1),
            data_dir=Path(runtime.ready["data_dir"]),
        )
    finally:
        exit_code = runtime.interrupt()
    text = "\n".join(
        [*report.lines(), f"wall: {time.monotonic() - started:.1f} s (runtime start and stop too)"]
    )
    print(f"\n{text}")
    request.node.add_report_section("call", "load report", text)

    assert exit_code == 0, runtime.log()[-4000:]
    assert report.requests > 0
    assert report.non_4xx_errors() == 0, text
    assert report.unexpected_4xx() == 0, text
    assert report.failures == [], text
    assert [check for check in report.listings if not check.ok] == [], text
    created_models = sum(check.created for check in report.listings if check.kind == "fine-tuned-models")
    assert created_models == CLIENTS, text
    assert set(report.model_statuses.values()) <= RESTING, text
    assert report.unfinished_jobs == [], text
    assert report.email_problems() == {}, text
    # A model stopped through the API is told so, and its reason is the user's stop.
    assert report.stop_races == [], text
