"""How the command line and the demo show what the API answers: tables, `key: value` lines, money,
sizes, and the estimate, model, dataset and archive views."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tunelab.client.http import JsonObject


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table: columns padded to their widest cell, `-` for missing values."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """`key: value` lines, keys aligned; pairs whose value is None are left out."""
    kept = [(k, v) for k, v in pairs if v is not None]
    width = max((len(k) for k, _ in kept), default=0)
    return "\n".join(f"{(k + ':').ljust(width + 1)} {_cell(v)}" for k, v in kept)


def usd(value: Any) -> str | None:
    if not isinstance(value, int | float):
        return None
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def size(value: Any) -> str | None:
    if not isinstance(value, int | float):
        return None
    amount = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1000 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    return None  # pragma: no cover  # the loop always returns


def short_time(value: Any) -> str | None:
    return str(value).replace("T", " ").replace("Z", "")[:19] if value else None


def format_estimate(estimate: JsonObject) -> str:
    training = estimate.get("training") or {}
    low, high = usd(training.get("low_usd")), usd(training.get("high_usd"))
    hours = training.get("hours")
    text = fields(
        [
            ("Tokens per epoch", f"{training.get('tokens_per_epoch', 0):,}"),
            ("Epochs", training.get("epochs")),
            ("Trained tokens", f"{training.get('trained_tokens', 0):,}"),
            ("Training", f"{usd(training.get('cost_usd'))} (between {low} and {high})"),
            ("Training time", f"{hours:.2f} h" if isinstance(hours, int | float) else None),
            ("Storage", f"{usd(estimate.get('storage_per_month_usd'))} a month"),
            ("Deployment", f"{usd(estimate.get('deployment_per_hour_usd'))} an hour while deployed"),
            ("Total", f"{usd(estimate.get('total_usd'))} (training and a month of storage)"),
        ]
    )
    plan = estimate.get("plan") or {}
    hyperparameters = plan.get("hyperparameters") or {}
    resources = plan.get("resources") or {}
    planned = fields(
        [
            ("Base model", plan.get("base_model_id")),
            ("Continues from", plan.get("base_fine_tuned_model")),
            ("Trains in", plan.get("training_region")),
            ("Dataset", (plan.get("dataset") or {}).get("name")),
            (
                "Hyperparameters",
                ", ".join(f"{k} {v}" for k, v in hyperparameters.items() if v is not None) or None,
            ),
            (
                "Instances",
                f"{resources.get('instance_count')} × {resources.get('instance_type')}"
                if resources
                else None,
            ),
            (
                "Runs here",
                None if estimate.get("runnable", True) else f"no: {estimate.get('unrunnable_reason')}",
            ),
            (
                "Quote",
                f"{estimate['quote_id']} (valid until {estimate.get('quote_expires_at')})"
                if estimate.get("quote_id")
                else None,
            ),
        ]
    )
    notes = [f"  - {note}" for note in estimate.get("notes") or []]
    return "\n".join([text, *([planned] if planned else []), *(["Notes:", *notes] if notes else [])])


def format_resources(estimate: JsonObject, limit: int | None = None) -> str:
    """The advice as text; `limit` keeps the first (cheapest) instance types that fit."""
    vram = estimate.get("vram_gb") or {}
    storage = estimate.get("storage_gb") or {}
    plan = estimate.get("plan") or {}
    method = "LoRA" if plan.get("method") == "lora" else "full fine-tuning"
    lines = [
        fields(
            [
                (
                    "Plan",
                    f"{method}, {plan.get('precision')}, batch {plan.get('batch_size')} × "
                    f"{plan.get('sequence_length')} tokens per GPU, {plan.get('trained_parameters', 0):,} "
                    f"of {plan.get('parameters', 0):,} parameters trained",
                ),
                (
                    "On one GPU",
                    f"{vram.get('with_buffer', 0):.1f} GB (weights {vram.get('weights', 0):.1f}, gradients "
                    f"{vram.get('gradients', 0):.1f}, optimizer {vram.get('optimizer', 0):.1f}, activations "
                    f"{vram.get('activations', 0):.1f}, logits {vram.get('logits', 0):.1f}, with overhead)",
                ),
                (
                    "Storage",
                    f"{storage.get('total', 0):.1f} GB (base model {storage.get('base_model', 0):.1f}, "
                    f"trained model {storage.get('trained_model', 0):.1f}, "
                    f"checkpoints {storage.get('checkpoints', 0):.1f}, "
                    f"dataset {storage.get('dataset', 0):.1f}); "
                    f"recommended volume {storage.get('recommended')} GB",
                ),
                ("Instances", estimate.get("instance_count")),
            ]
        )
    ]
    instances = estimate.get("instances") or []
    if limit is not None:
        fitting = [i for i in instances if i.get("fits")]
        instances = fitting[:limit]
    if instances:
        lines.append(
            table(
                ["INSTANCE TYPE", "GPUS", "VRAM GB", "PER GPU GB", "STRATEGY", "FITS", "PER HOUR"],
                [
                    [
                        i.get("instance_type"),
                        i.get("gpus"),
                        i.get("vram_gb"),
                        i.get("memory_per_gpu_gb"),
                        i.get("strategy"),
                        i.get("fits"),
                        usd(i.get("price_per_hour_usd")),
                    ]
                    for i in instances
                ],
            )
        )
    lines += [f"  - {note}" for note in estimate.get("notes") or []]
    return "\n".join(lines)


def format_model(model: JsonObject) -> str:
    training = model.get("training") or {}
    metrics = training.get("metrics") or {}
    validation = model.get("validation") or {}
    deployment = model.get("deployment") or {}
    artifacts = model.get("artifacts") or {}
    dataset = model.get("dataset") or {}
    cost = model.get("cost") or {}
    predicted = cost.get("predicted") or {}
    if validation.get("mode") == "split":
        validation_text = f"split, {validation.get('percent')}% of the rows"
    elif validation.get("mode") == "dataset":
        validation_text = f"dataset {(validation.get('dataset') or {}).get('id')}"
    else:
        validation_text = "none"
    hyperparameters = ", ".join(
        f"{k} {json.dumps(v) if isinstance(v, dict) else v}"
        for k, v in (model.get("hyperparameters") or {}).items()
        if v is not None
    )
    metric_text = ", ".join(f"{k} {v:g}" for k, v in metrics.items() if isinstance(v, int | float)) or None
    rows = [
        ("Name", model.get("name")),
        ("Status", f"{model.get('status_label')} ({model.get('status')})"),
        ("Provider", f"{model.get('provider')} ({model.get('hosting')})"),
        ("Base model", (model.get("base_model") or {}).get("id")),
        ("Continues", model.get("base_fine_tuned_model")),
        ("Dataset", f"{dataset.get('name')} ({dataset.get('id')}, {dataset.get('rows')} rows)"),
        ("Validation", validation_text),
        ("Hyperparameters", hyperparameters or None),
        ("Resources", json.dumps(model["resources"]) if model.get("resources") else None),
        (
            "Created",
            f"{short_time(model.get('created_at'))} by {(model.get('created_by') or {}).get('email')}",
        ),
        ("Phase", training.get("phase")),
        ("Metrics", metric_text),
        ("Failure", training.get("failure_reason")),
        ("Training ended", short_time(training.get("ended_at"))),
        ("Evaluation", (model.get("evaluation") or {}).get("headline") or model.get("evaluation_note")),
        ("Predicted cost", usd(predicted.get("total_usd"))),
        (
            "Training cost",
            _actual_cost(
                cost.get("actual"),
                ended_early=model.get("status") in ("training_stopped", "training_failed"),
            ),
        ),
        ("Storage", f"{usd(cost.get('storage_per_month_usd'))} a month" if cost else None),
        ("Artifacts", ", ".join(artifacts.get("files") or []) or None),
        ("Artifacts size", size(artifacts.get("size_bytes"))),
        ("Merged copy", _merged_copy(artifacts.get("merged_archive"))),
        ("Downloads", ", ".join(artifacts.get("download_variants") or []) or None),
        ("Endpoint", deployment.get("endpoint")),
        (
            "Endpoint instances",
            f"{deployment.get('instance_count')} × {deployment.get('instance_type')}"
            if deployment.get("instance_type")
            else None,
        ),
        ("Deployed", short_time(deployment.get("deployed_at"))),
        ("Auto-undeploy", short_time(deployment.get("auto_undeploy_at")) if deployment else None),
        ("Running", _deployment_cost(cost.get("deployment"))),
        ("Last deployment", _deployment_cost(cost.get("last_deployment"))),
    ]
    return fields(rows)


_SCORES = (("exact_match", "exact match"), ("token_f1", "token F1"), ("format_match", "format match"))


def format_evaluation(report: JsonObject, *, samples: int = 5) -> str:
    """The evaluation's scores, base model beside fine-tuned model, and the first `samples` rows."""
    base, tuned = report.get("base") or {}, report.get("fine_tuned") or {}
    rows = []
    for key, label in _SCORES:
        before, after = base.get(key), tuned.get(key)
        if key == "token_f1":  # a score from 0 to 1, as the API gives it
            delta = f"{after - before:+.2f}" if isinstance(before, float) and isinstance(after, float) else ""
            rows.append([label, _fraction(before), _fraction(after), delta])
            continue
        change = (
            f"{(after - before) * 100:+.0f} pts"
            if isinstance(before, float) and isinstance(after, float)
            else ""
        )
        rows.append([label, _percent(before), _percent(after), change])
    lines = [
        f"Evaluation on {report.get('rows')} validation rows ({report.get('decoding', 'greedy')} decoding, "
        f"answers up to {report.get('max_new_tokens')} tokens):",
        table(["SCORE", "BASE MODEL", "FINE-TUNED", "CHANGE"], rows),
    ]
    seconds = report.get("seconds") or {}
    if seconds:
        spent = ", ".join(
            f"{name.replace('_', '-')} {value:.1f} s"
            for name, value in seconds.items()
            if isinstance(value, int | float)
        )
        if spent:
            lines.append(f"Generating the answers took: {spent}.")
    for number, sample in enumerate((report.get("samples") or [])[:samples], 1):
        prompt = str(sample.get("prompt", "")).strip().splitlines()
        lines.append(f"  [{number}] {prompt[-1] if prompt else ''}")
        lines.append(f"      expected:   {sample.get('expected')}")
        lines.append(f"      base:       {_one_line(sample.get('base'))}")
        lines.append(f"      fine-tuned: {_one_line(sample.get('fine_tuned'))}")
    for note in report.get("notes") or []:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _fraction(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "-"


def _percent(value: Any) -> str:
    return f"{value * 100:.1f} %" if isinstance(value, int | float) else "-"


def _one_line(text: Any, limit: int = 100) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _actual_cost(actual: Any, *, ended_early: bool = False) -> str | None:
    """`$1.23 (predicted $1.10, 1.12×), 4,021 billable seconds`; an estimate says it is one; a resumed
    model's figure says what the last job measured (`this job: ...`); `ended_early`: the job stopped or
    failed, and the prediction was for the whole run."""
    if not isinstance(actual, dict):
        return None
    compared = (
        [f"predicted {usd(actual.get('predicted_usd'))}" + (" for the whole run" if ended_early else "")]
        if actual.get("predicted_usd") is not None
        else []
    )
    if actual.get("actual_vs_predicted") is not None:
        compared.append(f"{actual['actual_vs_predicted']:.2f}×")
    resumed = actual.get("earlier_attempts_usd") is not None
    if resumed:
        compared.append(f"{usd(actual['earlier_attempts_usd'])} of it before the resume")
    text = usd(actual.get("cost_usd")) or "?"
    if compared:
        text += f" ({', '.join(compared)})"
    job = ", this job: " if resumed else ", "
    if actual.get("estimated"):
        text += " — an estimate: the provider reports no usage"
    elif actual.get("billable_seconds") is not None:
        text += f"{job}{actual['billable_seconds']:,} billable seconds"
    elif actual.get("trained_tokens") is not None:
        text += f"{job}{actual['trained_tokens']:,} trained tokens"
    return text


def _deployment_cost(running: Any) -> str | None:
    """`2.50 hours, $17.75 at $7.10 an hour`."""
    if not isinstance(running, dict):
        return None
    return (
        f"{running.get('hours', 0):.2f} hours, {usd(running.get('cost_usd'))} "
        f"at {usd(running.get('hourly_usd'))} an hour"
    )


def _merged_copy(copy: Any) -> str | None:
    """An unmerged LoRA model's merged copy: its folder in the archive, and the archive's size."""
    if not isinstance(copy, dict):
        return None
    weight = size(copy.get("size_bytes"))
    return f"{copy.get('path')} of the download's merged variant" + (f" ({weight})" if weight else "")


def format_dataset(dataset: JsonObject) -> str:
    stats = dataset.get("stats") or {}
    lines = [
        fields(
            [
                ("Id", dataset.get("id")),
                ("Name", dataset.get("name")),
                ("Status", dataset.get("status")),
                ("Rows", dataset.get("rows")),
                ("Size", size(dataset.get("size_bytes"))),
                ("Prompt tokens", stats.get("prompt_tokens")),
                ("Completion tokens", stats.get("completion_tokens")),
                ("Longest row", f"{stats['max_row_tokens']} tokens" if "max_row_tokens" in stats else None),
                ("Duplicate rows", stats.get("duplicate_rows")),
                ("Empty rows skipped", stats.get("empty_rows_skipped")),
                ("Created", short_time(dataset.get("created_at"))),
                ("Errors", dataset.get("error_count") or None),
            ]
        )
    ]
    for error in dataset.get("errors") or []:
        where = ", ".join(
            p for p in (f"row {error.get('row')}" if error.get("row") else "", error.get("column") or "") if p
        )
        lines.append(f"  error   {where + ': ' if where else ''}{error.get('message')}")
    for warning in dataset.get("warnings") or []:
        where = f"row {warning.get('row')}: " if warning.get("row") else ""
        lines.append(f"  warning {where}{warning.get('message')}")
    return "\n".join(lines)


def list_archive(path: Path) -> list[tuple[str, int]]:
    """The files of a `.tar.gz` and their sizes."""
    with tarfile.open(path, "r:gz") as archive:
        return [(member.name, member.size) for member in archive.getmembers() if member.isfile()]
