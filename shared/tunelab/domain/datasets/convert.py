"""CSV to a provider's JSONL in one streaming pass, validating as it goes (the "prepare data" step)."""

from __future__ import annotations

from typing import BinaryIO

from tunelab.domain.catalog import TrainingDataFormat
from tunelab.domain.datasets.reader import Row
from tunelab.domain.datasets.report import DatasetLimits, DatasetReport, scan_dataset
from tunelab.domain.datasets.split import SplitPlan
from tunelab.domain.datasets.writers import JsonlWriter


def convert_to_jsonl(
    stream: BinaryIO,
    out: BinaryIO,
    fmt: TrainingDataFormat,
    *,
    limits: DatasetLimits | None = None,
    system: str | None = None,
) -> DatasetReport:
    """Write every valid row of the CSV `stream` to `out` as `fmt`, and report on the whole file.

    The output is only usable when `report.ready`: rows are written as they are read, before a
    later row's error is known.
    """
    with JsonlWriter(out, fmt, system=system) as writer:
        return scan_dataset(stream, limits=limits, on_row=writer.write)


def convert_split(
    stream: BinaryIO,
    train_out: BinaryIO,
    validation_out: BinaryIO,
    fmt: TrainingDataFormat,
    plan: SplitPlan,
    *,
    limits: DatasetLimits | None = None,
    system: str | None = None,
) -> tuple[DatasetReport, int, int]:
    """Like `convert_to_jsonl`, sending each row to training or validation by `plan`.

    `plan` is built from the row count of an earlier validation of the same file
    (`SplitPlan(report.rows, percent)`). Returns (report, training rows, validation rows).
    """
    with (
        JsonlWriter(train_out, fmt, system=system) as train,
        JsonlWriter(validation_out, fmt, system=system) as validation,
    ):
        ordinal = 0

        def route(row: Row) -> None:
            nonlocal ordinal
            ordinal += 1
            (validation if plan.is_validation(ordinal) else train).write(row)

        report = scan_dataset(stream, limits=limits, on_row=route)
    return report, train.rows, validation.rows
