"""What the provider adapters share: reading SageMaker-shaped job times and metrics (SageMaker and the
local runtime report alike), and reading a trained `model.tar.gz` (its size, its files, whether its
LoRA adapter was merged) and, for LoRA not merged, finding the merged copy in the job's output archive."""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from tunelab.adapters.s3 import S3Objects
from tunelab.domain.errors import NotFound, ProviderTransientError, TunelabError, ValidationFailed
from tunelab.domain.evaluation import (
    REPORT_MAX_BYTES,
    EvaluationReport,
    EvaluationSkipped,
    UnreadableReportError,
    read_report,
)
from tunelab.domain.providers import (
    ARCHIVE_FOLDER_PATTERN,
    MergedArchive,
    ResumePoint,
    TrainedOutput,
    TrainingJobRef,
    TrainingMetrics,
)

logger = Logger(child=True)

# model.tar.gz up to this size is listed file by file (streamed); larger ones only by size.
LIST_ARCHIVE_MAX_BYTES = 512 * 1024 * 1024
# At most this many files are listed (a trained model has a few dozen); the listing stops there.
LIST_ARCHIVE_MAX_FILES = 10_000
# The trainer's summary in the archive (`trainer/artifacts.py`): says whether the adapter was merged.
SUMMARY_FILE = "tunelab-training.json"
# The trainer's summary is a few hundred bytes; a larger one is not the trainer's and is not read.
SUMMARY_MAX_BYTES = 1024 * 1024
# What SageMaker uploads of the job's output data folder (`SM_OUTPUT_DATA_DIR`), next to model.tar.gz:
# `<S3OutputPath>/<job name>/output/output.tar.gz`. The trainer writes the merged copy of an unmerged
# LoRA model there (`artifacts.merged_variant` of its summary names the folder, `merged/`).
OUTPUT_ARCHIVE = "output.tar.gz"
MODEL_ARCHIVE = "model.tar.gz"
_FOLDER = re.compile(ARCHIVE_FOLDER_PATTERN)


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


def output_archive_uri(ref: TrainingJobRef | None, artifacts_uri: str | None) -> str | None:
    """Where a job's output archive is: `<S3OutputPath>/<job name>/output/output.tar.gz`, SageMaker's
    layout (the local runtime uploads alike); next to `model.tar.gz` when the job's output path is not
    known. None when neither is."""
    if ref is not None and ref.output_uri:
        return f"{ref.output_uri.rstrip('/')}/{ref.job_name}/output/{OUTPUT_ARCHIVE}"
    if artifacts_uri and artifacts_uri.endswith(f"/{MODEL_ARCHIVE}"):
        return artifacts_uri.removesuffix(MODEL_ARCHIVE) + OUTPUT_ARCHIVE
    return None


@dataclass(frozen=True)
class _Listing:
    size: int
    files: list[str]
    summary: dict[str, object] | None


def _list(objects: S3Objects, uri: str, *, read_summary: bool) -> _Listing:
    """The archive's size and files (listed up to LIST_ARCHIVE_MAX_BYTES, at most LIST_ARCHIVE_MAX_FILES
    of them), and the trainer's summary when asked and found; `NotFound` when the archive is not there."""
    size = objects.size(uri)
    files: list[str] = []
    summary: dict[str, object] | None = None
    if size > LIST_ARCHIVE_MAX_BYTES:
        return _Listing(size, files, summary)
    body = objects.open(uri)
    if body is None:  # gone between the two calls
        return _Listing(size, files, summary)
    with tarfile.open(fileobj=body, mode="r|gz") as archive:
        for member in archive:
            if not member.isfile():
                continue
            if len(files) == LIST_ARCHIVE_MAX_FILES:
                # The record has no place to say so: the log does, and the list stays partial.
                logger.warning(
                    "the archive %s holds more than %d files; only the first are listed",
                    uri,
                    LIST_ARCHIVE_MAX_FILES,
                )
                break
            name = member.name.removeprefix("./")
            files.append(name)
            if read_summary and name == SUMMARY_FILE:
                summary = _summary(archive, member, uri)
    return _Listing(size, sorted(files), summary)


