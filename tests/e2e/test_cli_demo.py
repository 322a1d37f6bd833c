"""`tunelab demo` against a running local runtime (the quick variant on the tiny model), and a demo
that cannot reach an API: it names the stage that failed and exits non-zero."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.e2e.conftest import REPO_ROOT, LocalApi, runtime_environment
from tunelab.client import cli

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.slow]

STAGES = (
    "local runtime",
    "datasets",
    "estimates",
    "training",
    "evaluation",
    "deploy",
    "sandbox",
    "download",
    "undeploy",
    "delete",
)


def demo(url: str, token: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = runtime_environment()
    env["TUNELAB_API_URL"] = url
    env["TUNELAB_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "tunelab.client.cli", "demo", *argv],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_the_demo_runs_every_stage_and_sums_up(local: LocalApi) -> None:
    done = demo(
        local.base_url, local.token(), "--model", "local.tiny-llama", "--train-rows", "16", "--epochs", "1"
    )

    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    out = done.stdout
    assert f"Using the tunelab API already answering at {local.base_url}" in out
    assert "Training on 16 rows" in out
    assert "Tokens per epoch:" in out
    # The resource advice names the plan and how the trainer would run on each instance type.
    assert "Plan:       " in out
    assert "STRATEGY" in out
    assert "expected: category=" in out
    # The evaluation the trainer ran: the base model beside the fine-tuned one on the 40 rows.
    assert "Evaluation on 40 validation rows" in out
    assert "BASE MODEL" in out
    assert "FINE-TUNED" in out
    assert "answers match the expected completion exactly" in out
    assert "model.safetensors" in out
    summary = out.split("== Summary", 1)[1].splitlines()
    assert [line[2:].split("  ")[0] for line in summary if line.startswith("  ")] == [*STAGES, "total"]
    assert "FAILED" not in out
    # Deleted at the end: the workspace holds no demo model.
    models = local.call("GET", "/v1/fine-tuned-models").json()["items"]
    assert not [m for m in models if m["name"].startswith("demo-tiny-llama")]


def test_a_demo_that_cannot_reach_its_api_names_the_stage_and_exits_non_zero(local: LocalApi) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{holder.getsockname()[1]}"

    done = demo(closed, "t", "--model", "local.tiny-llama")

    assert done.returncode == cli.EXIT_FAILED
    assert f"the local runtime stage failed: nothing answers at {closed}" in done.stderr
    assert "local runtime" in done.stdout.split("== Summary", 1)[1]
    assert "FAILED" in done.stdout
