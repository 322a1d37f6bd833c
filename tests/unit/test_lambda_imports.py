"""Every Lambda entry module imports on its own, small and offline.

What a user would notice otherwise: a function that pulls in torch, transformers or the SageMaker
SDK does not fit Lambda's package limit (or starts in seconds), and one that reads its settings or
makes an AWS client at import fails its cold start on a missing variable or credentials before
any handler code runs.

The imports run in a fresh interpreter, shaped like a Lambda cold start: `AWS_LAMBDA_TASK_ROOT`
set (so Powertools' Tracer patches botocore, as on Lambda), but no region, no credentials, no
tunelab settings and no instance metadata. The child records every boto3 client made, every
credential lookup and every socket connection while importing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tunelab.composition.stack_definitions import FUNCTIONS

ROOT = Path(__file__).resolve().parents[2]

# Top-level packages no Lambda may import: the trainer's stack, the SageMaker SDK, the test tools.
FORBIDDEN = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "sagemaker",
    "sagemaker_core",
    "datasets",
    "pandas",
    "moto",
)

_CHILD = """
import importlib, json, socket, sys, traceback

import botocore.session

made, credentials, connections = [], [], []
create_client = botocore.session.Session.create_client
get_credentials = botocore.session.Session.get_credentials


def record_client(self, service_name, *args, **kwargs):
    # The X-Ray SDK (Powertools' Tracer) makes its own unsigned client of the local X-Ray daemon
    # for sampling rules, as on every traced Lambda: not tunelab's, and it needs no credentials.
    if not any("aws_xray_sdk" in frame.filename for frame in traceback.extract_stack()):
        made.append(service_name)
    return create_client(self, service_name, *args, **kwargs)


def record_credentials(self, *args, **kwargs):
    credentials.append(True)
    return get_credentials(self, *args, **kwargs)


def refuse_connect(self, address):
    connections.append(repr(address))
    raise OSError("no network while importing a Lambda entry module")


botocore.session.Session.create_client = record_client
botocore.session.Session.get_credentials = record_credentials
socket.socket.connect = refuse_connect
socket.socket.connect_ex = refuse_connect

handlers = {}
for name in MODULES:
    module = importlib.import_module(name)
    handlers[name] = callable(getattr(module, "handler", None))
print(json.dumps({
    "handlers": handlers,
    "modules": sorted(sys.modules),
    "clients": made,
    "credentials": len(credentials),
    "connections": connections,
}))
"""


def _cold_start_environment() -> dict[str, str]:
    """This machine's environment without anything AWS or tunelab, plus what Lambda itself sets."""
    settings_variables = {
        "RUNTIME",
        "TABLE_NAME",
        "IDEMPOTENCY_TABLE_NAME",
        "DATASETS_BUCKET",
        "ARTIFACTS_BUCKET",
        "FINE_TUNING_STATE_MACHINE_ARN",
        "DEPLOYMENT_STATE_MACHINE_ARN",
        "EVENT_BUS_NAME",
        "SENDER_EMAIL",
        "SCHEDULE_GROUP",
        "SCHEDULER_ROLE_ARN",
        "SCHEDULES_DLQ_ARN",
        "AUTO_UNDEPLOY_TARGET_ARN",
        "BEDROCK_ROLE_ARN",
        "PLATFORM_ACCOUNT_ID",
    }
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "BOTO", "POWERTOOLS_")) and key.upper() not in settings_variables
    }
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": "tunelab-import-test",
            "AWS_LAMBDA_TASK_ROOT": str(ROOT),
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.14",
            "AWS_EC2_METADATA_DISABLED": "true",
            # Point the SDK's config files somewhere empty: no profile of this machine may help.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "HF_HUB_OFFLINE": "1",
            # This checkout's code, as the bundle holds it (whatever the virtualenv's install points at).
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "shared")]),
        }
    )
    return env


@pytest.fixture(scope="module")
def imported() -> dict[str, Any]:
    modules = [f"functions.{spec.module}" for spec in FUNCTIONS]
    code = f"MODULES = {modules!r}\n{_CHILD}"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_cold_start_environment(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"importing the entry modules failed:\n{result.stderr[-4000:]}"
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_every_function_of_the_stack_has_an_importable_handler(imported: dict[str, Any]) -> None:
    assert imported["handlers"] == {f"functions.{spec.module}": True for spec in FUNCTIONS}


@pytest.mark.parametrize("package", FORBIDDEN)
def test_no_function_imports_heavy_or_test_packages(imported: dict[str, Any], package: str) -> None:
    loaded = [name for name in imported["modules"] if name == package or name.startswith(package + ".")]
    assert loaded == [], f"a Lambda entry module imports {package}: {loaded[:5]}"


def test_functions_that_answer_no_http_leave_the_api_models_out() -> None:
    """Only the API function loads the API's request/response models: the others start without them."""
    modules = [f"functions.{spec.module}" for spec in FUNCTIONS if spec.trigger != "api"]
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "api = ('tunelab.entrypoints.api', 'tunelab.entrypoints.api.contracts')\n"
        "print(json.dumps(sorted(name for name in sys.modules if name.startswith(api))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_cold_start_environment(),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_importing_needs_no_credentials_no_client_and_no_network(imported: dict[str, Any]) -> None:
    assert imported["clients"] == [], "a boto3 client is made at import time"
    assert imported["credentials"] == 0, "credentials are looked up at import time"
    assert imported["connections"] == [], "a connection is opened at import time"


_MISBEHAVING_IMPORT = """
import boto3, urllib.request
boto3.session.Session(region_name="eu-west-1").client("sqs")
try:
    urllib.request.urlopen("http://169.254.169.254/latest/meta-data/", timeout=1)
except OSError:
    pass
"""


def test_the_check_sees_what_it_looks_for() -> None:
    """A module that makes a client and opens a connection at import is caught (the test above can fail)."""
    code = "MODULES = []\n" + _CHILD.replace("handlers = {}", _MISBEHAVING_IMPORT + "handlers = {}")
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_cold_start_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["clients"] == ["sqs"]
    assert len(report["connections"]) == 1  # the metadata address, or a proxy where one is set
