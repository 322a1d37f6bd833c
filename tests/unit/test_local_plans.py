"""`tunelab local token --plan`: the local operator's path to a workspace's plan, recorded in the data dir
(the runtime applies it at start; a running one at once — see tests/e2e), and never in the token."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest

from tunelab.client.cli import main
from tunelab.local.aws_access import new_access, write_access
from tunelab.local.files import secure_data_dir
from tunelab.local.plans import PLANS_FILE, recorded_plans
from tunelab.local.tokens import load_or_create_secret, verify_token


def _token(data_dir: Path, *extra: str) -> list[str]:
    return [
        "local",
        "token",
        "--workspace",
        "ws-acme",
        "--email",
        "op@example.com",
        "--data-dir",
        str(data_dir),
        *extra,
    ]


def test_a_plan_is_recorded_privately_and_the_token_carries_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"

    assert main(_token(data_dir, "--plan", "trial")) == 0
    assert (
        main([*_token(data_dir, "--plan", "internal")[:-2], "--workspace", "ws-b", "--plan", "internal"]) == 0
    )

    token = capsys.readouterr().out.splitlines()[0]
    assert "custom:plan" not in verify_token(load_or_create_secret(data_dir), token)
    assert recorded_plans(data_dir) == {"ws-acme": "trial", "ws-b": "internal"}
    assert stat.S_IMODE((data_dir / PLANS_FILE).stat().st_mode) == 0o600


def test_a_runtime_that_died_leaving_its_access_file_does_not_lose_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A runtime killed with SIGKILL leaves aws-access.json behind; nothing answers at its endpoint.
    data_dir = secure_data_dir(tmp_path / "data")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    write_access(data_dir, new_access(f"http://127.0.0.1:{port}", "us-east-1"))

    code = main(_token(data_dir, "--plan", "trial"))

    out, err = capsys.readouterr()
    assert code == 0
    assert out.count(".") == 2  # the token, alone
    assert "the plan is recorded" in err
    assert "Traceback" not in err
    assert json.loads((data_dir / PLANS_FILE).read_text()) == {"ws-acme": "trial"}
