"""The one code asset of every Lambda function, built without Docker.

The asset holds `functions/` and the `tunelab` package at its root, the trainer's source as
`trainer/` (what a SageMaker job runs: its `.py` files, `requirements.txt` and
`metric_definitions.json`, which `composition.trainer.trainer_dir` finds and the provider packs as
sourcedir.tar.gz), plus the Lambda dependencies
(`[project].dependencies` of pyproject.toml) installed by pip as wheels for Lambda's platform
(manylinux, aarch64, the runtime's CPython). Its hash is computed here from those inputs, so CDK
reuses a bundle in `cdk.out/` until a source file or the dependency list changes.

With `install_dependencies=False` (context `skipBundling=true`) the asset holds the sources only:
what the infrastructure tests need, in milliseconds and without the network.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from infra.config import REPO_ROOT
from tunelab.composition.stack_definitions import LAMBDA_PYTHON_VERSION, TRAINER_BUNDLE_DIR

# Wheels Lambda's Amazon Linux 2023 (glibc 2.34) can load on arm64, newest tag first.
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux2014_aarch64")
SOURCE_DIRS = (("functions", "functions"), ("shared/tunelab", "tunelab"))
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")
# The trainer's files a training job needs (its README stays out of the job's source).
TRAINER_SOURCE = "trainer"
TRAINER_FILES = ("*.py", "requirements.txt", "metric_definitions.json")


def lambda_dependencies(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The requirements the functions need at run time: `[project].dependencies`."""
    with pyproject.open("rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    assert isinstance(dependencies, list)
    return [str(item) for item in dependencies]


def trainer_files(root: Path) -> list[Path]:
    """The trainer's files that go into the bundle (top level of `trainer/`, sorted)."""
    folder = root / TRAINER_SOURCE
    return sorted({path for pattern in TRAINER_FILES for path in folder.glob(pattern) if path.is_file()})


def _source_files(root: Path) -> Iterator[Path]:
    for relative, _ in SOURCE_DIRS:
        for path in sorted((root / relative).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                yield path
    yield from trainer_files(root)


def asset_hash(root: Path, requirements: Sequence[str], install_dependencies: bool) -> str:
    """A digest of everything that goes into the bundle: sources, requirements, target platform."""
    digest = hashlib.sha256()
    digest.update(f"{LAMBDA_PYTHON_VERSION}|{PLATFORMS}|{install_dependencies}|".encode())
    digest.update("\n".join(requirements).encode())
    for path in _source_files(root):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def pip_command(requirements: Sequence[str], target: Path) -> list[str]:
    """pip installing `requirements` as wheels for Lambda (no sdists: nothing is compiled here)."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    command += [
        "--implementation",
        "cp",
        "--python-version",
        LAMBDA_PYTHON_VERSION,
        "--only-binary=:all:",
        "--no-compile",
        "--upgrade",
        "--target",
        str(target),
        *requirements,
    ]
    return command


def stage_sources(root: Path, output_dir: Path) -> None:
    """Copy `functions/`, `shared/tunelab` (as `tunelab/`) and the trainer's files (as `trainer/`) to
    the bundle's root."""
    for relative, name in SOURCE_DIRS:
        shutil.copytree(root / relative, output_dir / name, ignore=_IGNORED, dirs_exist_ok=True)
    files = trainer_files(root)
    if not any(path.name == "train.py" for path in files):
        raise FileNotFoundError(f"{root / TRAINER_SOURCE / 'train.py'} is missing: SageMaker jobs need it")
    trainer = output_dir / TRAINER_BUNDLE_DIR
    trainer.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy2(path, trainer / path.name)


@jsii.implements(ILocalBundling)
class LocalPythonBundling:
    """Bundles on this machine: pip for the dependencies, a copy for the sources."""

    def __init__(self, root: Path, requirements: Sequence[str], install_dependencies: bool) -> None:
        self._root = root
        self._requirements = list(requirements)
        self._install = install_dependencies

    def try_bundle(self, output_dir: str, *_options: object, **_kw: object) -> bool:
        output = Path(output_dir)
        if self._install:
            result = subprocess.run(
                pip_command(self._requirements, output), capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                raise RuntimeError(f"pip could not bundle the Lambda dependencies:\n{result.stderr[-4000:]}")
            # The runtime provides what pip's own metadata and caches would add; keep the zip small.
            for leftover in output.glob("bin"):
                shutil.rmtree(leftover)
        stage_sources(self._root, output)
        return True


def lambda_code(*, install_dependencies: bool, root: Path = REPO_ROOT) -> lambda_.AssetCode:
    """The code asset every function shares (one object: create it once per stack)."""
    requirements = lambda_dependencies(root / "pyproject.toml")
    return lambda_.Code.from_asset(
        str(root / "functions"),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=asset_hash(root, requirements, install_dependencies),
        bundling=BundlingOptions(
            # Never pulled: the local bundler always succeeds or raises.
            image=DockerImage.from_registry("public.ecr.aws/sam/build-python" + LAMBDA_PYTHON_VERSION),
            local=LocalPythonBundling(root, requirements, install_dependencies),
        ),
    )
