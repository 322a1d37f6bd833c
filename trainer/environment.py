"""The SageMaker training-container contract: folders, hosts and GPUs, the failure file, torchrun.

Every folder has a SageMaker default and can be pointed elsewhere by an environment variable or a
command-line argument, so the local runtime runs the same program against a folder of its own.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# SageMaker's FailureReason holds at most 1024 characters.
FAILURE_REASON_LIMIT = 1024
DEFAULT_MASTER_PORT = 29500


@dataclass(frozen=True)
class Paths:
    """Where the program reads its inputs and writes its outputs."""

    train_dir: Path | None
    validation_dir: Path | None
    base_model_dir: Path | None
    model_dir: Path
    output_data_dir: Path
    checkpoint_dir: Path
    failure_file: Path
    hyperparameters_file: Path


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def resolve_paths(env: Mapping[str, str], overrides: Mapping[str, str]) -> Paths:
    """Folders from command-line overrides first, then environment variables, then SageMaker's defaults."""
    output_dir = Path(overrides.get("output_dir") or env.get("SM_OUTPUT_DIR") or "/opt/ml/output")

    def pick(argument: str, *variables: str, default: str | None = None) -> str | None:
        if overrides.get(argument):
            return overrides[argument]
        for variable in variables:
            if env.get(variable):
                return env[variable]
        return default

    failure = pick("failure_file", "TUNELAB_FAILURE_FILE", default=str(output_dir / "failure"))
    return Paths(
        train_dir=_path(pick("train_dir", "SM_CHANNEL_TRAINING", "SM_CHANNEL_TRAIN")),
        validation_dir=_path(pick("validation_dir", "SM_CHANNEL_VALIDATION")),
        base_model_dir=_path(pick("base_model_dir", "SM_CHANNEL_MODEL")),
        model_dir=Path(pick("model_dir", "SM_MODEL_DIR", default="/opt/ml/model") or "/opt/ml/model"),
        output_data_dir=Path(
            pick("output_data_dir", "SM_OUTPUT_DATA_DIR", default=str(output_dir / "data")) or output_dir
        ),
        checkpoint_dir=Path(
            pick("checkpoint_dir", "TUNELAB_CHECKPOINT_DIR", default="/opt/ml/checkpoints")
            or "/opt/ml/checkpoints"
        ),
        failure_file=Path(failure or output_dir / "failure"),
        hyperparameters_file=Path(
            pick(
                "hyperparameters_file",
                "TUNELAB_HYPERPARAMETERS_FILE",
                default="/opt/ml/input/config/hyperparameters.json",
            )
            or "/opt/ml/input/config/hyperparameters.json"
        ),
    )


def write_failure(path: Path, reason: str, secrets: Sequence[str] = ()) -> str:
    """Write ``reason`` (secrets removed, within SageMaker's limit) where SageMaker reads FailureReason."""
    for secret in secrets:
        if secret:
            reason = reason.replace(secret, "***")
    reason = reason.strip() or "training failed"
    if len(reason) > FAILURE_REASON_LIMIT:
        reason = reason[: FAILURE_REASON_LIMIT - 3] + "..."
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(reason, encoding="utf-8")
    except OSError as error:  # the reason still reaches the log
        print(f"could not write the failure file {path}: {error}", file=sys.stderr)
    return reason


@dataclass(frozen=True)
class Cluster:
    """The hosts of the job and the GPUs of this host, as SageMaker describes them."""

    hosts: tuple[str, ...]
    current_host: str
    num_gpus: int

    @property
    def node_rank(self) -> int:
        return self.hosts.index(self.current_host) if self.current_host in self.hosts else 0

    @property
    def needs_torchrun(self) -> bool:
        return self.num_gpus > 1 or len(self.hosts) > 1


def read_cluster(env: Mapping[str, str], gpu_count: int | None = None) -> Cluster:
    """Hosts from ``SM_HOSTS``/``SM_CURRENT_HOST`` and GPUs from ``SM_NUM_GPUS`` (or ``gpu_count``)."""
    hosts_text = env.get("SM_HOSTS", "")
    try:
        hosts = tuple(json.loads(hosts_text)) if hosts_text else ()
    except ValueError:
        hosts = tuple(host.strip() for host in hosts_text.split(",") if host.strip())
    current = env.get("SM_CURRENT_HOST", hosts[0] if hosts else "localhost")
    if not hosts:
        hosts = (current,)
    gpus_text = env.get("SM_NUM_GPUS")
    num_gpus = int(gpus_text) if gpus_text and gpus_text.isdigit() else (gpu_count or 0)
    return Cluster(hosts=tuple(sorted(hosts)), current_host=current, num_gpus=num_gpus)


def under_torchrun(env: Mapping[str, str]) -> bool:
    return "LOCAL_RANK" in env and "WORLD_SIZE" in env


def torchrun_command(
    cluster: Cluster, script: Path, argv: Sequence[str], env: Mapping[str, str]
) -> list[str]:
    """The command that re-runs this program under torchrun, one process per GPU on every host."""
    port = env.get("TUNELAB_MASTER_PORT", str(DEFAULT_MASTER_PORT))
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={len(cluster.hosts)}",
        f"--node_rank={cluster.node_rank}",
        f"--nproc_per_node={max(cluster.num_gpus, 1)}",
        f"--master_addr={cluster.hosts[0]}",
        f"--master_port={port}",
        str(script),
        *argv,
    ]


def is_main_process(env: Mapping[str, str]) -> bool:
    """Rank 0 of the whole job (or the only process)."""
    return env.get("RANK", "0") == "0"


def is_local_main_process(env: Mapping[str, str]) -> bool:
    """The first process on this host: it owns this host's failure file."""
    return env.get("LOCAL_RANK", "0") == "0"
