"""`tunelab local up`, `tunelab local token` and `tunelab local aws-env`: the command line of the
embedded local runtime.

`add_local_commands(subparsers)` adds the `local` command group to an argparse parser; each
subcommand sets `handler` (a function of the parsed arguments that returns the exit code).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import math
import os
import shlex
import signal
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tunelab.domain.errors import TunelabError
from tunelab.domain.identity import PLANS
from tunelab.local.aws_access import RuntimeNotRunning, read_access
from tunelab.local.environment import prepare as prepare_environment
from tunelab.local.files import UnsafeFile
from tunelab.local.models import register_model_folder
from tunelab.local.paths import DEFAULT_LOCAL_PLAN, DEFAULT_PORT, default_data_dir
from tunelab.local.tokens import DEFAULT_TTL, MAX_TTL, issue_token

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
# Stopping takes seconds; a process still alive this long after Ctrl-C prints where each thread waits.
SLOW_STOP_S = 30.0


def add_local_commands(subparsers: Any) -> None:
    """Add `local up`, `local token` and `local aws-env` to `subparsers` (from
    `ArgumentParser.add_subparsers()`)."""
    local = subparsers.add_parser(
        "local",
        help="run tunelab on this machine, without an AWS account",
        description="The embedded local runtime: the whole tunelab backend on one machine.",
    )
    commands = local.add_subparsers(dest="local_command", metavar="{up,token,aws-env}", required=True)
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
        "token alone. --plan, the operator's setting, gives the workspace that plan: recorded in the data "
        "dir, applied at once to a runtime running on it and whenever one starts (without it a workspace "
        f"is on {DEFAULT_LOCAL_PLAN}). The token itself carries no plan.",
    )
    token.add_argument("--workspace", required=True, help="the workspace id (the tenant)")
    token.add_argument("--email", required=True, help="who the token is for")
    token.add_argument(
        "--plan",
        default=None,
        choices=PLANS,
        help=f"give the workspace this plan (the operator's setting; new workspaces: {DEFAULT_LOCAL_PLAN})",
    )
    token.add_argument(
        "--ttl-hours",
        type=ttl_hours_argument,
        default=DEFAULT_TTL.total_seconds() / 3600,
        help=f"hours until the token expires, more than 0 and at most {MAX_TTL_HOURS:g} "
        f"(default {DEFAULT_TTL.total_seconds() / 3600:g})",
    )
    token.add_argument("--data-dir", type=Path, default=None, help=data_dir_help)
    token.set_defaults(handler=run_token)

    aws_env = commands.add_parser(
        "aws-env",
        help="print the running runtime's AWS endpoint and credentials as shell exports",
        description="The AWS endpoint (moto) of the runtime running on the data dir answers only "
        "requests signed with that run's credentials, made anew at each start. Prints them as "
        '`export` lines: eval "$(tunelab local aws-env)" points the aws CLI and boto3 at it.',
    )
    aws_env.add_argument("--data-dir", type=Path, default=None, help=data_dir_help)
    aws_env.set_defaults(handler=run_aws_env)


MAX_TTL_HOURS = MAX_TTL.total_seconds() / 3600


def ttl_hours_argument(value: str) -> float:
    """`--ttl-hours`: more than 0 and at most `MAX_TTL` in hours."""
    try:
        hours = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of hours") from None
    if not math.isfinite(hours) or not 0 < hours <= MAX_TTL_HOURS:
        raise argparse.ArgumentTypeError(
            f"{value!r}: a token lives more than 0 and at most {MAX_TTL_HOURS:g} hours ({MAX_TTL.days} days)"
        )
    return hours


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


def _set_plan(data_dir: Path, workspace: str, plan: str) -> None:
    """Record the plan, and give it to the workspace now when a runtime runs on `data_dir`."""
    from tunelab.local.plans import apply_plans, record_plan  # noqa: PLC0415  # start-up time of the CLI

    record_plan(data_dir, workspace, plan)
    try:
        access = read_access(data_dir)
    except RuntimeNotRunning:
        return  # the runtime applies it when it starts
    try:
        apply_plans(access, {workspace: plan})
    except (BotoCoreError, ClientError, TunelabError) as error:  # a runtime that died left its file
        print(
            f"tunelab: the plan is recorded; the runtime at {access.endpoint_url} did not take it now "
            f"({type(error).__name__}), so it applies when a runtime starts on {data_dir}",
            file=sys.stderr,
        )


def run_token(args: argparse.Namespace) -> int:
    """`tunelab local token`: the token alone on stdout."""

    try:
        data_dir = _data_dir(args)
        token = issue_token(
            data_dir, workspace=args.workspace, email=args.email, ttl=timedelta(hours=args.ttl_hours)
        )
        if args.plan:
            _set_plan(data_dir, args.workspace, args.plan)
    except TunelabError as error:
        print(f"tunelab: {error.message}", file=sys.stderr)
        return EXIT_USAGE
    except UnsafeFile as error:
        print(f"tunelab: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(token)
    return EXIT_OK


def run_aws_env(args: argparse.Namespace) -> int:
    """`tunelab local aws-env`: `export` lines for the running runtime's AWS endpoint."""
    try:
        access = read_access(_data_dir(args))
    except (RuntimeNotRunning, UnsafeFile) as error:
        print(f"tunelab: {error}", file=sys.stderr)
        return EXIT_FAILED
    for name, value in access.environment().items():
        print(f"export {name}={shlex.quote(value)}")
    print("unset AWS_SESSION_TOKEN AWS_PROFILE")
    return EXIT_OK


def _configure_logging(level: str) -> Callable[[], None]:
    """Show the runtime's own lines on stderr; returns what puts the loggers back as they were."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    runtime_logger = logging.getLogger("tunelab.local")
    previous = (runtime_logger.level, runtime_logger.propagate)
    runtime_logger.addHandler(handler)
    runtime_logger.setLevel(logging.INFO)
    runtime_logger.propagate = False
    # The seam's and other libraries' lines follow the chosen level.
    logging.basicConfig(level=getattr(logging, level), format="%(asctime)s %(name)s %(message)s")

    def undo() -> None:
        runtime_logger.removeHandler(handler)
        runtime_logger.setLevel(previous[0])
        runtime_logger.propagate = previous[1]

    return undo


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

    restore_logging = _configure_logging(args.log_level)
    # What this process and its trainers create (datasets' copies, jobs, models, deployments) is
    # the operator's alone, as the data dir itself is (0700).
    previous_umask = os.umask(0o077)
    try:
        return _serve(args, LocalRuntime, (PortInUse, RuntimeAlreadyRunning, DataDirInUse, UnsafeFile))
    finally:
        os.umask(previous_umask)
        restore_logging()


def _serve(args: argparse.Namespace, runtime_class: Any, refusals: tuple[type[Exception], ...]) -> int:
    data_dir = _data_dir(args)
    folders = list(getattr(args, "model_dir", None) or [])
    try:
        for model_id, (_, folder) in zip(register_model_dirs(folders, data_dir), folders, strict=True):
            _say(f"base model {model_id} registered ({folder.resolve()})")
    except TunelabError as error:
        _say(error.message)
        return EXIT_USAGE
    except UnsafeFile as error:
        _say(str(error))
        return EXIT_FAILED
    runtime = runtime_class(data_dir, port=args.port, log_level=args.log_level)
    _say(f"starting the local runtime (data dir {runtime.data_dir}) ...")
    try:
        runtime.start()
    except refusals as error:
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
    _say("stopped; everything is kept in the data dir for the next start.")
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
