"""Where the base model comes from: a ``model`` channel, a local folder, or a Hugging Face id.

A folder may also hold the artifacts of an earlier fine-tuned model: full weights (full fine-tuning or
merged adapters) load as they are; an adapter without weights loads on top of the base it names.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.errors import TrainerInputError

WEIGHT_PATTERNS = (
    "model.safetensors",
    "model-*.safetensors",
    "pytorch_model.bin",
    "pytorch_model-*.bin",
    "*.gguf",
)
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class BaseModel:
    """What ``from_pretrained`` loads, the name recorded for it, and an earlier adapter to continue from."""

    load_from: str
    name: str
    source: str  # "channel", "folder" or "hub"
    tokenizer_from: str
    adapter_dir: Path | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "continued_adapter": self.adapter_dir is not None,
        }


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(any(folder.glob(p)) for p in WEIGHT_PATTERNS)


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()


def _unpack_archive(folder: Path, workdir: Path) -> Path:
    """A channel that holds only ``model.tar.gz`` (SageMaker does not unpack channels) is unpacked."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if len(entries) != 1 or not entries[0].name.endswith((".tar.gz", ".tgz")):
        return folder
    target = workdir / "base-model"
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(entries[0]) as archive:
        archive.extractall(target, filter="data")
    return target


def _from_folder(folder: Path, source: str, base_override: str | None) -> BaseModel:
    if _has_weights(folder):
        return BaseModel(
            load_from=str(folder),
            name=base_override or str(folder),
            source=source,
            tokenizer_from=str(folder),
        )
    adapter_dir = next((d for d in (folder / "adapter", folder) if (d / ADAPTER_CONFIG).is_file()), None)
    if adapter_dir is None:
        raise TrainerInputError(
            f"the model folder {folder} holds neither model weights (config.json and safetensors) "
            "nor a LoRA adapter"
        )
    recorded = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8")).get(
        "base_model_name_or_path"
    )
    base = base_override or recorded
    if not base:
        raise TrainerInputError(f"the adapter in {adapter_dir} does not name its base model; set base_model")
    tokenizer_from = str(folder) if _has_tokenizer(folder) else base
    return BaseModel(
        load_from=base, name=base, source=source, tokenizer_from=tokenizer_from, adapter_dir=adapter_dir
    )


def resolve_base_model(base_model: str | None, channel: Path | None, workdir: Path) -> BaseModel:
    """The ``model`` channel when it holds files, else ``base_model`` as a local folder or a hub id."""
    if channel is not None and channel.is_dir() and any(channel.iterdir()):
        return _from_folder(_unpack_archive(channel, workdir), "channel", base_model)
    if not base_model:
        raise TrainerInputError(
            "no base model: set the hyperparameter base_model or provide a 'model' channel"
        )
    folder = Path(base_model)
    if folder.is_dir():
        return _from_folder(folder, "folder", None)
    if base_model.startswith(("/", "./", "../")):
        raise TrainerInputError(f"the base model folder {base_model} does not exist")
    return BaseModel(load_from=base_model, name=base_model, source="hub", tokenizer_from=base_model)


def read_hf_token(secret_arn: str) -> str:
    """The Hugging Face token kept in a Secrets Manager secret (plain text or JSON with a token field)."""
    import boto3  # only in the container, and only for gated models

    parts = secret_arn.split(":")
    region = parts[3] if len(parts) > 3 and parts[0] == "arn" else None
    client = boto3.client("secretsmanager", region_name=region)
    try:
        value = client.get_secret_value(SecretId=secret_arn)["SecretString"]
    except Exception as error:
        raise TrainerInputError(
            f"could not read the Hugging Face token secret {secret_arn}: {type(error).__name__}"
        ) from None
    try:
        decoded = json.loads(value)
    except ValueError:
        return str(value).strip()
    if isinstance(decoded, dict):
        for key in ("token", "hf_token", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
            if isinstance(decoded.get(key), str):
                return str(decoded[key]).strip()
        if len(decoded) == 1:
            return str(next(iter(decoded.values()))).strip()
        raise TrainerInputError(f"the secret {secret_arn} holds JSON without a 'token' field")
    return str(decoded).strip()
