"""Validation of a whole dataset in one streaming pass: counts, token stats, duplicates, errors."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import BinaryIO

from pydantic import BaseModel, ConfigDict, Field

from tunelab.domain.catalog import BaseModelSpec
from tunelab.domain.datasets.reader import DEFAULT_MAX_FIELD_BYTES, EmptyRow, ReadStats, Row, read_rows
from tunelab.domain.errors import ErrorDetail, ValidationFailed
from tunelab.domain.tokens import TOKEN_BOUNDS, estimate_tokens


# Every model here is built on first use, not at import (`defer_build`): a cold start of a function
# that never validates a dataset does not pay for them.
class DatasetLimits(BaseModel):
    """Knobs of validation; the defaults suit every base model in the catalog."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    max_field_bytes: int = Field(default=DEFAULT_MAX_FIELD_BYTES, ge=1)
    max_listed: int = Field(default=100, ge=0, description="Errors (and warnings) listed; all are counted.")
    # Rows above this many estimated tokens get a warning: longer than some base models' context.
    warn_row_tokens: int = Field(default=8192, ge=1)
    longest_rows_kept: int = Field(default=100, ge=0)


class DatasetStats(BaseModel):
    model_config = ConfigDict(defer_build=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0
    max_row_tokens: int = 0
    duplicate_rows: int = 0
    empty_rows_skipped: int = 0


class RowTokens(BaseModel):
    """A row's estimated length, kept for the longest rows so model limits can name them."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    row: int
    tokens: int


class DatasetReport(BaseModel):
    """What validation found; `ready` when there is no error. Matches the API's Dataset fields."""

    model_config = ConfigDict(defer_build=True)

    rows: int = 0
    size_bytes: int = 0
    stats: DatasetStats = Field(default_factory=DatasetStats)
    errors: list[ErrorDetail] = Field(default_factory=list)
    error_count: int = 0
    warnings: list[ErrorDetail] = Field(default_factory=list)
    warning_count: int = 0
    columns: list[str] = Field(default_factory=list, description="The header as read.")
    longest_rows: list[RowTokens] = Field(
        default_factory=list, description="The longest rows by estimated tokens, longest first."
    )

    @property
    def ready(self) -> bool:
        return self.error_count == 0 and self.rows > 0

    def raise_for_errors(self) -> None:
        """Raise `ValidationFailed` listing the errors, if there are any."""
        if not self.ready:
            if self.error_count:
                summary = (
                    f"The dataset has {self.error_count:,} error{'s' if self.error_count != 1 else ''}; "
                    "fix the rows listed and upload it again."
                )
            else:
                summary = "The dataset has no data rows."
            raise ValidationFailed(summary, self.errors or [ErrorDetail(message=summary)])


class _HashSet:
    """Set of 64-bit hashes in a flat open-addressing table: 8 bytes a slot, at most 70% full.

    A Python `set` of ints costs ~100 bytes per row; this costs 11–23 bytes (8 a slot at 35–70%
    load): a 1.3M-row file needs a 16 MB table, ten million rows a 128 MB one (192 MB for a
    moment while it doubles). Beyond ~20 million rows, count duplicates elsewhere.
    """

    __slots__ = ("_count", "_mask", "_table")

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._table = memoryview(bytearray(8 * capacity)).cast("Q")
        self._mask = capacity - 1
        self._count = 0

    def add(self, value: int) -> bool:
        """Add; True if it was not there before."""
        value &= 0xFFFFFFFFFFFFFFFF
        if value == 0:  # 0 marks an empty slot
            value = 1
        table, mask = self._table, self._mask
        i = value & mask
        while True:
            slot = table[i]
            if slot == 0:
                table[i] = value
                self._count += 1
                if self._count * 10 > (mask + 1) * 7:
                    self._grow()
                return True
            if slot == value:
                return False
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = self._table
        capacity = 2 * (self._mask + 1)
        self._table = table = memoryview(bytearray(8 * capacity)).cast("Q")
        self._mask = mask = capacity - 1
        for value in old:
            if value:
                i = value & mask
                while table[i]:
                    i = (i + 1) & mask
                table[i] = value
        old.release()


class _Accumulator:
    """Everything `DatasetReport` needs, gathered row by row in bounded memory.

    Plain slotted counters, not the pydantic models: this runs once per row of files of millions.
    """

    __slots__ = (
        "_longest",
        "_longest_floor",
        "_seen",
        "_threshold",
        "completion_tokens",
        "duplicate_rows",
        "empty_rows",
        "error_count",
        "errors",
        "limits",
        "max_row_tokens",
        "prompt_tokens",
        "rows",
        "warning_count",
        "warnings",
    )

    def __init__(self, limits: DatasetLimits) -> None:
        self.limits = limits
        self.rows = self.prompt_tokens = self.completion_tokens = self.max_row_tokens = 0
        self.duplicate_rows = self.empty_rows = self.error_count = self.warning_count = 0
        self.errors: list[ErrorDetail] = []
        self.warnings: list[ErrorDetail] = []
        self._seen = _HashSet()
        self._longest: list[tuple[int, int]] = []  # min-heap of (tokens, -row)
        self._longest_floor = 0
        self._threshold = 0

    def error(self, detail: ErrorDetail) -> None:
        self.error_count += 1
        if len(self.errors) < self.limits.max_listed:
            self.errors.append(detail)

    def warning(self, detail: ErrorDetail) -> None:
        self.warning_count += 1
        if len(self.warnings) < self.limits.max_listed:
            self.warnings.append(detail)

    def row(self, row: Row) -> None:
        prompt, completion = row.prompt, row.completion
        if prompt.isascii() and completion.isascii():
            p = (len(prompt) + 3) >> 2  # estimate_tokens' ASCII case, inlined: this runs per row
            c = (len(completion) + 3) >> 2
        else:
            p = estimate_tokens(prompt)
            c = estimate_tokens(completion)
        self.prompt_tokens += p
        self.completion_tokens += c
        total = p + c
        self.max_row_tokens = max(self.max_row_tokens, total)
        if total > self._threshold:
            self._keep_long(row.row, total)
        # Python's string hash (SipHash, 64-bit) is stable within one process, which is all
        # counting needs; two different rows collide with odds ~n²/2⁶⁵ (1e-7 for 2M rows).
        if not self._seen.add(hash((prompt, completion))):
            self.duplicate_rows += 1
        self.rows += 1

    def _keep_long(self, number: int, tokens: int) -> None:
        if tokens > self.limits.warn_row_tokens:
            self.warning(
                ErrorDetail(
                    row=number,
                    message=f"row is about {tokens:,} tokens; longer than the context of some base models",
                )
            )
        keep = self.limits.longest_rows_kept
        if keep and tokens > self._longest_floor:
            item = (tokens, -number)
            if len(self._longest) < keep:
                heapq.heappush(self._longest, item)
            else:
                heapq.heappushpop(self._longest, item)
            if len(self._longest) == keep:
                self._longest_floor = self._longest[0][0]
        # Rows at or below both the kept rows and the warning threshold need no look.
        self._threshold = min(self._longest_floor if keep else 1 << 62, self.limits.warn_row_tokens)

    def finish(self, read: ReadStats) -> DatasetReport:
        columns: list[str] = []
        if read.header is not None:
            columns = list(read.header.names)
            for name in read.header.ignored:
                self.warning(ErrorDetail(column=name or None, message=f"column {name!r} is ignored"))
        if self.duplicate_rows:
            n = self.duplicate_rows
            self.warning(
                ErrorDetail(
                    message=f"{n:,} row{'s are' if n != 1 else ' is'} the same as an earlier row "
                    "(prompt and completion); duplicates weigh more in training"
                )
            )
        if self.empty_rows:
            n = self.empty_rows
            self.warning(ErrorDetail(message=f"{n:,} empty row{'s' if n != 1 else ''} skipped"))
        if self.rows == 0 and self.error_count == 0:
            self.error(ErrorDetail(message="the file has a header but no data rows"))
        return DatasetReport(
            rows=self.rows,
            size_bytes=read.size_bytes,
            stats=DatasetStats(
                prompt_tokens=self.prompt_tokens,
                completion_tokens=self.completion_tokens,
                max_row_tokens=self.max_row_tokens,
                duplicate_rows=self.duplicate_rows,
                empty_rows_skipped=self.empty_rows,
            ),
            errors=self.errors,
            error_count=self.error_count,
            warnings=self.warnings,
            warning_count=self.warning_count,
            columns=columns,
            longest_rows=[RowTokens(row=-r, tokens=t) for t, r in sorted(self._longest, reverse=True)],
        )


def scan_dataset(
    stream: BinaryIO,
    *,
    limits: DatasetLimits | None = None,
    on_row: Callable[[Row], object] | None = None,
) -> DatasetReport:
    """Validate a dataset CSV in one pass, handing each valid row to `on_row` (e.g. a JSONL writer).

    Never raises on what the file contains: a bad header becomes the report's only error.
    """
    limits = limits or DatasetLimits()
    acc = _Accumulator(limits)
    read = ReadStats()
    try:
        for item in read_rows(stream, max_field_bytes=limits.max_field_bytes, stats=read):
            if type(item) is Row:
                acc.row(item)
                if on_row is not None:
                    on_row(item)
            elif type(item) is EmptyRow:
                acc.empty_rows += 1
            else:
                for detail in item.errors:  # type: ignore[union-attr]
                    acc.error(detail)
    except ValidationFailed as failure:
        for detail in failure.details:
            acc.error(detail)
    return acc.finish(read)


def validate_dataset(stream: BinaryIO, *, limits: DatasetLimits | None = None) -> DatasetReport:
    """Validate a dataset CSV (a file or an S3 body) in one streaming pass; see `DatasetReport`."""
    return scan_dataset(stream, limits=limits)


def _row_limit(spec: BaseModelSpec) -> int:
    return min(spec.limits.max_record_tokens, spec.context_length)


def check_for_model(
    report: DatasetReport,
    spec: BaseModelSpec,
    *,
    training_rows: int,
    validation_rows: int | None = None,
) -> list[ErrorDetail]:
    """Errors that keep this dataset from training `spec`: record counts and over-long rows.

    `training_rows` is what goes to training (after a validation split, if any). A row is an
    error when even the low end of its token estimate is over the model's per-row limit (the
    smaller of `limits.max_record_tokens` and the context length); `model_warnings` names the
    rows that may be over it. Rows are named from the report's longest rows (up to 100).
    """
    errors: list[ErrorDetail] = []
    limits = spec.limits
    if training_rows < limits.min_records:
        errors.append(
            ErrorDetail(
                field="dataset_id",
                message=(
                    f"{spec.name} needs at least {limits.min_records:,} training rows; "
                    f"this dataset gives {training_rows:,}"
                ),
            )
        )
    if training_rows > limits.max_records:
        errors.append(
            ErrorDetail(
                field="dataset_id",
                message=(
                    f"{spec.name} takes at most {limits.max_records:,} training rows; "
                    f"this dataset gives {training_rows:,}"
                ),
            )
        )
    if (
        validation_rows is not None
        and limits.max_validation_records is not None
        and validation_rows > limits.max_validation_records
    ):
        errors.append(
            ErrorDetail(
                field="validation",
                message=(
                    f"{spec.name} takes at most {limits.max_validation_records:,} validation rows; "
                    f"this gives {validation_rows:,}"
                ),
            )
        )
    limit = _row_limit(spec)
    for long in report.longest_rows:
        if long.tokens * TOKEN_BOUNDS.low_factor > limit:
            errors.append(
                ErrorDetail(
                    row=long.row,
                    message=(
                        f"row is about {long.tokens:,} tokens; {spec.name} takes at most {limit:,} "
                        "tokens per row (prompt and completion)"
                    ),
                )
            )
    return errors


def model_warnings(report: DatasetReport, spec: BaseModelSpec) -> list[ErrorDetail]:
    """Rows whose estimate is over the model's per-row limit, though its low end is not."""
    limit = _row_limit(spec)
    return [
        ErrorDetail(
            row=long.row,
            message=(
                f"row is about {long.tokens:,} tokens and may be longer than the {limit:,} tokens "
                f"{spec.name} takes per row; the provider may reject or cut it"
            ),
        )
        for long in report.longest_rows
        if long.tokens > limit >= long.tokens * TOKEN_BOUNDS.low_factor
    ]
