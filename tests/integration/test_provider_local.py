"""The local provider for real: the tiny Llama trains in a subprocess, reports SageMaker-shaped events on
the bus (read back from a queue), is served in-process, downloaded and deleted; under moto in-process.

One moto account and one data dir serve the whole module: the tiny base model is built once, and the
job trained to completion is the one the deployment, download and delete tests use.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto import mock_aws

from tunelab.adapters.providers import parse_event
from tunelab.adapters.providers.local import EVENT_SOURCE, TRAINING_EVENT, LocalProviderConfig
from tunelab.composition.wiring import Services, unregister_provider_factory
from tunelab.domain.catalog import load_catalog
from tunelab.domain.errors import InvalidState, NotFound, ValidationFailed
from tunelab.domain.hyperparameters import ResolvedHyperparameters
from tunelab.domain.providers import (
    DeployRequest,
    InvokeParams,
    ModelIdentity,
    ParentModel,
    TrainedModel,
    TrainingJobRef,
    TrainingRequest,
    TrainingState,
)
from tunelab.domain.training_logs import TrainingLogLine
from tunelab.entrypoints.messages import parse_envelope
from tunelab.local.context import LocalContext
from tunelab.local.models import TINY_LLAMA_ID
from tunelab.local.provider import (
    LOCAL_EVENT_RULES,
    LocalTraining,
    install,
    job_name,
    latest_checkpoint,
    make_training,
)

pytestmark = [pytest.mark.xdist_group("local-provider"), pytest.mark.slow, pytest.mark.moto]

REGION = "us-east-1"
BUCKET = "tunelab-local-artifacts"
BUS = "tunelab-local-events"
REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = REPO_ROOT / "shared" / "tunelab" / "sample_data"
TRAINER_DIR = REPO_ROOT / "trainer"


def _pairs(name: str) -> list[tuple[str, str]]:
    with (SAMPLE / name).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return [(row[0], row[1]) for row in rows[1:]]


def _jsonl(pairs: list[tuple[str, str]]) -> bytes:
    return "".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs).encode()


@dataclass
class Env:
    training: LocalTraining
    s3: Any
    sqs: Any
    queue_url: str
    data_dir: Path
    events: list[dict[str, Any]]

    def upload(self, key: str, body: bytes) -> str:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        return f"s3://{BUCKET}/{key}"

    def drain(self) -> list[dict[str, Any]]:
        """Every event delivered so far (kept across calls: tests share the queue)."""
        while True:
            answer = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            messages = answer.get("Messages", [])
            if not messages:
                return self.events
            for message in messages:
                self.events.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def states(self, job: str) -> list[TrainingState]:
        """The job's events, parsed the way the provider-events handler parses them."""
        states = []
        for body in self.drain():
            envelope = parse_envelope(body)
            event = parse_event(envelope.source, envelope.detail_type, envelope.detail, envelope.account)
            assert event.provider == "local"
            state = event.state
            assert isinstance(state, TrainingState)
            if state.job_id == job:
                states.append(state)
        return states


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "HF_HUB_OFFLINE": "1",
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        patch.delenv("AWS_PROFILE", raising=False)
        with mock_aws():
            s3 = boto3.client("s3", region_name=REGION)
            s3.create_bucket(Bucket=BUCKET)
            events = boto3.client("events", region_name=REGION)
            events.create_event_bus(Name=BUS)
            sqs = boto3.client("sqs", region_name=REGION)
            queue_url = sqs.create_queue(QueueName="provider-events")["QueueUrl"]
            queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            (rule,) = LOCAL_EVENT_RULES
            events.put_rule(
                Name=rule.logical_id, EventBusName=BUS, EventPattern=json.dumps(rule.event_pattern)
            )
            events.put_targets(
                Rule=rule.logical_id, EventBusName=BUS, Targets=[{"Id": "queue", "Arn": queue_arn}]
            )
            data_dir = tmp_path_factory.mktemp("local-data")
            config = LocalProviderConfig(
                data_dir=data_dir,
                region=REGION,
                event_bus_name=BUS,
                artifacts_bucket=BUCKET,
                trainer_dir=TRAINER_DIR,
                progress_interval_s=0.5,
                stop_grace_s=60,
            )
            training = make_training(config)
            yield Env(training, s3, sqs, queue_url, data_dir, [])
            training.shutdown(grace_s=5)


