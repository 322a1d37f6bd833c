"""The local provider's runtime side: training jobs in subprocesses, an in-process inference server.

* Training (`LocalJobs`): a job is a folder `<data-dir>/jobs/<job name>/` laid out like SageMaker's
  container (`input/data/<channel>/`, `input/config/hyperparameters.json`, `model/`,
  `output/data/`, `output/failure`, `checkpoints/`), plus `job.json` (its state) and `trainer.log`.
  A thread downloads the data from the embedded S3, prepares the base model
  (`tunelab.local.models`), runs `python trainer/train.py` with the SM_* variables, reads its
  progress and metric lines, and reports each change as a "Local Training Job State Change" event
  (`tunelab.adapters.providers.local`) on tunelab's bus. On success `model/` is packed into `model.tar.gz`
  and uploaded to the artifacts bucket; when the trainer wrote a merged copy of an unmerged LoRA model
  (`output/data/merged/`), `output/data/` is packed into `output.tar.gz` next to it, as SageMaker
  uploads its output data folder; a non-zero exit fails the job with the trainer's failure
  file (or the last lines it printed); a stop sends SIGTERM (the trainer saves) and kills after a
  grace period.
* Serving (`InferenceServers`): a deployment downloads its archive (`model.tar.gz`, or an unmerged LoRA
  model's `output.tar.gz`, served from its `merged/` folder), loads it with transformers on the CPU
  (full weights, or base + LoRA adapter through peft) in a background thread, and answers
  `invoke` with the tokenizer's chat template.
* `install(context)`: what the embedded runtime calls once its stack exists; registers the provider
  factory in `tunelab.composition.wiring` and returns the shutdown hook.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from tunelab.adapters.aws_errors import aws_call, is_not_found
from tunelab.adapters.providers.common import (
    MODEL_ARCHIVE,
    OUTPUT_ARCHIVE,
    archive_output,
    evaluation_of,
    output_archive_uri,
    resume_point_of,
)
from tunelab.adapters.providers.local import (
    EVENT_SOURCE,
    TRAINING_EVENT,
    TRAINING_PHASE,
    JobProgress,
    LocalProviderConfig,
    progress_phase,
    training_state,
)
from tunelab.adapters.s3 import S3Objects
from tunelab.composition import wiring
from tunelab.composition.stack_definitions import EventRuleSpec
from tunelab.composition.trainer import trainer_dir
from tunelab.domain.catalog import BaseModelSpec
from tunelab.domain.checkpoints import (
    CheckpointInfo,
    CheckpointList,
    by_step,
    checkpoint_info,
    checkpoint_step,
    unknown_checkpoint,
)
from tunelab.domain.errors import InvalidState, NotFound, ProviderError, TunelabError, ValidationFailed
from tunelab.domain.evaluation import BASE_ANSWERS_FILE, REPORT_FILE, EvaluationReport, EvaluationSkipped
from tunelab.domain.hyperparameters import (
    ResolvedHyperparameters,
    ResolvedOptionalHyperparameters,
    to_trainer_hyperparameters,
)
from tunelab.domain.layout import TRAINING_DATA_PREFIX, s3_split
from tunelab.domain.providers import (
    DeploymentRef,
    DeploymentState,
    DeploymentStatus,
    DeployRequest,
    DownloadLink,
    InvokeParams,
    InvokeResult,
    ModelIdentity,
    ProviderName,
    ResumePoint,
    TrainedModel,
    TrainedOutput,
    TrainingJobRef,
    TrainingRequest,
    TrainingState,
    derived_name,
)
from tunelab.domain.training_logs import (
    TrainingLogLine,
    TrainingLogPage,
    bad_log_token,
    decode_position,
    encode_position,
)
from tunelab.local import models

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client

    from tunelab.local.context import LocalContext

logger = logging.getLogger("tunelab.local.provider")

# The local jobs' events go to the provider-events queue, like SageMaker's.
LOCAL_EVENT_RULES: tuple[EventRuleSpec, ...] = (
    EventRuleSpec(
        logical_id="LocalTrainingRule",
        description="Local training job state changes (the embedded runtime's trainer)",
        bus="tunelab",
        event_pattern={"source": [EVENT_SOURCE], "detail-type": [TRAINING_EVENT]},
        target_queue="ProviderEventsQueue",
    ),
)

JOBS_DIR = "jobs"
DEPLOYMENTS_DIR = "deployments"
JOB_FILE = "job.json"
# A deployment's folder: what it was deployed from, and a mark once its archive is unpacked.
DEPLOYMENT_FILE = "deployment.json"
UNPACKED_MARK = ".unpacked"
LOG_FILE = "trainer.log"
TRAINER_PROGRAM = "train.py"
PROGRESS_PREFIX = "tunelab-progress "
# The trainer's merged copy of an unmerged LoRA model, in its output data folder (`trainer/README.md`).
MERGED_FOLDER = "merged"
ARTIFACTS_PREFIX = "local-jobs"
DOWNLOAD_EXPIRES_S = 15 * 60
# Lines of the trainer's output kept for a failure reason when it wrote no failure file.
TAIL_LINES = 12
FAILURE_REASON_LIMIT = 1024
# Shutdown (Ctrl-C) waits this long for stopped trainers to save before killing them.
SHUTDOWN_GRACE_S = 15.0
# Below this size a model trains and generates fastest on one CPU thread: its matrices are too small to
# share out, and on a busy machine more threads wait on each other (the tiny Llama on a loaded 2-core
# machine: 25 training steps in 12 s on one thread, 78 s on two; 17 against 6 generated tokens/s).
ONE_THREAD_BELOW_PARAMETERS = 10_000_000
# A sandbox call answers within API Gateway's 29 s integration limit: generation stops at this time.
INVOKE_MAX_TIME_S = 25.0

JobStatus = Literal["InProgress", "Completed", "Failed", "Stopping", "Stopped"]
_TERMINAL: frozenset[str] = frozenset({"Completed", "Failed", "Stopped"})
_METRIC = re.compile(r"^(train_loss|eval_loss)=")
_PAIR = re.compile(r"(\w+)=(\S+)")


def _now() -> datetime:
    return datetime.now(UTC)


def job_name(identity: ModelIdentity, attempt: int = 0) -> str:
    """One job name per model record and attempt (a resume's job has a folder of its own): a retried
    start finds the same job."""
    parts = [f"attempt-{attempt}"] if attempt else []
    return derived_name(identity.model_name, identity.digest("local-training", *parts))


def deployment_name(request: DeployRequest) -> str:
    return derived_name(request.identity.model_name, request.deploy_digest(), digest_len=8)


def model_prefix(identity: ModelIdentity) -> str:
    return f"{ARTIFACTS_PREFIX}/{identity.workspace_id}/{identity.model_name}"


# --- the job's state, kept in job.json ----------------------------------------------------------------


class JobRecord(BaseModel):
    """A local training job as `job.json` holds it; the events and `describe_training` read it."""

    model_config = ConfigDict(extra="ignore")

    name: str
    arn: str
    workspace_id: str
    model_name: str
    base_model_id: str
    status: JobStatus = "InProgress"
    secondary: str = "Starting"
    failure_reason: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    progress: JobProgress | None = None
    output_uri: str
    artifacts_uri: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    created_at: datetime
    training_started_at: datetime | None = None
    ended_at: datetime | None = None
    stop_requested: bool = False
    exit_code: int | None = None
    pid: int | None = None
    # CPU threads the trainer may use (OMP_NUM_THREADS); None: torch's default.
    threads: int | None = None
    # The runtime stopped (or was killed) while the job ran: the next start picks it up (`recover`).
    interrupted: bool = False
    # How often a start of the runtime resumed the job from a checkpoint, and from which.
    resumed: int = 0
    resumed_from: str | None = None
    # The checkpoint folder of the parent's job this job's model starts from (`ParentModel.checkpoint`).
    started_from: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in _TERMINAL

    def detail(self) -> dict[str, Any]:
        """The event detail, shaped like SageMaker's "Training Job State Change"."""
        stamp = int((self.ended_at or _now()).timestamp() * 1000)
        detail: dict[str, Any] = {
            "TrainingJobName": self.name,
            "TrainingJobArn": self.arn,
            "TrainingJobStatus": self.status,
            "SecondaryStatus": self.secondary,
            "CreationTime": int(self.created_at.timestamp() * 1000),
            "LastModifiedTime": int(_now().timestamp() * 1000),
            "FinalMetricDataList": [
                {"MetricName": name, "Value": value, "Timestamp": stamp}
                for name, value in sorted(self.metrics.items())
            ],
            "ModelArtifacts": {"S3ModelArtifacts": self.artifacts_uri} if self.artifacts_uri else {},
            "OutputDataConfig": {"S3OutputPath": self.output_uri},
            "Tags": dict(self.tags),
        }
        if self.failure_reason:
            detail["FailureReason"] = self.failure_reason
        if self.progress is not None:
            detail["Progress"] = self.progress.model_dump()
        if self.training_started_at is not None:
            detail["TrainingStartTime"] = int(self.training_started_at.timestamp() * 1000)
        if self.ended_at is not None:
            detail["TrainingEndTime"] = int(self.ended_at.timestamp() * 1000)
        return detail

    def state(self) -> TrainingState:
        return training_state(self.detail())


class StopRequestedError(Exception):
    """A stop arrived before the trainer started."""


class InterruptedError_(Exception):  # noqa: N801, N818  # not the builtin's meaning
    """The runtime is stopping: the job stays as it is, for the next start to pick up."""


@dataclass
class _Job:
    record: JobRecord
    folder: Path
    lock: threading.RLock = field(default_factory=threading.RLock)
    process: subprocess.Popen[str] | None = None
    thread: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))


