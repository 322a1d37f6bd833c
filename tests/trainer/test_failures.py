"""Bad input ends the job with a reason in the failure file and a non-zero exit, before a model loads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainer.conftest import TRAINER_DIR, job_environment, sagemaker_hyperparameters
from trainer.train import main

pytestmark = pytest.mark.xdist_group("trainer")

GOOD = json.dumps({"prompt": "Ticket: login fails", "completion": "category=login; priority=high"})


def _run(
    tmp_path: Path, lines: list[str], hyperparameters: dict[str, object] | None = None
) -> tuple[int, str]:
    train = tmp_path / "training"
    train.mkdir()
    (train / "rows.jsonl").write_text("".join(line + "\n" for line in lines))
    (tmp_path / "hyperparameters.json").write_text(
        json.dumps(sagemaker_hyperparameters({"base_model": "/nonexistent/model", **(hyperparameters or {})}))
    )
    code = main([], job_environment(tmp_path, train))
    failure = tmp_path / "output" / "failure"
    return code, failure.read_text() if failure.exists() else ""


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        (
            [GOOD, json.dumps({"prompt": "no completion here"})],
            "rows.jsonl line 2: missing the field 'completion'",
        ),
        ([], "training data holds no rows"),
        ([GOOD, "{not json", GOOD], "rows.jsonl line 2: not a JSON object"),
        ([GOOD, json.dumps(["a", "b"])], "rows.jsonl line 2: not a JSON object"),
        ([json.dumps({"prompt": 1, "completion": "x"})], "line 1: 'prompt' and 'completion' must be text"),
    ],
    ids=["missing-field", "empty-file", "not-json", "not-an-object", "not-text"],
)
def test_bad_training_data_writes_the_failure_file(tmp_path, lines, reason):
    code, failure = _run(tmp_path, lines)

    assert code != 0
    assert reason in failure


def test_bad_hyperparameters_write_the_failure_file(tmp_path):
    code, failure = _run(tmp_path, [GOOD], {"epochs": "many"})

    assert code != 0
    assert failure == "hyperparameter 'epochs' must be a number, not 'many'"


def test_a_missing_base_model_folder_is_reported(tmp_path):
    code, failure = _run(tmp_path, [GOOD])

    assert code != 0
    assert failure == "the base model folder /nonexistent/model does not exist"


def test_the_script_run_as_sagemaker_does_exits_non_zero_on_bad_data(tmp_path):
    code_dir = (
        tmp_path / "code"
    )  # SageMaker copies source_dir to /opt/ml/code and runs `python train.py` there
    shutil.copytree(TRAINER_DIR, code_dir, ignore=shutil.ignore_patterns("__pycache__"))
    train = tmp_path / "training"
    train.mkdir()
    (train / "rows.jsonl").write_text("not json\n")
    env = job_environment(tmp_path, train)

    done = subprocess.run(
        [sys.executable, "train.py", "--base_model", "/nonexistent"],
        cwd=code_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1
    assert "rows.jsonl line 1: not a JSON object" in (tmp_path / "output" / "failure").read_text()
    assert "rows.jsonl line 1" in done.stderr
