"""tunelab's training program: ``python train.py`` in SageMaker's Hugging Face PyTorch container, or
``python trainer/train.py`` as a subprocess of the local runtime. The contract is in README.md."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (SageMaker's entry point, torchrun): make this folder the package `trainer`, whatever
    # the folder is called, and take it off sys.path so its module names cannot shadow installed ones.
    import importlib.util

    _here = Path(__file__).resolve().parent
    _spec = importlib.util.spec_from_file_location(
        "trainer", _here / "__init__.py", submodule_search_locations=[str(_here)]
    )
    assert _spec is not None
    assert _spec.loader is not None
    _package = importlib.util.module_from_spec(_spec)
    sys.modules["trainer"] = _package
    _spec.loader.exec_module(_package)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]

import logging
import os
import signal
import subprocess
import traceback
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

from trainer.data import Row, read_rows
from trainer.environment import (
    Paths,
    is_local_main_process,
    is_main_process,
    read_cluster,
    resolve_paths,
    torchrun_command,
    under_torchrun,
    write_failure,
)
from trainer.errors import TrainerInputError
from trainer.hyperparameters import (
    PATH_ARGUMENTS,
    collect_raw_hyperparameters,
    parse_arguments,
    parse_hyperparameters,
    read_hyperparameter_file,
)

EXIT_FAILED = 1
# Set by the local runtime to its process id: the trainer saves and stops when the runtime dies.
STOP_WITH_PARENT = "TUNELAB_STOP_WITH_PARENT"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class _Outliving:
    """A standard stream that outlives its reader: the local runtime reads the trainer's output
    through a pipe, and once the runtime has died a write must not end the training that is saving."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.lost = False

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                return int(self._stream.write(text))
            except (BrokenPipeError, ValueError):
                self.lost = True
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                self.lost = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _outlive_reader(env: Mapping[str, str]) -> None:
    # Only where the kernel tells the trainer that the runtime died (below): elsewhere a trainer whose
    # runtime died must end at its next line, not train on beside the one the next start resumes.
    if env.get(STOP_WITH_PARENT) and sys.platform.startswith("linux"):
        sys.stdout = _Outliving(sys.stdout)
        sys.stderr = _Outliving(sys.stderr)


def _stop_with_parent(env: Mapping[str, str]) -> None:
    """Have the kernel send SIGTERM (a stop: save, then end) when the runtime that started this process
    dies, however it dies (Linux; elsewhere the runtime stops the trainer itself when it can)."""
    parent = env.get(STOP_WITH_PARENT, "")
    if not parent.isdigit() or not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != int(parent):  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _fail(paths: Paths | None, env: Mapping[str, str], reason: str, secrets: Sequence[str]) -> int:
    failure_file = (
        paths.failure_file if paths else Path(env.get("TUNELAB_FAILURE_FILE", "/opt/ml/output/failure"))
    )
    if is_local_main_process(env):
        reason = write_failure(failure_file, reason, secrets)
        print(f"training failed: {reason}", file=sys.stderr, flush=True)
    return EXIT_FAILED


def _run_under_torchrun(paths: Paths, env: Mapping[str, str], argv: Sequence[str]) -> int:
    """Re-run this program under torchrun (several GPUs or hosts), passing a stop on to it."""
    cluster = read_cluster(env)
    command = torchrun_command(cluster, Path(__file__).resolve(), argv, env)
    print(
        f"starting {cluster.num_gpus} processes per host on {len(cluster.hosts)} host(s): {' '.join(command)}"
    )
    # The processes torchrun starts have torchrun for a parent: this process alone watches the runtime.
    process = subprocess.Popen(command, env={k: v for k, v in env.items() if k != STOP_WITH_PARENT})

    def forward(signum: int, frame: FrameType | None) -> None:
        process.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    _stop_with_parent(env)
    try:
        code = process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code != 0 and not paths.failure_file.exists():
        write_failure(paths.failure_file, f"a training process exited with code {code}; see the job's logs")
    return 0 if code == 0 else EXIT_FAILED


def _read_validation(paths: Paths) -> list[Row] | None:
    folder = paths.validation_dir
    if folder is None:
        return None
    return read_rows(folder, "validation")


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the whole program; returns the exit status (0: trained or stopped, 1: failed)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ if env is None else env)
    _outlive_reader(env)
    secrets: list[str] = []
    paths: Paths | None = None
    try:
        arguments = parse_arguments(argv)
        paths = resolve_paths(env, {k: v for k, v in arguments.items() if k in PATH_ARGUMENTS})
        raw = collect_raw_hyperparameters(
            read_hyperparameter_file(paths.hyperparameters_file),
            {k: v for k, v in arguments.items() if k not in PATH_ARGUMENTS},
        )
        hp = parse_hyperparameters(raw)
        if paths.train_dir is None:
            raise TrainerInputError(
                "no training data: the 'training' channel (SM_CHANNEL_TRAINING) is not set"
            )
        # Data is checked before anything heavy is imported, so bad data fails in a second.
        train_rows = read_rows(paths.train_dir, "training")
        validation_rows = _read_validation(paths)
        if read_cluster(env).needs_torchrun and not under_torchrun(env):
            return _run_under_torchrun(paths, env, argv)
        return _train(
            hp=hp,
            paths=paths,
            train_rows=train_rows,
            validation_rows=validation_rows,
            env=env,
            secrets=secrets,
        )
    except TrainerInputError as error:
        return _fail(paths, env, str(error), secrets)
    except Exception as error:
        traceback.print_exc()
        return _fail(paths, env, f"{type(error).__name__}: {error}", secrets)


def _train(
    *,
    hp: Any,
    paths: Paths,
    train_rows: list[Row],
    validation_rows: list[Row] | None,
    env: Mapping[str, str],
    secrets: list[str],
) -> int:
    from trainer.evaluation import headline
    from trainer.reporting import StopOnSignal
    from trainer.run import end_process_group, run_training

    stop = StopOnSignal()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        print("stop requested: saving after the current step", flush=True)
        stop.requested.set()

    previous = signal.signal(signal.SIGTERM, request_stop)
    _stop_with_parent(env)
    try:
        summary = run_training(
            hp=hp,
            paths=paths,
            train_rows=train_rows,
            validation_rows=validation_rows,
            env=env,
            stop=stop,
            secrets=secrets,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    # Each process ends its part of the group itself (not on a failure: the launcher ends those).
    end_process_group()
    metrics = summary.get("metrics", {})
    if not is_main_process(env):
        return 0
    print(
        f"training {summary['status']}: step {metrics.get('step')} of {metrics.get('max_steps')}, "
        f"model saved to {paths.model_dir}",
        flush=True,
    )
    if summary.get("evaluation"):
        print(headline(summary["evaluation"]), flush=True)
    return 0


def _exit(status: int) -> None:
    """Exit with `status`. A process torchrun started that has done its part (its group destroyed,
    every file written and closed) skips the interpreter's teardown: freeing the process group's
    leftovers there can abort a process that succeeded (SIGABRT, which fails the whole job)."""
    if status == 0 and under_torchrun(os.environ):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    sys.exit(status)


if __name__ == "__main__":
    _exit(main())