def _clip(reason: str) -> str:
    reason = reason.strip() or "training failed"
    return reason if len(reason) <= FAILURE_REASON_LIMIT else reason[: FAILURE_REASON_LIMIT - 3] + "..."


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def pack_model(model_dir: Path, archive: Path) -> Path:
    """`model.tar.gz` with the folder's files at its root, as SageMaker packs /opt/ml/model (and
    `output.tar.gz` of /opt/ml/output/data).

    Compressed at gzip's fastest level: on SmolLM2-135M's converted weights (538 MB) the
    default level 9 took 121 s where level 1 took 15 s for an archive 6 % larger (measured)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(model_dir).as_posix())
    return archive


class LocalJobs:
    """Training jobs of one data dir: started, watched, stopped and removed by name."""

    def __init__(
        self,
        config: LocalProviderConfig,
        s3: S3Client,
        events: EventBridgeClient,
        *,
        trainer_dir: Callable[[], Path],
    ) -> None:
        self.config = config
        self.s3 = s3
        self.events = events
        self._trainer_dir = trainer_dir
        self.root = config.data_dir / JOBS_DIR
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    # --- the public operations ---

    def start(self, request: TrainingRequest) -> TrainingJobRef:
        """Start the job of this request; a second call for the same model finds the first job."""
        identity = request.identity
        name = job_name(identity, request.attempt)
        output_uri = f"s3://{self.config.artifacts_bucket}/{model_prefix(identity)}/output/"
        ref = TrainingJobRef(provider="local", job_id=name, job_name=name, output_uri=output_uri)
        with self._lock:
            if name in self._jobs or self._load(name) is not None:
                return ref
            folder = self.root / name
            record = JobRecord(
                name=name,
                arn=f"arn:tunelab:local:{self.config.region}:{self.config.account_id}:training-job/{name}",
                workspace_id=identity.workspace_id,
                model_name=identity.model_name,
                base_model_id=request.base_model.id,
                output_uri=output_uri,
                tags={**request.tags, "tunelab-model": identity.model_name},
                created_at=_now(),
                threads=_threads(request),
            )
            for sub in ("input/data", "input/config", "model", "output/data", "checkpoints"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            if request.attempt:
                # A resume: the earlier attempt's newest checkpoint is copied into this job's folder,
                # where the trainer resumes from it (the earlier job's folder stays as it ended).
                found = self.resume_checkpoint(identity, request.attempt - 1)
                if found is not None:
                    shutil.copytree(found, folder / "checkpoints" / found.name, dirs_exist_ok=True)
                    record.resumed_from = found.name
                    # The base model's evaluation answers, which the trainer saved beside its checkpoints
                    # (as SageMaker copies the whole checkpoint folder back for a resumed job).
                    answers = found.parent / BASE_ANSWERS_FILE
                    if answers.is_file():
                        shutil.copy2(answers, folder / "checkpoints" / BASE_ANSWERS_FILE)
            (folder / "request.json").write_text(request.model_dump_json(indent=2), encoding="utf-8")
            job = _Job(record=record, folder=folder)
            self._save(job)
            self._jobs[name] = job
            job.thread = threading.Thread(
                target=self._run, args=(job, request), name=f"local-job-{name}", daemon=True
            )
        # The first event goes out before the job's thread can send the next one.
        self._emit(job)
        job.thread.start()
        return ref

    def resume_checkpoint(self, identity: ModelIdentity, attempt: int) -> Path | None:
        """The newest checkpoint the model's jobs saved, looking from `attempt`'s folder back to the
        first job's (an attempt that failed before saving one leaves the earlier one the newest)."""
        for earlier in range(attempt, -1, -1):
            found = latest_checkpoint(self.root / job_name(identity, earlier) / "checkpoints")
            if found is not None:
                return found
        return None

    def describe(self, name: str) -> JobRecord:
        with self._lock:
            job = self._jobs.get(name) or self._load(name)
        if job is None:
            raise NotFound(f"There is no local training job {name}.")
        with job.lock:
            return job.record.model_copy(deep=True)

    def stop(self, name: str, *, grace_s: float | None = None, reason: str | None = None) -> None:
        """SIGTERM the trainer (it saves and exits); killed after `grace_s`. An ended job stays as it is."""
        with self._lock:
            job = self._jobs.get(name)
        if job is None:
            return
        with job.lock:
            if job.record.terminal or job.record.stop_requested:
                return
            job.record.stop_requested = True
            job.record.status = "Stopping"
            job.record.secondary = "Stopping"
            if reason:
                job.record.failure_reason = reason
            self._save(job)
            process = job.process
        self._emit(job)
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            grace = self.config.stop_grace_s if grace_s is None else grace_s
            killer = threading.Timer(grace, self._kill, args=(job,))
            killer.daemon = True
            killer.start()

    def wait(self, name: str, timeout: float | None = None) -> bool:
        """Wait until the job has ended (tests, shutdown); True when it has."""
        with self._lock:
            job = self._jobs.get(name)
        return True if job is None else job.done.wait(timeout)

    def delete(self, name: str) -> None:
        with self._lock:
            job = self._jobs.pop(name, None)
        if job is not None and not job.done.is_set():
            self.stop(name, grace_s=0.1)
            job.done.wait(30)
        shutil.rmtree(self.root / name, ignore_errors=True)

    def running(self) -> list[str]:
        with self._lock:
            return [name for name, job in self._jobs.items() if not job.done.is_set()]

    def shutdown(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Interrupt every running job — SIGTERM: the trainer saves a checkpoint and exits; killed after
        `grace_s` — and wait for them: each stays unfinished in its folder for the next start to resume
        (`recover`)."""
        names = self.running()
        for name in names:
            self._interrupt(name, grace_s)
        deadline = time.monotonic() + grace_s + 5
        for name in names:
            self.wait(name, max(deadline - time.monotonic(), 0.1))

    def _interrupt(self, name: str, grace_s: float) -> None:
        with self._lock:
            job = self._jobs.get(name)
        if job is None:
            return
        with job.lock:
            if job.record.terminal:
                return
            job.record.interrupted = True
            self._save(job)
            process = job.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            killer = threading.Timer(grace_s, self._kill, args=(job,))
            killer.daemon = True
            killer.start()

    # --- picking up what an earlier run left ---

    def recover(self) -> list[str]:
        """Pick up the jobs an earlier run of the runtime left unfinished, whether it stopped or was
        killed: each goes on in its own thread, and its events tell the records what became of it.

        * a stop was asked: the job ends stopped (what the trainer saved is uploaded);
        * the trainer had finished (exit 0): its model is uploaded and the job completes;
        * the trainer saved a checkpoint: the trainer runs again and resumes from the latest one;
        * the job had not begun training: it starts again from its request;
        * else it fails, saying the runtime stopped before a checkpoint was saved.

        A trainer still running from the earlier run (it outlived the runtime) is stopped first.
        Returns the names of the jobs picked up."""
        picked = []
        for path in sorted(self.root.glob(f"*/{JOB_FILE}")):
            name = path.parent.name
            try:
                record = JobRecord.model_validate_json(path.read_text(encoding="utf-8"))
            except ValueError:
                logger.warning("the local job %s has an unreadable %s; it is left as it is", name, JOB_FILE)
                continue
            if record.terminal:
                continue
            with self._lock:
                if name in self._jobs:
                    continue
                job = _Job(record=record, folder=path.parent)
                self._jobs[name] = job
            self._end_leftover_trainer(job)
            job.thread = threading.Thread(
                target=self._guarded,
                args=(job, partial(self._pick_up, job)),
                name=f"local-job-{name}",
                daemon=True,
            )
            job.thread.start()
            picked.append(name)
        return picked

    def _pick_up(self, job: _Job) -> None:
        record = job.record
        checkpoint = latest_checkpoint(job.folder / "checkpoints")
        configured = (job.folder / "input" / "config" / "hyperparameters.json").is_file()
        with job.lock:
            record.interrupted = False
            record.pid = None
            self._save(job)
        if record.stop_requested:
            with job.lock:
                record.status = "Stopping"
            self._finish_stopped(job)
        elif record.exit_code == 0:
            self._finish_completed(job)
        elif checkpoint is not None and configured:
            with job.lock:
                record.resumed += 1
                record.resumed_from = checkpoint.name
                record.exit_code = None
                self._save(job)
            logger.info("local job %s resumes from %s", record.name, checkpoint.name)
            self._train(job, resuming=True)
        elif record.training_started_at is None and (job.folder / "request.json").is_file():
            request = TrainingRequest.model_validate_json(
                (job.folder / "request.json").read_text(encoding="utf-8")
            )
            logger.info("local job %s starts again (it had not begun training)", record.name)
            self._prepare(job, request)
            self._train(job)
        else:
            phase = (record.secondary or "running").lower()
            self._finish(
                job,
                "Failed",
                "Failed",
                reason=(
                    f"The local runtime stopped while the job was {phase}, before the trainer had saved a "
                    "checkpoint to resume from. Create the model again to train it."
                ),
            )

    def _end_leftover_trainer(self, job: _Job, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Stop a trainer of this job that outlived an earlier run (SIGTERM: it saves; then SIGKILL)."""
        pid = job.record.pid
        if pid is None or not _runs_in(pid, job.folder):
            return
        logger.warning(
            "the trainer of %s (process %s) outlived the runtime; stopping it", job.record.name, pid
        )
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _runs_in(pid, job.folder):
            time.sleep(0.2)
        if _runs_in(pid, job.folder):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    # --- the job's thread ---

    def _run(self, job: _Job, request: TrainingRequest) -> None:
        def work() -> None:
            self._prepare(job, request)
            self._train(job)

        self._guarded(job, work)

    def _guarded(self, job: _Job, work: Callable[[], object]) -> None:
        """Run the job's `work`; whatever happens, the job ends with a status (or is left to resume)."""
        try:
            work()
        except InterruptedError_:
            logger.info(
                "local job %s interrupted; the next start of the runtime picks it up", job.record.name
            )
        except StopRequestedError:
            self._finish(job, "Stopped", "Stopped")
        except TunelabError as error:
            self._finish(job, "Failed", "Failed", reason=error.message)
        except (ClientError, BotoCoreError, OSError, ValueError) as error:
            self._finish(job, "Failed", "Failed", reason=f"{type(error).__name__}: {error}")
        except Exception as error:  # a job must always end with a status
            logger.exception("local job %s failed", job.record.name)
            self._finish(job, "Failed", "Failed", reason=f"{type(error).__name__}: {error}")
        finally:
            job.done.set()

    def _phase(self, job: _Job, secondary: str) -> None:
        with job.lock:
            if job.record.stop_requested:
                raise StopRequestedError
            if job.record.interrupted:
                raise InterruptedError_
            job.record.secondary = secondary
            self._save(job)
        self._emit(job)

    def _download(self, uri: str, target: Path) -> None:
        bucket, key = s3_split(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.s3.download_file(bucket, key, str(target))
        except ClientError as error:
            if is_not_found(error) or error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise ProviderError(f"The job's input {uri} does not exist.") from None
            raise

    def _prepare(self, job: _Job, request: TrainingRequest) -> None:
        data = job.folder / "input" / "data"
        self._phase(job, "Downloading")
        self._download(request.training_data_uri, data / "training" / _file_name(request.training_data_uri))
        if request.validation_data_uri:
            self._download(
                request.validation_data_uri, data / "validation" / _file_name(request.validation_data_uri)
            )
        if request.parent is not None and request.parent.checkpoint:
            self._copy_checkpoint(job, request.parent.checkpoint, request.parent.checkpoint_job or "")
        elif request.parent is not None and request.parent.artifacts_uri:
            # The trainer unpacks a channel that holds only model.tar.gz.
            self._download(request.parent.artifacts_uri, data / "model" / "model.tar.gz")
        self._phase(job, "Preparing the base model")
        base = models.base_model_folder(request.base_model, self.config.data_dir, trainer_dir=self._trainer())
        hyperparameters = {**request.hyperparameters, "base_model": str(base)}
        (job.folder / "input" / "config" / "hyperparameters.json").write_text(
            json.dumps(hyperparameters, indent=2, sort_keys=True), encoding="utf-8"
        )

    def _copy_checkpoint(self, job: _Job, checkpoint: str, parent_job: str) -> None:
        """The parent job's checkpoint folder as the job's `model` channel (its weights, or its adapter on
        the base model), without the optimizer's state, which a new job does not resume."""
        folder = next((p for p in self.checkpoint_folders(parent_job) if p.name == checkpoint), None)
        if folder is None:
            raise ProviderError(f"The job {parent_job} kept no {checkpoint} to start from.")
        shutil.copytree(
            folder,
            job.folder / "input" / "data" / "model",
            ignore=shutil.ignore_patterns("optimizer.pt", "scheduler.pt", "rng_state*.pth"),
            dirs_exist_ok=True,
        )
        with job.lock:
            job.record.started_from = str(folder)
            self._save(job)

    def _trainer(self) -> Path:
        return self.config.trainer_dir or self._trainer_dir()

    def environment(self, job: _Job) -> dict[str, str]:
        """The trainer's environment: SageMaker's variables with every folder in the job's folder."""
        folder = job.folder
        data = folder / "input" / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "TUNELAB_"))}
        env.update(
            SM_MODEL_DIR=str(folder / "model"),
            SM_OUTPUT_DIR=str(folder / "output"),
            SM_OUTPUT_DATA_DIR=str(folder / "output" / "data"),
            SM_CHANNEL_TRAINING=str(data / "training"),
            SM_INPUT_DIR=str(folder / "input"),
            SM_NUM_GPUS="0",
            SM_HOSTS='["localhost"]',
            SM_CURRENT_HOST="localhost",
            TUNELAB_CHECKPOINT_DIR=str(folder / "checkpoints"),
            TUNELAB_HYPERPARAMETERS_FILE=str(folder / "input" / "config" / "hyperparameters.json"),
            TUNELAB_FAILURE_FILE=str(folder / "output" / "failure"),
            # The trainer saves and stops when this process dies, however it dies (trainer/train.py).
            TUNELAB_STOP_WITH_PARENT=str(os.getpid()),
            HF_HUB_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            PYTHONUNBUFFERED="1",
        )
        if job.record.threads is not None:
            env.update(OMP_NUM_THREADS=str(job.record.threads), MKL_NUM_THREADS=str(job.record.threads))
        for channel, variable in (("validation", "SM_CHANNEL_VALIDATION"), ("model", "SM_CHANNEL_MODEL")):
            if (data / channel).is_dir() and any((data / channel).iterdir()):
                env[variable] = str(data / channel)
        return env

    def _train(self, job: _Job, *, resuming: bool = False) -> None:
        program = self._trainer() / TRAINER_PROGRAM
        if not program.is_file():
            raise ProviderError(f"The trainer is missing: {program} does not exist.")
        with job.lock:
            if job.record.stop_requested:
                raise StopRequestedError
            if job.record.interrupted:
                raise InterruptedError_
            job.record.secondary = TRAINING_PHASE
            if not resuming or job.record.training_started_at is None:
                job.record.training_started_at = _now()
            # Line-buffered: what the trainer printed is in the log even if this process is killed.
            log = (job.folder / LOG_FILE).open("a" if resuming else "w", encoding="utf-8", buffering=1)
            # Its own session: Ctrl-C in the runtime's terminal reaches the runtime, which stops the
            # trainer itself (SIGTERM, so it saves).
            job.process = subprocess.Popen(
                [sys.executable, str(program)],
                cwd=str(job.folder),
                env=self.environment(job),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
            job.record.pid = job.process.pid
            self._save(job)
        self._emit(job)
        process = job.process
        assert process.stdout is not None
        try:
            self._watch(job, process.stdout, log)
        finally:
            code = process.wait()
            log.close()
        with job.lock:
            job.record.pid = None
            if job.record.interrupted and not job.record.stop_requested:
                # Stopped by the runtime's own stop: it saved a checkpoint; the next start resumes it.
                job.record.secondary = "Interrupted"
                self._save(job)
                raise InterruptedError_
            job.record.exit_code = code
        self._metrics_from_file(job)
        if job.record.stop_requested:
            self._finish_stopped(job)
        elif code == 0:
            self._finish_completed(job)
        else:
            self._finish(job, "Failed", "Failed", reason=self._failure_reason(job, code))

    def _watch(self, job: _Job, stream: IO[str], log: IO[str]) -> None:
        """Read the trainer's lines: progress and metrics into the record, events at a modest rate."""
        last_emit = time.monotonic()
        first: tuple[float, int] | None = None
        for line in stream:
            # Each line with its time, as CloudWatch keeps a SageMaker job's (`read_log` splits them).
            log.write(f"{_log_stamp()} {line}" if line.endswith("\n") else f"{_log_stamp()} {line}\n")
            text = line.rstrip("\n")
            force = False
            changed = False
            if text.startswith(PROGRESS_PREFIX):
                try:
                    data = json.loads(text[len(PROGRESS_PREFIX) :])
                except ValueError:
                    continue
                now = time.monotonic()
                step, max_steps = int(data.get("step") or 0), int(data.get("max_steps") or 0)
                if first is None or step < first[1]:
                    first = (now, step)
                eta = None
                if step > first[1] and max_steps:
                    eta = (max_steps - step) * (now - first[0]) / (step - first[1])
                with job.lock:
                    job.record.progress = JobProgress(
                        step=step,
                        max_steps=max_steps,
                        epoch=data.get("epoch"),
                        loss=data.get("loss"),
                        eval_loss=data.get("eval_loss"),
                        eta_seconds=round(eta, 1) if eta is not None else None,
                    )
                changed = True
            elif _METRIC.match(text):
                values = {k: _float(v) for k, v in _PAIR.findall(text)}
                with job.lock:
                    for name in ("train_loss", "eval_loss", "step", "epoch"):
                        value = values.get(name)
                        if value is not None:
                            job.record.metrics[name] = value
                changed = True
                force = text.startswith("eval_loss=")
            elif text.strip():
                job.tail.append(text)
            if changed and (force or time.monotonic() - last_emit >= self.config.progress_interval_s):
                with job.lock:
                    if job.record.status != "InProgress":
                        continue
                    self._save(job)
                last_emit = time.monotonic()
                self._emit(job)

    def read_log(self, name: str, *, offset: int, limit: int) -> tuple[list[TrainingLogLine], int]:
        """Up to `limit` whole lines of the job's `trainer.log` from byte `offset`, and the offset after
        them; none (and `offset`) while the trainer has not started. `ValidationFailed` on `next_token`
        for an offset past the file's end (not one this log gave)."""
        path = self.root / name / LOG_FILE
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            if offset:
                raise bad_log_token() from None
            return [], 0
        lines: list[TrainingLogLine] = []
        with handle:
            size = os.fstat(handle.fileno()).st_size
            if offset > size:
                raise bad_log_token()
            handle.seek(offset)
            written = datetime.fromtimestamp(os.fstat(handle.fileno()).st_mtime, UTC)
            while len(lines) < limit:
                raw = handle.readline()
                if not raw.endswith(b"\n"):
                    break  # the end, or a line the trainer is still writing: read next time
                offset += len(raw)
                lines.append(_log_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"), written))
        return lines, offset

    def evaluation_file(self, name: str) -> bytes | None:
        """The trainer's evaluation report in the job's model folder; None when it wrote none (`OSError`
        when it cannot be read)."""
        try:
            return (self.root / name / "model" / REPORT_FILE).read_bytes()
        except FileNotFoundError:
            return None

    def checkpoint_folders(self, name: str) -> list[Path]:
        """The job's finished checkpoints (`checkpoint-<step>/` with its trainer_state.json); none for a job
        whose folder is gone."""
        folder = self.root / name / "checkpoints"
        found = []
        for path in folder.glob("checkpoint-*") if folder.is_dir() else ():
            if checkpoint_step(path.name) is not None and (path / "trainer_state.json").is_file():
                found.append(path)
        return found

    def _metrics_from_file(self, job: _Job) -> None:
        path = job.folder / "output" / "data" / "metrics.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        with job.lock:
            for name in ("train_loss", "eval_loss", "step", "epoch"):
                value = data.get(name)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    job.record.metrics[name] = float(value)

    def _failure_reason(self, job: _Job, code: int) -> str:
        failure = job.folder / "output" / "failure"
        if failure.is_file():
            text = failure.read_text(encoding="utf-8", errors="replace").strip()
            if text:
                return text
        if code < 0:
            # Popen's -N: signal N ended it before it could write a failure file; name the signal and the
            # likely cause (the kernel's OOM killer sends SIGKILL).
            try:
                signal_name = signal.Signals(-code).name
            except ValueError:
                signal_name = "unknown signal"
            cause = (
                " — most often the machine ran out of memory and the kernel's OOM killer ended it, or "
                "another process killed it"
                if -code == signal.SIGKILL
                else ", sent by another process"
            )
            return (
                f"The trainer was killed by signal {-code} ({signal_name}) before it finished{cause}; the "
                "job cannot continue. Start a new job (with less memory in use, or a smaller batch or "
                "sequence length, if memory ran out)."
            )
        lines = "\n".join(job.tail) or "(it printed nothing)"
        return f"The trainer exited with code {code}: {lines}"

    def _upload_model(self, job: _Job) -> str:
        """Pack and upload `model/` as `model.tar.gz`, and `output/data/` as `output.tar.gz` when it holds
        the trainer's merged copy (SageMaker's places: `<output path>/<job>/output/`); the model's URI."""
        with job.lock:
            job.record.secondary = "Uploading"
            self._save(job)
        self._emit(job)
        folder = f"{job.record.output_uri}{job.record.name}/output/"
        data = job.folder / "output" / "data"
        # The merged copy first: once model.tar.gz is there, the job's archives are complete.
        if (data / MERGED_FOLDER).is_dir():
            self._upload(pack_model(data, job.folder / "output" / OUTPUT_ARCHIVE), folder + OUTPUT_ARCHIVE)
        uri = folder + MODEL_ARCHIVE
        self._upload(pack_model(job.folder / "model", job.folder / "output" / MODEL_ARCHIVE), uri)
        return uri

    def _upload(self, archive: Path, uri: str) -> None:
        bucket, key = s3_split(uri)
        self.s3.upload_file(str(archive), bucket, key, ExtraArgs={"ContentType": "application/gzip"})
        archive.unlink()  # the bucket has it; the job's folder keeps what was packed

    def _finish_completed(self, job: _Job) -> None:
        try:
            uri = self._upload_model(job)
        except (ClientError, BotoCoreError, OSError) as error:
            self._finish(job, "Failed", "Failed", reason=f"Uploading the model failed: {error}")
            return
        # A finished job is never resumed: its checkpoints keep their weights and trainer_state.json (to
        # be listed, downloaded and trained on), not the optimizer state that only a resume reads.
        for checkpoint in (job.folder / "checkpoints").glob("checkpoint-*"):
            for pattern in RESUME_ONLY_FILES:
                for path in checkpoint.glob(pattern):
                    path.unlink(missing_ok=True)
        self._finish(job, "Completed", "Completed", artifacts_uri=uri)

    def _finish_stopped(self, job: _Job) -> None:
        # Like SageMaker, what the stopped trainer saved is uploaded too.
        uri = None
        if any((job.folder / "model").iterdir()):
            try:
                uri = self._upload_model(job)
            except (ClientError, BotoCoreError, OSError) as error:
                logger.warning("uploading the stopped job %s's model failed: %s", job.record.name, error)
        self._finish(job, "Stopped", "Stopped", artifacts_uri=uri)

    def _finish(
        self,
        job: _Job,
        status: JobStatus,
        secondary: str,
        *,
        reason: str | None = None,
        artifacts_uri: str | None = None,
    ) -> None:
        with job.lock:
            if job.record.terminal:
                return
            record = job.record
            record.status = status
            record.secondary = secondary
            if reason:
                record.failure_reason = _clip(reason)
            if status == "Completed":
                record.failure_reason = None
            record.artifacts_uri = artifacts_uri
            record.ended_at = _now()
            if record.progress is not None:
                record.progress = record.progress.model_copy(update={"eta_seconds": None})
            self._save(job)
        self._emit(job)

    def _kill(self, job: _Job) -> None:
        process = job.process
        if process is not None and process.poll() is None:
            logger.warning("the trainer of %s did not stop in time; killing it", job.record.name)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)

    # --- persistence and events ---

    def _save(self, job: _Job) -> None:
        path = job.folder / JOB_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(job.record.model_dump_json(indent=2), encoding="utf-8")
        temporary.replace(path)

    def _load(self, name: str) -> _Job | None:
        """A job folder left by an earlier run of the runtime: it no longer runs."""
        path = self.root / name / JOB_FILE
        if not path.is_file():
            return None
        record = JobRecord.model_validate_json(path.read_text(encoding="utf-8"))
        job = _Job(record=record, folder=path.parent)
        if not record.terminal:
            record.status = "Failed"
            record.secondary = "Failed"
            record.failure_reason = "The local runtime stopped while the job ran; start a new job."
            record.ended_at = record.ended_at or _now()
            self._save(job)
        job.done.set()
        self._jobs[name] = job
        return job

    def _emit(self, job: _Job) -> None:
        with job.lock:
            detail = job.record.detail()
        try:
            answer = self.events.put_events(
                Entries=[
                    {
                        "Source": EVENT_SOURCE,
                        "DetailType": TRAINING_EVENT,
                        "Detail": json.dumps(detail),
                        "EventBusName": self.config.event_bus_name,
                        "Resources": [detail["TrainingJobArn"]],
                    }
                ]
            )
        except (ClientError, BotoCoreError) as error:
            # The reconciler asks `describe_training` when events go missing.
            logger.warning("could not send the event of the local job %s: %s", job.record.name, error)
            return
        if answer.get("FailedEntryCount"):
            logger.warning(
                "the event of the local job %s was refused: %s", job.record.name, answer["Entries"]
            )


_STAMPED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) (.*)$", re.DOTALL)


