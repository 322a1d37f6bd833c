"""The local provider's contract: its configuration and its events, shaped like SageMaker's.

The embedded local runtime trains for real: `tunelab.local.provider` runs `trainer/train.py` in a
subprocess with SageMaker's container contract and serves models in-process. Its training jobs
report state changes on tunelab's event bus with `source` "tunelab.local" (never an AWS source) and
a detail shaped like SageMaker's "SageMaker Training Job State Change": `TrainingJobName`,
`TrainingJobArn`, `TrainingJobStatus` (InProgress, Completed, Failed, Stopping, Stopped),
`SecondaryStatus`, `FailureReason`, `FinalMetricDataList`, `ModelArtifacts.S3ModelArtifacts`,
`Tags`, and a `Progress` object (step, max_steps, epoch, loss, eval_loss, eta_seconds) that
becomes the phase a progress bar reads ("Training 40/120 steps, ETA 0:35").

This module imports neither boto3 nor torch: the event handler parses with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tunelab.adapters.providers.common import event_time, final_metrics
from tunelab.domain.providers import TrainingState, TrainingStatus, UnhandledEventError

EVENT_SOURCE = "tunelab.local"
TRAINING_EVENT = "Local Training Job State Change"
# The phase while the trainer runs; `progress_phase` adds the steps and the time left to it.
TRAINING_PHASE = "Training"

_TRAINING_STATUS: dict[str, TrainingStatus] = {
    "InProgress": "in_progress",
    "Completed": "completed",
    "Failed": "failed",
    "Stopping": "stopping",
    "Stopped": "stopped",
}


class LocalProviderConfig(BaseModel):
    """Where the local provider keeps jobs and models, and the embedded stack it reports to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path
    # The embedded AWS endpoint (moto); None: boto3's default (tests under `mock_aws`).
    endpoint_url: str | None = None
    region: str = "us-east-1"
    event_bus_name: str
    artifacts_bucket: str
    account_id: str = "000000000000"
    # The trainer's folder (with train.py); `composition.trainer.trainer_dir()` when absent.
    trainer_dir: Path | None = None
    # At most one in-progress event per this many seconds (an evaluation is sent at once).
    progress_interval_s: float = Field(default=10.0, gt=0)
    # How long a stopped trainer may take to save before it is killed (SageMaker gives 120 s).
    stop_grace_s: float = Field(default=120.0, gt=0)


class JobProgress(BaseModel):
    """Where a running trainer is, from its progress lines."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    step: int = 0
    max_steps: int = 0
    epoch: float | None = None
    loss: float | None = None
    eval_loss: float | None = None
    eta_seconds: float | None = None


def format_duration(seconds: float) -> str:
    """`0:35`, `12:05`, `1:02:03`."""
    whole = max(round(seconds), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_phase(secondary: str | None, progress: JobProgress | None) -> str | None:
    """The phase a person (and the CLI's progress bar) reads: "Training 40/120 steps, ETA 0:35"."""
    if secondary != TRAINING_PHASE or progress is None or progress.max_steps <= 0:
        return secondary
    text = f"{TRAINING_PHASE} {progress.step}/{progress.max_steps} steps"
    if progress.eta_seconds is not None and progress.step < progress.max_steps:
        text += f", ETA {format_duration(progress.eta_seconds)}"
    return text


def training_state(detail: Mapping[str, Any]) -> TrainingState:
    """A TrainingState from a local job's event detail (or the provider's own description of a job)."""
    raw = detail.get("TrainingJobStatus")
    if not isinstance(raw, str):
        raise UnhandledEventError("no TrainingJobStatus in the event")
    try:
        status = _TRAINING_STATUS[raw]
    except KeyError:
        raise UnhandledEventError(f"unknown local training status {raw!r}") from None
    secondary = detail.get("SecondaryStatus") if isinstance(detail.get("SecondaryStatus"), str) else None
    progress_data = detail.get("Progress")
    progress = JobProgress.model_validate(progress_data) if isinstance(progress_data, Mapping) else None
    artifacts = detail.get("ModelArtifacts") if isinstance(detail.get("ModelArtifacts"), Mapping) else {}
    assert isinstance(artifacts, Mapping)
    failure = detail.get("FailureReason")
    terminal = status in ("completed", "failed", "stopped")
    return TrainingState(
        job_id=str(detail.get("TrainingJobName", "")),
        status=status,
        phase=progress_phase(secondary, progress) if status == "in_progress" else secondary,
        failure_reason=str(failure) if failure and status == "failed" else None,
        metrics=final_metrics(detail.get("FinalMetricDataList")),
        artifacts_uri=artifacts.get("S3ModelArtifacts") if status == "completed" else None,
        ended_at=event_time(detail.get("TrainingEndTime")) if terminal else None,
    )


def parse_event(detail_type: str, detail: Mapping[str, Any]) -> TrainingState:
    """The local runtime's training events ("Local Training Job State Change")."""
    if detail_type == TRAINING_EVENT:
        return training_state(detail)
    raise UnhandledEventError(f"local events of type {detail_type!r} are not handled")
