"""Where the local runtime listens and keeps its files (light: the command line reads it at start)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PORT = 8642


def default_data_dir() -> Path:
    """`$TUNELAB_LOCAL_DATA_DIR`, else `~/.tunelab/local`."""
    explicit = os.environ.get("TUNELAB_LOCAL_DATA_DIR")
    return (
        Path(explicit).expanduser().resolve() if explicit else (Path.home() / ".tunelab" / "local").resolve()
    )
