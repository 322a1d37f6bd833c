"""The Lambda bundle: what pip is asked for, what is staged, when the asset changes (no jsii here)."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest

from infra.bundling import asset_hash, lambda_dependencies, pip_command, stage_sources
from infra.config import REPO_ROOT
from tunelab.composition.stack_definitions import TRAINER_BUNDLE_DIR

pytestmark = pytest.mark.xdist_group("infra")


def test_dependencies_are_the_projects_runtime_dependencies() -> None:
    names = [requirement.split(">")[0].split("[")[0].split("=")[0] for requirement in lambda_dependencies()]
    assert names == ["pydantic", "pydantic-settings", "aws-lambda-powertools", "boto3"]
    assert "aws-lambda-powertools[tracer]>=3.20,<4" in lambda_dependencies()


def test_pip_fetches_only_wheels_for_lambdas_arm64_python(tmp_path: Path) -> None:
    command = pip_command(["pydantic>=2"], tmp_path)
    text = " ".join(command)
    assert "--only-binary=:all:" in command
    assert "--platform manylinux2014_aarch64" in text
    assert "--python-version 3.14" in text
    assert "--implementation cp" in text
    assert command[-3:] == ["--target", str(tmp_path), "pydantic>=2"]


def fake_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "functions").mkdir(parents=True)
    (root / "functions" / "__init__.py").write_text("")
    (root / "functions" / "api.py").write_text("def handler(event, context): ...\n")
    (root / "functions" / "__pycache__").mkdir()
    (root / "functions" / "__pycache__" / "api.cpython-311.pyc").write_bytes(b"\0")
    shutil.copytree(
        REPO_ROOT / "shared" / "tunelab" / "catalog_data", root / "shared" / "tunelab" / "catalog_data"
    )
    (root / "shared" / "tunelab" / "__init__.py").write_text("")
    (root / "trainer").mkdir()
    for name in ("train.py", "requirements.txt", "metric_definitions.json", "README.md"):
        (root / "trainer" / name).write_text(f"# {name}\n")
    return root


def test_sources_are_staged_at_the_bundles_root_without_bytecode(tmp_path: Path) -> None:
    root = fake_repo(tmp_path)
    out = tmp_path / "out"
    stage_sources(root, out)
    assert (out / "functions" / "api.py").exists()
    assert (out / "tunelab" / "__init__.py").exists()
    assert any((out / "tunelab" / "catalog_data").iterdir())
    assert not list(out.rglob("*.pyc"))
    # the trainer's job files, without its README
    assert sorted(p.name for p in (out / TRAINER_BUNDLE_DIR).iterdir()) == [
        "metric_definitions.json",
        "requirements.txt",
        "train.py",
    ]


def test_a_bundle_without_the_trainer_is_refused(tmp_path: Path) -> None:
    root = fake_repo(tmp_path)
    (root / "trainer" / "train.py").unlink()
    with pytest.raises(FileNotFoundError, match=r"train\.py"):
        stage_sources(root, tmp_path / "out")


def test_the_bundled_trainer_is_what_sagemaker_jobs_start_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the real repository's bundle, with TRAINER_DIR as the stack sets it (relative to the root)
    out = tmp_path / "bundle"
    stage_sources(REPO_ROOT, out)
    trainer = out / TRAINER_BUNDLE_DIR
    monkeypatch.setenv("TRAINER_DIR", str(trainer))
    from tunelab.adapters.providers.sagemaker import build_trainer_archive  # noqa: PLC0415  # boto3-heavy
    from tunelab.composition.trainer import trainer_dir  # noqa: PLC0415

    # Then wiring finds it, and sourcedir.tar.gz holds the program and what the container installs
    assert trainer_dir() == trainer
    with tarfile.open(fileobj=io.BytesIO(build_trainer_archive(trainer_dir()))) as archive:
        names = set(archive.getnames())
    expected = {p.name for p in (REPO_ROOT / "trainer").glob("*.py")}
    assert {"train.py", "requirements.txt", "metric_definitions.json"} | expected == names


def test_the_asset_changes_with_a_source_file_or_the_dependencies_and_not_with_bytecode(
    tmp_path: Path,
) -> None:
    root = fake_repo(tmp_path)
    first = asset_hash(root, ["pydantic>=2"], install_dependencies=True)
    (root / "functions" / "__pycache__" / "api.cpython-311.pyc").write_bytes(b"\1")
    assert asset_hash(root, ["pydantic>=2"], install_dependencies=True) == first
    (root / "functions" / "api.py").write_text("def handler(event, context): return 1\n")
    second = asset_hash(root, ["pydantic>=2"], install_dependencies=True)
    assert second != first
    assert asset_hash(root, ["pydantic>=2.1"], install_dependencies=True) != second
    (root / "trainer" / "train.py").write_text("print('changed')\n")
    assert asset_hash(root, ["pydantic>=2"], install_dependencies=True) != second
    (root / "trainer" / "README.md").write_text("not in the bundle\n")
    third = asset_hash(root, ["pydantic>=2"], install_dependencies=True)
    (root / "trainer" / "README.md").write_text("still not in the bundle\n")
    assert asset_hash(root, ["pydantic>=2"], install_dependencies=True) == third
    assert asset_hash(root, ["pydantic>=2.1"], install_dependencies=False) != asset_hash(
        root, ["pydantic>=2.1"], install_dependencies=True
    )
