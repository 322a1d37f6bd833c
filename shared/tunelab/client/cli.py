"""The `tunelab` command line: every action of the API (design/api.md), the local runtime, the demo.

Human tables by default, the API's JSON with `--json`. The API's URL and token come from `--api-url`
and `--token`, else `TUNELAB_API_URL` and `TUNELAB_TOKEN`, else the local runtime's defaults
(`tunelab.client.http`). Exit codes (`EXIT_CODES`) are part of the interface: scripts rely on them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from tunelab.client.demo import add_demo_command
from tunelab.client.formatting import (
    fields,
    format_dataset,
    format_estimate,
    format_evaluation,
    format_model,
    format_resources,
    list_archive,
    short_time,
    size,
    table,
    usd,
)
from tunelab.client.http import ApiError, ApiUnreachable, JsonObject, TunelabClient
from tunelab.client.progress import DEPLOYING_STATUSES, TRAINING_STATUSES, ModelWatcher, wait_for_status
from tunelab.local.cli_local import add_local_commands

EXIT_OK = 0
EXIT_API_ERROR = 1  # the API refused the request (400, 401, 403, 413, 429 and other 4xx)
EXIT_USAGE = 2  # bad arguments or a local file that cannot be read (argparse uses 2 too)
EXIT_NOT_FOUND = 3  # 404: no such model, dataset or base model in this workspace
EXIT_CONFLICT = 4  # 409: name taken, invalid state for the action, in use, idempotency conflict
EXIT_UNAVAILABLE = 5  # the API is unreachable or failed (5xx)
EXIT_FAILED = 6  # what was waited for ended badly: training failed or stopped, dataset invalid, demo
EXIT_INTERRUPTED = 130  # Ctrl-C

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "success"),
    (EXIT_API_ERROR, "the API refused the request (400 validation, 401, 403, 413, 429)"),
    (EXIT_USAGE, "usage error: bad arguments, or a file that cannot be read"),
    (EXIT_NOT_FOUND, "not found (404): no such model, dataset or base model in this workspace"),
    (EXIT_CONFLICT, "conflict (409): name taken, not possible in the current status, in use"),
    (EXIT_UNAVAILABLE, "the API cannot be reached, or failed (5xx)"),
    (EXIT_FAILED, "what was waited for ended badly (training failed or stopped, dataset invalid)"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)


class UsageError(Exception):
    """A command's arguments (or a file it was pointed at) cannot make a request."""


def exit_code_for(error: ApiError) -> int:
    """The exit code of an API error (see `EXIT_CODES`)."""
    if isinstance(error, ApiUnreachable) or error.status >= 500:
        return EXIT_UNAVAILABLE
    if error.status == 404:
        return EXIT_NOT_FOUND
    if error.status == 409:
        return EXIT_CONFLICT
    return EXIT_API_ERROR


# --- output ---------------------------------------------------------------------------------------


def _out() -> TextIO:
    return sys.stdout


def _err(message: str) -> None:
    print(f"tunelab: {message}", file=sys.stderr, flush=True)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False), file=_out())


def print_error(error: ApiError, as_json: bool) -> None:
    _err(error.message + ("" if error.status in (0,) else f" ({error.status} {error.code})"))
    for detail in error.details[:20]:
        print(f"  - {detail.describe()}", file=sys.stderr)
    if len(error.details) > 20:
        print(f"  ... and {len(error.details) - 20} more", file=sys.stderr)
    if as_json:
        body: JsonObject = {"error": {"status": error.status, "code": error.code, "message": error.message}}
        if error.details:
            body["error"]["details"] = [
                {k: v for k, v in vars(d).items() if v is not None} for d in error.details
            ]
        print_json(body)


# --- helpers of the commands ------------------------------------------------------------------------


def make_client(args: argparse.Namespace) -> TunelabClient:
    return TunelabClient.from_environment(base_url=args.api_url, token=args.token)


def _parse_validation(text: str) -> JsonObject:
    value = text.strip()
    if value == "none":
        return {"mode": "none"}
    kind, _, rest = value.partition(":")
    if kind == "split" and rest:
        try:
            return {"mode": "split", "percent": int(rest.rstrip("%"))}
        except ValueError:
            pass
    elif kind == "dataset" and rest:
        return {"mode": "dataset", "dataset_id": rest}
    raise argparse.ArgumentTypeError("use split:PERCENT (e.g. split:10), dataset:DATASET_ID or none")


def _parse_early_stopping(text: str) -> JsonObject:
    patience, _, threshold = text.partition(",")
    try:
        return {"patience": int(patience), "threshold": float(threshold)}
    except ValueError:
        raise argparse.ArgumentTypeError("use PATIENCE,THRESHOLD, e.g. 3,0.01") from None


