"""What the provider adapters share: reading SageMaker-shaped job times and metrics (SageMaker and the
local runtime report alike), and reading a trained `model.tar.gz` (its size, its files, whether its
LoRA adapter was merged)."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Mapping
from datetime import UTC, datetime

from aws_lambda_powertools import Logger

from tunelab.adapters.s3 import S3Objects
from tunelab.domain.errors import ProviderTransientError, TunelabError, ValidationFailed
from tunelab.domain.providers import TrainedOutput, TrainingMetrics

logger = Logger(child=True)

# model.tar.gz up to this size is listed file by file (streamed); larger ones only by size.
LIST_ARCHIVE_MAX_BYTES = 512 * 1024 * 1024
# At most this many files are listed (a trained model has a few dozen); the listing stops there.
LIST_ARCHIVE_MAX_FILES = 10_000
# The trainer's summary in the archive (`trainer/artifacts.py`): says whether the adapter was merged.
SUMMARY_FILE = "tunelab-training.json"
# The trainer's summary is a few hundred bytes; a larger one is not the trainer's and is not read.
SUMMARY_MAX_BYTES = 1024 * 1024


def event_time(value: object) -> datetime | None:
    """A time as SageMaker-shaped job descriptions and events give it: a datetime (boto3), epoch
    seconds or milliseconds (events), as a number or numeric text, or ISO 8601 text; naive times
    are UTC. None for anything else (absent, zero, unreadable)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return None
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if number is None or number <= 0:
        return None
    return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, tz=UTC)


_METRIC_NAMES = frozenset(TrainingMetrics.model_fields)


def final_metrics(final: object) -> TrainingMetrics | None:
    """The metrics of a SageMaker-shaped `FinalMetricDataList` (`[{"MetricName", "Value"}]`, as
    DescribeTrainingJob, its state-change event and the local provider's events give it): the
    trainer's `train_loss`, `eval_loss`, `step` and `epoch`; None when none of them is there."""
    if not isinstance(final, list):
        return None
    values: dict[str, float] = {}
    for item in final:
        if isinstance(item, Mapping) and item.get("MetricName") in _METRIC_NAMES:
            value = item.get("Value")
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[str(item["MetricName"])] = float(value)
    if not values:
        return None
    step = values.get("step")
    return TrainingMetrics(
        train_loss=values.get("train_loss"),
        eval_loss=values.get("eval_loss"),
        step=int(step) if step is not None else None,
        epoch=values.get("epoch"),
    )


def archive_output(
    objects: S3Objects, uri: str | None, *, model_ref: str | None, merged: bool
) -> TrainedOutput:
    """What a job that leaves a `model.tar.gz` left: its size and files (listed up to
    LIST_ARCHIVE_MAX_BYTES, at most LIST_ARCHIVE_MAX_FILES of them), and whether the adapter was merged
    (the trainer's summary says so, when it is at most SUMMARY_MAX_BYTES).

    `ValidationFailed` when there is no archive: the model cannot be used. When only the listing fails
    (e.g. the role may not read the archive), the model is still usable and its file list stays empty.
    """
    if not uri:
        raise ValidationFailed("The job completed but reported no artifacts; the model cannot be used.")
    try:
        size = objects.size(uri)
        files: list[str] = []
        if size <= LIST_ARCHIVE_MAX_BYTES:
            body = objects.open(uri)
            if body is None:
                return TrainedOutput(model_ref=model_ref, artifacts_uri=uri, size_bytes=size, merged=merged)
            with tarfile.open(fileobj=body, mode="r|gz") as archive:
                for member in archive:
                    if not member.isfile():
                        continue
                    if len(files) == LIST_ARCHIVE_MAX_FILES:
                        # The record has no place to say so: the log does, and the list stays partial.
                        logger.warning(
                            "the artifacts %s hold more than %d files; only the first are listed",
                            uri,
                            LIST_ARCHIVE_MAX_FILES,
                        )
                        break
                    name = member.name.removeprefix("./")
                    files.append(name)
                    if name == SUMMARY_FILE:
                        merged = _merged_from_summary(archive, member, uri, merged)
    except (ProviderTransientError, ValidationFailed):
        raise
    except (TunelabError, tarfile.TarError, OSError, ValueError) as error:
        logger.warning("could not list the artifacts %s: %s", uri, error)
        return TrainedOutput(model_ref=model_ref, artifacts_uri=uri, merged=merged)
    return TrainedOutput(
        model_ref=model_ref, artifacts_uri=uri, size_bytes=size, files=sorted(files), merged=merged
    )


def _merged_from_summary(archive: tarfile.TarFile, member: tarfile.TarInfo, uri: str, merged: bool) -> bool:
    """Whether the trainer's summary says the adapter was merged; `merged` when it cannot tell (a summary
    over SUMMARY_MAX_BYTES is skipped unread)."""
    if member.size > SUMMARY_MAX_BYTES:
        logger.warning(
            "the summary %s in %s is %d bytes, over %d; it is ignored",
            member.name,
            uri,
            member.size,
            SUMMARY_MAX_BYTES,
        )
        return merged
    extracted = archive.extractfile(member)
    if extracted is None:
        return merged
    try:
        summary = json.loads(extracted.read(SUMMARY_MAX_BYTES + 1))
    except (ValueError, RecursionError) as error:
        logger.warning("the summary %s in %s is not readable JSON: %s", member.name, uri, error)
        return merged
    artifacts = summary.get("artifacts") if isinstance(summary, dict) else None
    return bool(artifacts.get("merged", merged)) if isinstance(artifacts, dict) else merged
