"""The evaluation after training: the base model and the fine-tuned model answer held-out validation rows.

Up to ``max_rows`` validation rows (the first ones in file order that fit ``max_length``) are answered
greedily by the base model before training and by the fine-tuned model after it, each prompt rendered
exactly as training renders it (the user turn and the assistant turn's generation prompt). An answer
ends where training taught the model to end a completion: the chat template's end-of-turn token, or
the end-of-sequence token. Each answer is scored against the row's completion:

- ``exact_match``: 1 when the answer equals the completion, both stripped of surrounding whitespace;
- ``token_f1``: SQuAD-style F1 over lower-cased word tokens (``\\w+``), counted as multisets;
- ``format_match``: 1 when the answer has the completion's shape (:func:`shape`).

The scoring is plain Python (no heavy imports); only the generation needs torch and transformers.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.data import Row, full_texts, prompt_token_ids
from trainer.hyperparameters import EvaluationConfig

FORMAT_VERSION = 1
REPORT_FILE = "tunelab-evaluation.json"
BASE_CACHE_FILE = "tunelab-evaluation-base.json"
SCORES = ("exact_match", "token_f1", "format_match")
DECODING = "greedy"
# Rows generated together (left-padded), at most so many tokens (prompt and answer) a batch: on 2 CPU
# threads a 135M model answers 40 rows in about 7 s 16 at a time, 10 s 8 at a time, 33 s one at a time.
BATCH_ROWS = 16
BATCH_TOKENS = 16384
# Without a max_new_tokens: the longest evaluated completion in tokens plus this, at most the cap.
DERIVED_EXTRA_TOKENS = 16
DERIVED_MAX_NEW_TOKENS = 512
CLIP_CHARS = 2000
ROUNDING = 4

SKIPPED_DISABLED = "turned off (evaluation_config.enabled false)"
SKIPPED_NO_VALIDATION = "the job has no validation data"
SKIPPED_STOPPED = "the job was stopped before training finished (its shutdown time goes to saving the model)"
SKIPPED_STOPPED_DURING = "the job was stopped while the evaluation ran"
SKIPPED_UNFINISHED = "the job ended before the evaluation finished"

_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
TEXT_PLACEHOLDER = "W"


# Scoring -------------------------------------------------------------------------------------------


def exact_match(answer: str, expected: str) -> float:
    """1.0 when the answer is the expected completion (both stripped of surrounding whitespace), else 0.0."""
    return 1.0 if answer.strip() == expected.strip() else 0.0


def word_tokens(text: str) -> list[str]:
    """Lower-cased runs of word characters: what token F1 counts."""
    return _WORD.findall(text.lower())


def token_f1(answer: str, expected: str) -> float:
    """SQuAD-style token F1: the multiset overlap of word tokens; both empty 1.0, one empty 0.0."""
    answer_tokens, expected_tokens = word_tokens(answer), word_tokens(expected)
    if not answer_tokens or not expected_tokens:
        return 1.0 if answer_tokens == expected_tokens else 0.0
    same = sum((Counter(answer_tokens) & Counter(expected_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(answer_tokens), same / len(expected_tokens)
    return 2 * precision * recall / (precision + recall)


def _json_container(text: str) -> dict[str, Any] | list[Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict | list) else None


def _json_shape(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(key)}:{_json_shape(value[key])}" for key in sorted(value)) + "}"
    if isinstance(value, list):
        # The kinds of element, not their number: a list of two tags has the shape of a list of three.
        return "[" + "|".join(sorted({_json_shape(item) for item in value})) + "]"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return "string"


def text_shape(text: str) -> str:
    """Text with every run of word characters replaced by one placeholder and whitespace runs collapsed."""
    return _SPACE.sub(" ", _WORD.sub(TEXT_PLACEHOLDER, text.strip()))


def shape(text: str) -> str:
    """The shape of a completion: for a JSON object or array, its structure (keys and value types,
    recursively; a list by the kinds of its elements); for anything else, :func:`text_shape`
    (``category=billing; priority=medium`` and ``category=account; priority=high`` are both
    ``W=W; W=W``)."""
    container = _json_container(text.strip())
    if container is not None:
        return "json " + _json_shape(container)
    return "text " + text_shape(text)


def format_match(answer: str, expected: str) -> float:
    """1.0 when the answer has the expected completion's shape. A JSON expected completion needs an
    answer that parses to the same structure; otherwise the text shapes must be equal."""
    expected_shape = shape(expected)
    if expected_shape.startswith("json "):
        container = _json_container(answer.strip())
        return 1.0 if container is not None and "json " + _json_shape(container) == expected_shape else 0.0
    return 1.0 if text_shape(answer) == text_shape(expected) else 0.0


def score_answers(answers: Sequence[str], expected: Sequence[str]) -> dict[str, float]:
    """The mean of each score over the rows, a fraction from 0 to 1 rounded to 4 decimals."""
    if len(answers) != len(expected):
        raise ValueError(f"{len(answers)} answers for {len(expected)} expected completions")
    if not answers:
        return dict.fromkeys(SCORES, 0.0)
    functions = {"exact_match": exact_match, "token_f1": token_f1, "format_match": format_match}
    pairs = list(zip(answers, expected, strict=True))
    return {
        name: round(sum(function(a, e) for a, e in pairs) / len(pairs), ROUNDING)
        for name, function in functions.items()
    }


# Reports -------------------------------------------------------------------------------------------


def skip_reason(config: EvaluationConfig, *, has_validation: bool, world_size: int) -> str | None:
    """Why a job does not evaluate (checked before training), or ``None`` when it does."""
    # No data first: the platform turns the evaluation off for a job without validation data, and the
    # reason the user reads is the missing data.
    if not has_validation:
        return SKIPPED_NO_VALIDATION
    if not config.enabled:
        return SKIPPED_DISABLED
    if world_size > 1:
        return f"evaluation runs in single-process jobs; this job ran on {world_size} processes"
    return None


def skipped_report(reason: str) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "skipped": reason}


def without_samples(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report as the training summary holds it."""
    return {key: value for key, value in report.items() if key != "samples"}


