"""The `tunelab` command line."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["demo"] or args[:2] == ["local", "up"]:
        print(
            "tunelab: the embedded local runtime is not built yet, so the demo cannot run a real "
            "fine-tuning job on this machine. Nothing was started.",
            file=sys.stderr,
        )
        return 3
    print("usage: tunelab demo | tunelab local up", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
