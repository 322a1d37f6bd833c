"""The local provider's training log: the job's `trainer.log`, each line stamped as it was written,
read by byte offset (no training here; `tests/integration/test_provider_local.py` reads a real job's)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tunelab.adapters.providers.local import LocalProviderConfig
from tunelab.domain.errors import ValidationFailed
from tunelab.domain.providers import TrainingJobRef
from tunelab.local.provider import LOG_FILE, LocalJobs, LocalProvider

JOB = "support-bot-0123456789"
REF = TrainingJobRef(provider="local", job_id=JOB, job_name=JOB)


@pytest.fixture
def provider(tmp_path: Path) -> LocalProvider:
    config = LocalProviderConfig(data_dir=tmp_path, event_bus_name="bus", artifacts_bucket="bucket")
    unused: Any = object()  # no AWS client is called for the log
    jobs = LocalJobs(config, unused, unused, trainer_dir=lambda: tmp_path)
    return LocalProvider(jobs, unused, unused)


def _log(provider: LocalProvider, text: str) -> Path:
    path = provider.jobs.root / JOB / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)
    return path


def test_a_job_whose_trainer_has_not_written_has_no_lines_yet(provider: LocalProvider) -> None:
    page = provider.training_log(REF, position=None, limit=10)
    assert page.lines == ()
    assert page.message == "The trainer has not written to the job's log yet."
    assert json.loads(page.position or "") == {"offset": 0}


def test_lines_come_with_their_time_page_by_page_and_a_half_written_line_waits(
    provider: LocalProvider,
) -> None:
    _log(
        provider,
        "2026-11-28T12:00:00.125Z step=1 train_loss=2.10\n"
        "2026-11-28T12:00:01.500Z step=2 train_loss=1.90\n"
        "2026-11-28T12:00:02.000Z step=3 train_lo",
    )
    first = provider.training_log(REF, position=None, limit=1)
    assert [(line.at, line.message) for line in first.lines] == [
        (datetime(2026, 11, 28, 12, 0, 0, 125000, tzinfo=UTC), "step=1 train_loss=2.10")
    ]
    second = provider.training_log(REF, position=first.position, limit=10)
    assert [line.message for line in second.lines] == ["step=2 train_loss=1.90"]
    # The trainer finishes the line: it is read whole, once.
    _log(provider, "ss=1.70\n")
    third = provider.training_log(REF, position=second.position, limit=10)
    assert [line.message for line in third.lines] == ["step=3 train_loss=1.70"]
    assert provider.training_log(REF, position=third.position, limit=10).lines == ()


def test_a_line_without_a_time_gets_the_time_the_log_was_written(provider: LocalProvider) -> None:
    path = _log(provider, "written before lines had times\n")
    os.utime(path, (1_764_331_200, 1_764_331_200))
    (line,) = provider.training_log(REF, position=None, limit=10).lines
    assert line.message == "written before lines had times"
    assert line.at == datetime.fromtimestamp(1_764_331_200, UTC)


@pytest.mark.parametrize("position", ["nonsense", '{"offset": -1}', '{"offset": "3"}', '{"offset": 999}'])
def test_a_position_the_log_did_not_give_is_refused(provider: LocalProvider, position: str) -> None:
    _log(provider, "2026-11-28T12:00:00.000Z hello\n")
    with pytest.raises(ValidationFailed) as refused:
        provider.training_log(REF, position=position, limit=10)
    assert refused.value.details[0].field == "next_token"