def _identity(name: str) -> ModelIdentity:
    return ModelIdentity(
        workspace_id="ws-local", model_name=name, created_at=datetime(2026, 11, 28, tzinfo=UTC)
    )


def _request(
    env: Env, name: str, hyperparameters: dict[str, Any], train: bytes, validation: bytes | None = None
):
    spec = load_catalog().model(TINY_LLAMA_ID)
    prefix = f"training-data/ws-local/{name}"
    return TrainingRequest(
        identity=_identity(name),
        base_model=spec,
        training_data_uri=env.upload(f"{prefix}/train.jsonl", train),
        validation_data_uri=env.upload(f"{prefix}/validation.jsonl", validation) if validation else None,
        hyperparameters={
            k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in hyperparameters.items()
        },
        tags={"tunelab-workspace": "ws-local"},
    )


@pytest.fixture(scope="module")
def completed(env: Env) -> tuple[TrainingJobRef, float]:
    """A tiny-llama job trained on the sample data with the catalog's defaults, to completion."""
    provider = env.training.provider()
    request = _request(
        env,
        "triage-bot",
        {
            "epochs": 8,
            "learning_rate": 0.01,
            "batch_size": 8,
            "seed": 7,
            "sft_config": {"logging_strategy": "steps", "logging_steps": 20},
        },
        _jsonl(_pairs("support-triage.csv")),
        _jsonl(_pairs("support-triage-validation.csv")),
    )
    started = time.monotonic()
    ref = provider.start_training(request)
    assert env.training.jobs.wait(ref.job_name, timeout=600)
    return ref, time.monotonic() - started


@pytest.fixture(scope="module")
def lora_unmerged(env: Env) -> TrainingJobRef:
    """A tiny-llama LoRA job whose adapter is not merged, trained to completion."""
    provider = env.training.provider()
    request = _request(
        env,
        "lora-bot",
        {"epochs": 1, "batch_size": 8, "seed": 7, "use_lora": "true", "merge_adapters": "false"},
        _jsonl(_pairs("support-triage.csv")[:32]),
    )
    ref = provider.start_training(request)
    assert env.training.jobs.wait(ref.job_name, timeout=600)
    assert provider.describe_training(ref).status == "completed"
    return ref


def test_the_jobs_log_is_read_page_by_page_each_line_once_with_its_time(env: Env, completed) -> None:
    ref, _ = completed
    provider = env.training.provider()
    lines: list[TrainingLogLine] = []
    position = None
    while True:
        page = provider.training_log(ref, position=position, limit=25)
        if not page.lines:
            break
        lines += page.lines
        position = page.position
    text = (env.data_dir / "jobs" / ref.job_name / "trainer.log").read_text(encoding="utf-8")
    assert len(lines) == text.count("\n")
    # The trainer's step and loss lines, in the order it printed them, each stamped as it was written.
    losses = [line.message for line in lines if line.message.startswith("train_loss=")]
    assert len(losses) == 200 // 20
    assert [line.at for line in lines] == sorted(line.at for line in lines)
    assert all(line.at.tzinfo is not None for line in lines)


