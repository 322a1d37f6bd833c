"""The `tunelab` command line against the local runtime, as a user types it: a model's whole life,
the progress bar, `--json`, and the exit codes scripts rely on."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import REPO_ROOT, LocalApi, runtime_environment
from tests.e2e.jobs import TINY, csv_of, unique
from tunelab.client import cli
from tunelab.client.demo import sample_rows

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.slow]


def tunelab(
    local: LocalApi, *argv: str, url: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    env = runtime_environment()
    env["TUNELAB_API_URL"] = url or local.base_url
    env["TUNELAB_TOKEN"] = local.token()
    return subprocess.run(
        [sys.executable, "-m", "tunelab.client.cli", *argv],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(done).stdout)


def test_a_models_whole_life_from_the_command_line(local: LocalApi, tmp_path: Path) -> None:
    data = tmp_path / "tickets.csv"
    data.write_bytes(csv_of(sample_rows("support-triage.csv")[:24]))
    name = unique("cli")

    dataset = as_json(tunelab(local, "datasets", "upload", str(data), "--name", unique("tickets"), "--json"))
    assert dataset["status"] == "ready"
    assert dataset["rows"] == 24

    job = ["models", "create", name, "--base-model", TINY, "--dataset", dataset["id"]]
    job += ["--epochs", "1", "--batch-size", "8", "--validation", "none"]
    unacknowledged = tunelab(local, *job)
    assert unacknowledged.returncode == cli.EXIT_USAGE
    assert "Tokens per epoch:" in unacknowledged.stdout
    assert "--acknowledge" in unacknowledged.stderr
    assert name not in [m["name"] for m in as_json(tunelab(local, "models", "list", "--json"))["items"]]

    watched = ok(tunelab(local, *job, "--acknowledge", "--watch", "--interval", "0.5"))
    lines = watched.stdout.splitlines()
    assert lines[0] == f"Training started: {name} (Training)."
    assert any("status: training" in line for line in lines)
    assert any(line.startswith("Training  ") for line in lines), watched.stdout  # the bar
    # A job of 3 steps may end between two of the provider's progress reports (every 5 s); a step
    # count that did arrive is drawn as a bar.
    assert all(
        "[" in line and "%" in line for line in lines if line.startswith("Training") and "steps" in line
    )
    assert lines[-1] == f"{name}: Not deployed (not_deployed)"

    taken = tunelab(local, *job, "--acknowledge")
    assert taken.returncode == cli.EXIT_CONFLICT
    assert "name_taken" in taken.stderr

    shown = ok(tunelab(local, "models", "show", name)).stdout
    assert f"Name:            {name}" in shown
    assert "Not deployed (not_deployed)" in shown

    deployed = ok(tunelab(local, "models", "deploy", name, "--auto-undeploy-hours", "2", "--wait"))
    assert f"{name}: Deployed (deployed)" in deployed.stdout
    assert "Automatic undeploy at" in deployed.stdout

    answer = ok(tunelab(local, "models", "invoke", name, "Triage this support ticket.", "--max-tokens", "6"))
    assert "tokens in" in answer.stderr

    refused = tunelab(local, "models", "delete", name, "--acknowledge")
    assert refused.returncode == cli.EXIT_CONFLICT
    assert "invalid_state" in refused.stderr

    downloaded = ok(tunelab(local, "models", "download", name, "--out", str(tmp_path)))
    assert (tmp_path / f"{name}.tar.gz").stat().st_size > 0
    assert "config.json" in downloaded.stdout

    events = as_json(tunelab(local, "models", "events", name, "--json"))["items"]
    assert [e["status"] for e in events if e["type"] == "status_changed"][:1] == ["training"]

    assert "Not deployed" in ok(tunelab(local, "models", "undeploy", name, "--wait")).stdout
    ok(tunelab(local, "models", "delete", name, "--acknowledge"))
    assert tunelab(local, "models", "show", name).returncode == cli.EXIT_NOT_FOUND
    ok(tunelab(local, "datasets", "delete", dataset["id"]))


def test_read_only_commands_print_tables_and_json(local: LocalApi) -> None:
    workspace = as_json(tunelab(local, "workspace", "--json"))
    assert workspace["id"] == "ws-e2e"

    models = ok(tunelab(local, "base-models", "list", "--available")).stdout.splitlines()
    assert models[0].split()[:3] == ["ID", "NAME", "PROVIDER"]
    assert any(line.startswith(TINY) for line in models[1:])

    providers = as_json(tunelab(local, "--json", "providers", "list"))["items"]
    assert {"provider": "local", "status": "connected"}.items() <= providers[0].items()

    # What to deploy the BYOK connector with: this workspace's own external id, made by tunelab.
    connector = as_json(tunelab(local, "--json", "providers", "connector"))
    assert connector["parameters"]["WorkspaceId"] == "ws-e2e"
    assert connector["parameters"]["ExternalId"] == connector["external_id"]
    assert connector["external_id"].startswith("tunelab-")
    printed = ok(tunelab(local, "providers", "connector")).stdout
    assert f"ExternalId:  {connector['external_id']}" in printed
    assert "--stack-name tunelab-connector-ws-e2e" in printed

    shown = ok(tunelab(local, "base-models", "show", TINY)).stdout
    assert "HYPERPARAMETER" in shown
    assert "epochs" in shown


def test_exit_codes_for_not_found_bad_request_and_no_api(local: LocalApi) -> None:
    assert tunelab(local, "models", "show", "no-such-model").returncode == cli.EXIT_NOT_FOUND
    assert tunelab(local, "datasets", "show", "ds_0000000000").returncode == cli.EXIT_NOT_FOUND

    bad = tunelab(
        local, "models", "estimate", "--base-model", TINY, "--dataset", "ds_0000000000", "--epochs", "999"
    )
    assert bad.returncode in (cli.EXIT_API_ERROR, cli.EXIT_NOT_FOUND)
    assert bad.stderr.startswith("tunelab: ")

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{holder.getsockname()[1]}"
    unreachable = tunelab(local, "workspace", url=closed)
    assert unreachable.returncode == cli.EXIT_UNAVAILABLE
    assert f"Cannot reach the tunelab API at {closed}" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_a_csv_over_5_mib_goes_through_a_presigned_upload_and_is_validated(
    local: LocalApi, tmp_path: Path
) -> None:
    rows = sample_rows("support-triage.csv")
    big = tmp_path / "big.csv"
    # Distinct rows (a number in each prompt) past the 5 MiB limit of a body.
    big.write_bytes(
        csv_of([(f"{prompt} #{i}", completion) for i in range(150) for prompt, completion in rows])
    )
    assert big.stat().st_size > 5 * 1024 * 1024

    dataset = as_json(
        tunelab(local, "datasets", "upload", str(big), "--name", unique("big"), "--wait", "--json")
    )

    assert dataset["status"] == "ready", dataset
    assert dataset["rows"] == 150 * len(rows)
    assert dataset["size_bytes"] == big.stat().st_size
