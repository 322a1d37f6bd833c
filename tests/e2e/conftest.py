"""The local runtime for end-to-end tests: one `tunelab local up` per test session, over HTTP.

The `local` fixture starts the real command (`python -m tunelab.client.cli local up --port 0`) in its own
process with a temporary data dir, waits for its ready file, and yields a `LocalApi`: the API's URL,
the AWS endpoint (moto, which answers only this run's credentials, read from the data dir), helpers
to mint tokens and call the API, and the process's log. The runtime may also run the probe handler
(`tests/e2e/probe.py`, through `TUNELAB_LOCAL_EXTRA_HANDLERS`) besides tunelab's own. The runtime
runs in its own process because moto's state is process-wide: a `mock_aws` test that runs on the
same pytest worker resets every moto backend of its process, and must not reset the runtime's.

Mark e2e test modules `pytestmark = pytest.mark.xdist_group("e2e")` so that under `pytest -n
--dist loadgroup` they share one worker, hence one runtime.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tunelab.local.aws_access import read_access
from tunelab.local.tokens import issue_token

REPO_ROOT = Path(__file__).resolve().parents[2]
# Starting takes a few seconds on an idle machine, much longer on a busy one (moto's ASL parser).
START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 60.0
DEFAULT_WORKSPACE = "ws-e2e"
DEFAULT_EMAIL = "ada@example.com"
PROBE_HANDLER = "tests.e2e.probe.handler"


def runtime_environment() -> dict[str, str]:
    """The environment a runtime process starts with: this one, without AWS settings of the machine."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "MOTO_")) and name not in {"RUNTIME", "TABLE_NAME"}
    }
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["TUNELAB_LOCAL_EXTRA_HANDLERS"] = PROBE_HANDLER
    return env


@dataclass
class RuntimeProcess:
    """A `tunelab local up` process; `ready` holds its ready file once it is up."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    ready: dict[str, Any] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def interrupt(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Ctrl-C (SIGINT) and wait; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            # The log ends with where each thread waited (the command prints it when stopping is slow).
            pytest.fail(f"tunelab local up did not stop within {timeout}s:\n{self.log()}")


def start_runtime(
    data_dir: Path,
    log_path: Path,
    *extra: str,
    port: int = 0,
    wait: bool = True,
    interrupt_ignored: bool = False,
) -> RuntimeProcess:
    """Start `tunelab local up` in its own process; with `wait`, return once it is ready.
    `interrupt_ignored`: start it with SIGINT ignored, as a shell script's background job is."""
    ready_file = data_dir.parent / f"{data_dir.name}.ready.json"
    ready_file.unlink(missing_ok=True)
    log = log_path.open("wb")
    command = [sys.executable, "-m", "tunelab.client.cli", "local", "up", "--port", str(port)]
    command += ["--data-dir", str(data_dir), "--ready-file", str(ready_file), *extra]
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=runtime_environment(),
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_ignore_interrupt if interrupt_ignored else None,  # noqa: PLW1509  # no threads touch it
    )
    log.close()
    started = RuntimeProcess(process=process, data_dir=data_dir, log_path=log_path)
    if not wait:
        return started
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready_file.exists():
        if process.poll() is not None:
            pytest.fail(f"tunelab local up exited with {process.returncode}:\n{started.log()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"tunelab local up was not ready after {START_TIMEOUT_S}s:\n{started.log()}")
        time.sleep(0.1)
    started.ready = json.loads(ready_file.read_text(encoding="utf-8"))
    return started


def _ignore_interrupt() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "the condition") -> Any:
    """The first truthy value of `check()`, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


@dataclass
class LocalApi:
    """A running local runtime as its users reach it."""

    runtime: RuntimeProcess
    base_url: str
    aws_endpoint: str
    data_dir: Path
    http: httpx.Client

    @property
    def outbox(self) -> Path:
        return self.data_dir / "outbox"

    def token(
        self,
        workspace: str = DEFAULT_WORKSPACE,
        email: str = DEFAULT_EMAIL,
        ttl: timedelta = timedelta(hours=1),
    ) -> str:
        """A token of this runtime (the same secret `tunelab local token` uses)."""
        return issue_token(self.data_dir, workspace=workspace, email=email, ttl=ttl)

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = "",
        json: Any = None,
        content: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """`method path` on the API; `token=""` mints the default user's token, `None` sends none."""
        all_headers = dict(headers or {})
        if token == "":
            token = self.token()
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, path, json=json, content=content, headers=all_headers, params=params)

    def client(self, service: str) -> Any:
        """A boto3 client of `service` on the runtime's AWS endpoint, with this run's credentials."""
        access = read_access(self.data_dir)
        assert access.endpoint_url == self.aws_endpoint
        return access.client(service)

    def log(self) -> str:
        return self.runtime.log()


def api_of(runtime: RuntimeProcess) -> LocalApi:
    """The running runtime as its users reach it (close its `http` when done)."""
    return LocalApi(
        runtime=runtime,
        base_url=runtime.ready["api_url"],
        aws_endpoint=runtime.ready["aws_endpoint"],
        data_dir=Path(runtime.ready["data_dir"]),
        http=httpx.Client(base_url=runtime.ready["api_url"], timeout=60.0),
    )


@contextmanager
def running_runtime(root: Path) -> Iterator[LocalApi]:
    """A runtime of its own (its process, port 0, the data dir `root/data`), stopped at the end."""
    api = api_of(start_runtime(root / "data", root / "runtime.log"))
    try:
        yield api
    finally:
        api.http.close()
        api.runtime.interrupt()


@pytest.fixture(scope="session")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalApi]:
    """One local runtime for the session (its own process, port 0, a temporary data dir)."""
    with running_runtime(tmp_path_factory.mktemp("local-runtime")) as api:
        yield api


__all__ = ["LocalApi", "RuntimeProcess", "api_of", "running_runtime", "start_runtime", "wait_for"]
