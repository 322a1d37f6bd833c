"""The local runtime sets only variables something reads: tunelab's settings, AWS's and Powertools' own."""

from __future__ import annotations

from pathlib import Path

from tunelab.composition.settings import Settings
from tunelab.local.aws_access import new_access
from tunelab.local.runtime import LocalRuntime

# Read by boto3/botocore, moto, Powertools, the HTTP stack, or the local runtime itself.
NOT_SETTINGS = {"MOTO_PORT", "NO_PROXY", "TUNELAB_LOCAL_DATA_DIR"}


def test_every_tunelab_variable_of_the_local_runtime_is_a_setting(tmp_path: Path) -> None:
    runtime = LocalRuntime(tmp_path)
    runtime._moto_endpoint = "http://127.0.0.1:5999"  # what start() sets; environment() reads it
    runtime._access = new_access(runtime._moto_endpoint, "us-east-1")

    environment = runtime.environment()

    settings = {name.upper() for name in Settings.model_fields}
    ours = {
        key for key in environment if not key.startswith(("AWS_", "POWERTOOLS_")) and key not in NOT_SETTINGS
    }
    assert ours - settings == set()
    assert {"TABLE_NAME", "EVENT_BUS_NAME", "RUNTIME"} <= ours
