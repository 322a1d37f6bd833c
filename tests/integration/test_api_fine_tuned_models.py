"""Fine-tuned models through the API under moto: create (every check up front), list, details, events, stop,
deploy, undeploy, invoke, download and delete; idempotency, name clashes and tenants.

The state machines here do not execute (the lifecycle tests run them); what the API started is read
back from Step Functions. Actions on a model use a provider double that records what it was asked.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto.dynamodb.models import DynamoDBBackend

from tests.integration.api_support import (
    OTHER_WS,
    VALIDATION_CSV,
    WS,
    Api,
    api_fixture,  # noqa: F401  # the `api` fixture
    customer_session,
)
from tests.integration.conftest import ACCOUNT, REGION
from tests.integration.handler_support import RecordingProvider, emails
from tunelab.application import fine_tuned_models
from tunelab.application.workflows import execution_name
from tunelab.composition.settings import get_settings
from tunelab.composition.wiring import Services, set_services
from tunelab.domain.errors import NameTaken
from tunelab.domain.events import MODEL_DELETED
from tunelab.domain.identity import Identity
from tunelab.domain.providers import (
    DeploymentRef,
    DownloadLink,
    InvokeParams,
    InvokeResult,
    ResumePoint,
    SageMakerConnection,
    TrainingJobRef,
)
from tunelab.domain.records import (
    Artifacts,
    DeploymentState,
    MergedArchive,
    ModelChanges,
    ProviderConnectionRecord,
    ProviderRefs,
)
from tunelab.domain.status import ModelStatus
from tunelab.entrypoints.api.contracts import CreateFineTunedModelIn

pytestmark = pytest.mark.moto

NOVA = "amazon.nova-micro-v1:0:128k"
QWEN = "sagemaker.qwen2-5-7b-instruct"
CUSTOMER = "111122223333"
CUSTOMER_REGION = "us-west-2"
CUSTOMER_BUCKET = "acme-tunelab-artifacts"
PASS_MACHINE = json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": True}}})


class Double(RecordingProvider):
    """The provider double, answering the sandbox and downloads too."""

    def invoke(self, ref: DeploymentRef, params: InvokeParams) -> InvokeResult:
        self._call("invoke", (ref, params))
        return InvokeResult(completion="billing", input_tokens=12, output_tokens=1, latency_ms=41)

    def download(self, artifacts_uri: str, *, expires_in_s: int = 900) -> DownloadLink:
        self._call("download", artifacts_uri)
        return DownloadLink(
            url=f"https://example.com/{artifacts_uri[5:]}?signed",
            expires_at=datetime(2026, 11, 28, 12, 15, tzinfo=UTC),
            size_bytes=4321,
        )


def _machines() -> None:
    settings = get_settings()
    sfn = boto3.client("stepfunctions", region_name=REGION)
    for arn in (settings.fine_tuning_state_machine_arn, settings.deployment_state_machine_arn):
        sfn.create_state_machine(
            name=arn.rsplit(":", 1)[1],
            definition=PASS_MACHINE,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/tunelab-states",
        )


@pytest.fixture
def ft(api: Api) -> Api:
    """The API with both state machines (not executing)."""
    _machines()
    return api


@pytest.fixture
def doubles(ft: Api) -> tuple[Api, Double, Double]:
    """The API whose bedrock and sagemaker providers are doubles."""
    bedrock, sagemaker = Double("bedrock"), Double("sagemaker")
    services = Services(providers={"bedrock": bedrock, "sagemaker": sagemaker})
    set_services(services)
    ft.services = ft.repo = services
    return ft, bedrock, sagemaker


def _body(dataset: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "support-bot-v1",
        "base_model_id": NOVA,
        "dataset_id": dataset,
        "validation": {"mode": "split", "percent": 10},
        "hyperparameters": {"epochs": 2},
        "acknowledge": True,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def _executions(machine: str = "fine_tuning") -> list[dict[str, Any]]:
    arn = getattr(get_settings(), f"{machine}_state_machine_arn")
    sfn = boto3.client("stepfunctions", region_name=REGION)
    return [dict(e) for e in sfn.list_executions(stateMachineArn=arn)["executions"]]


def _execution_input(arn: str) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    data: dict[str, Any] = json.loads(sfn.describe_execution(executionArn=arn)["input"])
    return data


# --- create -------------------------------------------------------------------------------------------


def test_create_checks_stores_and_starts_the_workflow_named_after_the_model(ft: Api) -> None:
    dataset_id = ft.dataset()

    created = ft.call("POST", "/v1/fine-tuned-models", _body(dataset_id))

    assert created.status == 202, created.body
    model = created.body
    assert model["name"] == "support-bot-v1"
    assert model["status"] == "training"
    assert model["status_label"] == "Training"
    assert model["provider"] == "bedrock"
    assert model["hosting"] == "managed"
    assert model["base_model"] == {"id": NOVA, "name": "Amazon Nova Micro"}
    assert model["dataset"] == {"id": dataset_id, "name": "support-tickets", "rows": 200}
    assert model["validation"] == {"mode": "split", "percent": 10, "dataset": None}
    assert model["hyperparameters"]["epochs"] == 2
    assert model["hyperparameters"]["learning_rate"] > 0  # the default, filled in
    assert model["optional_hyperparameters"] is None
    assert model["created_by"] == {"email": "ada@example.com", "sub": "7d8ca528-4931-4254-9273-ea5ee853f271"}
    predicted = model["cost"]["predicted"]
    assert predicted["training"]["epochs"] == 2
    assert predicted["training"]["tokens_per_epoch"] > 0
    assert predicted["training"]["trained_tokens"] == 2 * predicted["training"]["tokens_per_epoch"]
    assert model["cost"]["storage_per_month_usd"] == predicted["storage_per_month_usd"]
    # one execution, named after the model, for this record
    [execution] = _executions()
    assert execution["name"].startswith("support-bot-v1-")
    # Shown with the platform's account masked: tenants do not see it.
    assert model["training"]["execution_arn"] == execution["executionArn"].replace(
        "123456789012", "************"
    )
    assert "123456789012" not in json.dumps(model)
    started = _execution_input(execution["executionArn"])
    assert started["model_name"] == "support-bot-v1"
    assert started["workspace_id"] == WS
    record = ft.repo.models.get(WS, "support-bot-v1")
    assert execution["name"] == execution_name(record.name, record.uid)
    # it reads back the same, and its history starts with the status change
    assert ft.call("GET", "/v1/fine-tuned-models/support-bot-v1").body == model
    events = ft.call("GET", "/v1/fine-tuned-models/support-bot-v1/events").body["items"]
    assert [(e["type"], e["status"]) for e in events] == [("status_changed", "training")]
    assert "ada@example.com" in events[0]["message"]
    # and the bus heard of it
    assert ft.bus is not None
    published = [e for e in ft.bus.published() if e["detail-type"] == "Fine-tuned Model Status Changed"]
    assert published[-1]["detail"]["data"]["status"] == "training"
    assert published[-1]["detail"]["correlation_id"] == created.request_id


def _csv(rows: int, prompt: str = "My invoice is wrong") -> bytes:
    return ("prompt,completion\n" + "".join(f"{prompt} {i},billing\n" for i in range(rows))).encode()


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"acknowledge": None}, "acknowledge", "required"),
        ({"acknowledge": False}, "acknowledge", "read the predicted cost"),
        ({"name": "Bad_Name"}, "name", "underscores"),
        ({"base_fine_tuned_model": "other"}, "base_model_id", "exactly one"),
        ({"base_model_id": "no.such-model"}, "base_model_id", "There is no base model"),
        ({"base_model_id": "local.tiny-llama"}, "base_model_id", "only in the local runtime"),
        ({"base_model_id": "amazon.titan-text-lite-v1:0:4k"}, "base_model_id", "no longer offered"),
        ({"dataset_id": "ds_00000000000000000000000000"}, "dataset_id", "There is no dataset"),
        ({"hyperparameters": {"epochs": 99}}, "hyperparameters.epochs", "1"),
        ({"hyperparameters": {"epoch": 3}}, "hyperparameters", "epoch"),
        (
            {"resources": {"instance_type": "ml.g5.2xlarge", "instance_count": 1, "volume_size_gb": 100}},
            "resources",
            "SageMaker models only",
        ),
        ({"optional_hyperparameters": {"use_lora": True}}, "optional_hyperparameters", "takes no optional"),
        ({"validation": {"mode": "split", "percent": 80}}, "validation.percent", "50"),
        (
            {"validation": {"mode": "dataset", "dataset_id": "ds_00000000000000000000000000"}},
            "validation.dataset_id",
            "There is no dataset",
        ),
        ({"validation": {"mode": "sometimes"}}, "validation.mode", ""),
    ],
)
def test_create_refuses_a_bad_request_with_400_and_starts_nothing(
    ft: Api, changes: dict[str, Any], field: str, words: str
) -> None:
    dataset_id = ft.dataset()
    body = _body(dataset_id, **changes)
    if changes.get("acknowledge", True) is None:
        body.pop("acknowledge", None)

    answer = ft.call("POST", "/v1/fine-tuned-models", body)

    assert answer.status == 400, answer.body
    assert answer.error_code == "validation_error"
    details = answer.body["error"]["details"]
    assert field in [d.get("field") for d in details], details
    assert words in json.dumps(answer.body["error"])
    assert ft.repo.models.find(WS, body.get("name", "support-bot-v1")) is None
    assert _executions() == []


def test_dataset_checks_name_the_dataset_and_the_rule(ft: Api) -> None:
    ids = {
        "uploading": ft.call("POST", "/v1/datasets", {"name": "pending"}).body["dataset"]["id"],
        "invalid": ft.upload_csv("broken", b"prompt,completion\n,x\n").body["id"],
        "tiny": ft.dataset("tiny", _csv(5)),
        "long": ft.dataset("long", _csv(20, prompt="word " * 40_000)),
        "same": ft.dataset("same"),
    }
    cases = [
        (_body(ids["uploading"]), "dataset_id", "not been uploaded"),
        (_body(ids["invalid"]), "dataset_id", "error"),
        (_body(ids["tiny"], validation={"mode": "none"}), "dataset_id", "at least 8 training rows"),
        (_body(ids["long"], validation={"mode": "none"}), "dataset_id", "of dataset 'long' is about"),
        (
            _body(ids["same"], validation={"mode": "dataset", "dataset_id": ids["same"]}),
            "validation.dataset_id",
            "must differ",
        ),
        (
            _body(ids["same"], hyperparameters={"early_stopping": {}}, validation={"mode": "none"}),
            "hyperparameters.early_stopping",
            "",
        ),
    ]
    for body, field, words in cases:
        answer = ft.call("POST", "/v1/fine-tuned-models", body)
        assert answer.status == 400, (body, answer.body)
        assert field in [d.get("field") for d in answer.body["error"]["details"]], answer.body
        assert words in json.dumps(answer.body["error"]), answer.body
    assert _executions() == []


def test_rows_over_the_models_limit_are_named(ft: Api) -> None:
    # Rows 3 and 7 (data rows, 1-based) are far over Nova Micro's per-row limit; the others are short.
    rows = [("word " * 40_000 if i in {3, 7} else "My invoice is wrong", "billing") for i in range(1, 21)]
    data = ("prompt,completion\n" + "".join(f"{p} {i},{c}\n" for i, (p, c) in enumerate(rows, 1))).encode()
    dataset_id = ft.dataset("two-long-rows", data)

    answer = ft.call("POST", "/v1/fine-tuned-models", _body(dataset_id, validation={"mode": "none"}))

    assert answer.status == 400, answer.body
    named = [d for d in answer.body["error"]["details"] if d.get("row") is not None]
    assert [d["row"] for d in named] == [3, 7] or [d["row"] for d in named] == [7, 3]
    assert all(d["field"] == "dataset_id" for d in named)
    assert {d["message"].split(" is about")[0] for d in named} == {
        "Row 3 of dataset 'two-long-rows'",
        "Row 7 of dataset 'two-long-rows'",
    }
    assert ft.repo.models.find(WS, "support-bot-v1") is None


def test_a_validation_dataset_is_shown_with_the_model(ft: Api) -> None:
    train = ft.dataset()
    check = ft.dataset("validation-set", VALIDATION_CSV)

    answer = ft.call(
        "POST", "/v1/fine-tuned-models", _body(train, validation={"mode": "dataset", "dataset_id": check})
    )

    assert answer.status == 202, answer.body
    assert answer.body["validation"] == {
        "mode": "dataset",
        "percent": None,
        "dataset": {"id": check, "name": "validation-set", "rows": 40},
    }
    # both datasets are now in use
    assert ft.call("DELETE", f"/v1/datasets/{check}").error_code == "in_use"


def test_a_second_create_of_the_same_name_is_name_taken(ft: Api) -> None:
    dataset_id = ft.dataset()
    first = ft.call("POST", "/v1/fine-tuned-models", _body(dataset_id))
    second = ft.call("POST", "/v1/fine-tuned-models", _body(dataset_id, name="SUPPORT-BOT-V1"))

    assert first.status == 202
    assert second.status == 409
    assert second.error_code == "name_taken"
    assert len(_executions()) == 1


def test_concurrent_creates_of_one_name_start_one_model(ft: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # DynamoDB applies each transaction atomically; moto does not lock: give it the lock it lacks.
    original = DynamoDBBackend.transact_write_items
    lock = threading.Lock()

    def atomic(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        with lock:
            original(self, transact_items)

    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", atomic)
    dataset_id = ft.dataset()
    identity = Identity(sub="s", email="ada@example.com", workspace=WS)
    request = CreateFineTunedModelIn.model_validate(_body(dataset_id))
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def create() -> None:
        barrier.wait()
        try:
            fine_tuned_models.create(ft.services, identity, request, correlation_id="c")
            outcomes.append("created")
        except NameTaken:
            outcomes.append("name_taken")

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["created", "name_taken"]
    assert len(_executions()) == 1
    assert ft.call("GET", "/v1/fine-tuned-models/support-bot-v1").status == 200
    assert ft.repo.datasets.get(WS, dataset_id).model_refs == 1


def test_idempotency_key_on_create(ft: Api) -> None:
    dataset_id = ft.dataset()
    headers = {"Idempotency-Key": "create-1"}

    first = ft.call("POST", "/v1/fine-tuned-models", _body(dataset_id), headers=headers)
    again = ft.call("POST", "/v1/fine-tuned-models", _body(dataset_id), headers=headers)
    other = ft.call("POST", "/v1/fine-tuned-models", _body(dataset_id, name="other-bot"), headers=headers)

    assert first.status == again.status == 202
    assert again.body == first.body
    assert other.status == 409
    assert other.error_code == "idempotency_conflict"
    assert len(_executions()) == 1


def test_when_the_workflow_cannot_start_nothing_is_left(api: Api) -> None:
    # No state machine exists: StartExecution fails.
    dataset_id = api.dataset()

    answer = api.call("POST", "/v1/fine-tuned-models", _body(dataset_id))

    assert answer.status == 500
    assert "nothing was created" in answer.body["error"]["message"]
    assert api.call("GET", "/v1/fine-tuned-models/support-bot-v1").status == 404
    assert api.repo.datasets.get(WS, dataset_id).model_refs == 0
    _machines()
    assert api.call("POST", "/v1/fine-tuned-models", _body(dataset_id)).status == 202


def test_continuing_from_a_trained_model(doubles: tuple[Api, Double, Double]) -> None:
    ft, _, _ = doubles
    dataset_id = ft.dataset()
    ft.call("POST", "/v1/fine-tuned-models", _body(dataset_id, name="bot-v0"))
    body = _body(dataset_id, name="bot-v1", base_model_id=None, base_fine_tuned_model="bot-v0")

    still_training = ft.call("POST", "/v1/fine-tuned-models", body)
    ft.repo.models.transition(
        WS,
        "bot-v0",
        {ModelStatus.TRAINING},
        ModelStatus.NOT_DEPLOYED,
        ModelChanges(refs=ProviderRefs(model_ref="arn:aws:bedrock:us-east-1:123456789012:custom-model/x")),
    )
    continued = ft.call("POST", "/v1/fine-tuned-models", body)
    unknown = ft.call("POST", "/v1/fine-tuned-models", {**body, "base_fine_tuned_model": "nobody"})

    assert still_training.status == 400
    assert "Training" in still_training.body["error"]["message"]
    assert continued.status == 202, continued.body
    assert continued.body["base_fine_tuned_model"] == "bot-v0"
    assert continued.body["base_model"]["id"] == NOVA
    assert unknown.status == 400
    assert unknown.body["error"]["details"][0]["field"] == "base_fine_tuned_model"


# --- SageMaker (BYOK) checks -------------------------------------------------------------------------------


def _connect(api: Api, *, hf_secret: bool = False, status: str = "connected") -> None:
    now = datetime.now(UTC)
    api.repo.connections.put(
        ProviderConnectionRecord(
            workspace_id=WS,
            role_arn=f"arn:aws:iam::{CUSTOMER}:role/tunelab-connector",
            external_id="ext-1234567890",
            region=CUSTOMER_REGION,
            artifact_bucket=CUSTOMER_BUCKET,
            hf_token_secret_arn=f"arn:aws:secretsmanager:{CUSTOMER_REGION}:{CUSTOMER}:secret:hf-AbCdEf"
            if hf_secret
            else None,
            status=status,  # type: ignore[arg-type]
            message="The role cannot be assumed." if status == "error" else None,
            created_at=now,
            updated_at=now,
        )
    )
    # what the services made from an earlier connection must not outlive it
    api.services.providers.forget("sagemaker", WS)


def _sagemaker_body(dataset_id: str, **changes: Any) -> dict[str, Any]:
    resources = {"instance_type": "ml.g6e.2xlarge", "instance_count": 1, "volume_size_gb": 100}
    body = _body(dataset_id, base_model_id=QWEN, resources=resources, hyperparameters={"epochs": 1})
    body.update(changes)
    return body


def test_sagemaker_needs_a_byok_plan_and_a_verified_connection(ft: Api) -> None:
    dataset_id = ft.dataset()
    body = _sagemaker_body(dataset_id)
    trial_dataset = ft.dataset(workspace="ws-trial")

    trial = ft.call(
        "POST", "/v1/fine-tuned-models", _sagemaker_body(trial_dataset), workspace="ws-trial", plan="trial"
    )
    not_connected = ft.call("POST", "/v1/fine-tuned-models", body)
    _connect(ft, status="error")
    broken = ft.call("POST", "/v1/fine-tuned-models", body)

    assert trial.status == 403
    assert trial.error_code == "forbidden"
    assert "trial plan" in trial.body["error"]["message"]
    assert not_connected.status == 400
    assert "PUT /v1/providers/sagemaker" in not_connected.body["error"]["message"]
    assert broken.status == 400
    assert "cannot be assumed" in broken.body["error"]["message"]
    assert _executions() == []


def test_sagemaker_requests_are_checked_for_resources_and_gated_models(ft: Api) -> None:
    dataset_id = ft.dataset()
    _connect(ft)
    cases = [
        (_sagemaker_body(dataset_id, resources=None), "resources", "instance_type"),
        (
            _sagemaker_body(dataset_id, resources={"instance_type": "ml.t3.nano"}),
            "resources.instance_type",
            "not a SageMaker instance type",
        ),
        (
            _sagemaker_body(dataset_id, resources={"instance_type": "ml.g6e.2xlarge", "instance_count": 0}),
            "resources.instance_count",
            "",
        ),
        (
            _sagemaker_body(dataset_id, base_model_id="sagemaker.llama-3-2-1b-instruct"),
            "base_model_id",
            "gated",
        ),
        (
            _sagemaker_body(dataset_id, optional_hyperparameters={"use_lora": "sometimes"}),
            "optional_hyperparameters.use_lora",
            "",
        ),
    ]
    for body, field, words in cases:
        answer = ft.call("POST", "/v1/fine-tuned-models", body)
        assert answer.status == 400, (body, answer.body)
        assert field in [d.get("field") for d in answer.body["error"]["details"]], answer.body
        assert words in json.dumps(answer.body["error"])
    assert _executions() == []


def _customer_s3() -> Any:
    connection = SageMakerConnection(
        role_arn=f"arn:aws:iam::{CUSTOMER}:role/tunelab-connector",
        external_id="ext-1234567890",
        region=CUSTOMER_REGION,
        artifact_bucket=CUSTOMER_BUCKET,
    )
    return customer_session(connection, WS)


def test_a_job_of_the_models_bare_name_in_the_customer_account_is_left_alone(ft: Api) -> None:
    # Job names carry a digest of the model's record (workspace, name, creation time): a job named
    # after the bare model name (another tenant's, in a shared account) neither blocks the model nor
    # is taken for its job.
    dataset_id = ft.dataset()
    _connect(ft)
    session = _customer_s3()
    session.client("sagemaker", region_name=CUSTOMER_REGION).create_training_job(
        TrainingJobName="support-bot-v1",
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        RoleArn=f"arn:aws:iam::{CUSTOMER}:role/someone-elses",
        OutputDataConfig={"S3OutputPath": f"s3://{CUSTOMER_BUCKET}/other"},
        ResourceConfig={"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )

    free = ft.call("POST", "/v1/fine-tuned-models", _sagemaker_body(dataset_id))

    assert free.status == 202, free.body
    assert free.body["provider"] == "sagemaker"
    assert free.body["hosting"] == "byok"
    assert free.body["resources"] == {
        "instance_type": "ml.g6e.2xlarge",
        "instance_count": 1,
        "volume_size_gb": 100,
        # One GPU: the trainer runs as one process (the memory model's choice, shown to the user).
        "distribution": "single",
    }
    assert (
        free.body["optional_hyperparameters"]["model_init_config"]["attn_implementation"]
        == "flash_attention_2"
    )
    # Nothing asked: Qwen2.5 7B's default plan, LoRA merged (its full fine-tune needs ~85 GB on 48).
    optional = free.body["optional_hyperparameters"]
    assert (optional["use_lora"], optional["merge_adapters"], optional["lora_config"]["r"]) == (True, True, 8)
    assert free.body["cost"]["predicted"]["training"]["hours"] > 0
    assert len(_executions()) == 1


def test_a_job_one_gpu_cannot_hold_is_sharded_and_one_that_does_not_fit_at_all_warns(ft: Api) -> None:
    dataset_id = ft.dataset()
    _connect(ft)
    full = {"use_lora": False}
    # A full fine-tune of Qwen2.5 7B over 4 × 48 GB: one GPU cannot hold it, sharded it fits.
    sharded = ft.call(
        "POST",
        "/v1/fine-tuned-models",
        _sagemaker_body(
            dataset_id,
            name="sharded-qwen",
            optional_hyperparameters=full,
            resources={"instance_type": "ml.g6e.12xlarge", "instance_count": 1, "volume_size_gb": 200},
        ),
    )
    assert sharded.status == 202, sharded.body
    assert sharded.body["resources"]["distribution"] == "fsdp"
    assert sharded.body["optional_hyperparameters"]["use_lora"] is False
    # On one 48 GB GPU it needs more than the GPU has: the estimate says so, before anything starts.
    estimate = ft.call(
        "POST",
        "/v1/cost-estimates",
        _sagemaker_body(dataset_id, optional_hyperparameters=full),
    )
    assert estimate.status == 200, estimate.body
    assert any(
        "may run out of memory" in note and "full fine-tuning" in note for note in estimate.body["notes"]
    )


# --- resume -----------------------------------------------------------------------------------------------


def test_resume_answers_its_cost_then_starts_an_execution_of_its_own(
    doubles: tuple[Api, Double, Double],
) -> None:
    ft, bedrock, _ = doubles
    assert ft.call("POST", "/v1/fine-tuned-models", _body(ft.dataset())).status == 202
    again = ft.call("POST", "/v1/fine-tuned-models/support-bot-v1/resume", {"acknowledge": True})
    assert again.status == 409, again.body
    assert again.body["error"]["code"] == "invalid_state"
    ft.repo.models.transition(WS, "support-bot-v1", {ModelStatus.TRAINING}, ModelStatus.TRAINING_STOPPED)
    none = ft.call("POST", "/v1/fine-tuned-models/support-bot-v1/resume", {"acknowledge": True})
    assert none.status == 400, none.body
    assert "no checkpoint to resume from" in none.body["error"]["message"]
    bedrock.resume_points["support-bot-v1"] = ResumePoint(checkpoint="checkpoint-8", step=8, total_steps=32)

    quoted = ft.call("POST", "/v1/fine-tuned-models/support-bot-v1/resume", {})
    assert quoted.status == 200, quoted.body
    assert (quoted.body["checkpoint"], quoted.body["step"], quoted.body["total_steps"]) == (
        "checkpoint-8",
        8,
        32,
    )
    assert len(_executions()) == 1
    resumed = ft.call(
        "POST",
        "/v1/fine-tuned-models/support-bot-v1/resume",
        {"acknowledge": True, "quote_id": quoted.body["quote_id"]},
    )

    assert resumed.status == 202, resumed.body
    assert resumed.body["status"] == "training"
    assert resumed.body["training"]["attempt"] == 1
    record = ft.repo.models.get(WS, "support-bot-v1")
    names = sorted(e["name"] for e in _executions())
    assert names == sorted(
        [execution_name(record.name, record.uid), execution_name(record.name, record.uid, 1)]
    )
    assert record.training.execution_arn is not None
    assert record.training.execution_arn.endswith(execution_name(record.name, record.uid, 1))
    events = ft.call("GET", "/v1/fine-tuned-models/support-bot-v1/events").body["items"]
    assert [e["status"] for e in events if e["type"] == "status_changed"] == [
        "training",
        "training_stopped",
        "training",
    ]
    assert events[-1]["message"] == "Training resumed from checkpoint-8 by ada@example.com."


# --- lists ------------------------------------------------------------------------------------------------


def test_lists_filter_by_status_and_page(ft: Api) -> None:
    dataset_id = ft.dataset()
    for name in ("alpha", "bravo", "charlie"):
        assert ft.call("POST", "/v1/fine-tuned-models", _body(dataset_id, name=name)).status == 202
    ft.repo.models.transition(WS, "bravo", {ModelStatus.TRAINING}, ModelStatus.TRAINING_FAILED)

    first = ft.call("GET", "/v1/fine-tuned-models?limit=2").body
    rest = ft.call("GET", f"/v1/fine-tuned-models?limit=2&next_token={first['next_token']}").body
    failed = ft.call("GET", "/v1/fine-tuned-models?status=training_failed").body
    wrong = ft.call("GET", "/v1/fine-tuned-models?status=asleep")

    assert [m["name"] for m in first["items"]] == ["alpha", "bravo"]
    assert [m["name"] for m in rest["items"]] == ["charlie"]
    assert rest["next_token"] is None
    assert [m["name"] for m in failed["items"]] == ["bravo"]
    assert wrong.status == 400
    assert "training_failed" in wrong.body["error"]["message"]
    assert ft.call("GET", "/v1/fine-tuned-models", workspace=OTHER_WS).body["items"] == []


# --- actions ----------------------------------------------------------------------------------------------


def _trained(
    api: Api,
    name: str = "support-bot-v1",
    provider: str = "bedrock",
    *,
    artifacts: Artifacts | None = None,
    hf_secret: bool = False,
    **body_changes: Any,
) -> None:
    """A model through the API, then moved as its workflow would move it after training."""
    dataset_id = api.dataset(f"data-{name}")
    if provider == "sagemaker":
        _connect(api, hf_secret=hf_secret)
        body = _sagemaker_body(dataset_id, name=name, **body_changes)
    else:
        body = _body(dataset_id, name=name, **body_changes)
    created = api.call("POST", "/v1/fine-tuned-models", body)
    assert created.status == 202, created.body
    job = TrainingJobRef(provider=provider, job_id=f"{name}-job", job_name=f"{name}-job")  # type: ignore[arg-type]
    api.repo.models.update(WS, name, ModelChanges(refs=ProviderRefs(training_job=job)))
    artifacts = artifacts or Artifacts(
        uri=f"s3://{CUSTOMER_BUCKET}/tunelab/{WS}/{name}/output/model.tar.gz",
        size_bytes=4321,
        files=["model.safetensors", "config.json", "tokenizer.json"],
        merged=True,
    )
    api.repo.models.transition(
        WS, name, {ModelStatus.TRAINING}, ModelStatus.NOT_DEPLOYED, ModelChanges(artifacts=artifacts)
    )


def _deployed(api: Api, name: str = "support-bot-v1") -> None:
    ref = DeploymentRef(provider="bedrock", kind="custom_model_deployment", deployment_id=f"{name}-ep")
    model = api.repo.models.get(WS, name)
    api.repo.models.transition(
        WS,
        name,
        {ModelStatus.NOT_DEPLOYED},
        ModelStatus.DEPLOYING,
        ModelChanges(
            deployment=DeploymentState(endpoint=f"{name}-ep"),
            refs=model.refs.model_copy(update={"deployment": ref}),
        ),
    )
    api.repo.models.transition(WS, name, {ModelStatus.DEPLOYING}, ModelStatus.DEPLOYED)


def test_stop_asks_the_provider_and_a_second_stop_is_invalid_state(
    doubles: tuple[Api, Double, Double],
) -> None:
    ft, bedrock, _ = doubles
    _trained(ft, "done")
    dataset_id = ft.dataset()
    ft.call("POST", "/v1/fine-tuned-models", _body(dataset_id))
    job = TrainingJobRef(provider="bedrock", job_id="j", job_name="j")
    ft.repo.models.update(WS, "support-bot-v1", ModelChanges(refs=ProviderRefs(training_job=job)))

    stopped = ft.call("POST", "/v1/fine-tuned-models/support-bot-v1/stop")
    again = ft.call("POST", "/v1/fine-tuned-models/support-bot-v1/stop")
    finished = ft.call("POST", "/v1/fine-tuned-models/done/stop")

    assert stopped.status == 202
    assert stopped.body["status"] == "stopping_training"
    assert bedrock.called("stop_training") == [job]
    # the bus heard of it, with the request's correlation id
    [stopping] = [e for e in ft.published() if e["data"]["status"] == "stopping_training"]
    assert stopping["data"]["model_name"] == "support-bot-v1"
    assert stopping["correlation_id"] == stopped.request_id
    assert again.status == 409
    assert again.error_code == "invalid_state"
    assert "Stopping training" in again.body["error"]["message"]
    assert finished.status == 409
    assert "Not deployed" in finished.body["error"]["message"]


def test_deploy_starts_the_deployment_with_its_auto_undeploy(doubles: tuple[Api, Double, Double]) -> None:
    ft, _, _ = doubles
    _trained(ft)
    before = datetime.now(UTC)

    answer = ft.call(
        "POST", "/v1/fine-tuned-models/support-bot-v1/deploy", {"auto_undeploy": {"after_hours": 4}}
    )

    assert answer.status == 202, answer.body
    assert answer.body["status"] == "deploying"
    auto = datetime.fromisoformat(answer.body["deployment"]["auto_undeploy_at"].replace("Z", "+00:00"))
    # the whole minute the schedule fires at: never before the 4 hours, at most a minute after
    assert before + timedelta(hours=4) <= auto <= datetime.now(UTC) + timedelta(hours=4, minutes=1)
    assert auto.second == 0
    [execution] = _executions("deployment")
    started = _execution_input(execution["executionArn"])
    assert started["model_name"] == "support-bot-v1"
    assert started["auto_undeploy_at"] is not None
    assert ft.call("POST", "/v1/fine-tuned-models/support-bot-v1/deploy").error_code == "invalid_state"


@pytest.mark.parametrize(
    ("auto_undeploy", "field"),
    [
        ({"after_hours": 0}, "auto_undeploy.after_hours"),
        ({"after_hours": 0.05}, "auto_undeploy.after_hours"),
        ({"after_hours": 721}, "auto_undeploy.after_hours"),
        ({"at": "2020-01-01T00:00:00Z"}, "auto_undeploy.at"),
        ({"at": (datetime.now(UTC) + timedelta(days=31)).isoformat()}, "auto_undeploy.at"),
        ({"at": "tomorrow"}, "auto_undeploy.at"),
        ({"when": 3}, "auto_undeploy"),
    ],
)
def test_deploy_refuses_auto_undeploy_times_out_of_bounds(
    doubles: tuple[Api, Double, Double], auto_undeploy: dict[str, Any], field: str
) -> None:
    ft, _, _ = doubles
    _trained(ft)

    answer = ft.call("POST", "/v1/fine-tuned-models/support-bot-v1/deploy", {"auto_undeploy": auto_undeploy})

    assert answer.status == 400, answer.body
    assert any(d["field"].startswith(field) for d in answer.body["error"]["details"]), answer.body
    assert ft.repo.models.get(WS, "support-bot-v1").status == ModelStatus.NOT_DEPLOYED
    assert _executions("deployment") == []


def test_deploy_while_training_is_invalid_state_naming_it(ft: Api) -> None:
    dataset_id = ft.dataset()
    ft.call("POST", "/v1/fine-tuned-models", _body(dataset_id))

    answer = ft.call("POST", "/v1/fine-tuned-models/support-bot-v1/deploy", {"auto_undeploy": None})

    assert answer.status == 409
    assert answer.error_code == "invalid_state"
    assert "Training" in answer.body["error"]["message"]


def test_invoke_only_when_deployed_and_undeploy_stops_it(doubles: tuple[Api, Double, Double]) -> None:
    ft, bedrock, _ = doubles
    _trained(ft)
    prompt = {"prompt": "My invoice is wrong", "max_tokens": 8, "temperature": 0}

    too_early = ft.call("POST", "/v1/fine-tuned-models/support-bot-v1/invoke", prompt)
    _deployed(ft)
    answered = ft.call("POST", "/v1/fine-tuned-models/support-bot-v1/invoke", prompt)
    bad = ft.call("POST", "/v1/fine-tuned-models/support-bot-v1/invoke", {"prompt": ""})
    undeployed = ft.call("POST", "/v1/fine-tuned-models/support-bot-v1/undeploy")
    again = ft.call("POST", "/v1/fine-tuned-models/support-bot-v1/undeploy")

    assert too_early.status == 409
    assert "Not deployed" in too_early.body["error"]["message"]
    assert answered.status == 200, answered.body
    assert answered.body == {
        "completion": "billing",
        "usage": {"input_tokens": 12, "output_tokens": 1},
        "latency_ms": 41,
    }
    [(ref, params)] = bedrock.called("invoke")
    assert ref.deployment_id == "support-bot-v1-ep"
    assert (params.prompt, params.max_tokens, params.temperature) == ("My invoice is wrong", 8, 0)
    assert bad.status == 400
    assert undeployed.status == 202
    assert undeployed.body["status"] == "not_deployed"
    assert undeployed.body["deployment"] is None
    assert [r.deployment_id for r in bedrock.called("undeploy")] == ["support-bot-v1-ep"]
    # the bus heard of it, with the request's correlation id
    [after] = [e for e in ft.published() if e["data"]["previous_status"] == "deployed"]
    assert after["data"]["status"] == "not_deployed"
    assert after["correlation_id"] == undeployed.request_id
    assert again.status == 409
    assert "not deployed" in again.body["error"]["message"]
    [email] = emails()
    assert email.subject.startswith("[tunelab]")
    assert "undeployed" in email.body


def test_download_for_sagemaker_after_training_and_never_for_bedrock(
    doubles: tuple[Api, Double, Double],
) -> None:
    ft, _, sagemaker = doubles
    _trained(ft, "bedrock-bot")
    _trained(ft, "byok-bot", provider="sagemaker")
    dataset_id = ft.dataset()
    _connect(ft)
    ft.call("POST", "/v1/fine-tuned-models", _sagemaker_body(dataset_id, name="still-training"))

    byok = ft.call("GET", "/v1/fine-tuned-models/byok-bot/download")
    managed = ft.call("GET", "/v1/fine-tuned-models/bedrock-bot/download")
    early = ft.call("GET", "/v1/fine-tuned-models/still-training/download")

    assert byok.status == 200, byok.body
    contents = byok.body.pop("contents")
    assert byok.body == {
        "url": f"https://example.com/{CUSTOMER_BUCKET}/tunelab/{WS}/byok-bot/output/model.tar.gz?signed",
        "expires_at": "2026-11-28T12:15:00Z",
        "size_bytes": 4321,
        "files": ["model.safetensors", "config.json", "tokenizer.json"],
        "variant": "merged",
        "model_path": "",
    }
    assert contents.startswith("The full model at the archive's root: weights (safetensors), config.json")
    assert sagemaker.called("download") == [
        f"s3://{CUSTOMER_BUCKET}/tunelab/{WS}/byok-bot/output/model.tar.gz"
    ]
    assert managed.status == 400
    assert "Bedrock" in managed.body["error"]["message"]
    assert early.status == 409
    assert early.error_code == "invalid_state"


def _output(name: str, archive: str) -> str:
    return f"s3://{CUSTOMER_BUCKET}/tunelab/{WS}/{name}/output/{name}-job/output/{archive}"


def test_download_variants_say_what_each_archive_holds_and_refuse_what_a_model_lacks(
    doubles: tuple[Api, Double, Double],
) -> None:
    ft, _, sagemaker = doubles
    adapter_files = [
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "adapter_config.json",
    ]
    merged_files = ["merged/config.json", "merged/model.safetensors", "metrics.json"]
    lora = {"use_lora": True, "merge_adapters": False}
    # An unmerged LoRA model with the merged copy its job wrote, and one trained before such copies
    _trained(
        ft,
        "lora-bot",
        provider="sagemaker",
        artifacts=Artifacts(
            uri=_output("lora-bot", "model.tar.gz"),
            files=adapter_files,
            merged_archive=MergedArchive(
                uri=_output("lora-bot", "output.tar.gz"), size_bytes=9_000_000, files=merged_files
            ),
        ),
        optional_hyperparameters=lora,
    )
    _trained(
        ft,
        "old-lora",
        provider="sagemaker",
        artifacts=Artifacts(uri=_output("old-lora", "model.tar.gz"), files=adapter_files),
        optional_hyperparameters=lora,
    )
    # A full fine-tune (of a model small enough for one; gated, hence the token's secret)
    _trained(
        ft,
        "full-bot",
        provider="sagemaker",
        hf_secret=True,
        base_model_id="sagemaker.llama-3-2-1b-instruct",
        resources={"instance_type": "ml.g6e.xlarge", "instance_count": 1, "volume_size_gb": 100},
        optional_hyperparameters={"use_lora": False},
    )

    merged = ft.call("GET", "/v1/fine-tuned-models/lora-bot/download")
    adapter = ft.call("GET", "/v1/fine-tuned-models/lora-bot/download?variant=adapter")
    unknown = ft.call("GET", "/v1/fine-tuned-models/lora-bot/download?variant=weights")
    old = ft.call("GET", "/v1/fine-tuned-models/old-lora/download?variant=merged")
    old_adapter = ft.call("GET", "/v1/fine-tuned-models/old-lora/download?variant=adapter")
    old_plain = ft.call("GET", "/v1/fine-tuned-models/old-lora/download")
    full = ft.call("GET", "/v1/fine-tuned-models/full-bot/download?variant=merged")
    full_adapter = ft.call("GET", "/v1/fine-tuned-models/full-bot/download?variant=adapter")

    # The default is the merged copy: its own archive, the model under merged/
    assert merged.status == 200, merged.body
    assert merged.body["url"].startswith(f"https://example.com/{CUSTOMER_BUCKET}/")
    assert merged.body["url"].split("?")[0].endswith("/lora-bot-job/output/output.tar.gz")
    assert (merged.body["variant"], merged.body["model_path"]) == ("merged", "merged/")
    assert merged.body["files"] == merged_files
    assert "merged/" in merged.body["contents"]
    # variant=adapter is the adapter's model.tar.gz
    assert adapter.status == 200, adapter.body
    assert adapter.body["url"].split("?")[0].endswith("/lora-bot-job/output/model.tar.gz")
    assert (adapter.body["variant"], adapter.body["model_path"]) == ("adapter", "adapter/")
    assert adapter.body["files"] == adapter_files
    assert sagemaker.called("download") == [
        _output("lora-bot", "output.tar.gz"),
        _output("lora-bot", "model.tar.gz"),
        _output("old-lora", "model.tar.gz"),
        _output("old-lora", "model.tar.gz"),
        f"s3://{CUSTOMER_BUCKET}/tunelab/{WS}/full-bot/output/model.tar.gz",
    ]
    # An unknown variant, and an adapter of a model that has none: 400 naming the field
    assert unknown.status == 400
    assert unknown.error_code == "validation_error"
    assert unknown.body["error"]["details"][0]["field"] == "variant"
    assert "merged" in unknown.body["error"]["message"]
    assert "adapter" in unknown.body["error"]["message"]
    assert full.status == 200, full.body
    assert full.body["model_path"] == ""
    assert full_adapter.status == 400
    assert full_adapter.error_code == "validation_error"
    assert full_adapter.body["error"]["details"] == [
        {"field": "variant", "message": full_adapter.body["error"]["message"]}
    ]
    assert "fully fine-tuned" in full_adapter.body["error"]["message"]
    # A model from before merged copies: the merged variant is not there (409), the adapter is
    assert old.status == 409
    assert old.error_code == "invalid_state"
    assert "variant=adapter" in old.body["error"]["message"]
    assert old_adapter.status == 200, old_adapter.body
    # ... and a download that names no variant gets that adapter, as before merged copies existed.
    assert (old_plain.status, old_plain.body["variant"]) == (200, "adapter")
    # The model's details say what it can be downloaded as
    shown = {
        n: ft.call("GET", f"/v1/fine-tuned-models/{n}").body for n in ("lora-bot", "old-lora", "full-bot")
    }
    assert shown["lora-bot"]["artifacts"]["download_variants"] == ["merged", "adapter"]
    assert shown["lora-bot"]["artifacts"]["merged_archive"] == {
        "path": "merged/",
        "size_bytes": 9_000_000,
        "files": merged_files,
    }
    assert shown["old-lora"]["artifacts"]["download_variants"] == ["adapter"]
    assert shown["old-lora"]["artifacts"]["merged_archive"] is None
    assert shown["full-bot"]["artifacts"]["download_variants"] == ["merged"]


def test_an_unmerged_lora_model_without_its_merged_copy_is_not_deployed(
    doubles: tuple[Api, Double, Double],
) -> None:
    ft, _, sagemaker = doubles
    _trained(
        ft,
        "old-lora",
        provider="sagemaker",
        artifacts=Artifacts(uri=_output("old-lora", "model.tar.gz"), files=["adapter_config.json"]),
        optional_hyperparameters={"use_lora": True, "merge_adapters": False},
    )

    refused = ft.call("POST", "/v1/fine-tuned-models/old-lora/deploy", {"auto_undeploy": None})

    assert refused.status == 409
    assert refused.error_code == "invalid_state"
    assert "cannot be deployed" in refused.body["error"]["message"]
    assert ft.call("GET", "/v1/fine-tuned-models/old-lora").body["status"] == "not_deployed"
    assert sagemaker.called("deploy") == []


def test_delete_needs_acknowledgement_and_a_resting_status(doubles: tuple[Api, Double, Double]) -> None:
    ft, bedrock, _ = doubles
    _trained(ft)
    dataset_id = ft.dataset()
    ft.call("POST", "/v1/fine-tuned-models", _body(dataset_id, name="busy"))

    unacknowledged = ft.call("DELETE", "/v1/fine-tuned-models/support-bot-v1")
    training = ft.call("DELETE", "/v1/fine-tuned-models/busy?acknowledge=true")
    deleted = ft.call("DELETE", "/v1/fine-tuned-models/support-bot-v1?acknowledge=true")

    assert unacknowledged.status == 400
    assert unacknowledged.body["error"]["details"][0]["field"] == "acknowledge"
    assert training.status == 409
    assert "stop the training first" in training.body["error"]["message"]
    assert deleted.status == 204
    assert ft.call("GET", "/v1/fine-tuned-models/support-bot-v1").status == 404
    assert ft.call("GET", "/v1/fine-tuned-models/support-bot-v1/events").status == 404
    [trained] = bedrock.called("delete_model")
    assert trained.identity.model_name == "support-bot-v1"
    # the bus heard of it, with the request's correlation id
    [gone] = ft.published(MODEL_DELETED)
    assert (gone["data"]["model_name"], gone["data"]["deleted_by"]) == ("support-bot-v1", "ada@example.com")
    assert gone["correlation_id"] == deleted.request_id
    # its dataset is free again
    assert ft.call("DELETE", f"/v1/datasets/{ft.repo.datasets.list(WS).items[0].dataset_id}").status == 204


def test_events_are_oldest_first_and_paged(doubles: tuple[Api, Double, Double]) -> None:
    ft, _, _ = doubles
    _trained(ft)
    _deployed(ft)

    first = ft.call("GET", "/v1/fine-tuned-models/support-bot-v1/events?limit=2").body
    rest = ft.call(
        "GET", f"/v1/fine-tuned-models/support-bot-v1/events?next_token={first['next_token']}"
    ).body

    statuses = [e["status"] for e in first["items"] + rest["items"]]
    assert statuses == ["training", "not_deployed", "deploying", "deployed"]
    assert rest["next_token"] is None


def test_another_workspace_gets_404_on_every_model_route(doubles: tuple[Api, Double, Double]) -> None:
    ft, bedrock, _ = doubles
    _trained(ft)
    _deployed(ft)
    asked = list(bedrock.calls)  # creating the model asked the provider to check the new job
    base = "/v1/fine-tuned-models/support-bot-v1"
    requests_: list[tuple[str, str, Any]] = [
        ("GET", base, None),
        ("GET", f"{base}/events", None),
        ("POST", f"{base}/stop", None),
        ("POST", f"{base}/deploy", {}),
        ("POST", f"{base}/undeploy", None),
        ("POST", f"{base}/invoke", {"prompt": "hi"}),
        ("GET", f"{base}/download", None),
        ("DELETE", f"{base}?acknowledge=true", None),
    ]
    for method, path, body in requests_:
        answer = ft.call(method, path, body, workspace=OTHER_WS)
        assert answer.status == 404, (method, path, answer.body)
        assert answer.error_code == "not_found"
    # and nothing happened to the owner's model
    assert ft.repo.models.get(WS, "support-bot-v1").status == ModelStatus.DEPLOYED
    assert bedrock.calls == asked
    # a dataset of another workspace cannot be used either
    foreign = ft.dataset("theirs", workspace=OTHER_WS)
    answer = ft.call("POST", "/v1/fine-tuned-models", _body(foreign, name="thief"))
    assert answer.status == 400
    assert "There is no dataset" in answer.body["error"]["message"]


def test_a_name_that_breaks_the_rules_is_404_in_paths(ft: Api) -> None:
    assert ft.call("GET", "/v1/fine-tuned-models/not_a_name").status == 404
    assert ft.call("GET", "/v1/fine-tuned-models/unknown-model").status == 404


def test_the_openapi_document_has_every_route_with_its_models(api: Api) -> None:
    document = api.call("GET", "/v1/openapi.json").body
    paths = document["paths"]
    expected = {
        "/v1/datasets": {"get", "post"},
        "/v1/datasets/{dataset_id}": {"get", "delete"},
        "/v1/fine-tuned-models": {"get", "post"},
        "/v1/fine-tuned-models/{name}": {"get", "delete"},
        "/v1/fine-tuned-models/{name}/events": {"get"},
        "/v1/fine-tuned-models/{name}/stop": {"post"},
        "/v1/fine-tuned-models/{name}/deploy": {"post"},
        "/v1/fine-tuned-models/{name}/undeploy": {"post"},
        "/v1/fine-tuned-models/{name}/invoke": {"post"},
        "/v1/fine-tuned-models/{name}/download": {"get"},
        "/v1/cost-estimates": {"post"},
        "/v1/providers/sagemaker": {"put", "delete"},
        "/v1/providers/sagemaker/connector": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    create = paths["/v1/fine-tuned-models"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "CreateFineTunedModelIn"
    )
    assert create["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "FineTunedModelOut"
    )
    assert {"400", "403", "409"} <= set(create["responses"])
    upload = paths["/v1/datasets"]["post"]["requestBody"]["content"]
    assert set(upload) == {"text/csv", "application/json"}
    assert "content" not in paths["/v1/datasets/{dataset_id}"]["delete"]["responses"]["204"]
    schemas = document["components"]["schemas"]
    for model in (
        "DatasetOut",
        "CreateDatasetOut",
        "CostEstimate",
        "ModelEventOut",
        "DownloadOut",
        "InvokeOut",
    ):
        assert model in schemas, model


# --- quotes and clones ----------------------------------------------------------------------------


def test_the_estimate_answers_the_plan_and_a_quote_that_starts_exactly_it(ft: Api) -> None:
    dataset_id = ft.dataset()
    body = {
        "base_model_id": NOVA,
        "dataset_id": dataset_id,
        "validation": {"mode": "split", "percent": 10},
        "hyperparameters": {"epochs": 2},
    }

    answer = ft.call("POST", "/v1/cost-estimates", body)

    assert answer.status == 200, answer.body
    estimate = answer.body
    plan = estimate["plan"]
    assert (plan["base_model_id"], plan["provider"], plan["training_region"]) == (
        NOVA,
        "bedrock",
        "us-east-1",
    )
    assert plan["dataset"]["id"] == dataset_id
    assert plan["validation"] == {"mode": "split", "percent": 10, "dataset": None}
    assert plan["hyperparameters"]["epochs"] == 2
    assert plan["hyperparameters"]["learning_rate"] > 0  # the model's default, filled in
    assert estimate["runnable"] is True
    assert estimate["quote_id"].startswith("q1.")
    assert estimate["quote_expires_at"] > datetime.now(UTC).isoformat()

    # Started with another plan than the one quoted: refused, nothing started.
    changed = {**body, "hyperparameters": {"epochs": 3}, "name": "support-bot-v1", "acknowledge": True}
    refused = ft.call("POST", "/v1/fine-tuned-models", {**changed, "quote_id": estimate["quote_id"]})
    assert refused.status == 400
    assert refused.body["error"]["details"][0]["field"] == "quote_id"
    assert ft.call("GET", "/v1/fine-tuned-models/support-bot-v1").status == 404
    over = ft.call("POST", "/v1/fine-tuned-models", {**changed, "max_total_usd": 0.0})
    assert over.status == 400
    assert over.body["error"]["details"][0]["field"] == "max_total_usd"
    # The very plan quoted starts.
    started = ft.call(
        "POST",
        "/v1/fine-tuned-models",
        {**body, "name": "support-bot-v1", "acknowledge": True, "quote_id": estimate["quote_id"]},
    )
    assert started.status == 202, started.body
    assert started.body["cost"]["predicted"]["total_usd"] == estimate["total_usd"]


def test_clone_answers_its_estimate_then_starts_with_the_sources_request(ft: Api) -> None:
    dataset_id = ft.dataset()
    source = {
        "name": "support-bot-v1",
        "base_model_id": NOVA,
        "dataset_id": dataset_id,
        "validation": {"mode": "split", "percent": 10},
        "hyperparameters": {"epochs": 2},
        "acknowledge": True,
    }
    assert ft.call("POST", "/v1/fine-tuned-models", source).status == 202

    estimate = ft.call("POST", "/v1/fine-tuned-models/support-bot-v1/clone", {"name": "support-bot-v2"})
    assert estimate.status == 200, estimate.body
    assert estimate.body["plan"]["hyperparameters"]["epochs"] == 2
    assert ft.call("GET", "/v1/fine-tuned-models/support-bot-v2").status == 404

    started = ft.call(
        "POST",
        "/v1/fine-tuned-models/support-bot-v1/clone",
        {"name": "support-bot-v2", "acknowledge": True, "quote_id": estimate.body["quote_id"]},
    )
    assert started.status == 202, started.body
    clone = started.body
    assert (clone["name"], clone["status"], clone["base_model"]["id"]) == ("support-bot-v2", "training", NOVA)
    assert clone["validation"]["percent"] == 10
    assert clone["hyperparameters"]["epochs"] == 2
    taken = ft.call(
        "POST", "/v1/fine-tuned-models/support-bot-v1/clone", {"name": "support-bot-v2", "acknowledge": True}
    )
    assert taken.status == 409
    missing = ft.call("POST", "/v1/fine-tuned-models/nobody/clone", {"name": "support-bot-v3"})
    assert missing.status == 404