def archive_output(
    objects: S3Objects,
    uri: str | None,
    *,
    model_ref: str | None,
    merged: bool,
    output_uri: str | None = None,
) -> TrainedOutput:
    """What a job that leaves a `model.tar.gz` left: its size and files (listed up to
    LIST_ARCHIVE_MAX_BYTES, at most LIST_ARCHIVE_MAX_FILES of them), whether the adapter was merged
    (the trainer's summary says so, when it is at most SUMMARY_MAX_BYTES), and, when the summary names a
    merged copy (`artifacts.merged_variant`, LoRA not merged), where it is: the output archive
    `output_uri` (`output_archive_uri`), checked to exist and listed the same way.

    `ValidationFailed` when there is no archive: the model cannot be used. When only the listing fails
    (e.g. the role may not read the archive), the model is still usable and its file list stays empty.
    """
    if not uri:
        raise ValidationFailed("The job completed but reported no artifacts; the model cannot be used.")
    try:
        listing = _list(objects, uri, read_summary=True)
    except (ProviderTransientError, ValidationFailed):
        raise
    except (TunelabError, tarfile.TarError, OSError, ValueError) as error:
        logger.warning("could not list the artifacts %s: %s", uri, error)
        return TrainedOutput(model_ref=model_ref, artifacts_uri=uri, merged=merged)
    artifacts = listing.summary.get("artifacts") if listing.summary else None
    artifacts = artifacts if isinstance(artifacts, dict) else {}
    merged = bool(artifacts.get("merged", merged))
    copy = None
    folder = _merged_folder(artifacts.get("merged_variant"), uri)
    if folder is not None and not merged:
        copy = _merged_archive(objects, output_uri, folder)
    return TrainedOutput(
        model_ref=model_ref,
        artifacts_uri=uri,
        size_bytes=listing.size,
        files=listing.files,
        merged=merged,
        merged_archive=copy,
    )


def _merged_folder(value: object, uri: str) -> str | None:
    """The summary's `merged_variant` as a folder (`merged/`); None when absent or not one plain folder."""
    if value is None:
        return None
    folder = value if isinstance(value, str) and value.endswith("/") else f"{value}/"
    if not _FOLDER.match(folder):
        logger.warning("the summary in %s names the merged copy %r, not a folder; it is ignored", uri, value)
        return None
    return folder


def _merged_archive(objects: S3Objects, uri: str | None, folder: str) -> MergedArchive | None:
    """The merged copy in the job's output archive. None when there is no such archive (the trainer said
    it wrote one, but nothing was uploaded) or it holds no model in `folder`; unlisted (size and files
    unknown) when only reading it fails."""
    if uri is None:
        logger.warning("the trainer wrote a merged copy, but the job's output archive is not known")
        return None
    try:
        listing = _list(objects, uri, read_summary=False)
    except ProviderTransientError:
        raise
    except NotFound:
        logger.warning("the trainer wrote a merged copy, but there is no %s", uri)
        return None
    except (TunelabError, tarfile.TarError, OSError, ValueError) as error:
        logger.warning("could not list the merged copy %s: %s", uri, error)
        return MergedArchive(uri=uri, path=folder)
    if listing.files and f"{folder}config.json" not in listing.files:
        logger.warning("the output archive %s holds no model in %s", uri, folder)
        return None
    return MergedArchive(uri=uri, path=folder, size_bytes=listing.size, files=listing.files)


def _summary(archive: tarfile.TarFile, member: tarfile.TarInfo, uri: str) -> dict[str, object] | None:
    """The trainer's summary; None when it cannot be read (one over SUMMARY_MAX_BYTES is skipped unread)."""
    if member.size > SUMMARY_MAX_BYTES:
        logger.warning(
            "the summary %s in %s is %d bytes, over %d; it is ignored",
            member.name,
            uri,
            member.size,
            SUMMARY_MAX_BYTES,
        )
        return None
    extracted = archive.extractfile(member)
    if extracted is None:
        return None
    try:
        summary = json.loads(extracted.read(SUMMARY_MAX_BYTES + 1))
    except (ValueError, RecursionError) as error:
        logger.warning("the summary %s in %s is not readable JSON: %s", member.name, uri, error)
        return None
    return summary if isinstance(summary, dict) else None


def resume_point_of(checkpoint: str, trainer_state: Mapping[str, Any]) -> ResumePoint:
    """The resume point a trainer checkpoint (`checkpoint-<step>`) and its `trainer_state.json` make:
    the step it saved at and the run's step count (`max_steps`)."""
    step = trainer_state.get("global_step")
    if not isinstance(step, int):
        step = int(checkpoint.removeprefix("checkpoint-"))
    total = trainer_state.get("max_steps")
    return ResumePoint(
        checkpoint=checkpoint, step=step, total_steps=total if isinstance(total, int) and total > 0 else None
    )


def evaluation_of(body: bytes, where: str) -> EvaluationReport | EvaluationSkipped:
    """The trainer's evaluation report from the file's bytes; one that cannot be read is said to be
    skipped, naming the file and the problem (the user sees why there are no scores)."""
    if len(body) > REPORT_MAX_BYTES:
        return EvaluationSkipped(skipped=f"The evaluation report {where} is over {REPORT_MAX_BYTES} bytes.")
    try:
        return read_report(json.loads(body))
    except (ValueError, RecursionError) as error:  # UnreadableReportError, and JSON that does not parse
        problem = error if isinstance(error, UnreadableReportError) else f"not JSON ({error})"
        logger.warning("the evaluation report %s cannot be read: %s", where, problem)
        return EvaluationSkipped(skipped=f"The evaluation report {where} cannot be read: {problem}.")
