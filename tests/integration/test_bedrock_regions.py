"""One platform, Bedrock in two regions at once: the platform lives in us-east-1, where AWS fine-tunes
Amazon Nova; Meta Llama trains only in us-west-2, where the CDK app's regional stack keeps a data
bucket and forwards Bedrock's job events to the platform's default bus.

Everything runs under moto, the state machines really executing: each job is created by the real
`BedrockProvider` in its model's region with its data in a bucket of that region; each job's state
change is put on the default bus of the job's region, and only EventBridge's routing brings it to
the platform (us-west-2's rule forwards it to us-east-1's bus, whose rule queues it for the
provider-event handler). moto implements no custom model deployments, provisioned throughput or
Converse: `BedrockServing` answers those at botocore's `before-call` hook of the provider's own
clients, per region (botocore still builds and validates each request from the service model), and
refuses a deployment of a model that is not in the region asked.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import unquote

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from moto.bedrock.models import bedrock_backends

import functions.provider_events as provider_events
from tests.integration.api_support import GOOD_CSV
from tests.integration.apigw import ApiResponse, api_event, call, claims_for
from tests.integration.conftest import ACCOUNT, BEDROCK_DATA_BUCKET, REGION, Aws
from tests.integration.handler_support import CONTEXT, sqs_batch
from tests.integration.workflow_fixtures import Stack, stack_fixture  # noqa: F401  # the `stack` fixture
from tunelab.adapters.providers.bedrock import BedrockProvider
from tunelab.application.reconcile import STALE_AFTER, reconcile
from tunelab.composition.stack_definitions import EVENT_RULES
from tunelab.composition.wiring import Services
from tunelab.domain.layout import BEDROCK_OUTPUT_PREFIX, TRAINING_DATA_PREFIX
from tunelab.domain.records import utcnow

pytestmark = pytest.mark.moto

WS = "ws-acme"
HOME = REGION  # us-east-1
WEST: Literal["us-west-2"] = "us-west-2"
REGIONAL_BUCKET = BEDROCK_DATA_BUCKET  # the `aws` fixture makes it in us-west-2
NOVA = "amazon.nova-micro-v1:0:128k"  # us-east-1; served on demand (a custom model deployment)
LLAMA = "meta.llama3-1-8b-instruct-v1:0:128k"  # us-west-2; served by provisioned throughput
[BEDROCK_RULE] = [rule for rule in EVENT_RULES if rule.event_pattern.get("source") == ["aws.bedrock"]]
JOB_EVENT = "Model Customization Job State Change"


@dataclass
class Regions:
    """The regional stack's part (forwarding rule) and the platform's provider-event queue."""

    queue_url: str
    forwarding_rule_arn: str


@pytest.fixture
def regions(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Regions:
    """us-west-2 as the CDK app deploys it for a platform in us-east-1: a data bucket, and a rule on
    the default bus forwarding Bedrock's job events to the platform's default bus (its role); the
    platform's own rule on its default bus queues them for the provider-event handler."""
    monkeypatch.setenv("BEDROCK_DATA_BUCKETS", json.dumps({WEST: REGIONAL_BUCKET}))
    iam = boto3.client("iam", region_name=HOME)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = iam.create_role(RoleName="tunelab-bedrock-forwarding", AssumeRolePolicyDocument=json.dumps(trust))
    pattern = json.dumps(BEDROCK_RULE.event_pattern)
    west = boto3.client("events", region_name=WEST)
    rule_arn = west.put_rule(Name="tunelab-bedrock-forward", EventPattern=pattern)["RuleArn"]
    west.put_targets(
        Rule="tunelab-bedrock-forward",
        Targets=[
            {
                "Id": "platform-bus",
                "Arn": f"arn:aws:events:{HOME}:{ACCOUNT}:event-bus/default",
                "RoleArn": role["Role"]["Arn"],
            }
        ],
    )
    sqs = boto3.client("sqs", region_name=HOME)
    queue_url = sqs.create_queue(QueueName="tunelab-provider-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    home = boto3.client("events", region_name=HOME)
    home.put_rule(Name="tunelab-provider-events", EventPattern=pattern)
    home.put_targets(Rule="tunelab-provider-events", Targets=[{"Id": "queue", "Arn": queue_arn}])
    return Regions(queue_url=queue_url, forwarding_rule_arn=rule_arn)


@dataclass
class BedrockServing:
    """Custom model deployments, provisioned throughput and Converse, per region, for the provider's
    own clients (moto has none of them)."""

    live: dict[str, dict[str, str]] = field(default_factory=dict)
    invoked: list[tuple[str, str]] = field(default_factory=list)

    def attach(self, provider: BedrockProvider, region: str) -> None:
        for client in (provider.bedrock_in(region), provider.runtime_in(region)):
            service = client.meta.service_model.service_id.hyphenize()
            client.meta.events.register(f"before-call.{service}", self._answerer(region))

    def _answerer(self, region: str) -> Any:
        def answer(model: Any, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
            handled = self._answer(region, model.name, params)
            if handled is None:
                return None  # moto answers it
            status, body = handled
            return AWSResponse(params["url"], status, HTTPHeaders(), None), body

        return answer

    def _answer(
        self, region: str, operation: str, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any]] | None:
        body = json.loads(params["body"]) if params.get("body") else {}
        last = unquote(params["url_path"].rstrip("/").rsplit("/", 1)[-1])
        if operation in ("CreateCustomModelDeployment", "CreateProvisionedModelThroughput"):
            model_arn = str(body.get("modelArn") or body.get("modelId"))
            if f":{region}:" not in model_arn:
                return _error(400, "ValidationException", f"The model {model_arn} is not in {region}.")
            on_demand = operation == "CreateCustomModelDeployment"
            name = body["modelDeploymentName"] if on_demand else body["provisionedModelName"]
            kind = "custom-model-deployment" if on_demand else "provisioned-model"
            arn = f"arn:aws:bedrock:{region}:{ACCOUNT}:{kind}/{name}"
            self.live[arn] = {"region": region, "model_arn": model_arn}
            return 200, ({"customModelDeploymentArn": arn} if on_demand else {"provisionedModelArn": arn})
        if operation in ("GetCustomModelDeployment", "GetProvisionedModelThroughput"):
            if last not in self.live:
                return _error(404, "ResourceNotFoundException", f"No deployment {last} in {region}.")
            status = "Active" if operation == "GetCustomModelDeployment" else "InService"
            return 200, {"status": status, "modelArn": self.live[last]["model_arn"]}
        if operation in ("DeleteCustomModelDeployment", "DeleteProvisionedModelThroughput"):
            if self.live.pop(last, None) is None:
                return _error(404, "ResourceNotFoundException", f"No deployment {last} in {region}.")
            return 200, {}
        if operation == "Converse":
            model_id = unquote(params["url_path"].split("/")[2])
            if model_id not in self.live or self.live[model_id]["region"] != region:
                return _error(404, "ResourceNotFoundException", f"No model {model_id} in {region}.")
            self.invoked.append((region, model_id))
            return 200, {
                "output": {"message": {"role": "assistant", "content": [{"text": f"served in {region}"}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 5, "outputTokens": 3, "totalTokens": 8},
                "metrics": {"latencyMs": 80},
            }
        return None


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }


@pytest.fixture
def serving(regions: Regions, stack: Stack) -> BedrockServing:
    provider = stack.services.providers.named("bedrock", WS)
    assert isinstance(provider, BedrockProvider)
    fake = BedrockServing()
    for region in (HOME, WEST):
        fake.attach(provider, region)
    return fake


def _call(method: str, path: str, body: Any = None, **kwargs: Any) -> ApiResponse:
    return call(api_event(method, path, body, claims=claims_for(WS), **kwargs))


def _create(name: str, base_model_id: str, dataset_id: str) -> None:
    created = _call(
        "POST",
        "/v1/fine-tuned-models",
        {
            "name": name,
            "base_model_id": base_model_id,
            "dataset_id": dataset_id,
            "validation": {"mode": "split", "percent": 10},
            "hyperparameters": {"epochs": 1},
            "acknowledge": True,
        },
    )
    assert created.status == 202, created.body


def _dataset() -> str:
    dataset = _call(
        "POST", "/v1/datasets?name=support-tickets", raw_body=GOOD_CSV.decode(), content_type="text/csv"
    )
    assert dataset.status == 201, dataset.body
    return str(dataset.body["id"])


def _job(stack: Stack, name: str) -> tuple[str, dict[str, Any]]:
    """The model's job as Bedrock (moto) has it in the region its ARN names."""
    stack.wait_for_token(stack.repo.models.get(WS, name))
    ref = stack.wait_for(lambda: stack.repo.models.get(WS, name).refs.training_job, what=f"{name}'s job")
    region = ref.job_id.split(":")[3]
    job = boto3.client("bedrock", region_name=region).get_model_customization_job(jobIdentifier=ref.job_name)
    return region, dict(job)


def _emit(region: str, job: dict[str, Any], status: str) -> None:
    """Bedrock's state change of `job`, as Bedrock puts it on the default bus of the job's region."""
    detail = {
        "version": "0.0",
        "jobName": job["jobName"],
        "jobArn": job["jobArn"],
        "outputModelName": job["outputModelName"],
        "outputModelArn": job["outputModelArn"],
        "roleArn": job["roleArn"],
        "jobStatus": status,
        "creationTime": job["creationTime"].isoformat(),
        "lastModifiedTime": job["creationTime"].isoformat(),
        "endTime": job["creationTime"].isoformat(),
        "baseModelArn": job["baseModelArn"],
        "hyperParameters": job["hyperParameters"],
        "trainingDataConfig": job["trainingDataConfig"],
        "outputDataConfig": job["outputDataConfig"],
    }
    answer = boto3.client("events", region_name=region).put_events(
        Entries=[{"Source": "aws.bedrock", "DetailType": JOB_EVENT, "Detail": json.dumps(detail)}]
    )
    assert answer["FailedEntryCount"] == 0


def _deliver(regions: Regions, expected: int) -> list[dict[str, Any]]:
    """What reached the platform's provider-event queue, handed to the handler as Lambda would."""
    sqs = boto3.client("sqs", region_name=HOME)
    bodies: list[str] = []
    deadline = time.monotonic() + 10
    while len(bodies) < expected and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=regions.queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=regions.queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert len(bodies) == expected, bodies
    answer = provider_events.handler(sqs_batch(*bodies), CONTEXT)
    assert answer == {"batchItemFailures": []}
    return [json.loads(body) for body in bodies]


def _keys(region: str, bucket: str) -> list[str]:
    listed = boto3.client("s3", region_name=region).list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listed.get("Contents", [])]


def _execution(stack: Stack, name: str) -> str:
    arn = stack.repo.models.get(WS, name).training.execution_arn
    assert arn is not None
    return arn


def test_one_platform_trains_deploys_serves_and_deletes_nova_in_us_east_1_and_llama_in_us_west_2(
    regions: Regions, stack: Stack, serving: BedrockServing
) -> None:
    artifacts = stack.services.settings.artifacts_bucket
    # Both served models are offered, each where it trains, priced there
    listed = {m["id"]: m for m in _call("GET", "/v1/base-models").body["items"]}
    assert (listed[NOVA]["available"], listed[NOVA]["training_region"]) == (True, HOME)
    assert (listed[LLAMA]["available"], listed[LLAMA]["training_region"]) == (True, WEST)

    # Two models at once, one per region
    dataset = _dataset()
    _create("nova-bot", NOVA, dataset)
    _create("llama-bot", LLAMA, dataset)
    nova_region, nova_job = _job(stack, "nova-bot")
    llama_region, llama_job = _job(stack, "llama-bot")

    # Each job was created in its model's region, reading data kept in that region
    assert (nova_region, llama_region) == (HOME, WEST)
    assert nova_job["trainingDataConfig"]["s3Uri"].startswith(f"s3://{artifacts}/{TRAINING_DATA_PREFIX}")
    assert llama_job["trainingDataConfig"]["s3Uri"].startswith(
        f"s3://{REGIONAL_BUCKET}/{TRAINING_DATA_PREFIX}"
    )
    assert llama_job["validationDataConfig"]["validators"][0]["s3Uri"].startswith(f"s3://{REGIONAL_BUCKET}/")
    assert llama_job["outputDataConfig"]["s3Uri"].startswith(
        f"s3://{REGIONAL_BUCKET}/{BEDROCK_OUTPUT_PREFIX}"
    )
    west_s3 = boto3.client("s3", region_name=WEST)
    assert west_s3.get_bucket_location(Bucket=REGIONAL_BUCKET)["LocationConstraint"] == WEST
    assert {key.rsplit("/", 1)[1] for key in _keys(WEST, REGIONAL_BUCKET)} == {
        "train.jsonl",
        "validation.jsonl",
    }
    llama_data = [k for k in _keys(HOME, artifacts) if "/llama-bot/" in k]
    assert llama_data == [], "the Llama job's data must not be kept in the platform's region"
    # ... and each region's Bedrock knows only its own job
    assert [
        j["jobName"]
        for j in boto3.client("bedrock", region_name=WEST).list_model_customization_jobs()[
            "modelCustomizationJobSummaries"
        ]
    ] == [llama_job["jobName"]]
    assert [
        j["jobName"]
        for j in boto3.client("bedrock", region_name=HOME).list_model_customization_jobs()[
            "modelCustomizationJobSummaries"
        ]
    ] == [nova_job["jobName"]]

    # Each job's news is emitted in its own region; EventBridge brings both to the platform's handler
    _emit(HOME, nova_job, "Completed")
    _emit(WEST, llama_job, "Completed")
    delivered = _deliver(regions, expected=2)
    assert sorted(e["detail"]["jobArn"] for e in delivered) == sorted(
        [nova_job["jobArn"], llama_job["jobArn"]]
    )
    for name in ("nova-bot", "llama-bot"):
        stack.wait_execution(_execution(stack, name))
        trained = _call("GET", f"/v1/fine-tuned-models/{name}").body
        assert trained["status"] == "not_deployed", trained
    assert stack.repo.models.get(WS, "llama-bot").refs.model_ref == llama_job["outputModelArn"]
    assert f":{WEST}:" in llama_job["outputModelArn"]

    # Both deployed, each where its custom model is: on demand in us-east-1, provisioned in us-west-2
    for name in ("nova-bot", "llama-bot"):
        assert _call("POST", f"/v1/fine-tuned-models/{name}/deploy").status == 202
    executions = stack.sfn.list_executions(stateMachineArn=stack.deployment_arn)["executions"]
    for execution in executions:
        stack.wait_execution(execution["executionArn"])
    assert {arn.split(":")[3]: arn.split(":")[5].split("/")[0] for arn in serving.live} == {
        HOME: "custom-model-deployment",
        WEST: "provisioned-model",
    }
    for name, region in (("nova-bot", HOME), ("llama-bot", WEST)):
        deployed = _call("GET", f"/v1/fine-tuned-models/{name}").body
        assert deployed["status"] == "deployed", deployed
        # The sandbox calls Converse in the deployment's region
        invoked = _call("POST", f"/v1/fine-tuned-models/{name}/invoke", {"prompt": "My invoice is wrong"})
        assert invoked.status == 200, invoked.body
        assert invoked.body["completion"] == f"served in {region}"
    assert [region for region, _ in serving.invoked] == [HOME, WEST]

    # Undeployed and deleted: nothing is left in either region
    for name in ("nova-bot", "llama-bot"):
        assert _call("POST", f"/v1/fine-tuned-models/{name}/undeploy").status == 202
        assert _call("DELETE", f"/v1/fine-tuned-models/{name}?acknowledge=true").status == 204
    assert serving.live == {}
    for region in (HOME, WEST):
        assert boto3.client("bedrock", region_name=region).list_custom_models()["modelSummaries"] == []
    assert _keys(WEST, REGIONAL_BUCKET) == []
    assert [
        k for k in _keys(HOME, artifacts) if k.startswith((TRAINING_DATA_PREFIX, BEDROCK_OUTPUT_PREFIX))
    ] == []


def test_the_reconciler_finds_a_us_west_2_job_whose_event_was_lost(
    regions: Regions, stack: Stack, serving: BedrockServing
) -> None:
    _create("llama-bot", LLAMA, _dataset())
    region, job = _job(stack, "llama-bot")
    assert region == WEST
    # The job completes in us-west-2, but its event never reaches the platform.
    bedrock_backends[ACCOUNT][WEST].model_customization_jobs[job["jobName"]].status = "Completed"

    later = Services(stack.services.settings, clock=lambda: utcnow() + STALE_AFTER + timedelta(minutes=5))
    report = reconcile(later)

    assert (report.checked, report.outcomes_sent) == (1, 1)
    stack.wait_execution(_execution(stack, "llama-bot"))
    model = _call("GET", "/v1/fine-tuned-models/llama-bot").body
    assert model["status"] == "not_deployed", model
    assert stack.repo.models.get(WS, "llama-bot").refs.model_ref == job["outputModelArn"]
