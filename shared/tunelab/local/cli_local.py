"""`tunelab local up` and `tunelab local token`: the command line of the embedded local runtime.

`add_local_commands(subparsers)` adds the `local` command group to an argparse parser; each
subcommand sets `handler` (a function of the parsed arguments that returns the exit code).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from tunelab.domain.errors import TunelabError
from tunelab.domain.identity import PLANS
from tunelab.local.environment import prepare as prepare_environment
from tunelab.local.models import register_model_folder
from tunelab.local.paths import DEFAULT_PORT, default_data_dir
from tunelab.local.tokens import DEFAULT_PLAN, DEFAULT_TTL, issue_token

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
# Stopping takes seconds; a process still alive this long after Ctrl-C prints where each thread waits.
SLOW_STOP_S = 30.0


def add_local_commands(subparsers: Any) -> None:
    """Add `local up` and `local token` to `subparsers` (from `ArgumentParser.add_subparsers()`)."""
    local = subparsers.add_parser(
        "local",
        help="run tunelab on this machine, without an AWS account",
        description="The embedded local runtime: the whole tunelab backend on one machine.",
    )
    commands = local.add_subparsers(dest="local_command", metavar="{up,token}", required=True)
    data_dir_help = (
        f"where the runtime keeps its files (default: {default_data_dir()}, or $TUNELAB_LOCAL_DATA_DIR)"
    )

    up = commands.add_parser(
        "up",
        help="start the local runtime (Ctrl-C stops it)",
        description="Start the API on loopback with every AWS service it needs embedded (moto). "
        "Records, datasets and jobs live in memory and are lost when it stops; files in the data "
        "dir stay.",
    )
    up.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"the API's port on 127.0.0.1 (default {DEFAULT_PORT})"
    )
    up.add_argument("--data-dir", type=Path, default=None, help=data_dir_help)
    up.add_argument(
        "--log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level of the handlers (default WARNING; the runtime's own lines are always shown)",
    )
    up.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        help="write {api_url, aws_endpoint, data_dir, pid} as JSON to this file once ready (for scripts)",
    )
    up.add_argument(
        "--model-dir",
        action="append",
        type=model_dir_argument,
        default=[],
        metavar="NAME=PATH",
        help="offer the Hugging Face model folder PATH as base model local.NAME (repeatable; kept in "
        "the data dir's models.json)",
    )
    up.set_defaults(handler=run_up)

    token = commands.add_parser(
        "token",
        help="print a bearer token for the local runtime's API",
        description="Mint a token for EMAIL in WORKSPACE, signed with the data dir's secret; prints the "
        "token alone. PLAN becomes the workspace's plan in the local runtime.",
    )
    token.add_argument("--workspace", required=True, help="the workspace id (the tenant)")
    token.add_argument("--email", required=True, help="who the token is for")
    token.add_argument(
        "--plan", default=DEFAULT_PLAN, choices=PLANS, help=f"the workspace's plan (default {DEFAULT_PLAN})"
    )
    token.add_argument(
        "--ttl-hours",
        type=float,
        default=DEFAULT_TTL.total_seconds() / 3600,
        help=f"hours until the token expires (default {DEFAULT_TTL.total_seconds() / 3600:g})",
    )
    token.add_argument("--data-dir", type=Path, default=None, help=data_dir_help)
    token.set_defaults(handler=run_token)


def model_dir_argument(value: str) -> tuple[str, Path]:
    """`NAME=PATH` of `--model-dir` as (name, path)."""
    name, separator, path = value.partition("=")
    if not separator or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"{value!r}: write NAME=PATH, e.g. my-model=~/models/my-model")
    return name.strip(), Path(path.strip()).expanduser()


def register_model_dirs(folders: list[tuple[str, Path]], data_dir: Path) -> list[str]:
    """Register each (name, folder) in `data_dir`; the base model ids they became."""

    return [register_model_folder(name, folder, data_dir).id for name, folder in folders]


def _data_dir(args: argparse.Namespace) -> Path:

    return Path(args.data_dir).expanduser().resolve() if args.data_dir else default_data_dir()


def run_token(args: argparse.Namespace) -> int:
    """`tunelab local token`: the token alone on stdout."""

    try:
        token = issue_token(
            _data_dir(args),
            workspace=args.workspace,
            email=args.email,
            plan=args.plan,
            ttl=timedelta(hours=args.ttl_hours),
        )
    except TunelabError as error:
        print(f"tunelab: {error.message}", file=sys.stderr)
        return EXIT_USAGE
    print(token)
    return EXIT_OK


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    runtime_logger = logging.getLogger("tunelab.local")
    runtime_logger.addHandler(handler)
    runtime_logger.setLevel(logging.INFO)
    runtime_logger.propagate = False
    # The seam's and other libraries' lines follow the chosen level.
    logging.basicConfig(level=getattr(logging, level), format="%(asctime)s %(name)s %(message)s")


def _say(message: str) -> None:
    print(f"tunelab: {message}", file=sys.stderr, flush=True)


def run_up(args: argparse.Namespace) -> int:
    """`tunelab local up`: start, say where things are, serve until Ctrl-C (or SIGTERM), stop."""
    # The runtime (boto3, moto, the API) loads only when one starts: `tunelab --help` stays quick, and
    # the handlers' loggers, made as the runtime loads, get their service name and level.
    prepare_environment(args.log_level)
    from tunelab.local.runtime import (  # noqa: PLC0415
        DataDirInUse,
        LocalRuntime,
        PortInUse,
        RuntimeAlreadyRunning,
    )

    _configure_logging(args.log_level)
    data_dir = _data_dir(args)
    try:
        for model_id in register_model_dirs(list(getattr(args, "model_dir", None) or []), data_dir):
            _say(f"base model {model_id} registered")
    except TunelabError as error:
        _say(error.message)
        return EXIT_USAGE
    runtime = LocalRuntime(data_dir, port=args.port, log_level=args.log_level)
    _say(f"starting the local runtime (data dir {runtime.data_dir}) ...")
    try:
        runtime.start()
    except (PortInUse, RuntimeAlreadyRunning, DataDirInUse) as error:
        _say(str(error))
        return EXIT_FAILED

    def on_terminate(signum: int, frame: FrameType | None) -> None:
        runtime.request_stop()

    previous = signal.signal(signal.SIGTERM, on_terminate)
    # Ctrl-C stops it even where SIGINT came in ignored (a command started in the background by a
    # script or CI, which Python then leaves ignored).
    previous_interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        print("\n".join(runtime.describe()), flush=True)
        if args.ready_file is not None:
            _write_ready_file(Path(args.ready_file), runtime)
        runtime.wait()
    except KeyboardInterrupt:
        pass
    finally:
        _say("stopping the local runtime ...")
        # Left armed on purpose: the process ends well within it, unless a thread that never ends
        # holds it up after this function returns, and then the dump says which.
        faulthandler.dump_traceback_later(SLOW_STOP_S, exit=False)
        runtime.stop()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_interrupt)
    _say("stopped; the data dir's files stay, the in-memory state is gone.")
    return EXIT_OK


def _write_ready_file(path: Path, runtime: Any) -> None:
    ready = {
        "api_url": runtime.base_url,
        "aws_endpoint": runtime.moto_endpoint,
        "data_dir": str(runtime.data_dir),
        "pid": os.getpid(),
    }
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(ready), encoding="utf-8")
    partial.replace(path)  # readers never see half a file