def write_report(report: Mapping[str, Any], folders: Sequence[Path]) -> None:
    """``tunelab-evaluation.json`` in each folder (the model folder and the checkpoint folder)."""
    text = json.dumps(report, indent=2, ensure_ascii=False)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / REPORT_FILE).write_text(text, encoding="utf-8")


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def headline(report: Mapping[str, Any]) -> str:
    """The line a person reads at the end of the log."""
    if "skipped" in report:
        return f"evaluation skipped: {report['skipped']}"
    base, tuned = report["base"], report["fine_tuned"]
    return (
        f"evaluation: exact match {_percent(base['exact_match'])} -> {_percent(tuned['exact_match'])} "
        f"on {report['rows']} validation rows (token F1 {base['token_f1']:.2f} -> {tuned['token_f1']:.2f}, "
        f"format {_percent(base['format_match'])} -> {_percent(tuned['format_match'])})"
    )


def _clip(text: str) -> str:
    return text if len(text) <= CLIP_CHARS else text[:CLIP_CHARS]


# Generation ----------------------------------------------------------------------------------------


class EvaluationInterruptedError(Exception):
    """A stop was requested while answers were generated."""


@dataclass
class Answers:
    """What one model wrote for each evaluated row, and how long it took."""

    texts: list[str]
    seconds: float
    # Rows whose answer reached max_new_tokens without an end token.
    reached_limit: list[bool] = field(default_factory=list)
    reused: bool = False


def stop_token_ids(tokenizer: Any, model: Any, example: Row) -> list[int]:
    """The tokens that end an answer: the end-of-sequence token(s) of the tokenizer and of the model's
    generation config, and the token that training puts right after a completion (the chat template's
    end-of-turn token, e.g. ``<|im_end|>`` or ``<|eot_id|>``) when it is a special token."""
    stops: set[int] = set()

    def add(value: Any) -> None:
        if isinstance(value, int):
            stops.add(value)
        elif isinstance(value, list | tuple):
            stops.update(v for v in value if isinstance(v, int))

    add(getattr(tokenizer, "eos_token_id", None))
    generation_config = getattr(model, "generation_config", None)
    add(getattr(generation_config, "eos_token_id", None))
    if getattr(tokenizer, "chat_template", None):
        full = full_texts([example], tokenizer)[0]
        completion = example.completion
        end = full.rfind(completion)
        if end < 0:  # a template that trims the content
            completion = completion.strip()
            end = full.rfind(completion)
        if end >= 0:
            suffix = full[end + len(completion) :]
            suffix_ids = tokenizer(suffix, add_special_tokens=False)["input_ids"] if suffix else []
            special = set(getattr(tokenizer, "all_special_ids", []) or [])
            special.update(
                token_id
                for token_id, token in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items()
                if getattr(token, "special", False)
            )
            if suffix_ids and suffix_ids[0] in special:
                stops.add(int(suffix_ids[0]))
    return sorted(stops)


