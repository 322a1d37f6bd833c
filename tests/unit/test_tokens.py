"""Token estimates against real token counts: recorded ones of two production tokenizers, and a
byte-level BPE trained here with the `tokenizers` package."""

from __future__ import annotations

import importlib
import inspect
import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from tunelab.domain.tokens import TOKEN_BOUNDS, TokenEstimate, estimate, estimate_tokens

REFERENCE = json.loads((Path(__file__).parent / "data" / "token_counts.json").read_text(encoding="utf-8"))
TOKENIZERS = ("sp32k", "tekken131k")


def _ratios(samples: list[dict[str, Any]], tokenizer: str) -> list[float]:
    """True count ÷ estimate for each sample."""
    return sorted(s[tokenizer] / estimate_tokens(s["text"]) for s in samples)


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


def test_simple_cases() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("a") == 1
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("x" * 4000) == 1000
    assert estimate_tokens("日本語のテキスト") == 8  # 8 three-byte characters at 0.9
    assert estimate_tokens("Привет") == 3  # 6 two-byte characters at 0.35
    assert estimate_tokens("🎉🎉") == 3  # astral characters at 1.5
    assert estimate_tokens("Café") == 2  # 3 ASCII at 1/4 + é at 0.35


def test_estimate_carries_the_bound() -> None:
    assert TokenEstimate.of(1000) == TokenEstimate(tokens=1000, low=750, high=1250)
    assert estimate("x" * 400) == TokenEstimate(tokens=100, low=75, high=125)
    assert (TOKEN_BOUNDS.low_factor, TOKEN_BOUNDS.high_factor) == (0.75, 1.25)


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_bound_holds_for_english_prose_of_real_tokenizers(tokenizer: str) -> None:
    # 91 paragraphs of English technical prose, counted by a 32k SentencePiece BPE and a 131k
    # tiktoken-style BPE: 90% of them lie inside the stated bound.
    ratios = _ratios(REFERENCE["prose"], tokenizer)
    assert len(ratios) >= 90
    assert _quantile(ratios, 0.05) >= TOKEN_BOUNDS.low_factor
    assert _quantile(ratios, 0.95) <= TOKEN_BOUNDS.high_factor
    assert 0.85 <= statistics.median(ratios) <= 1.05


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_every_sample_dataset_row_is_inside_the_bound(tokenizer: str) -> None:
    ratios = _ratios(REFERENCE["tickets"], tokenizer)
    assert len(ratios) == 200
    assert TOKEN_BOUNDS.low_factor <= ratios[0]
    assert ratios[-1] <= TOKEN_BOUNDS.high_factor


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_a_dataset_total_is_closer_than_a_row(tokenizer: str) -> None:
    samples = REFERENCE["prose"] + REFERENCE["tickets"]
    total = sum(s[tokenizer] for s in samples) / sum(estimate_tokens(s["text"]) for s in samples)
    assert 0.85 <= total <= 1.05


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_other_languages_stay_within_the_documented_wider_range(tokenizer: str) -> None:
    ratios = _ratios(REFERENCE["other_languages"], tokenizer)
    assert {s["language"] for s in REFERENCE["other_languages"]} >= {
        "french",
        "russian",
        "chinese",
        "japanese",
    }
    assert ratios[0] >= 0.7
    assert ratios[-1] <= 1.3


@pytest.mark.slow
def test_bound_holds_against_a_byte_level_bpe_trained_here() -> None:
    # A GPT-2-style byte-level BPE (16k vocabulary) trained on ~3 MB of the standard library's
    # source, then asked to count the held-out prose: a real BPE computed offline, in this test.
    import tokenizers  # noqa: PLC0415  # a dependency of transformers (the train extra)

    modules = [
        "argparse",
        "asyncio",
        "collections",
        "csv",
        "datetime",
        "decimal",
        "email",
        "inspect",
        "json",
        "logging",
        "pathlib",
        "pickle",
        "random",
        "shutil",
        "statistics",
        "subprocess",
        "tarfile",
        "tempfile",
        "textwrap",
        "threading",
        "typing",
        "unittest",
        "zipfile",
        "difflib",
        "calendar",
        "dataclasses",
        "enum",
        "contextlib",
        "configparser",
        "mailbox",
        "pydoc",
        "doctest",
        "pdb",
        "optparse",
        "smtplib",
        "ftplib",
        "imaplib",
        "ast",
        "locale",
        "gettext",
    ]
    corpus = []
    for name in modules:
        corpus.append(inspect.getsource(importlib.import_module(name)))
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=16_000,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    ratios = sorted(len(bpe.encode(s["text"]).ids) / estimate_tokens(s["text"]) for s in REFERENCE["prose"])
    assert _quantile(ratios, 0.05) >= TOKEN_BOUNDS.low_factor
    assert _quantile(ratios, 0.95) <= TOKEN_BOUNDS.high_factor
    assert 0.8 <= statistics.median(ratios) <= 1.1
