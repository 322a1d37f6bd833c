"""Session hooks for the whole suite (loaded first, on pytest-xdist's controller too).

The fault suite (`tests/faults/`) keeps its figures in `tests.faults.tally.TALLY`, one per process:
each worker hands its figures to the controller, which adds them up and prints them at the end.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.faults.tally import TALLY

_WORKER_KEY = "tunelab_fault_tally"


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: hand the figures to the controller
        workeroutput[_WORKER_KEY] = json.dumps(TALLY.to_json())


def pytest_testnodedown(node: Any, error: Any) -> None:  # pytest-xdist's controller hook
    data = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
    if data:
        TALLY.add(json.loads(data))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = TALLY.lines()
    if lines:
        terminalreporter.section("tunelab fault suite")
        for line in lines:
            terminalreporter.write_line(line)
