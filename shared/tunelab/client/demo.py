"""`tunelab demo`: the whole life of a fine-tuned model on this machine, for real, through the API.

Stages (each timed; a stage that fails is named and the command exits non-zero, nothing is faked):

1. the local runtime: the one already answering at the API URL, else one started in this process
   (and stopped at the end);
2. the sample data shipped in `tunelab/sample_data/` uploaded as two datasets: training rows, and the
   40 validation rows (never trained on);
3. the predicted cost and the resource advice;
4. training on a local base model (SmolLM2-135M-Instruct by default), followed with a progress bar;
5. the evaluation the trainer ran after training: the base model beside the fine-tuned model on the
   validation rows (exact match, token F1, format match) and a few of their answers;
6. deployment with an automatic undeploy one hour later;
7. the sandbox: a few validation prompts asked, the expected and the answered completion side by side;
8. the download: the archive fetched and its files listed;
9. undeploy, then delete (the model and both datasets; `--keep` keeps them);
10. a summary with each stage's time.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from tunelab.client.formatting import format_estimate, format_evaluation, format_resources, list_archive, size
from tunelab.client.http import (
    API_URL_VARIABLE,
    DEFAULT_LOCAL_EMAIL,
    DEFAULT_LOCAL_WORKSPACE,
    ApiError,
    ApiUnreachable,
    JsonObject,
    TunelabClient,
)
from tunelab.client.progress import DEPLOYING_STATUSES, TRAINING_STATUSES, ModelWatcher, wait_for_status
from tunelab.local.environment import prepare as prepare_environment
from tunelab.local.paths import DEFAULT_PORT, default_data_dir
from tunelab.local.tokens import issue_token

SMOLLM2 = "local.smollm2-135m-instruct"
TINY = "local.tiny-llama"
TRAIN_FILE = "support-triage.csv"
VALIDATION_FILE = "support-triage-validation.csv"
AUTO_UNDEPLOY_HOURS = 1.0
EXIT_OK = 0
EXIT_FAILED = 6  # as the CLI's EXIT_FAILED: what was run ended badly


@dataclass(frozen=True)
class DemoPlan:
    """How much the demo trains and asks for one base model, and why."""

    model: str
    train_rows: int
    validation_rows: int
    prompts: int
    hyperparameters: JsonObject
    optional_hyperparameters: JsonObject | None
    max_tokens: int
    training_timeout_s: float
    why: str


# Chosen by measurement on a 2-core CPU (benchmarks/demo_plans.py; the curve is in the README's demo
# section): every one of the 200 training rows once, 2 rows a step at a learning rate of 1e-3 (the
# catalog's highest for SmolLM2), teaches it the triage task to 100 % exact match on the 40 validation
# rows (its base: 0 %) in about 100 s of training and evaluation; fewer rows or larger batches learn
# less in the same time. The tiny random
# model needs every row and many epochs, which take seconds.
PLANS: dict[str, DemoPlan] = {
    SMOLLM2: DemoPlan(
        model=SMOLLM2,
        train_rows=200,
        validation_rows=40,
        prompts=6,
        hyperparameters={"epochs": 1, "learning_rate": 0.001, "batch_size": 2, "warmup_steps": 2},
        optional_hyperparameters={
            "use_lora": True,
            "lora_config": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear"},
            "merge_adapters": True,
            "sft_config": {"logging_strategy": "steps", "logging_steps": 10, "eval_strategy": "epoch"},
        },
        max_tokens=16,
        training_timeout_s=45 * 60,
        why="LoRA (r 16 on every linear layer, merged) on all 200 training rows once, 2 rows a step at "
        "learning rate 1e-3: measured on 2 CPU cores, the plan that teaches SmolLM2 the triage task best "
        "within the demo's 5 minutes (--train-rows and --epochs change it)",
    ),
    TINY: DemoPlan(
        model=TINY,
        train_rows=200,
        validation_rows=40,
        prompts=6,
        hyperparameters={"epochs": 8, "learning_rate": 0.01, "batch_size": 8},
        optional_hyperparameters={
            "sft_config": {"logging_strategy": "steps", "logging_steps": 5, "eval_strategy": "epoch"}
        },
        max_tokens=16,
        training_timeout_s=15 * 60,
        why="full fine-tuning of a random 0.23 M-parameter model on all 200 rows for 8 epochs: it learns "
        "the labels' patterns and nothing else",
    ),
}


class StageFailed(Exception):  # noqa: N818  # named for what happened
    """A stage of the demo did not do what it should; the message says what happened."""


@dataclass
class Timings:
    stages: list[tuple[str, float, str]] = field(default_factory=list)

    def add(self, name: str, seconds: float, outcome: str) -> None:
        self.stages.append((name, seconds, outcome))

    def summary(self) -> str:
        width = max((len(name) for name, _, _ in self.stages), default=10)
        lines = [
            f"  {name.ljust(width)}  {seconds:7.1f} s  {outcome}" for name, seconds, outcome in self.stages
        ]
        total = sum(seconds for _, seconds, _ in self.stages)
        lines.append(f"  {'total'.ljust(width)}  {total:7.1f} s")
        return "\n".join(lines)


def sample_rows(file_name: str) -> list[tuple[str, str]]:
    """The (prompt, completion) rows of a sample file shipped in `tunelab/sample_data`."""
    text = resources.files("tunelab").joinpath("sample_data", file_name).read_text(encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)  # the header
    return [(row[0], row[1]) for row in reader if len(row) >= 2]


def to_csv(rows: list[tuple[str, str]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["prompt", "completion"])
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


class Demo:
    """One run of the demo; `run()` returns the exit code."""

    def __init__(self, plan: DemoPlan, *, keep: bool, api_url: str | None, data_dir: Path | None) -> None:
        self.plan = plan
        self.keep = keep
        self.api_url = api_url
        self.data_dir = data_dir
        self.timings = Timings()
        self.client: TunelabClient | None = None
        self.runtime: Any = None
        self.name = f"demo-{plan.model.split('.', 1)[1]}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        self.dataset_ids: list[str] = []
        self.deployed = False
        self.created = False

    # --- output --------------------------------------------------------------------------------

    @staticmethod
    def say(text: str = "") -> None:
        print(text, flush=True)

    def heading(self, number: int, title: str) -> None:
        self.say()
        self.say(f"== {number}. {title}")

    @contextmanager
    def stage(self, name: str) -> Iterator[list[str]]:
        """Time a stage; the yielded list takes its one-line outcome."""
        outcome: list[str] = []
        started = time.monotonic()
        try:
            yield outcome
        except StageFailed:
            self.timings.add(name, time.monotonic() - started, "FAILED")
            raise
        except ApiError as error:
            self.timings.add(name, time.monotonic() - started, "FAILED")
            details = "; ".join(d.describe() for d in error.details[:5])
            raise StageFailed(
                f"{error.message} ({error.status} {error.code})" + (f": {details}" if details else "")
            ) from error
        except TimeoutError as error:
            self.timings.add(name, time.monotonic() - started, "FAILED")
            raise StageFailed(str(error)) from error
        self.timings.add(name, time.monotonic() - started, outcome[0] if outcome else "ok")

    @property
    def api(self) -> TunelabClient:
        assert self.client is not None
        return self.client

    # --- the stages ----------------------------------------------------------------------------

    def run(self) -> int:
        current = "start"
        try:
            current = "local runtime"
            self.start_runtime()
            current = "datasets"
            train_id, validation_id, prompts = self.upload()
            current = "estimates"
            body = self.estimate(train_id, validation_id)
            current = "training"
            self.train(body)
            current = "evaluation"
            self.evaluation()
            current = "deploy"
            self.deploy()
            current = "sandbox"
            self.sandbox(prompts)
            current = "download"
            self.download()
            current = "undeploy"
            self.undeploy()
            current = "delete"
            self.delete()
        except StageFailed as error:
            self.say()
            print(f"tunelab demo: the {current} stage failed: {error}", file=sys.stderr, flush=True)
            self.report(failed=current)
            return EXIT_FAILED
        except KeyboardInterrupt:
            print("tunelab demo: interrupted", file=sys.stderr, flush=True)
            self.report(failed=current)
            return 130
        finally:
            self.stop_runtime()
        self.report(failed=None)
        return EXIT_OK

    def start_runtime(self) -> None:
        self.heading(1, "The local runtime")
        with self.stage("local runtime") as outcome:
            client = TunelabClient.from_environment(base_url=self.api_url) if self.has_api() else None
            if client is not None:
                self.say(f"Using the tunelab API already answering at {client.base_url}.")
                outcome.append(f"already up at {client.base_url}")
            else:
                client = self.start_local_runtime()
                outcome.append(f"started in this process at {client.base_url}")
            self.client = client
            workspace = client.workspace()
            self.say(f"Workspace {workspace['id']} (plan {workspace['plan']}).")
            base = client.base_model(self.plan.model)
            if not base.get("available"):
                raise StageFailed(
                    f"{self.plan.model} is not available here: {base.get('unavailable_reason')}"
                )
            self.say(
                f"Base model: {base['name']} ({base['id']}), {base.get('parameter_count', 0):,} parameters."
            )

    def has_api(self) -> bool:
        probe = TunelabClient.from_environment(base_url=self.api_url, token="probe")  # noqa: S106
        try:
            probe.health()
        except ApiUnreachable:
            return False
        except ApiError:
            return True  # something answers: let later calls say what is wrong
        finally:
            probe.close()
        return True

    def start_local_runtime(self) -> TunelabClient:
        if self.api_url is not None:
            raise StageFailed(f"nothing answers at {self.api_url}")
        # The runtime (boto3, moto, the API) loads only when the demo starts its own, after the
        # environment its handlers' loggers read as they load.
        prepare_environment()
        try:
            from tunelab.local.runtime import DataDirInUse, LocalRuntime, PortInUse  # noqa: PLC0415
        except ModuleNotFoundError as error:
            raise StageFailed(f"the local runtime cannot start: {error}") from error
        data_dir = self.data_dir or default_data_dir()
        self.say(f"No runtime answers; starting one in this process (data dir {data_dir}) ...")
        # The runtime shares this terminal: its handlers log warnings only (its default level), and
        # loading a model draws no progress bar over the demo's own (the runtime turns them off).
        runtime = LocalRuntime(data_dir, port=DEFAULT_PORT)
        try:
            try:
                runtime.start()
            except PortInUse:
                runtime = LocalRuntime(data_dir, port=0)  # something else holds the default port
                runtime.start()
        except DataDirInUse as error:
            raise StageFailed(
                f"{error} (to run the demo on a runtime you started, set TUNELAB_API_URL to its address)"
            ) from None
        self.runtime = runtime
        if not runtime.training_available:
            raise StageFailed(runtime.training_note)
        token = issue_token(runtime.data_dir, workspace=DEFAULT_LOCAL_WORKSPACE, email=DEFAULT_LOCAL_EMAIL)
        self.say(f"Local runtime up: API {runtime.base_url}/v1, outbox {runtime.outbox_dir}.")
        return TunelabClient(runtime.base_url, token, timeout=120.0)

    def stop_runtime(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.runtime is not None:
            self.say("Stopping the local runtime this demo started ...")
            self.runtime.stop()
            self.runtime = None

    def upload(self) -> tuple[str, str, list[tuple[str, str]]]:
        plan = self.plan
        self.heading(2, "Datasets")
        with self.stage("datasets") as outcome:
            train = sample_rows(TRAIN_FILE)[: plan.train_rows]
            validation = sample_rows(VALIDATION_FILE)[: plan.validation_rows]
            # The sandbox asks validation prompts: rows the model never trained on.
            prompts = validation[: plan.prompts]
            self.say(
                f"Training on {len(train)} rows of {TRAIN_FILE}; validating on {len(validation)} rows of "
                f"{VALIDATION_FILE} (never trained on; the sandbox asks {len(prompts)} of them)."
            )
            ids = []
            for name, rows in ((f"{self.name}-train", train), (f"{self.name}-validation", validation)):
                dataset = self.api.upload_dataset(name, to_csv(rows))
                self.dataset_ids.append(dataset["id"])
                stats = dataset.get("stats") or {}
                tokens = stats.get("prompt_tokens", 0) + stats.get("completion_tokens", 0)
                self.say(
                    f"  {dataset['id']}  {name}: {dataset['status']}, {dataset.get('rows')} rows, "
                    f"{tokens:,} tokens (estimated)"
                )
                if dataset["status"] != "ready":
                    problems = "; ".join(str(e.get("message")) for e in dataset.get("errors") or [])
                    raise StageFailed(f"dataset {name} is {dataset['status']}: {problems}")
                ids.append(dataset["id"])
            outcome.append(f"{len(train)} training and {len(validation)} validation rows")
        return ids[0], ids[1], prompts

    def estimate(self, train_id: str, validation_id: str) -> JsonObject:

        plan = self.plan
        self.heading(3, "Predicted cost and resources")
        body: JsonObject = {
            "name": self.name,
            "base_model_id": plan.model,
            "dataset_id": train_id,
            "validation": {"mode": "dataset", "dataset_id": validation_id},
            "hyperparameters": plan.hyperparameters,
        }
        if plan.optional_hyperparameters is not None:
            body["optional_hyperparameters"] = plan.optional_hyperparameters
        with self.stage("estimates") as outcome:
            cost = self.api.estimate_cost(body)
            self.say(format_estimate(cost))
            optional = plan.optional_hyperparameters or {}
            request: JsonObject = {
                "base_model_id": plan.model,
                "method": "lora" if optional.get("use_lora") else "full",
                "precision": "fp32",
                "sequence_length": 256,
                "batch_size": int(plan.hyperparameters.get("batch_size", 1)),
            }
            lora = optional.get("lora_config") or {}
            if optional.get("use_lora") and lora.get("r"):
                request["lora_r"] = int(lora["r"])
            if optional.get("use_lora") and lora.get("target_modules"):
                request["lora_target_modules"] = lora["target_modules"]
            advice = self.api.estimate_resources(request)
            self.say("Resources (what the same job would need on AWS; the cheapest instance types that fit):")
            self.say(format_resources(advice, limit=3))
            outcome.append(
                f"{usd_text(cost.get('total_usd'))}, {cost['training']['trained_tokens']:,} tokens"
            )
        return body

    def train(self, body: JsonObject) -> None:
        plan = self.plan
        self.heading(4, f"Training {self.name} on {plan.model}")
        self.say(f"Plan: {plan.why}.")
        with self.stage("training") as outcome:
            model = self.api.create_model(body | {"acknowledge": True})
            self.created = True
            self.say(f"Created {model['name']}: {model['status_label']}. Following its progress:")
            watcher = ModelWatcher(self.api, self.name, interval=2.0, line_every_s=15.0)
            model = watcher.follow(TRAINING_STATUSES, timeout=plan.training_timeout_s)
            training = model.get("training") or {}
            if model["status"] != "not_deployed":
                reason = training.get("failure_reason") or model["status_label"]
                raise StageFailed(f"training ended {model['status']}: {reason}")
            metrics = training.get("metrics") or {}
            artifacts = model.get("artifacts") or {}
            files = artifacts.get("files") or []
            self.say(
                f"Trained: {metrics.get('step')} steps, train loss {fmt(metrics.get('train_loss'))}, "
                f"eval loss {fmt(metrics.get('eval_loss'))}; artifacts: {', '.join(files)}."
            )
            outcome.append(
                f"{metrics.get('step')} steps, train loss {fmt(metrics.get('train_loss'))}, "
                f"eval loss {fmt(metrics.get('eval_loss'))}"
            )

    def evaluation(self) -> None:
        self.heading(5, "Did the fine-tuning help? The base model beside the fine-tuned model")
        with self.stage("evaluation") as outcome:
            report = self.api.evaluation(self.name)
            self.say(format_evaluation(report, samples=3))
            outcome.append(str(report.get("headline") or f"{report['rows']} rows"))

    def deploy(self) -> None:
        self.heading(6, "Deploy, with an automatic undeploy")
        with self.stage("deploy") as outcome:
            model = self.api.deploy(self.name, {"after_hours": AUTO_UNDEPLOY_HOURS})
            self.deployed = True
            self.say(f"{model['status_label']} ... (loading the model in the inference server)")
            model = wait_for_status(self.api, self.name, DEPLOYING_STATUSES, interval=1.0, timeout=15 * 60)
            if model["status"] != "deployed":
                raise StageFailed(f"the deployment ended {model['status']}")
            at = (model.get("deployment") or {}).get("auto_undeploy_at")
            self.say(f"Deployed; it undeploys itself at {at} unless undeployed sooner.")
            outcome.append(f"auto-undeploy at {at}")

    def sandbox(self, prompts: list[tuple[str, str]]) -> None:
        self.heading(7, "The sandbox: validation prompts")
        with self.stage("sandbox") as outcome:
            exact = 0
            for number, (prompt, expected) in enumerate(prompts, 1):
                answer = self.api.invoke(self.name, prompt, max_tokens=self.plan.max_tokens, temperature=0.0)
                answered = str(answer.get("completion", "")).strip()
                same = answered == expected.strip()
                exact += same
                ticket = prompt.strip().splitlines()[-1]
                self.say(f"  [{number}] {ticket}")
                self.say(f"      expected: {expected}")
                self.say(f"      answered: {answered}   {'(exact)' if same else ''}".rstrip())
                usage = answer.get("usage") or {}
                self.say(f"      ({answer.get('latency_ms')} ms, {usage.get('output_tokens')} tokens)")
            self.say(f"{exact} of {len(prompts)} answers match the expected completion exactly.")
            outcome.append(f"{exact}/{len(prompts)} exact")

    def download(self) -> None:

        self.heading(8, "Download")
        with self.stage("download") as outcome, tempfile.TemporaryDirectory(prefix="tunelab-demo-") as folder:
            link = self.api.download_link(self.name)
            out = Path(folder) / f"{self.name}.tar.gz"
            written = self.api.fetch(str(link["url"]), out)
            try:
                files = list_archive(out)
            except Exception as error:
                raise StageFailed(f"the archive cannot be opened: {error}") from error
            self.say(f"Fetched {size(written)}; the archive holds:")
            for name, length in files:
                self.say(f"  {name:<40} {size(length)}")
            if not any(name.endswith(".safetensors") for name, _ in files):
                raise StageFailed("the archive holds no weights (.safetensors)")
            outcome.append(f"{size(written)}, {len(files)} files")

    def undeploy(self) -> None:
        self.heading(9, "Undeploy")
        with self.stage("undeploy") as outcome:
            self.api.undeploy(self.name)
            model = wait_for_status(self.api, self.name, DEPLOYING_STATUSES | {"deployed"}, timeout=300)
            if model["status"] != "not_deployed":
                raise StageFailed(f"the model is {model['status']} after undeploying")
            self.deployed = False
            self.say(f"{model['status_label']}.")
            outcome.append(model["status"])

    def delete(self) -> None:
        self.heading(10, "Delete")
        with self.stage("delete") as outcome:
            if self.keep:
                self.say(f"Kept (--keep): {self.name} and datasets {', '.join(self.dataset_ids)}.")
                if self.runtime is not None:
                    self.say(
                        f"The runtime this demo started stops next; its data dir ({self.runtime.data_dir}) "
                        "keeps them: `tunelab local up` shows them again."
                    )
                outcome.append("kept")
                return
            self.api.delete_model(self.name)
            for dataset_id in self.dataset_ids:
                self.api.delete_dataset(dataset_id)
            try:
                self.api.model(self.name)
            except ApiError as error:
                if error.status != 404:
                    raise
            else:
                raise StageFailed(f"{self.name} is still there after being deleted")
            self.say(f"Deleted {self.name} and its datasets.")
            outcome.append("model and datasets deleted")

    def report(self, failed: str | None) -> None:
        self.say()
        self.say("== Summary" + (f" (the {failed} stage failed)" if failed else ""))
        self.say(f"Model {self.name} on {self.plan.model}")
        self.say(self.timings.summary())
        if failed and self.created and self.runtime is None:
            self.say(f"The model {self.name} is left as it is for a look: tunelab models show {self.name}")


def usd_text(value: Any) -> str:
    return f"${value:,.2f}" if isinstance(value, int | float) else "-"


def fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def run_demo(args: argparse.Namespace) -> int:
    """`tunelab demo`."""
    plan = PLANS[args.model]
    if args.train_rows is not None:
        plan = replace(
            plan, train_rows=args.train_rows, why=f"{plan.why} (rows: {args.train_rows}, as asked)"
        )
    if args.epochs is not None:
        plan = replace(
            plan,
            hyperparameters=plan.hyperparameters | {"epochs": args.epochs},
            why=f"{plan.why} (epochs: {args.epochs}, as asked)",
        )
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else None
    # A URL given (--api-url or TUNELAB_API_URL) is the API to use: the demo starts no runtime for it.
    api_url = args.api_url or os.environ.get(API_URL_VARIABLE) or None
    return Demo(plan, keep=args.keep, api_url=api_url, data_dir=data_dir).run()


def add_demo_command(commands: Any) -> None:
    """Add `demo` to the CLI's subcommands."""
    demo = commands.add_parser(
        "demo",
        help="run a real fine-tuning job end to end on this machine",
        description="Upload the sample support-triage data, show the cost, fine-tune a local model, "
        "compare it with its base model on the validation rows, deploy it, ask it validation prompts, "
        "download it, undeploy and delete it; with timings. Uses "
        "the local runtime at the API URL if one is up, else starts one in this process.",
    )
    demo.add_argument(
        "--model",
        choices=tuple(PLANS),
        default=SMOLLM2,
        help=f"the base model (default {SMOLLM2}; {TINY} takes seconds and learns little)",
    )
    demo.add_argument("--keep", action="store_true", help="keep the model and datasets at the end")
    demo.add_argument("--train-rows", type=int, default=None, help="train on this many sample rows (1-200)")
    demo.add_argument("--epochs", type=int, default=None, help="train this many epochs")
    demo.add_argument("--data-dir", default=None, help="the data dir of a runtime started by the demo")
    demo.set_defaults(handler=run_demo)
