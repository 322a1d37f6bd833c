"""Did the fine-tuning help? The evaluation the trainer runs after training, as tunelab reads and shows it.

When a job has validation data, the trainer (`trainer/evaluation.py`, on SageMaker and locally) asks the
base model and the fine-tuned model for completions of up to `evaluation_config.max_rows` validation rows
(greedy, the model's chat template, stopping at the end of the turn) and scores each answer against the
expected completion: exact match (after trimming whitespace), token F1 (lower-case word tokens) and format
match (the answer has the expected completion's shape). It writes the report `tunelab-evaluation.json`
(`format_version` 1) into the artifacts and the job's checkpoint folder, or a report that says why it
skipped the evaluation (`{"skipped": "..."}`).

Here: the report's contract (`EvaluationReport`, `EvaluationSummary`, `read_report`), what a model's
details carry (the summary, without the samples), and the one-line headline the training email states.
The scoring is the trainer's alone: tunelab shows what it measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

REPORT_FILE = "tunelab-evaluation.json"
# The base model's answers the trainer keeps with the checkpoints, which a resumed job reuses.
BASE_ANSWERS_FILE = "tunelab-evaluation-base.json"
FORMAT_VERSION = 1
# Without `max_new_tokens`, an answer may grow to the longest expected completion plus this, at most the cap.
DERIVED_EXTRA_TOKENS = 16
DERIVED_MAX_NEW_TOKENS = 512
# At most about 3.2 MB: up to 100 samples, each four texts of up to 2,000 characters (UTF-8).
REPORT_MAX_BYTES = 4 * 1024 * 1024

_Fraction = Field(ge=0.0, le=1.0)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class EvaluationScores(_Model):
    """Means over the evaluated rows, fractions in 0–1."""

    exact_match: float = _Fraction
    token_f1: float = _Fraction
    format_match: float = _Fraction


class EvaluationSeconds(_Model):
    base: float | None = None
    fine_tuned: float | None = None


class EvaluationSample(_Model):
    prompt: str
    expected: str
    base: str
    fine_tuned: str


class EvaluationSummary(_Model):
    """The scores, base model beside fine-tuned model, and what they were measured on."""

    rows: int = Field(ge=1)
    validation_rows: int | None = None
    max_new_tokens: int | None = None
    decoding: str = "greedy"
    base: EvaluationScores
    fine_tuned: EvaluationScores
    seconds: EvaluationSeconds = Field(default_factory=EvaluationSeconds)


class EvaluationReport(EvaluationSummary):
    """The whole report: the summary, a sample of rows and the trainer's notes."""

    samples: list[EvaluationSample] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def summary(self) -> EvaluationSummary:
        return EvaluationSummary.model_validate(self.model_dump(exclude={"samples", "notes"}))


class EvaluationSkipped(_Model):
    """The trainer did not evaluate; `reason` says why (no validation data, turned off, stopped, ...)."""

    skipped: str


class UnreadableReportError(ValueError):
    """The file is not a report of a format tunelab reads."""


def read_report(data: Any) -> EvaluationReport | EvaluationSkipped:
    """The trainer's report from its parsed JSON; `UnreadableReportError` for anything else (another format
    version, missing scores, a score outside 0–1)."""
    if not isinstance(data, Mapping):
        raise UnreadableReportError("the evaluation report is not a JSON object")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise UnreadableReportError(
            f"the evaluation report has format_version {version!r}, not {FORMAT_VERSION}"
        )
    try:
        if "skipped" in data:
            return EvaluationSkipped.model_validate(data)
        return EvaluationReport.model_validate(data)
    except ValidationError as error:
        problem = error.errors()[0]["msg"]
        raise UnreadableReportError(f"the evaluation report is not readable: {problem}") from None


def percent(value: float) -> str:
    """A fraction as a percentage to one decimal, `.0` left out (`12.5 %`, `100 %`); never rounded to
    100 % or 0 % when it is not (0.9999 is `99.9 %`, 0.0001 is `0.1 %`)."""
    shown = f"{value * 100:.1f}".removesuffix(".0")
    if shown == "100" and value < 1:
        shown = "99.9"
    elif shown == "0" and value > 0:
        shown = "0.1"
    return f"{shown} %"


def headline(summary: EvaluationSummary) -> str:
    """One line for people: `exact match 12.5 % → 82.5 % on 40 validation rows (token F1 0.31 → 0.93,
    format 0 % → 100 %)`."""
    base, tuned = summary.base, summary.fine_tuned
    return (
        f"exact match {percent(base.exact_match)} → {percent(tuned.exact_match)} on {summary.rows} "
        f"validation row{'s' if summary.rows != 1 else ''} (token F1 {base.token_f1:.2f} → "
        f"{tuned.token_f1:.2f}, format {percent(base.format_match)} → {percent(tuned.format_match)})"
    )


__all__ = [
    "BASE_ANSWERS_FILE",
    "DERIVED_EXTRA_TOKENS",
    "DERIVED_MAX_NEW_TOKENS",
    "FORMAT_VERSION",
    "REPORT_FILE",
    "REPORT_MAX_BYTES",
    "EvaluationReport",
    "EvaluationSample",
    "EvaluationScores",
    "EvaluationSeconds",
    "EvaluationSkipped",
    "EvaluationSummary",
    "UnreadableReportError",
    "headline",
    "percent",
    "read_report",
]