def batches(
    lengths: Sequence[int], max_new_tokens: int, batch_rows: int, batch_tokens: int
) -> list[list[int]]:
    """Row positions in batches: shortest prompts first, so a batch's rows need little padding; at most
    ``batch_rows`` rows and (but for a single row) ``batch_tokens`` padded tokens a batch."""
    result: list[list[int]] = []
    current: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        width = lengths[index] + max_new_tokens  # the longest row of the batch so far: rows come sorted
        if current and (len(current) == batch_rows or (len(current) + 1) * width > batch_tokens):
            result.append(current)
            current = []
        current.append(index)
    if current:
        result.append(current)
    return result


def _input_device(model: Any) -> Any:
    device = getattr(model, "device", None)
    if device is not None:
        return device
    return next(model.parameters()).device


def generate_answers(
    model: Any,
    tokenizer: Any,
    prompt_ids: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    stop_ids: Sequence[int],
    pad_id: int,
    batch_rows: int = BATCH_ROWS,
    batch_tokens: int = BATCH_TOKENS,
    inference_mode: bool = True,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Answers:
    """Greedy answers to the prompts (token ids) in :func:`batches`, left-padded, with the KV cache, each
    cut at its first stop token; the answers come back in the prompts' order. ``inference_mode`` false
    uses ``no_grad`` instead: before training, tensors made under inference mode must not end up in the
    model (a rotary cache that updates itself)."""
    import torch
    from transformers import GenerationConfig

    make_config: Any = GenerationConfig  # its __init__ is untyped
    config = make_config(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        min_new_tokens=0,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        eos_token_id=list(stop_ids),
        pad_token_id=pad_id,
        use_cache=True,
    )
    stops = set(stop_ids)
    total = len(prompt_ids)
    texts = [""] * total
    reached_limit = [False] * total
    device = _input_device(model)
    was_training = bool(getattr(model, "training", False))
    model.eval()
    started = time.monotonic()
    done = 0
    try:
        for batch in batches([len(ids) for ids in prompt_ids], max_new_tokens, batch_rows, batch_tokens):
            if should_stop is not None and should_stop():
                raise EvaluationInterruptedError
            width = max(len(prompt_ids[index]) for index in batch)
            padded = [[pad_id] * (width - len(prompt_ids[i])) + list(prompt_ids[i]) for i in batch]
            mask = [[0] * (width - len(prompt_ids[i])) + [1] * len(prompt_ids[i]) for i in batch]
            context = torch.inference_mode() if inference_mode else torch.no_grad()
            with context:
                output = model.generate(
                    input_ids=torch.tensor(padded, device=device),
                    attention_mask=torch.tensor(mask, device=device),
                    generation_config=config,
                )
            for index, generated in zip(batch, output[:, width:].tolist(), strict=True):
                end = next((k for k, token in enumerate(generated) if token in stops), None)
                reached_limit[index] = end is None
                kept = generated if end is None else generated[:end]
                texts[index] = tokenizer.decode(kept, skip_special_tokens=True)
            done += len(batch)
            if progress is not None:
                progress(done, total)
    finally:
        model.train(was_training)
    return Answers(texts=texts, seconds=round(time.monotonic() - started, 2), reached_limit=reached_limit)


# One job's evaluation --------------------------------------------------------------------------------


@dataclass
class EvaluationPlan:
    """The rows a job evaluates and the generation settings, fixed before training."""

    rows: list[Row]
    prompt_ids: list[list[int]]
    stop_ids: list[int]
    pad_id: int
    max_new_tokens: int
    validation_rows: int
    samples: int
    fingerprint: str
    notes: list[str] = field(default_factory=list)

    @property
    def expected(self) -> list[str]:
        return [row.completion for row in self.rows]

    def recorded_config(self, config: EvaluationConfig) -> dict[str, Any]:
        return {**recorded_config(config), "max_new_tokens": self.max_new_tokens}


def recorded_config(config: EvaluationConfig) -> dict[str, Any]:
    """The summary's ``optional_hyperparameters.evaluation_config``."""
    return {
        "enabled": config.enabled,
        "max_rows": config.max_rows,
        "max_new_tokens": config.max_new_tokens,
        "samples": config.samples,
    }


def folder_digest(folder: Path) -> str:
    """What a model folder holds, not where it is: its files' names and sizes and its configurations'
    text. A resumed SageMaker job unpacks its model channel into a new temporary folder each attempt;
    the same model there must match the base answers cached by the first attempt."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}:{path.stat().st_size};".encode())
        if path.name in ("config.json", "adapter_config.json"):
            digest.update(path.read_bytes())
    return digest.hexdigest()


def fingerprint(
    rows: Sequence[Row],
    prompt_ids: Sequence[Sequence[int]],
    base: Mapping[str, Any],
    settings: Mapping[str, Any],
) -> str:
    """A digest of the rows evaluated (text and prompt tokens), the base model and the generation settings."""
    content = {
        "rows": [[row.prompt, row.completion] for row in rows],
        "prompt_ids": [list(ids) for ids in prompt_ids],
        "base": dict(base),
        "generation": dict(settings),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def plan_evaluation(
    config: EvaluationConfig,
    *,
    validation_rows: Sequence[Row],
    fitting: Sequence[int],
    tokenizer: Any,
    model: Any,
    base: Mapping[str, Any],
) -> EvaluationPlan:
    """The first ``max_rows`` validation rows that fit ``max_length`` (``fitting``: their positions),
    their prompt tokens as training renders them, the stop tokens and ``max_new_tokens``."""
    rows = [validation_rows[index] for index in list(fitting)[: config.max_rows]]
    if not rows:
        raise ValueError("no validation row to evaluate")
    notes: list[str] = []
    considered = min(len(validation_rows), config.max_rows)
    kept = set(fitting)
    left_out = sum(1 for index in range(considered) if index not in kept)
    if left_out:
        notes.append(
            f"{left_out} of the first {considered} validation rows are longer than max_length "
            "and were not evaluated"
        )
    prompt_ids = prompt_token_ids(rows, tokenizer)
    stop_ids = stop_token_ids(tokenizer, model, rows[0])
    max_new_tokens = config.max_new_tokens
    if max_new_tokens is None:
        completion_ids = tokenizer([row.completion for row in rows], add_special_tokens=False)["input_ids"]
        longest = max(len(ids) for ids in completion_ids)
        max_new_tokens = min(longest + DERIVED_EXTRA_TOKENS, DERIVED_MAX_NEW_TOKENS)
        notes.append(
            f"max_new_tokens {max_new_tokens}: the longest expected completion ({longest} tokens) "
            f"plus {DERIVED_EXTRA_TOKENS}, at most {DERIVED_MAX_NEW_TOKENS}"
        )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    settings = {"max_new_tokens": max_new_tokens, "decoding": DECODING, "stop_ids": stop_ids}
    return EvaluationPlan(
        rows=rows,
        prompt_ids=prompt_ids,
        stop_ids=stop_ids,
        pad_id=int(pad_id),
        max_new_tokens=max_new_tokens,
        validation_rows=len(validation_rows),
        samples=config.samples,
        fingerprint=fingerprint(rows, prompt_ids, base, settings),
        notes=notes,
    )


def _generate(
    plan: EvaluationPlan,
    *,
    model: Any,
    tokenizer: Any,
    label: str,
    say: Callable[[str], None],
    should_stop: Callable[[], bool] | None,
    inference_mode: bool,
) -> Answers:
    say(
        f"evaluation: {label} answering {len(plan.rows)} validation rows "
        f"(greedy, at most {plan.max_new_tokens} new tokens)"
    )
    return generate_answers(
        model,
        tokenizer,
        plan.prompt_ids,
        max_new_tokens=plan.max_new_tokens,
        stop_ids=plan.stop_ids,
        pad_id=plan.pad_id,
        inference_mode=inference_mode,
        progress=lambda done, total: say(f"evaluation: {label} {done}/{total} rows"),
        should_stop=should_stop,
    )


def read_base_cache(folder: Path, plan: EvaluationPlan) -> Answers | None:
    """The base answers an earlier attempt of this job left in the checkpoint folder, when they were
    made for the same rows, base model and settings."""
    path = folder / BASE_CACHE_FILE
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or cached.get("fingerprint") != plan.fingerprint:
        return None
    texts = cached.get("answers")
    if not isinstance(texts, list) or len(texts) != len(plan.rows):
        return None
    if not all(isinstance(text, str) for text in texts):
        return None
    limits = cached.get("reached_limit")
    if not isinstance(limits, list) or len(limits) != len(texts):
        limits = []
    return Answers(
        texts=texts,
        seconds=float(cached.get("seconds") or 0.0),
        reached_limit=[bool(value) for value in limits],
        reused=True,
    )


def write_base_cache(folder: Path, plan: EvaluationPlan, answers: Answers) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    content = {
        "format_version": FORMAT_VERSION,
        "fingerprint": plan.fingerprint,
        "rows": len(plan.rows),
        "max_new_tokens": plan.max_new_tokens,
        "decoding": DECODING,
        "seconds": answers.seconds,
        "answers": answers.texts,
        "reached_limit": answers.reached_limit,
    }
    partial = folder / f".{BASE_CACHE_FILE}.partial"
    partial.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    partial.replace(folder / BASE_CACHE_FILE)


def base_answers(
    plan: EvaluationPlan,
    *,
    model: Any,
    tokenizer: Any,
    cache_folder: Path,
    say: Callable[[str], None],
    should_stop: Callable[[], bool] | None = None,
) -> Answers:
    """The base model's answers: from the checkpoint folder's cache when an earlier attempt of this job
    made them, else generated now (before training) and cached there."""
    cached = read_base_cache(cache_folder, plan)
    if cached is not None:
        say(f"evaluation: base model answers reused from {BASE_CACHE_FILE} ({len(cached.texts)} rows)")
        return cached
    answers = _generate(
        plan,
        model=model,
        tokenizer=tokenizer,
        label="base model",
        say=say,
        should_stop=should_stop,
        inference_mode=False,
    )
    write_base_cache(cache_folder, plan, answers)
    return answers


def fine_tuned_answers(
    plan: EvaluationPlan,
    *,
    model: Any,
    tokenizer: Any,
    say: Callable[[str], None],
    should_stop: Callable[[], bool] | None = None,
) -> Answers:
    return _generate(
        plan,
        model=model,
        tokenizer=tokenizer,
        label="fine-tuned model",
        say=say,
        should_stop=should_stop,
        inference_mode=True,
    )


def build_report(
    plan: EvaluationPlan, base: Answers, fine_tuned: Answers, notes: Sequence[str] = ()
) -> dict[str, Any]:
    """The report (format_version 1): scores of both models, seconds, samples and notes."""
    all_notes = [*notes, *plan.notes]
    if base.reused:
        all_notes.append(
            "the base model's answers were reused from an earlier attempt of this job (checkpoint folder)"
        )
    limited = [sum(answers.reached_limit) for answers in (base, fine_tuned)]
    if any(limited):
        all_notes.append(
            "answers that reached max_new_tokens without an end token: "
            f"base {limited[0]}, fine-tuned {limited[1]}"
        )
    shown = list(zip(plan.rows, base.texts, fine_tuned.texts, strict=True))[: plan.samples]
    samples = [
        {
            "prompt": _clip(row.prompt),
            "expected": _clip(row.completion),
            "base": _clip(base_text),
            "fine_tuned": _clip(tuned_text),
        }
        for row, base_text, tuned_text in shown
    ]
    return {
        "format_version": FORMAT_VERSION,
        "rows": len(plan.rows),
        "validation_rows": plan.validation_rows,
        "max_new_tokens": plan.max_new_tokens,
        "decoding": DECODING,
        "base": score_answers(base.texts, plan.expected),
        "fine_tuned": score_answers(fine_tuned.texts, plan.expected),
        "seconds": {"base": base.seconds, "fine_tuned": fine_tuned.seconds},
        "samples": samples,
        "notes": all_notes,
    }
