"""The fast tier stays fast: its tests and fakes load no moto (nor does anything they import)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_use_case_tests_and_their_fakes_load_no_moto() -> None:
    modules = sorted(f"tests.application.{p.stem}" for p in Path(__file__).parent.glob("test_*.py"))
    code = (
        "import importlib, sys\n"
        f"for name in {['tests.fakes', *modules]!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'moto' or m.startswith('moto.')))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'shared'}"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert loaded == "[]"
