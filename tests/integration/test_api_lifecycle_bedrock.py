"""A Bedrock model's whole life through the API, with the state machines really executing in moto, their
tasks running the real handlers in this process, and the provider's news arriving as the AWS
documentation's sample event: create → training → "Completed" → not deployed → deploy → deployed →
invoke → undeploy → delete; and a stop while training.

moto creates Bedrock customization jobs but implements no custom model deployments: the provider here
is the real `BedrockProvider` with only deploy, describe and undeploy of deployments kept in memory,
and the sandbox's Converse call answered through botocore's Stubber (which checks the request against
the service model). Everything else — DynamoDB, S3, Step Functions, EventBridge, Scheduler, SES — is
moto's.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

import functions.provider_events as provider_events
from tests.integration.api_support import GOOD_CSV
from tests.integration.apigw import ApiResponse, api_event, call, claims_for
from tests.integration.handler_support import CONTEXT, event, sqs_batch
from tests.integration.workflow_fixtures import Stack, stack_fixture  # noqa: F401  # the `stack` fixture
from tunelab.adapters.providers.bedrock import BedrockConfig, BedrockProvider, custom_model_name
from tunelab.domain.events import MODEL_DELETED, MODEL_STATUS_CHANGED
from tunelab.domain.providers import DeploymentRef, DeploymentState, DeployRequest

pytestmark = pytest.mark.moto

WS = "ws-acme"
ACCOUNT = "123456789012"  # the platform's (moto's) account
NAME = "support-bot-v1"
BASE = f"/v1/fine-tuned-models/{NAME}"
CUSTOM_MODELS = "arn:aws:bedrock:us-east-1:123456789012:custom-model/"


class DeployingBedrock(BedrockProvider):
    """The real Bedrock provider; deployments (which moto lacks) are kept in memory."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.live: dict[str, DeployRequest] = {}
        self.removed: list[str] = []

    def deploy(self, request: DeployRequest) -> DeploymentRef:
        arn = f"arn:aws:bedrock:us-east-1:123456789012:custom-model-deployment/{request.deploy_digest()[:12]}"
        self.live[arn] = request
        return DeploymentRef(provider="bedrock", kind="custom_model_deployment", deployment_id=arn)

    def describe_deployment(self, ref: DeploymentRef) -> DeploymentState:
        if ref.deployment_id in self.live:
            return DeploymentState(deployment_id=ref.deployment_id, status="in_service")
        return DeploymentState(deployment_id=ref.deployment_id, status="gone")

    def undeploy(self, ref: DeploymentRef) -> None:
        if self.live.pop(ref.deployment_id, None) is not None:
            self.removed.append(ref.deployment_id)


def _call(method: str, path: str, body: Any = None, **kwargs: Any) -> ApiResponse:
    return call(api_event(method, path, body, claims=claims_for(WS), **kwargs))


@pytest.fixture
def bedrock(stack: Stack) -> DeployingBedrock:
    settings = stack.services.settings
    config = BedrockConfig(
        region=settings.aws_region,
        service_role_arn=settings.bedrock_role_arn,
        output_bucket=settings.artifacts_bucket,
    )
    provider = DeployingBedrock(config, session=stack.services.session)
    stack.services.providers.set("bedrock", provider)
    return provider


def _create(stack: Stack) -> dict[str, Any]:
    dataset = _call(
        "POST", "/v1/datasets?name=support-tickets", raw_body=GOOD_CSV.decode(), content_type="text/csv"
    )
    assert dataset.status == 201, dataset.body
    created = _call(
        "POST",
        "/v1/fine-tuned-models",
        {
            "name": NAME,
            "base_model_id": "amazon.nova-micro-v1:0:128k",
            "dataset_id": dataset.body["id"],
            "validation": {"mode": "split", "percent": 10},
            "hyperparameters": {"epochs": 2},
            "acknowledge": True,
        },
    )
    assert created.status == 202, created.body
    return dict(created.body)


def _wait_training(stack: Stack) -> None:
    """Until the workflow waits on the provider's job, whose id is on the record."""
    stack.wait_for_token(stack.repo.models.get(WS, NAME))
    stack.wait_for(lambda: stack.repo.models.get(WS, NAME).training.job_id, what="the job's id")


def _job(stack: Stack) -> dict[str, Any]:
    """The Bedrock job in moto (found by name: moto does not look jobs up by ARN)."""
    job = stack.repo.models.get(WS, NAME).refs.training_job
    assert job is not None
    name = job.job_name
    return dict(stack.services.client("bedrock").get_model_customization_job(jobIdentifier=name))