def _log_stamp() -> str:
    return _now().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _log_line(text: str, written: datetime) -> TrainingLogLine:
    """A line of `trainer.log` with its time; a line of a log written before lines had one gets the
    time the file was last written."""
    match = _STAMPED.match(text)
    if match:
        try:
            at = datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
        except ValueError:
            return TrainingLogLine(at=written, message=text)
        return TrainingLogLine(at=at, message=match.group(2))
    return TrainingLogLine(at=written, message=text)


# What a checkpoint holds only for the trainer to resume from it, removed once the job completed.
RESUME_ONLY_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth")


def checkpoint_of(folder: Path) -> CheckpointInfo | None:
    """A checkpoint folder as the API lists it: its trainer_state.json, its files' size, and when the
    trainer finished writing it (trainer_state.json is written last)."""
    state = folder / "trainer_state.json"
    try:
        text = state.read_bytes()
        saved_at = datetime.fromtimestamp(state.stat().st_mtime, UTC)
        size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    except OSError:  # removed while read
        return None
    return checkpoint_info(folder.name, text, saved_at=saved_at, size_bytes=size)


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint the trainer finished writing (it writes trainer_state.json last), as the
    trainer itself picks it to resume from."""
    found = []
    for path in folder.glob("checkpoint-*") if folder.is_dir() else ():
        step = path.name.removeprefix("checkpoint-")
        if step.isdigit() and (path / "trainer_state.json").is_file():
            found.append((int(step), path))
    return max(found)[1] if found else None


def _runs_in(pid: int, folder: Path) -> bool:
    """Whether process `pid` runs with `folder` as its working directory (a job's trainer does)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) == folder.resolve()
    except OSError:
        return False


def _threads(request: TrainingRequest) -> int | None:
    if "OMP_NUM_THREADS" in os.environ:
        return None  # the operator's choice reaches the trainer as it is
    count = request.base_model.parameter_count
    return 1 if count is not None and count < ONE_THREAD_BELOW_PARAMETERS else None


def _file_name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1] or "data.jsonl"


