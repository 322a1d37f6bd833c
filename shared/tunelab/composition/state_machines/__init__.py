"""The Step Functions state machines as ASL files (`fine_tuning.asl.json`, `deployment.asl.json`).

The CDK app and the local runtime both create the state machines from these files; `definition(...)`
fills in their `${Name}` placeholders (one `${<Function>FunctionArn}` per Lambda task, and the
resource variables of `stack_definitions.STATE_MACHINE_RESOURCE_VARIABLES`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from tunelab.composition.stack_definitions import STATE_MACHINES, placeholders

# The folder of the ASL files (the CDK app reads them from here too).
FOLDER = Path(__file__).resolve().parent


def definition_text(asl_file: str) -> str:
    """The ASL file's text, placeholders and all."""
    return resources.files(__name__).joinpath(asl_file).read_text(encoding="utf-8")


def definition(asl_file: str, values: Mapping[str, str]) -> str:
    """The ASL definition with every `${Name}` placeholder filled from `values` (KeyError if missing)."""
    text = definition_text(asl_file)
    missing = sorted(placeholders(text) - set(values))
    if missing:
        raise KeyError(f"{asl_file}: no value for placeholders {missing}")
    for name in placeholders(text):
        text = text.replace("${" + name + "}", values[name])
    json.loads(text)  # a value that breaks the JSON fails here, not in Step Functions
    return text


def asl_files() -> dict[str, str]:
    """State machine logical id → its ASL file name (from `stack_definitions.STATE_MACHINES`)."""
    return {spec.logical_id: spec.asl_file for spec in STATE_MACHINES}
