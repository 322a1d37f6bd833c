"""Where the local runtime listens and keeps its files, and what it starts with (light: the command line
reads it at start)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

DEFAULT_PORT = 8642
# The embedded stack's name: its resources are `<stack>-...` (`runtime.StackNames`).
STACK_NAME = "tunelab"
# What a workspace of the local runtime is on until the operator records another (`local.plans`).
DEFAULT_LOCAL_PLAN: Final = "subscription"


def records_table(stack: str = STACK_NAME) -> str:
    """The embedded stack's records table."""
    return f"{stack}-records"


def default_data_dir() -> Path:
    """`$TUNELAB_LOCAL_DATA_DIR`, else `~/.tunelab/local`."""
    explicit = os.environ.get("TUNELAB_LOCAL_DATA_DIR")
    return (
        Path(explicit).expanduser().resolve() if explicit else (Path.home() / ".tunelab" / "local").resolve()
    )
