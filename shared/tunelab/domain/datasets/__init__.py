"""Datasets: a streaming CSV reader, validation with stats, model checks, the split and JSONL writers.

Every function reads binary streams (a file, an S3 StreamingBody) and keeps memory flat whatever
the file size. Problems with the data are `ErrorDetail`s (row, column, message); a dataset that
cannot be used at all is `ValidationFailed`.
"""

from tunelab.domain.datasets.convert import convert_split, convert_to_jsonl
from tunelab.domain.datasets.reader import (
    COMPLETION_NAMES,
    DEFAULT_MAX_FIELD_BYTES,
    PROMPT_NAMES,
    EmptyRow,
    Header,
    ReadStats,
    Row,
    RowError,
    read_rows,
)
from tunelab.domain.datasets.report import (
    DatasetLimits,
    DatasetReport,
    DatasetStats,
    RowTokens,
    check_for_model,
    model_warnings,
    scan_dataset,
    validate_dataset,
)
from tunelab.domain.datasets.split import DEFAULT_SPLIT_KEY, SplitPlan, assign, split
from tunelab.domain.datasets.writers import CONVERSATION_SCHEMA_VERSION, JsonlWriter, templates, write_jsonl

__all__ = [
    "COMPLETION_NAMES",
    "CONVERSATION_SCHEMA_VERSION",
    "DEFAULT_MAX_FIELD_BYTES",
    "DEFAULT_SPLIT_KEY",
    "PROMPT_NAMES",
    "DatasetLimits",
    "DatasetReport",
    "DatasetStats",
    "EmptyRow",
    "Header",
    "JsonlWriter",
    "ReadStats",
    "Row",
    "RowError",
    "RowTokens",
    "SplitPlan",
    "assign",
    "check_for_model",
    "convert_split",
    "convert_to_jsonl",
    "model_warnings",
    "read_rows",
    "scan_dataset",
    "split",
    "templates",
    "validate_dataset",
    "write_jsonl",
]
