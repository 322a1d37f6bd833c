"""What a run leaves in the model folder.

- Full fine-tuning: the weights (safetensors), config, generation config and tokenizer at the top.
- LoRA: the adapter always in ``adapter/``. Merged: the merged weights at the top as above.
  Not merged: the top holds the adapter files again (PEFT's layout) and the tokenizer, but no config
  and no base weights; ``AutoModelForCausalLM.from_pretrained(dir)`` (with peft installed) loads the
  base the adapter names and applies the adapter.
- Always ``tunelab-training.json``: the values used, metrics, rows trained and dropped, versions.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

SUMMARY_FILE = "tunelab-training.json"
ADAPTER_DIR = "adapter"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": sys.version.split()[0]}
    for package in (
        "torch",
        "transformers",
        "peft",
        "trl",
        "accelerate",
        "datasets",
        "tokenizers",
        "safetensors",
    ):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return versions


def _set_adapter_base(adapter_dir: Path, base_name: str) -> None:
    config_path = adapter_dir / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_name
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")


def _ready_for_inference(model: Any) -> None:
    # Training ran without the KV cache; generation wants it back.
    config = getattr(model, "config", None)
    if config is not None:
        config.use_cache = True


def save_model(
    model: Any, tokenizer: Any, model_dir: Path, *, is_adapter: bool, merge: bool, base_name: str
) -> dict[str, Any]:
    """Write the fine-tuned model to ``model_dir``; returns the artifact description for the summary."""
    model_dir.mkdir(parents=True, exist_ok=True)
    if not is_adapter:
        _ready_for_inference(model)
        model.save_pretrained(model_dir, safe_serialization=True)
        tokenizer.save_pretrained(model_dir)
        return {"merged": False, "adapter": None, "files": _files(model_dir)}
    adapter_dir = model_dir / ADAPTER_DIR
    model.save_pretrained(adapter_dir, safe_serialization=True)
    _set_adapter_base(adapter_dir, base_name)
    if merge:
        merged = model.merge_and_unload()
        _ready_for_inference(merged)
        merged.save_pretrained(model_dir, safe_serialization=True)
    else:
        for name in ADAPTER_FILES:
            shutil.copy2(adapter_dir / name, model_dir / name)
    tokenizer.save_pretrained(model_dir)
    return {"merged": merge, "adapter": ADAPTER_DIR, "files": _files(model_dir)}


def _files(model_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file())


def write_summary(model_dir: Path, summary: dict[str, Any]) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / SUMMARY_FILE
    path.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return path
