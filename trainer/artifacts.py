"""What a run leaves in the model folder.

- Full fine-tuning: the weights (safetensors), config, generation config and tokenizer at the top.
- LoRA: the adapter always in ``adapter/``. Merged: the merged weights at the top as above.
  Not merged: the top holds the adapter files again (PEFT's layout) and the tokenizer, but no config
  and no base weights; ``AutoModelForCausalLM.from_pretrained(dir)`` (with peft installed) loads the
  base the adapter names and applies the adapter. The merged model is then written to ``merged/``
  in the metrics folder (SageMaker's ``output.tar.gz``): what an endpoint serves and a download of
  the merged variant holds.
- Always ``tunelab-training.json``: the values used, metrics, rows trained and dropped, versions.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

SUMMARY_FILE = "tunelab-training.json"
ADAPTER_DIR = "adapter"
# The merged copy of an unmerged adapter, in the metrics folder (SageMaker's output.tar.gz).
MERGED_DIR = "merged"
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


def _merged(model: Any, adapter_dir: Path, load_base: Callable[[], Any] | None) -> Any:
    """The adapter merged into its base: in memory, or (``load_base``: the trained model is sharded
    across processes) applied from its saved files to a fresh copy of the base."""
    if load_base is None:
        return model.merge_and_unload()
    from peft import PeftModel

    return PeftModel.from_pretrained(load_base(), str(adapter_dir)).merge_and_unload()


def _save_full(model: Any, tokenizer: Any, folder: Path, state_dict: dict[str, Any] | None) -> None:
    _ready_for_inference(model)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict)
    tokenizer.save_pretrained(folder)


def save_model(
    model: Any,
    tokenizer: Any,
    model_dir: Path,
    *,
    is_adapter: bool,
    merge: bool,
    base_name: str,
    state_dict: dict[str, Any] | None = None,
    load_base: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Write the fine-tuned model to ``model_dir``; returns the artifact description for the summary.

    ``state_dict``: the gathered weights of a model sharded across processes (its own parameters are
    shards); ``load_base``: a fresh base model to merge a sharded adapter into.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    if not is_adapter:
        _save_full(model, tokenizer, model_dir, state_dict)
        return {"merged": False, "adapter": None, "merged_variant": None, "files": _files(model_dir)}
    adapter_dir = model_dir / ADAPTER_DIR
    model.save_pretrained(adapter_dir, safe_serialization=True, state_dict=state_dict)
    _set_adapter_base(adapter_dir, base_name)
    if merge:
        _save_full(_merged(model, adapter_dir, load_base), tokenizer, model_dir, None)
    else:
        for name in ADAPTER_FILES:
            shutil.copy2(adapter_dir / name, model_dir / name)
        tokenizer.save_pretrained(model_dir)
    return {"merged": merge, "adapter": ADAPTER_DIR, "merged_variant": None, "files": _files(model_dir)}


def save_merged_copy(
    model: Any,
    tokenizer: Any,
    model_dir: Path,
    merged_dir: Path,
    *,
    load_base: Callable[[], Any] | None = None,
) -> str:
    """The merged copy of an adapter that was not merged, in ``merged_dir`` (in the metrics folder, which
    SageMaker uploads as ``output.tar.gz``), so that every LoRA model can be served and downloaded with
    weights and configuration. Written to a temporary folder first: the folder exists only whole.
    Returns its name inside that archive (the summary's ``merged_variant``)."""
    partial = merged_dir.with_name(f".{merged_dir.name}-partial")
    shutil.rmtree(partial, ignore_errors=True)
    _save_full(_merged(model, model_dir / ADAPTER_DIR, load_base), tokenizer, partial, None)
    shutil.rmtree(merged_dir, ignore_errors=True)
    partial.rename(merged_dir)
    return f"{merged_dir.name}/"


def _files(model_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file())


def write_summary(model_dir: Path, summary: dict[str, Any]) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / SUMMARY_FILE
    path.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return path