def test_a_job_trains_to_completed_uploads_its_model_and_reports_like_sagemaker(env: Env, completed):
    ref, seconds = completed
    provider = env.training.provider()

    state = provider.describe_training(ref)
    assert state.status == "completed", state.failure_reason
    assert state.artifacts_uri == f"{ref.output_uri}{ref.job_name}/output/model.tar.gz"
    assert state.metrics is not None
    assert state.metrics.step == 200
    assert state.metrics.train_loss is not None
    # The archive holds the model at its root, as SageMaker packs /opt/ml/model.
    body = env.s3.get_object(Bucket=BUCKET, Key=state.artifacts_uri.split(f"{BUCKET}/", 1)[1])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        names = set(archive.getnames())
    assert {"config.json", "model.safetensors", "tokenizer.json", "tunelab-training.json"} <= names
    print(f"tiny-llama: 200 rows x 8 epochs trained and uploaded in {seconds:.1f} s")

    # The job folder is SageMaker's layout.
    folder = env.data_dir / "jobs" / ref.job_name
    assert (folder / "input" / "data" / "training" / "train.jsonl").is_file()
    assert (folder / "input" / "data" / "validation" / "validation.jsonl").is_file()
    hyperparameters = json.loads((folder / "input" / "config" / "hyperparameters.json").read_text())
    assert hyperparameters["epochs"] == "8"
    assert hyperparameters["base_model"] == str(env.data_dir / "models" / "tiny-llama")
    assert (folder / "model" / "model.safetensors").is_file()
    assert (folder / "trainer.log").read_text().count("train_loss=") == 200 // 20
    # What a finished job no longer needs is not kept: the uploaded archive, the checkpoints' optimizer
    # state (their weights and trainer_state.json stay, to be listed and downloaded).
    assert not (folder / "output" / "model.tar.gz").exists()
    kept = list((folder / "checkpoints").glob("checkpoint-*"))
    assert kept
    assert all((c / "trainer_state.json").is_file() and not (c / "optimizer.pt").exists() for c in kept)

    # Events: tunelab's own source, parsed by the same function the provider-events handler uses.
    bodies = [b for b in env.drain() if b["detail"]["TrainingJobName"] == ref.job_name]
    assert {b["source"] for b in bodies} == {EVENT_SOURCE}
    assert {b["detail-type"] for b in bodies} == {TRAINING_EVENT}
    assert bodies[0]["detail"]["Tags"]["tunelab-workspace"] == "ws-local"
    states = env.states(ref.job_name)
    assert [s.status for s in states][-1] == "completed"
    assert all(s.status == "in_progress" for s in states[:-1])
    phases = [s.phase for s in states]
    assert phases[:3] == ["Starting", "Downloading", "Preparing the base model"]
    with_metrics = [s for s in states[:-1] if s.metrics and s.metrics.train_loss is not None]
    assert with_metrics, phases
    assert any(s.phase and s.phase.startswith("Training ") and "/200 steps" in s.phase for s in states)
    assert states[-1].artifacts_uri == state.artifacts_uri
    assert states[-1].metrics == state.metrics


def test_a_completed_jobs_checkpoints_are_listed_and_one_downloads_as_an_archive(env: Env, completed):
    ref, _ = completed
    provider = env.training.provider()
    found = provider.checkpoints(ref)
    assert found.items, found.message
    assert [c.step for c in found.items] == sorted(c.step for c in found.items)
    last = found.items[-1]
    assert last.id == f"checkpoint-{last.step}"
    assert last.train_loss is not None
    assert last.epoch is not None
    assert last.size_bytes
    assert last.saved_at

    link = provider.checkpoint_download(ref, last.id)
    key = f"{ref.output_uri}{ref.job_name}/checkpoints/{last.id}.tar.gz".split(f"{BUCKET}/", 1)[1]
    body = env.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert link.size_bytes == len(body)
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        names = set(archive.getnames())
    assert {"trainer_state.json", "model.safetensors"} <= names
    # Packed once: asked again, the same archive is linked.
    assert provider.checkpoint_download(ref, last.id).size_bytes == link.size_bytes
    with pytest.raises(NotFound):
        provider.checkpoint_download(ref, "checkpoint-99999")


