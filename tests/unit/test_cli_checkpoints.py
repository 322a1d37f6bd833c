"""`tunelab models checkpoints NAME` against a fake API: a table of the checkpoints, or why there are
none."""

from __future__ import annotations

import json

import pytest

from tests.unit.test_cli import FakeApi, run
from tunelab.client import cli

CHECKPOINTS = "/v1/fine-tuned-models/bot/checkpoints"
ITEMS = [
    {
        "id": "checkpoint-4",
        "step": 4,
        "epoch": 0.5,
        "train_loss": 2.123456,
        "eval_loss": None,
        "saved_at": "2026-11-28T12:00:00Z",
        "size_bytes": 2_000_000,
    },
    {
        "id": "checkpoint-8",
        "step": 8,
        "epoch": 1.0,
        "train_loss": 1.5,
        "eval_loss": 1.75,
        "saved_at": "2026-11-28T12:05:00Z",
        "size_bytes": None,
    },
]


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    fake = FakeApi()
    monkeypatch.setattr(cli, "make_client", lambda args: fake.client())
    return fake


def test_checkpoints_are_a_table_by_step(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on("GET", CHECKPOINTS, {"items": ITEMS, "message": None})
    exit_code, out, err = run(capsys, "models", "checkpoints", "bot")
    assert exit_code == cli.EXIT_OK
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STEP", "EPOCH", "TRAIN", "LOSS", "EVAL", "LOSS", "SAVED", "SIZE"]
    assert lines[1].split()[:4] == ["checkpoint-4", "4", "0.50", "2.1235"]
    assert lines[2].split()[:5] == ["checkpoint-8", "8", "1.00", "1.5000", "1.7500"]
    assert err == ""


def test_none_kept_says_why(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    message = "Bedrock keeps no checkpoints of its customization jobs."
    api.on("GET", CHECKPOINTS, {"items": [], "message": message})
    exit_code, out, err = run(capsys, "models", "checkpoints", "bot")
    assert exit_code == cli.EXIT_OK
    assert out == ""
    assert message in err


def test_json_prints_the_answer(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on("GET", CHECKPOINTS, {"items": ITEMS, "message": None})
    exit_code, out, _ = run(capsys, "--json", "models", "checkpoints", "bot")
    assert exit_code == cli.EXIT_OK
    assert json.loads(out)["items"] == ITEMS
