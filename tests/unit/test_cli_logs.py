"""`tunelab models logs NAME [--follow]` against a fake API: the lines printed, pages followed, and
`--follow` polling until the model leaves training."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_cli import FakeApi, error, model, run
from tunelab.client import cli

LOGS = "/v1/fine-tuned-models/bot/logs"


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    fake = FakeApi()
    monkeypatch.setattr(cli, "make_client", lambda args: fake.client())
    monkeypatch.setattr("tunelab.client.cli.time.sleep", lambda seconds: None)
    return fake


def line(at: str, message: str) -> dict[str, Any]:
    return {"at": at, "message": message}


def test_logs_prints_each_line_with_its_time_and_follows_full_pages(
    api: FakeApi, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "LOG_PAGE", 2)
    api.on(
        "GET",
        LOGS,
        {
            "items": [line("2026-11-28T12:00:00Z", "step=10 loss=2.1"), line("2026-11-28T12:00:01Z", "b")],
            "next_token": "t1",
        },
        {"items": [line("2026-11-28T12:00:02Z", "train_loss=1.2")], "next_token": None, "message": None},
    )
    exit_code, out, _ = run(capsys, "models", "logs", "bot")
    assert exit_code == cli.EXIT_OK
    assert out.splitlines() == [
        "2026-11-28T12:00:00Z step=10 loss=2.1",
        "2026-11-28T12:00:01Z b",
        "2026-11-28T12:00:02Z train_loss=1.2",
    ]
    sent = api.sent("GET", LOGS)
    assert [r.url.params.get("next_token") for r in sent] == [None, "t1"]


def test_logs_without_follow_stops_when_caught_up_and_says_why_a_log_is_empty(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    message = "Bedrock keeps no training log of its customization jobs."
    api.on("GET", LOGS, {"items": [], "next_token": None, "message": message})
    exit_code, out, err = run(capsys, "models", "logs", "bot")
    assert exit_code == cli.EXIT_OK
    assert out == ""
    assert message in err


def test_follow_polls_while_training_then_prints_the_rest_and_exits(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on(
        "GET",
        LOGS,
        # No job yet: no token; the model still trains, so ask again.
        {"items": [], "next_token": None, "message": "The training job has not started yet."},
        {"items": [line("2026-11-28T12:00:00Z", "step=1")], "next_token": "t1"},
        {"items": [], "next_token": "t1"},
        {"items": [line("2026-11-28T12:00:09Z", "train_loss=0.5")], "next_token": None},
    )
    api.on("GET", "/v1/fine-tuned-models/bot", model(status="training"))
    exit_code, out, err = run(capsys, "models", "logs", "bot", "--follow", "--interval", "0.01")
    assert exit_code == cli.EXIT_OK
    assert out.splitlines() == ["2026-11-28T12:00:00Z step=1", "2026-11-28T12:00:09Z train_loss=0.5"]
    assert err.count("has not started yet") == 1
    assert [r.url.params.get("next_token") for r in api.sent("GET", LOGS)] == [None, None, "t1", "t1"]


def test_follow_of_a_model_with_no_log_to_follow_exits(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("GET", LOGS, {"items": [], "next_token": None, "message": "This model has no training job."})
    api.on("GET", "/v1/fine-tuned-models/bot", model(status="training_failed"))
    exit_code, _, _ = run(capsys, "models", "logs", "bot", "--follow")
    assert exit_code == cli.EXIT_OK


def test_logs_of_an_unknown_model_exits_3(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on(
        "GET",
        "/v1/fine-tuned-models/nobody/logs",
        error(404, "not_found", "There is no fine-tuned model 'nobody' in this workspace."),
    )
    exit_code, _, _ = run(capsys, "models", "logs", "nobody")
    assert exit_code == cli.EXIT_NOT_FOUND
