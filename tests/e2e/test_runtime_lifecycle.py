"""Starting and stopping the local runtime: a port in use, Ctrl-C, and nothing left behind."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.conftest import REPO_ROOT, runtime_environment, start_runtime
from tunelab.local.runtime import LOCK_FILE, DataDirInUse, LocalRuntime, PortInUse, RuntimeAlreadyRunning

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.slow]

IN_USE = "is in use: is another tunelab local runtime running? Stop it or use --port"


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def _listening_ports() -> set[int]:
    return {
        c.laddr.port for c in psutil.Process().net_connections(kind="inet") if c.status == psutil.CONN_LISTEN
    }


def _refused(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_a_port_in_use_is_refused_with_a_clear_message(tmp_path: Path, taken_port: int) -> None:
    threads_before = set(threading.enumerate())
    ports_before = _listening_ports()

    with pytest.raises(PortInUse) as refused:
        LocalRuntime(tmp_path, port=taken_port).start()

    assert str(refused.value) == f"port {taken_port} {IN_USE}"
    # Nothing was started: no thread, no listening socket (the port is checked before moto starts).
    assert set(threading.enumerate()) <= threads_before
    assert _listening_ports() <= ports_before


def _local_up_refused(port: int, data_dir: Path) -> str:
    """Run `tunelab local up`, expect it to refuse (exit 1, no traceback); its stderr."""
    command = [sys.executable, "-m", "tunelab.client.cli", "local", "up", "--port", str(port)]
    done = subprocess.run(
        [*command, "--data-dir", str(data_dir)],
        cwd=REPO_ROOT,
        env=runtime_environment(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def test_local_up_on_a_port_in_use_exits_non_zero_saying_so(tmp_path: Path, taken_port: int) -> None:
    said = _local_up_refused(taken_port, tmp_path / "data")

    assert f"tunelab: port {taken_port} {IN_USE}" in said


@pytest.fixture
def held_data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir whose lock another runtime holds (this test process, as that runtime would)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with (data_dir / LOCK_FILE).open("a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write(str(os.getpid()))
        lock.flush()
        yield data_dir


def test_a_data_dir_another_runtime_uses_is_refused_before_anything_starts(held_data_dir: Path) -> None:
    threads_before = set(threading.enumerate())
    ports_before = _listening_ports()

    with pytest.raises(DataDirInUse) as refused:
        LocalRuntime(held_data_dir, port=0).start()

    assert str(refused.value) == (
        f"another tunelab local runtime (process {os.getpid()}) uses the data dir {held_data_dir}: "
        "use that runtime, stop it, or pass --data-dir"
    )
    assert set(threading.enumerate()) <= threads_before
    assert _listening_ports() <= ports_before
    # The refused runtime left nothing claimed: another can run in this process.
    with LocalRuntime(held_data_dir.parent / "other", port=0) as other:
        assert other.running


def test_local_up_on_a_data_dir_in_use_exits_non_zero_saying_so(held_data_dir: Path) -> None:
    said = _local_up_refused(0, held_data_dir)

    assert f"tunelab: another tunelab local runtime (process {os.getpid()}) uses the data dir" in said


def test_stop_leaves_no_thread_and_no_listening_socket(tmp_path: Path) -> None:
    threads_before = set(threading.enumerate())
    ports_before = _listening_ports()
    runtime = LocalRuntime(tmp_path, port=0, scheduler_interval=0.2, outbox_interval=0.2)

    with runtime:
        api_port = runtime.port
        moto_port = int(runtime.moto_endpoint.rsplit(":", 1)[1])
        assert {api_port, moto_port} <= _listening_ports()
        with httpx.Client(base_url=runtime.base_url) as client:  # a kept-alive connection
            assert client.get("/v1/health").status_code == 200
            with pytest.raises(RuntimeAlreadyRunning):
                LocalRuntime(tmp_path / "other", port=0).start()
            runtime.stop()
        assert not runtime.running

    deadline = time.monotonic() + 10
    while set(threading.enumerate()) - threads_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [t.name for t in set(threading.enumerate()) - threads_before] == []
    assert _listening_ports() <= ports_before
    assert _refused(api_port)
    assert _refused(moto_port)


@pytest.mark.parametrize("interrupt_ignored", [False, True], ids=["terminal", "background-job"])
def test_ctrl_c_stops_local_up_cleanly(tmp_path: Path, interrupt_ignored: bool) -> None:
    # A script or CI that starts it in the background hands it SIGINT ignored: Ctrl-C still stops it.
    # (And a plan the operator gave before it ran is the workspace's once it runs.)
    token_command = [sys.executable, "-m", "tunelab.client.cli", "local", "token", "--workspace", "ws-early"]
    data = str(tmp_path / "data")
    recorded = subprocess.run(
        [*token_command, "--email", "op@example.com", "--plan", "trial", "--data-dir", data],
        cwd=REPO_ROOT,
        env=runtime_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    runtime = start_runtime(tmp_path / "data", tmp_path / "runtime.log", interrupt_ignored=interrupt_ignored)
    api_url = runtime.ready["api_url"]
    assert httpx.get(f"{api_url}/v1/health", timeout=30).json() == {"status": "ok"}
    workspace = httpx.get(
        f"{api_url}/v1/workspace", headers={"Authorization": f"Bearer {recorded.stdout.strip()}"}, timeout=30
    )
    assert workspace.json()["plan"] == "trial"
    banner = runtime.log()
    assert "survive a stop or a kill" in banner
    assert "unfinished jobs resume" in banner
    assert str(tmp_path / "data") in banner
    # How to reach this runtime (not on the defaults) with the token command and the CLI.
    assert f"tunelab local token --workspace W --email E --data-dir {tmp_path / 'data'}" in banner
    assert f"export TUNELAB_API_URL={api_url}" in banner

    exit_code = runtime.interrupt()

    assert exit_code == 0, runtime.log()
    assert "tunelab: stopped" in runtime.log()
    assert "Traceback" not in runtime.log()
    assert _refused(int(api_url.rsplit(":", 1)[1]))