def test_trained_output_lists_the_uploaded_archive(env: Env, completed):
    ref, _ = completed
    provider = env.training.provider()
    artifacts = provider.describe_training(ref).artifacts_uri
    assert artifacts is not None
    stored = env.s3.head_object(Bucket=BUCKET, Key=artifacts.split(f"{BUCKET}/", 1)[1])["ContentLength"]
    summary = json.loads(
        (env.data_dir / "jobs" / ref.job_name / "model" / "tunelab-training.json").read_text()
    )

    # The outcome named no archive: the provider reads it from the job.
    output = provider.trained_output(ref, artifacts_uri=None, model_ref=None, merged=False)

    assert output.artifacts_uri == artifacts
    assert output.model_ref is None
    assert output.size_bytes == stored
    assert {"config.json", "model.safetensors", "tokenizer.json", "tunelab-training.json"} <= set(
        output.files
    )
    assert output.files == sorted(output.files)
    # Whether the adapter was merged is what the trainer's summary says.
    assert output.merged == bool(summary["artifacts"]["merged"])
    assert provider.trained_output(None, artifacts_uri=artifacts, model_ref=None, merged=False) == output


def test_trained_output_refuses_a_job_without_an_archive(env: Env):
    provider = env.training.provider()
    with pytest.raises(ValidationFailed, match="no artifacts"):
        provider.trained_output(None, artifacts_uri=None, model_ref=None, merged=False)


def test_the_provider_keeps_training_data_in_the_artifacts_bucket_and_trusts_its_own_jobs(env: Env):
    provider = env.training.provider()
    identity = _identity("triage-bot")

    folder = provider.training_data_folder(identity, "01JABCDEF", load_catalog().model(TINY_LLAMA_ID))
    assert folder == f"s3://{BUCKET}/training-data/ws-local/triage-bot/01JABCDEF/"
    provider.storage.put(f"{folder}train.jsonl", b"{}\n", content_type="application/jsonl")
    assert provider.storage.exists(f"{folder}train.jsonl")
    provider.storage.delete_folder(folder)
    assert not provider.storage.exists(f"{folder}train.jsonl")

    provider.check_new_job(identity)  # a job's folder is named after the model record: nothing to refuse
    assert provider.speaks_for(None)
    assert provider.speaks_for("123456789012")
    assert provider.training_timeout_s == 12 * 3600
    hyperparameters = provider.training_hyperparameters(
        load_catalog().model(TINY_LLAMA_ID),
        ResolvedHyperparameters(epochs=2, learning_rate=0.001, batch_size=8),
        None,
        provider_split_percent=None,
    )
    assert {k: hyperparameters[k] for k in ("epochs", "learning_rate", "batch_size")} == {
        "epochs": "2",
        "learning_rate": "0.001",
        "batch_size": "8",
    }


def test_starting_the_same_job_again_finds_it(env: Env, completed):
    ref, _ = completed
    provider = env.training.provider()
    request = _request(env, "triage-bot", {"epochs": 1}, _jsonl(_pairs("support-triage.csv")[:10]))

    again = provider.start_training(request)

    assert again == ref
    assert provider.describe_training(again).status == "completed"


def test_a_job_continues_from_a_fine_tuned_parent(env: Env, completed):
    ref, _ = completed
    provider = env.training.provider()
    parent = provider.describe_training(ref).artifacts_uri
    request = _request(
        env, "triage-bot-v2", {"epochs": 1, "batch_size": 8}, _jsonl(_pairs("support-triage.csv")[:16])
    ).model_copy(update={"parent": ParentModel(artifacts_uri=parent)})

    child = provider.start_training(request)
    assert env.training.jobs.wait(child.job_name, timeout=300)

    assert provider.describe_training(child).status == "completed"
    folder = env.data_dir / "jobs" / child.job_name
    assert (folder / "input" / "data" / "model" / "model.tar.gz").is_file()
    summary = json.loads((folder / "model" / "tunelab-training.json").read_text())
    assert summary["base_model"]["source"] == "channel"
    assert summary["metrics"]["step"] == 2


