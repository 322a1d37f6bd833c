"""A SageMaker (BYOK) model's whole life through the API, with the state machines executing in moto and
the job's end arriving as the AWS documentation's "SageMaker Training Job State Change" sample:
connect (verified through the role) → create → training job in the customer's account → "Completed" →
not deployed → download → deploy → deployed → invoke → undeploy → delete.

moto plays the customer's account too (the role is assumed through moto's STS). Its endpoint
configurations refuse GPU instance types, so the provider used here is the real `SageMakerProvider`
deploying on `ml.m5.xlarge` instead of the model's GPU type; the sandbox's answer is queued in moto's
SageMaker runtime the way its documentation describes.
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import pytest
import requests
from botocore.stub import Stubber
from moto.sagemakerruntime.models import sagemakerruntime_backends

import functions.provider_events as provider_events
from tests.integration.api_support import GOOD_CSV, sagemaker_config
from tests.integration.apigw import ApiResponse, api_event, call, claims_for
from tests.integration.conftest import ACCOUNT, REGION
from tests.integration.handler_support import CONTEXT, event, sqs_batch
from tests.integration.workflow_fixtures import Stack, stack_fixture  # noqa: F401  # the `stack` fixture
from tunelab.adapters.providers.sagemaker import SageMakerProvider
from tunelab.application.workspaces import set_plan
from tunelab.domain.catalog import load_catalog
from tunelab.domain.events import MODEL_DELETED, MODEL_STATUS_CHANGED
from tunelab.domain.providers import DeploymentRef, DeployRequest

pytestmark = pytest.mark.moto

WS = "ws-acme"
NAME = "byok-bot-v1"
BASE = f"/v1/fine-tuned-models/{NAME}"
CUSTOMER_BUCKET = "acme-ml-artifacts"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/tunelab-connector"


class CpuEndpoints(SageMakerProvider):
    """The real SageMaker provider, deploying on a CPU instance type (moto refuses GPU ones)."""

    requested_instance_type: str | None = None

    def deploy(self, request: DeployRequest) -> DeploymentRef:
        self.requested_instance_type = (
            request.instance_type or request.base_model.deployment.default_instance_type
        )
        return super().deploy(request.model_copy(update={"instance_type": "ml.m5.xlarge"}))


def _call(method: str, path: str, body: Any = None, **kwargs: Any) -> ApiResponse:
    return call(api_event(method, path, body, claims=claims_for(WS), **kwargs))


def _archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def sagemaker(stack: Stack) -> CpuEndpoints:
    """The workspace (on a plan with BYOK, as its operator set it) connected through the API (verified
    for real), and its provider."""
    set_plan(stack.repo.workspaces, WS, "subscription", default_plan="pay_as_you_go")
    stack.services.s3.create_bucket(Bucket=CUSTOMER_BUCKET)
    connected = _call(
        "PUT",
        "/v1/providers/sagemaker",
        {"role_arn": ROLE, "region": REGION, "artifact_bucket": CUSTOMER_BUCKET},
    )
    assert connected.status == 200, connected.body
    assert connected.body["status"] == "connected"
    config = sagemaker_config(stack.services.sagemaker_connection(WS), WS)
    provider = CpuEndpoints(config, session=stack.services.session)
    stack.services.providers.set("sagemaker", provider)
    return provider


def _job_event(stack: Stack, status: str, name: str = NAME, **detail: Any) -> None:
    job = stack.repo.models.get(WS, name).refs.training_job
    assert job is not None
    sample = event(
        "sagemaker_training_job_state_change",
        TrainingJobName=job.job_name,
        TrainingJobArn=job.job_id,
        TrainingJobStatus=status,
        SecondaryStatus=status,
        **detail,
    )
    sample["account"] = ACCOUNT
    sample["region"] = REGION
    answer = provider_events.handler(sqs_batch(sample), CONTEXT)
    assert answer == {"batchItemFailures": []}


def test_the_whole_life_of_a_sagemaker_model(stack: Stack, sagemaker: CpuEndpoints) -> None:
    dataset = _call("POST", "/v1/datasets?name=tickets", raw_body=GOOD_CSV.decode(), content_type="text/csv")
    created = _call(
        "POST",
        "/v1/fine-tuned-models",
        {
            "name": NAME,
            "base_model_id": "sagemaker.qwen2-5-7b-instruct",
            "dataset_id": dataset.body["id"],
            "validation": {"mode": "split", "percent": 20},
            "resources": {"instance_type": "ml.g6e.2xlarge", "instance_count": 1, "volume_size_gb": 100},
            "hyperparameters": {"epochs": 2, "batch_size": 4},
            "optional_hyperparameters": {"use_lora": True, "merge_adapters": True},
            "acknowledge": True,
        },
    )
    assert created.status == 202, created.body
    assert created.body["cost"]["predicted"]["training"]["hours"] > 0

    # The job runs in the customer's account, on the instance chosen, with the resolved hyperparameters
    stack.wait_for_token(stack.repo.models.get(WS, NAME))
    stack.wait_for(lambda: stack.repo.models.get(WS, NAME).training.job_id, what="the job's id")
    job_ref = stack.repo.models.get(WS, NAME).refs.training_job
    assert job_ref is not None
    assert job_ref.job_name.startswith(f"{NAME}-")
    job_name = job_ref.job_name  # unique across workspaces
    job = stack.services.client("sagemaker").describe_training_job(TrainingJobName=job_name)
    assert job["ResourceConfig"]["InstanceType"] == "ml.g6e.2xlarge"
    assert job["HyperParameters"]["epochs"] == "2"
    assert job["HyperParameters"]["use_lora"] == "true"

    # The job wrote its archive; SageMaker announces the end
    archive = _archive(
        {
            "config.json": b"{}",
            "model.safetensors": b"\0" * 2048,
            "adapter/adapter_model.safetensors": b"\0" * 256,
            "tokenizer.json": b"{}",
        }
    )
    key = f"tunelab/{WS}/{NAME}/output/{job_name}/output/model.tar.gz"
    stack.services.s3.put_object(Bucket=CUSTOMER_BUCKET, Key=key, Body=archive)
    _job_event(
        stack,
        "Completed",
        ModelArtifacts={"S3ModelArtifacts": f"s3://{CUSTOMER_BUCKET}/{key}"},
        FinalMetricDataList=[{"MetricName": "train_loss", "Value": 0.9, "Timestamp": "1583831889050"}],
        BillableTimeInSeconds=1800,
    )
    execution = stack.repo.models.get(WS, NAME).training.execution_arn
    assert execution is not None
    assert created.body["training"]["execution_arn"] == execution.replace(ACCOUNT, "************")
    stack.wait_execution(execution)
    trained = _call("GET", BASE).body
    assert trained["status"] == "not_deployed", trained
    assert trained["artifacts"]["files"] == sorted(
        ["config.json", "model.safetensors", "adapter/adapter_model.safetensors", "tokenizer.json"]
    )
    assert trained["artifacts"]["size_bytes"] == len(archive)
    # What it cost: the event's billable half hour at the instance's price (its NVMe needs no volume)
    actual = trained["cost"]["actual"]
    price = load_catalog().find_instance("ml.g6e.2xlarge")
    assert price is not None
    assert (actual["basis"], actual["billable_seconds"], actual["estimated"]) == (
        "billable_seconds",
        1800,
        False,
    )
    assert actual["cost_usd"] == round(0.5 * price.price_per_hour_usd, 2)
    assert actual["predicted_usd"] == created.body["cost"]["predicted"]["training"]["cost_usd"]
    assert actual["actual_vs_predicted"] == round(actual["cost_usd"] / actual["predicted_usd"], 2)

    # Download: a short-lived link that serves the archive
    link = _call("GET", f"{BASE}/download")
    assert link.status == 200, link.body
    assert link.body["size_bytes"] == len(archive)
    assert link.body["files"] == trained["artifacts"]["files"]
    assert requests.get(link.body["url"], timeout=10).content == archive

    # Deploy: a real endpoint in the customer's account (moto's), then in service
    deploying = _call("POST", f"{BASE}/deploy", {"auto_undeploy": None})
    assert deploying.status == 202, deploying.body
    executions = stack.sfn.list_executions(stateMachineArn=stack.deployment_arn)["executions"]
    stack.wait_execution(executions[0]["executionArn"])
    deployed = _call("GET", BASE).body
    assert deployed["status"] == "deployed", deployed
    endpoint = deployed["deployment"]["endpoint"]
    assert deployed["deployment"]["auto_undeploy_at"] is None
    # the model's own serving instance type was asked for (moto serves it on a CPU type)
    spec = load_catalog().model("sagemaker.qwen2-5-7b-instruct")
    assert sagemaker.requested_instance_type == spec.deployment.default_instance_type
    # The instance chosen at deploy is shown with the deployment, and priced at its hourly price × count.
    assert deployed["deployment"]["instance_type"] == spec.deployment.default_instance_type
    assert deployed["deployment"]["instance_count"] == 1
    described = stack.services.client("sagemaker").describe_endpoint(EndpointName=endpoint)
    assert described["EndpointStatus"] == "InService"

    # The sandbox: TGI's answer, queued in moto's runtime
    answer = [{"generated_text": "billing", "details": {"generated_tokens": 1, "prefill": [{}, {}, {}]}}]
    sagemakerruntime_backends[ACCOUNT][REGION].results_queue.append(
        (json.dumps(answer), "application/json", "AllTraffic", "")
    )
    invoked = _call("POST", f"{BASE}/invoke", {"prompt": "My invoice is wrong", "temperature": 0})
    assert invoked.status == 200, invoked.body
    assert invoked.body["completion"] == "billing"
    assert invoked.body["usage"] == {"input_tokens": 3, "output_tokens": 1}

    # While deployed, the connection cannot go and the model cannot be deleted
    assert _call("DELETE", "/v1/providers/sagemaker").error_code == "in_use"
    assert _call("DELETE", f"{BASE}?acknowledge=true").error_code == "invalid_state"

    # Undeploy removes the endpoint
    undeployed = _call("POST", f"{BASE}/undeploy")
    assert undeployed.status == 202
    assert undeployed.body["status"] == "not_deployed"
    endpoints = stack.services.client("sagemaker").list_endpoints()["Endpoints"]
    assert endpoint not in [e["EndpointName"] for e in endpoints]

    # Delete removes the job's output in the customer's bucket, the job (moto lacks DeleteTrainingJob:
    # Stubber answers it, checking the request) and the record
    stub = Stubber(sagemaker.sagemaker)
    stub.add_response("delete_training_job", {}, {"TrainingJobName": job_name})
    with stub:
        deleted = _call("DELETE", f"{BASE}?acknowledge=true")
    assert deleted.status == 204
    stub.assert_no_pending_responses()
    assert _call("GET", BASE).status == 404
    left = stack.services.s3.list_objects_v2(Bucket=CUSTOMER_BUCKET, Prefix=f"tunelab/{WS}/{NAME}/output/")
    assert left.get("KeyCount", 0) == 0
    assert stack.repo.models.find(WS, NAME) is None
    emails = [e.subject for e in stack.emails()]
    assert any("deployed" in s.lower() for s in emails), emails
    assert any("undeployed" in s.lower() for s in emails), emails
    # what the undeploy and delete requests caused carries their correlation ids
    bus = _bus(stack)
    [after_undeploy] = [e for e in bus[MODEL_STATUS_CHANGED] if e["data"]["previous_status"] == "deployed"]
    assert after_undeploy["data"]["status"] == "not_deployed"
    assert after_undeploy["correlation_id"] == undeployed.request_id
    [gone] = bus[MODEL_DELETED]
    assert gone["data"]["model_name"] == NAME
    assert gone["correlation_id"] == deleted.request_id


def test_an_unmerged_lora_model_is_served_and_downloaded_from_its_merged_copy(
    stack: Stack, sagemaker: CpuEndpoints
) -> None:
    name = "byok-lora-v1"
    base = f"/v1/fine-tuned-models/{name}"
    dataset = _call("POST", "/v1/datasets?name=tickets", raw_body=GOOD_CSV.decode(), content_type="text/csv")
    created = _call(
        "POST",
        "/v1/fine-tuned-models",
        {
            "name": name,
            "base_model_id": "sagemaker.qwen2-5-7b-instruct",
            "dataset_id": dataset.body["id"],
            "validation": {"mode": "none"},
            "resources": {"instance_type": "ml.g6e.2xlarge", "instance_count": 1, "volume_size_gb": 100},
            "hyperparameters": {"epochs": 1},
            "optional_hyperparameters": {"use_lora": True, "merge_adapters": False},
            "acknowledge": True,
        },
    )
    assert created.status == 202, created.body
    stack.wait_for_token(stack.repo.models.get(WS, name))
    stack.wait_for(lambda: stack.repo.models.get(WS, name).training.job_id, what="the job's id")
    job_ref = stack.repo.models.get(WS, name).refs.training_job
    assert job_ref is not None
    job = stack.services.client("sagemaker").describe_training_job(TrainingJobName=job_ref.job_name)
    assert job["HyperParameters"]["merge_adapters"] == "false"

    # The job leaves the adapter in model.tar.gz and, SageMaker uploading its output data folder, the
    # trainer's merged copy in output.tar.gz next to it (under the job's S3OutputPath)
    output_path = job["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    folder = f"{output_path}/{job_ref.job_name}/output".removeprefix(f"s3://{CUSTOMER_BUCKET}/")
    summary = {
        "status": "completed",
        "artifacts": {"merged": False, "adapter": "adapter", "merged_variant": "merged/"},
    }
    adapter = _archive(
        {
            "adapter_config.json": b"{}",
            "adapter_model.safetensors": b"\0" * 256,
            "adapter/adapter_config.json": b"{}",
            "adapter/adapter_model.safetensors": b"\0" * 256,
            "tokenizer.json": b"{}",
            "tunelab-training.json": json.dumps(summary).encode(),
        }
    )
    merged = _archive(
        {
            "metrics.json": b"{}",
            "merged/config.json": b"{}",
            "merged/generation_config.json": b"{}",
            "merged/model.safetensors": b"\0" * 4096,
            "merged/tokenizer.json": b"{}",
        }
    )
    stack.services.s3.put_object(Bucket=CUSTOMER_BUCKET, Key=f"{folder}/model.tar.gz", Body=adapter)
    stack.services.s3.put_object(Bucket=CUSTOMER_BUCKET, Key=f"{folder}/output.tar.gz", Body=merged)
    _job_event(
        stack,
        "Completed",
        name,
        ModelArtifacts={"S3ModelArtifacts": f"s3://{CUSTOMER_BUCKET}/{folder}/model.tar.gz"},
    )
    execution = stack.repo.models.get(WS, name).training.execution_arn
    assert execution is not None
    stack.wait_execution(execution)

    # The model shows both archives
    trained = _call("GET", base).body
    assert trained["status"] == "not_deployed", trained
    assert trained["artifacts"]["merged"] is False
    assert trained["artifacts"]["merged_archive"]["path"] == "merged/"
    assert trained["artifacts"]["merged_archive"]["size_bytes"] == len(merged)
    assert "merged/config.json" in trained["artifacts"]["merged_archive"]["files"]
    assert trained["artifacts"]["download_variants"] == ["merged", "adapter"]

    # Download: by default the merged copy, a model with its configuration under merged/
    link = _call("GET", f"{base}/download")
    assert link.status == 200, link.body
    assert (link.body["variant"], link.body["model_path"]) == ("merged", "merged/")
    assert link.body["size_bytes"] == len(merged)
    fetched = requests.get(link.body["url"], timeout=10).content
    assert fetched == merged
    with tarfile.open(fileobj=io.BytesIO(fetched)) as archive:
        assert {"merged/config.json", "merged/model.safetensors"} <= set(archive.getnames())
    # ... and the adapter's archive with variant=adapter
    adapter_link = _call("GET", f"{base}/download?variant=adapter")
    assert adapter_link.status == 200, adapter_link.body
    assert adapter_link.body["model_path"] == "adapter/"
    assert requests.get(adapter_link.body["url"], timeout=10).content == adapter

    # Deploy: the endpoint's model is the merged copy, TGI pointed at its folder
    deploying = _call("POST", f"{base}/deploy", {"auto_undeploy": None})
    assert deploying.status == 202, deploying.body
    [running] = stack.sfn.list_executions(stateMachineArn=stack.deployment_arn)["executions"]
    stack.wait_execution(running["executionArn"])
    deployed = _call("GET", base).body
    assert deployed["status"] == "deployed", deployed
    model = stack.services.client("sagemaker").describe_model(ModelName=deployed["deployment"]["endpoint"])
    container = model["PrimaryContainer"]
    assert container["ModelDataUrl"] == f"s3://{CUSTOMER_BUCKET}/{folder}/output.tar.gz"
    assert container["Environment"]["HF_MODEL_ID"] == "/opt/ml/model/merged"

    # Undeploy and delete: both archives go with the job's output
    assert _call("POST", f"{base}/undeploy").status == 202
    stub = Stubber(sagemaker.sagemaker)
    stub.add_response("delete_training_job", {}, {"TrainingJobName": job_ref.job_name})
    with stub:
        assert _call("DELETE", f"{base}?acknowledge=true").status == 204
    left = stack.services.s3.list_objects_v2(Bucket=CUSTOMER_BUCKET, Prefix=f"{folder}/")
    assert left.get("KeyCount", 0) == 0


def _bus(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    """The details of every event that reached tunelab's bus so far, by detail type, oldest first."""
    seen: dict[str, list[dict[str, Any]]] = {}
    while batch := stack.domain_events(timeout=0):
        for e in batch:
            seen.setdefault(e["detail-type"], []).append(e["detail"])
    return seen