def _parse_time(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise argparse.ArgumentTypeError("use an RFC 3339 time, e.g. 2026-11-28T18:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # documented: a time without an offset is UTC
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _count(text: str) -> int:
    """A whole number of at least 0 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _load_json_argument(text: str, what: str) -> Any:
    """JSON given inline (starting with `{`) or as the path of a file that holds it."""
    source = text.strip()
    if not source.startswith("{"):
        path = Path(source).expanduser()
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as error:
            raise UsageError(f"{what}: cannot read {path}: {error.strerror or error}") from None
    try:
        return json.loads(source)
    except ValueError as error:
        raise UsageError(f"{what} is not valid JSON: {error}") from None


def fine_tuning_body(args: argparse.Namespace, *, name: str | None) -> JsonObject:
    """The body of `POST /v1/fine-tuned-models` (and of a cost estimate) from the arguments."""
    body: JsonObject = {}
    if name is not None:
        body["name"] = name
    if args.base_model:
        body["base_model_id"] = args.base_model
    if args.from_model:
        body["base_fine_tuned_model"] = args.from_model
    if args.from_checkpoint:
        body["base_checkpoint"] = args.from_checkpoint
    body["dataset_id"] = args.dataset
    if args.validation is not None:
        body["validation"] = args.validation
    hyperparameters: JsonObject = {}
    for key in ("epochs", "learning_rate", "batch_size", "warmup_steps", "early_stopping"):
        value = getattr(args, key)
        if value is not None:
            hyperparameters[key] = value
    if hyperparameters:
        body["hyperparameters"] = hyperparameters
    if args.optional_json is not None:
        body["optional_hyperparameters"] = _load_json_argument(args.optional_json, "--optional-json")
    if args.instance_type:
        resources: JsonObject = {"instance_type": args.instance_type}
        if args.instance_count is not None:
            resources["instance_count"] = args.instance_count
        if args.volume_gb is not None:
            resources["volume_size_gb"] = args.volume_gb
        body["resources"] = resources
    elif args.instance_count is not None or args.volume_gb is not None:
        raise UsageError("--instance-count and --volume-gb need --instance-type")
    if args.max_total_usd is not None:
        body["max_total_usd"] = args.max_total_usd
    return body


# --- commands ------------------------------------------------------------------------------------

Handler = Callable[[argparse.Namespace, TunelabClient], int]


def cmd_base_models_list(args: argparse.Namespace, client: TunelabClient) -> int:
    models = client.base_models()
    if args.available:
        models = [m for m in models if m.get("available")]
    if args.json:
        print_json({"items": models})
        return EXIT_OK
    rows = [
        [
            m.get("id"),
            m.get("name"),
            m.get("provider"),
            m.get("available"),
            f"{m['parameter_count'] / 1e6:,.1f} M" if m.get("parameter_count") else None,
            m.get("context_length"),
            usd((m.get("pricing") or {}).get("training_per_1k_tokens_usd")),
            m.get("training_region"),
        ]
        for m in models
    ]
    print(
        table(
            ["ID", "NAME", "PROVIDER", "AVAILABLE", "PARAMETERS", "CONTEXT", "TRAIN/1K TOK", "REGION"], rows
        )
    )
    return EXIT_OK


def cmd_base_models_show(args: argparse.Namespace, client: TunelabClient) -> int:
    model = client.base_model(args.id)
    if args.json:
        print_json(model)
        return EXIT_OK
    pricing = model.get("pricing") or {}
    print(
        fields(
            [
                ("Id", model.get("id")),
                ("Name", model.get("name")),
                ("Provider", f"{model.get('provider')} ({model.get('hosting')})"),
                ("Available", model.get("available")),
                ("Why not", model.get("unavailable_reason")),
                ("Regions", ", ".join(model.get("regions") or []) or None),
                ("Trains in", model.get("training_region")),
                ("Parameters", f"{model['parameter_count']:,}" if model.get("parameter_count") else None),
                ("Context", model.get("context_length")),
                ("Download", model.get("supports_download")),
                ("Needs resources", model.get("requires_resources")),
                ("Optional hyperparameters", model.get("supports_optional_hyperparameters")),
                ("Training", f"{usd(pricing.get('training_per_1k_tokens_usd'))} per 1k tokens"),
                ("Storage", f"{usd(pricing.get('storage_per_month_usd'))} a month"),
                ("Deployment", f"{usd(pricing.get('deployment_per_hour_usd'))} an hour"),
                ("Prices as of", pricing.get("as_of")),
            ]
        )
    )
    ranges = model.get("hyperparameters") or {}
    rows = []
    for key, spec in ranges.items():
        if spec is None:
            rows.append([key, "not supported", None, None])
        elif key == "early_stopping":
            for part in ("patience", "threshold"):
                sub = spec.get(part) or {}
                rows.append([f"early_stopping.{part}", sub.get("min"), sub.get("max"), sub.get("default")])
        else:
            rows.append([key, spec.get("min"), spec.get("max"), spec.get("default")])
    print(table(["HYPERPARAMETER", "MIN", "MAX", "DEFAULT"], rows))
    for note in model.get("notes") or []:
        print(f"  - {note}")
    return EXIT_OK


def _wait_for_dataset(client: TunelabClient, dataset: JsonObject, timeout: float = 600.0) -> JsonObject:
    deadline = time.monotonic() + timeout
    while dataset.get("status") in ("uploading", "validating"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"dataset {dataset.get('id')} is still {dataset.get('status')}")
        time.sleep(1.0)
        dataset = client.dataset(str(dataset["id"]))
    return dataset


def cmd_datasets_upload(args: argparse.Namespace, client: TunelabClient) -> int:
    path = Path(args.file).expanduser()
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror or error}") from None
    name = args.name or path.stem
    dataset = client.upload_dataset(name, data, idempotency_key=args.idempotency_key)
    if args.wait:
        dataset = _wait_for_dataset(client, dataset)
    if args.json:
        print_json(dataset)
    else:
        print(format_dataset(dataset))
    return EXIT_FAILED if dataset.get("status") == "invalid" else EXIT_OK


def _list_filters(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The list's query parameters from the options of those `names` (the API checks them)."""
    return {name: getattr(args, name) for name in (*names, *_LIST_ORDER)}


def cmd_datasets_list(args: argparse.Namespace, client: TunelabClient) -> int:
    datasets = client.datasets(**_list_filters(args, "status"))
    if args.json:
        print_json({"items": datasets})
        return EXIT_OK
    rows = [
        [
            d.get("id"),
            d.get("name"),
            d.get("status"),
            d.get("rows"),
            size(d.get("size_bytes")),
            short_time(d.get("created_at")),
        ]
        for d in datasets
    ]
    print(table(["ID", "NAME", "STATUS", "ROWS", "SIZE", "CREATED"], rows))
    return EXIT_OK


def cmd_instance_types_list(args: argparse.Namespace, client: TunelabClient) -> int:
    instances = client.instance_types(min_vram_gb=args.min_vram_gb)
    if args.json:
        print_json({"items": instances})
        return EXIT_OK
    rows = [
        [
            i.get("name"),
            i.get("gpus"),
            i.get("gpu_model"),
            f"{i.get('vram_per_gpu_gb'):g} GB",
            f"{i.get('vram_gb'):g} GB",
            f"{i.get('local_storage_gb'):g} GB",
            i.get("vcpus"),
            f"{i.get('memory_gb'):g} GB",
            usd(i.get("price_per_hour_usd")),
            (i.get("price_source") or {}).get("as_of"),
        ]
        for i in instances
    ]
    headers = [
        "TYPE",
        "GPUS",
        "GPU",
        "VRAM/GPU",
        "VRAM",
        "STORAGE",
        "VCPUS",
        "MEMORY",
        "$/HOUR",
        "PRICE AS OF",
    ]
    print(table(headers, rows))
    return EXIT_OK


def cmd_datasets_show(args: argparse.Namespace, client: TunelabClient) -> int:
    dataset = client.dataset(args.id)
    print_json(dataset) if args.json else print(format_dataset(dataset))
    return EXIT_OK


def cmd_datasets_delete(args: argparse.Namespace, client: TunelabClient) -> int:
    client.delete_dataset(args.id)
    print_json({"deleted": args.id}) if args.json else print(f"Deleted dataset {args.id}.")
    return EXIT_OK


def cmd_models_estimate(args: argparse.Namespace, client: TunelabClient) -> int:
    estimate = client.estimate_cost(fine_tuning_body(args, name=None))
    print_json(estimate) if args.json else print(format_estimate(estimate))
    return EXIT_OK


def cmd_models_create(args: argparse.Namespace, client: TunelabClient) -> int:
    body = fine_tuning_body(args, name=args.name)
    if not args.acknowledge:
        estimate = client.estimate_cost(body)
        if args.json:
            print_json({"estimate": estimate, "started": False})
        else:
            print(format_estimate(estimate))
        return _not_started(estimate)
    _acknowledged(body, args)
    model = client.create_model(body, idempotency_key=args.idempotency_key)
    if args.json and not args.watch:
        print_json(model)
        return EXIT_OK
    if not args.json:
        print(f"Training started: {model.get('name')} ({model.get('status_label')}).")
    if args.watch:
        return _watch(args, client, model["name"])
    print(f"Follow it with: tunelab models watch {model.get('name')}")
    return EXIT_OK


def _not_started(estimate: JsonObject) -> int:
    """After the cost was shown: say how to start exactly what was quoted."""
    quoted = estimate.get("quote_id")
    again = f"--acknowledge --quote {quoted}" if quoted else "--acknowledge"
    _err(f"nothing was started: read the predicted cost above, then run again with {again}.")
    return EXIT_USAGE


def _acknowledged(body: JsonObject, args: argparse.Namespace) -> None:
    """The body of a start the user acknowledged, with the quote they read."""
    body["acknowledge"] = True
    if args.quote:
        body["quote_id"] = args.quote


def cmd_models_clone(args: argparse.Namespace, client: TunelabClient) -> int:
    body: JsonObject = {"name": args.new_name}
    if args.dataset:
        body["dataset_id"] = args.dataset
    if args.validation is not None:
        body["validation"] = args.validation
    hyperparameters: JsonObject = {}
    for key in ("epochs", "learning_rate", "batch_size", "warmup_steps"):
        value = getattr(args, key)
        if value is not None:
            hyperparameters[key] = value
    if hyperparameters:
        # They join the source's hyperparameters (the API's rule for a clone).
        body["hyperparameters"] = hyperparameters
    if args.optional_json is not None:
        body["optional_hyperparameters"] = _load_json_argument(args.optional_json, "--optional-json")
    if args.max_total_usd is not None:
        body["max_total_usd"] = args.max_total_usd
    if not args.acknowledge:
        estimate = client.clone_model(args.name, body)
        if args.json:
            print_json({"estimate": estimate, "started": False})
        else:
            print(format_estimate(estimate))
        return _not_started(estimate)
    _acknowledged(body, args)
    model = client.clone_model(args.name, body, idempotency_key=args.idempotency_key)
    if args.json:
        print_json(model)
        return EXIT_OK
    print(f"Training started: {model.get('name')} ({model.get('status_label')}), a clone of {args.name}.")
    print(f"Follow it with: tunelab models watch {model.get('name')}")
    return EXIT_OK


def cmd_models_resume(args: argparse.Namespace, client: TunelabClient) -> int:
    body: JsonObject = {}
    if args.max_total_usd is not None:
        body["max_total_usd"] = args.max_total_usd
    if not args.acknowledge:
        estimate = client.resume_model(args.name, body)
        if args.json:
            print_json({"estimate": estimate, "started": False})
        else:
            steps = estimate.get("total_steps")
            print(
                f"Resuming {args.name} continues from {estimate.get('checkpoint')} "
                f"(step {estimate.get('step')}{f' of {steps}' if steps else ''})."
            )
            print(format_estimate(estimate))
        return _not_started(estimate)
    _acknowledged(body, args)
    model = client.resume_model(args.name, body, idempotency_key=args.idempotency_key)
    if args.json:
        print_json(model)
        return EXIT_OK
    print(f"Training resumed: {model.get('name')} ({model.get('status_label')}).")
    print(f"Follow it with: tunelab models watch {model.get('name')}")
    return EXIT_OK


def cmd_models_list(args: argparse.Namespace, client: TunelabClient) -> int:
    models = client.models(
        **_list_filters(args, "status", "provider", "base_model_id", "dataset_id", "creator")
    )
    if args.json:
        print_json({"items": models})
        return EXIT_OK
    rows = [
        [
            m.get("name"),
            m.get("status"),
            (m.get("base_model") or {}).get("id"),
            (m.get("dataset") or {}).get("name"),
            (m.get("training") or {}).get("phase"),
            short_time(m.get("created_at")),
        ]
        for m in models
    ]
    print(table(["NAME", "STATUS", "BASE MODEL", "DATASET", "PHASE", "CREATED"], rows))
    return EXIT_OK


def cmd_models_show(args: argparse.Namespace, client: TunelabClient) -> int:
    model = client.model(args.name)
    print_json(model) if args.json else print(format_model(model))
    return EXIT_OK


def cmd_models_events(args: argparse.Namespace, client: TunelabClient) -> int:
    events = client.events(args.name)
    if args.json:
        print_json({"items": events})
        return EXIT_OK
    rows = []
    for event in events:
        metrics = event.get("metrics") or {}
        detail = event.get("message") or ", ".join(
            f"{k} {v:g}" for k, v in metrics.items() if isinstance(v, int | float)
        )
        rows.append([short_time(event.get("at")), event.get("type"), event.get("status"), detail])
    print(table(["AT", "TYPE", "STATUS", "DETAIL"], rows))
    return EXIT_OK


def _loss(value: Any) -> str | None:
    return f"{value:.4f}" if isinstance(value, int | float) else None


def cmd_models_evaluation(args: argparse.Namespace, client: TunelabClient) -> int:
    """The evaluation after training: the base model beside the fine-tuned model on validation rows."""
    report = client.evaluation(args.name)
    print_json(report) if args.json else print(format_evaluation(report, samples=args.samples))
    return EXIT_OK


def cmd_models_checkpoints(args: argparse.Namespace, client: TunelabClient) -> int:
    """The checkpoints the model's training job kept, by step, with the losses logged up to each."""
    found = client.checkpoints(args.name)
    if args.json:
        print_json(found)
        return EXIT_OK
    items = found.get("items") or []
    if items:
        rows = [
            [
                item.get("id"),
                item.get("step"),
                f"{item['epoch']:.2f}" if isinstance(item.get("epoch"), int | float) else None,
                _loss(item.get("train_loss")),
                _loss(item.get("eval_loss")),
                short_time(item.get("saved_at")),
                size(item.get("size_bytes")),
            ]
            for item in items
        ]
        print(table(["ID", "STEP", "EPOCH", "TRAIN LOSS", "EVAL LOSS", "SAVED", "SIZE"], rows))
    if found.get("message"):
        _err(str(found["message"]))
    return EXIT_OK


LOG_PAGE = 100


def cmd_models_logs(args: argparse.Namespace, client: TunelabClient) -> int:
    """Print the training log; with `--follow`, poll until the model leaves training or stopping, then
    print the rest and exit."""
    token: str | None = None
    said: str | None = None
    while True:
        page = client.logs_page(args.name, next_token=token, limit=LOG_PAGE)
        items = page.get("items") or []
        for line in items:
            if args.json:
                print(json.dumps(line), flush=True)
            else:
                print(f"{line.get('at')} {line.get('message')}", flush=True)
        message = page.get("message")
        if message and not items and message != said:
            _err(message)
            said = message
        next_token = page.get("next_token")
        if next_token is None and token is not None:
            return EXIT_OK  # the training ended and its last line was read
        if next_token is not None and len(items) >= LOG_PAGE:
            token = next_token  # more is there now
            continue
        if not args.follow:
            return EXIT_OK
        if next_token is None and client.model(args.name).get("status") not in TRAINING_STATUSES:
            return EXIT_OK  # no log to follow: no job, or a provider that keeps none
        token = next_token
        time.sleep(args.interval)


def _outcome(model: JsonObject) -> int:
    status = model.get("status")
    if status == "training_failed":
        reason = (model.get("training") or {}).get("failure_reason") or "no reason was given"
        _err(f"training of {model.get('name')} failed: {reason}")
        return EXIT_FAILED
    if status == "training_stopped":
        _err(f"training of {model.get('name')} was stopped")
        return EXIT_FAILED
    return EXIT_OK


def _watch(args: argparse.Namespace, client: TunelabClient, name: str) -> int:
    quiet = args.json
    watcher = ModelWatcher(
        client,
        name,
        out=sys.stderr if quiet else sys.stdout,
        interval=args.interval,
        show_events=not quiet,
    )
    model = watcher.follow(TRAINING_STATUSES)
    if args.json:
        print_json(model)
    else:
        print(f"{name}: {model.get('status_label')} ({model.get('status')})")
    return _outcome(model)


def cmd_models_watch(args: argparse.Namespace, client: TunelabClient) -> int:
    return _watch(args, client, args.name)


def _action_result(
    args: argparse.Namespace,
    client: TunelabClient,
    model: JsonObject,
    moving: frozenset[str],
    goal: str,
) -> int:
    """Print the model after an action; with `--wait`, poll while it is `moving` and exit 6 unless it
    reached `goal` (e.g. a deployment that failed went back to not deployed)."""
    if args.wait and model.get("status") in moving:
        model = wait_for_status(client, args.name, moving, interval=args.interval)
    if args.json:
        print_json(model)
    else:
        print(f"{model.get('name')}: {model.get('status_label')} ({model.get('status')})")
        deployment = model.get("deployment") or {}
        if deployment.get("auto_undeploy_at") and model.get("status") in ("deploying", "deployed"):
            print(f"Automatic undeploy at {deployment['auto_undeploy_at']}")
    if args.wait and model.get("status") != goal:
        _err(f"{args.name} is {model.get('status')}, not {goal}")
        return EXIT_FAILED
    return EXIT_OK


def cmd_models_stop(args: argparse.Namespace, client: TunelabClient) -> int:
    moving = frozenset({"stopping_training", "training"})
    return _action_result(args, client, client.stop(args.name), moving, "training_stopped")


def cmd_models_deploy(args: argparse.Namespace, client: TunelabClient) -> int:
    schedule: JsonObject | None = None
    if args.auto_undeploy_hours is not None:
        schedule = {"after_hours": args.auto_undeploy_hours}
    elif args.auto_undeploy_at is not None:
        schedule = {"at": args.auto_undeploy_at}
    model = client.deploy(
        args.name, schedule, instance_type=args.instance_type, instance_count=args.instance_count
    )
    return _action_result(args, client, model, DEPLOYING_STATUSES, "deployed")


def cmd_models_deployment(args: argparse.Namespace, client: TunelabClient) -> int:
    """Move a deployed model's automatic undeploy, or cancel it."""
    schedule: dict[str, Any] | None = None
    if args.auto_undeploy_hours is not None:
        schedule = {"after_hours": args.auto_undeploy_hours}
    elif args.auto_undeploy_at is not None:
        schedule = {"at": args.auto_undeploy_at}
    model = client.update_deployment(args.name, schedule)
    print_json(model) if args.json else print(format_model(model))
    return EXIT_OK


def cmd_models_undeploy(args: argparse.Namespace, client: TunelabClient) -> int:
    moving = DEPLOYING_STATUSES | {"deployed"}
    return _action_result(args, client, client.undeploy(args.name), moving, "not_deployed")


def cmd_models_invoke(args: argparse.Namespace, client: TunelabClient) -> int:
    answer = client.invoke(
        args.name, args.prompt, max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p
    )
    if args.json:
        print_json(answer)
        return EXIT_OK
    print(answer.get("completion", ""))
    usage = answer.get("usage") or {}
    print(
        f"({usage.get('input_tokens')} tokens in, {usage.get('output_tokens')} out, "
        f"{answer.get('latency_ms')} ms)",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_models_download(args: argparse.Namespace, client: TunelabClient) -> int:
    link = client.download_link(args.name, variant=args.variant)
    # The adapter gets a name of its own, so that downloading both keeps both.
    variant = link.get("variant") or args.variant
    default_name = f"{args.name}-adapter.tar.gz" if variant == "adapter" else f"{args.name}.tar.gz"
    out = Path(args.out).expanduser() if args.out else Path(default_name)
    if out.is_dir():
        out = out / default_name
    written = client.fetch(str(link["url"]), out)
    if args.json:
        print_json({**link, "path": str(out), "bytes_written": written})
        return EXIT_OK
    print(f"Saved {out} ({size(written)}).")
    if link.get("contents"):
        print(str(link["contents"]))
    try:
        print(table(["FILE", "SIZE"], [[n, size(s)] for n, s in list_archive(out)]))
    except (tarfile.TarError, OSError) as error:
        _err(f"{out} is not a readable .tar.gz: {error}")
        return EXIT_FAILED
    return EXIT_OK


def cmd_models_delete(args: argparse.Namespace, client: TunelabClient) -> int:
    if not args.acknowledge:
        raise UsageError(
            f"deleting removes {args.name}, its weights and its history for good: add --acknowledge"
        )
    client.delete_model(args.name)
    print_json({"deleted": args.name}) if args.json else print(f"Deleted {args.name}.")
    return EXIT_OK


def _modules(text: str) -> str | list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["all-linear"]:
        return "all-linear"
    if not names:
        raise argparse.ArgumentTypeError('give module names such as q_proj,v_proj, or "all-linear"')
    return names


def cmd_resources_estimate(args: argparse.Namespace, client: TunelabClient) -> int:
    body: JsonObject = {}
    for key in (
        "base_model_id",
        "parameter_count",
        "precision",
        "optimizer",
        "method",
        "lora_r",
        "lora_target_modules",
        "dataset_bytes",
        "checkpoints",
        "sequence_length",
        "batch_size",
    ):
        value = getattr(args, key)
        if value is not None:
            body[key] = value
    if args.no_gradient_checkpointing:
        body["gradient_checkpointing"] = False
    if "base_model_id" not in body and "parameter_count" not in body:
        raise UsageError("give --base-model or --parameter-count")
    estimate = client.estimate_resources(body)
    print_json(estimate) if args.json else print(format_resources(estimate))
    return EXIT_OK


def cmd_workspace(args: argparse.Namespace, client: TunelabClient) -> int:
    workspace = client.workspace()
    if args.json:
        print_json(workspace)
    else:
        print(
            fields(
                [
                    ("Workspace", workspace.get("id")),
                    ("Plan", workspace.get("plan")),
                    ("BYOK allowed", workspace.get("byok_allowed")),
                ]
            )
        )
    return EXIT_OK


def cmd_providers_list(args: argparse.Namespace, client: TunelabClient) -> int:
    providers = client.providers()
    if args.json:
        print_json({"items": providers})
        return EXIT_OK
    rows = [
        [p.get("provider"), p.get("status"), p.get("region"), p.get("role_arn"), p.get("message")]
        for p in providers
    ]
    print(table(["PROVIDER", "STATUS", "REGION", "ROLE", "MESSAGE"], rows))
    return EXIT_OK


def cmd_providers_connector(args: argparse.Namespace, client: TunelabClient) -> int:
    setup = client.sagemaker_connector()
    if args.json:
        print_json(setup)
        return EXIT_OK
    parameters = setup.get("parameters") or {}
    print("Deploy the connector stack in your AWS account with these parameters:")
    print(fields([(str(k), v) for k, v in parameters.items()]))
    print(f"\n  {setup.get('deploy_command')}\n")
    if setup.get("message"):
        print(setup["message"])
    print(
        "Then: tunelab providers connect-sagemaker --role-arn <its RoleArn output> --region <region> "
        "--artifact-bucket <its ArtifactBucketName output>"
    )
    return EXIT_OK


def cmd_providers_connect(args: argparse.Namespace, client: TunelabClient) -> int:
    body: JsonObject = {
        "role_arn": args.role_arn,
        "region": args.region,
        "artifact_bucket": args.artifact_bucket,
    }
    if args.external_id:
        body["external_id"] = args.external_id
    if args.hf_token_secret_arn:
        body["hf_token_secret_arn"] = args.hf_token_secret_arn
    provider = client.connect_sagemaker(body)
    if args.json:
        print_json(provider)
    else:
        print(fields([(k.replace("_", " ").capitalize(), v) for k, v in provider.items()]))
    return EXIT_OK


def cmd_providers_disconnect(args: argparse.Namespace, client: TunelabClient) -> int:
    client.disconnect_sagemaker()
    print_json({"disconnected": "sagemaker"}) if args.json else print("SageMaker is disconnected.")
    return EXIT_OK


# --- the parser ----------------------------------------------------------------------------------


def _exit_code_epilog() -> str:
    lines = ["exit codes:"] + [f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES]
    lines += [
        "",
        "environment:",
        "  TUNELAB_API_URL   the API's root URL (default http://127.0.0.1:8642, the local runtime)",
        "  TUNELAB_TOKEN     the bearer token (default: for the local runtime, a token minted for the",
        "                    workspace 'local' with the runtime's secret in TUNELAB_LOCAL_DATA_DIR or",
        "                    ~/.tunelab/local)",
    ]
    return "\n".join(lines)


def _common() -> argparse.ArgumentParser:
    """Options every API command takes, after the command as well as before it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the API's JSON")
    common.add_argument("--api-url", default=argparse.SUPPRESS, help="the API's root URL ($TUNELAB_API_URL)")
    common.add_argument("--token", default=argparse.SUPPRESS, help="the bearer token ($TUNELAB_TOKEN)")
    return common


def _group(commands: Any, name: str, help_text: str) -> Any:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(dest=f"{name.replace('-', '_')}_command", metavar="ACTION", required=True)


def _leaf(group: Any, name: str, handler: Handler, help_text: str, common: argparse.ArgumentParser) -> Any:
    parser = group.add_parser(name, help=help_text, description=help_text, parents=[common])
    parser.set_defaults(api_handler=handler)
    return parser


_LIST_ORDER = ("created_after", "created_before", "name_prefix", "sort", "order")


def _list_arguments(parser: argparse.ArgumentParser, *, default_sort: str) -> None:
    """The filters and order every list of records takes (`_list_filters` sends them)."""
    parser.add_argument(
        "--created-after", metavar="TIME", help="created at or after, ISO 8601 (UTC by default)"
    )
    parser.add_argument("--created-before", metavar="TIME", help="created before, ISO 8601 (UTC by default)")
    parser.add_argument("--name-prefix", metavar="TEXT", help="names beginning with this (any case)")
    parser.add_argument(
        "--sort",
        choices=["created_at", "name"],
        help=f"order by creation time or name (default {default_sort})",
    )
    parser.add_argument("--order", choices=["asc", "desc"], help="ascending (the default) or descending")


def _fine_tuning_arguments(parser: argparse.ArgumentParser) -> None:
    base = parser.add_mutually_exclusive_group(required=True)
    base.add_argument("--base-model", metavar="ID", help="the base model's id (tunelab base-models list)")
    base.add_argument("--from-model", metavar="NAME", help="continue from a fine-tuned model of yours")
    parser.add_argument(
        "--from-checkpoint",
        metavar="CHECKPOINT",
        help="with --from-model: start from this checkpoint of it (tunelab models checkpoints NAME)",
    )
    parser.add_argument("--dataset", required=True, metavar="DATASET_ID", help="the training dataset's id")
    parser.add_argument(
        "--validation",
        type=_parse_validation,
        metavar="split:PERCENT|dataset:ID|none",
        help="validation data (default none)",
    )
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--warmup-steps", type=int)
    parser.add_argument(
        "--early-stopping",
        type=_parse_early_stopping,
        metavar="PATIENCE,THRESHOLD",
        help="stop when the validation loss stops improving (needs validation data)",
    )
    parser.add_argument(
        "--optional-json",
        metavar="FILE|JSON",
        help="optional hyperparameters (sagemaker and local models), inline JSON or a file",
    )
    parser.add_argument("--instance-type", help="SageMaker: the instance type, e.g. ml.g5.12xlarge")
    parser.add_argument("--instance-count", type=int, help="SageMaker: instances (default 1)")
    parser.add_argument("--volume-gb", type=int, help="SageMaker: training volume per instance in GB")
    parser.add_argument(
        "--max-total-usd",
        type=float,
        metavar="USD",
        help="refuse to start if the predicted total (training and a month of storage) is above this",
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    common = _common()
    parser = argparse.ArgumentParser(
        prog="tunelab",
        description="Fine-tune LLMs, watch the job, deploy with an auto-undeploy schedule, try the model "
        "in a sandbox, download it, delete it - through tunelab's API.",
        epilog=_exit_code_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", default=False, help="print the API's JSON")
    parser.add_argument("--api-url", default=None, help="the API's root URL ($TUNELAB_API_URL)")
    parser.add_argument("--token", default=None, help="the bearer token ($TUNELAB_TOKEN)")
    commands: Any = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    group = _group(commands, "base-models", "the base models that can be fine-tuned")
    leaf = _leaf(group, "list", cmd_base_models_list, "list the base models", common)
    leaf.add_argument("--available", action="store_true", help="only those this deployment can fine-tune")
    leaf = _leaf(
        group, "show", cmd_base_models_show, "one base model, with its hyperparameter ranges", common
    )
    leaf.add_argument("id", metavar="ID")

    group = _group(commands, "instance-types", "SageMaker instance types for training (GPUs, memory, prices)")
    leaf = _leaf(group, "list", cmd_instance_types_list, "list the instance types, by GPU memory", common)
    leaf.add_argument(
        "--min-vram-gb", type=_positive_float, metavar="GB", help="at least this much GPU memory"
    )

    group = _group(commands, "datasets", "prompt / completion CSV files to train on")
    leaf = _leaf(group, "upload", cmd_datasets_upload, "upload a CSV (validated as it lands)", common)
    leaf.add_argument("file", metavar="FILE")
    leaf.add_argument("--name", help="the dataset's name (default: the file's name without .csv)")
    leaf.add_argument("--wait", action="store_true", help="wait until it is ready or invalid")
    leaf.add_argument("--idempotency-key", help="send this Idempotency-Key (default: a new uuid)")
    leaf = _leaf(group, "list", cmd_datasets_list, "list the workspace's datasets (oldest first)", common)
    leaf.add_argument("--status", help="only these statuses, comma-separated, e.g. ready,invalid")
    _list_arguments(leaf, default_sort="created_at")
    leaf = _leaf(group, "show", cmd_datasets_show, "one dataset, with its validation report", common)
    leaf.add_argument("id", metavar="ID")
    leaf = _leaf(group, "delete", cmd_datasets_delete, "delete a dataset (not while a model uses it)", common)
    leaf.add_argument("id", metavar="ID")

    group = _group(commands, "models", "fine-tuned models: train, watch, deploy, try, download, delete")
    leaf = _leaf(group, "create", cmd_models_create, "start fine-tuning (shows the cost first)", common)
    leaf.add_argument("name", metavar="NAME", help="1-63 letters, digits and hyphens")
    _fine_tuning_arguments(leaf)
    leaf.add_argument(
        "--acknowledge", action="store_true", help="you have read the predicted cost (without it: shown only)"
    )
    leaf.add_argument(
        "--quote",
        metavar="QUOTE_ID",
        help="the quote the estimate gave: start only if the plan and its price are still the same",
    )
    leaf.add_argument("--idempotency-key", help="send this Idempotency-Key (default: a new uuid)")
    leaf.add_argument("--watch", action="store_true", help="follow training with a progress bar")
    leaf.add_argument("--interval", type=_positive_float, default=1.0, help="seconds between polls")
    leaf = _leaf(
        group,
        "clone",
        cmd_models_clone,
        "a new model from another's request, with changes (cost first)",
        common,
    )
    leaf.add_argument("name", metavar="NAME", help="the model to clone")
    leaf.add_argument("new_name", metavar="NEW_NAME", help="the new model's name")
    leaf.add_argument("--dataset", metavar="DATASET_ID", help="another training dataset")
    leaf.add_argument("--validation", type=_parse_validation, metavar="split:PERCENT|dataset:ID|none")
    leaf.add_argument("--epochs", type=int)
    leaf.add_argument("--learning-rate", type=float)
    leaf.add_argument("--batch-size", type=int)
    leaf.add_argument("--warmup-steps", type=int)
    leaf.add_argument("--optional-json", metavar="FILE|JSON", help="replaces the optional hyperparameters")
    leaf.add_argument("--max-total-usd", type=float, metavar="USD", help="refuse to start above this total")
    leaf.add_argument("--acknowledge", action="store_true", help="you have read the predicted cost")
    leaf.add_argument("--quote", metavar="QUOTE_ID", help="the quote the clone's estimate gave")
    leaf.add_argument("--idempotency-key", help="send this Idempotency-Key (default: a new uuid)")
    leaf = _leaf(
        group,
        "resume",
        cmd_models_resume,
        "resume a failed or stopped training from its last checkpoint (cost first)",
        common,
    )
    leaf.add_argument("name", metavar="NAME", help="the model to resume")
    leaf.add_argument("--max-total-usd", type=float, metavar="USD", help="refuse to start above this total")
    leaf.add_argument("--acknowledge", action="store_true", help="you have read what resuming costs")
    leaf.add_argument("--quote", metavar="QUOTE_ID", help="the quote the resume's estimate gave")
    leaf.add_argument("--idempotency-key", help="send this Idempotency-Key (default: a new uuid)")
    leaf = _leaf(group, "estimate", cmd_models_estimate, "the predicted cost of a fine-tuning job", common)
    _fine_tuning_arguments(leaf)
    leaf = _leaf(group, "list", cmd_models_list, "list the workspace's fine-tuned models (by name)", common)
    leaf.add_argument("--status", help="only these statuses, comma-separated, e.g. training,deployed")
    leaf.add_argument("--provider", choices=["bedrock", "sagemaker", "local"], help="only this provider's")
    leaf.add_argument(
        "--base-model", dest="base_model_id", metavar="ID", help="only those of this base model"
    )
    leaf.add_argument(
        "--dataset", dest="dataset_id", metavar="ID", help="only those trained or validated on it"
    )
    leaf.add_argument("--creator", metavar="EMAIL", help="only those this person created")
    _list_arguments(leaf, default_sort="name")
    for name, handler, text in (
        (
            "show",
            cmd_models_show,
            "one model: datasets, hyperparameters, creator, cost, training, deployment",
        ),
        ("events", cmd_models_events, "the model's history, oldest first"),
    ):
        _leaf(group, name, handler, text, common).add_argument("name", metavar="NAME")
    leaf = _leaf(
        group,
        "evaluation",
        cmd_models_evaluation,
        "did the fine-tuning help? base vs fine-tuned scores on validation rows, with samples",
        common,
    )
    leaf.add_argument("name", metavar="NAME")
    leaf.add_argument("--samples", type=_count, default=5, help="sample rows to print (default 5)")
    _leaf(
        group, "checkpoints", cmd_models_checkpoints, "the checkpoints the training job kept, by step", common
    ).add_argument("name", metavar="NAME")
    leaf = _leaf(
        group, "logs", cmd_models_logs, "the training log, oldest first, each line with its time", common
    )
    leaf.add_argument("name", metavar="NAME")
    leaf.add_argument(
        "--follow", action="store_true", help="keep printing new lines until training ends or stops"
    )
    leaf.add_argument("--interval", type=_positive_float, default=2.0, help="seconds between polls")
    leaf = _leaf(
        group, "watch", cmd_models_watch, "follow training: progress bar with step, loss, ETA", common
    )
    leaf.add_argument("name", metavar="NAME")
    leaf.add_argument("--interval", type=_positive_float, default=1.0, help="seconds between polls")
    for name, handler, text in (
        ("stop", cmd_models_stop, "stop training (training -> stopping training -> training stopped)"),
        ("undeploy", cmd_models_undeploy, "undeploy: hourly charges stop"),
    ):
        leaf = _leaf(group, name, handler, text, common)
        leaf.add_argument("name", metavar="NAME")
        leaf.add_argument("--wait", action="store_true", help="wait until the change is done")
        leaf.add_argument("--interval", type=_positive_float, default=1.0, help="seconds between polls")
    leaf = _leaf(group, "deploy", cmd_models_deploy, "deploy, with an automatic undeploy", common)
    leaf.add_argument("name", metavar="NAME")
    schedule = leaf.add_mutually_exclusive_group()
    schedule.add_argument(
        "--auto-undeploy-hours", type=_positive_float, metavar="H", help="undeploy after H hours"
    )
    schedule.add_argument(
        "--auto-undeploy-at",
        type=_parse_time,
        metavar="TIME",
        help="undeploy at TIME (RFC 3339; UTC if no offset)",
    )
    schedule.add_argument(
        "--no-auto-undeploy", action="store_true", help="stay deployed until undeployed (default)"
    )
    leaf.add_argument(
        "--instance-type",
        metavar="T",
        help="SageMaker: the endpoint's instance type (default: the model's, when it fits)",
    )
    leaf.add_argument(
        "--instance-count",
        type=int,
        metavar="N",
        help="SageMaker: the endpoint's instances, 1-10 (default 1)",
    )
    leaf.add_argument("--wait", action="store_true", help="wait until it is deployed")
    leaf.add_argument("--interval", type=_positive_float, default=1.0, help="seconds between polls")
    leaf = _leaf(
        group,
        "deployment",
        cmd_models_deployment,
        "move or cancel a deployed model's automatic undeploy",
        common,
    )
    leaf.add_argument("name", metavar="NAME")
    change = leaf.add_mutually_exclusive_group(required=True)
    change.add_argument(
        "--auto-undeploy-hours", type=_positive_float, metavar="H", help="undeploy H hours from now"
    )
    change.add_argument(
        "--auto-undeploy-at",
        type=_parse_time,
        metavar="TIME",
        help="undeploy at TIME (RFC 3339; UTC if no offset)",
    )
    change.add_argument("--no-auto-undeploy", action="store_true", help="cancel the automatic undeploy")
    leaf = _leaf(
        group, "invoke", cmd_models_invoke, "the sandbox: one completion from a deployed model", common
    )
    leaf.add_argument("name", metavar="NAME")
    leaf.add_argument("prompt", metavar="PROMPT")
    leaf.add_argument("--max-tokens", type=int)
    leaf.add_argument("--temperature", type=float)
    leaf.add_argument("--top-p", type=float)
    leaf = _leaf(group, "download", cmd_models_download, "download the trained model's .tar.gz", common)
    leaf.add_argument("name", metavar="NAME")
    leaf.add_argument(
        "--variant",
        choices=("merged", "adapter"),
        help="merged (default): full weights and configuration, as served (an unmerged LoRA model's "
        "merged copy, under merged/); adapter: the LoRA adapter",
    )
    leaf.add_argument(
        "--out", metavar="FILE", help="where to save it (default NAME.tar.gz, NAME-adapter.tar.gz here)"
    )
    leaf = _leaf(group, "delete", cmd_models_delete, "delete a model, its weights and its history", common)
    leaf.add_argument("name", metavar="NAME")
    leaf.add_argument("--acknowledge", action="store_true", help="required: the deletion is for good")

    group = _group(commands, "resources", "VRAM, storage and instance advice for SageMaker jobs")
    leaf = _leaf(group, "estimate", cmd_resources_estimate, "what a SageMaker job needs", common)
    target = leaf.add_mutually_exclusive_group()
    target.add_argument("--base-model", dest="base_model_id", metavar="ID")
    target.add_argument("--parameter-count", type=float, metavar="N", help="e.g. 7e9")
    leaf.add_argument("--precision", choices=("bf16", "fp16", "fp32"))
    leaf.add_argument("--optimizer", choices=("adamw",), help="the trainer runs AdamW")
    leaf.add_argument("--method", choices=("lora", "full"), help="default: the model's default")
    leaf.add_argument("--lora-r", type=int, metavar="R")
    leaf.add_argument(
        "--lora-target-modules",
        type=_modules,
        metavar="NAMES",
        help='comma-separated module names (e.g. q_proj,v_proj), or "all-linear"',
    )
    leaf.add_argument("--dataset-bytes", type=float)
    leaf.add_argument("--checkpoints", type=int)
    leaf.add_argument("--sequence-length", type=int)
    leaf.add_argument("--batch-size", type=int)
    leaf.add_argument("--no-gradient-checkpointing", action="store_true")

    workspace = commands.add_parser(
        "workspace",
        help="your workspace and its plan",
        description="Your workspace and its plan.",
        parents=[common],
    )
    workspace.set_defaults(api_handler=cmd_workspace)

    group = _group(commands, "providers", "where fine-tuning runs; connect your AWS account (SageMaker)")
    _leaf(group, "list", cmd_providers_list, "the providers and their status", common)
    _leaf(
        group,
        "connector",
        cmd_providers_connector,
        "the parameters to deploy the BYOK connector with (this workspace's external id)",
        common,
    )
    leaf = _leaf(group, "connect-sagemaker", cmd_providers_connect, "connect your AWS account (BYOK)", common)
    leaf.add_argument("--role-arn", required=True)
    leaf.add_argument("--external-id", help="the workspace's (tunelab made it); left out, that one is used")
    leaf.add_argument("--region", required=True)
    leaf.add_argument("--artifact-bucket", required=True)
    leaf.add_argument("--hf-token-secret-arn")
    _leaf(group, "disconnect-sagemaker", cmd_providers_disconnect, "disconnect your AWS account", common)

    add_demo_command(commands)
    add_local_commands(commands)
    return parser


def run_api_command(args: argparse.Namespace) -> int:
    """Run a command of the API with a client; API errors become messages and exit codes."""
    handler: Handler = args.api_handler
    try:
        with make_client(args) as client:
            return handler(args, client)
    except ApiError as error:
        print_error(error, args.json)
        return exit_code_for(error)
    except UsageError as error:
        _err(str(error))
        return EXIT_USAGE
    except TimeoutError as error:
        _err(str(error))
        return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """Run `tunelab ARGS`; the exit code (see `EXIT_CODES`)."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if getattr(args, "api_handler", None) is not None:
            return run_api_command(args)
        return int(args.handler(args))
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `tunelab models list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