def test_a_crashing_trainer_fails_the_job_with_its_reason(env: Env):
    provider = env.training.provider()
    bad = b'{"prompt": "Reset my password", "completion": "category=login"}\n{"prompt": "no answer"}\n'
    request = _request(env, "bad-data", {"epochs": 1}, bad)

    ref = provider.start_training(request)
    assert env.training.jobs.wait(ref.job_name, timeout=300)

    state = provider.describe_training(ref)
    assert state.status == "failed"
    assert state.failure_reason is not None
    assert "train.jsonl line 2: missing the field 'completion'" in state.failure_reason
    final = env.states(ref.job_name)[-1]
    assert final.status == "failed"
    assert final.failure_reason == state.failure_reason


def test_a_stopped_job_ends_stopped_with_a_model_that_loads(env: Env):
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415  # heavy; this test only

    provider = env.training.provider()
    request = _request(env, "long-run", {"epochs": 50, "batch_size": 8}, _jsonl(_pairs("support-triage.csv")))
    ref = provider.start_training(request)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        record = env.training.jobs.describe(ref.job_name)
        if (record.progress is not None and record.progress.step >= 5) or record.status != "InProgress":
            break
        time.sleep(0.5)
    assert record.status == "InProgress"
    assert record.progress is not None
    assert record.progress.step >= 5
    # The trainer leads its own process group: Ctrl-C in the runtime's terminal does not reach it
    # directly; the runtime's orderly stop (SIGTERM, below) does.
    assert record.pid is not None
    assert os.getpgid(record.pid) == record.pid
    assert os.getpgid(record.pid) != os.getpgid(0)

    provider.stop_training(ref)
    assert env.training.jobs.wait(ref.job_name, timeout=180)

    state = provider.describe_training(ref)
    assert state.status == "stopped"
    record = env.training.jobs.describe(ref.job_name)
    assert record.artifacts_uri is not None
    summary = json.loads(
        (env.data_dir / "jobs" / ref.job_name / "model" / "tunelab-training.json").read_text()
    )
    assert summary["status"] == "stopped"
    assert summary["metrics"]["step"] < summary["metrics"]["max_steps"]
    model_dir = env.data_dir / "jobs" / ref.job_name / "model"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert model.config.vocab_size == len(tokenizer)
    statuses = [s.status for s in env.states(ref.job_name)]
    assert "stopping" in statuses
    assert statuses[-1] == "stopped"


def test_a_job_stopped_as_soon_as_it_started_ends_stopped(env: Env):
    provider = env.training.provider()
    ref = provider.start_training(
        _request(env, "stopped-early", {"epochs": 50}, _jsonl(_pairs("support-triage.csv")))
    )

    provider.stop_training(ref)
    assert env.training.jobs.wait(ref.job_name, timeout=180)
    provider.stop_training(ref)  # an ended job is left as it is

    assert provider.describe_training(ref).status == "stopped"
    statuses = [s.status for s in env.states(ref.job_name)]
    assert statuses[0] == "in_progress"
    assert statuses[-1] == "stopped"


def test_a_job_the_runtime_left_running_is_reported_failed(env: Env):
    folder = env.data_dir / "jobs" / "left-behind-0123456789"
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(
        json.dumps(
            {
                "name": folder.name,
                "arn": f"arn:tunelab:local:{REGION}:000000000000:training-job/{folder.name}",
                "workspace_id": "ws-local",
                "model_name": "left-behind",
                "base_model_id": TINY_LLAMA_ID,
                "status": "InProgress",
                "secondary": "Training",
                "output_uri": f"s3://{BUCKET}/local-jobs/ws-local/left-behind/output/",
                "created_at": "2026-11-28T12:00:00Z",
                "pid": 999999,
            }
        )
    )
    ref = TrainingJobRef(provider="local", job_id=folder.name, job_name=folder.name)

    state = env.training.provider().describe_training(ref)

    assert state.status == "failed"
    assert state.failure_reason == "The local runtime stopped while the job ran; start a new job."
    assert json.loads((folder / "job.json").read_text())["status"] == "Failed"