def _job_event(stack: Stack, status: str, **detail: Any) -> None:
    """Bedrock's "Model Customization Job State Change" for the model's job, through the handler."""
    model = stack.repo.models.get(WS, NAME)
    identity = model.identity
    assert model.refs.training_job is not None
    fields = {
        "jobArn": model.training.job_id,
        "jobName": model.refs.training_job.job_name,
        "jobStatus": status,
        "outputModelName": custom_model_name(identity),
        "outputModelArn": f"{CUSTOM_MODELS}{custom_model_name(identity)}",
        "outputDataConfig": {"s3Uri": model.training.output_uri or "s3://tunelab-test-artifacts/x/"},
        **detail,
    }
    sample = event("bedrock_model_customization_job_state_change", **fields)
    if status != "Failed":
        sample["detail"].pop("failureMessage", None)
    answer = provider_events.handler(sqs_batch(sample), CONTEXT)
    assert answer == {"batchItemFailures": []}


def _statuses(stack: Stack) -> list[str]:
    events = _call("GET", f"{BASE}/events").body["items"]
    return [e["status"] for e in events if e["type"] == "status_changed"]


def test_the_whole_life_of_a_bedrock_model(stack: Stack, bedrock: DeployingBedrock) -> None:
    # Create: the model trains, its workflow waits on the Bedrock job (created in moto)
    created = _create(stack)
    assert created["status"] == "training"
    _wait_training(stack)
    waiting = stack.repo.models.get(WS, NAME)
    job = _job(stack)
    assert job["status"] == "InProgress"
    assert job["hyperParameters"]["epochCount"] == "2"

    # Bedrock says the job completed: the workflow records it, the creator is told
    _job_event(stack, "Completed")
    stack.wait_execution(_training_execution(stack))
    trained = _call("GET", BASE).body
    assert trained["status"] == "not_deployed"
    assert trained["training"]["ended_at"] is not None
    # The job's id with the platform's account masked: tenants are not shown it.
    assert waiting.training.job_id is not None
    assert trained["training"]["job_id"] == waiting.training.job_id.replace(ACCOUNT, "************")
    assert ACCOUNT not in json.dumps(trained)
    [completed] = stack.emails()
    assert NAME in completed.subject
    assert "Not deployed" in completed.body

    # Deploy with an automatic undeploy: in service, scheduled, announced
    deploying = _call("POST", f"{BASE}/deploy", {"auto_undeploy": {"after_hours": 4}})
    assert deploying.status == 202, deploying.body
    assert deploying.body["status"] == "deploying"
    stack.wait_execution(_deployment_arn(stack))
    deployed = _call("GET", BASE).body
    assert deployed["status"] == "deployed", deployed
    record = stack.repo.models.get(WS, NAME)
    assert record.deployment is not None
    assert record.deployment.endpoint in bedrock.live
    assert deployed["deployment"]["endpoint"] == record.deployment.endpoint.replace(ACCOUNT, "************")
    assert deployed["deployment"]["auto_undeploy_at"] == deploying.body["deployment"]["auto_undeploy_at"]
    record = stack.repo.models.get(WS, NAME)
    assert record.deployment is not None
    assert record.deployment.schedule_name in _schedules(stack)
    assert [r.model_ref for r in bedrock.live.values()] == [record.refs.model_ref]
    assert any("deployed" in e.subject.lower() for e in stack.emails()[1:])

    # The sandbox: a Converse call on the deployment
    stub = Stubber(bedrock.runtime)
    stub.add_response(
        "converse",
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "billing"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 9, "outputTokens": 1, "totalTokens": 10},
            "metrics": {"latencyMs": 120},
        },
        {
            "modelId": record.deployment.endpoint,
            "messages": [{"role": "user", "content": [{"text": "My invoice is wrong"}]}],
            "inferenceConfig": ANY,
        },
    )
    with stub:
        invoked = _call("POST", f"{BASE}/invoke", {"prompt": "My invoice is wrong", "max_tokens": 16})
    assert invoked.status == 200, invoked.body
    assert invoked.body["completion"] == "billing"
    assert invoked.body["usage"] == {"input_tokens": 9, "output_tokens": 1}

    # Bedrock keeps the weights: no download; a deployed model cannot be deleted
    assert _call("GET", f"{BASE}/download").status == 400
    refused = _call("DELETE", f"{BASE}?acknowledge=true")
    assert refused.status == 409
    assert "Deployed" in refused.body["error"]["message"]

    # Undeploy: the deployment and its schedules go, the creator is told
    undeployed = _call("POST", f"{BASE}/undeploy")
    assert undeployed.status == 202
    assert undeployed.body["status"] == "not_deployed"
    assert bedrock.live == {}
    assert record.deployment.schedule_name not in _schedules(stack)
    assert any("undeployed" in e.subject.lower() for e in stack.emails())
    assert _call("POST", f"{BASE}/invoke", {"prompt": "hi"}).error_code == "invalid_state"

    # Delete: the record, its history and the prepared training data are gone
    data_uri = stack.repo.models.get(WS, NAME).training.data_uri or ""
    deleted = _call("DELETE", f"{BASE}?acknowledge=true")
    assert deleted.status == 204
    assert _call("GET", BASE).status == 404
    bucket, _, key = data_uri[5:].partition("/")
    listed = stack.services.s3.list_objects_v2(Bucket=bucket, Prefix=key.rsplit("/", 1)[0])
    assert listed.get("KeyCount", 0) == 0
    bus = _bus(stack)
    assert {e["data"]["status"] for e in bus[MODEL_STATUS_CHANGED]} >= {
        "training",
        "not_deployed",
        "deploying",
        "deployed",
    }
    # what a request caused carries the request's correlation id
    [after_undeploy] = [e for e in bus[MODEL_STATUS_CHANGED] if e["data"]["previous_status"] == "deployed"]
    assert after_undeploy["data"]["status"] == "not_deployed"
    assert after_undeploy["correlation_id"] == undeployed.request_id
    [gone] = bus[MODEL_DELETED]
    assert gone["data"]["model_name"] == NAME
    assert gone["correlation_id"] == deleted.request_id


