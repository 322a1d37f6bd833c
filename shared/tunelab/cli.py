"""The `tunelab` command line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tunelab.local.cli_local import add_local_commands


def _demo(args: argparse.Namespace) -> int:
    print(
        "tunelab: the demo is not ready yet, so it cannot run a real fine-tuning job on this machine. "
        "Nothing was started. 'tunelab local up' starts the local runtime.",
        file=sys.stderr,
    )
    return 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunelab", description="Fine-tune, deploy and try LLMs.")
    commands: Any = parser.add_subparsers(dest="command", metavar="{demo,local}", required=True)
    demo = commands.add_parser("demo", help="run a fine-tuning job end to end on this machine")
    demo.set_defaults(handler=_demo)
    add_local_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
