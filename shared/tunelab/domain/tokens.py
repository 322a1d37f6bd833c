"""Token estimates without a tokenizer, with a stated error bound.

No model's tokenizer can be loaded where tunelab validates data (a Lambda function, the local
runtime before any model is downloaded), and every base model has its own tokenizer anyway. So
token counts are *estimated* from characters, and every figure derived from them (dataset stats,
the cost range, the per-row limit checks) carries the bound below.

The estimator
-------------
* ASCII and other characters of one or two UTF-8 bytes (Latin, Greek, Cyrillic, Hebrew, Arabic):
  one token per 4 ASCII characters, 0.35 per two-byte character;
* characters of three UTF-8 bytes (CJK, kana, hangul, Indic scripts): 0.9 token each;
* characters outside the Basic Multilingual Plane (emoji, rare CJK): 1.5 tokens each.

The bound and what it rests on
------------------------------
`TOKEN_BOUNDS`: the true count lies between 0.75× and 1.25× the estimate for English prose, for
BPE tokenizers of 32k–131k vocabularies. Measured offline on real tokenizers: the 32,000-piece
SentencePiece BPE of Mistral 7B (the Llama-2 family's kind) and the 131,072-token tiktoken-style
BPE "Tekken" of Mistral NeMo (the Llama-3 / cl100k family's kind), over 91 paragraphs of English
technical prose (CPython docstrings without code examples or markup). True count ÷ estimate,
5th–95th percentile: 32k 0.85–1.18 (median 0.97), 131k 0.79–1.06 (median 0.90); the extremes
were 0.74 and 1.32. On the 200 rows of the support-triage sample every row fell inside the bound
(0.77–1.13). The recorded counts are in `tests/unit/data/token_counts.json` (rebuilt by
`make_token_counts.py` beside it) and `tests/unit/test_tokens.py` checks the estimator against
them; it also trains a GPT-2-style byte-level BPE (16k vocabulary) on the standard library's
source with the `tokenizers` package and checks the bound against it on the same prose.

Outside English prose the bound does not hold and is not claimed: text dense in digits, symbols
or code can take up to ~2.2× the estimate (digits are often one token each); French, German,
Spanish and Russian support texts measured 0.85–1.3×; Chinese and Japanese 0.7–1.2× (a dozen
handwritten samples, so weak evidence). A dataset's total is an average over its rows and sits
much closer to the median than a single row does; the cost range still uses the per-row bound,
which is the honest one when a dataset has few rows.
"""

from __future__ import annotations

import math
import re
from functools import cache

from pydantic import BaseModel, ConfigDict, Field


@cache
def _wide_and_astral() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Characters of three UTF-8 bytes (U+0800–U+FFFF) and of four (astral planes).

    Compiled on the first non-ASCII text, not at import: classes this wide take milliseconds to
    compile, which every cold start would pay.
    """
    return re.compile("[\u0800-\uffff]"), re.compile("[\U00010000-\U0010ffff]")


_ASCII_CHARS_PER_TOKEN = 4.0
_TWO_BYTE_TOKENS = 0.35
_WIDE_TOKENS = 0.9
_ASTRAL_TOKENS = 1.5


class TokenBounds(BaseModel):
    """How far a true token count may lie from the estimate: `low_factor`×–`high_factor`×."""

    model_config = ConfigDict(frozen=True)

    low_factor: float = Field(gt=0, le=1)
    high_factor: float = Field(ge=1)
    basis: str


TOKEN_BOUNDS = TokenBounds(
    low_factor=0.75,
    high_factor=1.25,
    basis=(
        "English prose, BPE tokenizers of 32k–131k vocabularies: measured against a 32k SentencePiece "
        "and a 131k tiktoken-style BPE, 5th–95th percentile per text; code, digits and other "
        "languages can fall outside it."
    ),
)


class TokenEstimate(BaseModel):
    """An estimated token count with its range (`low` ≤ true count ≤ `high` within the bound)."""

    model_config = ConfigDict(frozen=True, defer_build=True)  # built on first use, not at import

    tokens: int = Field(ge=0)
    low: int = Field(ge=0)
    high: int = Field(ge=0)

    @classmethod
    def of(cls, tokens: int, bounds: TokenBounds = TOKEN_BOUNDS) -> TokenEstimate:
        """The range around an estimated count (a row's, or a whole dataset's)."""
        return cls(
            tokens=tokens,
            low=math.floor(tokens * bounds.low_factor),
            high=math.ceil(tokens * bounds.high_factor),
        )


def estimate_tokens(text: str) -> int:
    """Estimated token count of `text` for a 32k–131k BPE tokenizer (see the module's bound)."""
    n = len(text)
    if text.isascii():  # O(1) in CPython: the flag is stored on the string
        return (n + 3) // 4
    wide_chars, astral_chars = _wide_and_astral()
    wide = len(wide_chars.findall(text))
    astral = len(astral_chars.findall(text))
    # Characters below U+0800 are one or two UTF-8 bytes; the UTF-8 length tells how many are two.
    extra_bytes = len(text.encode("utf-8", "surrogatepass")) - n
    two_byte = extra_bytes - 2 * wide - 3 * astral
    one_byte = n - two_byte - wide - astral
    tokens = (
        one_byte / _ASCII_CHARS_PER_TOKEN
        + two_byte * _TWO_BYTE_TOKENS
        + wide * _WIDE_TOKENS
        + astral * _ASTRAL_TOKENS
    )
    return math.ceil(tokens)


def estimate(text: str) -> TokenEstimate:
    """`estimate_tokens` with its low–high range."""
    return TokenEstimate.of(estimate_tokens(text))
