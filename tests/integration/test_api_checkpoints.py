"""`GET /v1/fine-tuned-models/{name}/checkpoints` and `.../checkpoints/{id}/download` over the API
handler (moto), with a provider double that holds the job's checkpoints; the real providers' checkpoints
are tested in their own modules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

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
from tunelab.domain.checkpoints import CheckpointInfo, CheckpointList, unknown_checkpoint
from tunelab.domain.errors import ValidationFailed
from tunelab.domain.providers import DownloadLink, TrainingJobRef
from tunelab.domain.records import ModelChanges, ProviderRefs

pytestmark = pytest.mark.moto

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
PASS_MACHINE = json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": True}}})
KEPT = [
    CheckpointInfo(id="checkpoint-5", step=5, epoch=0.5, train_loss=2.1, saved_at=T0, size_bytes=10),
    CheckpointInfo(id="checkpoint-10", step=10, epoch=1.0, train_loss=1.7, eval_loss=1.9, saved_at=T0),
]


Double = TypeVar("Double", bound=RecordingProvider)


class CheckpointDouble(RecordingProvider):
    """A provider double whose job kept `KEPT`, or (`keeps_none`) one that keeps none, as Bedrock."""

    keeps_none = False

    def checkpoints(self, ref: TrainingJobRef) -> CheckpointList:
        self._call("checkpoints", ref)
        if self.keeps_none:
            return CheckpointList(message="Bedrock keeps no checkpoints of its customization jobs.")
        return CheckpointList(items=tuple(KEPT))

    def checkpoint_download(
        self, ref: TrainingJobRef, checkpoint_id: str, *, expires_in_s: int = 900
    ) -> DownloadLink:
        self._call("checkpoint_download", checkpoint_id)
        if self.keeps_none:
            raise ValidationFailed("Bedrock keeps no checkpoints of its customization jobs.")
        if checkpoint_id not in {item.id for item in KEPT}:
            raise unknown_checkpoint(checkpoint_id)
        return DownloadLink(
            url=f"https://downloads.example/{checkpoint_id}.tar.gz",
            expires_at=T0 + timedelta(seconds=expires_in_s),
            size_bytes=10,
        )


def _double(api: Api, provider: Double) -> Double:
    """Wire `provider` as the deployment's Bedrock provider, with state machines that do nothing."""
    settings = get_settings()
    sfn = boto3.client("stepfunctions", region_name=REGION)
    for arn in (settings.fine_tuning_state_machine_arn, settings.deployment_state_machine_arn):
        sfn.create_state_machine(
            name=arn.rsplit(":", 1)[1], definition=PASS_MACHINE, roleArn=f"arn:aws:iam::{ACCOUNT}:role/states"
        )
    services = Services(providers={"bedrock": provider})
    set_services(services)
    api.services = api.repo = services
    return provider


@pytest.fixture
def double(api: Api) -> CheckpointDouble:
    return _double(api, CheckpointDouble("bedrock"))


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


def test_the_checkpoints_are_listed_by_step_with_their_losses(api: Api, double: CheckpointDouble) -> None:
    _created(api)
    answer = api.call("GET", "/v1/fine-tuned-models/support-bot-v1/checkpoints")
    assert answer.status == 200, answer.body
    assert answer.body["message"] is None
    assert answer.body["items"] == [
        {
            "id": "checkpoint-5",
            "step": 5,
            "epoch": 0.5,
            "train_loss": 2.1,
            "eval_loss": None,
            "saved_at": "2026-11-28T12:00:00Z",
            "size_bytes": 10,
        },
        {
            "id": "checkpoint-10",
            "step": 10,
            "epoch": 1.0,
            "train_loss": 1.7,
            "eval_loss": 1.9,
            "saved_at": "2026-11-28T12:00:00Z",
            "size_bytes": None,
        },
    ]


def test_a_checkpoint_download_answers_a_link_and_an_unknown_one_is_404(
    api: Api, double: CheckpointDouble
) -> None:
    _created(api)
    link = api.call("GET", "/v1/fine-tuned-models/support-bot-v1/checkpoints/checkpoint-10/download")
    assert link.status == 200, link.body
    assert link.body["id"] == "checkpoint-10"
    assert link.body["url"] == "https://downloads.example/checkpoint-10.tar.gz"
    assert link.body["size_bytes"] == 10
    for unknown in ("checkpoint-7", "final"):
        missing = api.call("GET", f"/v1/fine-tuned-models/support-bot-v1/checkpoints/{unknown}/download")
        assert missing.status == 404
        assert missing.error_code == "not_found"
    # Not a checkpoint's name: refused before the provider is asked.
    assert double.called("checkpoint_download") == ["checkpoint-10", "checkpoint-7"]


def test_a_provider_keeping_none_answers_empty_with_a_message_and_refuses_downloads(
    api: Api, double: CheckpointDouble
) -> None:
    double.keeps_none = True
    _created(api)
    answer = api.call("GET", "/v1/fine-tuned-models/support-bot-v1/checkpoints")
    assert answer.status == 200
    assert answer.body["items"] == []
    assert "keeps no checkpoints" in answer.body["message"]
    refused = api.call("GET", "/v1/fine-tuned-models/support-bot-v1/checkpoints/checkpoint-5/download")
    assert refused.status == 400
    assert "keeps no checkpoints" in json.dumps(refused.body)


def test_a_model_without_a_job_has_none_and_says_so(api: Api, double: CheckpointDouble) -> None:
    _created(api, job=False)
    answer = api.call("GET", "/v1/fine-tuned-models/support-bot-v1/checkpoints")
    assert answer.status == 200
    assert answer.body["items"] == []
    assert "has not started yet" in answer.body["message"]
    assert (
        api.call("GET", "/v1/fine-tuned-models/support-bot-v1/checkpoints/checkpoint-5/download").status
        == 404
    )
    assert double.called("checkpoints") == []


def test_another_workspace_and_an_unknown_model_are_404(api: Api, double: CheckpointDouble) -> None:
    _created(api)
    assert (
        api.call("GET", "/v1/fine-tuned-models/support-bot-v1/checkpoints", workspace=OTHER_WS).status == 404
    )
    assert api.call("GET", "/v1/fine-tuned-models/nobody/checkpoints").status == 404


def test_the_openapi_document_has_the_checkpoint_routes(api: Api) -> None:
    paths = api.call("GET", "/v1/openapi.json").body["paths"]
    assert paths["/v1/fine-tuned-models/{name}/checkpoints"]["get"]["operationId"] == (
        "listFineTunedModelCheckpoints"
    )
    download = paths["/v1/fine-tuned-models/{name}/checkpoints/{checkpoint_id}/download"]["get"]
    assert download["operationId"] == "downloadFineTunedModelCheckpoint"
