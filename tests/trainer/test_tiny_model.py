"""The tiny model builder: deterministic for a seed, untied embeddings, a chat template that stops."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from trainer.tiny_model import build_tiny_model, main, read_pairs

pytestmark = pytest.mark.xdist_group("trainer")


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_same_seed_builds_the_same_files_and_another_seed_other_weights(tmp_path, triage_pairs):
    pairs = triage_pairs[:40]
    first = build_tiny_model(pairs, tmp_path / "a", seed=3, vocab_size=400)
    second = build_tiny_model(pairs, tmp_path / "b", seed=3, vocab_size=400)
    other = build_tiny_model(pairs, tmp_path / "c", seed=4, vocab_size=400)

    assert _digest(first) == _digest(second)
    assert _digest(first)["model.safetensors"] != _digest(other)["model.safetensors"]
    assert _digest(first)["tokenizer.json"] == _digest(other)["tokenizer.json"]


def test_the_model_is_a_llama_with_untied_embeddings_and_a_stopping_chat_template(tiny_model_dir):
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], tokenize=False
    )

    assert config.model_type == "llama"
    assert config.tie_word_embeddings is False
    assert isinstance(rendered, str)
    assert rendered.endswith("hello" + tokenizer.eos_token)
    assert tokenizer.convert_tokens_to_ids(tokenizer.eos_token) == config.eos_token_id


def test_the_cli_reads_a_csv(tmp_path, triage_pairs):
    from tests.trainer.conftest import SAMPLE_DATA

    assert read_pairs(SAMPLE_DATA / "support-triage.csv") == triage_pairs

    assert (
        main(
            [
                "--data",
                str(SAMPLE_DATA / "support-triage.csv"),
                "--out",
                str(tmp_path / "m"),
                "--vocab-size",
                "300",
            ]
        )
        == 0
    )
    assert (tmp_path / "m" / "model.safetensors").is_file()
