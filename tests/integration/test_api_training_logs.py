"""`GET /v1/fine-tuned-models/{name}/logs` over the API handler (moto), with a provider double that
holds the job's lines; the real providers' logs are tested in their own modules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from tests.integration.api_support import (
    OTHER_WS,
    WS,
    Api,
    api_fixture,  # noqa: F401  # the `api` fixture
)
from tests.integration.conftest import ACCOUNT, REGION
from tests.integration.handler_support import RecordingProvider
from tunelab.composition.settings import get_settings
from tunelab.composition.wiring import Services, set_services
from tunelab.domain.providers import TrainingJobRef
from tunelab.domain.records import ModelChanges, ProviderRefs
from tunelab.domain.status import ModelStatus
from tunelab.domain.training_logs import TrainingLogLine, TrainingLogPage, wrap_token

pytestmark = pytest.mark.moto

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LINES = [f"step={i * 10} train_loss={2 - i / 10:.2f}" for i in range(5)]
PASS_MACHINE = json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": True}}})


class LoggingDouble(RecordingProvider):
    """A provider double whose job printed `LINES` (its position: the index of the next line)."""

    def training_log(self, ref: TrainingJobRef, *, position: str | None, limit: int) -> TrainingLogPage:
        self._call("training_log", (position, limit))
        start = int(position or 0)
        lines = [TrainingLogLine(at=T0 + timedelta(seconds=i), message=m) for i, m in enumerate(LINES)]
        page = lines[start : start + limit]
        return TrainingLogPage(lines=tuple(page), position=str(start + len(page)))


@pytest.fixture
def double(api: Api) -> LoggingDouble:
    settings = get_settings()
    sfn = boto3.client("stepfunctions", region_name=REGION)
    for arn in (settings.fine_tuning_state_machine_arn, settings.deployment_state_machine_arn):
        sfn.create_state_machine(
            name=arn.rsplit(":", 1)[1], definition=PASS_MACHINE, roleArn=f"arn:aws:iam::{ACCOUNT}:role/states"
        )
    provider = LoggingDouble("bedrock")
    services = Services(providers={"bedrock": provider})
    set_services(services)
    api.services = api.repo = services
    return provider


def _created(api: Api, name: str = "support-bot-v1", *, job: bool = True) -> None:
    body: dict[str, Any] = {
        "name": name,
        "base_model_id": "amazon.nova-micro-v1:0:128k",
        "dataset_id": api.dataset(f"data-{name}"),
        "validation": {"mode": "none"},
        "hyperparameters": {"epochs": 2},
        "acknowledge": True,
    }
    assert api.call("POST", "/v1/fine-tuned-models", body).status == 202
    if job:
        ref = TrainingJobRef(provider="bedrock", job_id=f"{name}-job", job_name=f"{name}-job")
        api.repo.models.update(WS, name, ModelChanges(refs=ProviderRefs(training_job=ref)))


def test_the_log_pages_oldest_first_with_times_and_an_opaque_token(api: Api, double: LoggingDouble) -> None:
    _created(api)
    first = api.call("GET", "/v1/fine-tuned-models/support-bot-v1/logs?limit=2")
    assert first.status == 200, first.body
    assert first.body["items"] == [
        {"at": "2026-11-28T12:00:00Z", "message": LINES[0]},
        {"at": "2026-11-28T12:00:01Z", "message": LINES[1]},
    ]
    token = first.body["next_token"]
    assert token not in (None, "2")  # opaque: the provider's position is wrapped with the model
    rest = api.call("GET", f"/v1/fine-tuned-models/support-bot-v1/logs?limit=10&next_token={token}")
    assert [i["message"] for i in rest.body["items"]] == LINES[2:]
    # Still training: a token to follow with, though nothing more is there now.
    assert rest.body["next_token"]
    assert double.called("training_log") == [(None, 2), ("2", 10)]

    api.repo.models.transition(WS, "support-bot-v1", {ModelStatus.TRAINING}, ModelStatus.TRAINING_FAILED)
    ended = api.call("GET", f"/v1/fine-tuned-models/support-bot-v1/logs?next_token={rest.body['next_token']}")
    assert ended.status == 200
    assert ended.body == {"items": [], "next_token": None, "message": None}


def test_a_model_without_a_job_answers_no_lines_and_a_message(api: Api, double: LoggingDouble) -> None:
    _created(api, job=False)
    answer = api.call("GET", "/v1/fine-tuned-models/support-bot-v1/logs")
    assert answer.status == 200
    assert answer.body["items"] == []
    assert answer.body["next_token"] is None
    assert "has not started yet" in answer.body["message"]
    assert double.called("training_log") == []


@pytest.mark.parametrize("token", ["not-a-token", wrap_token("another-models-uid", "0")])
def test_a_bad_token_is_400_on_next_token(api: Api, double: LoggingDouble, token: str) -> None:
    _created(api)
    answer = api.call("GET", f"/v1/fine-tuned-models/support-bot-v1/logs?next_token={token}")
    assert answer.status == 400
    assert answer.error_code == "validation_error"
    assert answer.body["error"]["details"][0]["field"] == "next_token"


def test_another_workspace_and_an_unknown_model_are_404(api: Api, double: LoggingDouble) -> None:
    _created(api)
    assert api.call("GET", "/v1/fine-tuned-models/support-bot-v1/logs", workspace=OTHER_WS).status == 404
    assert api.call("GET", "/v1/fine-tuned-models/nobody/logs").status == 404
    assert api.call("GET", "/v1/fine-tuned-models/support-bot-v1/logs?limit=101").status == 400


def test_the_openapi_document_has_the_logs_route(api: Api) -> None:
    document = api.call("GET", "/v1/openapi.json").body
    operation = document["paths"]["/v1/fine-tuned-models/{name}/logs"]["get"]
    assert operation["operationId"] == "getFineTunedModelLogs"
    assert {p["name"] for p in operation["parameters"]} >= {"name", "limit", "next_token"}