def test_a_deployed_model_answers_with_what_it_learned_and_goes_away_when_undeployed(env: Env, completed):
    ref, _ = completed
    provider = env.training.provider()
    artifacts = provider.describe_training(ref).artifacts_uri
    request = DeployRequest(
        identity=_identity("triage-bot"),
        requested_at=datetime(2026, 11, 28, 12, tzinfo=UTC),
        base_model=load_catalog().model(TINY_LLAMA_ID),
        artifacts_uri=artifacts,
    )

    deployment = provider.deploy(request)
    assert provider.deploy(request) == deployment
    assert provider.describe_deployment(deployment).status in ("creating", "in_service")
    assert env.training.servers.wait(deployment.deployment_id, timeout=120)
    assert provider.describe_deployment(deployment).status == "in_service"

    prompt, expected = _pairs("support-triage.csv")[0]
    result = provider.invoke(deployment, InvokeParams(prompt=prompt, max_tokens=24, temperature=0.0))
    assert result.completion == expected
    assert result.input_tokens > 10
    # The completion's tokens and the end-of-turn token.
    assert 1 < result.output_tokens <= 24
    sampled = provider.invoke(
        deployment, InvokeParams(prompt="Hello", max_tokens=5, temperature=1.0, top_p=0.9)
    )
    assert sampled.output_tokens <= 5

    provider.undeploy(deployment)
    provider.undeploy(deployment)
    assert provider.describe_deployment(deployment).status == "gone"
    with pytest.raises(InvalidState):
        provider.invoke(deployment, InvokeParams(prompt=prompt))


def test_a_deployment_without_loadable_weights_fails_with_the_reason(env: Env):
    provider = env.training.provider()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("README.txt")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"empty"))
    uri = env.upload("local-jobs/ws-local/empty/model.tar.gz", buffer.getvalue())
    request = DeployRequest(
        identity=_identity("empty"),
        requested_at=datetime(2026, 11, 28, 12, tzinfo=UTC),
        base_model=load_catalog().model(TINY_LLAMA_ID),
        artifacts_uri=uri,
    )

    deployment = provider.deploy(request)
    assert env.training.servers.wait(deployment.deployment_id, timeout=60)

    state = provider.describe_deployment(deployment)
    assert state.status == "failed"
    assert state.reason is not None
    assert "neither weights" in state.reason


def test_the_download_link_fetches_the_model_archive(env: Env, completed):
    ref, _ = completed
    provider = env.training.provider()
    artifacts = provider.describe_training(ref).artifacts_uri
    assert artifacts is not None
    key = artifacts.split(f"{BUCKET}/", 1)[1]
    stored = env.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    link = provider.download(artifacts, expires_in_s=600)

    assert link.size_bytes == len(stored)
    assert f"/{key}" in link.url
    assert "Signature" in link.url
    assert requests.get(link.url, timeout=30).content == stored


def test_an_unmerged_lora_job_uploads_a_merged_copy_that_transformers_loads(
    env: Env, lora_unmerged: TrainingJobRef, tmp_path: Path
):
    import torch  # noqa: PLC0415  # heavy; these tests only
    from peft import PeftModel  # noqa: PLC0415
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    provider = env.training.provider()
    ref = lora_unmerged

    output = provider.trained_output(ref, artifacts_uri=None, model_ref=None, merged=False)

    # model.tar.gz is the adapter alone; the merged copy is in output.tar.gz next to it, as on SageMaker
    assert output.merged is False
    assert "adapter_config.json" in output.files
    assert "config.json" not in output.files
    copy = output.merged_archive
    assert copy is not None
    assert copy.uri == f"{ref.output_uri}{ref.job_name}/output/output.tar.gz"
    assert copy.path == "merged/"
    assert {"merged/config.json", "merged/generation_config.json", "merged/tokenizer.json"} <= set(copy.files)
    assert any(f.startswith("merged/") and f.endswith(".safetensors") for f in copy.files)

    # The download link serves it, and transformers loads the merged folder as a whole model
    link = provider.download(copy.uri, expires_in_s=600)
    fetched = requests.get(link.url, timeout=60).content
    assert len(fetched) == link.size_bytes == copy.size_bytes
    with tarfile.open(fileobj=io.BytesIO(fetched)) as archive:
        archive.extractall(tmp_path / "download", filter="data")
    merged_dir = tmp_path / "download" / "merged"
    model = AutoModelForCausalLM.from_pretrained(merged_dir)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    # ... and it is the trained model: the adapter applied to its base gives the same outputs
    adapter_dir = env.data_dir / "jobs" / ref.job_name / "model" / "adapter"
    base_dir = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter_dir)
    inputs = tokenizer("Reset my password please", return_tensors="pt")
    with torch.no_grad():
        expected = with_adapter(**inputs).logits
        got = model(**inputs).logits
    assert torch.allclose(got, expected, atol=1e-4)


