"""Where the trainer's source folder (`trainer/`: `train.py`, `requirements.txt`) is: SageMaker jobs
are started with it packed as sourcedir.tar.gz, and the local runtime runs it in a subprocess."""

from __future__ import annotations

import os
from pathlib import Path

# An explicit TRAINER_DIR, the repository's `trainer/` (the package lives in `shared/tunelab`), or
# next to the package in a Lambda bundle.
_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the package `tunelab`
_CANDIDATES = (_PACKAGE_DIR.parents[1] / "trainer", _PACKAGE_DIR.parent / "trainer")


def trainer_dir() -> Path:
    """The trainer's source folder; `FileNotFoundError` when it is not shipped."""
    explicit = os.environ.get("TRAINER_DIR")
    candidates = (Path(explicit),) if explicit else _CANDIDATES
    for candidate in candidates:
        if (candidate / "train.py").is_file():
            return candidate
    raise FileNotFoundError(
        "The trainer's source folder (with train.py) was not found; set TRAINER_DIR or ship trainer/ "
        "with the function."
    )
