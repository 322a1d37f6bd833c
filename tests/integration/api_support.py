"""What the API resource tests share: the mock account's buckets, bus, SES and schedule group, services
installed for the API's dependencies, and helpers to call the API as a user of a workspace."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.integration.apigw import ApiResponse, api_event, call, claims_for
from tests.integration.conftest import REGION, Aws
from tests.integration.handler_support import BusSpy
from tunelab.adapters.providers.sagemaker import SageMakerConfig, SageMakerProvider
from tunelab.application.workspaces import set_plan
from tunelab.composition.settings import get_settings
from tunelab.composition.trainer import trainer_dir
from tunelab.composition.wiring import Services, reset_services, set_services
from tunelab.domain.events import MODEL_STATUS_CHANGED
from tunelab.domain.providers import SageMakerConnection

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "shared" / "tunelab" / "sample_data"
GOOD_CSV = (SAMPLE_DATA / "support-triage.csv").read_bytes()
VALIDATION_CSV = (SAMPLE_DATA / "support-triage-validation.csv").read_bytes()
WS = "ws-acme"
OTHER_WS = "ws-globex"


@dataclass
class Api:
    """The API over the mock account, called as a user of `ws-acme` unless told otherwise."""

    aws: Aws
    services: Services
    repo: Services
    bus: BusSpy | None = None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        workspace: str = WS,
        plan: str | None = "subscription",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> ApiResponse:
        if plan:
            # The operator's path (`tunelab-admin plan set`): a token's claims never set a plan.
            set_plan(self.repo.workspaces, workspace, plan, default_plan="pay_as_you_go")
        return call(api_event(method, path, body, claims=claims_for(workspace), headers=headers, **kwargs))

    def upload_csv(
        self, name: str, data: bytes = GOOD_CSV, *, workspace: str = WS, **kwargs: Any
    ) -> ApiResponse:
        return self.call(
            "POST",
            f"/v1/datasets?name={name}",
            raw_body=data.decode("utf-8"),
            content_type="text/csv",
            workspace=workspace,
            **kwargs,
        )

    def published(self, detail_type: str = MODEL_STATUS_CHANGED) -> list[dict[str, Any]]:
        """The details of the `detail_type` events published on tunelab's bus so far, oldest first."""
        assert self.bus is not None
        return [e["detail"] for e in self.bus.published() if e["detail-type"] == detail_type]

    def dataset(self, name: str = "support-tickets", data: bytes = GOOD_CSV, *, workspace: str = WS) -> str:
        """A ready dataset made through the API; its id."""
        answer = self.upload_csv(name, data, workspace=workspace)
        assert answer.status == 201, answer.body
        assert answer.body["status"] == "ready", answer.body
        return str(answer.body["id"])


def sagemaker_config(connection: SageMakerConnection, workspace: str = WS) -> SageMakerConfig:
    """The SageMaker provider's configuration for `workspace` over `connection` (as the services make it)."""
    return SageMakerConfig(connection=connection, workspace_id=workspace, trainer_dir=trainer_dir())


def customer_session(connection: SageMakerConnection, workspace: str = WS) -> boto3.Session:
    """A session in the customer's account, reached as the SageMaker provider reaches it (the role
    assumed with the external id)."""
    return SageMakerProvider(sagemaker_config(connection, workspace)).session()


def make_buckets() -> None:
    settings = get_settings()
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in (settings.datasets_bucket, settings.artifacts_bucket):
        s3.create_bucket(Bucket=bucket)


@pytest.fixture(name="api")
def api_fixture(aws: Aws, repo: Services) -> Iterator[Api]:
    """The API with its buckets, bus, SES sender and schedule group in the `aws` fixture's account."""
    make_buckets()
    bus = BusSpy(get_settings().event_bus_name)
    boto3.client("ses", region_name=REGION).verify_email_identity(EmailAddress=get_settings().sender_email)
    boto3.client("scheduler", region_name=REGION).create_schedule_group(Name=get_settings().schedule_group)
    set_services(repo)
    yield Api(aws=aws, services=repo, repo=repo, bus=bus)
    reset_services()
