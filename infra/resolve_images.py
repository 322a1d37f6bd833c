"""Build-time generator of `shared/tunelab/catalog_data/hf_images.json`.

Resolves the Hugging Face container image URIs (training, PyTorch inference, LLM/TGI inference)
for every region the SageMaker SDK knows, with the SDK's own offline image catalog, so that no
Lambda function imports the SDK. The framework versions are the SDK's newest ones that satisfy
`trainer/requirements.txt` (transformers). Run it after upgrading the SDK and commit the result:

    .venv/bin/python infra/resolve_images.py            # writes the file
    .venv/bin/python infra/resolve_images.py --check    # exits 1 when the file is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from sagemaker.core import image_uris  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "shared" / "tunelab" / "catalog_data" / "hf_images.json"
REQUIREMENTS = ROOT / "trainer" / "requirements.txt"
SDK_PACKAGE = "sagemaker-core"
# GPU images: every tunelab SageMaker instance type has GPUs; the instance type only picks cpu/gpu.
GPU_INSTANCE = "ml.g5.2xlarge"


def _config(name: str) -> dict[str, Any]:
    path = Path(image_uris.__file__).parent / "image_uri_config" / f"{name}.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def transformers_range(requirements: Path = REQUIREMENTS) -> SpecifierSet:
    for raw in requirements.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            if req.name.lower() == "transformers":
                return req.specifier
    return SpecifierSet()


def pick_version(versions: list[str], wanted: SpecifierSet) -> str:
    """The newest version in `wanted`; the newest one below it when none fits (the trainer's
    requirements.txt, installed at container start, then upgrades transformers)."""
    parsed = sorted(Version(v) for v in versions)
    fitting = [v for v in parsed if v in wanted]
    return str(fitting[-1] if fitting else parsed[-1])


def _scope(framework: str, scope: str, wanted: SpecifierSet) -> dict[str, Any]:
    versions = _config(framework)[scope]["versions"]
    version = pick_version(list(versions), wanted)
    entry = versions[version]
    base = sorted(k for k in entry if k != "version_aliases")[-1]  # e.g. "pytorch2.9.0"
    details = entry[base]
    py_version = details["py_versions"][-1]
    images: dict[str, str] = {}
    for region in sorted(details["registries"]):
        images[region] = image_uris.retrieve(
            framework,
            region=region,
            version=version,
            py_version=py_version,
            base_framework_version=base,
            image_scope=scope,
            instance_type=GPU_INSTANCE,
        )
    return {
        "framework": framework,
        "transformers_version": version,
        "pytorch_version": base.removeprefix("pytorch"),
        "py_version": py_version,
        "repository": details["repository"],
        "images": images,
    }


def _llm() -> dict[str, Any]:
    config = _config("huggingface-llm")["inference"]
    version = str(sorted(Version(v) for v in config["versions"])[-1])
    entry = config["versions"][version]
    images = {
        region: image_uris.retrieve(
            "huggingface-llm",
            region=region,
            version=version,
            image_scope="inference",
            instance_type=GPU_INSTANCE,
        )
        for region in sorted(entry["registries"])
    }
    return {
        "framework": "huggingface-llm",
        "tgi_version": version,
        "py_version": entry["py_versions"][-1],
        "repository": entry["repository"],
        "images": images,
    }


def resolve(as_of: str | None = None) -> dict[str, Any]:
    """The file's content (without writing it)."""
    wanted = transformers_range()
    return {
        "as_of": as_of or datetime.now(UTC).date().isoformat(),
        "source": {
            "sdk": SDK_PACKAGE,
            "sdk_version": metadata.version(SDK_PACKAGE),
            "function": "sagemaker.core.image_uris.retrieve",
            "trainer_transformers": str(wanted),
        },
        "training": _scope("huggingface", "training", wanted),
        "inference": _scope("huggingface", "inference", wanted),
        "llm_inference": _llm(),
    }


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file; write nothing")
    args = parser.parse_args(argv)
    if args.check:
        committed = json.loads(OUTPUT.read_text(encoding="utf-8"))
        fresh = resolve(as_of=committed.get("as_of"))
        if fresh != committed:
            print(f"{OUTPUT} is out of date: run infra/resolve_images.py", file=sys.stderr)
            return 1
        return 0
    data = resolve()
    OUTPUT.write_text(render(data), encoding="utf-8")
    counts = {k: len(data[k]["images"]) for k in ("training", "inference", "llm_inference")}
    print(f"wrote {OUTPUT} ({counts})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
