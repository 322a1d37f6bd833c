"""Training data: JSONL rows ``{"prompt": ..., "completion": ...}`` read, checked and tokenized.

Reading and checking import nothing heavy, so bad data fails in a second, before any model loads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.errors import TrainerInputError

DATA_SUFFIXES = (".jsonl", ".json")
MAX_LISTED_ROWS = 20


@dataclass(frozen=True)
class Row:
    """One prompt/completion pair and where it came from."""

    prompt: str
    completion: str
    source: str
    line: int


def _channel_files(directory: Path, channel: str) -> list[Path]:
    if not directory.exists():
        raise TrainerInputError(f"the {channel} data folder {directory} does not exist")
    if directory.is_file():
        return [directory]
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    data_files = [p for p in files if p.suffix.lower() in DATA_SUFFIXES]
    return data_files or files


def read_rows(directory: Path, channel: str) -> list[Row]:
    """Every row of every JSONL file of a channel; the first bad row stops with its file and line."""
    files = _channel_files(directory, channel)
    rows: list[Row] = []
    problems: list[str] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise TrainerInputError(f"{channel} data file {path.name} is not UTF-8 text: {error}") from error
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            problem = _check_line(line)
            if isinstance(problem, str):
                problems.append(f"{path.name} line {number}: {problem}")
                continue
            rows.append(Row(prompt=problem[0], completion=problem[1], source=path.name, line=number))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TrainerInputError(f"{channel} data is invalid: {problems[0]}{more}")
    if not rows:
        raise TrainerInputError(
            f"{channel} data holds no rows (files: {', '.join(p.name for p in files) or 'none'})"
        )
    return rows


def _check_line(line: str) -> tuple[str, str] | str:
    try:
        value = json.loads(line)
    except ValueError as error:
        return f"not a JSON object ({error.args[0] if error.args else error})"
    if not isinstance(value, dict):
        return "not a JSON object with 'prompt' and 'completion'"
    missing = [name for name in ("prompt", "completion") if name not in value]
    if missing:
        return f"missing the field {missing[0]!r}"
    prompt, completion = value["prompt"], value["completion"]
    if not isinstance(prompt, str) or not isinstance(completion, str):
        return "'prompt' and 'completion' must be text"
    if not completion.strip():
        return "'completion' is empty"
    return prompt, completion


@dataclass
class EncodedRows:
    """Tokenized rows that fit, and a count of those that did not."""

    examples: list[dict[str, list[int]]]
    read: int
    dropped_too_long: int = 0
    dropped_rows: list[str] = field(default_factory=list)
    longest_tokens: int = 0
    tokens: int = 0
    # The position of each kept row among the rows read (``examples[i]`` is row ``kept[i]``).
    kept: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "trained": len(self.examples),
            "dropped_too_long": self.dropped_too_long,
            "dropped_rows": self.dropped_rows,
            "tokens": self.tokens,
            "longest_tokens": self.longest_tokens,
        }


def _common_prefix(first: Sequence[int], second: Sequence[int]) -> int:
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return length


def _chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def prompt_texts(rows: Sequence[Row], tokenizer: Any) -> list[str]:
    """Each row's prompt as training renders it: with a chat template, the user turn followed by the
    generation prompt of the assistant turn; without one, the prompt itself."""
    if not _chat_template(tokenizer):
        return [row.prompt for row in rows]
    return list(
        tokenizer.apply_chat_template(
            [[{"role": "user", "content": row.prompt}] for row in rows],
            add_generation_prompt=True,
            tokenize=False,
        )
    )


def prompt_token_ids(rows: Sequence[Row], tokenizer: Any) -> list[list[int]]:
    """Each row's prompt tokens exactly as training starts the row (what generation continues from)."""
    texts = prompt_texts(rows, tokenizer)
    if _chat_template(tokenizer):
        return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return [list(ids) for ids in tokenizer(texts)["input_ids"]]


def full_texts(rows: Sequence[Row], tokenizer: Any) -> list[str]:
    """Each row's prompt and completion as training renders them (without the end-of-sequence token that
    follows the completion when there is no chat template)."""
    if not _chat_template(tokenizer):
        return [row.prompt + row.completion for row in rows]
    return list(
        tokenizer.apply_chat_template(
            [
                [{"role": "user", "content": row.prompt}, {"role": "assistant", "content": row.completion}]
                for row in rows
            ],
            tokenize=False,
        )
    )


def encode_rows(rows: Sequence[Row], tokenizer: Any, max_length: int | None) -> EncodedRows:
    """Token ids and a completion mask per row; rows over ``max_length`` are dropped and counted, never cut.

    With a chat template the prompt is the user turn and the completion the assistant turn, so the
    template's end-of-turn token is part of the completion and trained: the fine-tuned model stops.
    Without one, the completion ends with the end-of-sequence token.
    """
    prompt_ids = prompt_token_ids(rows, tokenizer)
    fulls = full_texts(rows, tokenizer)
    if _chat_template(tokenizer):
        full_ids = tokenizer(fulls, add_special_tokens=False)["input_ids"]
    else:
        full_ids = tokenizer(fulls)["input_ids"]
        eos = tokenizer.eos_token_id
        if eos is None:
            raise TrainerInputError("the tokenizer has neither a chat template nor an end-of-sequence token")
        full_ids = [ids if ids and ids[-1] == eos else [*ids, eos] for ids in full_ids]
    encoded = EncodedRows(examples=[], read=len(rows))
    for index, (row, prompt, full) in enumerate(zip(rows, prompt_ids, full_ids, strict=True)):
        length = len(full)
        encoded.longest_tokens = max(encoded.longest_tokens, length)
        if max_length is not None and length > max_length:
            encoded.dropped_too_long += 1
            if len(encoded.dropped_rows) < MAX_LISTED_ROWS:
                encoded.dropped_rows.append(f"{row.source}:{row.line} ({length} tokens)")
            continue
        prompt_length = _common_prefix(prompt, full)
        if prompt_length >= length:
            continue  # no completion token survived tokenization (empty completions were refused earlier)
        encoded.examples.append(
            {"input_ids": list(full), "completion_mask": [0] * prompt_length + [1] * (length - prompt_length)}
        )
        encoded.kept.append(index)
        encoded.tokens += length
    return encoded