def _training_execution(stack: Stack) -> str:
    """The model's fine-tuning execution (the API shows its ARN with the platform's account masked)."""
    arn = stack.repo.models.get(WS, NAME).training.execution_arn
    assert arn is not None
    return arn


def _deployment_arn(stack: Stack) -> str:
    executions = stack.sfn.list_executions(stateMachineArn=stack.deployment_arn)["executions"]
    return str(executions[0]["executionArn"])


def _schedules(stack: Stack) -> list[str]:
    group = stack.services.settings.schedule_group
    return [s["Name"] for s in stack.services.scheduler_client.list_schedules(GroupName=group)["Schedules"]]


def _bus(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    """The details of every event that reached tunelab's bus so far, by detail type, oldest first."""
    seen: dict[str, list[dict[str, Any]]] = {}
    while batch := stack.domain_events(timeout=0):
        for e in batch:
            seen.setdefault(e["detail-type"], []).append(e["detail"])
    return seen


def test_stop_while_training(stack: Stack, bedrock: DeployingBedrock) -> None:
    created = _create(stack)
    _wait_training(stack)

    stopping = _call("POST", f"{BASE}/stop")
    assert stopping.status == 202
    assert stopping.body["status"] == "stopping_training"
    job = _job(stack)
    assert job["status"] in {"Stopping", "Stopped"}
    assert _call("POST", f"{BASE}/deploy").error_code == "invalid_state"

    _job_event(stack, "Stopped")
    stack.wait_execution(_training_execution(stack))

    stopped = _call("GET", BASE).body
    assert stopped["status"] == "training_stopped"
    assert _statuses(stack) == ["training", "stopping_training", "training_stopped"]
    # the stop's status change carries the request's correlation id
    [asked] = [e for e in _bus(stack)[MODEL_STATUS_CHANGED] if e["data"]["status"] == "stopping_training"]
    assert asked["correlation_id"] == stopping.request_id
    assert any("stopped" in e.subject for e in stack.emails())
    # a stopped model can be deleted at once; its dataset is then free
    assert _call("DELETE", f"{BASE}?acknowledge=true").status == 204
    assert _call("DELETE", f"/v1/datasets/{created['dataset']['id']}").status == 204


def test_a_failed_job_ends_training_failed_with_bedrocks_reason(
    stack: Stack, bedrock: DeployingBedrock
) -> None:
    _create(stack)
    _wait_training(stack)

    _job_event(stack, "Failed", failureMessage="Insufficient training data after filtering.")
    stack.wait_execution(_training_execution(stack))

    failed = _call("GET", BASE).body
    assert failed["status"] == "training_failed"
    assert failed["training"]["failure_reason"] == "Insufficient training data after filtering."
    assert _call("POST", f"{BASE}/stop").error_code == "invalid_state"
    assert json.dumps(failed).count("Insufficient") == 1