# --- serving --------------------------------------------------------------------------------------------


@dataclass
class _Server:
    deployment_id: str
    folder: Path
    status: DeploymentStatus = "creating"
    reason: str | None = None
    model: Any = None
    tokenizer: Any = None
    context_length: int = 2048
    # CPU threads for generation (None: torch's default), as for training (ONE_THREAD_BELOW_PARAMETERS).
    threads: int | None = None
    ready: threading.Event = field(default_factory=threading.Event)


# transformers imports its classes lazily, and two threads importing them at once may see the module
# half made ("cannot import name 'AutoModelForCausalLM'"): deployments that load together (as at a
# start of the runtime that serves several again) import one at a time.
_IMPORT_LOCK = threading.Lock()


def load_for_inference(folder: Path) -> tuple[Any, Any]:
    """The model and tokenizer of an artifacts folder: full weights, or base + LoRA adapter (merged)."""
    with _IMPORT_LOCK:
        import torch  # noqa: PLC0415  # the training libraries load only when a model is served
        from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    if (folder / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    elif (folder / "adapter_config.json").is_file():
        with _IMPORT_LOCK:
            from peft import PeftModel  # noqa: PLC0415

        adapter = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        base_name = adapter.get("base_model_name_or_path")
        if not base_name or not Path(base_name).is_dir():
            raise ProviderError(f"The adapter's base model {base_name!r} is not on this machine.")
        base = AutoModelForCausalLM.from_pretrained(base_name, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    else:
        raise ProviderError("The model archive holds neither weights (config.json) nor a LoRA adapter.")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model.eval()  # type: ignore[no-untyped-call]
    return model, tokenizer


def generate(model: Any, tokenizer: Any, params: InvokeParams, context_length: int) -> InvokeResult:
    """One completion of the prompt as the user's turn (the chat template), with token counts."""
    import torch  # noqa: PLC0415

    started = time.perf_counter()
    if getattr(tokenizer, "chat_template", None):
        inputs = tokenizer.apply_chat_template(
            [{"role": "user", "content": params.prompt}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
    else:
        inputs = tokenizer(params.prompt, return_tensors="pt")
    prompt_tokens = int(inputs["input_ids"].shape[1])
    room = context_length - prompt_tokens
    if room < 1:
        raise ValidationFailed.of(
            "prompt", f"The prompt is {prompt_tokens} tokens; the model reads at most {context_length}."
        )
    eos = tokenizer.eos_token_id
    options: dict[str, Any] = {
        "max_new_tokens": min(params.max_tokens, room),
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
        "max_time": INVOKE_MAX_TIME_S,
    }
    if params.temperature > 0:
        options.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
    else:
        options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    with torch.no_grad():
        output = model.generate(**inputs, **options)
    new = output[0, prompt_tokens:].tolist()
    if eos is not None and eos in new:
        new = new[: new.index(eos) + 1]
    completion = tokenizer.decode(new, skip_special_tokens=True)
    return InvokeResult(
        completion=completion,
        input_tokens=prompt_tokens,
        output_tokens=len(new),
        latency_ms=round((time.perf_counter() - started) * 1000),
    )


# One generation at a time in this process: they compete for the same CPU cores anyway, and the thread
# count torch uses is the process's.
_GENERATION_LOCK = threading.Lock()


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    import torch  # noqa: PLC0415

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class InferenceServers:
    """Models served in this process, by deployment id; each loads in a background thread."""

    def __init__(self, config: LocalProviderConfig, s3: S3Client) -> None:
        self.config = config
        self.s3 = s3
        self.root = config.data_dir / DEPLOYMENTS_DIR
        self._servers: dict[str, _Server] = {}
        self._lock = threading.Lock()

    def deploy(self, request: DeployRequest) -> DeploymentRef:
        name = deployment_name(request)
        ref = DeploymentRef(provider="local", kind="local_server", deployment_id=name)
        if not request.artifacts_uri:
            raise ValidationFailed.of("artifacts_uri", "The model has no trained artifacts to serve.")
        with self._lock:
            if name in self._servers:
                return ref
            server = _Server(deployment_id=name, folder=self.root / name)
            server.context_length = request.base_model.context_length
            count = request.base_model.parameter_count
            server.threads = 1 if count is not None and count < ONE_THREAD_BELOW_PARAMETERS else None
            self._servers[name] = server
            # Kept, so that the next start of the runtime serves it again (`recover`).
            server.folder.mkdir(parents=True, exist_ok=True)
            kept = {
                "artifacts_uri": request.artifacts_uri,
                "artifacts_path": request.artifacts_path,
                "context_length": server.context_length,
                "threads": server.threads,
            }
            partial_file = server.folder / f"{DEPLOYMENT_FILE}.partial"
            partial_file.write_text(json.dumps(kept), encoding="utf-8")
            partial_file.replace(server.folder / DEPLOYMENT_FILE)
        self._start_loading(server, request.artifacts_uri, request.artifacts_path)
        return ref

    def _start_loading(self, server: _Server, artifacts_uri: str, path: str | None) -> None:
        thread = threading.Thread(
            target=self._load,
            args=(server, artifacts_uri, path),
            name=f"local-serve-{server.deployment_id}",
            daemon=True,
        )
        thread.start()

    def recover(self) -> list[str]:
        """Serve again the deployments an earlier run of the runtime served (their folders hold what
        they were deployed from); each loads in the background. Returns their names."""
        names = []
        for kept_file in sorted(self.root.glob(f"*/{DEPLOYMENT_FILE}")):
            name = kept_file.parent.name
            try:
                kept = json.loads(kept_file.read_text(encoding="utf-8"))
                artifacts_uri = str(kept["artifacts_uri"])
            except (ValueError, KeyError, TypeError):
                logger.warning("the local deployment %s is unreadable; it is not served again", name)
                continue
            with self._lock:
                if name in self._servers:
                    continue
                server = _Server(deployment_id=name, folder=kept_file.parent)
                server.context_length = kept.get("context_length")
                server.threads = kept.get("threads")
                self._servers[name] = server
            self._start_loading(server, artifacts_uri, kept.get("artifacts_path"))
            names.append(name)
        return names

    def _load(self, server: _Server, artifacts_uri: str, path: str | None) -> None:
        try:
            model_dir = server.folder / "model"
            unpacked = server.folder / UNPACKED_MARK
            if not unpacked.is_file():  # an earlier run may have unpacked it already
                archive = server.folder / "model.tar.gz"
                archive.parent.mkdir(parents=True, exist_ok=True)
                bucket, key = s3_split(artifacts_uri)
                self.s3.download_file(bucket, key, str(archive))
                shutil.rmtree(model_dir, ignore_errors=True)
                with tarfile.open(archive) as tar:
                    tar.extractall(model_dir, filter="data")
                archive.unlink()
                unpacked.write_text(artifacts_uri, encoding="utf-8")
            # `path` is one plain folder name (DeployRequest's pattern): it stays inside the unpacked archive.
            model, tokenizer = load_for_inference(model_dir / path if path else model_dir)
        except Exception as error:  # any failure is the deployment's reason
            logger.warning("loading %s failed: %s", server.deployment_id, error)
            reason = error.message if isinstance(error, TunelabError) else f"{type(error).__name__}: {error}"
            with self._lock:
                server.status, server.reason = "failed", _clip(reason)
            server.ready.set()
            return
        with self._lock:
            if self._servers.get(server.deployment_id) is not server:
                return  # undeployed while loading
            server.model, server.tokenizer = model, tokenizer
            server.context_length = int(
                getattr(model.config, "max_position_embeddings", 0) or server.context_length
            )
            server.status = "in_service"
        server.ready.set()

    def describe(self, deployment_id: str) -> DeploymentState:
        with self._lock:
            server = self._servers.get(deployment_id)
            if server is None:
                return DeploymentState(deployment_id=deployment_id, status="gone")
            return DeploymentState(deployment_id=deployment_id, status=server.status, reason=server.reason)

    def wait(self, deployment_id: str, timeout: float | None = None) -> bool:
        with self._lock:
            server = self._servers.get(deployment_id)
        return True if server is None else server.ready.wait(timeout)

    def invoke(self, deployment_id: str, params: InvokeParams) -> InvokeResult:
        with self._lock:
            server = self._servers.get(deployment_id)
        if server is None:
            raise InvalidState(
                f"The local deployment {deployment_id} does not exist; deploy the model first."
            )
        if server.status != "in_service":
            raise InvalidState(
                f"The local deployment {deployment_id} is {server.status.replace('_', ' ')}; "
                "it answers once it is in service."
            )
        with _GENERATION_LOCK, _torch_threads(server.threads):
            return generate(server.model, server.tokenizer, params, server.context_length)

    def undeploy(self, deployment_id: str) -> None:
        with self._lock:
            server = self._servers.pop(deployment_id, None)
        if server is not None:
            server.model = server.tokenizer = None
            shutil.rmtree(server.folder, ignore_errors=True)

    def shutdown(self) -> None:
        """Unload every model; their folders stay, for the next start to serve them again."""
        with self._lock:
            servers = list(self._servers.values())
            self._servers.clear()
        for server in servers:
            server.model = server.tokenizer = None


# --- the provider ----------------------------------------------------------------------------------------


class LocalProvider:
    """`TrainingProvider` of the embedded runtime: jobs in subprocesses, models served in-process."""

    name: ProviderName = "local"
    # The local runtime trains small models: the workflow waits half a day at most.
    training_timeout_s = 12 * 3600

    def __init__(self, jobs: LocalJobs, servers: InferenceServers, s3: S3Client) -> None:
        self.jobs = jobs
        self.servers = servers
        self.s3 = s3
        self._storage = S3Objects(s3)

    @property
    def storage(self) -> S3Objects:
        """The embedded stack's artifacts bucket: training data and the jobs' archives."""
        return self._storage

    def training_data_folder(self, identity: ModelIdentity, uid: str, base_model: BaseModelSpec) -> str:
        return (
            f"s3://{self.jobs.config.artifacts_bucket}/{TRAINING_DATA_PREFIX}{identity.workspace_id}/"
            f"{identity.model_name}/{uid}/"
        )

    def check_new_job(self, identity: ModelIdentity) -> None:
        """Nothing to check: a job's folder is named after the model record."""

    def training_hyperparameters(
        self,
        spec: BaseModelSpec,
        hyperparameters: ResolvedHyperparameters,
        optional: ResolvedOptionalHyperparameters | None,
        *,
        provider_split_percent: float | None,
    ) -> dict[str, str]:
        """The trainer's hyperparameters (the same contract as on SageMaker)."""
        return to_trainer_hyperparameters(hyperparameters, optional)

    def trained_output(
        self,
        ref: TrainingJobRef | None,
        *,
        artifacts_uri: str | None,
        model_ref: str | None,
        merged: bool,
    ) -> TrainedOutput:
        """The job's `model.tar.gz` in the embedded S3, listed; for LoRA not merged, the merged copy in the
        job's `output.tar.gz`, as on SageMaker."""
        if artifacts_uri is None and ref is not None:
            artifacts_uri = self.describe_training(ref).artifacts_uri
        return archive_output(
            self.storage,
            artifacts_uri,
            model_ref=None,
            merged=merged,
            output_uri=output_archive_uri(ref, artifacts_uri),
        )

    def speaks_for(self, account: str | None) -> bool:
        """The local runtime's jobs are its own."""
        return True

    def start_training(self, request: TrainingRequest) -> TrainingJobRef:
        return self.jobs.start(request)

    def stop_training(self, ref: TrainingJobRef) -> None:
        self.jobs.stop(ref.job_name)

    def resume_point(self, identity: ModelIdentity, attempt: int) -> ResumePoint | None:
        """The newest checkpoint in the folders of the model's jobs (the trainer keeps a stopped or
        failed job's checkpoints; a completed job's are removed)."""
        found = self.jobs.resume_checkpoint(identity, attempt)
        if found is None:
            return None
        try:
            state = json.loads((found / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = {}
        return resume_point_of(found.name, state if isinstance(state, dict) else {})

    def describe_training(self, ref: TrainingJobRef) -> TrainingState:
        try:
            return self.jobs.describe(ref.job_name).state()
        except NotFound:
            # The folder is gone (the data dir was cleared): the job cannot end any other way.
            return TrainingState(
                job_id=ref.job_id,
                status="failed",
                phase="Failed",
                failure_reason="The local job's folder no longer exists; start a new job.",
                ended_at=_now(),
            )

    def training_log(self, ref: TrainingJobRef, *, position: str | None, limit: int) -> TrainingLogPage:
        """The job's `trainer.log` (each line stamped as it was written), by byte offset."""
        offset = 0
        if position is not None:
            data = decode_position(position)
            if not (isinstance(data, dict) and isinstance(data.get("offset"), int) and data["offset"] >= 0):
                raise bad_log_token()
            offset = data["offset"]
        lines, after = self.jobs.read_log(ref.job_name, offset=offset, limit=limit)
        message = None
        if not lines and after == 0:
            message = "The trainer has not written to the job's log yet."
        position = encode_position({"offset": after})
        return TrainingLogPage(lines=tuple(lines), position=position, message=message)

    def evaluation_report(self, ref: TrainingJobRef) -> EvaluationReport | EvaluationSkipped | None:
        """The trainer's report in the job's model folder (also in the model's archive)."""
        where = f"{REPORT_FILE} of the job {ref.job_name}"
        try:
            body = self.jobs.evaluation_file(ref.job_name)
        except OSError as error:
            return EvaluationSkipped(
                skipped=f"The evaluation report {where} cannot be read: {error.strerror}."
            )
        return None if body is None else evaluation_of(body, where)

    def checkpoints(self, ref: TrainingJobRef) -> CheckpointList:
        """The checkpoints in the job's `checkpoints/` folder, by step."""
        found = [info for path in self.jobs.checkpoint_folders(ref.job_name) if (info := checkpoint_of(path))]
        message = None if found else "The training job has not saved a checkpoint (yet)."
        return CheckpointList(items=by_step(found), message=message)

    def checkpoint_download(
        self, ref: TrainingJobRef, checkpoint_id: str, *, expires_in_s: int = DOWNLOAD_EXPIRES_S
    ) -> DownloadLink:
        """Packs the checkpoint's folder into `<job output>/checkpoints/<id>.tar.gz` in the embedded S3
        (once: a saved checkpoint does not change) and links to it."""
        folder = next(
            (p for p in self.jobs.checkpoint_folders(ref.job_name) if p.name == checkpoint_id), None
        )
        if folder is None:
            raise unknown_checkpoint(checkpoint_id)
        output = ref.output_uri or f"s3://{self.jobs.config.artifacts_bucket}/"
        uri = f"{output}{ref.job_name}/checkpoints/{checkpoint_id}.tar.gz"
        bucket, key = s3_split(uri)
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError:
            with tempfile.TemporaryDirectory() as scratch:
                try:
                    archive = pack_model(folder, Path(scratch) / f"{checkpoint_id}.tar.gz")
                except FileNotFoundError:  # the trainer removed it (save_total_limit) while it was packed
                    raise unknown_checkpoint(checkpoint_id) from None
                with aws_call(f"Uploading {uri}", permission="s3:PutObject"):
                    self.s3.upload_file(
                        str(archive), bucket, key, ExtraArgs={"ContentType": "application/gzip"}
                    )
        return self.download(uri, expires_in_s=expires_in_s)

    def deploy(self, request: DeployRequest) -> DeploymentRef:
        return self.servers.deploy(request)

    def describe_deployment(self, ref: DeploymentRef) -> DeploymentState:
        return self.servers.describe(ref.deployment_id)

    def undeploy(self, ref: DeploymentRef) -> None:
        self.servers.undeploy(ref.deployment_id)

    def invoke(self, ref: DeploymentRef, params: InvokeParams) -> InvokeResult:
        return self.servers.invoke(ref.deployment_id, params)

    def download(self, artifacts_uri: str, *, expires_in_s: int = DOWNLOAD_EXPIRES_S) -> DownloadLink:
        bucket, key = s3_split(artifacts_uri)
        with aws_call(f"Reading {artifacts_uri}", permission="s3:GetObject"):
            head = self.s3.head_object(Bucket=bucket, Key=key)
            url = self.s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in_s
            )
        return DownloadLink(
            url=url,
            expires_at=_now() + timedelta(seconds=expires_in_s),
            size_bytes=int(head.get("ContentLength", 0)),
        )

    def delete_model(self, model: TrainedModel) -> None:
        """Remove the job's folder and what it uploaded, and those of the model's earlier attempts (a
        resumed model's stopped or failed jobs); already gone is fine."""
        name = model.job.job_name if model.job else job_name(model.identity)
        # The record counts its attempts (the first job and each resume's), however many there were.
        earlier = {job_name(model.identity, attempt) for attempt in range(model.attempt + 1)} - {name}
        for other in sorted(earlier):
            if (self.jobs.root / other).exists():
                self._delete_job(model.identity, other)
        self._delete_job(model.identity, name)

    def _delete_job(self, identity: ModelIdentity, name: str) -> None:
        self.jobs.delete(name)
        bucket = self.jobs.config.artifacts_bucket
        prefix = f"{model_prefix(identity)}/output/{name}/"
        with aws_call(f"Deleting the artifacts of {name}", permission=f"s3:DeleteObject on {bucket}"):
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
            for start in range(0, len(keys), 1000):
                self.s3.delete_objects(
                    Bucket=bucket,
                    Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True},
                )


# --- one set of jobs and servers per data dir in this process ----------------------------------------------


@dataclass
class LocalTraining:
    """The jobs, the servers and the clients of one data dir."""

    config: LocalProviderConfig
    jobs: LocalJobs
    servers: InferenceServers
    s3: S3Client

    def provider(self) -> LocalProvider:
        return LocalProvider(self.jobs, self.servers, self.s3)

    def shutdown(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        self.jobs.shutdown(grace_s)
        self.servers.shutdown()


def make_training(config: LocalProviderConfig, *, session: boto3.Session | None = None) -> LocalTraining:
    """Jobs and servers over the embedded S3 and EventBridge named by `config`."""
    session = session or boto3.Session(region_name=config.region)
    options: dict[str, Any] = {"region_name": config.region}
    if config.endpoint_url:
        options["endpoint_url"] = config.endpoint_url
    s3: S3Client = session.client("s3", config=Config(s3={"addressing_style": "path"}), **options)
    events: EventBridgeClient = session.client("events", **options)
    return LocalTraining(
        config=config,
        jobs=LocalJobs(config, s3, events, trainer_dir=trainer_dir),
        servers=InferenceServers(config, s3),
        s3=s3,
    )


_TRAININGS: dict[Path, LocalTraining] = {}
_TRAININGS_LOCK = threading.Lock()


def provider_for_config(config: LocalProviderConfig) -> LocalProvider:
    """The provider over this process's jobs and servers of `config.data_dir` (made on first use)."""
    key = config.data_dir.resolve()
    with _TRAININGS_LOCK:
        training = _TRAININGS.get(key)
        if training is None:
            training = _TRAININGS[key] = make_training(config)
    return training.provider()


def install(context: LocalContext, **options: Any) -> Callable[[], None]:
    """Start the local provider for the embedded runtime: jobs and servers over its S3 and bus, the
    provider factory registered in `tunelab.composition.wiring`. Returns the shutdown hook, which
    stops running jobs (SIGTERM, then kill after a grace period) and unloads served models.

    `options`: more `LocalProviderConfig` fields (e.g. `progress_interval_s`, `trainer_dir`).
    """
    config = LocalProviderConfig(
        data_dir=context.data_dir,
        endpoint_url=context.endpoint_url,
        region=context.region,
        event_bus_name=context.event_bus_name,
        artifacts_bucket=context.artifacts_bucket,
        account_id=context.account_id,
        **options,
    )
    training = make_training(config)
    key = config.data_dir.resolve()
    with _TRAININGS_LOCK:
        _TRAININGS[key] = training
    models.set_data_dir(config.data_dir)

    def factory(services: wiring.Services, workspace_id: str) -> LocalProvider:
        return training.provider()

    wiring.register_provider_factory("local", factory)
    # The operator's model folders in the API's catalog.
    extend: Callable[[], list[BaseModelSpec]] = partial(models.registered_models, config.data_dir)
    wiring.register_catalog_extension(extend)
    # What an earlier run left: deployments served again, unfinished jobs picked up (their events
    # reach the records; the reconciler settles what no workflow waits for any more).
    served = training.servers.recover()
    picked = training.jobs.recover()
    if served or picked:
        logger.warning(
            "picked up from the last run: %d deployment(s) loading again%s, %d unfinished job(s)%s",
            len(served),
            f" ({', '.join(served)})" if served else "",
            len(picked),
            f" ({', '.join(picked)})" if picked else "",
        )

    def shutdown() -> None:
        wiring.unregister_provider_factory("local")
        wiring.unregister_catalog_extension(extend)
        training.shutdown()
        with _TRAININGS_LOCK:
            if _TRAININGS.get(key) is training:
                del _TRAININGS[key]
        models.set_data_dir(None)

    return shutdown


__all__ = [
    "LOCAL_EVENT_RULES",
    "InferenceServers",
    "JobRecord",
    "LocalJobs",
    "LocalProvider",
    "LocalTraining",
    "install",
    "job_name",
    "load_for_inference",
    "make_training",
    "progress_phase",
    "provider_for_config",
]
