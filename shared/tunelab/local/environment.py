"""What the process running a local runtime sets before the runtime (and with it the API and the use
cases) is imported: Powertools loggers take their service name and level when their module is
imported, and a model loading for a deployment must draw no progress bar into the runtime's log."""

from __future__ import annotations

import os

SERVICE_NAME = "tunelab"
DEFAULT_LOG_LEVEL = "WARNING"


def early_environment(log_level: str = DEFAULT_LOG_LEVEL) -> dict[str, str]:
    """The variables to set before the runtime's modules load."""
    return {
        "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
        "POWERTOOLS_LOG_LEVEL": log_level,
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }


def prepare(log_level: str = DEFAULT_LOG_LEVEL) -> None:
    """Set them in this process (`tunelab local up` and the demo call it before importing the runtime)."""
    os.environ.update(early_environment(log_level))