def test_an_unmerged_lora_model_is_served_from_its_merged_copy(env: Env, lora_unmerged: TrainingJobRef):
    provider = env.training.provider()
    output = provider.trained_output(lora_unmerged, artifacts_uri=None, model_ref=None, merged=False)
    assert output.merged_archive is not None
    request = DeployRequest(
        identity=_identity("lora-bot"),
        requested_at=datetime(2026, 11, 28, 12, tzinfo=UTC),
        base_model=load_catalog().model(TINY_LLAMA_ID),
        artifacts_uri=output.merged_archive.uri,
        artifacts_path=output.merged_archive.path,
    )

    deployment = provider.deploy(request)
    assert env.training.servers.wait(deployment.deployment_id, timeout=120)

    state = provider.describe_deployment(deployment)
    assert state.status == "in_service", state.reason
    answer = provider.invoke(
        deployment, InvokeParams(prompt="Reset my password", max_tokens=4, temperature=0.0)
    )
    assert 1 <= answer.output_tokens <= 4
    provider.undeploy(deployment)


def test_deleting_a_model_removes_its_job_folder_and_uploads(env: Env):
    provider = env.training.provider()
    bad = b'{"prompt": "only a prompt"}\n'
    ref = provider.start_training(_request(env, "to-delete", {"epochs": 1}, bad))
    assert env.training.jobs.wait(ref.job_name, timeout=300)
    output_key = f"local-jobs/ws-local/to-delete/output/{ref.job_name}/output/model.tar.gz"
    env.s3.put_object(Bucket=BUCKET, Key=output_key, Body=b"archive")

    provider.delete_model(TrainedModel(identity=_identity("to-delete"), job=ref))
    provider.delete_model(TrainedModel(identity=_identity("to-delete"), job=ref))

    assert not (env.data_dir / "jobs" / ref.job_name).exists()
    listed = env.s3.list_objects_v2(Bucket=BUCKET, Prefix="local-jobs/ws-local/to-delete/")
    assert listed.get("KeyCount", 0) == 0
    state = provider.describe_training(ref)
    assert state.status == "failed"
    assert "no longer exists" in (state.failure_reason or "")


