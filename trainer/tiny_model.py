"""Build a tiny Llama-architecture model for tests and the local runtime.

The model is random (a config, not a checkpoint) and its byte-level BPE tokenizer is trained offline on
the dataset's own text, so nothing is downloaded. Embeddings are untied: LoRA then trains embeddings and
head through ``modules_to_save`` (a random model does not become confident through LoRA alone).

    python trainer/tiny_model.py --data rows.jsonl|rows.csv --out DIR --seed 0
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

BOS = "<|begin|>"
EOS = "<|end|>"  # also the end-of-turn token, so generation stops after the assistant turn
PAD = "<|pad|>"
UNK = "<|unk|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
SYSTEM = "<|system|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, USER, ASSISTANT, SYSTEM]

# The prompt rendered with the generation prompt is a prefix of prompt + completion: the completion's
# tokens and its end-of-turn token are exactly what the loss sees.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)

# Shape of the model: ~0.5 M parameters with a 1k vocabulary; fast enough to train on a CPU in seconds.
DEFAULT_SHAPE: dict[str, int] = {
    "hidden_size": 64,
    "intermediate_size": 192,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
}
DEFAULT_VOCAB_SIZE = 1024


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """Prompt/completion pairs from JSONL (``prompt``/``completion``) or a two-column CSV with a header."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        return [(row[0], row[1]) for row in rows[1:] if len(row) >= 2]
    pairs: list[tuple[str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            pairs.append((str(row["prompt"]), str(row["completion"])))
    return pairs


def _texts(pairs: Sequence[tuple[str, str]]) -> Iterator[str]:
    for prompt, completion in pairs:
        yield prompt
        yield completion


def build_tokenizer(texts: Sequence[str], vocab_size: int = DEFAULT_VOCAB_SIZE) -> Any:
    """A byte-level BPE tokenizer trained on ``texts``, wrapped for transformers, with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    bpe_trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer=bpe_trainer)
    make_tokenizer: Any = PreTrainedTokenizerFast  # its __init__ is untyped
    wrapped = make_tokenizer(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[USER, ASSISTANT, SYSTEM],
        model_max_length=DEFAULT_SHAPE["max_position_embeddings"],
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def build_tiny_model(
    pairs: Sequence[tuple[str, str]],
    out_dir: Path,
    seed: int = 0,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    shape: dict[str, int] | None = None,
) -> Path:
    """A random Llama model and a tokenizer trained on ``pairs``, in ``out_dir``; same seed, same files."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if not pairs:
        raise ValueError("the tiny model needs at least one prompt/completion pair to train its tokenizer")
    tokenizer = build_tokenizer(list(_texts(pairs)), vocab_size=vocab_size)
    settings: dict[str, Any] = {
        **DEFAULT_SHAPE,
        **(shape or {}),
        "vocab_size": len(tokenizer),
        "tie_word_embeddings": False,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "rms_norm_eps": 1e-6,
        "initializer_range": 0.05,
    }
    config = LlamaConfig(**settings)
    # A random model learns through LoRA only when embeddings and head train too; the trainer reads this.
    config.tunelab_lora_modules_to_save = ["embed_tokens", "lm_head"]
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    make_generation_config: Any = GenerationConfig  # its __init__ is untyped
    model.generation_config = make_generation_config(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="JSONL (prompt/completion) or two-column CSV"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write the model into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    args = parser.parse_args(argv)
    pairs = read_pairs(args.data)
    build_tiny_model(pairs, args.out, seed=args.seed, vocab_size=args.vocab_size)
    print(f"tiny model written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
