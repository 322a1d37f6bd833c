"""The container contract's plumbing: folders, torchrun, the failure file, the gated-model token."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.trainer.conftest import TRAINER_DIR
from trainer.environment import read_cluster, resolve_paths, torchrun_command, write_failure
from trainer.reporting import metric_line

pytestmark = pytest.mark.xdist_group("trainer")


def test_folders_default_to_sagemaker_and_follow_overrides():
    defaults = resolve_paths({}, {})
    assert defaults.model_dir == Path("/opt/ml/model")
    assert defaults.failure_file == Path("/opt/ml/output/failure")
    assert defaults.checkpoint_dir == Path("/opt/ml/checkpoints")
    assert defaults.hyperparameters_file == Path("/opt/ml/input/config/hyperparameters.json")

    env = {
        "SM_MODEL_DIR": "/job/model",
        "SM_OUTPUT_DIR": "/job/out",
        "SM_CHANNEL_TRAINING": "/job/train",
        "SM_CHANNEL_VALIDATION": "/job/val",
        "SM_CHANNEL_MODEL": "/job/base",
        "TUNELAB_CHECKPOINT_DIR": "/job/ckpt",
    }
    paths = resolve_paths(env, {"model_dir": "/elsewhere/model"})
    assert paths.model_dir == Path("/elsewhere/model")
    assert paths.failure_file == Path("/job/out/failure")
    assert paths.output_data_dir == Path("/job/out/data")
    assert (paths.train_dir, paths.validation_dir, paths.base_model_dir) == (
        Path("/job/train"),
        Path("/job/val"),
        Path("/job/base"),
    )
    assert paths.checkpoint_dir == Path("/job/ckpt")
    assert resolve_paths({**env, "TUNELAB_FAILURE_FILE": "/f"}, {}).failure_file == Path("/f")


def test_several_hosts_run_under_torchrun_with_this_hosts_rank():
    env = {"SM_HOSTS": '["algo-2", "algo-1"]', "SM_CURRENT_HOST": "algo-2", "SM_NUM_GPUS": "4"}

    cluster = read_cluster(env)
    command = torchrun_command(cluster, Path("/opt/ml/code/train.py"), ["--epochs", "1"], env)

    assert cluster.needs_torchrun
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nnodes=2" in command
    assert "--node_rank=1" in command
    assert "--nproc_per_node=4" in command
    assert "--master_addr=algo-1" in command
    assert command[-3:] == ["/opt/ml/code/train.py", "--epochs", "1"]


def test_one_gpu_on_one_host_runs_directly():
    assert not read_cluster(
        {"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1", "SM_NUM_GPUS": "1"}
    ).needs_torchrun
    assert not read_cluster({}).needs_torchrun


def test_the_failure_reason_hides_secrets_and_fits_sagemaker(tmp_path):
    reason = write_failure(tmp_path / "failure", "401 for token hf_secret123 " + "x" * 2000, ["hf_secret123"])

    written = (tmp_path / "failure").read_text()
    assert written == reason
    assert "hf_secret123" not in written
    assert len(written) <= 1024


def test_the_token_of_a_gated_model_is_read_from_secrets_manager(monkeypatch):
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    from trainer.model_source import read_hf_token

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        client = boto3.client("secretsmanager", region_name="eu-west-1")
        plain = client.create_secret(Name="hf-plain", SecretString="hf_abc\n")["ARN"]
        as_json = client.create_secret(Name="hf-json", SecretString=json.dumps({"token": "hf_def"}))["ARN"]

        assert read_hf_token(plain) == "hf_abc"
        assert read_hf_token(as_json) == "hf_def"


def test_metric_definitions_match_the_metric_lines():
    definitions = json.loads((TRAINER_DIR / "metric_definitions.json").read_text())
    regexes = {d["Name"]: re.compile(d["Regex"]) for d in definitions}

    def value(name: str, line: str) -> float | None:
        match = regexes[name].search(line)
        return float(match.group(1)) if match else None

    train = metric_line("train", {"loss": 0.1234, "learning_rate": 2e-05, "grad_norm": 1.5}, 10, 0.5)
    evaluation = metric_line("eval", {"eval_loss": 1.5e-3}, 20, 1.0)

    assert train == "train_loss=0.1234 learning_rate=2e-05 grad_norm=1.5 step=10 epoch=0.5"
    assert value("train_loss", train) == 0.1234
    assert value("learning_rate", train) == 2e-05
    assert value("epoch", train) == 0.5
    assert value("eval_loss", train) is None
    assert value("eval_loss", evaluation) == 0.0015
    assert value("train_loss", evaluation) is None
    assert value("epoch", evaluation) == 1.0