def test_install_registers_the_provider_its_shutdown_interrupts_jobs_and_the_next_install_resumes_them(
    env: Env,
) -> None:
    context = LocalContext(
        data_dir=env.data_dir,
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL", "") or None,  # type: ignore[arg-type]
        region=REGION,
        event_bus_name=BUS,
        artifacts_bucket=BUCKET,
        datasets_bucket="unused",
        account_id="123456789012",
    )
    shutdown = install(context, trainer_dir=TRAINER_DIR, progress_interval_s=0.5)
    try:
        provider = Services().providers.named("local", "ws-local")
        request = _request(env, "interrupted", {"epochs": 50}, _jsonl(_pairs("support-triage.csv")))
        ref = provider.start_training(request)
        assert ref.job_name == job_name(_identity("interrupted"))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            record = provider.jobs.describe(ref.job_name)  # type: ignore[attr-defined]
            if (record.progress and record.progress.step >= 2) or record.status != "InProgress":
                break
            time.sleep(0.2)
    finally:
        started = time.monotonic()
        shutdown()
        took = time.monotonic() - started

    # Interrupted, not ended: the trainer saved a checkpoint, and the job waits for the next start.
    record = provider.jobs.describe(ref.job_name)  # type: ignore[attr-defined]
    assert (record.status, record.secondary, record.interrupted) == ("InProgress", "Interrupted", True)
    assert record.pid is None
    assert latest_checkpoint(env.data_dir / "jobs" / ref.job_name / "checkpoints") is not None
    assert took < 30
    with pytest.raises(ValueError, match="no provider 'local'"):
        Services().providers.named("local", "ws-local")

    shutdown = install(context, trainer_dir=TRAINER_DIR, progress_interval_s=0.5)
    try:
        provider = Services().providers.named("local", "ws-local")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            record = provider.jobs.describe(ref.job_name)  # type: ignore[attr-defined]
            if record.pid is not None or record.status != "InProgress":
                break
            time.sleep(0.2)
        assert (record.status, record.resumed, record.interrupted) == ("InProgress", 1, False)
        assert record.resumed_from is not None
        assert record.resumed_from.startswith("checkpoint-")
        log = env.data_dir / "jobs" / ref.job_name / "trainer.log"
        resuming = f"resuming from checkpoint {record.resumed_from}"
        while time.monotonic() < deadline and resuming not in log.read_text(encoding="utf-8"):
            time.sleep(0.2)
        provider.stop_training(ref)
        assert provider.jobs.wait(ref.job_name, 120)  # type: ignore[attr-defined]
        assert provider.jobs.describe(ref.job_name).status == "Stopped"  # type: ignore[attr-defined]
    finally:
        shutdown()
    # The trainer's log goes on after the first run's lines.
    text = log.read_text(encoding="utf-8")
    assert text.index("stopped: step") < text.index(resuming)
    unregister_provider_factory("local")


def test_a_resumed_job_has_its_own_folder_with_the_earlier_jobs_checkpoint(env: Env):
    provider = env.training.provider()
    bad = b'{"prompt": "only a prompt"}\n'
    identity = _identity("resumes-here")
    first = provider.start_training(_request(env, "resumes-here", {"epochs": 1}, bad))
    assert env.training.jobs.wait(first.job_name, timeout=300)
    assert provider.resume_point(identity, 0) is None  # it failed before saving any
    # As the trainer leaves one: the folder, its trainer_state.json written last.
    saved = env.data_dir / "jobs" / first.job_name / "checkpoints" / "checkpoint-12"
    saved.mkdir(parents=True)
    (saved / "adapter_model.safetensors").write_bytes(b"weights")
    (saved / "trainer_state.json").write_text(json.dumps({"global_step": 12, "max_steps": 150}))
    # The base model's evaluation answers the trainer keeps beside its checkpoints.
    (saved.parent / "tunelab-evaluation-base.json").write_text('{"fingerprint": "f", "answers": []}')

    point = provider.resume_point(identity, 0)
    resumed = provider.start_training(
        _request(env, "resumes-here", {"epochs": 1}, bad).model_copy(update={"attempt": 1})
    )

    assert point is not None
    assert (point.checkpoint, point.step, point.total_steps) == ("checkpoint-12", 12, 150)
    assert resumed.job_name != first.job_name
    copied = env.data_dir / "jobs" / resumed.job_name / "checkpoints" / "checkpoint-12"
    assert (copied / "adapter_model.safetensors").read_bytes() == b"weights"
    # ... go with the checkpoint, so the resumed trainer does not generate them again.
    answers = copied.parent / "tunelab-evaluation-base.json"
    assert answers.read_text() == '{"fingerprint": "f", "answers": []}'
    assert env.training.jobs.describe(resumed.job_name).resumed_from == "checkpoint-12"
    assert env.training.jobs.wait(resumed.job_name, timeout=300)
    # The newest checkpoint of the model's jobs, up to the attempt asked about.
    assert provider.resume_point(identity, 1) == point

    provider.delete_model(TrainedModel(identity=identity, job=resumed, attempt=1))

    assert not (env.data_dir / "jobs" / resumed.job_name).exists()
    assert not (env.data_dir / "jobs" / first.job_name).exists()  # the earlier attempt's too
